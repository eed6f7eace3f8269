"""Named hook points in the manner of TransformerLens: identity modules placed where tensors are formed.

A model calls ``weights = self.hook_weights(weights)``; anything can read the tensor with a forward hook, and
no model code changes are needed to analyse a model. :func:`record_attention` captures every attention hook of an
agent for the forward passes inside a ``with`` block and removes its hooks on the way out, also on errors.

A hook point has a ``role``: ``attention`` (attention weights), ``attention_logits``, ``features`` (the layer F_c
whose output the policy and value heads read), ``step_input`` (the previous reward and action as the agent sees
them) or ``constant`` (an additive constant such as a LayerNorm bias or position embeddings, see
:mod:`interp.lrp`). Attention is recorded in the layer's own layout; ``layout`` names it, and
:mod:`interp.attention` turns it into maps:

- ``spatial``: ``[B, heads, h, w]``, one map per query over the vision grid (Mott, spatio-temporal);
- the layouts of :class:`interp.agents.transformer.MultiHeadAttention`, ``[B, groups, heads, queries, keys]``:
  ``temporal`` (Transformer-XL: one group, the call's steps attending to memory and themselves), ``time``
  (TimeSformer divided time attention: a group per patch position, over frames), ``space`` (TimeSformer divided
  space attention: a group per frame, over its patches) and ``space_time`` (TimeSformer joint attention: one group,
  ``frames x patches`` queries attending to ``key frames x patches`` keys, frame-major).

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

ROLES = ("attention", "attention_logits", "features", "step_input", "constant")
ATTENTION_LAYOUTS = ("spatial", "temporal", "time", "space", "space_time")


class HookPoint(nn.Module):
    """Identity module marking a tensor for analysis.

    Args:
        role: what the tensor is, one of ``ROLES``.
        layout: how attention is laid out, one of ``ATTENTION_LAYOUTS`` (attention roles only).
        grid: ``(h, w)`` of the spatial grid the tensor is laid out on, if any.
        image_size: side of the input frame the grid covers, in pixels.
    """

    def __init__(self, role: str, layout: str | None = None, grid: tuple[int, int] | None = None,
                 image_size: int | None = None):
        super().__init__()
        if role not in ROLES or (layout is not None and layout not in ATTENTION_LAYOUTS):
            raise ValueError(f"role must be one of {ROLES} and layout one of {ATTENTION_LAYOUTS}, got {role!r}, "
                             f"{layout!r}")
        self.role, self.layout, self.grid, self.image_size = role, layout, grid, image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def extra_repr(self) -> str:
        return f"role={self.role!r}, layout={self.layout!r}, grid={self.grid}"


def hook_points(model: nn.Module, roles: tuple[str, ...] | None = None) -> dict[str, HookPoint]:
    """The model's hook points by dotted name, optionally only those of the given roles."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, HookPoint) and (roles is None or module.role in roles)}


@dataclass
class AttentionRecord:
    """Everything captured at one attention hook point."""

    name: str
    layout: str
    grid: tuple[int, int] | None
    image_size: int | None
    tensors: list[torch.Tensor] = field(default_factory=list)
    """one detached tensor per call, in call order, in the hook's layout"""

    @property
    def patch_size(self) -> float | None:
        """Pixels of the input frame per grid cell (e.g. 84 / 11 for the IMPALA ResNet grid)."""
        if self.grid is None or self.image_size is None:
            return None
        return self.image_size / self.grid[0]

    def key_offsets(self, call: int = 0) -> torch.Tensor | None:
        """For attention over time: each key step's offset from the first query step of that call."""
        if self.layout not in ("temporal", "time", "space_time"):
            return None
        queries, keys = self.tensors[call].shape[-2:]
        if self.layout == "space_time":  # frame-major: patches per frame
            patches = self.grid[0] * self.grid[1]
            queries, keys = queries // patches, keys // patches
        return torch.arange(keys) - (keys - queries)


@contextlib.contextmanager
def record_attention(model: nn.Module, *, to_cpu: bool = True) -> Iterator[dict[str, AttentionRecord]]:
    """Capture every attention hook point of ``model`` during the forward passes inside the block.

    >>> with record_attention(agent) as attention:
    ...     agent(inputs, state)
    >>> attention["answerer.attention.hook_weights"].tensors[0].shape   # Mott: [B, heads, h, w]

    Yields:
        hook name -> :class:`AttentionRecord`, filled as the model runs.
    """
    records: dict[str, AttentionRecord] = {}
    handles = []
    try:
        for name, point in hook_points(model, ("attention",)).items():
            record = AttentionRecord(name, point.layout, point.grid, point.image_size)
            records[name] = record

            def capture(module, args, output, record=record):
                record.tensors.append(output.detach().cpu() if to_cpu else output.detach())

            handles.append(point.register_forward_hook(capture))
        yield records
    finally:
        for handle in handles:
            handle.remove()
