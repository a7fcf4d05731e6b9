"""The cost model against measurements: read a table, predict every row, summarise the error; fit runtime settings.

A table is a CSV with at least the columns of :data:`REQUIRED_COLUMNS` (the
format of ``../shared/data/published_measurements/llm_inference.csv``; an
optional ``kv_dtype`` column, default float16). Each row is one measurement
at batch 1 of a model on a device under a runtime and weight format:

| metric | predicted as |
| --- | --- |
| ``decode_tok_s`` | (T - 1) / decode time (tokens after the first) |
| ``prefill_tok_s`` | P / prefill time |
| ``ttft_ms`` | prefill time in ms (the prefill yields the first token) |
| ``energy_j_per_token`` | energy of the request / T |

A row's *factor* is ``max(ratio, 1 / ratio)`` with ``ratio = predicted /
measured``. Numpy and the standard library only (the fit needs scipy).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from . import costs, profiles

__all__ = ["REQUIRED_COLUMNS", "METRICS", "Measurement", "TableError", "read_table", "predict", "validate",
           "summarise", "fit_settings", "with_settings", "rows_from_measured", "table_text"]

REQUIRED_COLUMNS = ("model", "device", "runtime", "weight_format", "prompt_tokens", "output_tokens", "metric",
                    "measured_value")
METRICS = ("decode_tok_s", "prefill_tok_s", "ttft_ms", "energy_j_per_token")


class TableError(ValueError):
    """A measurement table that cannot be read or predicted; the message names the file, the row and the field."""


@dataclass(frozen=True)
class Measurement:
    """One row of a table (``line``: its line in the file, for errors)."""

    model: str
    device: str
    runtime: str
    weight_format: str
    prompt_tokens: int
    output_tokens: int
    metric: str
    measured_value: float
    kv_dtype: str = "float16"
    line: int = 0
    extra: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def key(self) -> str:
        """What names the row in a runtime profile's ``fit`` lists: model/device/format/metric/PxT."""
        return (f"{self.model}/{self.device}/{self.weight_format}/{self.metric}/"
                f"{self.prompt_tokens}x{self.output_tokens}")


def read_table(path: str | Path) -> list[Measurement]:
    """The rows of a measurement table; a bad cell is a :class:`TableError` naming its line and column."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: a spreadsheet's byte-order mark
            reader = csv.DictReader(fh)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise TableError(f"{path}: missing column(s) {', '.join(missing)}; a table needs "
                                 f"{', '.join(REQUIRED_COLUMNS)}")
            rows = [_row(raw, path, i + 2) for i, raw in enumerate(reader)]
    except OSError as exc:
        raise TableError(f"{path}: cannot be read: {exc}") from None
    except csv.Error as exc:
        raise TableError(f"{path}: not a valid CSV: {exc}") from None
    except UnicodeDecodeError as exc:
        raise TableError(f"{path}: not UTF-8 text (byte {exc.start}): save the table as UTF-8 CSV") from None
    if not rows:
        raise TableError(f"{path}: no rows")
    return rows


def _row(raw: Mapping[str, str], path: Path, line: int) -> Measurement:
    def where(column: str) -> str:
        return f"{path}: line {line}, column '{column}'"

    def text(column: str) -> str:
        value = (raw.get(column) or "").strip()
        if not value:
            raise TableError(f"{where(column)}: empty")
        return value

    def integer(column: str, low: int) -> int:
        value = text(column)
        try:
            number = int(value)
        except ValueError:
            raise TableError(f"{where(column)}: expected a whole number >= {low}, got {value!r}") from None
        if number < low or number > 10**9:
            raise TableError(f"{where(column)}: expected a whole number in [{low}, 1e9], got {number}")
        return number

    metric = text("metric")
    if metric not in METRICS:
        raise TableError(f"{where('metric')}: expected one of {', '.join(METRICS)}, got {metric!r}")
    value_text = text("measured_value")
    try:
        value = float(value_text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise TableError(f"{where('measured_value')}: expected a finite number > 0, got {value_text!r}")
    output = integer("output_tokens", 1)
    if metric == "decode_tok_s" and output < 2:
        raise TableError(f"{where('output_tokens')}: a decode_tok_s row needs output_tokens >= 2 (tokens after "
                         f"the first), got {output}")
    kv = (raw.get("kv_dtype") or "").strip() or "float16"
    extra = {k: v for k, v in raw.items() if k not in REQUIRED_COLUMNS and k is not None}
    return Measurement(model=text("model"), device=text("device"), runtime=text("runtime"),
                       weight_format=text("weight_format"), prompt_tokens=integer("prompt_tokens", 1),
                       output_tokens=output, metric=metric, measured_value=value, kv_dtype=kv, line=line,
                       extra=extra)


def predict(row: Measurement, *, profile_dir=None, runtime: profiles.RuntimeProfile | None = None,
            where: str = "") -> float:
    """The analytical cost model's value of ``row``'s metric (no measured profile: that would be circular).

    ``runtime``: a runtime profile to use instead of the one the row names.
    """
    prefix = where or f"line {row.line}"
    try:
        model = profiles.load_model(row.model, profile_dir)
        device = profiles.load_device(row.device, profile_dir)
    except profiles.ProfileError as exc:
        raise TableError(f"{prefix}: {exc}") from None
    try:
        est = costs.estimate(model, device, row.prompt_tokens, row.output_tokens, runtime=runtime or row.runtime,
                             weight_format=row.weight_format, kv_dtype=row.kv_dtype, use_measured=False)
    except (ValueError, TypeError) as exc:
        raise TableError(f"{prefix}: {exc}") from None
    if row.metric == "decode_tok_s":
        return float((row.output_tokens - 1) / est.decode_s)
    if row.metric == "prefill_tok_s":
        return float(row.prompt_tokens / est.prefill_s)
    if row.metric == "ttft_ms":
        return float(est.prefill_s * 1e3)
    return float(est.energy_j / row.output_tokens)


def _split_of(row: Measurement, profile_dir) -> tuple[str, str]:
    """('fit' | 'held-out' | 'excluded' | '', the reason of an exclusion) as the row's runtime profile lists it."""
    try:
        fit = profiles.load_runtime(row.runtime, profile_dir).fit
    except profiles.ProfileError:
        return "", ""
    excluded = fit.get("excluded") or {}
    if row.key in excluded:
        return "excluded", str(excluded[row.key])
    if row.key in (fit.get("fitted_on") or ()):
        return "fit", ""
    if row.key in (fit.get("held_out") or ()):
        return "held-out", ""
    return "", ""


