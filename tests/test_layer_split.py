"""LayerSplit-v0: API checkers, determinism, vector env, oracle, baselines, scenario checks."""

from __future__ import annotations

import copy
import pickle
import statistics
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import offload_env  # noqa: F401  (registers the envs)
from agents.baselines import AllLocal, AllServer, Greedy, Oracle, RandomFeasible, evaluate
from offload_env import costs, profiles
from offload_env.envs import _layer_split_kernels as kernels
from offload_env.envs.layer_split import ORACLE_POWER_LEVELS, PRESETS, LayerSplitEnv, LayerSplitVectorEnv

ENV_ID = "offload_env/LayerSplit-v0"


def rollout(env, actions_from, steps, seed):
    obs, info = env.reset(seed=seed)
    out = [obs]
    for t in range(steps):
        obs, reward, terminated, truncated, info = env.step(actions_from(t, info))
        out += [obs, reward, info["latency_s"], info["oracle_split"]]
        if terminated or truncated:
            obs, info = env.reset()
    return out


@pytest.mark.parametrize("kwargs", [{}, {"continuous": True}, {"scenario": "pi5-l4-wifi6"},
                                    {"scenario": "phone-h100-lte", "min_split": 0}])
def test_gymnasium_check_env(kwargs):
    env = gym.make(ENV_ID, **kwargs)
    check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("continuous", [False, True])
def test_sb3_check_env(continuous):
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    sb3_checker.check_env(LayerSplitEnv(continuous=continuous), warn=True)


def test_make_without_import_in_a_fresh_process():
    code = ("import gymnasium as gym; env = gym.make('offload_env:offload_env/LayerSplit-v0'); "
            "obs, info = env.reset(seed=1); n = 0\n"
            "while True:\n"
            "    n += 1; obs, r, term, trunc, info = env.step(int(info['action_mask'].nonzero()[0][0]))\n"
            "    if term or trunc: break\n"
            "print(n, trunc, obs.shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["200", "True", "(9,)"]


def test_registration_is_idempotent():
    before = gym.registry[ENV_ID]
    offload_env._register_envs()
    assert gym.registry[ENV_ID] is before


@pytest.mark.parametrize("continuous", [False, True])
def test_same_seed_same_trajectory_and_pickling(continuous):
    def act(t, info):
        if continuous:
            return np.array([np.sin(t), np.cos(t), np.sin(2 * t)], dtype=np.float32)
        return t % 29

    a = rollout(gym.make(ENV_ID, continuous=continuous), act, 150, seed=3)
    b = rollout(gym.make(ENV_ID, continuous=continuous), act, 150, seed=3)
    c = rollout(gym.make(ENV_ID, continuous=continuous), act, 150, seed=4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    env = LayerSplitEnv(continuous=continuous)
    env.reset(seed=5)
    clone = pickle.loads(pickle.dumps(env))
    for t in range(20):
        r1 = env.step(act(t, None))
        r2 = clone.step(act(t, None))
        np.testing.assert_array_equal(r1[0], r2[0])
        assert r1[1] == r2[1]


@pytest.mark.parametrize("continuous, n, steps, requests, budget", [
    (False, 3, 70, 25, 300.0),
    (True, 3, 70, 25, 300.0),
    (False, 2, 330, 300, 1e6),  # the single env draws more than its first block, then starts a new episode
])
def test_vector_env_matches_single_envs_across_autoresets(continuous, n, steps, requests, budget):
    vec = LayerSplitVectorEnv(num_envs=n, continuous=continuous, episode_requests=requests, energy_budget_j=budget)
    singles = [LayerSplitEnv(continuous=continuous, episode_requests=requests, energy_budget_j=budget)
               for _ in range(n)]
    rng = np.random.default_rng(0)
    obs_v, _ = vec.reset(seed=11)
    obs_s = [env.reset(seed=11 + i)[0] for i, env in enumerate(singles)]
    np.testing.assert_array_equal(obs_v, np.stack(obs_s))
    done = np.zeros(n, dtype=bool)
    resets = 0
    for _ in range(steps):
        actions = (rng.uniform(-1, 1, (n, 3)).astype(np.float32) if continuous else rng.integers(0, 29, n))
        obs_v, rew_v, term_v, trunc_v, info_v = vec.step(actions)
        for i, env in enumerate(singles):
            if done[i]:
                o, _ = env.reset()
                resets += 1
                np.testing.assert_array_equal(obs_v[i], o)
                assert rew_v[i] == 0 and not term_v[i] and not trunc_v[i]
                continue
            o, r, te, tr, inf = env.step(actions[i])
            np.testing.assert_array_equal(obs_v[i], o)
            assert rew_v[i] == pytest.approx(r, rel=1e-12)
            assert (te, tr) == (term_v[i], trunc_v[i])
            for key, value in inf.items():
                assert info_v["_" + key][i] if key != "action_mask" else True
                if isinstance(value, (bool, int, np.bool_, np.integer, np.ndarray)):
                    np.testing.assert_array_equal(info_v[key][i], value, err_msg=key)
                else:
                    assert info_v[key][i] == pytest.approx(value, rel=1e-12, abs=1e-300), key
        done = term_v | trunc_v
    assert resets >= n  # autoreset happened and was checked


def test_make_vec_uses_the_native_vector_env():
    vec = gym.make_vec(ENV_ID, num_envs=8, vectorization_mode="vector_entry_point")
    assert isinstance(vec.unwrapped, LayerSplitVectorEnv)
    obs, info = vec.reset(seed=0)
    assert obs.shape == (8, 9) and info["action_mask"].shape == (8, 29)
    obs, rew, term, trunc, info = vec.step(vec.action_space.sample())
    assert vec.single_observation_space.contains(obs[0]) and rew.shape == (8,)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), actions=st.lists(st.integers(0, 40), min_size=1, max_size=60),
       scenario=st.sampled_from(list(PRESETS)))
