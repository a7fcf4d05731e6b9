"""The exported-policy artifact: a folder of ``manifest.json`` and ``params.npz``, no pickle.

| manifest key | what it holds |
|---|---|
| ``format``, ``format_version`` | ``offload-env-policy`` and :data:`FORMAT_VERSION` |
| ``project_version`` | the offload-env version that exported it |
| ``env`` | ``id``, ``kwargs`` (the scenario it was trained on) |
| ``observation`` | ``names``, ``low``, ``high``: the env's observation layout, in order |
| ``action`` | ``type`` (``discrete`` with ``n`` and ``names``, or ``box`` with ``low``, ``high``, ``names``) |
| ``policy`` | the decision rule as data (:mod:`offload_env.router.policy`) |
| ``agent`` | ``family``, ``algo``, ``name``, ``seed``, ``num_timesteps``, ``hyperparameters`` |
| ``files`` | sha256 of every other file of the folder |

:func:`read_artifact` checks the format, every listed file's sha256 and
that no other file is present, and loads arrays with ``allow_pickle=False``.
:func:`write_artifact` writes the whole folder beside its destination and
renames it into place, so a reader never sees half an artifact.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["FORMAT", "FORMAT_VERSION", "ArtifactError", "Artifact", "sha256_file", "read_artifact",
           "write_artifact"]

FORMAT = "offload-env-policy"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PARAMS = "params.npz"
_REQUIRED = ("format", "format_version", "project_version", "env", "observation", "action", "policy", "agent",
             "files")


class ArtifactError(ValueError):
    """An artifact cannot be used: missing, tampered with, or of another format (names the file or key)."""


@dataclass(frozen=True)
class Artifact:
    path: Path
    manifest: dict
    arrays: dict[str, np.ndarray]


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_artifact(path: str | os.PathLike) -> Artifact:
    """Verify and load the artifact folder ``path``; :class:`ArtifactError` says what is wrong."""
    folder = Path(path)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{folder}: not an artifact folder (no {MANIFEST})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArtifactError(f"{folder / MANIFEST}: unreadable ({err})") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{folder / MANIFEST}: expected a JSON object")
    missing = [k for k in _REQUIRED if k not in manifest]
    if missing:
        raise ArtifactError(f"{folder / MANIFEST}: missing key(s) {', '.join(missing)}")
    if manifest["format"] != FORMAT:
        raise ArtifactError(f"{folder / MANIFEST}: format: expected {FORMAT!r}, got {manifest['format']!r}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise ArtifactError(f"{folder / MANIFEST}: format_version: this router reads {FORMAT_VERSION}, got "
                            f"{manifest['format_version']!r}")
    files = manifest["files"]
    if not isinstance(files, dict) or PARAMS not in files:
        raise ArtifactError(f"{folder / MANIFEST}: files: expected an object naming {PARAMS} and its sha256")
    present = {p.name for p in folder.iterdir()} - {MANIFEST}
    extra = sorted(present - set(files))
    if extra:
        raise ArtifactError(f"{folder}: file(s) not in the manifest: {', '.join(extra)}")
    for name, expected in files.items():
        if not isinstance(name, str) or "/" in name or "\\" in name or name in ("", ".", ".."):
            raise ArtifactError(f"{folder / MANIFEST}: files: {name!r} is not a plain file name")
        target = folder / name
        if not target.is_file():
            raise ArtifactError(f"{target}: listed in the manifest but missing")
        actual = sha256_file(target)
        if actual != expected:
            raise ArtifactError(f"{target}: sha256 {actual} does not match the manifest's {expected}")
    try:
        with np.load(folder / PARAMS, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise ArtifactError(f"{folder / PARAMS}: unreadable ({err})") from None
    return Artifact(folder, manifest, arrays)


def _json_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)  # e.g. a class named in hyper-parameters: recorded, never evaluated


def write_artifact(path: str | os.PathLike, manifest: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Path:
    """Write the artifact folder ``path`` (replacing one that is there) with its hashes; return the path."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        buf = io.BytesIO()
        np.savez(buf, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
        (tmp / PARAMS).write_bytes(buf.getvalue())
        body = dict(manifest, format=FORMAT, format_version=FORMAT_VERSION,
                    files={PARAMS: sha256_file(tmp / PARAMS)})
        (tmp / MANIFEST).write_text(json.dumps(_json_ready(body), indent=1, allow_nan=False) + "\n",
                                    encoding="utf-8")
        for f in (tmp / PARAMS, tmp / MANIFEST):
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
