"""Periodic checkpoints of a learned agent: ``checkpoints/step_<n>/`` + an atomic ``latest.json`` pointer.

A checkpoint folder is complete before ``latest.json`` names it, so a run
killed at any moment resumes from a whole checkpoint. Older ones are pruned
(the newest ``keep`` stay). Resuming does not trust the pointer alone
(:func:`checkpoint_candidates`): it tries the folder ``latest.json`` names,
then every ``step_*`` folder newest first, and the runner loads the first
that loads whole (a corrupt pointer, a deleted folder, a truncated model or
replay buffer only cost the steps since the previous checkpoint).
Checkpoints hold pickles (SB3 zip, replay buffer): resume only runs you trust.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from .atomic import write_json

__all__ = ["save_checkpoint", "latest_checkpoint", "checkpoint_candidates", "has_checkpoints"]

_POINTER = "latest.json"
_STEP = re.compile(r"^step_(\d+)$")


def save_checkpoint(agent, root: str | Path, name: str = "model.zip", keep: int = 2) -> Path:
    """Write ``agent`` (as ``name``: model and normalisation, and its replay buffer) under ``root`` at its step."""
    root = Path(root)
    step = agent.num_timesteps
    folder = root / f"step_{step:010d}"
    folder.mkdir(parents=True, exist_ok=True)
    agent.save(folder / name)
    if getattr(agent, "has_replay_buffer", False):
        agent.save_replay_buffer(folder / "replay_buffer.pkl")
    write_json(root / _POINTER, {"step": step, "folder": folder.name})
    for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-keep]:
        if old != folder:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def _pointer(root: Path) -> tuple[int, Path] | None:
    """What ``latest.json`` names, if it parses and names a folder under ``root``."""
    try:
        data = json.loads((root / _POINTER).read_text())
        folder, step = data["folder"], int(data["step"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if not isinstance(folder, str) or "/" in folder or folder in ("", ".", ".."):
        return None
    return step, root / folder


def checkpoint_candidates(root: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint under ``root`` worth trying, best first: the folder ``latest.json``
    names, then every ``step_<n>`` folder by decreasing step. Whether one loads is the caller's test."""
    root = Path(root)
    out: list[tuple[int, Path]] = []
    pointed = _pointer(root)
    if pointed is not None and pointed[1].is_dir():
        out.append(pointed)
    steps = []
    for p in root.glob("step_*") if root.is_dir() else ():
        m = _STEP.match(p.name)
        if m and p.is_dir():
            steps.append((int(m.group(1)), p))
    for step, folder in sorted(steps, key=lambda sp: sp[0], reverse=True):
        if all(folder != f for _, f in out):
            out.append((step, folder))
    return out


def has_checkpoints(root: str | Path) -> bool:
    """Whether ``root`` holds anything of a checkpoint (a pointer or a ``step_*`` folder, whole or not)."""
    root = Path(root)
    return root.is_dir() and ((root / _POINTER).exists() or any(p.is_dir() for p in root.glob("step_*")))


def latest_checkpoint(root: str | Path, name: str = "model.zip") -> tuple[int, Path] | None:
    """(step, folder) of the newest checkpoint under ``root`` holding ``name``, or None (not loaded: see
    :func:`checkpoint_candidates` for the fallback order)."""
    for step, folder in checkpoint_candidates(root):
        if (folder / name).exists():
            return step, folder
    return None
