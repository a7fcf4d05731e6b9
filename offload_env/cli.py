"""The ``offload-env`` command line: profiles, cost tables, the profiler, the demo, the edge router's server."""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from . import costs, profiles
from .atomic import write_text
from .profiles import ProfileError

#: (model, edge, server, link) scenarios of the demo's cost tables.
DEMO_PAIRS = (
    ("llama-3.2-3b", "jetson-orin-nano-8gb", "a100-80gb", "5g-nr"),
    ("qwen2.5-1.5b", "raspberry-pi-5", "l4", "wifi-6"),
    ("llama-3.1-8b", "jetson-agx-orin-64gb", "h100-sxm", "lte"),
)


def _table(headers: Sequence[str], rows: Sequence[Sequence], out=None) -> None:
    """Print an aligned plain-text table."""
    out = out or sys.stdout
    cells = [[str(h) for h in headers]] + [[c if isinstance(c, str) else f"{c:,.4g}" if isinstance(c, float)
                                            else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for j, row in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)), file=out)
        if j == 0:
            print("  ".join("-" * w for w in widths), file=out)


# --------------------------------------------------------------------------
# list / show


def cmd_list(args) -> int:
    kinds = [args.kind] if args.kind else ["models", "devices", "links", "runtimes", "weight_formats"]
    for kind in kinds:
        names = getattr(profiles, f"list_{kind}")(args.profile_dir)
        print(f"{kind}: {', '.join(names)}")
    return 0


def cmd_show(args) -> int:
    if args.kind == "model":
        m = profiles.load_model(args.name, args.profile_dir)
        print(f"{m.display_name} ({m.name}), {m.role}, weights {m.weights_dtype}")
        print(f"parameters: {m.num_params:,} computed, {m.published_params or 0:,} published "
              f"({m.sources.get('published_params', 'no source')})")
        print(f"layers {m.num_layers}, hidden {m.hidden_size}, vocab {m.vocab_size}, "
              f"tied embeddings {m.tie_word_embeddings}, MoE {m.is_moe}")
        rows = [(f"{i + 1}" if g.count == 1 else f"x{g.count}", g.params, g.active_params, g.flops_per_token,
                 g.attention_flops_per_context_token, g.kv_cache_bytes_per_token, g.hidden_state_bytes_per_token)
                for i, g in enumerate(m.layers)]
        _table(["layers", "params", "active params", "FLOPs/token", "attn FLOPs/ctx tok", "KV B/token (16b)",
                "hidden B/token (16b)"], rows)
    elif args.kind == "device":
        d = profiles.load_device(args.name, args.profile_dir)
        print(f"{d.display_name} ({d.name}), {d.category}")
        _table(["dtype", "peak FLOP/s"], [(k, v) for k, v in d.peak_flops.items()])
        print(f"memory {d.memory_bytes / 2**30:.1f} GiB ({d.usable_memory_fraction:.0%} usable), "
              f"bandwidth {d.memory_bandwidth_bytes_per_s / 1e9:.1f} GB/s")
        print(f"power: active {d.power_active_w} W, idle {d.power_idle_w} W, radio {d.power_radio_tx_w} W; "
              f"efficiency: compute {d.compute_efficiency}, memory {d.memory_efficiency}")
        for key, src in d.sources.items():
            print(f"  source {key}: {src}")
    else:
        link = profiles.load_link(args.name, args.profile_dir)
        for key, value in vars(link).items():
            if key not in ("sources", "path") and value not in (None, {}):
                print(f"{key}: {value}")
        for key, src in link.sources.items():
            print(f"  source {key}: {src}")
    return 0


# --------------------------------------------------------------------------
# cost tables


def _link_rates(link, distance_m: float | None) -> tuple[float, float, float]:
    from .channel import LinkModel

    model = LinkModel.from_profile(link)
    d = distance_m if distance_m is not None else (link.default_distance_m or 1.0)
    return float(model.uplink_rate_bps(d)), float(model.downlink_rate_bps(d)), link.base_rtt_s


