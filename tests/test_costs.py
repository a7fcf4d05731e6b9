"""The cost model: physics sanity, split consistency, vectorisation, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_env import costs, profiles
from offload_env.costs import _sum_max_linear, estimate, layer_times, split_costs
from offload_env.profiles import DTYPE_BYTES, load_device, load_model

EDGE = load_device("jetson-orin-nano-8gb")
SERVER = load_device("a100-80gb")
SLM = load_model("llama-3.2-3b")
LINK = dict(uplink_bps=50e6, downlink_bps=100e6, rtt_s=0.02)


@pytest.mark.parametrize("name", ["llama-3.2-1b", "qwen2.5-1.5b", "llama-3.1-8b", "phi-3-mini-4k", "gpt-j-6b"])
def test_flops_per_token_is_about_twice_the_parameters_at_short_context(name):
    m = load_model(name)
    flops = sum(g.count * (g.flops_per_token + g.attention_flops_per_context_token) for g in m.layers)
    flops += m.lm_head_flops_per_token
    # 2 x params, less the embedding lookup (no FLOPs) when it is not tied to the LM head
    lookup = 0 if m.tie_word_embeddings else m.embedding_params
    assert flops == pytest.approx(2 * (m.num_params - lookup), rel=0.01)


def test_decode_on_a_gpu_is_memory_bound_and_prefill_compute_bound():
    m = load_model("llama-3.1-8b")
    (g,) = m.layers
    P, T = 1024, 2
    prefill, decode, _ = layer_times(m, SERVER, P, T)
    compute = (g.flops_per_token * P + g.attention_flops_per_context_token * P * (P + 1) / 2) / (
        SERVER.effective_flops("float16"))
    assert prefill[0] == pytest.approx(compute)
    assert compute > g.params * 2 / SERVER.effective_bandwidth
    memory = (g.active_params * 2 + g.kv_cache_bytes_per_token * (P + 1)) / SERVER.effective_bandwidth
    assert decode[0] == pytest.approx(memory)
    assert memory > (g.flops_per_token + g.attention_flops_per_context_token * (P + 1)) / SERVER.effective_flops(
        "float16")


def test_moe_decode_reads_active_experts_but_holds_all():
    m = load_model("mixtral-8x7b")
    (g,) = m.layers
    _, decode, _ = layer_times(m, SERVER, 16, 2)
    assert decode[0] == pytest.approx((g.active_params * 2 + g.kv_cache_bytes_per_token * 17) / (
        SERVER.effective_bandwidth))
    est = estimate(m, SERVER, 16, 2)
    assert est.peak_memory_bytes > m.num_params * 2  # every expert is in memory
    assert not est.feasible  # 93 GB of fp16 weights do not fit one 80 GB A100
    assert estimate(m, SERVER, 16, 2, dtype="int8").feasible


@pytest.mark.parametrize("model", ["llama-3.2-1b", "qwen2.5-0.5b", "llama-3.2-3b"])
def test_split_L_equals_estimate_on_the_edge(model):
    m = load_model(model)
    sc = split_costs(m, EDGE, SERVER, **LINK, prompt_tokens=[64, 512], output_tokens=[32, 8])
    est = estimate(m, EDGE, [64, 512], [32, 8])
    np.testing.assert_allclose(sc.total_s[:, -1], est.total_s)
    np.testing.assert_allclose(sc.edge_compute_s[:, -1], est.total_s)
    np.testing.assert_allclose(sc.edge_energy_j[:, -1], est.energy_j)
    np.testing.assert_allclose(sc.edge_memory_bytes[:, -1], est.peak_memory_bytes)
    assert np.all(sc.uplink_bytes[:, -1] == 0) and np.all(sc.round_trip_s[:, -1] == 0)


def test_split_0_is_the_server_path_plus_the_prompt_transfer():
    P, T = np.array([64, 512]), np.array([32, 8])
    sc = split_costs(SLM, EDGE, SERVER, **LINK, prompt_tokens=P, output_tokens=T)
    est = estimate(SLM, SERVER, P, T)
    transfer = P * 4 * 8 / LINK["uplink_bps"] + T * 4 * 8 / LINK["downlink_bps"] + LINK["rtt_s"]
    np.testing.assert_allclose(sc.total_s[:, 0], est.total_s + transfer)
    np.testing.assert_allclose(sc.server_compute_s[:, 0], est.total_s)
    assert np.all(sc.edge_compute_s[:, 0] == 0) and np.all(sc.edge_memory_bytes[:, 0] == 0)
    np.testing.assert_allclose(sc.edge_energy_j[:, 0], sc.uplink_s[:, 0] * EDGE.power_radio_tx_w + (
        sc.total_s[:, 0] - sc.uplink_s[:, 0]) * EDGE.power_idle_w)


def test_interior_split_pays_a_round_trip_per_token_and_sends_hidden_states():
    P, T = 100, 20
    sc = split_costs(SLM, EDGE, SERVER, **LINK, prompt_tokens=P, output_tokens=T)
    k = 5
    assert sc.round_trip_s[k] == pytest.approx(T * LINK["rtt_s"])
    assert sc.uplink_bytes[k] == (P + T - 1) * SLM.hidden_size * 2
    assert sc.downlink_bytes[k] == T * 4
    int8 = split_costs(SLM, EDGE, SERVER, **LINK, prompt_tokens=P, output_tokens=T, activation_dtype="int8")
    assert int8.uplink_bytes[k] == sc.uplink_bytes[k] / 2
    np.testing.assert_allclose(sc.total_s, sc.edge_compute_s + sc.uplink_s + sc.server_compute_s + sc.downlink_s
                               + sc.round_trip_s)
    # more layers on the slower edge: edge compute grows, server compute shrinks with k
    assert np.all(np.diff(sc.edge_compute_s[:-1]) > 0) and np.all(np.diff(sc.server_compute_s[1:-1]) < 0)


def test_infeasible_splits_are_flagged_when_weights_and_kv_exceed_edge_memory():
    sc = split_costs(SLM, EDGE, SERVER, **LINK, prompt_tokens=512, output_tokens=128, dtype="float16")
    usable = EDGE.memory_bytes * EDGE.usable_memory_fraction
    np.testing.assert_array_equal(sc.feasible, sc.edge_memory_bytes <= usable)
    assert sc.feasible[0] and not sc.feasible[-1]  # 3B in fp16 does not fit a 8 GB Orin Nano whole
    assert sc.feasible.sum() > 1
    weights = SLM.embedding_params * 2 + 3 * SLM.layers[0].params * 2
    assert sc.edge_memory_bytes[3] == weights + 3 * SLM.layers[0].kv_cache_bytes_per_token * 640
    assert split_costs(SLM, EDGE, SERVER, **LINK, prompt_tokens=512, output_tokens=128,
                       dtype="int4").feasible[-1]


def test_server_share_and_link_rates_scale_their_parts():
    base = split_costs(SLM, EDGE, SERVER, **LINK, prompt_tokens=128, output_tokens=16)
    busy = split_costs(SLM, EDGE, SERVER, **LINK, prompt_tokens=128, output_tokens=16, server_share=0.25)
    np.testing.assert_allclose(busy.server_compute_s, 4 * base.server_compute_s)
    slow = split_costs(SLM, EDGE, SERVER, uplink_bps=5e6, downlink_bps=100e6, rtt_s=0.02, prompt_tokens=128,
                       output_tokens=16)
    np.testing.assert_allclose(slow.uplink_s, 10 * base.uplink_s)


def test_vectorised_equals_one_request_at_a_time():
    rng = np.random.default_rng(0)
    P, T = rng.integers(1, 2000, 50), rng.integers(1, 300, 50)
    up = rng.uniform(1e5, 1e9, 50)
    batch = split_costs(SLM, EDGE, SERVER, up, up, 0.01, P, T)
    for i in [0, 17, 49]:
        one = split_costs(SLM, EDGE, SERVER, up[i], up[i], 0.01, int(P[i]), int(T[i]))
        for field in ("total_s", "edge_energy_j", "edge_memory_bytes"):
            np.testing.assert_allclose(getattr(batch, field)[i], getattr(one, field))


@settings(max_examples=60, deadline=None)
@given(P=st.integers(1, 8000), T=st.integers(1, 2000), dP=st.integers(1, 500), dT=st.integers(1, 200),
       up=st.floats(1e4, 1e10), rtt=st.floats(0, 0.5), share=st.floats(0.01, 1.0),
       dtype=st.sampled_from(["float16", "int8", "int4"]), act=st.sampled_from(costs.ACTIVATION_DTYPES))
def test_costs_are_finite_consistent_and_grow_with_context(P, T, dP, dT, up, rtt, share, dtype, act):
    kw = dict(dtype=dtype, activation_dtype=act, server_share=share)
    a = split_costs(SLM, EDGE, SERVER, up, up, rtt, P, T, **kw)
    b = split_costs(SLM, EDGE, SERVER, up, up, rtt, P + dP, T + dT, **kw)
    for sc in (a, b):
        for field in ("edge_compute_s", "uplink_s", "server_compute_s", "downlink_s", "round_trip_s",
                      "edge_energy_j", "edge_memory_bytes"):
            value = getattr(sc, field)
            assert np.all(np.isfinite(value)) and np.all(value >= 0), field
        np.testing.assert_allclose(sc.total_s, sc.edge_compute_s + sc.uplink_s + sc.server_compute_s
                                   + sc.downlink_s + sc.round_trip_s)
    assert np.all(b.total_s >= a.total_s) and np.all(b.edge_energy_j >= a.edge_energy_j * (1 - 1e-12))
    assert np.all(b.edge_memory_bytes >= a.edge_memory_bytes)


@settings(max_examples=200, deadline=None)
@given(a1=st.floats(-5, 5), b1=st.floats(-2, 2), a2=st.floats(-5, 5), b2=st.floats(-2, 2), n=st.integers(0, 60))
def test_closed_form_sum_of_max_matches_the_loop(a1, b1, a2, b2, n):
    t = np.arange(1, n + 1)
    brute = np.maximum(a1 + b1 * t, a2 + b2 * t).sum()
    got = _sum_max_linear(np.float64(a1), np.float64(b1), np.float64(a2), np.float64(b2), np.float64(n))
    assert got == pytest.approx(brute, abs=1e-9 * max(1.0, abs(brute)) + 1e-9)


def test_decode_sum_equals_the_per_step_roofline():
    """The closed form equals summing max(compute, memory) step by step on a device where they cross."""
    cpu = load_device("raspberry-pi-5")
    m = load_model("qwen2.5-0.5b")
    (g,) = m.layers
    P, T = 300, 400
    _, decode, _ = layer_times(m, cpu, P, T, dtype="float16", use_measured=False)
    c = P + np.arange(1, T)
    step = np.maximum((g.flops_per_token + g.attention_flops_per_context_token * c) / cpu.effective_flops("float16"),
                      (g.active_params * 2 + g.kv_cache_bytes_per_token * c) / cpu.effective_bandwidth)
    assert decode[0] == pytest.approx(step.sum())


def test_measured_profile_overrides_the_roofline(tmp_path, monkeypatch):
    folder = tmp_path / "measured" / "raspberry-pi-5"
    folder.mkdir(parents=True)
    (folder / "qwen2.5-0.5b.yaml").write_text(yaml.safe_dump({
        "schema_version": 1, "kind": "measured", "model": "qwen2.5-0.5b", "device": "raspberry-pi-5",
        "measured_on": "2026-11-24", "host": {"cpu_model": "test", "threads": 1, "dtype": "float32"},
        "layers_built": 2,
        "prefill": {"tokens": [10, 20, 40], "seconds_per_layer": [0.01 + 0.001 * p for p in (10, 20, 40)]},
        "decode": {"context": [10, 100], "seconds_per_layer": [0.002 + 1e-5 * c for c in (10, 100)]},
        "lm_head": {"seconds_per_token": 0.005}}))
    monkeypatch.setenv("OFFLOAD_ENV_PROFILES", str(tmp_path))
    m, cpu = load_model("qwen2.5-0.5b"), load_device("raspberry-pi-5")
    prefill, decode, lm = layer_times(m, cpu, 30, 3, dtype="float32")
    assert prefill[0] == pytest.approx(0.01 + 0.03)
    assert decode[0] == pytest.approx(2 * 0.002 + 1e-5 * (31 + 32))
    assert lm == pytest.approx(3 * 0.005)
    roof = layer_times(m, cpu, 30, 3, dtype="float32", use_measured=False)[0]
    assert roof[0] != pytest.approx(prefill[0])
    # another dtype is not what was measured: roofline
    assert layer_times(m, cpu, 30, 3, dtype="float16")[0][0] == pytest.approx(
        layer_times(m, cpu, 30, 3, dtype="float16", use_measured=False)[0][0])


@pytest.mark.parametrize("kwargs, name", [
    (dict(prompt_tokens=-1), "prompt_tokens"),
    (dict(prompt_tokens=2.5), "prompt_tokens"),
    (dict(output_tokens=0), "output_tokens"),
    (dict(uplink_bps=0.0), "uplink_bps"),
    (dict(rtt_s=float("nan")), "rtt_s"),
    (dict(dtype="fp12"), "dtype"),
    (dict(activation_dtype="float32"), "activation_dtype"),
    (dict(server_share=1.5), "server_share"),
])
def test_bad_inputs_raise_value_error_naming_the_argument(kwargs, name):
    args = dict(uplink_bps=1e6, downlink_bps=1e6, rtt_s=0.01, prompt_tokens=10, output_tokens=5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        split_costs(SLM, EDGE, SERVER, **args)


def test_profiles_of_the_wrong_type_are_rejected():
    with pytest.raises(TypeError, match="ModelProfile"):
        estimate("llama-3.2-3b", EDGE, 1, 1)


def test_dtype_bytes_used_for_weights():
    one = estimate(SLM, SERVER, 1, 1, dtype="float16").peak_memory_bytes
    four = estimate(SLM, SERVER, 1, 1, dtype="int4").peak_memory_bytes
    kv = SLM.num_layers * SLM.layers[0].kv_cache_bytes_per_token * 2
    assert (four - kv) == pytest.approx((one - kv) * DTYPE_BYTES["int4"] / 2)


def test_queues_wait_for_each_side_as_a_pipeline():
    sc = split_costs(SLM, EDGE, SERVER, **LINK, prompt_tokens=100, output_tokens=10)
    qc = costs.with_queues(sc, EDGE, edge_backlog_s=2.0, server_backlog_s=3.0)
    L = SLM.num_layers
    # split 0 skips the edge queue and waits the whole server backlog; L skips the server
    assert qc.edge_wait_s[0] == 0 and qc.server_wait_s[0] == 3.0
    assert qc.edge_wait_s[L] == 2.0 and qc.server_wait_s[L] == 0
    # interior: 2 s at the edge, then the 1 s of server backlog left
    assert qc.edge_wait_s[5] == 2.0 and qc.server_wait_s[5] == pytest.approx(1.0)
    np.testing.assert_allclose(qc.latency_s, sc.total_s + qc.edge_wait_s + qc.server_wait_s)
    np.testing.assert_allclose(qc.edge_energy_j - sc.edge_energy_j,
                               (qc.edge_wait_s + qc.server_wait_s) * EDGE.power_idle_w)
    assert qc.edge_backlog_s[0] == 2.0 and qc.edge_backlog_s[5] == pytest.approx(2.0 + sc.edge_compute_s[5])
    assert qc.server_backlog_s[L] == 3.0 and qc.server_backlog_s[5] == pytest.approx(3.0 + sc.server_compute_s[5])
    idle = costs.with_queues(sc, EDGE, 0.0, 0.0)
    np.testing.assert_array_equal(idle.latency_s, sc.total_s)



def test_queues_at_chosen_splits_equal_the_full_table():
    """``with_queues(split=...)`` on costs at chosen splits gives those columns of the full table, exactly."""
    P = np.array([[50.0], [400.0], [900.0]])
    sc = split_costs(SLM, EDGE, SERVER, **LINK, prompt_tokens=P, output_tokens=20)
    eb, sb = np.array([[0.0], [1.5], [4.0]]), np.array([[2.0], [0.5], [0.0]])
    full = costs.with_queues(sc, EDGE, eb, sb)
    L = SLM.num_layers
    split = np.array([[0, 7, L], [L, 1, 3], [12, 0, L - 1]])  # three candidate splits per request
    rows = np.arange(3)[:, None]
    parts = costs.request_parts(SLM, EDGE, SERVER, P, 20)
    chosen = costs.RequestParts(**{k: v[:, 0][rows, split][..., None] for k, v in vars(parts).items()})
    sc_chosen = costs.link_costs(chosen, EDGE, LINK["uplink_bps"], LINK["downlink_bps"], LINK["rtt_s"])
    qc = costs.with_queues(sc_chosen, EDGE, eb, sb, split=split[..., None], num_layers=L)
    for field in ("latency_s", "edge_wait_s", "server_wait_s", "edge_energy_j", "edge_backlog_s", "server_backlog_s"):
        np.testing.assert_array_equal(np.broadcast_to(getattr(qc, field), split[..., None].shape)[..., 0],
                                      getattr(full, field)[:, 0][rows, split], err_msg=field)
    with pytest.raises(ValueError, match="num_layers"):
        costs.with_queues(sc_chosen, EDGE, eb, sb, split=split[..., None])

def test_accuracy_penalty_shape():
    L = 32
    k = np.arange(L + 1)
    for snr in (-15.0, -8.0, 0.0, 20.0):
        pen = costs.accuracy_penalty(k, L, snr)
        assert pen[0] == 0 and pen[L] == 0
        assert np.all((pen[1:L] >= 0) & (pen[1:L] < 1)) and np.all(np.diff(pen[1:L]) <= 0)  # deeper hurts less
    worse = costs.accuracy_penalty(k, L, -12.0)
    better = costs.accuracy_penalty(k, L, 0.0)
    assert np.all(worse[1:L] > better[1:L])
    p16, p8, p4 = (costs.accuracy_penalty(5, L, 30.0, d) for d in ("float16", "int8", "int4"))
    assert p16 < p8 < p4
    # small losses read as relative perplexity increase: int8 at the input ~ +0.4% (SmoothQuant)
    assert costs.accuracy_penalty(1, 10_000, 60.0, "int8") == pytest.approx(0.004, rel=0.01)
    assert costs.erasure_probability(costs.ACCURACY_CURVE["erasure_snr50_db"]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="activation_dtype"):
        costs.accuracy_penalty(1, L, 0.0, "float32")


# --------------------------------------------------------------------------
# The affine split form (SplitModel): the same numbers as a split-by-split reference


def _two_group_model():
    """Llama-3.2-3B with its last 8 layers replaced by a wider group (like an MoE or a local/global mix)."""
    (g,) = SLM.layers
    wide = dataclasses.replace(g, count=8, params=g.params * 3, active_params=g.params * 2,
                               flops_per_token=g.flops_per_token * 2, kv_cache_bytes_per_token=g.kv_cache_bytes_per_token / 2)
    return dataclasses.replace(SLM, name="two-groups", layers=(dataclasses.replace(g, count=g.count - 8), wide))


def _reference_parts(model, edge, server, P, T, edge_run, server_run):
    """Each split's parts by summing the layers on each side, one split at a time."""
    e_pre, e_dec, e_lm = layer_times(model, edge, P, T, use_measured=False, run=edge_run)
    s_pre, s_dec, s_lm = layer_times(model, server, P, T, use_measured=False, run=server_run)
    wb = edge_run.weight_bytes
    per_layer_e = np.concatenate([np.full(g.count, (e_pre + e_dec)[i]) for i, g in enumerate(model.layers)])
    per_layer_s = np.concatenate([np.full(g.count, (s_pre + s_dec)[i]) for i, g in enumerate(model.layers)])
    weights = np.concatenate([np.full(g.count, g.params * wb) for g in model.layers])
    kv = np.concatenate([np.full(g.count, g.kv_cache_bytes_per_token) for g in model.layers])
    L = model.num_layers
    rows = []
    for k in range(L + 1):
        memory = weights[:k].sum() + (P + T) * kv[:k].sum() + (model.embedding_params * wb if k else 0.0)
        if k == L:
            memory += (model.lm_head_params + model.final_norm_params) * wb
        rows.append(dict(
            edge_compute_s=per_layer_e[:k].sum() + (e_lm if k == L else 0.0),
            server_compute_s=per_layer_s[k:].sum() + (s_lm if k < L else 0.0),
            uplink_token_bytes=P * costs.TOKEN_ID_BYTES if k == 0 else 0.0,
            uplink_hidden_bytes=(P + T - 1) * model.hidden_size * 2.0 if 0 < k < L else 0.0,
            downlink_bytes=T * costs.TOKEN_ID_BYTES if k < L else 0.0,
            round_trips=1.0 if k == 0 else (T if k < L else 0.0),
            edge_memory_bytes=memory))
    return {f: np.array([r[f] for r in rows]) for f in rows[0]}


