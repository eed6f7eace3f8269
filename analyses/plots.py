"""Figures without pyplot: each plot is its own ``matplotlib.figure.Figure``, so no process-wide backend or state
is touched (the caller's matplotlib is left as it was)."""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.figure import Figure

from interp.files import atomic_path

DPI = 80


def figure(width: float, height: float, rows: int = 1, columns: int = 1, **subplots) -> tuple[Figure, object]:
    """A figure of ``width x height`` inches and its axes (``squeeze`` etc. as in ``Figure.subplots``)."""
    made = Figure(figsize=(width, height), dpi=DPI)
    return made, made.subplots(rows, columns, **subplots)


def save(made: Figure, path: Path) -> Path:
    """Write the figure as a PNG, atomically."""
    made.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        made.savefig(tmp, format="png")
    return path


def png_bytes(made: Figure) -> bytes:
    made.tight_layout()
    buffer = io.BytesIO()
    made.savefig(buffer, format="png")
    return buffer.getvalue()
