"""Attention-oriented metrics (ATOM; Beylier et al. 2024, arXiv 2406.14324) from two LRP passes.

For each evaluated frame ``x`` (recurrent and memory agents: the current frame with the pre-step state fixed):

1. pass 1: relevance from the explained output back to the layer ``F_c`` whose output feeds the policy and value
   heads -> ``R_k``;
2. ``S``: the smallest set of ``F_c`` neurons holding ``share`` (90%) of the ``F_c`` relevance;
3. pass 2, for every ``k`` in ``S``: relevance from a one-hot seed at ``k`` to the pixels -> ``R^k`` (summed over
   the stacked frames). All selected neurons of a batch of frames go through one backward pass: each
   (frame, neuron) pair is a row of the batch;
4. ``Rbar_g^k``: the sum of ``R^k`` over object ``g``'s pixels over the number of its pixels with non-zero
   relevance;
5. hierarchical attention ``h(g) = mean_x sum_{k in S} R_k Rbar_g^k`` (and its share across objects);
6. combinatorial attention ``c(T) = mean_x sum_{k in S} R_k delta_k(T)``, ``delta_k(T) = 1`` iff every object in
   ``T`` has ``Rbar > alpha max_g Rbar_g^k`` and every other object has ``Rbar = 0``.

The means run over the frames with a selection: a frame whose pass-1 relevance at ``F_c`` is not positive selects
no neuron, is left out of the means and counted (``empty_selection``), never averaged in as zero.

``F_c`` is the hook point ``hook_features`` of each agent: the output of the baseline's fully connected layer, of
Mott's LSTM, of the adaptive and spatio-temporal agents' Transformer-XL, of the TimeSformer's linear layer. The
TimeSformer's heads also read the previous reward and action beside ``F_c``: the pass-1 relevance those inputs
take is reported (``pass1_share`` of ``other_head_inputs``), beside that of ``F_c`` and of the heads' biases.

The choices the sources leave open are options of :class:`Atom`, with the paper's reading as default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd
import torch

from interp.errors import UserError
from interp.lrp import (
    FIRST_LAYER_RULES,
    INITIAL_RELEVANCE,
    OUTPUTS,
    RULES,
    Composite,
    explain_layer,
    explain_outputs,
    make_composite,
)
from interp.steps import Steps


@dataclass(frozen=True)
class Atom:
    share: float = 0.9
    """relevance share of ``F_c`` the selected neurons hold"""
    alpha: float = 0.25
    """combinatorial attention's threshold: an object is in a neuron's set when its ``Rbar`` exceeds ``alpha`` times
    the largest"""
    exclusivity: float = 0.0
    """objects outside ``T`` must have ``|Rbar| <= exclusivity * max Rbar`` (0: exactly zero, as the paper)"""
    target: str = field(default="actor", metadata={"choices": ("actor", "critic")})
    """explain the ``actor`` or the ``critic``"""
    output: str = field(default="action", metadata={"choices": OUTPUTS, "flags": ("--output", "--seed-output")})
    """the actor's output explained in pass 1: the chosen ``action``'s logit or all ``logits``"""
    initial_relevance: str = field(default="one", metadata={"choices": INITIAL_RELEVANCE})
    """what pass 1 starts from at the explained output: ``one`` (default) or the output's ``value`` ``f(x)``. The paper
    propagates the output, and LRP's conservation makes ``sum_k R_k`` that start; under z+ (whose products
    ``x_k w_k`` it keeps are all positive) every ``R_k`` has its sign. A logit is defined only up to a constant (the
    policy does not change when one is added to every logit), and Q-values are negative through much of training,
    so a start at ``f(x)`` turns every ``R_k`` negative on some frames, which then select nothing. Starting from 1,
    as LRP practice does for the explained class, keeps every ``R_k >= 0``, gives every frame the same weight in the
    means, and makes ``R_k`` neuron ``k``'s share of the decision"""
    rule: str = field(default="zplus", metadata={"choices": RULES})
    """LRP rule of both passes (see :func:`interp.lrp.make_composite`)"""
    first_layer: str | None = field(default=None, metadata={"choices": FIRST_LAYER_RULES})
    """a different rule for the first layer (``flat``, ``wsquare``, ...)"""
    zero_biases: bool = False
    """no bias takes relevance (those of LayerNorms included)"""
    absolute: bool = False
    """select and weight neurons by ``|R_k|`` instead of ``R_k``"""
    newest_frame_only: bool = False
    """``R^k`` from the newest stacked frame only (default: summed over the stack)"""
    layer: str = "hook_features"
    """hook point of ``F_c``"""
    batch_size: int = 64
    """(frame, neuron) rows per pass-2 backward; 1 is the per-neuron loop (larger batches are slower on a CPU, see
    :attr:`interp.saliency.Perturbation.batch_size`)"""

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.share <= 1:
            problems.append(f"share must be in (0, 1], got {self.share}")
        if not 0 <= self.alpha < 1 or not 0 <= self.exclusivity < 1:
            problems.append(f"alpha and exclusivity must be in [0, 1), got {self.alpha}, {self.exclusivity}")
        if self.target not in ("actor", "critic") or self.output not in OUTPUTS:
            problems.append(f"target must be actor or critic and output one of {', '.join(OUTPUTS)}, got "
                            f"{self.target!r}, {self.output!r}")
        if self.initial_relevance not in INITIAL_RELEVANCE:
            problems.append(f"initial relevance must be one of {', '.join(INITIAL_RELEVANCE)}, got "
                            f"{self.initial_relevance!r}")
        if self.rule not in RULES or self.first_layer not in (None, *FIRST_LAYER_RULES):
            problems.append(f"rule must be one of {', '.join(RULES)} and first_layer one of "
                            f"{', '.join(FIRST_LAYER_RULES)}, got {self.rule!r}, {self.first_layer!r}")
        if problems:
            raise UserError("; ".join(problems))

    def composite(self) -> Composite:
        return make_composite(self.rule, first_layer=self.first_layer, zero_biases=self.zero_biases)

    def select(self, relevance: torch.Tensor) -> torch.Tensor:
        """Pass-1 relevance ``[F]`` -> indices of the smallest neuron set holding ``share`` of it."""
        weights = relevance.abs() if self.absolute else relevance
        total = weights.sum()
        if total <= 0:
            return torch.zeros(0, dtype=torch.long)
        order = torch.argsort(weights, descending=True)
        held = torch.cumsum(weights[order], 0)
        count = int(torch.searchsorted(held, self.share * total)) + 1
        return order[:min(count, len(order))]

    def neuron_relevance(self, agent, steps: Steps, masks: np.ndarray) -> list[dict]:
        """Per frame: the selected neurons, their ``R_k`` and ``Rbar_g^k``.

        Args:
            masks: bool ``[N, G, S, S]``, one mask per object.

        Returns:
            one dict per frame: ``neurons`` long ``[m]`` (``m = 0``: an empty selection), ``weights`` ``[m]``
            (``R_k``, or ``|R_k|``), ``rbar`` ``[m, G]``, ``at_pixels`` ``[m]`` (the share of neuron ``k``'s
            relevance that reaches the frame), and ``pass1`` (``seeded``, the explained output's start, and how it
            divides into ``features`` at ``F_c``, ``head_bias`` and ``other_head_inputs``).
        """
        composite = self.composite()
        first = explain_outputs(agent, steps, composite, target=self.target, output=self.output,
                                initial=self.initial_relevance, capture=self.layer)
        layer, seeded = first.layer.cpu(), first.seeded.cpu()  # what follows is bookkeeping, on the CPU
        selected = [self.select(layer[i]) for i in range(len(steps))]
        pairs_frame = torch.cat([torch.full((len(s),), i, dtype=torch.long) for i, s in enumerate(selected)])
        pairs_neuron = torch.cat(selected)
        masks_t = torch.from_numpy(masks)
        rbar, at_pixels = [], []
        for start in range(0, len(pairs_frame), self.batch_size):
            frames = pairs_frame[start:start + self.batch_size]
            neurons = pairs_neuron[start:start + self.batch_size]
            seeds = torch.zeros(len(frames), layer.shape[1])
            seeds[torch.arange(len(frames)), neurons] = 1.0
            pixels = explain_layer(agent, steps.take(frames), composite, self.layer, seeds).frame.cpu()
            at_pixels.append(pixels.flatten(1).sum(1))
            pixels = pixels[:, -1] if self.newest_frame_only else pixels.sum(1)  # [rows, S, S]
            object_masks = masks_t[frames].to(pixels.dtype)  # [rows, G, S, S]
            sums = torch.einsum("rij,rgij->rg", pixels, object_masks)
            counts = torch.einsum("rij,rgij->rg", (pixels != 0).to(pixels.dtype), object_masks)
            rbar.append(torch.where(counts > 0, sums / counts.clamp(min=1), torch.zeros_like(sums)))
        rbar = torch.cat(rbar) if rbar else torch.zeros(0, masks.shape[1])
        at_pixels = torch.cat(at_pixels) if at_pixels else torch.zeros(0)
        head_bias = sum((value.cpu() for name, value in first.constants.items() if name.startswith("actor_critic.")),
                        torch.zeros(len(steps)))
        frames_out, offset = [], 0
        for i, neurons in enumerate(selected):
            weights = layer[i, neurons]
            features = float(layer[i].sum())
            pass1 = {"seeded": float(seeded[i]), "features": features, "head_bias": float(head_bias[i]),
                     "other_head_inputs": float(seeded[i] - head_bias[i]) - features}
            frames_out.append({"neurons": neurons, "weights": weights.abs() if self.absolute else weights,
                               "rbar": rbar[offset:offset + len(neurons)],
                               "at_pixels": at_pixels[offset:offset + len(neurons)], "pass1": pass1})
            offset += len(neurons)
        return frames_out

    def metrics(self, per_frame: list[dict], objects: list[str]) -> pd.DataFrame:
        """Hierarchical and combinatorial attention over the frames with a selection, tidy: ``metric, object,
        value``. Also ``frames``, ``empty_selection`` (frames left out), ``selected_neurons`` (mean size of ``S``),
        ``relevance_at_pixels`` (the share of the selected neurons' relevance that reaches the frame: 0 when the
        output does not depend on it) and ``pass1_share`` (how the explained output's relevance divides at the
        heads). Undefined values (no frame with a selection, no relevance on any object) are NaN, never 0."""
        selected = [f for f in per_frame if len(f["neurons"])]
        subsets = [frozenset(c) for size in range(1, len(objects) + 1) for c in combinations(range(len(objects)), size)]
        combinatorial = dict.fromkeys(subsets, 0.0 if selected else np.nan)
        if selected:
            hierarchical = torch.stack([(f["weights"][:, None] * f["rbar"]).sum(0) for f in selected]).mean(0)
        else:
            hierarchical = torch.full((len(objects),), np.nan)
        for frame in selected:
            for weight, rbar in zip(frame["weights"].tolist(), frame["rbar"], strict=True):
                largest = float(rbar.max())
                if largest <= 0:
                    continue
                inside = frozenset(np.flatnonzero((rbar > self.alpha * largest).numpy()).tolist())
                outside = [g for g in range(len(objects)) if g not in inside]
                if all(abs(float(rbar[g])) <= self.exclusivity * largest for g in outside):
                    combinatorial[inside] += weight / len(selected)
        total = float(hierarchical.sum())
        rows = []
        for g, name in enumerate(objects):
            rows.append(("hierarchical", name, float(hierarchical[g])))
            rows.append(("hierarchical_share", name, float(hierarchical[g]) / total if total else np.nan))
        for subset, value in combinatorial.items():
            rows.append(("combinatorial", "+".join(objects[g] for g in sorted(subset)), value))
        sizes = [len(f["neurons"]) for f in selected]
        at_pixels = [float((f["weights"] * f["at_pixels"]).sum() / f["weights"].sum()) for f in selected]
        rows += [("frames", "", float(len(per_frame))), ("empty_selection", "", float(len(per_frame) - len(selected))),
                 ("selected_neurons", "", float(np.mean(sizes)) if selected else np.nan),
                 ("relevance_at_pixels", "", float(np.mean(at_pixels)) if selected else np.nan)]
        for part in ("features", "head_bias", "other_head_inputs"):
            shares = [f["pass1"][part] / f["pass1"]["seeded"] for f in per_frame if f["pass1"]["seeded"]]
            rows.append(("pass1_share", part, float(np.mean(shares)) if shares else np.nan))
        return pd.DataFrame(rows, columns=["metric", "object", "value"])

    def compute(self, agent, steps: Steps, masks: dict[str, np.ndarray]) -> pd.DataFrame:
        """ATOM of ``agent`` on ``steps`` with object ``masks`` (name -> bool ``[N, S, S]``)."""
        objects = sorted(masks)
        stacked = np.stack([masks[name] for name in objects], axis=1)
        return self.metrics(self.neuron_relevance(agent, steps, stacked), objects)


def object_profile(maps: np.ndarray, masks: dict[str, np.ndarray]) -> pd.Series:
    """Share of each object in a saliency map ``[N, S, S]`` by the same per-object mean as ATOM's ``Rbar`` (the sum
    over the object's pixels over the number with non-zero saliency), averaged over frames, normalised to 1."""
    means = {}
    for name, mask in masks.items():
        sums = (maps * mask).sum(axis=(1, 2))
        counts = ((maps != 0) & mask).sum(axis=(1, 2))
        means[name] = float(np.mean(np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)))
    profile = pd.Series(means).sort_index()
    total = profile.sum()
    return profile / total if total else profile
