"""Sanity checks of a run's explanations: cascading randomisation of one checkpoint (default: the final one).

``RUN_DIR/analysis/sanity.csv`` is tidy: ``step, layers_randomised, layer, map, metric, value``, where ``map`` is
``attention/<hook name>/h<i>`` (each head's map on the current frame) or ``<method>/<actor|critic>``, and
``metric`` is ``spearman`` or ``ssim`` against the trained checkpoint's own map (see :mod:`interp.sanity`).
``analysis/sanity.png`` plots the similarity against the number of layers randomised, and
``analysis/sanity_flags.csv`` lists the maps that survive full randomisation (they explain the input, not the
model).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analyses.maps import MAP_METHODS, check_compatible, check_methods
from analyses.runs import cache_dir, checkpoint_step, load_result, run_checkpoints, save_result
from interp.agents import load_checkpoint
from interp.attention import attention_maps, head_images
from interp.evalset import load_evalset, pre_step_state
from interp.files import atomic_path
from interp.saliency import METHODS
from interp.sanity import cascading_randomisation, survivors
from interp.steps import Steps


def image_maps(agent, steps: Steps, methods: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Every map over the frame: attention heads and each method's actor and critic maps, ``[N, S, S]``."""
    maps = {f"attention/{name}": value for name, value in head_images(attention_maps(agent, steps)).items()}
    for method in methods:
        result = METHODS[method].attribute(agent, steps)
        maps[f"{method}/actor"], maps[f"{method}/critic"] = result["actor"], result["critic"]
    return maps


def sanity_for_run(run_dir: str | Path, evalset_path: str | Path, *, methods: tuple[str, ...] = MAP_METHODS,
                   checkpoint: str | Path | None = None, frames: int = 16, points: int = 6, seed: int = 0,
                   threshold: float = 0.5) -> pd.DataFrame:
    """Cascading randomisation of ``checkpoint`` (default: the run's final one) on the first ``frames`` frames of
    the evaluation set; writes ``analysis/sanity.csv``, ``sanity_flags.csv`` and ``sanity.png``."""
    run_dir = Path(run_dir)
    check_methods(methods)
    checkpoint = Path(checkpoint) if checkpoint else run_checkpoints(run_dir)[-1]
    evalset = load_evalset(evalset_path)
    evalset = evalset.subset(slice(0, frames))
    loaded = load_checkpoint(checkpoint)
    agent = loaded.agent.eval()
    check_compatible(agent, loaded.meta, evalset.env, evalset.obs.shape[1:], checkpoint)
    cache = cache_dir(run_dir, "sanity", evalset_path, {"methods": tuple(methods), "frames": frames,
                                                          "points": points, "seed": seed})
    cached = cache / f"{checkpoint.stem}.csv"
    if cached.exists():
        table = load_result(cached)
    else:
        torch.manual_seed(seed)
        steps = Steps(evalset.step_inputs(), pre_step_state(agent, evalset))
        table = cascading_randomisation(agent, steps, partial(image_maps, methods=tuple(methods)), points=points,
                                        seed=seed)
        table.insert(0, "step", checkpoint_step(checkpoint))
        save_result(cached, table)
    out = run_dir / "analysis"
    save_result(out / "sanity.csv", table)
    flagged = survivors(table, threshold)
    save_result(out / "sanity_flags.csv", pd.DataFrame({"map": flagged, "reason": (
        f"Spearman similarity to the trained model's map above {threshold} with every layer randomised")}))
    plot_sanity(table, out / "sanity.png", title=f"{run_dir.name} step {checkpoint_step(checkpoint)}")
    return table


def plot_sanity(table: pd.DataFrame, path: Path, title: str = "") -> Path:
    """Spearman and SSIM against the number of layers randomised, one line per method (attention: the mean over
    heads)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = table.assign(family=table["map"].map(lambda name: "attention" if name.startswith("attention/")
                                                 else name))
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=80, sharey=True)
    for axis, metric in zip(axes, ("spearman", "ssim"), strict=True):
        rows = table[table.metric == metric]
        for family, group in rows.groupby("family"):
            curve = group.groupby("layers_randomised")["value"].mean()
            axis.plot(curve.index, curve.to_numpy(), marker="o", markersize=3, label=family)
        axis.axhline(0, color="grey", linewidth=0.8)
        axis.set_xlabel("layers randomised, from the top")
        axis.set_title(metric, fontsize=9)
    axes[0].set_ylabel("similarity to the trained model's map")
    axes[1].legend(fontsize=7)
    figure.suptitle(f"cascading randomisation - {title}", fontsize=9)
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
    return path
