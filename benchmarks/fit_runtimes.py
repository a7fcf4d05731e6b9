"""Fit the runtime profiles' settings on part of the published measurements; report on the rest.

    python benchmarks/fit_runtimes.py [--table CSV ...]

Reads ``../shared/data/published_measurements/llm_inference.csv``, the
project's own ``profiles/measurements/published_extra.csv`` (and any
``--table``); for each group below fits the named settings on the rows the
group selects for fitting, then prints the fitted values, the ratio of every
row (fit and held-out) and the summary of each split. The values printed are
the ones written in ``profiles/runtimes/*.yaml`` (with these row lists as
their ``fit``). Needs scipy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from offload_env import calibration, profiles  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "published_measurements" / "llm_inference.csv"
OWN = ROOT / "profiles" / "measurements" / "published_extra.csv"

#: (runtime, free settings, rows fitted, rows held out): the split rule is "fit on the Llama-family rows of
#: the first device of a class, hold out the other models, devices and sizes".
GROUPS = [
    ("llama.cpp",
     [("classes", "desktop-gpu", "memory_efficiency"), ("classes", "desktop-gpu", "compute_efficiency"),
      ("classes", "desktop-gpu", "layer_overhead_s")],
     lambda r: r.device == "rtx-4090", lambda r: r.device == "rtx-3090"),
    ("llama.cpp",
     [("devices", "a100-80gb", "memory_efficiency"), ("devices", "a100-80gb", "compute_efficiency"),
      ("devices", "a100-80gb", "layer_overhead_s")],
     lambda r: r.device == "a100-80gb" and r.model == "llama-3.1-8b",
     lambda r: r.device == "a100-80gb" and r.model == "llama-3.1-70b"),
    ("mlc-llm",
     [("classes", "embedded-gpu", "memory_efficiency"), ("classes", "embedded-gpu", "layer_overhead_s")],
     lambda r: r.device == "jetson-orin-nano-8gb" and r.model.startswith("llama"),
     lambda r: r.device == "jetson-orin-nano-8gb" and not r.model.startswith("llama")),
    ("llama.cpp",
     [("classes", "cpu", "memory_efficiency"), ("classes", "cpu", "compute_efficiency")],
     lambda r: r.device == "raspberry-pi-5" and r.model == "tinyllama-1.1b",
     lambda r: r.device == "raspberry-pi-5" and r.model != "tinyllama-1.1b"),
    ("tensorrt-llm",
     [("classes", "datacenter-gpu", "forward_overhead_s"), ("devices", "a100-80gb", "compute_efficiency"),
      ("devices", "h100-sxm", "compute_efficiency")],
     lambda r: r.model == "llama-2-7b", lambda r: r.model == "gpt-j-6b"),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="append", default=[], help="more measurement tables (CSV)")
    args = parser.parse_args(argv)
    tables = [t for t in (SHARED, OWN) if t.is_file()] + [Path(t) for t in args.table]
    if not tables:
        print(f"no table: {SHARED} is absent and no --table was given")
        return 1
    rows = [r for t in tables for r in calibration.read_table(t)]
    for name, free, fit_sel, held_sel in GROUPS:
        runtime = profiles.load_runtime(name)
        fit_rows = [r for r in rows if r.runtime == name and fit_sel(r)]
        held_rows = [r for r in rows if r.runtime == name and held_sel(r)]
        values = calibration.fit_settings(fit_rows, runtime, free)
        fitted = calibration.with_settings(runtime, values)
        print(f"\n## {name}: " + ", ".join(f"{s}.{e}.{k} = {v:.4g}" for (s, e, k), v in values.items()))
        for label, subset in (("fitted_on", fit_rows), ("held_out", held_rows)):
            print(f"  {label}:")
            for r in subset:
                pred = calibration.predict(r, runtime=fitted)
                print(f"    - {r.key}   # measured {r.measured_value:g}, predicted {pred:.4g}, "
                      f"ratio {pred / r.measured_value:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
