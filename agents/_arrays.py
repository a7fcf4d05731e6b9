"""An agent's state as ``weights.npz`` (arrays, no pickle) + ``agent.json`` (everything else): the MADRL and
active-inference agents' save format, and a torch optimizer's state in it; numpy only (torch imported when a
state is loaded)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from offload_env.atomic import atomic_path, write_text

__all__ = ["save_arrays", "load_arrays", "optimizer_arrays", "load_optimizer"]


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


def optimizer_arrays(optimizer, prefix: str) -> tuple[dict[str, np.ndarray], list]:
    """A torch optimizer's state as arrays ``<prefix>.<param>.<key>``, and its param groups (JSON-ready)."""
    opt = optimizer.state_dict()
    arrays = {f"{prefix}.{i}.{key}": value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
              for i, state in opt["state"].items() for key, value in state.items()}
    return arrays, opt["param_groups"]


def load_optimizer(optimizer, arrays: dict[str, np.ndarray], prefix: str, groups: list) -> None:
    """Restore what :func:`optimizer_arrays` gave (``groups``: its param groups) into ``optimizer``."""
    import torch

    state: dict[int, dict] = {}
    for name, value in arrays.items():
        if name.startswith(prefix + "."):
            i, key = name[len(prefix) + 1:].split(".", 1)
            state.setdefault(int(i), {})[key] = torch.as_tensor(value)
    optimizer.load_state_dict({"state": state, "param_groups": groups})
