"""Agreement between attention and saliency across training: every checkpoint of a run on one evaluation set.

``RUN_DIR/analysis/agreement.csv`` is tidy: ``step, head, method, target, metric, value, chance, better``, one row
per checkpoint, attention head (``<hook name>/h<i>``, the head's map on the current frame), saliency method, target
(``actor`` or ``critic``) and metric of :mod:`interp.agreement` (the mean over frames, with its chance level from
spatially shuffled attention, and the share of frames on which it beats that level). Object rows
(``attention_mass/<object>``, ``saliency_mass/<object>``, chance: the object's share of the frame) put the attention
and saliency on each object side by side, and ``method = atom`` rows add the ATOM share of each object
(``atom_share/<object>``), from the ``atom`` stage's result for the same checkpoint (a declared input, so its options
enter this stage's cache key). Saliency maps are compared by their positive part (signed LRP
relevance included). ``analysis/agreement/<metric>.png`` plots each metric against the training step, a panel per
head and target, with chance shaded and the training return on a second axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analyses import page, plots
from analyses.maps import MAP_METHODS, check_methods
from analyses.stage import Job, Stage, load_result, table_of, write_table
from interp.agreement import agreement_table
from interp.attention import head_images
from interp.evalset import load_evalset
from interp.hooks import hook_points
from interp.runs import Run

COLUMNS = ["step", "head", "method", "target", "metric", "value", "chance", "better"]
PLOTTED = {"cc": True, "spearman": True, "sim": True, "kl_attention_saliency": False, "iou_top10": True,
           "nss_top10": True, "auc_top10": True, "emd": False}
"""metric -> whether higher means more agreement"""
IMAGE_LAYOUTS = ("spatial", "space", "space_time")


def without_attention_images(agent) -> str:
    """Why the stage does not apply to ``agent`` (``""`` when it has attention over the frame)."""
    if any(point.layout in IMAGE_LAYOUTS for point in hook_points(agent, ("attention",)).values()):
        return ""
    return f"the {agent.name} agent has no attention over the frame to compare with saliency"


@dataclass(frozen=True)
class AgreementOptions:
    methods: tuple[str, ...] = MAP_METHODS
    """comma-separated saliency methods the attention heads are compared with"""

    def __post_init__(self) -> None:
        check_methods(self.methods)


def agreement_of(maps: dict[str, np.ndarray], masks: dict[str, np.ndarray], methods: tuple[str, ...]
                 ) -> pd.DataFrame:
    """Agreement of every attention head with every saliency method and target in one checkpoint's maps."""
    heads = head_images({k.split("/", 1)[1]: v for k, v in maps.items() if k.startswith("attention/")})
    if not heads:
        return pd.DataFrame(columns=COLUMNS[1:])
    names = [f"{method}/{target}" for method in methods for target in ("actor", "critic")]
    table = agreement_table(heads, {name: maps[name] for name in names}, masks)
    method_target = table.pop("saliency").str.split("/", expand=True)
    return table.rename(columns={"attention": "head"}).assign(method=method_target[0], target=method_target[1])[
        COLUMNS[1:]]


def compute(job: Job) -> pd.DataFrame:
    table = agreement_of(load_result(job.needed["maps"]), load_evalset(job.evalset).masks, job.options.methods)
    atom = load_result(job.needed["atom"])
    shares = atom[(atom.method == "atom") & (atom.metric == "hierarchical_share")]
    return pd.concat([table, pd.DataFrame({
        "head": "", "method": "atom", "target": "actor", "metric": "atom_share/" + shares.object,
        "value": shares.value, "chance": np.nan, "better": np.nan})], ignore_index=True)


def finish(run: Run, results: dict[int, Path], options: AgreementOptions) -> None:
    table = table_of(results)[COLUMNS].sort_values(["step", "head", "method", "target", "metric"], ignore_index=True)
    write_table(run.analysis / "agreement.csv", table)
    plot_agreement(table, run.analysis / "agreement", title=f"{run.name} on {run.environment.id}",
                   returns=training_returns(run))


def training_returns(run: Run) -> pd.Series | None:
    """The mean training return at each of the run's checkpoints (the last logged at or before its step), or None
    for a run trained elsewhere."""
    metrics = run.read_table("metrics.csv", ("step", "mean_return"))
    if metrics is None or metrics.mean_return.isna().all():
        return None
    logged = metrics.dropna(subset=["mean_return"]).set_index("step")["mean_return"]
    return pd.Series({step: logged[logged.index <= step].iloc[-1] if (logged.index <= step).any() else np.nan
                      for step in run.steps})


