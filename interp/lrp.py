"""Layer-wise relevance propagation with zennit, for every agent.

zennit's composites hook the agents' ``Linear`` and ``Conv2d`` modules; the agents compute everything between those
layers with the conservative rules of :mod:`interp.agents.conservative` (attention weights, LSTM gates and
normalisation statistics held constant), so relevance flows through values and cell inputs only. As for saliency,
a step is explained at its current frame with the pre-step state fixed; relevance that reaches the pre-step state
or the step's other inputs (previous reward and action) is reported beside the frame's.

:class:`LRP` has the calling convention of the saliency methods (``attribute(agent, steps) -> {"actor",
"critic"}``, maps ``[N, S, S]``, signed relevance summed over the stacked frames); :func:`explain_outputs` and
:func:`explain_layer` are the passes underneath, also used by :mod:`interp.atom`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from zennit import composites, rules
from zennit.composites import SpecialFirstLayerMapComposite
from zennit.core import ParamMod, RemovableHandle, RemovableHandleList
from zennit.types import Convolution, Linear

from interp.agents.conservative import conservative_propagation
from interp.hooks import hook_points
from interp.steps import Steps

RULES = ("epsilon", "zplus", "epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1")
FIRST_LAYER_RULES = ("flat", "wsquare", "zplus", "epsilon")


class Composite(SpecialFirstLayerMapComposite):
    """A zennit composite for the agents (zennit's ``Gradient`` attributor takes it too): rules by layer type
    (``layer_map``), an optional rule for the first layer the frame meets (``first_map``), and ``zero_biases``,
    which the agents' conservative operations read to keep LayerNorm biases out of the relevance as zennit keeps the
    biases of the layers it hooks (``zero_params=["bias"]``)."""

    def __init__(self, layer_map: list, first_map: list | None = None, *, zero_biases: bool = False):
        super().__init__(layer_map=layer_map, first_map=first_map or [])
        self.zero_biases = zero_biases

    def register(self, module: torch.nn.Module) -> None:
        """zennit's registration (its ``Composite.register``), with every rule attached by
        :func:`_attach_without_the_true_gradient`."""
        self.remove()
        for canonizer in self.canonizers:
            self.handles += canonizer.apply(module)
        context = {}
        for name, child in module.named_modules():
            template = self.module_map(context, name, child)
            if template is not None:
                hook = template.copy()
                self.hook_refs.add(hook)
                self.handles.append(_attach_without_the_true_gradient(hook, child))


class _Attached(torch.autograd.Function):
    """A layer's output, computed without a graph, attached to the layer's input: its backward is the rule's."""

    @staticmethod
    def forward(ctx, input, output, rule):
        ctx.rule = rule
        return output.view_as(output)

    @staticmethod
    def backward(ctx, grad_output):
        return ctx.rule(grad_output), None, None


def _attach_without_the_true_gradient(hook, module: torch.nn.Module) -> RemovableHandleList:
    """Register a zennit rule on ``module`` so that autograd computes only the rule's relevance at the module's
    input. zennit's own hooks let autograd compute the layer's true input gradient, then replace it with the rule's:
    a backward pass of every hooked layer, a quarter of a relevance pass, thrown away. Here the layer computes on a
    detached copy of its input (as zennit's, a copy: a layer may change its input in place) and its output is
    attached to the input through :class:`_Attached`; the rule sees the same input, output gradient and module."""
    attached = {}

    def pre_forward(module, input):
        if not input[0].requires_grad:
            return None
        attached["input"] = input[0]
        return (input[0].detach().clone(), *input[1:])

    def post_forward(module, input, output):
        if "input" not in attached:
            return None
        original = attached.pop("input")
        hook.forward(module, input, output)  # a rule keeps the input it recomputes the layer from

        def rule(grad_output):
            return hook.backward(module, (original,), (grad_output,))[0]

        return _Attached.apply(original, output.detach(), rule)

    return RemovableHandleList([RemovableHandle(hook), module.register_forward_pre_hook(pre_forward),
                                module.register_forward_hook(post_forward)])


class ZPlus(rules.ZPlus):
    """zennit's z+ rule, with the same relevance to the last bit and half the work where a layer's input has no
    negative entry (the frame, and every layer after a ReLU): the rule's second half, negative inputs through negative
    weights without bias, then contributes exactly zero to the denominator and to the relevance, so it is skipped.
    Where an input has a negative entry, zennit's two halves run as they are."""

    def backward(self, module, grad_input, grad_output):
        stored = self.stored_tensors["input"][0]
        if (stored < 0).any():
            return super().backward(module, grad_input, grad_output)
        input = stored.clone().requires_grad_()  # the first half's input modifier, clamp(min=0), is the identity
        with ParamMod.ensure(self.param_modifiers[0])(module) as modified, torch.enable_grad():
            output = modified.forward(input)
        scaled = self.gradient_mapper(grad_output[0], [output])[0]  # the upper relevance over the stabilised output
        (gradient,) = torch.autograd.grad(output, input, scaled, create_graph=grad_output[0].requires_grad)
        relevance = input * gradient
        return tuple(relevance if original.shape == relevance.shape else None for original in grad_input)


def make_composite(rule: str = "epsilon_plus", *, first_layer: str | None = None, zero_biases: bool = False,
                   epsilon: float = 1e-6) -> Composite:
    """A :class:`Composite` by name.

    Args:
        rule: ``epsilon`` (LRP-epsilon everywhere), ``zplus`` (z+, i.e. AlphaBeta(1, 0), everywhere: the ATOM
            paper), or zennit's ``epsilon_plus`` (z+ for convolutions, epsilon for linear layers),
            ``epsilon_plus_flat``, ``epsilon_alpha2_beta1``.
        first_layer: a different rule for the first layer the frame meets: ``flat``, ``wsquare``, ``zplus``,
            ``epsilon``; None keeps ``rule``'s own choice.
        zero_biases: no bias takes relevance: those of linear and convolutional layers (zennit's
            ``zero_params=["bias"]``) and those of LayerNorms.
    """
    zero = ["bias"] if zero_biases else None
    named_composites = {"epsilon_plus": composites.EpsilonPlus, "epsilon_plus_flat": composites.EpsilonPlusFlat,
                        "epsilon_alpha2_beta1": composites.EpsilonAlpha2Beta1}
    first_map = []
    if rule == "epsilon":
        layer_map = composites.layer_map_base() + [((Convolution, Linear), rules.Epsilon(epsilon, zero_params=zero))]
    elif rule == "zplus":
        layer_map = composites.layer_map_base() + [((Convolution, Linear), rules.ZPlus(zero_params=zero))]
    elif rule in named_composites:
        named = named_composites[rule](epsilon=epsilon, zero_params=zero)
        layer_map, first_map = named.layer_map, getattr(named, "first_map", [])
    else:
        raise ValueError(f"unknown LRP rule {rule!r}; known: {', '.join(RULES)}")
    if first_layer is not None:
        first_rules = {"flat": rules.Flat, "wsquare": rules.WSquare, "zplus": lambda: rules.ZPlus(zero_params=zero),
                       "epsilon": lambda: rules.Epsilon(epsilon, zero_params=zero)}
        if first_layer not in first_rules:
            raise ValueError(f"unknown first-layer rule {first_layer!r}; known: {', '.join(FIRST_LAYER_RULES)}")
        first_map = [((Convolution, Linear), first_rules[first_layer]())]
    return Composite(_with_our_zplus(layer_map, zero), _with_our_zplus(first_map, zero), zero_biases=zero_biases)


def _with_our_zplus(layer_map: list, zero_params: list[str] | None) -> list:
    """``layer_map`` with zennit's z+ rules (default stabiliser, as every composite here makes them) replaced by
    :class:`ZPlus`."""
    return [(types, ZPlus(zero_params=zero_params) if type(rule) is rules.ZPlus else rule)
            for types, rule in layer_map]


@dataclass
class Relevance:
    """The relevance of one pass over ``N`` steps. What the pass puts in (``seeded``) arrives at the step's inputs
    (``frame``, ``step_inputs``, ``state``) and at the additive constants on the way (``constants``):
    ``total() == seeded`` up to the rules' stabiliser (``epsilon``, 1e-6 of a layer's output)."""

    frame: torch.Tensor
    """``[N, C, S, S]``"""
    seeded: torch.Tensor
    """``[N]``: the relevance put in at the start"""
    step_inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    """hook name -> relevance of the previous reward ``[N]`` or action ``[N, A]``"""
    state: tuple[torch.Tensor | None, ...] = ()
    """relevance of each pre-step state tensor (None for non-float ones)"""
    layer: torch.Tensor | None = None
    """``[N, F]``: relevance at the layer asked for with ``capture``"""
    constants: dict[str, torch.Tensor] = field(default_factory=dict)
    """parameter name -> ``[N]``: the relevance an additive constant took, named as in ``agent.named_parameters()``
    or ``named_buffers()``: a linear or convolutional layer's bias (``actor_critic.policy.bias``: what that layer did
    not pass on), a LayerNorm's bias, the spatial basis (``answerer.attention.basis``), position embeddings
    (``position``); and ``stabiliser``, what the stabilisers of the other operations kept (``R eps / (z + eps)``)"""

    def total_input(self) -> torch.Tensor:
        """``[N]``: everything that reached the step's inputs and pre-step state."""
        total = self.frame.flatten(1).sum(1)
        for value in [*self.step_inputs.values(), *self.state]:
            if value is not None:
                total = total + value.reshape(len(total), -1).sum(1)
        return total

    def total(self) -> torch.Tensor:
        """``[N]``: the inputs' and the constants' relevance, which together account for ``seeded``."""
        return self.total_input() + sum(self.constants.values(), torch.zeros_like(self.seeded))


Seeder = Callable[[torch.Tensor], torch.Tensor]


def _propagate(agent, steps: Steps, composite: Composite, start: str | None, seeder: Seeder,
               capture: str | None) -> Relevance:
    """One relevance pass: forward the steps, seed ``seeder(tensor)`` at ``start`` (a hook point's output; None:
    the output chosen by the seeder from the stacked ``[N, A + 1]`` logits and value) and propagate to the inputs,
    recording what the additive constants on the way take."""
    points = hook_points(agent)
    for name in (start, capture):
        if name is not None and name not in points:
            raise ValueError(f"{agent.name} has no hook point {name!r}; it has {', '.join(points)}")
    count = len(steps)
    frame = steps.inputs["frame"].to(agent.dtype).detach().requires_grad_(True)
    state = tuple(s.detach().clone().requires_grad_(True) if s.is_floating_point() else s for s in steps.state)
    captured: dict[str, torch.Tensor] = {}
    leaves: dict[str, torch.Tensor] = {}  # step inputs and constants, made leaves so that their relevance is kept
    kept: dict[str, torch.Tensor] = {}
    stabiliser: list[torch.Tensor] = []
    handles = _capture(points, {start, capture} - {None}, captured, leaves)
    try:
        with (conservative_propagation(zero_biases=composite.zero_biases, stabiliser=stabiliser),
              composite.context(agent) as model, torch.enable_grad()):
            _record_kept_relevance(composite, model, kept, count)
            outputs, _ = model({**steps.inputs, "frame": frame}, state)
            if start is None:
                origin = torch.cat([outputs["policy_logits"][0], outputs["baseline"][0, :, None]], dim=1)
            else:
                origin = captured[start]
            seed = seeder(origin.reshape(count, -1)).reshape(origin.shape)
            wanted = [frame, *[s for s in state if s.requires_grad], *leaves.values()]
            if capture is not None:
                wanted.append(captured[capture])
            gradients = torch.autograd.grad(origin, wanted, seed, allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
    gradients = [torch.zeros_like(w) if g is None else g.detach() for w, g in zip(wanted, gradients, strict=True)]
    relevance_frame, rest = gradients[0][0], iter(gradients[1:])
    state_relevance = tuple(next(rest) if s.requires_grad else None for s in state)
    step_inputs, constants = {}, dict(kept)
    for name in leaves:
        value = next(rest).reshape(count, -1)
        if points[name].role == "step_input":
            step_inputs[name] = value
        else:  # "answerer.attention.hook_basis" took what the buffer "answerer.attention.basis" took
            constants[name.replace("hook_", "")] = value.sum(1)
    for kept_there in stabiliser:
        constants["stabiliser"] = constants.get("stabiliser", 0) + kept_there.reshape(count, -1).sum(1)
    layer = next(rest).reshape(count, -1) if capture is not None else None
    return Relevance(relevance_frame, seed.detach().reshape(count, -1).sum(1), step_inputs, state_relevance, layer,
                     constants)


def _capture(points: dict, names: set[str], captured: dict[str, torch.Tensor], leaves: dict[str, torch.Tensor]
             ) -> list:
    """Forward hooks that keep the outputs of the hook points ``names`` in ``captured`` and make the step inputs'
    and the constants' outputs leaves of the graph (``leaves``), whose gradient is then their relevance."""

    def keep(name):
        def hook(module, args, output):
            captured[name] = output
        return hook

    def make_leaf(name):
        def hook(module, args, output):
            leaves[name] = output.detach().requires_grad_(True)
            return leaves[name]
        return hook

    handles = [points[name].register_forward_hook(keep(name)) for name in names]
    return handles + [point.register_forward_hook(make_leaf(name)) for name, point in points.items()
                      if point.role in ("step_input", "constant")]


def _record_kept_relevance(composite: Composite, model: torch.nn.Module, kept: dict[str, torch.Tensor],
                           count: int) -> None:
    """Make every layer hooked by ``composite`` add, per step, the relevance it receives but does not pass on to
    ``kept["<layer>.bias"]`` (its bias's share, and the rule's stabiliser's), or to ``kept["stabiliser"]`` for a
    layer without a bias."""
    names = {module: name for name, module in model.named_modules()}
    for hook in list(composite.hook_refs):

        def accounted(module, grad_input, grad_output, backward=hook.backward):
            passed_on = backward(module, grad_input, grad_output)
            if passed_on[0] is not None:
                lost = grad_output[0].reshape(count, -1).sum(1) - passed_on[0].reshape(count, -1).sum(1)
                has_bias = getattr(module, "bias", None) is not None and not composite.zero_biases
                key = f"{names[module]}.bias" if has_bias else "stabiliser"
                kept[key] = kept.get(key, 0) + lost.detach()
            return passed_on

        hook.backward = accounted


OUTPUTS = ("action", "logits")
INITIAL_RELEVANCE = ("value", "one")


def output_seeder(target: str, output: str = "action", initial: str = "value") -> Seeder:
    """The relevance put in at the outputs. ``target="actor"``: at the chosen action's logit (``output="action"``)
    or at every logit (``"logits"``); ``"critic"``: at the value. ``initial="value"``: each explained output starts
    with its own value ``f(x)`` (LRP's usual seed: the relevance at the inputs then sums to ``f(x)``, and changes
    sign with it); ``"one"``: with 1 (the relevance is then each input's share of the explained decision)."""
    if target not in ("actor", "critic") or output not in OUTPUTS or initial not in INITIAL_RELEVANCE:
        raise ValueError(f"target must be actor or critic, output one of {OUTPUTS} and initial one of "
                         f"{INITIAL_RELEVANCE}; got {target!r}, {output!r}, {initial!r}")

    def seeder(outputs: torch.Tensor) -> torch.Tensor:  # [N, A + 1]: logits, then the value
        mask = torch.zeros_like(outputs)
        if target == "critic":
            mask[:, -1] = 1
        elif output == "logits":
            mask[:, :-1] = 1
        else:
            mask.scatter_(1, outputs[:, :-1].argmax(1, keepdim=True), 1.0)
        return outputs.detach() * mask if initial == "value" else mask

    return seeder


def explain_outputs(agent, steps: Steps, composite: Composite, *, target: str = "actor", output: str = "action",
                    initial: str = "value", capture: str | None = None) -> Relevance:
    """Relevance of the ``target`` output at every step (see :func:`output_seeder`); ``capture``: also the relevance
    at that hook point."""
    return _propagate(agent, steps, composite, None, output_seeder(target, output, initial), capture)


def explain_layer(agent, steps: Steps, composite, layer: str, seeds: torch.Tensor) -> Relevance:
    """Relevance from ``seeds`` ``[N, F]`` put in at the output of hook point ``layer`` (e.g. a one-hot per step
    to explain single neurons)."""
    return _propagate(agent, steps, composite, layer, lambda out: seeds.to(out.device, out.dtype), None)


@dataclass(frozen=True)
class LRP:
    """LRP maps of the chosen action's logit (actor) and of the value (critic)."""

    rule: str = "epsilon_plus"
    first_layer: str | None = None
    batch_size: int = 32
    """steps per relevance pass"""
    name: str = "lrp"

    def attribute(self, agent, steps: Steps) -> dict[str, np.ndarray]:
        composite = make_composite(self.rule, first_layer=self.first_layer)
        maps = {"actor": [], "critic": []}
        for chunk in steps.chunks(self.batch_size):
            for target in maps:
                relevance = explain_outputs(agent, chunk, composite, target=target)
                maps[target].append(relevance.frame.sum(1).cpu())
        return {k: torch.cat(v).float().numpy() for k, v in maps.items()}