def test_observations_stay_inside_the_documented_bounds(seed, actions, scenario):
    env = LayerSplitEnv(scenario)
    obs, info = env.reset(seed=seed)
    assert env.observation_space.contains(obs)
    for a in actions:
        # masked actions fall back, never crash (out-of-range ones are refused: test_env_hardening)
        obs, reward, terminated, truncated, info = env.step(min(a, env.action_space.n - 1))
        assert env.observation_space.contains(obs) and np.isfinite(reward)
        assert info["action_mask"].dtype == np.int8 and info["action_mask"].any()
        if terminated:
            obs, info = env.reset()


def _exhaustive(env: LayerSplitEnv):
    """Reward of every split from copies of the env (same true state)."""
    rewards = []
    for k in range(env.action_space.n):
        clone = copy.deepcopy(env)
        _, r, _, _, info = clone.step(k)
        rewards.append(r if not info["fallback"] else -np.inf)
    return np.array(rewards)


def test_oracle_equals_exhaustive_search_and_bounds_greedy():
    env = LayerSplitEnv()
    greedy, oracle = Greedy(), Oracle()
    obs, info = env.reset(seed=7)
    greedy.reset(env), oracle.reset(env)
    rng = np.random.default_rng(1)
    for _ in range(40):
        rewards = _exhaustive(env)
        best = int(np.argmax(rewards))
        assert env.oracle_action() == best
        g = greedy.act(obs, info)
        obs, r, term, trunc, info = env.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
        assert info["oracle_split"] == best and info["oracle_reward"] == pytest.approx(rewards[best])
        assert rewards[g] <= info["oracle_reward"] + 1e-12  # greedy never beats the oracle on this state
        assert r <= info["oracle_reward"] + 1e-12


