"""Frames to pictures and videos: object-mask overlays and h264 mp4 files."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import cv2
import numpy as np

from interp.files import atomic_path

# distinct colours (RGB) for object overlays, assigned in name order
PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (145, 30, 180), (70, 240, 240),
           (245, 130, 48), (240, 50, 230))


def gray_to_rgb(frame: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W]`` -> ``[H, W, 3]``."""
    return np.repeat(frame[:, :, None], 3, axis=2)


def overlay_masks(rgb: np.ndarray, masks: Mapping[str, np.ndarray], alpha: float = 0.6) -> np.ndarray:
    """Blend one colour per object onto ``rgb`` (uint8 ``[H, W, 3]``); masks are resized to the image if needed."""
    out = rgb.astype(np.float32)
    height, width = rgb.shape[:2]
    for colour, name in zip(itertools.cycle(PALETTE), sorted(masks)):
        mask = masks[name].astype(np.uint8)
        if mask.shape != (height, width):
            mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
        selected = mask.astype(bool)
        out[selected] = (1 - alpha) * out[selected] + alpha * np.asarray(colour, np.float32)
    return out.astype(np.uint8)


def upscale(image: np.ndarray, height: int) -> np.ndarray:
    """Nearest-neighbour resize to ``height`` rows, keeping the aspect ratio; even sizes for h264."""
    width = round(image.shape[1] * height / image.shape[0])
    return cv2.resize(image, (width + width % 2, height + height % 2), interpolation=cv2.INTER_NEAREST)


def write_mp4(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: int = 30) -> Path:
    """Write uint8 RGB ``[H, W, 3]`` frames as an h264 mp4, atomically (a temporary file renamed into place)."""
    import imageio.v2 as imageio

    with atomic_path(path, suffix=".mp4") as tmp, imageio.get_writer(
            tmp, fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=2,
            ffmpeg_log_level="error") as writer:
        for frame in frames:
            writer.append_data(frame)
    return Path(path)


def heatmap_overlay(rgb: np.ndarray, values: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Alpha-blend an OpenCV JET heat map of ``values`` (any range, min-max normalised; resized to the image) onto
    ``rgb`` uint8 ``[H, W, 3]``, as in the thesis' figures."""
    height, width = rgb.shape[:2]
    low, high = float(values.min()), float(values.max())
    scaled = np.zeros_like(values, dtype=np.float32) if high <= low else (values - low) / (high - low)
    scaled = cv2.resize(scaled.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    heat = cv2.cvtColor(cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(rgb, 1 - alpha, heat, alpha, 0)


def titled(image: np.ndarray, title: str, height: int = 24) -> np.ndarray:
    """The image with a black title bar above it."""
    bar = np.zeros((height, image.shape[1], 3), dtype=np.uint8)
    cv2.putText(bar, title, (4, height - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([bar, image], axis=0)