def validate(rows: Iterable[Measurement], *, profile_dir=None, path: str | Path = "") -> dict:
    """``{"rows": [...], "summary": {...}}``: every row with its prediction, ratio and factor, then the summary.

    A row that its runtime profile excludes (``fit.excluded``, with the reason)
    is predicted and listed but left out of the summary, which counts it.
    An unknown model, device, runtime or format is a :class:`TableError` naming the row.
    """
    out = []
    for row in rows:
        where = f"{path}: line {row.line}" if path else f"line {row.line}"
        predicted = predict(row, profile_dir=profile_dir, where=where)
        ratio = predicted / row.measured_value
        split, reason = _split_of(row, profile_dir)
        out.append({"model": row.model, "device": row.device, "runtime": row.runtime,
                    "weight_format": row.weight_format, "prompt_tokens": row.prompt_tokens,
                    "output_tokens": row.output_tokens, "metric": row.metric, "measured_value": row.measured_value,
                    "predicted": predicted, "ratio": ratio, "factor": max(ratio, 1.0 / ratio),
                    "split": split, "excluded_because": reason, "key": row.key, "line": row.line})
    return {"rows": out, "summary": summarise(out)}


def summarise(rows: Sequence[Mapping[str, Any]]) -> dict:
    """n, median and max factor of validated rows (excluded ones only counted), overall, per runtime, per split."""
    def stats(subset) -> dict:
        factors = np.array([r["factor"] for r in subset])
        return {"n": int(len(factors)), "median_factor": float(np.median(factors)) if len(factors) else math.nan,
                "max_factor": float(factors.max()) if len(factors) else math.nan}

    excluded = [r for r in rows if r.get("split") == "excluded"]
    rows = [r for r in rows if r.get("split") != "excluded"]
    summary = stats(rows)
    summary["excluded"] = len(excluded)
    summary["by_runtime"] = {rt: stats([r for r in rows if r["runtime"] == rt])
                             for rt in sorted({r["runtime"] for r in rows})}
    summary["by_split"] = {s: stats([r for r in rows if r.get("split") == s])
                           for s in ("fit", "held-out") if any(r.get("split") == s for r in rows)}
    return summary


# --------------------------------------------------------------------------
# A measured profile (offload-env profile measure) as table rows

