"""The study's figures and page: agents side by side, each figure with its uncertainty across seeds.

- ``figures/learning.png``: per architecture, the interquartile mean (IQM) over seeds of the training return on a
  common grid of steps, with its bootstrap 95% confidence band (:func:`analyses.study.iqm_with_ci`); a run that
  stopped early (``--until-return``) keeps its last value;
- ``figures/atom.png``: per architecture, the ATOM object shares across training (mean over seeds), a panel each;
- ``figures/agreement.png``: per attention architecture, the Spearman agreement of its attention with each saliency
  method across training (mean over heads, targets and seeds) against the mean of its chance level;
- the tables: study.csv, summary.csv (mean and 95% interval per figure), and the sanity flags per architecture.
"""

from __future__ import annotations

import html
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd

from analyses import page, plots
from analyses.findings import write_findings
from analyses.report import STYLE, findings_html
from analyses.stage import write_table
from analyses.study import FIGURES, StudyOptions, iqm_with_ci, study_findings, summarise
from interp.files import atomic_path
from interp.runs import Run
from trainers.config import TrainConfig

GRID_POINTS = 40


def run_tables(out: Path, table: pd.DataFrame, name: str) -> dict[str, list[pd.DataFrame]]:
    """Architecture -> the table ``name`` of each of its runs that has one."""
    tables: dict[str, list[pd.DataFrame]] = {}
    for row in table.itertuples():
        found = Run.open(out / "runs" / f"{row.arch}-s{row.seed}").read_table(name)
        if found is not None:
            tables.setdefault(row.arch, []).append(found)
    return tables


def learning_curves(out: Path, table: pd.DataFrame) -> pd.DataFrame:
    """Tidy ``arch, step, iqm, ci_low, ci_high, seeds``: each evaluated run's training return interpolated onto a
    common grid of steps (its last value carried on after it stopped), then the IQM and its interval across seeds
    per step. A run without an evaluation (still training) is left out, as the findings say: its last value carried
    on would show it stuck where it is now."""
    metrics = run_tables(out, table.dropna(subset=["greedy_return"]), "metrics.csv")
    last = max((m.step.max() for runs in metrics.values() for m in runs), default=0)
    grid = np.linspace(0, last, GRID_POINTS + 1)[1:]
    rows = []
    for arch, runs in metrics.items():
        curves = []
        for m in runs:
            logged = m.dropna(subset=["mean_return"])
            if len(logged):
                curves.append(np.interp(grid, logged.step, logged.mean_return, left=np.nan))
        for index, step in enumerate(grid):
            values = np.array([c[index] for c in curves if not np.isnan(c[index])])
            if len(values):
                rows.append({"arch": arch, "step": int(step), **dict(zip(("iqm", "ci_low", "ci_high"),
                                                                         iqm_with_ci(values), strict=True)),
                             "seeds": len(values)})
    return pd.DataFrame(rows, columns=["arch", "step", "iqm", "ci_low", "ci_high", "seeds"])


def plot_learning(curves: pd.DataFrame, table: pd.DataFrame, path: Path) -> Path:
    figure, axis = plots.figure(7.5, 3.8)
    for arch, group in curves.groupby("arch", sort=False):
        line, = axis.plot(group.step, group.iqm, label=arch)
        axis.fill_between(group.step, group.ci_low, group.ci_high, color=line.get_color(), alpha=0.2)
    random = table.random_return.dropna()
    if len(random):
        axis.axhline(random.mean(), color="grey", linestyle=":", label="random policy")
    axis.set_xlabel("environment step")
    axis.set_ylabel("training return (IQM over seeds)")
    axis.legend(fontsize=7, ncol=2)
    return plots.save(figure, path)


