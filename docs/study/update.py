"""Refresh a study folder's tables from runs on this machine, keeping the rows of runs that are no longer here.

    .venv/bin/python docs/study/update.py ~/runs/pong --out docs/study/pong
    .venv/bin/python docs/study/update.py ~/runs/st_norm/study ~/runs/atarinet_unscaled/study --out docs/study/minipong

Long runs live outside the work tree (``STUDY/runs/<arch>-s<seed>``), so they outlive a session only while its
machine does; the four Pong runs finished first were lost with one. ``interp study --existing-only`` tables only the
runs it finds, so this script merges instead: each run found in the STUDY folders replaces its own row of
``OUT/study.csv`` (:func:`analyses.study.run_row`, as the study computes it, with the study's threshold for the
run's game), ``summary.csv`` is summarised again from the merged rows, and an architecture's curve in
``learning.csv`` (and ``learning.png``) is computed again when every run of it in ``study.csv`` is in one STUDY
folder (the IQM is over all of an agent's seeds; a run still training has no curve yet,
:func:`analyses.study_report.learning_curves`). Per-run figures (learning curve, ATOM, agreement, health, sanity)
come from ``docs/pong/figures.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from analyses.findings import threshold_for
from analyses.stage import write_table
from analyses.study import COLUMNS, run_row, summarise
from analyses.study_report import learning_curves, plot_learning
from interp.runs import Run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("studies", nargs="+", help="folders whose runs/ hold run directories")
    parser.add_argument("--out", required=True, help="the folder of study.csv, summary.csv and learning.csv")
    args = parser.parse_args()
    out = Path(args.out)
    table = pd.read_csv(out / "study.csv")
    here = {study: runs_here(study) for study in map(Path, args.studies)}
    found = {key: row for rows in here.values() for key, row in rows.items()}
    kept = table[[(arch, seed) not in found for arch, seed in zip(table.arch, table.seed, strict=True)]]
    merged = pd.concat([kept, pd.DataFrame(list(found.values()), columns=COLUMNS)], ignore_index=True)
    order = {arch: index for index, arch in enumerate(dict.fromkeys(table.arch))}
    merged = merged.sort_values(["arch", "seed"], key=lambda c: c.map(order) if c.name == "arch" else c)
    write_table(out / "study.csv", merged)
    write_table(out / "summary.csv", summarise(merged))
    curves = pd.read_csv(out / "learning.csv")
    for study, rows in here.items():
        complete = [arch for arch in merged.arch.unique()
                    if all((arch, seed) in rows for seed in merged[merged.arch == arch].seed)]
        fresh = learning_curves(study, merged[merged.arch.isin(complete)])
        curves = pd.concat([curves[~curves.arch.isin(complete)], fresh], ignore_index=True)
    curves = curves.sort_values(["arch", "step"], key=lambda c: c.map(order) if c.name == "arch" else c)
    write_table(out / "learning.csv", curves)
    plot_learning(curves, merged, out / "learning.png")


def runs_here(study: Path) -> dict[tuple[str, int], dict]:
    """``(arch, seed) -> run_row`` of every run directory in ``study/runs``; ``arch`` as the folder names it, so that
    a variant of an architecture (``mott_vision_norm-s1``: mott with ``vision_norm``) has rows of its own."""
    rows = {}
    for directory in sorted((study / "runs").iterdir()):
        run = Run.open(directory)
        row = {**run_row(run, threshold_for(run.config["env"])), "arch": directory.name.rsplit("-s", 1)[0]}
        rows[(row["arch"], row["seed"])] = row
        print(f"{directory.name}: {row['steps']:,} steps, greedy {row['greedy_return']:+.2f}")
    return rows


if __name__ == "__main__":
    main()
