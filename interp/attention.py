"""Attention maps from the hook points, mapped onto the image and normalised per head (thesis eq. 5.1).

:func:`attention_maps` runs the evaluated steps once with :func:`interp.hooks.record_attention` and returns, per
hook name, float32 arrays:

- ``spatial`` (Mott, spatio-temporal) and ``space`` (TimeSformer divided, averaged over the query patches):
  ``[N, heads, S, S]``;
- ``space_time`` (TimeSformer joint, averaged over the query patches and projected back onto the frame each key
  came from): ``[N, heads, key_frames, S, S]``, oldest key frame first, the last one being the current frame;
- ``temporal`` (Transformer-XL) and ``time`` (TimeSformer divided, averaged over patches): over memory,
  ``[N, heads, keys]``, oldest first, the last key being the current step.

Each head's map is min-max normalised to [0, 1] per frame, ``(A - min) / (max - min)`` (a constant map gives 0).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from interp.hooks import AttentionRecord, record_attention
from interp.steps import Steps


def normalise(maps: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Thesis eq. 5.1 over ``axes``."""
    low = maps.min(axis=axes, keepdims=True)
    span = maps.max(axis=axes, keepdims=True) - low
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1), 0.0).astype(np.float32)


def grid_to_image(grids: np.ndarray, size: int) -> np.ndarray:
    """``[..., h, w]`` maps over grid cells that tile the frame -> ``[..., S, S]``, bilinear between cell centres."""
    flat = grids.reshape(-1, *grids.shape[-2:]).astype(np.float32)
    resized = np.stack([cv2.resize(g, (size, size), interpolation=cv2.INTER_LINEAR) for g in flat])
    return resized.reshape(*grids.shape[:-2], size, size)


def image_maps(record: AttentionRecord, size: int) -> np.ndarray:
    """One hook's weights from a single call with ``T = 1`` (the layouts of :mod:`interp.hooks`), as the maps the
    module docstring gives."""
    weights = record.tensors[-1].float().cpu().numpy()
    grid = record.grid
    if record.layout == "spatial":  # [N, heads, h, w]
        return normalise(grid_to_image(weights, size), (-2, -1))
    if record.layout == "space":  # [N, frames = 1, heads, query patches, key patches]
        spatial = weights[:, 0].mean(axis=2)  # [N, heads, key patches]
        spatial = spatial.reshape(*spatial.shape[:2], *grid)
        return normalise(grid_to_image(spatial, size), (-2, -1))
    if record.layout == "space_time":  # [N, 1, heads, patches of the frame, key frames x patches]
        per_key_frame = weights[:, 0].mean(axis=2)  # [N, heads, key frames x patches]
        per_key_frame = per_key_frame.reshape(*per_key_frame.shape[:2], -1, *grid)
        return normalise(grid_to_image(per_key_frame, size), (-3, -2, -1))
    if record.layout == "temporal":  # [N, 1, heads, 1, keys]
        return normalise(weights[:, 0, :, 0], (-1,))
    if record.layout == "time":  # [N, patches, heads, 1, keys]
        return normalise(weights[:, :, :, 0].mean(axis=1), (-1,))
    raise ValueError(f"no image layout for attention laid out as {record.layout!r}")


def attention_maps(agent, steps: Steps) -> dict[str, np.ndarray]:
    """Every attention hook of ``agent`` at the evaluated steps, by hook name (see the module docstring)."""
    size = steps.inputs["frame"].shape[-1]
    with record_attention(agent) as records, torch.no_grad():
        agent(steps.inputs, steps.state)
    return {name: image_maps(record, size) for name, record in records.items() if record.tensors}


def head_images(maps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each head's map on the current frame, ``"<hook name>/h<i>" -> [N, S, S]``, from :func:`attention_maps`'
    output; attention over memory has no image and is left out, joint space-time attention keeps the current
    frame's keys."""
    images = {}
    for name, value in maps.items():
        if value.ndim < 4:
            continue
        current = value if value.ndim == 4 else value[:, :, -1]
        for head in range(current.shape[1]):
            images[f"{name}/h{head}"] = current[:, head]
    return images