#: The weight format of each dtype the profiler times in (it runs PyTorch layers: hf-transformers).
PROFILER_FORMATS = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}
TABLE_COLUMNS = REQUIRED_COLUMNS + ("unit", "source", "notes")


def rows_from_measured(measured: profiles.MeasuredProfile, model: profiles.ModelProfile) -> list[dict]:
    """The rows of a measured profile in the table format: each prefill length and decode context, whole model.

    A whole-model time is the measured per-layer time x the model's layers +
    the measured LM head (one token), so a row says what this machine would
    run the model at under PyTorch eager (runtime ``hf-transformers``).
    """
    if measured.dtype not in PROFILER_FORMATS:
        raise ValueError(f"measured profile {measured.path}: dtype {measured.dtype!r} has no weight format "
                         f"(expected one of {', '.join(PROFILER_FORMATS)})")
    L, head = model.num_layers, measured.lm_head_seconds_per_token
    source = f"offload-env profile measure ({measured.path})"
    notes = (f"measured {measured.measured_on or '?'} on {measured.host.get('cpu_model', '?')}, "
             f"{measured.host.get('threads', '?')} threads: {measured.layers_built} layers built and timed, "
             f"scaled to {L} layers + the LM head")
    base = {"model": measured.model, "device": measured.device, "runtime": "hf-transformers",
            "weight_format": PROFILER_FORMATS[measured.dtype], "source": source, "notes": notes}
    rows = [{**base, "prompt_tokens": int(P), "output_tokens": 1, "metric": "prefill_tok_s",
             "measured_value": f"{P / (L * t + head):.6g}", "unit": "tok/s"}
            for P, t in zip(measured.prefill_tokens, measured.prefill_seconds_per_layer)]
    rows += [{**base, "prompt_tokens": max(int(c) - 1, 1), "output_tokens": 2, "metric": "decode_tok_s",
              "measured_value": f"{1.0 / (L * t + head):.6g}", "unit": "tok/s"}
             for c, t in zip(measured.decode_context, measured.decode_seconds_per_layer)]
    return rows


def table_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] = TABLE_COLUMNS) -> str:
    """``rows`` as CSV text with ``columns`` (what :func:`read_table` reads)."""
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


# --------------------------------------------------------------------------
# Fitting a runtime's settings on a device (class)


def fit_settings(rows: Sequence[Measurement], runtime: profiles.RuntimeProfile,
                 free: Sequence[tuple[str, str, str]], *, profile_dir=None) -> dict[tuple[str, str, str], float]:
    """Values of the settings ``free`` of ``runtime`` that minimise the squared log-ratios of ``rows``.

    Each free setting is ``(section, entry, key)``: section ``"classes"``
    (entry a device class), ``"devices"`` (a device name) or ``"defaults"``
    (entry ``""``); the other settings keep the profile's values. Bounded
    least squares (scipy).
    """
    from scipy.optimize import least_squares

    keys = [k for _, _, k in free]
    lo = np.array([0.02 if k.endswith("efficiency") else 0.0 for k in keys])
    hi = np.array([profiles.RUNTIME_NUMBERS[k][1] for k in keys])
    scale = np.array([1.0 if k.endswith("efficiency") else 1e-3 for k in keys])  # overheads in ms

    def residuals(x) -> np.ndarray:
        rt = with_settings(runtime, dict(zip(free, x * scale)))
        return np.array([math.log(predict(r, profile_dir=profile_dir, runtime=rt) / r.measured_value) for r in rows])

    start = np.array([0.5 if k.endswith("efficiency") else 0.0 for k in keys]) / scale
    result = least_squares(residuals, start, bounds=(lo / scale, hi / scale))
    return {f: float(v) for f, v in zip(free, result.x * scale)}


def with_settings(runtime: profiles.RuntimeProfile, values: Mapping[tuple[str, str, str], float]
                  ) -> profiles.RuntimeProfile:
    """``runtime`` with the settings ``(section, entry, key) -> value`` replaced."""
    import dataclasses
    tables = {"defaults": dict(runtime.defaults), "classes": {k: dict(v) for k, v in runtime.classes.items()},
              "devices": {k: dict(v) for k, v in runtime.devices.items()}}
    for (section, entry, key), value in values.items():
        if section == "defaults":
            tables["defaults"][key] = value
        else:
            tables[section].setdefault(entry, {})[key] = value
    return dataclasses.replace(runtime, **tables)