@pytest.mark.parametrize("model", [SLM, _two_group_model()], ids=["one-group", "two-groups"])
@pytest.mark.parametrize("runs", [{}, {"dtype": "float16"}, {"edge_runtime": "llama.cpp", "edge_weight_format": "q4_0",
                                                             "server_runtime": "tensorrt-llm"}],
                         ids=["device-runs", "roofline", "chosen"])
def test_split_model_parts_match_a_split_by_split_reference(model, runs):
    sm = costs.SplitModel(model, EDGE, SERVER, use_measured=False, **runs)
    for P, T in [(16, 4), (300, 1), (2048, 512)]:
        parts = vars(sm.parts(P, T))
        for field, expected in _reference_parts(model, EDGE, SERVER, float(P), float(T), sm.edge_run,
                                                sm.server_run).items():
            np.testing.assert_allclose(parts[field], expected, rtol=1e-12, err_msg=field)
        assert np.array_equal(parts["feasible"], parts["edge_memory_bytes"] <= EDGE.usable_memory_bytes)


@pytest.mark.parametrize("model", [SLM, _two_group_model()], ids=["one-group", "two-groups"])
def test_link_costs_in_affine_form_expand_to_link_costs_at_every_split(model):
    sm = costs.SplitModel(model, EDGE, SERVER)
    rng = np.random.default_rng(0)
    P, T = rng.integers(1, 3000, 50).astype(float), rng.integers(1, 600, 50).astype(float)
    up, down, share = rng.uniform(1e6, 1e9, 50), rng.uniform(1e6, 1e9, 50), rng.uniform(0.1, 1.0, 50)
    form = costs.link_costs(sm.form_parts(P, T), EDGE, up, down, 0.02, server_share=share)
    direct = costs.link_costs(sm.parts(P, T), EDGE, up, down, 0.02, server_share=share)
    k = rng.integers(0, model.num_layers + 1, 50)
    for field in ("edge_compute_s", "uplink_s", "server_compute_s", "downlink_s", "round_trip_s", "total_s",
                  "edge_energy_j", "uplink_bytes"):
        expanded = sm.expand(getattr(form, field))
        np.testing.assert_allclose(expanded, getattr(direct, field), rtol=1e-12, atol=1e-300, err_msg=field)
        assert np.array_equal(sm.at(getattr(form, field), k), expanded[np.arange(50), k])  # identical numbers
        assert np.all(sm.upper_bound(getattr(form, field)) >= expanded.max(axis=-1) * (1 - 1e-12))