def cost_table(model_name: str, edge_name: str, server_name: str, link_name: str, *, prompt_tokens: int = 256,
               output_tokens: int = 64, distance_m: float | None = None, dtype: str | None = None,
               activation_dtype: str = "float16", profile_dir=None, out=None, edge_runtime: str | None = None,
               edge_weight_format: str | None = None, server_runtime: str | None = None,
               server_weight_format: str | None = None) -> costs.SplitCosts:
    """Print latency and energy of every split point for one scenario; return the breakdown.

    Each side runs under its runtime and weight format (default: its device's);
    ``dtype`` alone asks for the ideal roofline instead.
    """
    model = profiles.load_model(model_name, profile_dir)
    edge = profiles.load_device(edge_name, profile_dir)
    server = profiles.load_device(server_name, profile_dir)
    link = profiles.load_link(link_name, profile_dir)
    up, down, rtt = _link_rates(link, distance_m)
    runs = dict(edge_runtime=edge_runtime, edge_weight_format=edge_weight_format, server_runtime=server_runtime,
                server_weight_format=server_weight_format)
    split_model = costs.SplitModel(model, edge, server, dtype=dtype, **runs)
    sc = costs.link_costs(split_model.parts(prompt_tokens, output_tokens), edge, up, down, rtt,
                          activation_dtype=activation_dtype)
    e, v = split_model.edge_run, split_model.server_run
    print(f"\n{model.display_name}: edge {edge.display_name} ({e.runtime}, {e.weight_format}) -> server "
          f"{server.display_name} ({v.runtime}, {v.weight_format}) over "
          f"{link.display_name}; prompt {prompt_tokens}, output {output_tokens} tokens; "
          f"uplink {up / 1e6:.1f} Mbit/s, downlink {down / 1e6:.1f} Mbit/s, RTT {rtt * 1e3:.0f} ms", file=out)
    rows = []
    L = model.num_layers
    for k in range(L + 1):
        where = "all server" if k == 0 else "all edge" if k == L else f"1-{k} edge"
        rows.append((k, where, sc.edge_compute_s[k], sc.uplink_s[k], sc.server_compute_s[k],
                     sc.downlink_s[k] + sc.round_trip_s[k], sc.total_s[k], sc.edge_energy_j[k],
                     sc.edge_memory_bytes[k] / 2**30, "yes" if sc.feasible[k] else "NO"))
    _table(["split", "layers", "edge s", "uplink s", "server s", "down+RTT s", "latency s", "edge J",
            "edge GiB", "fits"], rows, out)
    return sc


def cmd_costs(args) -> int:
    cost_table(args.model, args.edge, args.server, args.link, prompt_tokens=args.prompt, output_tokens=args.output,
               distance_m=args.distance, dtype=args.dtype, activation_dtype=args.activation_dtype,
               profile_dir=args.profile_dir, edge_runtime=args.edge_runtime,
               edge_weight_format=args.edge_format, server_runtime=args.server_runtime,
               server_weight_format=args.server_format)
    return 0


# --------------------------------------------------------------------------
# validate: the cost model against measurements


