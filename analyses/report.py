"""One self-contained HTML page per run, or comparing runs: everything embedded (plots, stills, the overlay video,
the CSV tables), so the file can be mailed or archived alone.

Sections: configuration and parameter counts; training curves; ATOM trajectories; agreement of attention with
saliency, with chance levels; sanity checks; per-head attention stills and the overlay video; the numbers behind
every plot as downloadable CSV files. A section whose analysis has not been run says which command produces it.
"""

from __future__ import annotations

import html
from pathlib import Path

from analyses import STAGES, page, plots
from analyses.evaluation import POLICIES
from analyses.findings import Finding, run_findings, write_findings
from interp.files import atomic_path
from interp.runs import Run

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0; }
td, th { border: 1px solid #ddd; padding: .2em .5em; text-align: right; } th { background: #f4f4f4; }
img { max-width: 100%; } figure { margin: .5em 0; } figcaption { font-size: .85em; color: #555; }
.stills img { width: 168px; image-rendering: pixelated; margin: 2px; } .missing { color: #a33; }
ul.findings li { margin: .3em 0; } ul.findings li.warning { color: #a33; font-weight: 600; }
"""


def _figure(draw) -> str:
    figure, axis = plots.figure(7, 3.2)
    draw(axis)
    return page.picture(plots.png_bytes(figure), "training curves")


def _parameters(run: Run) -> int:
    return sum(p.numel() for p in run.agent.parameters())


def _configuration(runs: list[Run]) -> str:
    keys = ["arch", "env", "frame_size", "steps", "actors", "envs_per_actor", "batch_size", "unroll", "optimizer",
            "lr", "entropy_cost", "discounting", "precision", "seed"]

    def setting(run: Run, key: str) -> str:
        value = run.config.get(key, "") if run.config is not None else ""
        return f"<td>{html.escape(str(value))}</td>"

    rows = [("agent", [f"<td>{r.agent.name}</td>" for r in runs]),
            ("parameters", [f"<td>{_parameters(r):,}</td>" for r in runs]),
            ("checkpoints", [f"<td>{len(r.steps)}</td>" for r in runs]),
            *[(key, [setting(r, key) for r in runs]) for key in keys]]
    header = "".join(f"<th>{html.escape(r.name)}</th>" for r in runs)
    body = "".join(f"<tr><th>{key}</th>{''.join(cells)}</tr>" for key, cells in rows)
    return f"<table><tr><th>setting</th>{header}</tr>{body}</table>"


def _training(runs: list[Run]) -> str:
    curves = {r.name: r.read_table("metrics.csv", ("step", "mean_return")) for r in runs}
    curves = {k: v.dropna(subset=["mean_return"]) for k, v in curves.items() if v is not None and len(v)}
    evaluations = {r.name: r.read_table("evaluation.csv", ("policy", "episodes", "mean_return", "std_return"))
                   for r in runs}
    evaluations = {k: v.set_index("policy") for k, v in evaluations.items() if v is not None}
    random_returns = [table.loc["random", "mean_return"] for table in evaluations.values()]

    def draw(axis):
        for name, table in curves.items():
            smooth = table["mean_return"].rolling(20, min_periods=1).mean()
            axis.plot(table["step"], smooth, label=name)
        if random_returns:
            axis.axhline(random_returns[0], color="grey", linestyle=":", label="random policy")
        axis.set_xlabel("environment step")
        axis.set_ylabel("mean episode return (rolling)")
        axis.legend(fontsize=8)

    def row(run: Run) -> str:
        table = curves.get(run.name)
        logged = ([f"{table['mean_return'].iloc[:20].mean():.2f}", f"{table['mean_return'].iloc[-20:].mean():.2f}"]
                  if table is not None else ["not logged (trained elsewhere)", "-"])
        return (f'<tr id="training-{html.escape(run.name)}"><th>{html.escape(run.name)}</th>'
                + "".join(f"<td>{cell}</td>" for cell in logged)
                + "".join(_evaluated(evaluations.get(run.name), policy) for policy in POLICIES) + "</tr>")

    note = ("" if evaluations else page.missing("evaluation of the final checkpoints",
                                                f"interp evaluation {runs[0].directory}"))
    return ((_figure(draw) if curves else "") + "<table><tr><th>run</th><th>training return, first 20 logs</th>"
            "<th>training return, last 20 logs</th><th>final checkpoint, greedy</th><th>sampled</th>"
            "<th>random policy</th></tr>" + "".join(row(r) for r in runs) + "</table><p>Training returns are means "
            "of the last 100 episodes of the sampling actors (a run trained by another library has none here). The "
            "final checkpoint's returns are mean &plusmn; standard deviation (episodes) of whole episodes choosing "
            "the most likely action (greedy), sampling from the policy, or choosing uniformly at random.</p>" + note)


def _evaluated(table, policy: str) -> str:
    if table is None:
        return "<td>-</td>"
    row = table.loc[policy]
    return f"<td>{row.mean_return:.2f} &plusmn; {row.std_return:.2f} ({int(row.episodes)})</td>"


def _data(runs: list[Run]) -> str:
    """The training metrics and every table a stage declares (:attr:`analyses.stage.Stage.tables`), as CSV."""
    items = []
    for run in runs:
        for name in ("metrics.csv", *(table for stage in STAGES.values() for table in stage.tables)):
            table = run.read_table(name)
            if table is not None:
                items.append(f"<li>{html.escape(run.name)}: {page.download(f'{run.name}_{name}', table)}</li>")
    return f"<ul>{''.join(items)}</ul>" if items else "<p>No tables yet.</p>"


def findings_html(found: dict[str, list[Finding]]) -> str:
    """The findings of each run (name -> findings), each a sentence linking to its figure; warnings first."""
    parts = []
    for name, items in found.items():
        heading = f"<h3>{html.escape(name)}</h3>" if len(found) > 1 else ""
        ordered = sorted(items, key=lambda f: not f.warning)
        entries = "".join(
            f'<li class="{"warning" if f.warning else f.topic}">{html.escape(f.text)}'
            + (f' <a href="#{html.escape(f.figure)}">figure</a>' if f.figure else "") + "</li>" for f in ordered)
        parts.append(f"{heading}<ul class='findings'>{entries}</ul>")
    return "".join(parts)


def write_report(runs: list[Run], out: str | Path) -> Path:
    """Write the page for ``runs`` (one run, or several to compare) to ``out``, from the files on disk: the run
    directories and what the stages of :data:`analyses.STAGES` wrote. It opens with the findings
    (:mod:`analyses.findings`), which are also written to each run's ``analysis/findings.json``."""
    title = "Run " + runs[0].name if len(runs) == 1 else "Comparison of " + ", ".join(r.name for r in runs)
    found = {run.name: run_findings(run) for run in runs}
    for run in runs:
        if run.analysis.exists():
            write_findings(run.findings_path, found[run.name])
    sections = [("findings", "Findings", findings_html(found)),
                ("configuration", "Configuration", _configuration(runs)),
                ("training", "Training", _training(runs))]
    for name, stage in STAGES.items():
        if stage.section is not None:
            body = "".join(f'<h3 id="{name}-{html.escape(r.name)}">{html.escape(r.name)} ({r.agent.name})</h3>'
                           f"{stage.section(r)}" for r in runs)
            sections.append((name, stage.heading, body))
    sections.append(("data", "Data behind the plots", _data(runs)))
    document = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
                + "".join(f'<section id="{key}"><h2>{heading}</h2>{body}</section>' for key, heading, body in sections)
                + "</body></html>")
    out = Path(out)
    with atomic_path(out, suffix=".html") as tmp:
        Path(tmp).write_text(document)
    return out