def plot_agreement(table: pd.DataFrame, folder: Path, title: str = "", returns: pd.Series | None = None
                   ) -> list[Path]:
    """One PNG per metric: a panel per head and target (actor, critic), a line per saliency method, shaded in grey
    the region no better than the highest chance level of the panel's lines (the lowest, where lower means
    agreement), and the training return (dashed) on a second axis."""
    heads = sorted(h for h in table["head"].unique() if h)
    targets = sorted(t for t in table["target"].unique() if t and t in ("actor", "critic"))
    written = []
    for metric, higher_is_better in PLOTTED.items():
        rows = table[table.metric == metric]
        if rows.empty:
            continue
        figure, axes = plots.figure(3.4 * len(targets), 2.4 * len(heads), len(heads), len(targets), squeeze=False,
                                    sharey=True)
        for row, head in enumerate(heads):
            for column, target in enumerate(targets):
                axis = axes[row, column]
                _panel(axis, rows[(rows["head"] == head) & (rows.target == target)], higher_is_better, returns)
                axis.set_title(f"{head.replace('.hook_weights', '')}, {target}", fontsize=7)
        axes[0, 0].legend(fontsize=6)
        figure.suptitle(f"{metric} against training step (shaded: chance; dashed: training return) - {title}",
                        fontsize=9)
        written.append(plots.save(figure, folder / f"{metric}.png"))
    return written


def _panel(axis, panel: pd.DataFrame, higher_is_better: bool, returns: pd.Series | None) -> None:
    values = np.concatenate([panel.value, panel.chance])
    edge = np.nanmin(values) if higher_is_better else np.nanmax(values)
    chance = panel.groupby("step")["chance"].agg("max" if higher_is_better else "min")
    axis.fill_between(np.maximum(chance.index.to_numpy(), 1), chance.to_numpy(), edge, color="grey", alpha=0.25,
                      linewidth=0)
    for method, group in panel.groupby("method"):
        group = group.sort_values("step")
        axis.plot(np.maximum(group.step.to_numpy(), 1), group.value, marker="o", markersize=2, label=method)
    axis.set_xscale("log")
    axis.tick_params(labelsize=7)
    if returns is not None:
        second = axis.twinx()
        second.plot(np.maximum(returns.index.to_numpy(), 1), returns.to_numpy(), color="black", linestyle="--",
                    linewidth=0.8)
        second.tick_params(labelsize=6)


def section(run: Run) -> str:
    table = run.read_table("agreement.csv", COLUMNS[:-1])  # "better" came later
    if table is None:
        reason = without_attention_images(run.agent)
        if reason:
            return f"<p>Not computed: {reason}.</p>"
        return page.missing("agreement analysis", f"interp agreement {run.directory}")
    folder = run.analysis / "agreement"
    parts = [page.image(folder / f"{metric}.png", f"{run.name}: {metric} (grey: no better than chance)")
             for metric in ("cc", "sim", "iou_top10") if (folder / f"{metric}.png").exists()]
    last = table[(table.step == table.step.max()) & table.metric.isin(["cc", "sim", "iou_top10", "emd"])]
    summary = last.groupby(["metric", "method", "target"])[["value", "chance"]].mean().round(3).reset_index()
    parts.append(f"<p>Final checkpoint, mean over heads:</p>{summary.to_html(index=False)}")
    return "".join(parts)


STAGE = Stage(
    name="agreement", summary="agreement of attention heads with saliency for every checkpoint of a run",
    description="For every checkpoint of RUN_DIR on one evaluation set: each attention head against each saliency "
                "method (actor and critic) by CC, Spearman, KL both ways, SIM, IoU of the top 5/10/20%, NSS and AUC, "
                "EMD, each with a chance level from spatially shuffled attention, and the attention and saliency "
                "mass on each object beside the ATOM share (the atom stage runs first where its results are missing). "
                "Writes RUN_DIR/analysis/agreement.csv and agreement/<metric>.png.",
    options=AgreementOptions, compute=compute, finish=finish, section=section,
    heading="Attention against saliency", needs=("maps", "atom"), applies=without_attention_images, version=3,
    tables=("agreement.csv",), figures=("agreement/*.png",))