def test_all_local_and_all_server_match_estimate_with_empty_queues():
    # Qwen2.5-0.5B fits the Orin Nano whole; min_split 0 allows all-server.
    env = LayerSplitEnv(model="qwen2.5-0.5b", min_split=0)
    obs, info = env.reset(seed=2)
    sim = env._sim
    P, T = sim.buf["prompt"][0], sim.buf["output"][0]
    s = env.scenario
    local = costs.estimate(sim.model, sim.edge, P, T, runtime=s.edge_runtime, weight_format=s.edge_weight_format)
    clone = copy.deepcopy(env)
    _, _, _, _, info_local = clone.step(AllLocal().act(obs, info))
    assert info_local["split"] == sim.L
    assert info_local["latency_s"] == pytest.approx(float(local.total_s))
    assert info_local["edge_energy_j"] == pytest.approx(float(local.energy_j))
    _, _, _, _, info_server = env.step(AllServer().act(obs, info))
    server = costs.estimate(sim.model, sim.server, P, T, runtime=s.server_runtime, weight_format=s.server_weight_format)
    assert info_server["split"] == 0 and info_server["edge_queue_s"] == info_server["server_queue_s"] == 0
    assert info_server["server_compute_s"] == pytest.approx(float(server.total_s))  # idle server at reset


def test_masked_action_falls_back_with_a_penalty():
    env = LayerSplitEnv()  # Llama-3.2-3B fits the Orin Nano whole only for short requests; privacy minimum 1
    seed = 0
    obs, info = env.reset(seed=seed)
    while info["action_mask"][-1]:  # a request too long for all 28 layers on the edge
        seed += 1
        obs, info = env.reset(seed=seed)
    assert not info["action_mask"][0] and not info["action_mask"][-1]
    clone = copy.deepcopy(env)
    _, r_bad, _, _, bad = env.step(env.action_space.n - 1)
    nearest = int(np.flatnonzero(info["action_mask"])[-1])
    _, r_ok, _, _, ok = clone.step(nearest)
    assert bad["fallback"] and bad["split"] == nearest and not ok["fallback"]
    assert r_bad == pytest.approx(r_ok - env.scenario.w_invalid)


def test_energy_budget_terminates_the_episode_with_a_penalty_per_dropped_request():
    env = LayerSplitEnv(energy_budget_j=20.0)
    obs, info = env.reset(seed=0)
    for t in range(200):
        before = copy.deepcopy(env)
        obs, r, terminated, truncated, info = env.step(AllLocal().act(obs, info))
        if terminated:
            break
    assert terminated and not truncated and obs[6] == 0.0 and t < 199
    assert info["dropped_requests"] == 200 - (t + 1)
    # the same request served with budget to spare: the only difference is the dropped requests' penalty
    before._sim.energy_left[0] += 1e6
    _, r_alive, term_alive, _, _ = before.step(info["split"])
    assert not term_alive
    assert r == pytest.approx(r_alive - env.scenario.w_dropped * (200 - (t + 1)))


def test_queues_build_up_when_requests_arrive_faster_than_served():
    env = LayerSplitEnv(arrival_rate_hz=50.0)
    obs, info = env.reset(seed=0)
    waits = []
    for _ in range(30):
        obs, r, te, tr, info = env.step(AllLocal().act(obs, info))
        waits.append(info["edge_queue_s"])
    assert waits[0] == 0 and np.mean(waits[10:]) > 0.5


def test_deeper_split_is_best_when_the_channel_is_bad():
    """The accuracy penalty pushes the oracle's split away from the input as the SNR drops."""
    L = 28
    good = costs.accuracy_penalty(np.arange(L + 1), L, 10.0)
    bad = costs.accuracy_penalty(np.arange(L + 1), L, -6.0)
    assert np.all(bad[1:-1] >= good[1:-1]) and np.all(np.diff(bad[1:-1]) < 0)
    assert good[0] == bad[0] == good[-1] == bad[-1] == 0


def test_oracle_is_not_degenerate_in_the_default_scenario():
    env = gym.make(ENV_ID)
    obs, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    choices = []
    for _ in range(1500):
        obs, r, te, tr, info = env.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
        choices.append(info["oracle_split"])
        if te or tr:
            obs, info = env.reset()
    hist = np.bincount(choices, minlength=29) / len(choices)
    assert hist.max() <= 0.60
    assert hist[1:-1].sum() >= 0.20


