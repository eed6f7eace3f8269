"""How the process's memory allocator treats the large tensors that training and the analyses allocate and free."""

from __future__ import annotations

import ctypes

GLIBC_MMAP_THRESHOLD, GLIBC_TRIM_THRESHOLD = -3, -1  # mallopt's M_MMAP_THRESHOLD and M_TRIM_THRESHOLD


def reuse_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse: blocks under 32 MiB (its largest mmap threshold) come from
    the heap, and up to 1 GiB of free heap stays mapped. A learner update, or an analysis's batch of relevance
    passes, allocates and frees the same large activations every time; handed back to the kernel, they cost a page
    fault per 4 KiB page at the next use (11-14% of the learner's time on ALE Pong, measured with ``perf``; 20-30%
    of ATOM's). For the rest of the process and the processes it forks; False where the C library is not glibc."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(GLIBC_MMAP_THRESHOLD, 32 * 2**20)) and bool(mallopt(GLIBC_TRIM_THRESHOLD, 2**30))
