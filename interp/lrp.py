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

from interp.agents.conservative import conservative_propagation
from interp.hooks import hook_points
from interp.steps import Steps

RULES = ("epsilon", "zplus", "epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1")
FIRST_LAYER_RULES = ("flat", "wsquare", "zplus", "epsilon")


def make_composite(rule: str = "epsilon_plus", *, first_layer: str | None = None, zero_biases: bool = False,
                   epsilon: float = 1e-6):
    """A zennit composite by name.

    Args:
        rule: ``epsilon`` (LRP-epsilon everywhere), ``zplus`` (z+, i.e. AlphaBeta(1, 0), everywhere: the ATOM
            paper), or zennit's ``epsilon_plus`` (z+ for convolutions, epsilon for linear layers),
            ``epsilon_plus_flat``, ``epsilon_alpha2_beta1``.
        first_layer: a different rule for the first layer the frame meets: ``flat``, ``wsquare``, ``zplus``,
            ``epsilon``; None keeps ``rule``'s own choice.
        zero_biases: biases take no relevance (zennit's ``zero_params=["bias"]``).
    """
    from zennit import composites, rules
    from zennit.types import Convolution, Linear

    zero = ["bias"] if zero_biases else None
    named_composites = {"epsilon_plus": composites.EpsilonPlus, "epsilon_plus_flat": composites.EpsilonPlusFlat,
                        "epsilon_alpha2_beta1": composites.EpsilonAlpha2Beta1}
    if rule == "epsilon":
        layer_map = composites.layer_map_base() + [((Convolution, Linear), rules.Epsilon(epsilon, zero_params=zero))]
    elif rule == "zplus":
        layer_map = composites.layer_map_base() + [((Convolution, Linear), rules.ZPlus(zero_params=zero))]
    elif rule in named_composites:
        composite = named_composites[rule](epsilon=epsilon, zero_params=zero)
        if first_layer is None:
            return composite
        layer_map = composite.layer_map
    else:
        raise ValueError(f"unknown LRP rule {rule!r}; known: {', '.join(RULES)}")
    if first_layer is None:
        return composites.LayerMapComposite(layer_map)
    first_rules = {"flat": rules.Flat, "wsquare": rules.WSquare, "zplus": lambda: rules.ZPlus(zero_params=zero),
                   "epsilon": lambda: rules.Epsilon(epsilon, zero_params=zero)}
    if first_layer not in first_rules:
        raise ValueError(f"unknown first-layer rule {first_layer!r}; known: {', '.join(FIRST_LAYER_RULES)}")
    return composites.SpecialFirstLayerMapComposite(layer_map, [((Convolution, Linear), first_rules[first_layer]())])


@dataclass
class Relevance:
    """The relevance of one pass over ``N`` steps."""

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

    def total_input(self) -> torch.Tensor:
        """``[N]``: everything that reached the step's inputs and pre-step state."""
        total = self.frame.flatten(1).sum(1)
        for value in [*self.step_inputs.values(), *self.state]:
            if value is not None:
                total = total + value.reshape(len(total), -1).sum(1)
        return total


Seeder = Callable[[torch.Tensor], torch.Tensor]


def _propagate(agent, steps: Steps, composite, start: str | None, seeder: Seeder, capture: str | None) -> Relevance:
    """One relevance pass: forward the steps, seed ``seeder(tensor)`` at ``start`` (a hook point's output; None:
    the output chosen by the seeder from the stacked ``[N, A + 1]`` logits and value) and propagate to the inputs."""
    points = hook_points(agent)
    for name in (start, capture):
        if name is not None and name not in points:
            raise ValueError(f"{agent.name} has no hook point {name!r}; it has {', '.join(points)}")
    frame = steps.inputs["frame"].to(agent.dtype).detach().requires_grad_(True)
    state = tuple(s.detach().clone().requires_grad_(True) if s.is_floating_point() else s for s in steps.state)
    captured: dict[str, torch.Tensor] = {}
    leaves: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(module, args, output):
            captured[name] = output
        return hook

    def make_leaf(name):
        def hook(module, args, output):
            leaves[name] = output.detach().requires_grad_(True)
            return leaves[name]
        return hook

    handles = [points[name].register_forward_hook(keep(name)) for name in {start, capture} - {None}]
    handles += [point.register_forward_hook(make_leaf(name)) for name, point in points.items()
                if point.kind == "step_input"]
    try:
        with conservative_propagation(), composite.context(agent) as model, torch.enable_grad():
            outputs, _ = model({**steps.inputs, "frame": frame}, state)
            if start is None:
                origin = torch.cat([outputs["policy_logits"][0], outputs["baseline"][0, :, None]], dim=1)
            else:
                origin = captured[start]
            seed = seeder(origin.reshape(len(steps), -1)).reshape(origin.shape)
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
    inputs_relevance = {name: next(rest).reshape(len(steps), -1) for name in leaves}
    layer = next(rest).reshape(len(steps), -1) if capture is not None else None
    return Relevance(relevance_frame, seed.detach().reshape(len(steps), -1).sum(1), inputs_relevance,
                     state_relevance, layer)


def output_seeder(target: str, seed: str = "action") -> Seeder:
    """Seed the chosen action's logit (``seed="action"``) or every logit (``"logits"``) with its value for the
    ``actor``; the value for the ``critic``."""
    if target not in ("actor", "critic") or seed not in ("action", "logits"):
        raise ValueError(f"target must be actor or critic and seed action or logits, got {target!r}, {seed!r}")

    def seeder(outputs: torch.Tensor) -> torch.Tensor:  # [N, A + 1]: logits, then the value
        mask = torch.zeros_like(outputs)
        if target == "critic":
            mask[:, -1] = 1
        elif seed == "logits":
            mask[:, :-1] = 1
        else:
            mask.scatter_(1, outputs[:, :-1].argmax(1, keepdim=True), 1.0)
        return outputs.detach() * mask

    return seeder


def explain_outputs(agent, steps: Steps, composite, *, target: str = "actor", seed: str = "action",
                    capture: str | None = None) -> Relevance:
    """Relevance of the ``target`` output at every step; ``capture``: also the relevance at that hook point."""
    return _propagate(agent, steps, composite, None, output_seeder(target, seed), capture)


def explain_layer(agent, steps: Steps, composite, layer: str, seeds: torch.Tensor) -> Relevance:
    """Relevance from ``seeds`` ``[N, F]`` put in at the output of hook point ``layer`` (e.g. a one-hot per step
    to explain single neurons)."""
    return _propagate(agent, steps, composite, layer, lambda out: seeds.to(out.dtype), None)


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
