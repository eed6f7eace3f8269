"""How far two analysis folders of the same run differ, table by table (e.g. one computed on a GPU, one on the CPU).

    .venv/bin/python benchmarks/compare_analyses.py RUN/analysis_cuda RUN/analysis_cpu

For each CSV table both folders hold: its rows, the rows whose keys (every column but the numbers) match, and per
number column the largest absolute difference and the share of values within ``--tolerance`` of each other
(absolute, or relative to the larger magnitude). Exit status 1 when a table's keys differ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

NUMBERS = ("value", "chance", "mean_return", "std_return")


def compare(first: pd.DataFrame, second: pd.DataFrame, tolerance: float) -> tuple[int, dict[str, tuple]]:
    """(rows matched, column -> (largest difference, share within tolerance))."""
    numbers = [c for c in NUMBERS if c in first.columns]
    keys = [c for c in first.columns if c not in numbers]
    first = first.assign(_n=first.groupby(keys, dropna=False).cumcount())
    second = second.assign(_n=second.groupby(keys, dropna=False).cumcount())
    merged = first.merge(second, on=[*keys, "_n"], suffixes=("_a", "_b"))
    result = {}
    for column in numbers:
        a, b = merged[f"{column}_a"].to_numpy(float), merged[f"{column}_b"].to_numpy(float)
        both_nan = np.isnan(a) & np.isnan(b)
        difference = np.where(both_nan, 0.0, np.abs(a - b))
        close = both_nan | (difference <= tolerance * np.maximum(1.0, np.maximum(np.abs(a), np.abs(b))))
        result[column] = (float(np.nanmax(difference)) if len(difference) else 0.0, float(np.mean(close)))
    return len(merged), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("--tolerance", type=float, default=1e-3)
    args = parser.parse_args()
    status = 0
    for path in sorted(Path(args.first).glob("*.csv")):
        other = Path(args.second) / path.name
        if not other.exists():
            print(f"{path.name}: only in {args.first}")
            continue
        first, second = pd.read_csv(path), pd.read_csv(other)
        matched, columns = compare(first, second, args.tolerance)
        if matched != len(first) or matched != len(second):
            status = 1
        details = "; ".join(f"{name}: max |diff| {largest:.2e}, {share:.1%} within {args.tolerance:g}"
                            for name, (largest, share) in columns.items())
        print(f"{path.name}: {len(first)} / {len(second)} rows, {matched} matched; {details}")
    return status


if __name__ == "__main__":
    sys.exit(main())