def test_baselines_evaluate_to_a_tidy_frame():
    make = lambda: gym.make(ENV_ID, max_episode_steps=30)  # noqa: E731
    frames = [evaluate(p, make, episodes=2, seed=0) for p in (AllLocal(), AllServer(), RandomFeasible(0),
                                                              Greedy(), Oracle())]
    table = __import__("pandas").concat(frames)
    assert set(table.columns) >= {"agent", "return", "mean_latency_s", "edge_energy_j", "deadline_miss_rate",
                                  "cost_ratio_to_oracle"}
    by = table.groupby("agent")["cost_ratio_to_oracle"].mean()
    assert by["myopic-oracle"] == pytest.approx(1.0)
    assert (by >= 1.0 - 1e-9).all()  # no policy beats the myopic oracle on its own trajectory... per step


def test_render_modes():
    env = LayerSplitEnv(render_mode="ansi")
    obs, info = env.reset(seed=0)
    env.step(3)
    text = env.render()
    assert "last split 3" in text and text.count("\n") == env.num_layers + 2
    env = LayerSplitEnv(render_mode="rgb_array")
    env.reset(seed=0)
    env.step(3)
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8


@pytest.mark.parametrize("kwargs, field", [
    ({"distance_m": (10.0, 5.0)}, "distance_m"),
    ({"arrival_rate_hz": 0}, "arrival_rate_hz"),
    ({"min_split": 99}, "min_split"),
    ({"model": "gpt-5"}, "unknown model"),
    ({"fading_correlation": 1.0}, "fading_correlation"),
    ({"scenario": "mars"}, "scenario"),
])
def test_bad_scenarios_fail_at_construction_naming_the_field(kwargs, field):
    with pytest.raises((ValueError, profiles.ProfileError), match=field):
        LayerSplitEnv(**kwargs)
    with pytest.raises(TypeError, match="unknown argument"):
        LayerSplitEnv(colour="red")


def test_episodes_read_their_generator_in_place_as_random_would():
    """An episode reads 4 + 10 per request of env.np_random (any bit generator), as .random() would, nothing else."""
    for bit_generator in (np.random.PCG64(11), np.random.MT19937(11), np.random.Philox(11)):
        env = LayerSplitEnv(energy_budget_j=300.0, episode_requests=40)
        env.np_random = np.random.Generator(bit_generator)
        twin = copy.deepcopy(env.np_random)
        env.reset()
        used, ends = 4 + 10, 0
        for t in range(120):  # across episodes ended early by the energy budget
            _, _, terminated, truncated, _ = env.step(t % 29)
            used += 10
            if terminated or truncated:
                ends += terminated
                env.reset()
                used += 4 + 10
        assert ends >= 2
        twin.random(used)
        state = copy.deepcopy(env.np_random)
        assert state.random() == twin.random()
    env = LayerSplitEnv()
    env.reset(seed=3)
    clone = copy.deepcopy(env)  # the copy draws from its own generator
    for _ in range(20):
        a, b = env.step(0), clone.step(0)
        np.testing.assert_array_equal(a[0], b[0])
    assert env.np_random.random() == clone.np_random.random()


def test_draw_numbers_pack_in_the_documented_order():
    parts = {name: np.arange(length) + 100 * j for j, (name, length) in enumerate(kernels.DRAW_NUMBERS)}
    packed = kernels.draw_numbers(**parts)
    np.testing.assert_array_equal(packed, np.concatenate(list(parts.values())))
    with pytest.raises(ValueError, match="'link': expected 11 values, got 3"):
        kernels.draw_numbers(**{**parts, "link": (1, 2, 3)})
    with pytest.raises(ValueError, match="unknown parts"):
        kernels.draw_numbers(**parts, colour=(1,))


def test_standard_normal_is_the_normal_quantile():
    """The kernels' normals: AS241 as in the standard library, finite and symmetric at the ends of [0, 1)."""
    grid = np.random.default_rng(0).random(2000).tolist() + [0.0, 2.0 ** -53, 0.02, 0.0749, 0.5, 0.9251, 1 - 2.0 ** -53]
    quantile = statistics.NormalDist().inv_cdf
    for u in grid:
        expected = quantile(u + 2.0 ** -54) if u + 2.0 ** -54 < 1.0 else -quantile(2.0 ** -54)
        assert kernels.standard_normal(u) == pytest.approx(expected, rel=1e-14, abs=1e-15)
        assert kernels._normal(u) == kernels.standard_normal(u)  # compiled as it is
    assert kernels.standard_normal(0.0) == -kernels.standard_normal(1 - 2.0 ** -53) < -8.0


