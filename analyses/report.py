"""One self-contained HTML page per run, or comparing runs: everything embedded (plots, stills, the overlay video,
the CSV tables), so the file can be mailed or archived alone.

Sections: configuration and parameter counts; training curves; ATOM trajectories; agreement of attention with
saliency, with chance levels; sanity checks; per-head attention stills and the overlay video; the numbers behind
every plot as downloadable CSV files. A section whose analysis has not been run says which command produces it.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analyses.evaluate import POLICIES
from analyses.runs import run_checkpoints
from interp.agents import load_checkpoint
from interp.attention import attention_maps, head_images
from interp.evalset import load_evalset, pre_step_state
from interp.files import atomic_path
from interp.render import heatmap_overlay, upscale
from interp.saliency import Perturbation
from interp.steps import Steps

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0; }
td, th { border: 1px solid #ddd; padding: .2em .5em; text-align: right; } th { background: #f4f4f4; }
img { max-width: 100%; } figure { margin: .5em 0; } figcaption { font-size: .85em; color: #555; }
.stills img { width: 168px; image-rendering: pixelated; margin: 2px; } .missing { color: #a33; }
"""


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _image(path: Path, caption: str) -> str:
    return (f'<figure><img alt="{html.escape(caption)}" src="{_data_uri(path.read_bytes(), "image/png")}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _png(image: np.ndarray) -> bytes:
    import cv2

    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return encoded.tobytes()


def _missing(what: str, command: str) -> str:
    return f'<p class="missing">No {html.escape(what)} yet: run <code>{html.escape(command)}</code>.</p>'


def _download(name: str, table: pd.DataFrame) -> str:
    return (f'<a download="{html.escape(name)}" href="{_data_uri(table.to_csv(index=False).encode(), "text/csv")}">'
            f"{html.escape(name)}</a> ({len(table)} rows)")


def _figure(draw) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.2), dpi=80)
    draw(axis)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return f'<figure><img alt="plot" src="{_data_uri(buffer.getvalue(), "image/png")}"></figure>'


