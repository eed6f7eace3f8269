"""Pieces of the self-contained HTML report: everything embedded as data URIs, so the page can be mailed or archived
alone."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image(path: Path, caption: str) -> str:
    """A PNG on disk, embedded with its caption."""
    return picture(path.read_bytes(), caption)


def picture(png: bytes, caption: str) -> str:
    return (f'<figure><img alt="{html.escape(caption)}" src="{data_uri(png, "image/png")}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def png(rgb: np.ndarray) -> bytes:
    """An RGB image ``[H, W, 3]`` as PNG bytes."""
    import cv2

    _, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return encoded.tobytes()


def missing(what: str, command: str) -> str:
    return f'<p class="missing">No {html.escape(what)} yet: run <code>{html.escape(command)}</code>.</p>'


def download(name: str, table: pd.DataFrame) -> str:
    return (f'<a download="{html.escape(name)}" href="{data_uri(table.to_csv(index=False).encode(), "text/csv")}">'
            f"{html.escape(name)}</a> ({len(table)} rows)")
