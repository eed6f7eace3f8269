"""ATOM across training: every checkpoint of a run on the same evaluation set.

``RUN_DIR/analysis/atom.csv`` is tidy, one value per row: ``step, method, metric, object, value``, where

- ``method = atom``: the metrics of :meth:`interp.atom.Atom.metrics` (``hierarchical``, ``hierarchical_share`` per
  object, ``combinatorial`` per object set such as ``ball+player``, ``frames``, ``empty_selection``,
  ``selected_neurons``, ``relevance_at_pixels``, ``pass1_share`` per part);
- ``method = perturbation | gradient | smoothgrad | lrp``: ``profile_share`` per object, the same per-object profile
  from that saliency method (robustness across methods, the follow-up paper);
- ``method = <a>~<b>``: ``spearman``, the rank correlation of two methods' object profiles;
- ``method = probe`` (MiniPong-TwoBall): the dual-ball probe's ``intercept_rate``, ``tracking`` and
  ``mean_distance`` per ball, and its ``mean_return``;
- ``method = training``: ``mean_return``, the mean episode return when the checkpoint was written.

``analysis/atom.png`` plots the object shares against the training step with the return on a second axis.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analyses import page, plots
from analyses.maps import MAP_METHODS, check_methods
from analyses.stage import Job, Stage, load_result, table_of, write_table
from interp.atom import Atom, object_profile
from interp.probe import dual_ball_probe
from interp.runs import Run
from interp.steps import Steps

COLUMNS = ["step", "method", "metric", "object", "value"]


@dataclass(frozen=True)
class AtomOptions(Atom):
    methods: tuple[str, ...] = MAP_METHODS
    """comma-separated saliency methods whose object profiles are compared with ATOM's (empty: none)"""
    probe: bool | None = field(default=None)
    """run the dual-ball probe per checkpoint (default: on MiniPong-TwoBall)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_methods(self.methods)


def compute(job: Job) -> pd.DataFrame:
    """The rows of one checkpoint (without the step column); the saliency profiles come from the run's cached maps."""
    options: AtomOptions = job.options
    evalset, loaded, steps = job.evaluation()
    agent = loaded.agent
    table = pd.concat([options.compute(agent, steps, evalset.masks), output_spread(agent, steps)],
                      ignore_index=True).assign(method="atom")
    profiles = {"atom": table[table.metric == "hierarchical_share"].set_index("object")["value"]}
    if options.methods:
        maps = load_result(job.needed["maps"])
        for method in options.methods:
            profiles[method] = object_profile(maps[f"{method}/{options.target}"], evalset.masks)
    rows = [(method, "profile_share", name, float(value))
            for method, profile in profiles.items() if method != "atom" for name, value in profile.items()]
    for first, second in combinations(profiles, 2):
        correlation = profiles[first].rank().corr(profiles[second].rank())
        rows.append((f"{first}~{second}", "spearman", "", float(correlation)))
    probe = options.probe if options.probe is not None else evalset.env.startswith("MiniPong-TwoBall")
    if probe:
        result = dual_ball_probe("greedy", agent=agent, frame_size=agent.obs_shape[-1])
        for record in result.to_dict("records"):
            rows += [("probe", metric, record["ball"], float(record[metric]))
                     for metric in ("intercept_rate", "tracking", "mean_distance")]
        rows.append(("probe", "mean_return", "", result.attrs["mean_return"]))
    mean_return = loaded.meta.get("mean_return")  # None before any episode ended
    rows.append(("training", "mean_return", "", np.nan if mean_return is None else float(mean_return)))
    extra = pd.DataFrame(rows, columns=["method", "metric", "object", "value"])
    return pd.concat([table, extra], ignore_index=True)


def output_spread(agent, steps: Steps) -> pd.DataFrame:
    """How much the outputs differ between the evaluation frames (their standard deviation, the mean over actions
    for the policy): 0 for a network whose output does not depend on the frame."""
    with torch.no_grad():
        outputs, _ = agent(steps.inputs, steps.state)
    rows = [("output_spread", "policy", float(outputs["policy_logits"][0].float().std(dim=0).mean())),
            ("output_spread", "value", float(outputs["baseline"][0].float().std()))]
    return pd.DataFrame(rows, columns=["metric", "object", "value"])


