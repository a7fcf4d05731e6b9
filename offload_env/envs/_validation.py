"""Checks at the envs' boundary: scenario fields against their type annotations, arguments, actions.

Every error names the field or argument, what it expects and the value
given: ``<Env> scenario field 'name': expected <what>, got <value>``. A
value of the wrong type raises TypeError, one of the right type that is not
finite or has the wrong length raises ValueError.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from collections.abc import Iterable

import numpy as np

__all__ = ["load_profile", "check_fields", "check_unknown", "check_flag", "check_count", "discrete_action",
           "box_action", "vector_discrete_actions", "vector_box_actions"]

_INTS = (int, np.integer)
_NUMBERS = (int, float, np.integer, np.floating)


@functools.cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _is_union(tp) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _name(tp, plural: bool = False) -> str:
    """Short name of an annotation inside a tuple description."""
    if tp is float:
        return "numbers" if plural else "number"
    if tp is int:
        return "integers" if plural else "integer"
    if tp is str:
        return "strings" if plural else "string"
    if tp is bool:
        return "bools" if plural else "bool"
    if dataclasses.is_dataclass(tp):
        return tp.__name__ + ("s" if plural else "")
    return _describe(tp)


def _describe(tp) -> str:
    """What a value of annotation ``tp`` must be, in words."""
    if tp is float:
        return "a finite number"
    if tp is int:
        return "an integer (not a bool or a float)"
    if tp is bool:
        return "True or False"
    if tp is str:
        return "a string"
    if tp is type(None):
        return "None"
    if _is_union(tp):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        rest = " or ".join(_describe(a) for a in args)
        return "None or " + rest if len(args) < len(typing.get_args(tp)) else rest
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a tuple of {_name(args[0], plural=True)}"
        return "a tuple (" + ", ".join(_name(a) for a in args) + ")"
    if dataclasses.is_dataclass(tp):
        return f"a {tp.__name__}"
    return str(tp)


def _problem(value, tp, allow_inf: bool):
    """None if ``value`` fits annotation ``tp``, else the exception class to raise (TypeError or ValueError)."""
    if tp is float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, _NUMBERS):
            return TypeError
        try:
            x = float(value)
        except OverflowError:
            return ValueError
        if math.isnan(x) or (math.isinf(x) and not allow_inf):
            return ValueError
        return None
    if tp is int:
        return None if isinstance(value, _INTS) and not isinstance(value, (bool, np.bool_)) else TypeError
    if tp is bool:
        return None if isinstance(value, (bool, np.bool_)) else TypeError
    if tp is str:
        return None if isinstance(value, str) else TypeError
    if tp is type(None):
        return None if value is None else TypeError
    if _is_union(tp):
        args = typing.get_args(tp)
        found = [_problem(value, a, allow_inf) for a in args]
        if None in found:
            return None
        if value is None:
            return TypeError
        return ValueError if ValueError in found else TypeError
    if typing.get_origin(tp) is tuple:
        if not isinstance(value, tuple):
            return TypeError
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            items = [args[0]] * len(value)
        else:
            if len(value) != len(args):
                return ValueError
            items = args
        found = [_problem(v, a, allow_inf) for v, a in zip(value, items)]
        return TypeError if TypeError in found else ValueError if ValueError in found else None
    if dataclasses.is_dataclass(tp):
        return None if isinstance(value, tp) else TypeError
    return None


def _normal(value, tp):
    """``value`` (which fits ``tp``) with numbers as Python floats where ``tp`` says float, ints where int."""
    if tp is float:
        return float(value)
    if tp is int:
        return int(value)
    if tp is bool:
        return bool(value)
    if _is_union(tp):
        for a in typing.get_args(tp):
            if _problem(value, a, True) is None:
                return _normal(value, a)
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        items = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        return tuple(_normal(v, a) for v, a in zip(value, items))
    return value


def check_fields(obj, env: str, allow_inf: Iterable[str] = (), prefix: str = ""):
    """Check every field of dataclass ``obj`` against its annotation (nested dataclasses too); return ``obj``
    with its numbers as Python floats and ints as annotated (so that no huge int reaches numpy).

    Numbers must be finite except in ``allow_inf`` (+-inf allowed, never NaN);
    ints refuse bools and floats; bools refuse everything but bools.
    """
    hints = _hints(type(obj))
    allow_inf = frozenset(allow_inf)
    normal = {}
    for f in dataclasses.fields(obj):
        value, tp, name = getattr(obj, f.name), hints[f.name], prefix + f.name
        error = _problem(value, tp, f.name in allow_inf)
        if error is not None:
            what = _describe(tp)
            if f.name in allow_inf:
                what = what.replace("a finite number", "a number (inf allowed, not NaN)")
            elif error is ValueError and "number" in what and "finite" not in what:
                what += " (finite numbers)"
            raise error(f"{env} scenario field '{name}': expected {what}, got {value!r}")
        if isinstance(value, tuple) and value and all(dataclasses.is_dataclass(v) for v in value):
            value = tuple(check_fields(v, env, prefix=f"{name}[{i}].") for i, v in enumerate(value))
        else:
            value = _normal(value, tp)
        if value is not getattr(obj, f.name):
            normal[f.name] = value
    return dataclasses.replace(obj, **normal) if normal else obj


def load_profile(loader, name, env: str, field: str):
    """``loader(name)`` (a ``profiles.load_*``), its ProfileError prefixed with the scenario field."""
    from ..profiles import ProfileError

    try:
        return loader(name)
    except ProfileError as e:
        raise ProfileError(f"{env} scenario field '{field}': {e}") from None


def check_unknown(env: str, given: Iterable[str], names: list[str]) -> None:
    """TypeError naming the unknown keyword arguments (with the nearest field) and the valid ones."""
    unknown = sorted(set(given) - set(names))
    if not unknown:
        return
    hints = []
    for k in unknown:
        close = difflib.get_close_matches(k, names, n=1)
        if close:
            hints.append(f"{k!r} (did you mean {close[0]!r}?)")
        else:
            hints.append(repr(k))
    raise TypeError(f"{env} got unknown argument(s) {', '.join(hints)}; scenario fields are " + ", ".join(names))


def check_flag(value, name: str) -> bool:
    """``value`` as a bool; TypeError unless it is one (a string such as "false" is not)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def check_count(value, name: str, low: int = 1, high: int | None = None) -> int:
    """``value`` as an int in [low, high]; TypeError unless an integer (not a bool), ValueError out of range."""
    where = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, _INTS):
        raise TypeError(f"{name}: expected {where}, got {value!r}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name}: expected {where}, got {value!r}")
    return int(value)


