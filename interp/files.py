"""Writing files so that an interruption never leaves a half-written file under the final name."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed onto ``path`` when the block ends without error,
    removed otherwise. The folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_file(path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _new_file(folder: Path, prefix: str, suffix: str) -> Path:
    """An empty file of a new name in ``folder``, created with the mode the umask gives (``mkstemp``'s 0600 would
    make every result private to its writer); the umask is applied by the kernel, never read or changed here."""
    while True:
        candidate = folder / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return candidate
        except FileExistsError:
            continue


def check_writable(path: str | os.PathLike, *, folder: bool = False) -> Path:
    """Refuse, before any work, an output that cannot be written: a file where a folder is wanted or the other way
    round, a parent that is a file, or a place without write permission (a read-only file system, say)."""
    from interp.errors import UserError

    if not str(path).strip():
        raise UserError(f"an empty path is not a {'folder' if folder else 'file'} to write to")
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        raise UserError(f"{path} is a {'file' if folder else 'folder'}; a {'folder' if folder else 'file'} is "
                        "expected there")
    existing = path if folder else path.parent  # a file is replaced by a rename: its folder must be writable
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot write {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {path}: {existing} is not writable (permissions, or a read-only file system)")
    return path