@pytest.mark.parametrize("model", [SLM, _two_group_model()], ids=["one-group", "two-groups"])
def test_last_split_within_counts_the_splits_that_fit(model):
    sm = costs.SplitModel(model, EDGE, SERVER)
    rng = np.random.default_rng(1)
    P, T = rng.integers(1, 8000, 2000).astype(float), rng.integers(1, 4000, 2000).astype(float)
    memory = sm.form_parts(P, T).edge_memory_bytes
    full = sm.expand(memory)
    exact = full[np.arange(2000), rng.integers(0, model.num_layers + 1, 2000)]  # limits on the boundaries
    for limit in (np.full(2000, EDGE.usable_memory_bytes), np.full(2000, 2e9), exact, np.nextafter(exact, 0),
                  np.full(2000, -1.0)):
        expected = (full <= limit[:, None]).sum(axis=-1) - 1
        np.testing.assert_array_equal(sm.last_split_within(memory, limit), expected)


def test_accuracy_penalty_is_penalty_from_loss_of_accuracy_loss():
    snr = np.linspace(-20, 30, 11)[:, None]
    k = np.arange(SLM.num_layers + 1)
    expected = costs.penalty_from_loss(k, SLM.num_layers, costs.accuracy_loss(snr, "int8"))
    np.testing.assert_array_equal(costs.accuracy_penalty(k, SLM.num_layers, snr, "int8"), expected)
    assert np.all(expected[:, [0, -1]] == 0) and np.all(expected[:, 1:-1] > 0)


