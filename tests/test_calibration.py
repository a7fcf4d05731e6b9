"""Runtimes, weight formats and the cost model against published measurements (offload-env validate)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from offload_env import calibration, cli, costs, profiles

ROOT = Path(__file__).resolve().parent.parent
SHARED_TABLE = ROOT.parent / "shared" / "data" / "published_measurements" / "llm_inference.csv"
COLUMNS = list(calibration.REQUIRED_COLUMNS)


def write_table(path: Path, rows: list[dict], columns=COLUMNS) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    return path


def row(**changes) -> dict:
    base = dict(model="llama-3.1-8b", device="rtx-4090", runtime="llama.cpp", weight_format="q4_k_m",
                prompt_tokens="1", output_tokens="513", metric="decode_tok_s", measured_value="130.58")
    return {**base, **changes}


# --------------------------------------------------------------------------
# Weight formats and runtimes


def test_weight_format_bits_follow_their_block_layouts():
    bits = {name: profiles.load_weight_format(name).bits_per_weight for name in profiles.list_weight_formats()}
    assert bits["q4_0"] == (32 * 4 + 16) / 32  # 32 nibbles + one fp16 scale
    assert bits["q8_0"] == (32 * 8 + 16) / 32
    assert bits["q4f16_1"] == 4 + 16 / 32  # MLC: group 32, fp16 scale
    assert bits["awq"] == bits["gptq"] == pytest.approx(4 + (16 + 4) / 128, abs=1e-3)  # g128 scale + 4-bit zero
    assert (144 * 8 / 256) < bits["q4_k_m"] < (210 * 8 / 256)  # between Q4_K and Q6_K
    assert bits["q4_k_m"] < bits["q5_k_m"] < 210 * 8 / 256
    assert bits["f16"] == bits["bf16"] == 16 and bits["fp8"] == bits["int8"] == 8
    assert profiles.load_weight_format("q4_k_m").source  # every format says where its bits come from


def test_every_shipped_runtime_loads_and_every_device_names_a_pair_it_runs():
    runtimes = {name: profiles.load_runtime(name) for name in profiles.list_runtimes()}
    assert {"llama.cpp", "mlc-llm", "tensorrt-llm", "vllm", "hf-transformers", "roofline"} <= set(runtimes)
    for name in profiles.list_devices():
        device = profiles.load_device(name)
        assert device.device_class in profiles.DEVICE_CLASSES, name
        assert device.default_weight_format in runtimes[device.default_runtime].weight_formats, name
        run = costs.execution(device)
        assert (run.runtime, run.weight_format) == (device.default_runtime, device.default_weight_format)


def test_storage_and_compute_dtypes_differ_for_4bit_weights():
    a100, pi = profiles.load_device("a100-80gb"), profiles.load_device("raspberry-pi-5")
    gpu = costs.execution(a100, "llama.cpp", "q4_k_m")
    assert gpu.compute_dtype == "float16" and gpu.weight_bytes == pytest.approx(4.85 / 8)
    assert gpu.flops_s < a100.peak_flops["float16"]
    assert costs.execution(pi, "llama.cpp", "q4_0").compute_dtype == "int8"  # ggml CPU: int8 dot products
    assert costs.execution(a100, "vllm", "awq").compute_dtype == "float16"  # W4A16
    assert costs.execution(profiles.load_device("h100-sxm"), "tensorrt-llm", "fp8").compute_dtype == "float8"
    assert costs.execution(a100, "vllm", "fp8").compute_dtype == "float16"  # no FP8 tensor cores on Ampere
    # the ideal roofline (dtype= alone) still computes 4-bit weights at the INT4 peak, as before runtimes
    assert costs.execution(a100, dtype="int4").compute_dtype == "int4"


def test_dtype_alone_is_the_ideal_roofline_of_before():
    model, device = profiles.load_model("llama-3.1-8b"), profiles.load_device("a100-80gb")
    run = costs.execution(device, dtype="float16")
    assert (run.runtime, run.weight_format, run.weight_bytes) == ("roofline", "f16", 2.0)
    assert run.flops_s == device.peak_flops["float16"] * device.compute_efficiency
    assert run.bandwidth_bytes_s == device.memory_bandwidth_bytes_per_s * device.memory_efficiency
    assert run.forward_overhead_s == run.layer_overhead_s == 0.0
    # decode of a memory-bound model: the weights read per step over the bandwidth, by hand
    est = costs.estimate(model, device, 1, 101, dtype="float16", use_measured=False)
    per_step = (sum(g.active_params * g.count for g in model.layers) + model.lm_head_params
                + model.final_norm_params) * 2.0 / run.bandwidth_bytes_s
    assert est.decode_s / 100 == pytest.approx(per_step, rel=2e-3)  # the KV cache read is the rest


def test_bad_runtime_arguments_are_refused_by_name():
    device = profiles.load_device("a100-80gb")
    with pytest.raises(ValueError, match="dtype: give either dtype"):
        costs.execution(device, "vllm", dtype="float16")
    with pytest.raises(ValueError, match=r"weight_format: runtime 'mlc-llm' runs q4f16_1, f16; got 'q4_k_m'"):
        costs.execution(device, "mlc-llm", "q4_k_m")
    with pytest.raises(ValueError, match="runtime: unknown runtime 'ollama'; known: hf-transformers"):
        costs.execution(device, "ollama")
    with pytest.raises(ValueError, match="weight_format: runtime 'vllm' runs"):
        costs.execution(device, "vllm", "q3_k_s")
    with pytest.raises(ValueError, match="dtype: expected one of"):
        costs.execution(device, dtype="fp4")


def test_overheads_are_paid_per_forward_pass_and_per_layer():
    model, device = profiles.load_model("llama-3.2-1b"), profiles.load_device("rtx-4090")
    base = profiles.load_runtime("llama.cpp")
    fo, lo = 2e-3, 5e-5
    zero = calibration.with_settings(base, {("classes", "desktop-gpu", "forward_overhead_s"): 0.0,
                                            ("classes", "desktop-gpu", "layer_overhead_s"): 0.0})
    some = calibration.with_settings(base, {("classes", "desktop-gpu", "forward_overhead_s"): fo,
                                            ("classes", "desktop-gpu", "layer_overhead_s"): lo})
    P, T = 200, 33
    a = costs.estimate(model, device, P, T, runtime=zero, weight_format="q4_k_m", use_measured=False)
    b = costs.estimate(model, device, P, T, runtime=some, weight_format="q4_k_m", use_measured=False)
    per_pass = fo + model.num_layers * lo
    assert b.prefill_s - a.prefill_s == pytest.approx(per_pass, rel=1e-9)
    assert b.decode_s - a.decode_s == pytest.approx((T - 1) * per_pass, rel=1e-9)


def test_split_costs_under_runtimes_keep_the_ends_equal_to_the_whole_model():
    model = profiles.load_model("llama-3.2-3b")
    edge, server = profiles.load_device("jetson-orin-nano-8gb"), profiles.load_device("a100-80gb")
    sm = costs.SplitModel(model, edge, server, server_runtime="tensorrt-llm", server_weight_format="f16",
                          use_measured=False)
    assert (sm.edge_run.runtime, sm.edge_run.weight_format) == ("mlc-llm", "q4f16_1")
    P, T = np.array([64, 900]), np.array([32, 8])
    parts = sm.parts(P, T)
    local = costs.estimate(model, edge, P, T, use_measured=False)
    remote = costs.estimate(model, server, P, T, runtime="tensorrt-llm", weight_format="f16", use_measured=False)
    np.testing.assert_allclose(parts.edge_compute_s[:, -1], local.total_s, rtol=1e-12)
    np.testing.assert_allclose(parts.server_compute_s[:, 0], remote.total_s, rtol=1e-12)
    np.testing.assert_allclose(parts.edge_memory_bytes[:, -1], local.peak_memory_bytes, rtol=1e-12)
    sm.token_tables(256, 64)  # raises if the overheads broke the prefill + decode-context identity
    # an edge in a 4.5-bit format holds 4.5/16 of the f16 weights (plus the same KV cache) at a split
    f16 = costs.SplitModel(model, edge, server, edge_runtime="mlc-llm", edge_weight_format="f16")
    assert sm.parts(P, T).edge_memory_bytes[0, 5] < 0.5 * f16.parts(P, T).edge_memory_bytes[0, 5]


def test_runtime_profile_errors_name_the_file_and_field(tmp_path):
    (tmp_path / "runtimes").mkdir()
    good = (ROOT / "profiles" / "runtimes" / "vllm.yaml").read_text()

    def load(text: str):
        (tmp_path / "runtimes" / "vllm.yaml").write_text(text)
        profiles._load_runtime_file.cache_clear()
        return profiles.load_runtime("vllm", tmp_path)

    assert load(good).name == "vllm"
    with pytest.raises(profiles.ProfileError, match=r"vllm.yaml: field 'defaults.memory_efficiency': expected a "
                                                    r"number in \(0, 1\], got 1.5"):
        load(good.replace("memory_efficiency: device", "memory_efficiency: 1.5"))
    with pytest.raises(profiles.ProfileError, match="field 'defaults.layer_overhead': unknown key; did you mean "
                                                    "'layer_overhead_s'"):
        load(good.replace("layer_overhead_s:", "layer_overhead:"))
    with pytest.raises(profiles.ProfileError, match="field 'defaults.compute_dtypes.gptq': expected the dtype"):
        load(good.replace(", gptq: float16}", "}"))
    with pytest.raises(profiles.ProfileError, match="field 'weight_formats': expected a list of weight formats"):
        load(good.replace("weight_formats: [f16,", "weight_formats: [q9_z,"))
    with pytest.raises(profiles.ProfileError, match="field 'classes.laptop': expected one of datacenter-gpu"):
        load(good + "classes:\n  laptop: {layer_overhead_s: 0.001}\n")
    profiles._load_runtime_file.cache_clear()


# --------------------------------------------------------------------------
# validate


@pytest.mark.skipif(not SHARED_TABLE.is_file(), reason=f"{SHARED_TABLE} is absent (shared data not mounted)")
def test_the_cost_model_meets_its_targets_on_the_published_measurements():
    result = calibration.validate(calibration.read_table(SHARED_TABLE))
    summary = result["summary"]
    assert summary["n"] == len(result["rows"]) >= 26
    assert summary["median_factor"] <= 1.15, summary
    assert summary["max_factor"] <= 1.6, [(r["key"], r["ratio"]) for r in result["rows"] if r["factor"] > 1.6]
    # the held-out rows (fitted on none of them) carry the same targets
    held = summary["by_split"]["held-out"]
    assert held["n"] >= 10 and held["median_factor"] <= 1.15 and held["max_factor"] <= 1.6, held


def test_the_cost_model_meets_its_targets_on_the_projects_own_table_held_out_of_every_fit():
    rows = calibration.validate(calibration.read_table(ROOT / "profiles" / "measurements" / "published_extra.csv"))
    summary = rows["summary"]
    assert summary["by_split"]["fit"]["n"] <= 2  # all but the CPU class's two rows are held out of every fit
    held = summary["by_split"]["held-out"]
    assert held["n"] >= 15 and held["median_factor"] <= 1.15 and held["max_factor"] <= 1.6, held
    for r in rows["rows"]:  # every row is listed by its runtime profile, an exclusion with its reason
        assert r["split"] in ("fit", "held-out", "excluded"), r["key"]
        assert (r["split"] == "excluded") == bool(r["excluded_because"]), r["key"]
    assert summary["excluded"] == sum(r["split"] == "excluded" for r in rows["rows"]) <= 9


@pytest.mark.skipif(not SHARED_TABLE.is_file(), reason=f"{SHARED_TABLE} is absent (shared data not mounted)")
def test_every_fit_list_names_rows_of_the_table_and_fit_and_held_out_are_disjoint():
    keys = {r.key for r in calibration.read_table(SHARED_TABLE)}
    extra = ROOT / "profiles" / "measurements" / "published_extra.csv"
    if extra.is_file():
        keys |= {r.key for r in calibration.read_table(extra)}
    for name in profiles.list_runtimes():
        fit = profiles.load_runtime(name).fit
        fitted, held = set(fit.get("fitted_on") or ()), set(fit.get("held_out") or ())
        assert not fitted & held, name
        assert fitted | held <= keys, (name, (fitted | held) - keys)


def test_validate_json_gives_rows_with_ratios_and_a_summary(tmp_path, capsys):
    table = write_table(tmp_path / "t.csv", [row(), row(metric="prefill_tok_s", prompt_tokens="512",
                                                        output_tokens="1", measured_value="7139")])
    assert cli.main(["validate", str(table), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["rows"]) == 2
    for r in out["rows"]:
        assert r["ratio"] == pytest.approx(r["predicted"] / r["measured_value"])
    factors = [max(r["ratio"], 1 / r["ratio"]) for r in out["rows"]]
    assert out["summary"]["n"] == 2
    assert out["summary"]["median_factor"] == pytest.approx(np.median(factors))
    assert out["summary"]["max_factor"] == pytest.approx(max(factors))
    # the prediction is the cost model's: decode rate = tokens after the first / decode time
    est = costs.estimate(profiles.load_model("llama-3.1-8b"), profiles.load_device("rtx-4090"), 1, 513,
                         runtime="llama.cpp", weight_format="q4_k_m", use_measured=False)
    assert out["rows"][0]["predicted"] == pytest.approx(512 / float(est.decode_s))
    assert cli.main(["validate", str(table)]) == 0
    text = capsys.readouterr().out
    assert "median factor" in text and "llama-3.1-8b" in text


@pytest.mark.parametrize("field, value, message", [
    ("model", "llama-9b", "line 3: unknown model 'llama-9b'"),
    ("device", "tpu-v9", "line 3: unknown device 'tpu-v9'"),
    ("runtime", "ollama", "line 3: runtime: unknown runtime 'ollama'"),
    ("weight_format", "q2_k", "line 3: weight_format: runtime 'llama.cpp' runs"),
    ("metric", "tokens_per_s", "line 3, column 'metric': expected one of decode_tok_s"),
    ("measured_value", "-3", "line 3, column 'measured_value': expected a finite number > 0"),
    ("measured_value", "nan", "line 3, column 'measured_value': expected a finite number > 0"),
    ("prompt_tokens", "1.5", "line 3, column 'prompt_tokens': expected a whole number"),
    ("output_tokens", "1", "line 3, column 'output_tokens': a decode_tok_s row needs output_tokens >= 2"),
])
def test_a_bad_row_is_an_error_naming_the_row(tmp_path, capsys, field, value, message):
    table = write_table(tmp_path / "t.csv", [row(), row(**{field: value})])
    assert cli.main(["validate", str(table)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(table) in err
    assert "Traceback" not in err


def test_a_table_without_a_required_column_is_refused(tmp_path, capsys):
    table = write_table(tmp_path / "t.csv", [{k: v for k, v in row().items() if k != "runtime"}],
                        [c for c in COLUMNS if c != "runtime"])
    assert cli.main(["validate", str(table)]) == 2
    assert "missing column(s) runtime" in capsys.readouterr().err
    assert cli.main(["validate", str(tmp_path / "absent.csv")]) == 2
    assert "cannot be read" in capsys.readouterr().err
    (tmp_path / "latin1.csv").write_bytes(",".join(COLUMNS).encode() + b"\ncaf\xe9,,,,,,,\n")
    assert cli.main(["validate", str(tmp_path / "latin1.csv")]) == 2
    assert "not UTF-8 text" in capsys.readouterr().err
    (tmp_path / "header.csv").write_text(",".join(COLUMNS) + "\n")
    assert cli.main(["validate", str(tmp_path / "header.csv")]) == 2
    assert "no rows" in capsys.readouterr().err


def test_a_table_saved_by_a_spreadsheet_with_a_byte_order_mark_reads(tmp_path):
    path = write_table(tmp_path / "t.csv", [row()])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert calibration.read_table(path)[0].model == "llama-3.1-8b"


def test_costs_command_names_a_bad_runtime(capsys):
    assert cli.main(["costs", "llama-3.2-1b", "jetson-orin-nano-8gb", "a100-80gb", "--edge-runtime", "ollama"]) == 2
    assert "runtime: unknown runtime 'ollama'" in capsys.readouterr().err
    # --dtype is the ideal roofline of the sides given no runtime or format
    assert cli.main(["costs", "llama-3.2-1b", "jetson-orin-nano-8gb", "a100-80gb", "--dtype", "float16",
                     "--server-runtime", "tensorrt-llm"]) == 0
    assert "(roofline, f16) -> server NVIDIA A100 80GB SXM (tensorrt-llm, f16)" in capsys.readouterr().out


# --------------------------------------------------------------------------
# The envs' scenarios


def test_env_scenarios_run_their_devices_under_named_runtimes():
    from offload_env.envs.layer_split import PRESETS, LayerSplitEnv

    for name, preset in PRESETS.items():
        assert preset.edge_runtime and preset.server_runtime, name  # every preset names its pair
        env = LayerSplitEnv(scenario=name)
        sm = env.unwrapped._sim.split_model
        # each side runs the weight format its preset names (the edge may hold quantised layers)
        assert (sm.edge_run.runtime, sm.edge_run.weight_format) == (preset.edge_runtime, preset.edge_weight_format)
        assert (sm.server_run.runtime, sm.server_run.weight_format) == (preset.server_runtime,
                                                                        preset.server_weight_format)
    assert {PRESETS[name].edge_weight_format for name in PRESETS} > {"f16"}  # the presets quantise the edge
    old = LayerSplitEnv(dtype="float16").unwrapped._sim.split_model
    assert old.edge_run.runtime == old.server_run.runtime == "roofline"


@pytest.mark.parametrize("make, message", [
    (lambda: __import__("offload_env.envs.layer_split", fromlist=["x"]).LayerSplitEnv(edge_runtime="ollama"),
     "LayerSplit scenario field 'edge_runtime': unknown runtime 'ollama'"),
    (lambda: __import__("offload_env.envs.layer_split", fromlist=["x"]).LayerSplitEnv(server_weight_format="q4_0"),
     "LayerSplit scenario field 'server_weight_format': runtime 'vllm' runs"),
    (lambda: __import__("offload_env.envs.layer_split", fromlist=["x"]).LayerSplitEnv(dtype="fp4"),
     "LayerSplit scenario field 'dtype': expected None or one of"),
    (lambda: __import__("offload_env.vehicular", fromlist=["x"]).parallel_env(rsu_runtime="mlc-llm",
                                                                               weight_format="q4_k_m"),
     "Vehicular scenario field 'weight_format': runtime 'mlc-llm' runs"),
])
def test_a_bad_runtime_in_a_scenario_names_the_field(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert message in str(info.value)


def test_a_routing_pool_member_names_its_bad_runtime():
    from offload_env.envs.routing import PoolMember, RoutingEnv, RoutingScenario

    pool = (PoolMember("qwen2.5-1.5b", "jetson-orin-nano-8gb", "local", runtime="tensorrt-llm",
                       weight_format="q4f16_1"),
            PoolMember("llama-3.1-8b", "l4", "edge"))
    with pytest.raises(ValueError, match=r"Routing scenario field 'pool\[0\].weight_format': runtime "
                                         r"'tensorrt-llm' runs f16"):
        RoutingEnv(scenario=RoutingScenario(pool=pool))
    env = RoutingEnv(scenario=RoutingScenario(pool=(dataclasses_replace(pool[0], runtime=None), pool[1])))
    # no format named: the device's own where the runtime runs it
    assert costs.execution(profiles.load_device("jetson-orin-nano-8gb"), "tensorrt-llm").weight_format == "f16"
    assert env.unwrapped.members[0].run == {"runtime": "mlc-llm", "weight_format": "q4f16_1"}


def dataclasses_replace(obj, **changes):
    import dataclasses
    return dataclasses.replace(obj, **changes)


def test_a_measured_profile_becomes_table_rows_that_validate_reads(tmp_path, capsys):
    out = tmp_path / "measured.csv"
    assert cli.main(["profile", "table", "--model", "qwen2.5-0.5b", "--device", "ci-xeon-1thread",
                     "--out", str(out)]) == 0
    rows = calibration.read_table(out)
    measured = profiles.load_measured("qwen2.5-0.5b", "ci-xeon-1thread")
    L = profiles.load_model("qwen2.5-0.5b").num_layers
    assert len(rows) == len(measured.prefill_tokens) + len(measured.decode_context)
    first = rows[0]
    assert (first.runtime, first.weight_format, first.metric) == ("hf-transformers", "f32", "prefill_tok_s")
    expected = measured.prefill_tokens[0] / (L * measured.prefill_seconds_per_layer[0]
                                             + measured.lm_head_seconds_per_token)
    assert first.measured_value == pytest.approx(expected, rel=1e-5)
    assert cli.main(["validate", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.split("wrote", 1)[-1].split("\n", 1)[-1])["summary"]["n"] == len(rows)
    assert cli.main(["profile", "table", "--model", "llama-3.1-8b", "--device", "ci-xeon-1thread"]) == 2
    assert "no measured profile of 'llama-3.1-8b'" in capsys.readouterr().err