def _array(value) -> np.ndarray | None:
    """``np.asarray(value)``, or None where numpy cannot make one array of it (ragged nesting)."""
    try:
        return np.asarray(value)
    except (TypeError, ValueError, OverflowError):
        return None


def discrete_action(action, n: int, name: str = "action") -> int:
    """``action`` as an int in [0, n): a Python or numpy integer, or a 0-d integer array (not a bool)."""
    if type(action) is not int:
        if isinstance(action, (bool, np.bool_)) or not (
                isinstance(action, _INTS)
                or (isinstance(action, np.ndarray) and action.ndim == 0 and action.dtype.kind in "iu")):
            raise TypeError(f"{name}: expected an integer in [0, {n - 1}], got {action!r}")
        action = int(action)
    if not 0 <= action < n:
        raise ValueError(f"{name}: expected an integer in [0, {n - 1}], got {action!r}")
    return action


def box_action(action, shape: tuple[int, ...], name: str = "action") -> np.ndarray:
    """``action`` as a float64 array of ``shape`` (numbers only; NaN and inf pass: the env decides)."""
    a = action if isinstance(action, np.ndarray) else None if isinstance(action, str) else _array(action)
    if a is None or a.dtype.kind not in "iuf":
        raise TypeError(f"{name}: expected numbers of shape {shape}, got {action!r}")
    if a.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got shape {a.shape}")
    return a.astype(np.float64, copy=False)


def vector_discrete_actions(actions, num_envs: int, n: int) -> np.ndarray:
    """``actions`` as an int64 array (num_envs,) in [0, n); ValueError naming the shape, dtype or value."""
    a = actions if isinstance(actions, np.ndarray) else _array(actions)
    if a is None:
        raise ValueError(f"actions: expected integers of shape ({num_envs},) in [0, {n - 1}], got {actions!r}")
    if a.shape != (num_envs,) or a.dtype.kind not in "iu":
        raise ValueError(f"actions: expected integers of shape ({num_envs},) in [0, {n - 1}], got shape {a.shape} "
                         f"dtype {a.dtype}")
    if num_envs and (a.min() < 0 or a.max() >= n):
        i = int(np.flatnonzero((a < 0) | (a >= n))[0])
        raise ValueError(f"actions: expected integers in [0, {n - 1}], got actions[{i}] = {a[i].item()!r}")
    return a if a.dtype == np.int64 else a.astype(np.int64)


def vector_box_actions(actions, num_envs: int, dim: int) -> np.ndarray:
    """``actions`` as a float64 array (num_envs, dim); ValueError naming the shape or dtype."""
    a = actions if isinstance(actions, np.ndarray) else _array(actions)
    if a is None:
        raise ValueError(f"actions: expected numbers of shape ({num_envs}, {dim}), got {actions!r}")
    if a.shape != (num_envs, dim) or a.dtype.kind not in "iuf":
        raise ValueError(f"actions: expected numbers of shape ({num_envs}, {dim}), got shape {a.shape} "
                         f"dtype {a.dtype}")
    return a if a.dtype == np.float64 else a.astype(np.float64)


def execution(device, runtime, weight_format, dtype, env: str, fields: dict[str, str]):
    """``costs.execution`` of one device of a scenario; its ValueError names the scenario field.

    ``fields`` maps the arguments ``runtime``, ``weight_format`` and ``dtype`` to the scenario's field names.
    """
    from .. import costs

    try:
        return costs.execution(device, runtime, weight_format, dtype=dtype)
    except ValueError as exc:
        argument, _, message = str(exc).partition(": ")
        raise ValueError(f"{env} scenario field '{fields.get(argument, argument)}': {message}") from None