@pytest.mark.parametrize("scenario", list(PRESETS))
def test_compiled_step_agrees_with_the_numpy_cost_model(scenario):
    """Rewards, costs and the oracle of the compiled step equal ``costs.link_costs`` + ``with_queues`` at each split."""
    env = LayerSplitEnv(scenario, arrival_rate_hz=1.0)  # queues build up
    obs, info = env.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(60):
        mask, sc, penalty, qc, rewards, _ = env._sim.evaluate()
        mask, sc, penalty, qc, rewards = mask[0], sc, penalty[0], qc, rewards[0]
        np.testing.assert_array_equal(mask, info["action_mask"])
        action = int(rng.integers(0, env.action_space.n))
        obs, r, terminated, truncated, info = env.step(action)
        k = info["split"]
        assert mask[k] and info["fallback"] == (k != action)
        assert r == pytest.approx(rewards[k] - env.scenario.w_invalid * info["fallback"], rel=1e-9, abs=1e-9)
        for key, field in (("latency_s", qc.latency_s), ("edge_energy_j", qc.edge_energy_j),
                           ("edge_queue_s", qc.edge_wait_s), ("server_queue_s", qc.server_wait_s)):
            assert info[key] == pytest.approx(field[0, k], rel=1e-9, abs=1e-12), key
        for key in ("edge_compute_s", "uplink_s", "server_compute_s", "downlink_s", "round_trip_s", "uplink_bytes"):
            assert info[key] == pytest.approx(getattr(sc, key)[0, k], rel=1e-9, abs=1e-12), key
        assert info["accuracy_penalty"] == pytest.approx(penalty[k], rel=1e-9, abs=1e-15)
        best = np.where(mask, rewards, -np.inf)
        assert info["oracle_reward"] == pytest.approx(best.max(), rel=1e-9)
        assert best[info["oracle_split"]] == pytest.approx(best.max(), rel=1e-9)
        if terminated or truncated:
            obs, info = env.reset()


@pytest.mark.parametrize("scenario", list(PRESETS))
def test_compiled_continuous_step_agrees_with_the_numpy_cost_model(scenario):
    """The continuous step's action mapping, costs and oracle equal ``_Simulator.evaluate`` (numpy, ``costs``)."""
    env = LayerSplitEnv(scenario, continuous=True, arrival_rate_hz=1.0)  # queues build up
    obs, info = env.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(60):
        action = rng.uniform(-1.2, 1.2, 3)  # out of the box too: clipped
        split, level, power = env._sim.decode_action(action)
        mask, sc, penalty, qc, rewards, (_, o_level, o_power, o_split) = env._sim.evaluate(power)
        oracle_action = env.oracle_action()
        obs, r, terminated, truncated, info = env.step(action)
        allowed = np.flatnonzero(mask[0])
        k, lv = info["split"], info["compression"]
        assert (info["requested_split"], lv) == (split[0], level[0])
        assert k == min(max(split[0], allowed[0]), allowed[-1]) and info["fallback"] == (k != split[0])
        assert info["tx_power_fraction"] == pytest.approx(power[0], rel=1e-15)
        pick = (0, lv, -1, k)  # the chosen power is the grid's last
        assert r == pytest.approx(rewards[pick] - env.scenario.w_invalid * info["fallback"], rel=1e-9, abs=1e-9)
        for key, field in (("latency_s", qc.latency_s), ("edge_energy_j", qc.edge_energy_j),
                           ("edge_queue_s", qc.edge_wait_s), ("server_queue_s", qc.server_wait_s)):
            assert info[key] == pytest.approx(field[pick], rel=1e-9, abs=1e-12), key
        for key in ("edge_compute_s", "uplink_s", "server_compute_s", "downlink_s", "round_trip_s", "uplink_bytes"):
            assert info[key] == pytest.approx(getattr(sc, key)[pick], rel=1e-9, abs=1e-12), key
        assert info["accuracy_penalty"] == pytest.approx(penalty[pick], rel=1e-9, abs=1e-15)
        grid = np.where(mask[0], rewards[0, :, :-1, :], -np.inf)  # the oracle's powers only
        assert info["oracle_reward"] == pytest.approx(grid.max(), rel=1e-9)
        assert (info["oracle_split"], info["oracle_compression"]) == (o_split[0], o_level[0])
        assert info["oracle_tx_power_fraction"] == ORACLE_POWER_LEVELS[o_power[0]]
        decoded = env._sim.decode_action(oracle_action)
        assert (decoded[0][0], decoded[1][0]) == (o_split[0], o_level[0])
        assert decoded[2][0] == pytest.approx(ORACLE_POWER_LEVELS[o_power[0]], rel=1e-6)
        if terminated or truncated:
            obs, info = env.reset()


