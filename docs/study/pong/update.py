"""Refresh this folder's tables from the Pong runs on this machine, keeping the rows of runs that are no longer here.

    .venv/bin/python docs/study/pong/update.py ~/runs/pong [--out docs/study/pong]

The runs of issue 33 take hours each and live outside the work tree (``RUN/runs/<arch>-s<seed>``), so they outlive a
session only while its machine does; the four finished first were lost with one. ``interp study --existing-only``
tables only the runs it finds, so this script merges instead: each run found replaces its own row of ``study.csv``
(:func:`analyses.study.run_row`, as the study computes it), ``summary.csv`` is summarised again from the merged rows,
and an architecture's curve in ``learning.csv`` (and ``learning.png``) is computed again when every run of it in
``study.csv`` is here (the IQM is over all of an agent's seeds; a run still training has no curve yet,
:func:`analyses.study_report.learning_curves`). Per-run figures (learning curve, ATOM, agreement,
health, sanity) come from ``docs/pong/figures.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from analyses.stage import write_table
from analyses.study import COLUMNS, run_row, summarise
from analyses.study_report import learning_curves, plot_learning
from interp.runs import Run

THRESHOLD = 18.0  # the mean of the last 100 training returns the runs train towards (`--until-return 18`)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", help="the folder whose runs/ holds the run directories")
    parser.add_argument("--out", default=str(Path(__file__).parent))
    args = parser.parse_args()
    study, out = Path(args.study), Path(args.out)
    table = pd.read_csv(out / "study.csv")
    here = {}
    for directory in sorted((study / "runs").iterdir()):
        run = Run.open(directory)
        row = run_row(run, THRESHOLD)
        here[(row["arch"], row["seed"])] = row
        print(f"{directory.name}: {row['steps']:,} steps, greedy {row['greedy_return']:+.2f}")
    kept = table[[(arch, seed) not in here for arch, seed in zip(table.arch, table.seed, strict=True)]]
    merged = pd.concat([kept, pd.DataFrame(list(here.values()), columns=COLUMNS)], ignore_index=True)
    order = {arch: index for index, arch in enumerate(dict.fromkeys(table.arch))}
    merged = merged.sort_values(["arch", "seed"], key=lambda c: c.map(order) if c.name == "arch" else c)
    write_table(out / "study.csv", merged)
    write_table(out / "summary.csv", summarise(merged))
    complete = [arch for arch in merged.arch.unique()
                if all((arch, seed) in here for seed in merged[merged.arch == arch].seed)]
    curves = pd.read_csv(out / "learning.csv")
    fresh = learning_curves(study, merged[merged.arch.isin(complete)])
    curves = pd.concat([curves[~curves.arch.isin(complete)], fresh], ignore_index=True)
    curves = curves.sort_values(["arch", "step"], key=lambda c: c.map(order) if c.name == "arch" else c)
    write_table(out / "learning.csv", curves)
    plot_learning(curves, merged, out / "learning.png")


if __name__ == "__main__":
    main()