def cmd_profile_table(args) -> int:
    from . import calibration

    model = profiles.load_model(args.model, args.profile_dir)
    measured = profiles.load_measured(model.name, profiles.check_name(args.device, "--device"), args.profile_dir)
    if measured is None:
        raise ProfileError(f"no measured profile of {model.name!r} on {args.device!r}; run "
                           f"'offload-env profile measure --model {model.name} --device {args.device}'")
    text = calibration.table_text(calibration.rows_from_measured(measured, model))
    if args.out:
        write_text(args.out, text)
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_validate(args) -> int:
    import json

    from . import calibration

    rows = calibration.read_table(args.table)
    result = calibration.validate(rows, profile_dir=args.profile_dir, path=args.table)
    if args.json:
        keep = ("model", "device", "runtime", "weight_format", "prompt_tokens", "output_tokens", "metric",
                "measured_value", "predicted", "ratio", "split", "excluded_because")
        payload = {"rows": [{k: r[k] for k in keep} for r in result["rows"]], "summary": result["summary"]}
        print(json.dumps(payload, indent=1))
        return 0
    _table(["model", "device", "runtime", "format", "P", "T", "metric", "measured", "predicted", "ratio", "split"],
           [(r["model"], r["device"], r["runtime"], r["weight_format"], r["prompt_tokens"], r["output_tokens"],
             r["metric"], float(r["measured_value"]), float(r["predicted"]), f"{r['ratio']:.3f}", r["split"] or "-")
            for r in result["rows"]])
    summary = result["summary"]
    print()
    groups = [("all", summary)] + [(f"runtime {k}", v) for k, v in summary["by_runtime"].items()] + \
             [(k, v) for k, v in summary["by_split"].items()]
    _table(["rows", "n", "median factor", "max factor"],
           [(name, g["n"], f"{g['median_factor']:.3f}", f"{g['max_factor']:.3f}") for name, g in groups])
    for r in result["rows"]:
        if r["split"] == "excluded":
            print(f"excluded (line {r['line']}, {r['key']}): {r['excluded_because']}")
    print("factor = max(predicted/measured, measured/predicted); split: as the runtime profile's fit lists the row "
          f"(excluded rows, {summary['excluded']}, are not in the summary)")
    return 0


def cmd_demo(args) -> int:
    print("offload-env demo: latency and edge energy of every split point (costs.split_costs)")
    for model, edge, server, link in DEMO_PAIRS:
        cost_table(model, edge, server, link, prompt_tokens=args.prompt, output_tokens=args.output)
    return 0


# --------------------------------------------------------------------------
# profiler


def _arguments(args, **flags) -> "profiles._Fields":
    """Command-line values read with the profile loader's checks (errors name the flag, value and range)."""
    return profiles._Fields({flag: getattr(args, attr) for flag, attr in flags.items()}, "command line")


def _output_path(out: str, folder: str, *parts: str) -> Path:
    """``out/folder/parts...``, refused unless it resolves inside ``out/folder`` (no '..', no symlink out)."""
    base = (Path(out) / folder).resolve()
    path = base.joinpath(*parts).resolve()
    if path == base or base not in path.parents:
        raise ProfileError(f"--out: the file {str(path)!r} would be written outside {str(base)!r}")
    return path


def cmd_profile_from_config(args) -> int:
    import yaml

    m = profiles.from_hf_config(args.config, args.name, role=args.role)
    doc = {"schema_version": profiles.SCHEMA_VERSION, "kind": "model", "name": m.name, "display_name": m.name,
           "role": m.role, "weights_dtype": m.weights_dtype,
           "sources": {"hf_config": str(args.config)}, "hf_config": m.hf_config}
    doc.update(profiles.model_to_dict(m))
    text = yaml.safe_dump(doc, sort_keys=False, width=120)
    # what is printed must load back: the loader's checks (names, keys, derived numbers) on the document
    profiles._parse_model(yaml.load(text, Loader=profiles._Loader), Path(f"{m.name}.yaml"))
    sys.stdout.write(text)
    return 0


def _search_dirs(args) -> list[str]:
    """--profile-dir, then --out when it exists (where 'profile host' wrote this machine's device profile)."""
    dirs = [args.profile_dir] if args.profile_dir else []
    if Path(args.out).is_dir():
        dirs.append(args.out)
    return dirs


