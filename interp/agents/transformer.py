"""Attention over time with Transformer-XL memory: the stable gated TrXL core and the TimeSformer blocks.

Memory semantics, shared by every agent with memory: each step attends to itself and to at most ``mem_len``
earlier steps of the same episode (a sliding window). Memory tensors hold the inputs of each layer for the
last ``mem_len`` steps, detached (no gradient through memory, as in Transformer-XL), with a validity mask that
is cleared at episode starts. Because the window does not depend on how a sequence is cut into calls, stepping
one step at a time with the carried state gives the same outputs as one call over the whole sequence.
Positions over time enter as a learned per-head bias on the distance ``0..mem_len`` between query and key.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from interp.agents.conservative import LayerNorm, add, passthrough, proportional
from interp.hooks import HookPoint


def memory_mask(done: torch.Tensor, memory_valid: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Which keys each query may attend to.

    Args:
        done: bool ``[T, B]``; True where a step starts a new episode.
        memory_valid: bool ``[B, M]``; which memory slots hold steps of the episode running at the call's start.
        window: the longest distance between a query and a key (``mem_len``).

    Returns:
        ``allowed`` bool ``[B, T, M + T]`` and ``distance`` long ``[T, M + T]`` (query step minus key step,
        clamped to ``0..window``).
    """
    steps, batch = done.shape
    mem_len = memory_valid.shape[1]
    segment = torch.cumsum(done.long(), dim=0).T  # [B, T]; memory belongs to segment 0
    key_segment = torch.cat([segment.new_zeros(batch, mem_len), segment], dim=1)
    key_valid = torch.cat([memory_valid, memory_valid.new_ones(batch, steps)], dim=1)
    distance = (torch.arange(steps, device=done.device)[:, None] + mem_len
                - torch.arange(mem_len + steps, device=done.device)[None, :])
    allowed = ((distance >= 0) & (distance <= window))[None] & key_valid[:, None, :]
    allowed &= segment[:, :, None] == key_segment[:, None, :]
    return allowed, distance.clamp(0, window)


def slide(window: torch.Tensor, entered: torch.Tensor) -> torch.Tensor:
    """The last ``M`` steps of ``window [B, M, ...]`` followed by ``entered [B, T, ...]``."""
    joined = torch.cat([window, entered], dim=1)
    return joined[:, joined.shape[1] - window.shape[1]:]


