"""The figures and tables of docs/pong/README.md, from analysed runs (``interp analyse RUN`` first).

    .venv/bin/python docs/pong/figures.py ~/runs/pong/baseline [more runs] --out docs/pong

Writes ``<run>_learning.png`` (mean training return against the step), copies the PNG figures the analysis stages
declare (``analyses.figures_of``: ATOM, agreement, sanity, health, stills) as ``<run>_<path>.png``, and prints,
per checkpoint, the ATOM shares of ball, player and enemy beside the mean training return at that step, the
agreement of attention with saliency (agents with attention) and the greedy returns of the final checkpoint
(markdown tables).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd

from analyses import figures_of, plots
from interp.runs import Run


def learning_curve(run: Run, out: Path) -> Path:
    metrics = run.read_table("metrics.csv", ("step", "wall_time", "mean_return")).dropna(subset=["mean_return"])
    figure, axis = plots.figure(6.4, 3.2)
    axis.plot(metrics.step / 1e6, metrics.mean_return)
    axis.set_xlabel("environment steps (millions)")
    axis.set_ylabel("mean return, last 100 episodes")
    axis.set_title(f"{run.name} on {run.environment.id}: {metrics.wall_time.iloc[-1] / 3600:.2f} h", fontsize=10)
    return plots.save(figure, out / f"{run.name}_learning.png")


def shares_table(run: Run) -> str:
    """ATOM's hierarchical shares per checkpoint beside the mean training return at that step (markdown)."""
    atom = run.read_table("atom.csv", ("step", "method", "metric", "object", "value"))
    shares = atom[(atom.method == "atom") & (atom.metric == "hierarchical_share")]
    shares = shares.pivot(index="step", columns="object", values="value")
    metrics = run.read_table("metrics.csv", ("step", "mean_return")).dropna()
    returns = pd.merge_asof(shares.reset_index()[["step"]], metrics, on="step")["mean_return"].to_numpy()
    empty = atom[(atom.method == "atom") & (atom.metric == "empty_selection")].set_index("step")["value"]
    header = "| step | mean return | " + " | ".join(shares.columns) + " | frames without a selection |"
    lines = [header, "|" + "---|" * (len(shares.columns) + 3)]
    for (step, row), mean_return in zip(shares.iterrows(), returns, strict=True):
        cells = " | ".join(f"{value:.3f}" for value in row)
        logged = "none yet" if pd.isna(mean_return) else f"{mean_return:+.2f}"
        lines.append(f"| {step:,} | {logged} | {cells} | {int(empty.get(step, 0))} |")
    return "\n".join(lines)


def agreement_table(run: Run, target: str = "actor") -> str:
    """Per checkpoint, how well the attention maps agree with each saliency method (Spearman and CC, mean over the
    heads, with the mean chance level in brackets) and the attention's mass on each object (mean over heads; in
    brackets the object's share of the frame, what uniform attention would put there) (markdown)."""
    agreement = run.read_table("agreement.csv", ("step", "head", "method", "target", "metric", "value", "chance"))
    rows = agreement[(agreement.target == target) & (agreement.method != "atom")]
    means = rows.groupby(["step", "method", "metric"])[["value", "chance"]].mean()
    methods = sorted(rows.method.unique())
    objects = sorted(m.split("/")[1] for m in rows.metric.unique() if m.startswith("attention_mass/"))
    lines = ["| step | " + " | ".join(f"{m} spearman / cc" for m in methods) + " | "
             + " | ".join(f"attention on {o}" for o in objects) + " |",
             "|" + "---|" * (1 + len(methods) + len(objects))]
    for step in sorted(rows.step.unique()):
        cells = []
        for method in methods:
            spearman, cc = means.loc[(step, method, "spearman")], means.loc[(step, method, "cc")]
            cells.append(f"{spearman.value:.3f} ({spearman.chance:.3f}) / {cc.value:.3f}")
        for obj in objects:
            mass = means.xs((step, f"attention_mass/{obj}"), level=("step", "metric")).mean()
            cells.append(f"{mass.value:.4f} ({mass.chance:.4f})")
        lines.append(f"| {step:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--out", default="docs/pong")
    args = parser.parse_args()
    out = Path(args.out)
    for directory in args.runs:
        run = Run.open(directory)
        learning_curve(run, out)
        for path in (path for paths in figures_of(run).values() for path in paths if path.suffix == ".png"):
            name = "_".join(path.relative_to(run.analysis).parts).replace(" ", "_")
            shutil.copyfile(path, out / f"{run.name}_{name}")
        print(f"\n## {run.name}\n\n{shares_table(run)}")
        if (run.analysis / "agreement.csv").exists():
            print(f"\n{agreement_table(run)}")
        evaluation = run.read_table("evaluation.csv")
        if evaluation is not None:
            print("\n| policy | episodes | mean return | std |\n|---|---|---|---|")
            for row in evaluation.itertuples():
                print(f"| {row.policy} | {row.episodes} | {row.mean_return:+.2f} | {row.std_return:.2f} |")


if __name__ == "__main__":
    main()
