"""Observations -> discrete bins, and a discrete choice -> the env's action: the one definition that the pymdp
agent (``agents.active_inference.discrete``) and the router's ``pomdp_efe`` policy both use. Numpy only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

__all__ = ["bin_index", "Bins", "Argmax", "reader_from_spec", "nearest_allowed"]


def bin_index(x: float, edges) -> int:
    """The bin of ``x`` among the sorted ``edges``: how many edges are <= x (an edge opens the bin above it)."""
    return int(np.searchsorted(np.asarray(edges), x, side="right"))


@dataclass(frozen=True)
class Bins:
    """A context factor read as ``obs[index]`` among ``edges`` (``len(edges) + 1`` bins)."""

    index: int
    edges: tuple[float, ...]

    @property
    def size(self) -> int:
        return len(self.edges) + 1

    def __call__(self, obs) -> int:
        return bin_index(obs[self.index], self.edges)

    def spec(self) -> dict:
        return {"read": "bins", "index": self.index, "edges": [float(e) for e in self.edges]}


@dataclass(frozen=True)
class Argmax:
    """A context factor read as the position of the largest of ``obs[start:stop]`` (the first on ties): a
    one-hot's index."""

    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start

    def __call__(self, obs) -> int:
        return int(np.argmax(obs[self.start:self.stop]))

    def spec(self) -> dict:
        return {"read": "argmax", "start": self.start, "stop": self.stop}


def _index(spec: Mapping, key: str, where: str, low: int, high: int) -> int:
    v = spec.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        raise ValueError(f"{where}.{key}: expected an integer in [{low}, {high}], got {v!r}")
    return v


def reader_from_spec(spec: Mapping, where: str, obs_dim: int) -> Bins | Argmax:
    """The reader a manifest's context entry describes (``Bins.spec`` / ``Argmax.spec``); ValueError names the
    field."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: expected an object with read 'bins' or 'argmax', got {spec!r}")
    kind = spec.get("read")
    if kind == "bins":
        edges = spec.get("edges")
        ok = isinstance(edges, list) and all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in edges)
        e = np.asarray(edges if ok else [], dtype=np.float64)
        if not ok or not edges or not np.isfinite(e).all() or (np.diff(e) <= 0).any():
            raise ValueError(f"{where}.edges: expected a non-empty increasing list of finite numbers, got {edges!r}")
        return Bins(_index(spec, "index", where, 0, obs_dim - 1), tuple(float(x) for x in edges))
    if kind == "argmax":
        start = _index(spec, "start", where, 0, obs_dim - 1)
        return Argmax(start, _index(spec, "stop", where, start + 1, obs_dim))
    raise ValueError(f"{where}.read: expected 'bins' or 'argmax', got {kind!r}")


def nearest_allowed(target: float, allowed: np.ndarray) -> int:
    """The allowed action nearest ``target`` (the lowest of two equally near)."""
    return int(allowed[np.argmin(np.abs(allowed - target))])
