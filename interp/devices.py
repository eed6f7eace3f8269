"""Where an analysis computes: ``auto``, ``cpu`` or ``cuda`` (``cuda:N``), resolved once per command.

The device is a setting of the machine, not of the analysis: results on a GPU equal the CPU's within float
tolerance, and no cache key depends on it (:mod:`analyses.stage`).
"""

from __future__ import annotations

import torch

from interp.errors import UserError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> str:
    """``auto``: ``cuda`` when torch sees a CUDA device, else ``cpu``; ``cpu``, ``cuda`` and ``cuda:N`` as given
    (a CUDA device torch does not see is a :class:`UserError`)."""
    name = str(name)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise UserError(f"device {name} was asked for, but torch sees no CUDA device (use --device cpu or auto)")
        if name != "cuda" and int(name[5:]) >= torch.cuda.device_count():
            raise UserError(f"device {name} does not exist: torch sees {torch.cuda.device_count()} CUDA device(s)")
        return name
    raise UserError(f"device must be one of {', '.join(DEVICES)} (or cuda:N), got {name!r}")
