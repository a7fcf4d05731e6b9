"""Atomic file writes: readers see the old file or the new one, never half of one."""

from __future__ import annotations

import os
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "atomic_open", "write_text", "crash_point"]

#: Fault injection for the crash-consistency tests: with OFFLOAD_ENV_CRASH_AT=n in its environment, a process
#: kills itself (SIGKILL) at its n-th commit point. Unset in normal use.
_CRASH_AT = os.environ.get("OFFLOAD_ENV_CRASH_AT")
if _CRASH_AT is not None and not (_CRASH_AT.isdigit() and int(_CRASH_AT) >= 1):
    raise ValueError(f"OFFLOAD_ENV_CRASH_AT: expected a positive integer, got {_CRASH_AT!r}")
_commit_points = 0


def crash_point() -> None:
    """A commit point (an atomic write's temporary file complete, its target not yet replaced; a run folder
    about to move): where ``OFFLOAD_ENV_CRASH_AT`` kills the process."""
    global _commit_points
    if _CRASH_AT is None:
        return
    _commit_points += 1
    if _commit_points == int(_CRASH_AT):
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); best effort elsewhere."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds.

    For writers that take a path (``DataFrame.to_csv``, SB3's ``save``). The
    temporary file is fsynced before the rename and removed on any failure.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files
        crash_point()
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """``open`` for writing whose file appears at ``path`` only when the block succeeds."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode: expected 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; return the path."""
    with atomic_open(path) as fh:
        fh.write(text)
    return Path(path)