class RunSummary:
    """What the page shows about one run, read from its directory."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir
        self.name = run_dir.name
        self.checkpoints = run_checkpoints(run_dir)
        loaded = load_checkpoint(self.checkpoints[-1])
        self.agent, self.meta = loaded.agent.eval(), loaded.meta
        config_path = run_dir / "config.json"
        self.config = json.loads(config_path.read_text()) if config_path.exists() else self.meta.get("config", {})
        self.analysis = run_dir / "analysis"

    def table(self, name: str) -> pd.DataFrame | None:
        path = self.analysis / name if name != "metrics.csv" else self.dir / name
        return pd.read_csv(path, keep_default_na=False, na_values=[""]) if path.exists() else None

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.agent.parameters())


def _configuration(runs: list[RunSummary]) -> str:
    keys = ["arch", "env", "frame_size", "steps", "actors", "envs_per_actor", "batch_size", "unroll", "lr",
            "entropy_cost", "discounting", "seed"]
    rows = "".join(
        f"<tr><th>{html.escape(r.name)}</th><td>{r.agent.name}</td><td>{r.parameters:,}</td>"
        f"<td>{len(r.checkpoints)}</td>" + "".join(f"<td>{html.escape(str(r.config.get(k, '')))}</td>" for k in keys)
        + "</tr>" for r in runs)
    header = "".join(f"<th>{k}</th>" for k in ["run", "agent", "parameters", "checkpoints", *keys])
    return f"<table><tr>{header}</tr>{rows}</table>"


def _training(runs: list[RunSummary]) -> str:
    curves = {r.name: r.table("metrics.csv") for r in runs}
    curves = {k: v.dropna(subset=["mean_return"]) for k, v in curves.items() if v is not None}
    if not curves:
        return _missing("training metrics", "interp train ...")
    evaluations = {r.name: r.table("evaluation.csv") for r in runs}
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

    def evaluated(name: str, policy: str) -> str:
        if name not in evaluations:
            return "<td>-</td>"
        row = evaluations[name].loc[policy]
        return f"<td>{row.mean_return:.2f} &plusmn; {row.std_return:.2f} ({int(row.episodes)})</td>"

    rows = "".join(f"<tr><th>{html.escape(name)}</th><td>{table['mean_return'].iloc[:20].mean():.2f}</td>"
                   f"<td>{table['mean_return'].iloc[-20:].mean():.2f}</td>"
                   + "".join(evaluated(name, policy) for policy in POLICIES) + "</tr>"
                   for name, table in curves.items())
    note = ("" if evaluations else _missing("evaluation of the final checkpoints", f"interp analyse {runs[0].dir}"))
    return (_figure(draw) + "<table><tr><th>run</th><th>training return, first 20 logs</th>"
            "<th>training return, last 20 logs</th><th>final checkpoint, greedy</th><th>sampled</th>"
            "<th>random policy</th></tr>" + rows + "</table><p>Training returns are means of the last 100 episodes "
            "of the sampling actors. The final checkpoint's returns are mean &plusmn; standard deviation (episodes) "
            "of whole episodes choosing the most likely action (greedy), sampling from the policy, or choosing "
            "uniformly at random.</p>" + note)


def _atom(run: RunSummary) -> str:
    table = run.table("atom.csv")
    if table is None:
        return _missing("ATOM analysis", f"interp atom {run.dir} --evalset EVAL.npz")
    shares = table[(table.method == "atom") & (table.metric == "hierarchical_share")]
    final = shares[shares.step == shares.step.max()].set_index("object")["value"].round(3)
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in final.items())
    return (_image(run.analysis / "atom.png", f"{run.name}: ATOM object shares against the training step")
            + f"<table><tr><th>object</th><th>share at step {shares.step.max()}</th></tr>{rows}</table>")


def _agreement(run: RunSummary) -> str:
    table = run.table("overlap.csv")
    if table is None:
        if not any(k in ("spatial", "space", "space_time") for k in _kinds(run.agent)):
            return "<p>This agent has no attention over the frame.</p>"
        return _missing("agreement analysis", f"interp overlap {run.dir} --evalset EVAL.npz")
    parts = [_image(run.analysis / "overlap" / f"{metric}.png", f"{run.name}: {metric} (grey: no better than chance)")
             for metric in ("cc", "sim", "iou_top10") if (run.analysis / "overlap" / f"{metric}.png").exists()]
    last = table[(table.step == table.step.max()) & table.metric.isin(["cc", "sim", "iou_top10", "emd"])]
    summary = last.groupby(["metric", "method", "target"])[["value", "chance"]].mean().round(3).reset_index()
    parts.append(f"<p>Final checkpoint, mean over heads:</p>{summary.to_html(index=False)}")
    return "".join(parts)


def _kinds(agent) -> set[str]:
    from interp.hooks import hook_points

    return {point.kind for point in hook_points(agent).values()}


def _sanity(run: RunSummary) -> str:
    table = run.table("sanity.csv")
    if table is None:
        return _missing("sanity check", f"interp sanity {run.dir} --evalset EVAL.npz")
    flags = run.table("sanity_flags.csv")
    flagged = [] if flags is None else list(flags["map"])
    verdict = ("<p><b>Flagged</b> (similar to the trained model's maps with every layer random, so they explain the "
               f"input rather than the model): {html.escape(', '.join(flagged))}</p>" if flagged
               else "<p>No map survives the randomisation of every layer.</p>")
    return _image(run.analysis / "sanity.png", f"{run.name}: cascading randomisation") + verdict


def _stills(run: RunSummary, evalset_path: Path | None) -> str:
    """Each attention head and the perturbation saliency on the first evaluation frame."""
    evalset_path = evalset_path or run.analysis / "evalset.npz"
    if not evalset_path.exists():
        return _missing("evaluation set", f"interp analyse {run.dir}")
    evalset = load_evalset(evalset_path).subset(slice(0, 1))
    steps = Steps(evalset.step_inputs(), pre_step_state(run.agent, evalset))
    rgb = evalset.rgb[0]
    panels = {name.replace(".hook_weights", "").split(".")[-1]: maps[0] for name, maps in
              head_images(attention_maps(run.agent, steps)).items()}
    saliency = Perturbation().attribute(run.agent, steps)
    panels.update({f"{target} saliency": saliency[target][0] for target in ("actor", "critic")})
    images = [f'<figure style="display:inline-block"><img alt="{html.escape(name)}" src="'
              f'{_data_uri(_png(upscale(heatmap_overlay(rgb, values), 168)), "image/png")}">'
              f"<figcaption>{html.escape(name)}</figcaption></figure>" for name, values in panels.items()]
    return f'<div class="stills">{"".join(images)}</div>'


def _video(run: RunSummary, frames: int) -> str:
    path = run.analysis / "video.mp4"
    if not path.exists() and frames > 0:
        from analyses.video import render_video

        env_id = run.config.get("env") or run.meta.get("env")
        torch.manual_seed(0)
        render_video(run.checkpoints[-1], env_id, frames, path, progress=False,
                     frame_size=run.config.get("frame_size", 84), **run.config.get("env_options", {}))
    if not path.exists():
        return _missing("overlay video", f"interp video {run.checkpoints[-1]} --env ENV --out {path}")
    return (f'<video controls muted loop width="100%" src="{_data_uri(path.read_bytes(), "video/mp4")}"></video>'
            f"<p>{html.escape(run.name)}: final checkpoint playing greedily (frame, attention heads, actor and critic "
            "perturbation saliency).</p>")


def _data(runs: list[RunSummary]) -> str:
    items = []
    for run in runs:
        for name in ("metrics.csv", "evaluation.csv", "atom.csv", "overlap.csv", "sanity.csv"):
            table = run.table(name)
            if table is not None:
                items.append(f"<li>{html.escape(run.name)}: {_download(f'{run.name}_{name}', table)}</li>")
    return f"<ul>{''.join(items)}</ul>" if items else "<p>No tables yet.</p>"


def write_report(run_dirs: list[str | Path], out: str | Path, *, evalset: str | Path | None = None,
                 video_frames: int = 60) -> Path:
    """Write the page for ``run_dirs`` (one run, or several to compare) to ``out``. A missing overlay video is
    rendered first (``video_frames`` steps; 0: none)."""
    runs = [RunSummary(Path(d)) for d in run_dirs]
    evalset_path = Path(evalset) if evalset else None
    title = "Run " + runs[0].name if len(runs) == 1 else "Comparison of " + ", ".join(r.name for r in runs)
    sections = [("configuration", "Configuration", _configuration(runs)),
                ("training", "Training", _training(runs))]
    for key, heading, render in (
            ("atom", "ATOM across training", _atom), ("agreement", "Attention against saliency", _agreement),
            ("sanity", "Sanity checks", _sanity),
            ("attention", "Attention stills", lambda r: _stills(r, evalset_path)),
            ("video", "Overlay video", lambda r: _video(r, video_frames))):
        body = "".join(f"<h3>{html.escape(r.name)} ({r.agent.name})</h3>{render(r)}" for r in runs)
        sections.append((key, heading, body))
    sections.append(("data", "Data behind the plots", _data(runs)))
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            + "".join(f'<section id="{key}"><h2>{heading}</h2>{body}</section>' for key, heading, body in sections)
            + "</body></html>")
    out = Path(out)
    with atomic_path(out, suffix=".html") as tmp:
        Path(tmp).write_text(page)
    return out
