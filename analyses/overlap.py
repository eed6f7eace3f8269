"""Agreement between attention and saliency across training: every checkpoint of a run on one evaluation set.

``RUN_DIR/analysis/overlap.csv`` is tidy: ``step, head, method, target, metric, value, chance``, one row per
checkpoint, attention head (``<hook name>/h<i>``, the head's map on the current frame), saliency method, target
(``actor`` or ``critic``) and metric of :mod:`interp.agreement` (the mean over frames, with its chance level from
spatially shuffled attention). Object rows (``attention_mass/<object>``, ``saliency_mass/<object>``, chance: the
object's share of the frame) put the attention and saliency on each object side by side, and, where
``analysis/atom.csv`` exists, ``method = atom`` rows add the ATOM share of each object (``atom_share/<object>``).
Saliency maps are compared by their positive part (signed LRP relevance included). ``analysis/overlap/<metric>.png``
plots each metric against the training step per head, with chance shaded.

The maps of each checkpoint are cached (``analysis/cache/maps-*/step_*.npz``, the layout of ``interp maps``), as
are the tables (``analysis/cache/overlap-*``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from analyses.maps import MAP_METHODS, maps_for_run
from analyses.runs import cache_dir, checkpoint_step, for_each_checkpoint, load_result, run_checkpoints, save_result
from interp.agents import load_checkpoint
from interp.agreement import agreement_table
from interp.attention import head_images
from interp.errors import UserError
from interp.evalset import load_evalset
from interp.files import atomic_path
from interp.hooks import hook_points

COLUMNS = ["step", "head", "method", "target", "metric", "value", "chance"]
PLOTTED = {"cc": True, "spearman": True, "sim": True, "kl_attention_saliency": False, "iou_top10": True,
           "nss_top10": True, "auc_top10": True, "emd": False}
"""metric -> whether higher means more agreement"""
IMAGE_KINDS = ("spatial", "space", "space_time")


def has_attention_images(agent) -> bool:
    return bool(hook_points(agent, IMAGE_KINDS))


def overlap_table(maps: dict[str, np.ndarray], masks: dict[str, np.ndarray], methods: tuple[str, ...]
                  ) -> pd.DataFrame:
    """Agreement of every attention head with every saliency method and target in one checkpoint's maps."""
    heads = head_images({k.split("/", 1)[1]: v for k, v in maps.items() if k.startswith("attention/")})
    if not heads:
        return pd.DataFrame(columns=COLUMNS[1:])
    names = [f"{method}/{target}" for method in methods for target in ("actor", "critic")]
    saliency = {name: maps[name] for name in names}
    table = agreement_table(heads, saliency, masks)
    method_target = table.pop("saliency").str.split("/", expand=True)
    return table.rename(columns={"attention": "head"}).assign(method=method_target[0], target=method_target[1])[
        COLUMNS[1:]]


def overlap_job(checkpoint: Path, maps_paths: dict[int, Path], evalset_path: Path, methods: tuple[str, ...]
                ) -> pd.DataFrame:
    return overlap_table(load_result(maps_paths[checkpoint_step(checkpoint)]), load_evalset(evalset_path).masks,
                         methods)


def overlap_for_run(run_dir: str | Path, evalset_path: str | Path, *, methods: tuple[str, ...] = MAP_METHODS,
                    workers: int = 1, backend: str = "local", progress: bool = True) -> pd.DataFrame:
    """Maps and agreement for every checkpoint; writes ``analysis/overlap.csv`` and the plots."""
    run_dir, evalset_path = Path(run_dir), Path(evalset_path)
    methods = tuple(methods)
    checkpoints = run_checkpoints(run_dir)
    first = load_checkpoint(checkpoints[0]).agent
    if not has_attention_images(first):
        raise UserError(f"{run_dir}: the {first.name} agent has no attention over the frame to compare with saliency")
    evalset = load_evalset(evalset_path)
    maps_paths = maps_for_run(run_dir, evalset_path, methods, workers=workers, backend=backend, progress=progress)
    cache = cache_dir(run_dir, "overlap", evalset_path,
                      {"methods": methods, "maps": next(iter(maps_paths.values())).parent.name})
    results = for_each_checkpoint(checkpoints, cache, ".csv",
                                  partial(overlap_job, maps_paths=maps_paths, evalset_path=evalset_path,
                                          methods=methods),
                                  workers=workers, backend=backend, desc="overlap", progress=progress)
    table = pd.concat([load_result(path).assign(step=step) for step, path in results.items()], ignore_index=True)
    atom_csv = run_dir / "analysis" / "atom.csv"
    if atom_csv.exists():
        atom = pd.read_csv(atom_csv, keep_default_na=False, na_values=[""])
        shares = atom[(atom.method == "atom") & (atom.metric == "hierarchical_share")]
        table = pd.concat([table, pd.DataFrame({
            "step": shares.step, "head": "", "method": "atom", "target": "actor",
            "metric": "atom_share/" + shares.object, "value": shares.value, "chance": np.nan})], ignore_index=True)
    table = table[COLUMNS].sort_values(["step", "head", "method", "target", "metric"], ignore_index=True)
    out = run_dir / "analysis"
    save_result(out / "overlap.csv", table)
    plot_overlap(table, out / "overlap", title=f"{run_dir.name} on {evalset.env}")
    return table


def plot_overlap(table: pd.DataFrame, folder: Path, title: str = "") -> list[Path]:
    """One PNG per metric: a panel per head, a line per saliency method and target, and shaded in grey the region
    no better than the highest chance level of the panel's lines (the lowest, where lower means agreement)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    heads = sorted(h for h in table["head"].unique() if h)
    written = []
    for metric, higher_is_better in PLOTTED.items():
        rows = table[table.metric == metric]
        if rows.empty:
            continue
        columns = min(4, len(heads))
        lines = (len(heads) + columns - 1) // columns
        figure, axes = plt.subplots(lines, columns, figsize=(3.2 * columns, 2.6 * lines), dpi=80, squeeze=False,
                                    sharey=True)
        for axis, head in zip(axes.flat, heads, strict=False):
            panel = rows[rows["head"] == head]
            values = np.concatenate([panel.value, panel.chance])
            edge = np.nanmin(values) if higher_is_better else np.nanmax(values)
            chance = panel.groupby("step")["chance"].agg("max" if higher_is_better else "min")
            axis.fill_between(np.maximum(chance.index.to_numpy(), 1), chance.to_numpy(), edge, color="grey",
                              alpha=0.25, linewidth=0)
            for (method, target), group in panel.groupby(["method", "target"]):
                group = group.sort_values("step")
                axis.plot(np.maximum(group.step.to_numpy(), 1), group.value, marker="o", markersize=2,
                          label=f"{method} {target}")
            axis.set_xscale("log")
            axis.set_title(head.replace(".hook_weights", ""), fontsize=7)
            axis.tick_params(labelsize=7)
        for axis in axes.flat[len(heads):]:
            axis.axis("off")
        axes.flat[0].legend(fontsize=6)
        figure.suptitle(f"{metric} against training step (shaded: chance) - {title}", fontsize=9)
        figure.tight_layout()
        path = folder / f"{metric}.png"
        with atomic_path(path, suffix=".png") as tmp:
            figure.savefig(tmp, format="png")
        plt.close(figure)
        written.append(path)
    return written
