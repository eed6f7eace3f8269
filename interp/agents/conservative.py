"""Conservative propagation for the operations zennit has no rule for (Arras et al. 2017; Ali et al. 2022).

zennit computes LRP as a modified gradient: its rules hook ``Linear`` and ``Conv`` modules, and what travels
backwards between hooked modules is the relevance itself. Routing operations (reshape, concatenation, indexing,
ReLU, max-pooling) pass it on correctly; everything else an agent does between its layers needs a rule. Inside
:func:`conservative_propagation` the agents compute those operations with

- :func:`proportional` for an operation that is linear in its inputs once gates, attention weights and
  normalisation statistics are held constant (sums and residuals, gated products, attention-weighted values,
  LayerNorm's centring): each input receives relevance in proportion to its contribution (LRP-epsilon);
- :func:`passthrough` for element-wise nonlinearities on a data path (tanh of LSTM cell inputs, GELU): relevance
  passes unchanged (the identity rule).

Tensors an operation closes over (gates, attention weights, statistics) are constants of the relevance pass, so
relevance flows through values and cell inputs only. Outside the context both are plain calls: acting and
training compute exactly what they compute without them.

Additive constants that are not a ``Linear`` or ``Conv`` bias (a LayerNorm's bias, the spatial basis, position
embeddings) pass through a ``HookPoint("constant")`` on their way into a :func:`proportional` operation, so a relevance
pass can make them leaves and report the relevance they take (:class:`interp.lrp.Relevance`). With
``zero_biases`` a LayerNorm's bias takes none, as zennit's ``zero_params=["bias"]`` does for the layers it hooks.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from interp.hooks import HookPoint


@dataclass(frozen=True)
class _Pass:
    epsilon: float
    zero_biases: bool
    stabiliser: list[torch.Tensor] | None
    """where each operation puts the relevance its stabiliser keeps (shaped like the operation's output)"""


_PASS: contextvars.ContextVar[_Pass | None] = contextvars.ContextVar("conservative_pass", default=None)


@contextlib.contextmanager
def conservative_propagation(epsilon: float = 1e-6, *, zero_biases: bool = False,
                             stabiliser: list[torch.Tensor] | None = None) -> Iterator[None]:
    """Within the block, agents' forward passes build graphs whose gradient is conservative relevance.

    Args:
        epsilon: the stabiliser of the denominators.
        zero_biases: LayerNorm biases take no relevance.
        stabiliser: a list to which every operation appends the relevance its stabiliser kept, ``R eps / (z + eps)``
            shaped like its output, so that a relevance pass can account for all of it.
    """
    token = _PASS.set(_Pass(epsilon, zero_biases, stabiliser))
    try:
        yield
    finally:
        _PASS.reset(token)


def active() -> bool:
    return _PASS.get() is not None


class _Proportional(torch.autograd.Function):
    """LRP-epsilon through ``fn``: ``R_i = x_i * d fn / d x_i . R / stabilised(fn(x))`` for every input.

    zennit's rules attach to modules with a single input; residuals and gated products have several."""

    @staticmethod
    def forward(ctx, fn, settings, *inputs):
        ctx.fn, ctx.settings = fn, settings
        ctx.save_for_backward(*inputs)
        return fn(*inputs)

    @staticmethod
    def backward(ctx, relevance):
        inputs = [x.detach().requires_grad_(needs) for x, needs in zip(ctx.saved_tensors, ctx.needs_input_grad[2:],
                                                                        strict=True)]
        wanted = [x for x in inputs if x.requires_grad]
        with torch.enable_grad():
            output = ctx.fn(*inputs)
        stabiliser = ctx.settings.epsilon * torch.where(output.detach() >= 0, 1.0, -1.0).to(output.dtype)
        denominator = output.detach() + stabiliser
        if ctx.settings.stabiliser is not None:
            ctx.settings.stabiliser.append((relevance * stabiliser / denominator).detach())
        gradients = iter(torch.autograd.grad(output, wanted, relevance / denominator, allow_unused=True))
        result = []
        for x in inputs:
            gradient = next(gradients) if x.requires_grad else None
            result.append(None if gradient is None else x.detach() * gradient)
        return (None, None, *result)


def proportional(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
    """``fn(*inputs)``; in a relevance pass, relevance is shared among the inputs by their contributions."""
    settings = _PASS.get()
    if settings is None:
        return fn(*inputs)
    return _Proportional.apply(fn, settings, *inputs)


def passthrough(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``fn(x)`` element-wise; in a relevance pass, relevance goes back unchanged."""
    if _PASS.get() is None:
        return fn(x)
    return x + (fn(x) - x).detach()


def add(*terms: torch.Tensor) -> torch.Tensor:
    """A residual sum, shared in proportion to each term in a relevance pass."""
    return proportional(lambda *xs: sum(xs[1:], xs[0]), *terms)


class LayerNorm(torch.nn.LayerNorm):
    """``nn.LayerNorm``; in a relevance pass the standard deviation is a constant, so the (linear) centring and
    scaling pass relevance on in proportion, and the bias (through ``hook_bias``) takes its share."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.hook_bias = HookPoint("constant")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        settings = _PASS.get()
        if settings is None:
            return super().forward(x)
        std = torch.sqrt(x.var(dim=-1, unbiased=False, keepdim=True) + self.eps)

        def normalise(x: torch.Tensor) -> torch.Tensor:
            return (x - x.mean(dim=-1, keepdim=True)) / std * self.weight

        if settings.zero_biases:  # the bias is added outside the rule: the denominators leave it out
            return proportional(normalise, x) + self.bias
        return proportional(lambda x, bias: normalise(x) + bias, x, self.hook_bias(self.bias.expand_as(x)))


def lstm_update(gates: torch.Tensor, c: torch.Tensor, dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """LSTM cell update from pre-activations ``gates`` (input, forget, cell, output along ``dim``) and cell ``c``;
    in a relevance pass the three sigmoid gates are constants."""
    i, f, g, o = gates.chunk(4, dim=dim)
    i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
    c = proportional(lambda c, g: f * c + i * g, c, passthrough(torch.tanh, g))
    h = proportional(lambda t: o * t, passthrough(torch.tanh, c))
    return h, c
