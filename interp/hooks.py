"""Named hook points in the manner of TransformerLens: identity modules placed where tensors are formed.

A model calls ``weights = self.hook_weights(weights)``; anything can read the tensor with a forward hook, and
no model code changes are needed to analyse a model. :func:`record_attention` captures every attention hook of an
agent for the forward passes inside a ``with`` block and removes its hooks on the way out, also on errors.

Attention layouts (``HookPoint.kind``):

- ``spatial``: ``[B, heads, h, w]``, one map per query over the vision grid (Mott, spatio-temporal);
- ``temporal``: ``[B, heads, queries, keys]``, Transformer-XL attention over memory and the current steps;
- ``time``: ``[B, heads, patches, queries, keys]``, TimeSformer divided time attention, per patch position;
- ``space``: ``[B, heads, frames, query_patches, key_patches]``, TimeSformer divided space attention;
- ``space_time``: ``[B, heads, frames, query_patches, key_frames, key_patches]``, TimeSformer joint attention.

Keys over time are ordered oldest first and end with the current call's own steps: key ``k`` of a call with
``Q`` query steps and ``K`` key steps belongs to the step ``k - (K - Q)`` relative to the call's first query step
(negative: from memory). ``AttentionRecord.key_offsets`` holds exactly that.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

ATTENTION_KINDS = ("spatial", "temporal", "time", "space", "space_time")
TIME_KEY_DIM = {"temporal": (2, 3), "time": (3, 4), "space_time": (2, 4)}  # (query dim, key dim) over time


class HookPoint(nn.Module):
    """Identity module marking a tensor for analysis.

    Args:
        kind: what the tensor is; one of ``ATTENTION_KINDS`` for attention weights, or any other label.
        grid: ``(h, w)`` of the spatial grid the tensor is laid out on, if any.
        image_size: side of the input frame the grid covers, in pixels.
    """

    def __init__(self, kind: str, grid: tuple[int, int] | None = None, image_size: int | None = None):
        super().__init__()
        self.kind = kind
        self.grid = grid
        self.image_size = image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, grid={self.grid}"


def hook_points(model: nn.Module, kinds: tuple[str, ...] | None = None) -> dict[str, HookPoint]:
    """The model's hook points by dotted name, optionally only those of the given kinds."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, HookPoint) and (kinds is None or module.kind in kinds)}


@dataclass
class AttentionRecord:
    """Everything captured at one attention hook point."""

    name: str
    kind: str
    grid: tuple[int, int] | None
    image_size: int | None
    tensors: list[torch.Tensor] = field(default_factory=list)
    """one detached tensor per call, in call order"""

    @property
    def patch_size(self) -> float | None:
        """Pixels of the input frame per grid cell (e.g. 84 / 11 for the IMPALA ResNet grid)."""
        if self.grid is None or self.image_size is None:
            return None
        return self.image_size / self.grid[0]

    def key_offsets(self, call: int = 0) -> torch.Tensor | None:
        """For attention over time: each key's step relative to the first query step of that call."""
        if self.kind not in TIME_KEY_DIM:
            return None
        query_dim, key_dim = TIME_KEY_DIM[self.kind]
        shape = self.tensors[call].shape
        return torch.arange(shape[key_dim]) - (shape[key_dim] - shape[query_dim])


@contextlib.contextmanager
def record_attention(model: nn.Module, *, to_cpu: bool = True) -> Iterator[dict[str, AttentionRecord]]:
    """Capture every attention hook point of ``model`` during the forward passes inside the block.

    >>> with record_attention(agent) as attention:
    ...     agent(inputs, state)
    >>> attention["attention.hook_weights"].tensors[0].shape   # Mott: [B, heads, h, w]

    Yields:
        hook name -> :class:`AttentionRecord`, filled as the model runs.
    """
    records: dict[str, AttentionRecord] = {}
    handles = []
    try:
        for name, point in hook_points(model, ATTENTION_KINDS).items():
            record = AttentionRecord(name, point.kind, point.grid, point.image_size)
            records[name] = record

            def capture(module, args, output, record=record):
                record.tensors.append(output.detach().cpu() if to_cpu else output.detach())

            handles.append(point.register_forward_hook(capture))
        yield records
    finally:
        for handle in handles:
            handle.remove()