@pytest.mark.parametrize("model, edge, server", [
    ("llama-3.2-3b", "jetson-orin-nano-8gb", "a100-80gb"),
    ("mixtral-8x7b", "jetson-agx-orin-64gb", "h100-sxm"),  # mixture of experts
    ("llama-3.2-1b", "ci-xeon-1thread", "ci-xeon-1thread"),  # measured profiles on both sides
])
def test_token_tables_give_the_parts_of_every_request(model, edge, server):
    split_model = costs.SplitModel(profiles.load_model(model), profiles.load_device(edge), profiles.load_device(server))
    by_prompt, by_context = split_model.token_tables(600, 150)
    rng = np.random.default_rng(0)
    P, T = rng.integers(1, 601, 400), rng.integers(1, 151, 400)
    combined = by_prompt[P] + by_context[P + T - 1] - by_context[P]
    form = split_model.form_parts(P, T)
    direct = np.stack([getattr(form, k) for k in costs.TABLE_FIELDS], axis=-2)
    np.testing.assert_allclose(combined, direct, rtol=1e-11, atol=1e-12 * np.abs(direct).max())
    fits = split_model.memory_fit_by_tokens(750)
    np.testing.assert_array_equal(fits[P + T], split_model.last_split_within(form.edge_memory_bytes,
                                                                              split_model.edge.usable_memory_bytes))
