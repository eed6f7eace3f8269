"""Sanity checks of a run's explanations: cascading randomisation of one checkpoint (default: the final one).

``RUN_DIR/analysis/sanity.csv`` is tidy: ``step, layers_randomised, layer, map, metric, value``, where ``map`` is
``attention/<hook name>/h<i>`` (each head's map on the current frame) or ``<method>/<actor|critic>``, and
``metric`` is ``spearman`` or ``ssim`` against the trained checkpoint's own map (see :mod:`interp.sanity`).
``analysis/sanity.png`` plots the similarity against the number of layers randomised, and
``analysis/sanity_flags.csv`` lists the maps that survive full randomisation (they explain the input, not the
model).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from analyses import page, plots
from analyses.maps import MAP_METHODS, check_methods
from analyses.stage import Job, Stage, load_result, write_table
from interp.attention import attention_maps, head_images
from interp.errors import UserError
from interp.runs import Run
from interp.saliency import METHODS
from interp.sanity import cascading_randomisation, survivors
from interp.steps import Steps


@dataclass(frozen=True)
class SanityOptions:
    methods: tuple[str, ...] = MAP_METHODS
    """comma-separated saliency methods checked beside the attention heads"""
    checkpoint: str = ""
    """the checkpoint randomised: a step of the run or one of its checkpoint files (default: the final one)"""
    frames: int = 16
    """frames of the evaluation set used"""
    points: int = 6
    """cut points of the cascade at which the maps are compared (the fully random model always among them)"""
    seed: int = 0
    """seed of the random parameters"""
    threshold: float = field(default=0.5, metadata={"cli": False})
    """a map whose Spearman similarity stays above this with every layer random is flagged"""

    def __post_init__(self) -> None:
        check_methods(self.methods)
        if self.frames < 1 or self.points < 1 or self.seed < 0:
            raise UserError(f"sanity checks need frames and points >= 1 and a seed >= 0, got frames {self.frames}, "
                            f"points {self.points}, seed {self.seed}")


def image_maps(agent, steps: Steps, methods: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Every map over the frame: attention heads and each method's actor and critic maps, ``[N, S, S]``."""
    maps = {f"attention/{name}": value for name, value in head_images(attention_maps(agent, steps)).items()}
    for method in methods:
        result = METHODS[method].attribute(agent, steps)
        maps[f"{method}/actor"], maps[f"{method}/critic"] = result["actor"], result["critic"]
    return maps


def compute(job: Job) -> pd.DataFrame:
    options: SanityOptions = job.options
    _, loaded, steps = job.evaluation(slice(0, options.frames))
    agent = loaded.agent
    table = cascading_randomisation(agent, steps, partial(image_maps, methods=tuple(options.methods)),
                                    points=options.points, seed=options.seed)
    table.insert(0, "step", job.step)
    return table


def finish(run: Run, results: dict[int, Path], options: SanityOptions) -> None:
    (step, path), = results.items()
    table = load_result(path)
    write_table(run.analysis / "sanity.csv", table)
    flagged = survivors(table, options.threshold)
    write_table(run.analysis / "sanity_flags.csv", pd.DataFrame({"map": flagged, "reason": (
        f"Spearman similarity to the trained model's map above {options.threshold} with every layer randomised")}))
    plot_sanity(table, run.analysis / "sanity.png", title=f"{run.name} step {step}")


def plot_sanity(table: pd.DataFrame, path: Path, title: str = "") -> Path:
    """Spearman and SSIM against the number of layers randomised, one line per method (attention: the mean over
    heads)."""
    table = table.assign(family=table["map"].map(lambda name: "attention" if name.startswith("attention/")
                                                 else name))
    figure, axes = plots.figure(9, 3.4, 1, 2, sharey=True)
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
    return plots.save(figure, path)


def section(run: Run) -> str:
    if run.read_table("sanity.csv", ("step", "layers_randomised", "layer", "map", "metric", "value")) is None:
        return page.missing("sanity check", f"interp sanity {run.directory}")
    flags = run.read_table("sanity_flags.csv", ("map",))
    flagged = [] if flags is None else list(flags["map"])
    verdict = ("<p><b>Flagged</b> (similar to the trained model's maps with every layer random, so they explain the "
               f"input rather than the model): {html.escape(', '.join(flagged))}</p>" if flagged
               else "<p>No map survives the randomisation of every layer.</p>")
    return page.image(run.analysis / "sanity.png", f"{run.name}: cascading randomisation") + verdict


STAGE = Stage(
    name="sanity", summary="cascading randomisation sanity check of attention and saliency maps",
    description="Randomise the layers of a checkpoint (default: the run's final one) top-down and measure how "
                "similar (Spearman, SSIM) each attention head's and each saliency method's maps stay to the trained "
                "model's. Writes RUN_DIR/analysis/sanity.csv, sanity_flags.csv (maps that survive full "
                "randomisation) and sanity.png.",
    options=SanityOptions, compute=compute, finish=finish, section=section, heading="Sanity checks",
    checkpoints="final", tables=("sanity.csv", "sanity_flags.csv"),
    figures=("sanity.png",))