def cmd_profile_measure(args) -> int:
    from . import profiler

    # every argument is checked before anything is measured or written
    device_name = profiles.check_name(args.device, "--device")
    model = profiles.load_model(args.model, args.profile_dir)
    dirs = _search_dirs(args)
    try:  # the device must have a profile: 'profile host' writes one for this machine
        profiles.load_device(device_name, dirs)
    except ProfileError as exc:
        if not str(exc).startswith("unknown device"):
            raise
        raise ProfileError(f"--device: {exc}; write this machine's with 'offload-env profile host --device "
                           f"{device_name} --memory-bytes BYTES --out {args.out}' first") from None
    given = _arguments(args, **{"--threads": "threads", "--layers": "layers", "--repeats": "repeats"})
    for flag in ("--threads", "--layers", "--repeats"):
        given.integer(flag, low=1)
    if not model.hf_config:
        raise ProfileError(f"--model: {model.name!r} has no hf_config to build its layers from ({model.path})")
    profiler.layer_spec(model.hf_config)
    prefill = profiler._check_grid("--prefill-tokens", args.prefill_tokens, 3)
    decode = profiler._check_grid("--decode-contexts", args.decode_contexts, 2)
    path = _output_path(args.out, "measured", device_name, f"{model.name}.yaml")

    measurement = profiler.measure(model.hf_config, prefill_tokens=prefill, decode_contexts=decode,
                                   layers_built=args.layers, repeats=args.repeats, threads=args.threads,
                                   dtype=args.dtype)
    profiler.write_measured(path, model=model.name, device=device_name, measurement=measurement,
                            measured_on=_dt.date.today().isoformat())
    print(f"wrote {path}")
    _compare(model, device_name, dirs, measured_path=path, dtype=args.dtype)
    return 0


def _compare(model, device_name: str, profile_dir, measured_path=None, dtype=None) -> None:
    device = profiles.load_device(device_name, profile_dir)
    if measured_path is not None:
        measured = profiles._load_measured_file(Path(measured_path))
    else:
        measured = profiles.load_measured(model.name, device_name, profile_dir)
    if measured is None:
        raise ProfileError(f"no measured profile of {model.name!r} on {device_name!r}; run "
                           f"'offload-env profile measure --model {model.name} --device {device_name}'")
    dtype = measured.dtype
    print(f"\n{model.display_name} on {device.display_name}: one decoder layer, roofline vs measured "
          f"({measured.host.get('cpu_model', '?')}, {measured.host.get('threads', '?')} threads, {dtype}, "
          f"{measured.measured_on})")
    rows = []
    for P, t in zip(measured.prefill_tokens, measured.prefill_seconds_per_layer):
        roof = costs.layer_times(model, device, int(P), 1, dtype=dtype, use_measured=False)[0][0]
        rows.append((f"prefill P={int(P)}", roof, t, t / roof))
    for c, t in zip(measured.decode_context, measured.decode_seconds_per_layer):
        # one decode step at context c: the decode of T=2 tokens after a prompt of c-1 tokens
        roof = costs.layer_times(model, device, int(c) - 1, 2, dtype=dtype, use_measured=False)[1][0]
        rows.append((f"decode c={int(c)}", roof, t, t / roof))
    _table(["phase", "roofline s", "measured s", "measured/roofline"], rows)
    ratios = np.array([r[3] for r in rows])
    print(f"geometric-mean ratio {np.exp(np.log(ratios).mean()):.2f}: divide the device's efficiency factors by "
          f"this to calibrate the roofline to this machine")