def frame_independent_steps(table: pd.DataFrame) -> list[int]:
    """The steps at which the output does not depend on the frame: no relevance reaches the pixels, or the outputs
    are the same on every evaluation frame."""
    atom = table[table.method == "atom"]
    at_pixels = atom[atom.metric == "relevance_at_pixels"].set_index("step")["value"]
    spread = atom[atom.metric == "output_spread"].groupby("step")["value"].max()
    dead = set(at_pixels[at_pixels.abs() < 1e-6].index) | set(spread[spread < 1e-7].index)
    return sorted(int(step) for step in dead)


def finish(run: Run, results: dict[int, Path], options: AtomOptions) -> None:
    table = table_of(results)[COLUMNS]
    write_table(run.analysis / "atom.csv", table)
    plot_atom(table, run.analysis / "atom.png", title=f"{run.name} on {run.environment.id}")


def plot_atom(table: pd.DataFrame, path: Path, title: str = "") -> Path:
    """Object shares of hierarchical attention against the training step, the return on a second axis."""
    shares = table[(table.method == "atom") & (table.metric == "hierarchical_share")]
    shares = shares.pivot(index="step", columns="object", values="value")
    returns = table[(table.method == "training") & (table.metric == "mean_return")].set_index("step")["value"]
    figure, axis = plots.figure(6.4, 3.6)
    steps = np.maximum(shares.index.to_numpy(), 1)
    for name in shares.columns:
        axis.plot(steps, shares[name], marker="o", markersize=3, label=name)
    axis.set_xscale("log")
    axis.set_xlabel("training step")
    axis.set_ylabel("share of hierarchical attention")
    axis.set_ylim(0, 1)
    second = axis.twinx()
    second.plot(np.maximum(returns.index.to_numpy(), 1), returns.to_numpy(), color="black", linestyle="--",
                label="mean return")
    second.set_ylabel("mean return (dashed)")
    axis.legend(loc="upper left", fontsize=8)
    axis.set_title(title, fontsize=10)
    return plots.save(figure, path)


def section(run: Run) -> str:
    table = run.read_table("atom.csv", COLUMNS)
    if table is None:
        return page.missing("ATOM analysis", f"interp atom {run.directory}")
    shares = table[(table.method == "atom") & (table.metric == "hierarchical_share")]
    last = shares.step.max()
    final = shares[shares.step == last].set_index("object")["value"].round(3)
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in final.items())
    dead = frame_independent_steps(table)
    warning = (f'<p class="missing">At step{"s" * (len(dead) > 1)} {", ".join(map(str, dead))} the network\'s '
               "output does not depend on the frame (no relevance reaches its pixels, or its outputs are the same "
               "on every evaluation frame: a dead first layer, say), so the object shares are undefined there."
               "</p>" if dead else "")
    plot = page.image(run.analysis / "atom.png", f"{run.name}: ATOM object shares against the training step")
    return warning + plot + f"<table><tr><th>object</th><th>share at step {last}</th></tr>{rows}</table>"


STAGE = Stage(
    name="atom", summary="LRP-based ATOM object metrics for every checkpoint of a run",
    description="Compute ATOM (Beylier et al. 2024) for every checkpoint of RUN_DIR on one evaluation set: "
                "hierarchical attention per object, combinatorial attention per object set, the same object profile "
                "from saliency methods with their Spearman rank correlations, the dual-ball probe on "
                "MiniPong-TwoBall, and the return. Writes RUN_DIR/analysis/atom.csv and atom.png; checkpoints "
                "already analysed with the same evaluation set and options are not recomputed.",
    options=AtomOptions, compute=compute, finish=finish, section=section, heading="ATOM across training",
    needs=("maps",), tables=("atom.csv",), figures=("atom.png",))
