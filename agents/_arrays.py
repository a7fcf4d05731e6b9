"""An agent's state as ``weights.npz`` (arrays, no pickle) + ``agent.json`` (everything else): the MADRL and
active-inference agents' save format; numpy only."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from offload_env.atomic import atomic_path, write_text

__all__ = ["save_arrays", "load_arrays"]


def save_arrays(folder: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """``weights.npz`` (arrays, no pickle) and ``agent.json`` (everything else), each written atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "weights.npz", ".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    write_text(folder / "agent.json", json.dumps(meta, indent=1) + "\n")
    return folder


def load_arrays(folder: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """Read what :func:`save_arrays` wrote (``allow_pickle=False``)."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / "agent.json").read_text())
        with np.load(folder / "weights.npz", allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (FileNotFoundError, ValueError, json.JSONDecodeError) as err:
        raise ValueError(f"{folder}: not a saved agent folder ({err})") from None
    return arrays, meta
