"""Periodic checkpoints of a learned agent: ``checkpoints/step_<n>/`` + an atomic ``latest.json`` pointer.

A checkpoint folder is complete before ``latest.json`` names it, so a run
killed at any moment resumes from a whole checkpoint. Older ones are pruned.
Checkpoints hold pickles (SB3 zip, replay buffer): resume only runs you trust.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .atomic import write_json

__all__ = ["save_checkpoint", "latest_checkpoint"]

_POINTER = "latest.json"


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


def latest_checkpoint(root: str | Path, name: str = "model.zip") -> tuple[int, Path] | None:
    """(step, folder) of the last complete checkpoint under ``root`` (holding ``name``), or None."""
    pointer = Path(root) / _POINTER
    try:
        data = json.loads(pointer.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    folder = Path(root) / data["folder"]
    if not (folder / name).exists():
        return None
    return int(data["step"]), folder
