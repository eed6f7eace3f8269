"""Attention-oriented metrics (ATOM; Beylier et al. 2024, arXiv 2406.14324) from two LRP passes.

For each evaluated frame ``x`` (recurrent and memory agents: the current frame with the pre-step state fixed):

1. pass 1: relevance from the output back to the layer ``F_c`` feeding the policy and value heads -> ``R_k``;
2. ``S``: the smallest set of ``F_c`` neurons holding ``share`` (90%) of the ``F_c`` relevance;
3. pass 2, for every ``k`` in ``S``: relevance from a one-hot seed at ``k`` to the pixels -> ``R^k`` (summed over
   the stacked frames). All selected neurons of a batch of frames go through one backward pass: each
   (frame, neuron) pair is a row of the batch;
4. ``Rbar_g^k``: the sum of ``R^k`` over object ``g``'s pixels over the number of its pixels with non-zero
   relevance;
5. hierarchical attention ``h(g) = mean_x sum_{k in S} R_k Rbar_g^k`` (and its share across objects);
6. combinatorial attention ``c(T) = mean_x sum_{k in S} R_k delta_k(T)``, ``delta_k(T) = 1`` iff every object in
   ``T`` has ``Rbar > alpha max_g Rbar_g^k`` and every object outside ``T`` has ``Rbar = 0``.

The choices the sources leave open are options of :class:`Atom`, with the paper's reading as default.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
import torch

from interp.errors import UserError
from interp.lrp import FIRST_LAYER_RULES, RULES, explain_layer, explain_outputs, make_composite
from interp.steps import Steps


@dataclass(frozen=True)
class Atom:
    share: float = 0.9
    """relevance share of ``F_c`` the selected neurons hold"""
    alpha: float = 0.25
    exclusivity: float = 0.0
    """objects outside ``T`` must have ``|Rbar| <= exclusivity * max Rbar`` (0: exactly zero, as the paper)"""
    target: str = "actor"
    """explain the ``actor`` or the ``critic``"""
    seed: str = "action"
    """pass-1 seed: the chosen ``action``'s logit or all ``logits``"""
    rule: str = "zplus"
    """LRP rule of both passes (see :func:`interp.lrp.make_composite`)"""
    first_layer: str | None = None
    """a different rule for the first layer (``flat``, ``wsquare``, ...)"""
    zero_biases: bool = False
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
        if self.target not in ("actor", "critic") or self.seed not in ("action", "logits"):
            problems.append(f"target must be actor or critic and seed action or logits, got {self.target!r}, "
                            f"{self.seed!r}")
        if self.rule not in RULES or self.first_layer not in (None, *FIRST_LAYER_RULES):
            problems.append(f"rule must be one of {', '.join(RULES)} and first_layer one of "
                            f"{', '.join(FIRST_LAYER_RULES)}, got {self.rule!r}, {self.first_layer!r}")
        if problems:
            raise UserError("; ".join(problems))

    def composite(self):
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
            one dict per frame: ``neurons`` long ``[m]``, ``weights`` ``[m]`` (``R_k``, or ``|R_k|``),
            ``rbar`` ``[m, G]``, ``layer_total`` (the ``F_c`` relevance) and ``seeded`` (the output's).
        """
        composite = self.composite()
        first = explain_outputs(agent, steps, composite, target=self.target, seed=self.seed, capture=self.layer)
        selected = [self.select(first.layer[i]) for i in range(len(steps))]
        pairs_frame = torch.cat([torch.full((len(s),), i, dtype=torch.long) for i, s in enumerate(selected)])
        pairs_neuron = torch.cat(selected)
        masks_t = torch.from_numpy(masks)
        rbar = []
        for start in range(0, len(pairs_frame), self.batch_size):
            frames = pairs_frame[start:start + self.batch_size]
            neurons = pairs_neuron[start:start + self.batch_size]
            seeds = torch.zeros(len(frames), first.layer.shape[1])
            seeds[torch.arange(len(frames)), neurons] = 1.0
            pixels = explain_layer(agent, steps.take(frames), composite, self.layer, seeds).frame
            pixels = pixels[:, -1] if self.newest_frame_only else pixels.sum(1)  # [rows, S, S]
            object_masks = masks_t[frames].to(pixels.dtype)  # [rows, G, S, S]
            sums = torch.einsum("rij,rgij->rg", pixels, object_masks)
            counts = torch.einsum("rij,rgij->rg", (pixels != 0).to(pixels.dtype), object_masks)
            rbar.append(torch.where(counts > 0, sums / counts.clamp(min=1), torch.zeros_like(sums)))
        rbar = torch.cat(rbar) if rbar else torch.zeros(0, masks.shape[1])
        frames_out, offset = [], 0
        for i, neurons in enumerate(selected):
            weights = first.layer[i, neurons]
            frames_out.append({"neurons": neurons, "weights": weights.abs() if self.absolute else weights,
                               "rbar": rbar[offset:offset + len(neurons)], "layer_total": float(first.layer[i].sum()),
                               "seeded": float(first.seeded[i])})
            offset += len(neurons)
        return frames_out

    def metrics(self, per_frame: list[dict], objects: list[str]) -> pd.DataFrame:
        """Hierarchical and combinatorial attention over the frames, tidy: ``metric, object, value``."""
        hierarchical = torch.stack([(f["weights"][:, None] * f["rbar"]).sum(0) for f in per_frame]).mean(0)
        subsets = [frozenset(c) for size in range(1, len(objects) + 1) for c in combinations(range(len(objects)), size)]
        combinatorial = dict.fromkeys(subsets, 0.0)
        for frame in per_frame:
            for weight, rbar in zip(frame["weights"].tolist(), frame["rbar"], strict=True):
                largest = float(rbar.max())
                if largest <= 0:
                    continue
                inside = frozenset(np.flatnonzero((rbar > self.alpha * largest).numpy()).tolist())
                outside = [g for g in range(len(objects)) if g not in inside]
                if all(abs(float(rbar[g])) <= self.exclusivity * largest for g in outside):
                    combinatorial[inside] += weight / len(per_frame)
        total = float(hierarchical.sum())
        rows = []
        for g, name in enumerate(objects):
            rows.append(("hierarchical", name, float(hierarchical[g])))
            rows.append(("hierarchical_share", name, float(hierarchical[g]) / total if total else 0.0))
        for subset, value in combinatorial.items():
            rows.append(("combinatorial", "+".join(objects[g] for g in sorted(subset)), value))
        rows.append(("selected_neurons", "", float(np.mean([len(f["neurons"]) for f in per_frame]))))
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