def cmd_profile_host(args) -> int:
    """Measure this machine's matmul FLOP/s and memory bandwidth; write a device profile."""
    import yaml

    from . import profiler

    # every argument is checked before anything is measured or written
    name = profiles.check_name(args.device, "--device")
    given = _arguments(args, **{"--threads": "threads", "--memory-bytes": "memory_bytes", "--active-w": "active_w",
                                "--idle-w": "idle_w"})
    given.integer("--threads", low=1)
    memory = given.number("--memory-bytes", low=0, low_open=True)
    active = given.number("--active-w", low=0)
    idle = given.number("--idle-w", low=0)
    path = _output_path(args.out, "devices", f"{name}.yaml")

    peaks = profiler.measure_host_peaks(threads=args.threads)
    host = profiler.host_info(args.threads, "float32")
    today = _dt.date.today().isoformat()
    how = (f"measured by 'offload-env profile host --threads {args.threads}' on {today} "
           f"({host['cpu_model']}, torch {host['torch']})")
    doc = {
        "schema_version": profiles.SCHEMA_VERSION, "kind": "device", "name": name,
        "display_name": f"{host['cpu_model']}, {args.threads} thread(s)", "category": "edge",
        "peak_flops": {k: float(f"{v:.4g}") for k, v in peaks["matmul_flops_per_s"].items()},
        "memory_bandwidth_bytes_per_s": float(f"{peaks['memory_bandwidth_bytes_per_s']:.4g}"),
        "memory_bytes": float(memory), "usable_memory_fraction": 0.8,
        "power_w": {"active": active, "idle": idle, "radio_tx": 0.0},
        "efficiency": {"compute": 1.0, "memory": 1.0},
        "sources": {
            "peak_flops": how + ": median FLOP/s of a 2048 x 2048 matmul (achieved, so efficiency 1.0)",
            "memory": how + ": median bytes read + written per second of a 256 MiB tensor copy; "
                            "memory_bytes given on the command line",
            "power_w": "assumption: given on the command line (no power meter on this machine)",
            "efficiency": "peaks above are already achieved rates",
        },
    }
    text = f"# {how}\n" + yaml.safe_dump(doc, sort_keys=False, width=120)
    profiles._parse_device(yaml.load(text, Loader=profiles._Loader), path)  # what is written must load
    write_text(path, text)
    print(f"wrote {path}")
    return 0


def cmd_profile_compare(args) -> int:
    _compare(profiles.load_model(args.model, args.profile_dir), args.device, args.profile_dir)
    return 0