def plot_panels(series: dict[str, pd.DataFrame], path: Path, ylabel: str, chance: dict[str, pd.Series] | None = None
                ) -> Path | None:
    """A panel per architecture, a line per column of its table (index: the step); ``chance``: a grey line each."""
    if not series:
        return None
    columns = min(4, len(series))
    rows = -(-len(series) // columns)
    figure, axes = plots.figure(3.2 * columns, 2.6 * rows, rows, columns, squeeze=False)
    for axis, (arch, frame) in zip(axes.flat, series.items(), strict=False):
        for name in frame.columns:
            axis.plot(np.maximum(frame.index, 1), frame[name], marker="o", markersize=2, label=name)
        if chance and arch in chance:
            axis.plot(np.maximum(chance[arch].index, 1), chance[arch], color="grey", linestyle="--", label="chance")
        axis.set_xscale("log")
        axis.set_title(arch, fontsize=9)
        axis.set_xlabel("training step", fontsize=8)
        axis.set_ylabel(ylabel, fontsize=8)
        axis.legend(fontsize=6)
    for axis in list(axes.flat)[len(series):]:
        axis.set_visible(False)
    return plots.save(figure, path)


def atom_shares(out: Path, table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Architecture -> hierarchical shares (step x object), the mean over seeds."""
    shares = {}
    for arch, runs in run_tables(out, table, "atom.csv").items():
        rows = pd.concat(runs)
        rows = rows[(rows.method == "atom") & (rows.metric == "hierarchical_share")]
        if len(rows):
            shares[arch] = rows.pivot_table(index="step", columns="object", values="value", aggfunc="mean")
    return shares


def agreement(out: Path, table: pd.DataFrame, metric: str = "spearman") -> tuple[dict, dict]:
    """Architecture -> (step x saliency method) of ``metric`` (mean over heads, targets and seeds), and its chance."""
    values, chance = {}, {}
    for arch, runs in run_tables(out, table, "agreement.csv").items():
        rows = pd.concat(runs)
        rows = rows[(rows.metric == metric) & (rows["head"].astype(str) != "")]
        if len(rows):
            values[arch] = rows.pivot_table(index="step", columns="method", values="value", aggfunc="mean")
            chance[arch] = rows.groupby("step")["chance"].mean()
    return values, chance


def sanity_flags(out: Path, table: pd.DataFrame) -> pd.DataFrame:
    """``arch, map, seeds_flagged``: the maps that fail the randomisation check, and in how many seeds."""
    rows = []
    for arch, runs in run_tables(out, table, "sanity_flags.csv").items():
        flagged = pd.concat(runs)["map"].value_counts()
        rows += [{"arch": arch, "map": name, "seeds_flagged": int(count)} for name, count in flagged.items()]
    return pd.DataFrame(rows, columns=["arch", "map", "seeds_flagged"])


def _summary_html(summary: pd.DataFrame) -> str:
    def cell(row) -> str:
        interval = "" if np.isnan(row.ci_low) else f" [{row.ci_low:.3g}, {row.ci_high:.3g}]"
        return f"<td>{row['mean']:.4g}{interval}</td>"

    header = "".join(f"<th>{html.escape(f)}</th>" for f in FIGURES)
    body = "".join(f"<tr><th>{html.escape(arch)} ({int(group.seeds.max())})</th>"
                   + "".join(cell(row) for _, row in group.set_index("figure").loc[list(FIGURES)].iterrows())
                   + "</tr>" for arch, group in summary.groupby("arch", sort=False))
    return f"<table><tr><th>arch (seeds)</th>{header}</tr>{body}</table>"


def _settings_html(options: StudyOptions, out: Path) -> str:
    rows = []
    for config in options.grid(out)[::options.seeds]:
        run_config = TrainConfig.from_json(Run.open(config.out).config_path) if Run.started(config.out) else config
        rows.append(f"<tr><th>{html.escape(config.arch)}</th><td style='text-align:left'><code>"
                    f"{html.escape(_distinct_settings(run_config))}</code></td></tr>")
    header = "<tr><th>arch</th><th>settings that differ from interp train's defaults</th></tr>"
    return f"<table>{header}{''.join(rows)}</table>"


def _distinct_settings(config: TrainConfig) -> str:
    plain = TrainConfig(arch=config.arch, out=config.out)
    skip = {"out", "seed", "actors", "learner_threads"}
    return ", ".join(f"{f.name}={getattr(config, f.name)}" for f in fields(config)
                     if f.name not in skip and getattr(config, f.name) != getattr(plain, f.name))


def write_study_report(out: Path, options: StudyOptions, table: pd.DataFrame) -> Path:
    """figures/*.png and report.html from the runs' files and study.csv's ``table``."""
    figures = out / "figures"
    found = study_findings(out)
    write_findings(out / "findings.json", found)
    curves = learning_curves(out, table)
    write_table(figures / "learning.csv", curves)
    parts = [("findings", "Findings", findings_html({"study": found})),
             ("learning", "Learning", page.image(plot_learning(curves, table, figures / "learning.png"),
                                                 "training return, IQM over seeds with its bootstrap 95% band"))]
    summary = summarise(table)
    parts.append(("table", "The runs", _summary_html(summary) + "<p>Mean over seeds and its 95% confidence interval "
                  "(Student's t). Returns of the final checkpoint over whole episodes; hours and steps/s of training; "
                  "inference: one agent step, batch 1, float32, one thread.</p>" + _settings_html(options, out)))
    shares = atom_shares(out, table)
    atom_png = plot_panels(shares, figures / "atom.png", "ATOM hierarchical share")
    parts.append(("atom", "ATOM object shares across training", page.image(atom_png, "mean over seeds")
                  if atom_png else page.missing("ATOM analysis", f"interp study ... --out {out}")))
    values, chance = agreement(out, table)
    agreement_png = plot_panels(values, figures / "agreement.png", "Spearman (attention, saliency)", chance)
    parts.append(("agreement", "Attention against saliency", page.image(
        agreement_png, "mean over heads, targets and seeds; dashed: the chance level (attention's pixels shuffled)")
        if agreement_png else "<p>No attention agent in this study.</p>"))
    flags = sanity_flags(out, table)
    parts.append(("sanity", "Sanity checks", "<p>Maps whose similarity to the trained model's stays above 0.5 with "
                  "every layer randomised (they follow the image, not the network):</p>" + (
                      flags.to_html(index=False) if len(flags) else "<p>none</p>")))
    parts.append(("data", "Data", "<ul>" + "".join(f"<li>{page.download(name, frame)}</li>" for name, frame in (
        ("study.csv", table), ("summary.csv", summary), ("learning.csv", curves), ("sanity_flags.csv", flags)))
        + "</ul>"))
    title = f"Study: {', '.join(options.archs)} on {options.env}, {options.seeds} seed(s) each"
    document = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
                + "".join(f'<section id="{key}"><h2>{heading}</h2>{body}</section>' for key, heading, body in parts)
                + "</body></html>")
    path = out / "report.html"
    with atomic_path(path, suffix=".html") as tmp:
        Path(tmp).write_text(document)
    return path

