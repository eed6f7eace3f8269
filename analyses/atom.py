"""ATOM across training: every checkpoint of a run on the same evaluation set.

``RUN_DIR/analysis/atom.csv`` is tidy, one value per row: ``step, method, metric, object, value``, where

- ``method = atom``: ``hierarchical``, ``hierarchical_share`` per object, ``combinatorial`` per object set
  (``ball+player``), ``selected_neurons`` (mean size of ``S``);
- ``method = perturbation | gradient | smoothgrad | lrp``: ``profile_share`` per object, the same per-object profile
  from that saliency method (robustness across methods, the follow-up paper);
- ``method = <a>~<b>``: ``spearman``, the rank correlation of two methods' object profiles;
- ``method = probe`` (MiniPong-TwoBall): the dual-ball probe's ``intercept_rate``, ``tracking`` and
  ``mean_distance`` per ball, and its ``mean_return``;
- ``method = training``: ``mean_return``, the mean episode return when the checkpoint was written.

Each checkpoint's rows are kept under ``analysis/cache/`` (see :mod:`analyses.runs`), so a second run computes
only checkpoints it has not seen. ``analysis/atom.png`` plots the object shares against the
training step with the return on a second axis.
"""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from analyses.maps import MAP_METHODS, check_compatible, check_methods, maps_for_run
from analyses.runs import cache_dir, checkpoint_step, for_each_checkpoint, load_result, run_checkpoints, save_result
from interp.agents import load_checkpoint
from interp.agents.policy import AgentPolicy
from interp.atom import Atom, object_profile
from interp.envs.probe import dual_ball_probe
from interp.evalset import EvalSet, load_evalset, pre_step_state
from interp.files import atomic_path
from interp.saliency import Steps

COLUMNS = ["step", "method", "metric", "object", "value"]


def atom_for_checkpoint(checkpoint: Path, evalset: EvalSet | Path, atom: Atom, maps_paths: dict[int, Path],
                        methods: tuple[str, ...], probe: bool) -> pd.DataFrame:
    """The rows of one checkpoint (without the step column); the saliency profiles come from the run's cached
    maps (``maps_paths``, see :func:`analyses.maps.maps_for_run`)."""
    if not isinstance(evalset, EvalSet):
        evalset = load_evalset(evalset)
    loaded = load_checkpoint(checkpoint)
    agent = loaded.agent.eval()
    check_compatible(agent, loaded.meta, evalset.env, evalset.obs.shape[1:], checkpoint)
    steps = Steps(evalset.step_inputs(), pre_step_state(agent, evalset))
    table = atom.compute(agent, steps, evalset.masks).assign(method="atom")
    profiles = {"atom": table[table.metric == "hierarchical_share"].set_index("object")["value"]}
    if methods:
        maps = load_result(maps_paths[checkpoint_step(checkpoint)])
        for method in methods:
            profiles[method] = object_profile(maps[f"{method}/{atom.target}"], evalset.masks)
    rows = [(method, "profile_share", name, float(value))
            for method, profile in profiles.items() if method != "atom" for name, value in profile.items()]
    for first, second in combinations(profiles, 2):
        correlation = profiles[first].rank().corr(profiles[second].rank())
        rows.append((f"{first}~{second}", "spearman", "", float(correlation)))
    if probe:
        result = dual_ball_probe(AgentPolicy(agent), frame_size=agent.obs_shape[-1])
        for record in result.to_dict("records"):
            rows += [("probe", metric, record["ball"], float(record[metric]))
                     for metric in ("intercept_rate", "tracking", "mean_distance")]
        rows.append(("probe", "mean_return", "", result.attrs["mean_return"]))
    mean_return = loaded.meta.get("mean_return")  # None before any episode ended
    rows.append(("training", "mean_return", "", np.nan if mean_return is None else float(mean_return)))
    extra = pd.DataFrame(rows, columns=["method", "metric", "object", "value"])
    return pd.concat([table, extra], ignore_index=True)


def atom_for_run(run_dir: str | Path, evalset_path: str | Path, *, atom: Atom | None = None,
                 methods: tuple[str, ...] = MAP_METHODS, probe: bool | None = None, workers: int = 1,
                 backend: str = "local", progress: bool = True) -> pd.DataFrame:
    """ATOM of every checkpoint of ``run_dir`` on the evaluation set; writes ``analysis/atom.csv`` and
    ``analysis/atom.png`` and returns the table. ``methods``: saliency methods whose object profiles are compared
    with ATOM's. ``probe``: run the dual-ball probe (default: for MiniPong-TwoBall evaluation sets)."""
    run_dir, evalset_path = Path(run_dir), Path(evalset_path)
    atom = atom or Atom()
    methods = tuple(methods)
    check_methods(methods)
    checkpoints = run_checkpoints(run_dir)
    evalset = load_evalset(evalset_path)
    if probe is None:
        probe = evalset.env.startswith("MiniPong-TwoBall")
    maps_paths = maps_for_run(run_dir, evalset_path, methods, workers=workers, backend=backend,
                              progress=progress) if methods else {}
    cache = cache_dir(run_dir, "atom", evalset_path, {"atom": asdict(atom), "methods": methods, "probe": probe})
    in_process = workers <= 1 and backend == "local"
    job = partial(atom_for_checkpoint, evalset=evalset if in_process else evalset_path, atom=atom,
                  maps_paths=maps_paths, methods=methods, probe=probe)
    results = for_each_checkpoint(checkpoints, cache, ".csv", job, workers=workers, backend=backend, desc="ATOM",
                                  progress=progress)
    result = pd.concat([load_result(path).assign(step=step) for step, path in results.items()],
                       ignore_index=True)[COLUMNS]
    out = run_dir / "analysis"
    save_result(out / "atom.csv", result)
    plot_atom(result, out / "atom.png", title=f"{run_dir.name} on {evalset.env}")
    return result


def plot_atom(table: pd.DataFrame, path: Path, title: str = "") -> Path:
    """Object shares of hierarchical attention against the training step, the return on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shares = table[(table.method == "atom") & (table.metric == "hierarchical_share")]
    shares = shares.pivot(index="step", columns="object", values="value")
    returns = table[(table.method == "training") & (table.metric == "mean_return")].set_index("step")["value"]
    figure, axis = plt.subplots(figsize=(6.4, 3.6), dpi=80)
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
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
    return path