@pytest.mark.parametrize("scenario", list(PRESETS))
def test_compiled_draw_agrees_with_channel_costs_and_workload(scenario):
    """Each drawn request's SNR, rates, accuracy loss, tokens and memory fit are those of the numpy modules."""
    env = LayerSplitVectorEnv(num_envs=4, scenario=scenario)
    env.reset(seed=2)
    sim, s = env._sim, env.scenario
    drawn = [sim.req.copy()]
    for _ in range(20):
        env.step(np.zeros(4, dtype=np.int64))
        drawn.append(sim.req.copy())
    b = dict(zip(kernels.REQUEST_COLUMNS, np.concatenate(drawn).T))
    snr = sim.link.uplink_snr(b["distance"], b["fading"])
    np.testing.assert_allclose(b["snr_db"], 10.0 * np.log10(snr), rtol=1e-12, atol=1e-12)
    up, down = sim.link.rates_from_uplink_snr(snr)
    np.testing.assert_allclose(b["uplink_bps"], up, rtol=1e-12)
    np.testing.assert_allclose(b["downlink_bps"], down, rtol=1e-12)
    np.testing.assert_allclose(b["loss"], costs.accuracy_loss(b["snr_db"]), rtol=1e-12, atol=1e-15)
    for name, spec in (("prompt", s.prompt_tokens), ("output", s.output_tokens)):
        assert np.all(b[name] == np.round(b[name])) and spec[2] <= b[name].min() and b[name].max() <= spec[3]
    fits = sim.split_model.last_split_within(sim.split_model.form_parts(b["prompt"], b["output"]).edge_memory_bytes,
                                             sim.edge.usable_memory_bytes)
    np.testing.assert_array_equal(b["last_split"], np.maximum(fits, s.min_split))
    assert np.all(np.isin(np.round(1.0 - b["share"], 12), np.round(s.server_load_levels, 12)))
    lo, hi = s.distance_m
    assert np.all((b["distance"] >= lo) & (b["distance"] <= hi)) and np.all(b["dt"] > 0)


@pytest.mark.parametrize("estimate_of, column", [("previous", None), ("current", "snr_db")])
def test_the_snr_estimate_is_of_the_previous_or_the_current_request(estimate_of, column):
    """Without estimate noise the observed SNR is exactly the previous request's or this one's."""
    env = LayerSplitEnv(channel_estimate_noise_db=0.0, channel_estimate_of=estimate_of)
    obs, _ = env.reset(seed=5)
    scale = env._sim.obs_scales[0]
    previous = None
    for _ in range(30):
        true_db = float(env._sim.buf["snr_db"][0])
        want = true_db if column else previous
        if want is not None:
            assert obs[0] == pytest.approx(np.clip(want / scale, -2.0, 3.0), abs=1e-6)
        previous = true_db
        obs, *_ = env.step(1)


def test_channel_estimate_of_is_checked():
    with pytest.raises(ValueError, match="'channel_estimate_of': expected 'previous' or 'current', got 'future'"):
        LayerSplitEnv(channel_estimate_of="future")
