"""Sanity checks by cascading model-parameter randomisation (Adebayo et al. 2018; Huber et al. 2022 for Atari).

The agent's layers are randomised top-down, cumulatively: first the layer that acts last (the heads), then the one
before it, down to the first. After each step the explanation maps are computed again and compared with the
trained model's maps by Spearman rank correlation and SSIM, averaged over frames. An explanation that depends on
what the model learned falls towards 0; one whose maps survive the randomisation of every layer explains the input,
not the model.

"Layers" are the modules that own parameters directly, in the order their forward passes first start on the
evaluated steps (the agent module itself owns e.g. TimeSformer's position embeddings). Every parameter is drawn
anew from a normal distribution with the original's standard deviation (``1 / sqrt(fan_in)`` for constant ones such
as LayerNorm gains), so no module is left alone for lack of a ``reset_parameters`` method.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from skimage.metrics import structural_similarity
from torch import nn

from interp.agreement import spearman
from interp.steps import Steps

Explainer = Callable[[nn.Module, Steps], dict[str, np.ndarray]]
"""(agent, steps) -> map name -> ``[N, S, S]``"""


def layers_in_order(agent: nn.Module, steps: Steps) -> list[str]:
    """Names of the modules that own parameters directly, in the order their forwards first start."""
    owners = {name for name, module in agent.named_modules() if any(True for _ in module.parameters(recurse=False))}
    order: list[str] = []
    handles = []
    for name, module in agent.named_modules():
        if name in owners:
            handles.append(module.register_forward_pre_hook(
                lambda module, args, name=name: order.append(name) if name not in order else None))
    try:
        with torch.no_grad():
            agent(steps.one(0).inputs, steps.one(0).state)
    finally:
        for handle in handles:
            handle.remove()
    unused = sorted(owners - set(order))  # e.g. a vision net an agent variant does not call: randomise it first
    return order + unused


@torch.no_grad()
def randomise_(module: nn.Module, generator: torch.Generator) -> None:
    """Draw every parameter the module owns directly anew (see the module docstring)."""
    for parameter in module.parameters(recurse=False):
        std = float(parameter.std()) if parameter.numel() > 1 else 0.0
        if std == 0.0:
            std = 1.0 / np.sqrt(parameter.shape[-1])
        noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
        parameter.copy_(noise.to(parameter.device) * std)


def ssim_per_frame(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    def unit(x: np.ndarray) -> np.ndarray:
        low, high = x.min(), x.max()
        return (x - low) / (high - low) if high > low else np.zeros_like(x)

    return np.array([structural_similarity(unit(x.astype(np.float64)), unit(y.astype(np.float64)), data_range=1.0)
                     for x, y in zip(a, b, strict=True)])


def cascading_randomisation(agent: nn.Module, steps: Steps, explain: Explainer, *, points: int = 6,
                            seed: int = 0) -> pd.DataFrame:
    """Similarity of each map to the trained model's after randomising the top ``1..L`` layers, evaluated at
    ``points`` cut points spread over the cascade (always including the fully random model).

    Returns:
        tidy rows ``layers_randomised, layer, map, metric, value`` (``layer``: the lowest layer randomised so far;
        ``metric``: ``spearman`` or ``ssim``), with a row for 0 layers (the trained model against itself).
    """
    layers = layers_in_order(agent, steps)[::-1]
    cuts = sorted({int(round(x)) for x in np.linspace(1, len(layers), min(points, len(layers)))})
    original = explain(agent, steps)
    rows = [(0, "", name, metric, 1.0) for name in original for metric in ("spearman", "ssim")]
    randomised = copy.deepcopy(agent)
    modules = dict(randomised.named_modules())
    generator = torch.Generator().manual_seed(seed)
    done = 0
    for cut in cuts:
        for name in layers[done:cut]:
            randomise_(modules[name], generator)
        done = cut
        maps = explain(randomised, steps)
        lowest = layers[cut - 1] or "(agent)"  # parameters the agent module owns itself
        for name, reference in original.items():
            rows.append((cut, lowest, name, "spearman", float(spearman(maps[name], reference).mean())))
            rows.append((cut, lowest, name, "ssim", float(ssim_per_frame(maps[name], reference).mean())))
    return pd.DataFrame(rows, columns=["layers_randomised", "layer", "map", "metric", "value"])


def survivors(table: pd.DataFrame, threshold: float = 0.5) -> list[str]:
    """Maps whose Spearman similarity to the trained model's stays above ``threshold`` with every layer random."""
    spearman = table[table.metric == "spearman"]
    final = spearman[spearman.layers_randomised == spearman.layers_randomised.max()]
    return sorted(final[final.value > threshold]["map"])