def cmd_serve(args) -> int:
    """Serve an exported policy artifact over HTTP (``offload_env.router.http``) until interrupted."""
    import json

    from .router import ArtifactError, Router
    from .router.http import make_server

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port: expected 0..65535, got {args.port}")
    safe = None
    if args.safe_default is not None:
        try:
            safe = json.loads(args.safe_default)
        except json.JSONDecodeError:
            raise ValueError(f"--safe-default: expected a JSON action (e.g. 0 or [1, -1, 1]), got "
                             f"{args.safe_default!r}") from None
    try:
        router = Router.from_artifact(args.artifact, safe_default=safe)
    except ArtifactError as err:
        raise ValueError(f"artifact: {err}") from None
    m = router.manifest
    server = make_server(router, args.host, args.port, quiet=not args.access_log)
    host, port = server.server_address[:2]
    print(f"serving {m['agent'].get('algo')} for {m['env']['id']} from {args.artifact} on http://{host}:{port} "
          "(POST /decide, /decide/batch; GET /health, /manifest, /openapi.json)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


# --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="offload-env", description=(
        "Profiles, cost tables and a profiler for edge-cloud LLM inference offloading."))
    p.add_argument("--profile-dir", default=None, help="a directory of your own profiles (models/, devices/, "
                                                        "links/, measured/); overrides shipped ones")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("list", help="list profile names")
    s.add_argument("kind", nargs="?", choices=["models", "devices", "links", "runtimes", "weight_formats"])
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("show", help="show one profile with its sources")
    s.add_argument("kind", choices=["model", "device", "link"])
    s.add_argument("name")
    s.set_defaults(func=cmd_show)

    s = sub.add_parser("costs", help="latency, energy and memory of every split point")
    s.add_argument("model")
    s.add_argument("edge")
    s.add_argument("server")
    s.add_argument("--link", default="5g-nr")
    s.add_argument("--prompt", type=int, default=256, help="prompt tokens (default 256)")
    s.add_argument("--output", type=int, default=64, help="output tokens (default 64)")
    s.add_argument("--distance", type=float, default=None, help="edge-to-server distance in m (default: link's)")
    s.add_argument("--dtype", default=None, choices=list(profiles.DTYPE_BYTES),
                   help="the ideal roofline of this storage dtype on both sides (instead of runtimes)")
    s.add_argument("--edge-runtime", default=None, help="the edge's runtime (default: the edge device's)")
    s.add_argument("--edge-format", default=None, help="the edge's weight format (default: the edge device's)")
    s.add_argument("--server-runtime", default=None, help="the server's runtime (default: the server device's)")
    s.add_argument("--server-format", default=None, help="the server's weight format (default: the server's)")
    s.add_argument("--activation-dtype", default="float16", choices=list(costs.ACTIVATION_DTYPES))
    s.set_defaults(func=cmd_costs)

    s = sub.add_parser("validate", help="the cost model against a table of measurements (CSV): every row and "
                                        "the median and max factor")
    s.add_argument("table", help="CSV with columns model, device, runtime, weight_format, prompt_tokens, "
                                 "output_tokens, metric, measured_value")
    s.add_argument("--json", action="store_true", help="print {rows: [...], summary: {...}} as JSON")
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("demo", help="cost tables of three model/device pairs")
    s.add_argument("--prompt", type=int, default=256)
    s.add_argument("--output", type=int, default=64)
    s.set_defaults(func=cmd_demo)

    prof = sub.add_parser("profile", help="measure per-layer times on this machine, compare with the roofline")
    psub = prof.add_subparsers(dest="profile_command", required=True, metavar="ACTION")
    s = psub.add_parser("measure", help="time prefill and decode of decoder layers built with random weights")
    s.add_argument("--model", required=True)
    s.add_argument("--device", required=True, help="the device profile name of this machine")
    s.add_argument("--out", default="profiles", help="profile directory to write measured/<device>/<model>.yaml")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--layers", type=int, default=2, help="decoder layers built and timed")
    s.add_argument("--repeats", type=int, default=5)
    s.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    s.add_argument("--prefill-tokens", type=int, nargs="+", default=[16, 64, 256])
    s.add_argument("--decode-contexts", type=int, nargs="+", default=[64, 256, 1024])
    s.set_defaults(func=cmd_profile_measure)
    s = psub.add_parser("host", help="measure this machine's FLOP/s and memory bandwidth into a device profile")
    s.add_argument("--device", required=True, help="name of the device profile to write")
    s.add_argument("--out", default="profiles", help="profile directory to write devices/<device>.yaml")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--memory-bytes", type=float, required=True, help="memory of this machine in bytes")
    s.add_argument("--active-w", type=float, default=15.0, help="assumed power while computing (W)")
    s.add_argument("--idle-w", type=float, default=5.0, help="assumed power while idle (W)")
    s.set_defaults(func=cmd_profile_host)
    s = psub.add_parser("compare", help="roofline vs measured per-layer time, and the ratio")
    s.add_argument("--model", required=True)
    s.add_argument("--device", required=True)
    s.set_defaults(func=cmd_profile_compare)
    s = psub.add_parser("table", help="a measured profile as rows of a measurement table (offload-env validate)")
    s.add_argument("--model", required=True)
    s.add_argument("--device", required=True)
    s.add_argument("--out", default=None, help="CSV to write (default: print)")
    s.set_defaults(func=cmd_profile_table)
    s = psub.add_parser("from-config", help="print a model profile (YAML) derived from a config.json")
    s.add_argument("config", help="path to a Hugging Face config.json")
    s.add_argument("--name", default=None)
    s.add_argument("--role", default="slm", choices=["slm", "llm"])
    s.set_defaults(func=cmd_profile_from_config)

    s = sub.add_parser("serve", help="serve an exported policy artifact over HTTP (the edge router)")
    s.add_argument("artifact", help="an artifact folder (python -m experiments export)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--safe-default", default=None, metavar="JSON",
                   help="the action served when a decision fails (default: the manifest's)")
    s.add_argument("--access-log", action="store_true", help="log every request to stderr")
    s.set_defaults(func=cmd_serve)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ProfileError, ValueError, OSError, ImportError) as exc:  # calibration.TableError is a ValueError
        message = " ".join(str(exc).split())  # one line, whatever the exception held
        print(f"offload-env: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
