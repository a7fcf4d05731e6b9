"""Atomic file writes: write beside the target, then ``os.replace`` (readers never see half a file)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from offload_env.atomic import atomic_path, crash_point, write_text

__all__ = ["atomic_path", "crash_point", "write_text", "write_json", "write_csv"]


def write_json(path: str | os.PathLike, data) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_csv(path: str | os.PathLike, frame: pd.DataFrame) -> Path:
    with atomic_path(path, ".csv") as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)