def push_memory(memory: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Memory ``[B, M, ...]`` followed by a call's inputs ``[B, T, ...]``, detached: the last ``M`` steps."""
    return slide(memory, inputs.detach())


def push_validity(memory_valid: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
    """Validity ``[B, M]`` of the memory after a call with episode starts ``done`` ``[T, B]``: only steps of the
    episode running at the end of the call stay valid."""
    segment = torch.cumsum(done.long(), dim=0).T  # [B, T]
    key_segment = torch.cat([segment.new_zeros(memory_valid.shape), segment], dim=1)
    key_valid = torch.cat([memory_valid, torch.ones_like(segment, dtype=torch.bool)], dim=1)
    valid = key_valid & (key_segment == segment[:, -1:])
    return valid[:, valid.shape[1] - memory_valid.shape[1]:]


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention over groups of sequences, with an optional relative bias.

    Queries ``[B, G, Q, d]`` attend to keys/values ``[B, G, K, d]`` within each group ``G`` (one group for a
    Transformer-XL core, one per patch for TimeSformer time attention, one per frame for space attention).
    The weights ``[B, G, heads, Q, K]`` pass through ``hook_weights``, whose ``layout`` says what the groups,
    queries and keys are (see :mod:`interp.hooks`).
    """

    def __init__(self, dim: int, heads: int, layout: str, *, window: int | None = None,
                 grid: tuple[int, int] | None = None, image_size: int | None = None):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dimension {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.distance_bias = nn.Parameter(torch.zeros(heads, window + 1)) if window is not None else None
        self.hook_weights = HookPoint("attention", layout, grid, image_size)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, allowed: torch.Tensor | None = None,
                distance: torch.Tensor | None = None) -> torch.Tensor:
        """``allowed`` bool broadcastable to ``[B, G, Q, K]``; ``distance`` long ``[Q, K]`` into the bias."""
        return self.attend(queries, *self.project(keys), allowed, distance)

    def project(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and the values of ``tokens [..., K, dim]``, each shaped like them."""
        return self.key(tokens), self.value(tokens)

    def attend(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
               allowed: torch.Tensor | None = None, distance: torch.Tensor | None = None) -> torch.Tensor:
        """As :meth:`forward`, with keys and values ``[B, G, K, d]`` from :meth:`project`."""
        batch, groups, n_queries, dim = queries.shape
        n_keys = keys.shape[2]

        def split(x: torch.Tensor, length: int) -> torch.Tensor:  # -> [B, G, heads, L, d_head]
            return x.reshape(batch, groups, length, self.heads, dim // self.heads).transpose(2, 3)

        q = split(self.query(queries), n_queries)
        k = split(keys, n_keys)
        v = split(values, n_keys)
        scores = q @ k.transpose(-1, -2) / math.sqrt(dim // self.heads)  # [B, G, heads, Q, K]
        if self.distance_bias is not None:
            scores = scores + self.distance_bias[:, distance]
        if allowed is not None:
            scores = scores.masked_fill(~allowed.unsqueeze(2), float("-inf"))
        weights = self.hook_weights(torch.softmax(scores, dim=-1))
        mixed = proportional(lambda v: weights @ v, v).transpose(2, 3).reshape(batch, groups, n_queries, dim)
        return self.out(mixed)


class GRUGate(nn.Module):
    """Gated residual of GTrXL (Parisotto et al. 2020); the update gate's bias starts at -2, so a new layer
    starts close to the identity."""

    def __init__(self, dim: int, bias: float = -2.0):
        super().__init__()
        self.reset_gate = nn.Linear(2 * dim, dim)
        self.update_gate = nn.Linear(2 * dim, dim)
        self.candidate_input = nn.Linear(dim, dim)
        self.candidate_state = nn.Linear(dim, dim, bias=False)
        self.gate_bias = bias
        self.reset_gate_bias()

    @torch.no_grad()
    def reset_gate_bias(self) -> None:
        nn.init.constant_(self.update_gate.bias, self.gate_bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        both = torch.cat([y, x], dim=-1)
        r = torch.sigmoid(self.reset_gate(both))
        z = torch.sigmoid(self.update_gate(both))
        reset = proportional(lambda x: r * x, x)
        candidate = passthrough(torch.tanh, add(self.candidate_input(y), self.candidate_state(reset)))
        return proportional(lambda x, candidate: (1 - z) * x + z * candidate, x, candidate)


class Residual(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return add(x, y)


class TransformerXLLayer(nn.Module):
    """Stable Transformer-XL layer: LayerNorm before attention (over ``[memory, x]``) and before the
    feed-forward, ReLU on each sublayer's output, then a GRU gate or a plain residual."""

    def __init__(self, dim: int, heads: int, inner_dim: int, mem_len: int, gating: bool):
        super().__init__()
        self.norm_attention = LayerNorm(dim)
        self.attention = MultiHeadAttention(dim, heads, "temporal", window=mem_len)
        self.gate_attention = GRUGate(dim) if gating else Residual()
        self.norm_feedforward = LayerNorm(dim)
        self.feedforward = nn.Sequential(nn.Linear(dim, inner_dim), nn.ReLU(), nn.Linear(inner_dim, dim))
        self.gate_feedforward = GRUGate(dim) if gating else Residual()

    def forward(self, x: torch.Tensor, memory: torch.Tensor, allowed: torch.Tensor, distance: torch.Tensor):
        """x ``[B, T, d]``, memory ``[B, M, d]`` -> ``[B, T, d]``."""
        context = self.norm_attention(torch.cat([memory, x], dim=1))
        return self.attend(x, context[:, memory.shape[1]:], *self.attention.project(context), allowed, distance)

    def attend(self, x: torch.Tensor, normed: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
               allowed: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
        """The layer on x ``[B, T, d]`` (``normed``: x through ``norm_attention``), given the keys and values of
        memory and x ``[B, M + T, d]``."""
        attended = self.attention.attend(normed[:, None], keys[:, None], values[:, None], allowed[:, None], distance)
        x = self.gate_attention(x, torch.relu(attended[:, 0]))
        return self.gate_feedforward(x, torch.relu(self.feedforward(self.norm_feedforward(x))))


class MemoryCore(nn.Module):
    """A stack of layers with Transformer-XL memory, each called as ``layer(x, memory, allowed, distance)`` on
    batch-first steps ``[B, T, *token_shape]``. State: memory ``[B, layers, M, *token_shape]`` and validity
    ``[B, M]``."""

    def __init__(self, layers: list[nn.Module], mem_len: int, token_shape: tuple[int, ...]):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.mem_len, self.token_shape = mem_len, token_shape

    @property
    def horizon(self) -> int | None:
        """The steps the memory depends on when the core's inputs do not depend on it: one layer keeps its last
        ``mem_len`` inputs, whatever came before; a deeper layer keeps outputs of attention over older memory."""
        return self.mem_len if len(self.layers) == 1 else None

    def initial_state(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        weight = next(self.parameters())
        return (torch.zeros(batch_size, len(self.layers), self.mem_len, *self.token_shape, device=weight.device,
                            dtype=weight.dtype),
                torch.zeros(batch_size, self.mem_len, dtype=torch.bool, device=weight.device))

    def forward(self, x: torch.Tensor, done: torch.Tensor, memory: torch.Tensor, valid: torch.Tensor):
        """x ``[T, B, *token_shape]``, done ``[T, B]`` -> output like x, new memory, new validity."""
        allowed, distance = memory_mask(done, valid, self.mem_len)
        hidden = x.transpose(0, 1)
        new_memory = []
        for index, layer in enumerate(self.layers):
            new_memory.append(push_memory(memory[:, index], hidden))
            hidden = layer(hidden, memory[:, index], allowed, distance)
        return hidden.transpose(0, 1), torch.stack(new_memory, dim=1), push_validity(valid, done)


class CoreSteps:
    """A Transformer-XL core (:func:`transformer_xl_core`) called one step at a time, as a loop must where a step's
    input depends on the last step's output (the sequential spatio-temporal agent's queries). The keys and values
    of each memory step are projected once, where calling the core per step would project its whole memory each
    time (80 steps for one new one). Outputs, gradients and state are those of calling the core per step, up to
    float rounding; as there, each layer normalises once per step (a relevance pass's constants are per call).

    Built from the core's state, memory ``[B, layers, M, d]`` and validity ``[B, M]``; after the last step,
    :attr:`memory` and :attr:`valid` are the new state."""

    def __init__(self, core: MemoryCore, memory: torch.Tensor, valid: torch.Tensor):
        self.core, self.memory, self.valid = core, memory, valid
        self.unprojected = list(memory.unbind(dim=1))
        """per layer, the memory steps ``[B, U, d]`` whose keys and values are not projected yet: all of them
        before the first step, then the last step's input"""
        self.projected: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(core.layers)
        """per layer, the keys and values of the memory ``[B, M, d]`` once projected"""

    def __call__(self, x: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        """x ``[B, d]``, done ``[B]`` -> the core's output ``[B, d]``."""
        allowed, distance = memory_mask(done[None], self.valid, self.core.mem_len)
        hidden, memory = x[:, None], []
        for index, layer in enumerate(self.core.layers):
            entered = self.unprojected[index].shape[1]
            normed = layer.norm_attention(torch.cat([self.unprojected[index], hidden], dim=1))
            keys, values = layer.attention.project(normed)
            memory_keys, memory_values = keys[:, :entered], values[:, :entered]
            if self.projected[index] is not None:
                kept_keys, kept_values = self.projected[index]
                memory_keys, memory_values = slide(kept_keys, memory_keys), slide(kept_values, memory_values)
            self.projected[index] = memory_keys, memory_values
            self.unprojected[index] = hidden.detach()
            memory.append(push_memory(self.memory[:, index], hidden))
            hidden = layer.attend(hidden, normed[:, entered:], torch.cat([memory_keys, keys[:, entered:]], dim=1),
                                  torch.cat([memory_values, values[:, entered:]], dim=1), allowed, distance)
        self.memory, self.valid = torch.stack(memory, dim=1), push_validity(self.valid, done[None])
        return hidden[:, 0]


def transformer_xl_core(dim: int, layers: int, heads: int, inner_dim: int, mem_len: int, gating: bool) -> MemoryCore:
    """Stable (gated) Transformer-XL: tokens ``[d]`` per step."""
    return MemoryCore([TransformerXLLayer(dim, heads, inner_dim, mem_len, gating) for _ in range(layers)],
                      mem_len, (dim,))


class DividedSpaceTimeBlock(nn.Module):
    """TimeSformer divided block: time attention over the same patch in memory and current frames, through a
    zero-initialised ``temporal_fc`` residual; then space attention within each frame; then an MLP (ratio 4,
    GELU). All pre-LayerNorm."""

    def __init__(self, dim: int, heads: int, mem_len: int, grid: tuple[int, int], image_size: int):
        super().__init__()
        self.norm_time = LayerNorm(dim)
        self.time_attention = MultiHeadAttention(dim, heads, "time", window=mem_len, grid=grid, image_size=image_size)
        self.temporal_fc = nn.Linear(dim, dim)
        nn.init.zeros_(self.temporal_fc.weight)
        nn.init.zeros_(self.temporal_fc.bias)
        self.norm_space = LayerNorm(dim)
        self.space_attention = MultiHeadAttention(dim, heads, "space", grid=grid, image_size=image_size)
        self.norm_mlp = LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, memory: torch.Tensor, allowed: torch.Tensor, distance: torch.Tensor):
        """x ``[B, T, N, D]`` (N patches), memory ``[B, M, N, D]`` -> ``[B, T, N, D]``."""
        mem_len = memory.shape[1]
        context = self.norm_time(torch.cat([memory, x], dim=1)).transpose(1, 2)  # [B, N, M+T, D]
        attended = self.time_attention(context[:, :, mem_len:], context, allowed[:, None], distance)
        x = add(x, self.temporal_fc(attended.transpose(1, 2)))
        frames = self.norm_space(x)
        x = add(x, self.space_attention(frames, frames))
        return add(x, self.mlp(self.norm_mlp(x)))


class JointSpaceTimeBlock(nn.Module):
    """TimeSformer joint block: every patch of a frame attends to every patch of the frames in its window."""

    def __init__(self, dim: int, heads: int, mem_len: int, grid: tuple[int, int], image_size: int):
        super().__init__()
        self.patches = grid[0] * grid[1]
        self.norm_attention = LayerNorm(dim)
        self.attention = MultiHeadAttention(dim, heads, "space_time", window=mem_len, grid=grid,
                                            image_size=image_size)
        self.norm_mlp = LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, memory: torch.Tensor, allowed: torch.Tensor, distance: torch.Tensor):
        batch, steps, patches, dim = x.shape
        mem_len = memory.shape[1]
        context = self.norm_attention(torch.cat([memory, x], dim=1))  # [B, M+T, N, D]
        queries = context[:, mem_len:].reshape(batch, 1, steps * patches, dim)
        keys = context.reshape(batch, 1, (mem_len + steps) * patches, dim)

        def per_patch(frame_level: torch.Tensor) -> torch.Tensor:  # [..., T, K] -> [..., T*N, K*N]
            expanded = frame_level[..., :, None, :, None].expand(*frame_level.shape[:-2], steps, patches,
                                                                  mem_len + steps, patches)
            return expanded.reshape(*frame_level.shape[:-2], steps * patches, (mem_len + steps) * patches)

        attended = self.attention(queries, keys, per_patch(allowed)[:, None], per_patch(distance))
        x = add(x, attended.reshape(batch, steps, patches, dim))
        return add(x, self.mlp(self.norm_mlp(x)))


def timesformer_core(block: str, dim: int, layers: int, heads: int, mem_len: int, grid: tuple[int, int],
                     image_size: int) -> MemoryCore:
    """``layers`` divided or joint TimeSformer blocks: tokens ``[N patches, D]`` per frame."""
    block_type = {"divided": DividedSpaceTimeBlock, "joint": JointSpaceTimeBlock}[block]
    blocks = [block_type(dim, heads, mem_len, grid, image_size) for _ in range(layers)]
    return MemoryCore(blocks, mem_len, (grid[0] * grid[1], dim))


def run_in_chunks(core: nn.Module, x: torch.Tensor, done: torch.Tensor, memory: torch.Tensor, valid: torch.Tensor,
                  chunk_size: int):
    """Run a memory core over ``[T, B, ...]`` in chunks of ``chunk_size`` steps (the thesis' chunking of long
    unrolls), carrying memory from chunk to chunk. With windowed memory the outputs do not depend on it."""
    outputs = []
    for start in range(0, x.shape[0], chunk_size):
        chunk = slice(start, start + chunk_size)
        output, memory, valid = core(x[chunk], done[chunk], memory, valid)
        outputs.append(output)
    return torch.cat(outputs), memory, valid
