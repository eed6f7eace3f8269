"""Mixed precision: the agents' forward (and the learner's backward) passes under bfloat16 autocast, everything
else in float32.

Weights and the optimizer's state stay float32 (autocast casts a copy of each weight for the matrix products), and
so do V-trace, the losses, their reductions and the gradient clipping (:func:`trainers.impala.impala_loss`
takes the outputs in float32). Checkpoints therefore hold float32 weights, and analyses run in float32 as before.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")
_NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU computes bfloat16 products in hardware (AVX512-BF16 or AMX); elsewhere oneDNN emulates them,
    slower than float32."""
    try:
        text = cpuinfo.read_text()
    except OSError:  # not Linux: no way to tell, so no
        return False
    return any(_NATIVE_BF16_FLAGS & set(line.split()) for line in text.splitlines() if line.startswith("flags"))


def resolve(precision: str, device: torch.device | str) -> str:
    """``fp32`` or ``bf16`` for ``precision`` on ``device``: ``auto`` is bf16 on a CUDA device that supports it and
    on a CPU with native bfloat16, fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The context for an agent's forward pass in a resolved ``precision`` (``fp32``: nothing changes)."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@contextlib.contextmanager
def tf32_matmuls(enabled: bool):
    """On CUDA, let float32 matrix products and convolutions use TF32 inside the block, or not (restored after).
    torch's defaults differ between the two (products off, cuDNN's convolutions on), so both are set."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
