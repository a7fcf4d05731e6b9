"""Routing-v0: API checkers, determinism, costs from the cost model, budget, info, real data."""

from __future__ import annotations

import pickle
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import offload_env  # noqa: F401  (registers the envs)
from agents.bandits import LinUCB, OracleRouter
from offload_env import costs, profiles
from offload_env.envs.routing import GPT4_1106_API, PoolMember, RoutingEnv
from offload_env.workload import HashedFeaturizer, OutcomeTable, load_routellm_dir

ENV_ID = "offload_env/Routing-v0"
MMLU_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "routellm_mmlu"
if ENV_ID not in gym.registry:  # until offload_env/__init__.py registers it
    gym.register(id=ENV_ID, entry_point="offload_env.envs.routing:RoutingEnv", max_episode_steps=1000)


def small_table(n=40, seed=0) -> OutcomeTable:
    rng = np.random.default_rng(seed)
    prompts = tuple(f"question {i}: what is {i} + {i * 7}?" for i in range(n))
    quality = (rng.random((n, 2)) < [0.6, 0.8]).astype(float)
    return OutcomeTable(prompts, ("mixtral-8x7b", "gpt-4-1106-preview"), quality, ("g",) * n)


@pytest.mark.parametrize("kwargs", [{}, {"cost_unit": "edge_energy_j", "budget": 2000.0},
                                    {"scenario": "mmlu-mixtral-gpt4", "budget": 0.01}])
def test_gymnasium_check_env(kwargs):
    check_env(gym.make(ENV_ID, **kwargs).unwrapped, skip_render_check=True)


def test_check_env_on_real_outcome_table_and_sb3_checker():
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    env = RoutingEnv("mmlu-mixtral-gpt4", workload=small_table())
    check_env(env, skip_render_check=True)
    sb3_checker.check_env(RoutingEnv(), warn=True)
    sb3_checker.check_env(RoutingEnv("mmlu-mixtral-gpt4", workload=small_table()), warn=True)


def rollout(env, steps, seed):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for t in range(steps):
        obs, reward, terminated, truncated, info = env.step(t % env.action_space.n)
        out += [obs, reward, info["latency_s"], info["outcomes"], info["oracle_model"]]
    return out


def test_same_seed_same_trajectory_and_pickling():
    a, b, c = rollout(RoutingEnv(), 600, 3), rollout(RoutingEnv(), 600, 3), rollout(RoutingEnv(), 600, 4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    env = RoutingEnv()
    env.reset(seed=5)
    clone = pickle.loads(pickle.dumps(env))
    for t in range(300):
        r1, r2 = env.step(t % 3), clone.step(t % 3)
        np.testing.assert_array_equal(r1[0], r2[0])
        assert r1[1] == r2[1]


def test_registered_with_a_time_limit():
    env = gym.make(ENV_ID)
    assert env.spec.max_episode_steps == 1000
    env.reset(seed=0)
    truncated = False
    for _ in range(1000):
        *_, truncated, _ = env.step(0)
    assert truncated


def test_costs_come_from_the_cost_model():
    env = RoutingEnv()
    env.reset(seed=1)
    _, _, _, _, info = env.step(0)  # the local SLM: the whole model on the edge device
    est = costs.estimate(profiles.load_model("qwen2.5-1.5b"), profiles.load_device("jetson-orin-nano-8gb"),
                         info["prompt_tokens"], info["output_tokens"], dtype=env.scenario.pool[0].dtype)
    assert info["latency_s"] == pytest.approx(float(est.total_s))
    assert info["edge_energy_j"] == pytest.approx(float(est.energy_j))
    assert info["usd"] == 0.0 and info["uplink_bytes"] == 0.0
    _, _, _, _, info = env.step(2)  # the cloud 70B: price from its profile, API formula in costs.py
    usd, _ = costs.api_call_costs(info["prompt_tokens"], info["output_tokens"], 0.88, 0.88)
    assert info["usd"] == pytest.approx(float(usd)) and info["cost"] == info["usd"]
    parts = info["edge_compute_s"] + info["uplink_s"] + info["server_compute_s"] + info["downlink_s"]
    assert info["latency_s"] == pytest.approx(parts + info["round_trip_s"])
    assert info["round_trip_s"] == pytest.approx(0.010 + 0.030)  # 5G + fiber backhaul base RTTs


def test_reward_and_privileged_info():
    env = RoutingEnv(cost_weight=100.0, overrun_weight=0.1, deadline_s=5.0)
    env.reset(seed=2)
    for t in range(50):
        oracle = env.oracle_action()
        _, reward, _, _, info = env.step(t % 3)
        j = info["model"]
        expected = info["quality"] - 100.0 * info["cost"] - 0.1 * max(info["latency_s"] - 5.0, 0.0)
        assert reward == pytest.approx(expected)
        assert info["rewards"][j] == pytest.approx(reward) and info["outcomes"][j] == info["quality"]
        assert info["oracle_model"] == oracle and info["oracle_reward"] == info["rewards"].max()
        assert info["deadline_met"] == (info["latency_s"] <= 5.0)


def test_cloud_latency_follows_the_load_process():
    env = RoutingEnv(cloud_load_levels=(0.0, 0.75), cloud_load_stay=0.9)
    env.reset(seed=0)
    rows = []
    for _ in range(2000):
        _, _, _, _, info = env.step(2)
        rows.append((info["cloud_load"], info["server_compute_s"] / info["output_tokens"]))
    load, per_token = np.array(rows).T
    assert set(np.unique(load)) == {0.0, 0.75}
    assert np.median(per_token[load == 0.75]) == pytest.approx(4 * np.median(per_token[load == 0.0]), rel=0.1)


def test_spent_budget_forces_the_cheapest_model():
    env = RoutingEnv(budget=0.002)
    obs, _ = env.reset(seed=0)
    forced = []
    for _ in range(200):
        obs, _, _, _, info = env.step(2)
        forced.append(info["forced"])
        if info["forced"]:
            assert info["model"] == int(np.argmin(info["costs"])) == 0
    assert not forced[0] and forced[-1] and obs[-1] == 0.0


def test_oracle_router_beats_fixed_models_and_linucb_learns():
    env = RoutingEnv()
    obs, _ = env.reset(seed=0)
    oracle = OracleRouter(env)
    agent = LinUCB(3, env.observation_space.shape[0], alpha=0.3)
    totals = {"oracle": 0.0, "linucb": 0.0}
    fixed = np.zeros(3)
    for _ in range(3000):
        arm = agent.act(obs)
        assert oracle.act(obs) == int(np.argmax(env._buf["reward"][env._ptr]))
        obs_next, reward, _, _, info = env.step(arm)
        agent.update(obs, arm, reward)
        totals["linucb"] += reward
        totals["oracle"] += info["oracle_reward"]
        fixed += info["rewards"]
        obs = obs_next
    assert totals["oracle"] > totals["linucb"] > fixed.max()


def test_api_member_and_scenario_validation():
    env = RoutingEnv(pool=(PoolMember("qwen2.5-1.5b", "jetson-orin-nano-8gb", "local"), GPT4_1106_API))
    env.reset(seed=0)
    _, _, _, _, info = env.step(1)
    assert info["usd"] == pytest.approx((info["prompt_tokens"] * 10 + info["output_tokens"] * 30) / 1e6)
    assert info["server_compute_s"] == pytest.approx(0.5 + 0.02 * (info["output_tokens"] - 1), rel=1e-6)
    with pytest.raises(ValueError, match="cost_unit"):
        RoutingEnv(cost_unit="euros")
    with pytest.raises(ValueError, match="does not fit"):
        RoutingEnv(pool=(PoolMember("qwen2.5-1.5b", "jetson-orin-nano-8gb", "local"),
                         PoolMember("llama-3.1-70b", "h100-sxm", "cloud")))
    with pytest.raises(ValueError, match="no published 'mmlu' score"):
        RoutingEnv(pool=(PoolMember("qwen2.5-1.5b", "jetson-orin-nano-8gb", "local"),
                         PoolMember("tinyllama-1.1b", "l4", "edge")))
    with pytest.raises(ValueError, match="tier"):
        RoutingEnv(pool=(PoolMember("qwen2.5-1.5b", "jetson-orin-nano-8gb", "space"), GPT4_1106_API))
    with pytest.raises(ValueError, match="action"):
        env.step(7)
    with pytest.raises(TypeError, match="unknown argument"):
        RoutingEnv(colour="red")


def test_one_pass_over_an_outcome_table_in_a_shuffled_order():
    table = small_table(300)
    env = RoutingEnv("mmlu-mixtral-gpt4", workload=table, features=HashedFeaturizer(16), block=64)
    env.reset(seed=0)
    seen, steps, terminated = [], 0, False
    while not terminated:
        _, _, terminated, _, info = env.step(0)
        seen.append(tuple(info["outcomes"]))
        steps += 1
    assert steps == 300
    assert sorted(seen) == sorted(map(tuple, table.quality))
    assert seen != [tuple(q) for q in table.quality]  # shuffled
    with pytest.raises(ValueError, match="not a column"):
        RoutingEnv(workload=table)  # the default pool's models are not in this table


def test_query_topic_is_the_current_querys_topic():
    env = gym.make(ENV_ID).unwrapped
    obs, _ = env.reset(seed=3)
    assert env.topic_names == tuple(f"topic_{t}" for t in range(8))
    for _ in range(300):  # across block refills: the built-in topic is the one-hot of the observation
        assert env.query_topic() == int(np.argmax(obs[:8]))
        obs, *_ = env.step(0)
    groups = tuple(f"subject_{i % 3}" for i in range(60))
    base = small_table(60)
    table = OutcomeTable(base.prompts, base.models, base.quality, groups)
    parts = [RoutingEnv("mmlu-mixtral-gpt4", workload=table, table_rows=rows, block=16)
             for rows in ((0, 0.1), (0.1, 1))]
    for env in parts:  # each part indexes the whole table's groups, so the parts agree
        assert env.topic_names == ("subject_0", "subject_1", "subject_2")
        env.reset(seed=0)
        for _ in range(len(env.table)):
            prompt = env.table.prompts[env._order[env._served_total]]
            assert env.topic_names[env.query_topic()] == groups[base.prompts.index(prompt)]
            env.step(0)
    with pytest.raises(gym.error.ResetNeeded):
        RoutingEnv().query_topic()


def test_real_mmlu_pass():
    if not MMLU_DIR.is_dir():
        pytest.skip(f"real MMLU data not found at {MMLU_DIR} (../shared/data/routellm_mmlu)")
    table = load_routellm_dir(MMLU_DIR, {"mistralai/Mixtral-8x7B-Instruct-v0.1": "mixtral-8x7b"}, "mmlu_*.csv")
    env = RoutingEnv("mmlu-mixtral-gpt4", workload=table)
    env.reset(seed=0)
    quality = []
    for _ in range(2000):
        _, _, _, _, info = env.step(1)
        quality.append(info["quality"])
    assert np.mean(quality) == pytest.approx(0.806, abs=0.03)


def test_api_call_costs_hand_case():
    usd, parts = costs.api_call_costs([100, 10], [11, 1], 2.0, 6.0, first_token_s=0.5, per_output_token_s=0.1)
    np.testing.assert_allclose(usd, [(100 * 2 + 11 * 6) / 1e6, (10 * 2 + 6) / 1e6])
    np.testing.assert_allclose(parts.server_compute_s[:, 0], [0.5 + 10 * 0.1, 0.5])
    np.testing.assert_allclose(parts.uplink_token_bytes[:, 0], [400, 40])
    sc = costs.link_costs(parts, profiles.load_device("jetson-orin-nano-8gb"), 8e6, 8e6, 0.02)
    np.testing.assert_allclose(sc.total_s[:, 0], [400 * 8 / 8e6 + 1.5 + 44 * 8 / 8e6 + 0.02,
                                                  40 * 8 / 8e6 + 0.5 + 4 * 8 / 8e6 + 0.02])
    with pytest.raises(ValueError, match="usd_per_million_output"):
        costs.api_call_costs(1, 1, 1.0, -1.0)


def write_model(tmp_path, edit) -> Path:
    import yaml

    data = yaml.safe_load(Path(profiles.load_model("qwen2.5-1.5b").path).read_text())
    edit(data)
    (tmp_path / "models").mkdir(exist_ok=True)
    (tmp_path / "models" / "qwen2.5-1.5b.yaml").write_text(yaml.safe_dump(data))
    return tmp_path


def test_profile_quality_and_price_fields(tmp_path):
    model = profiles.load_model("llama-3.1-70b")
    assert model.quality == {"mmlu": 0.793} and "quality.mmlu" in model.sources
    assert model.api_price_usd_per_million_tokens == {"input": 0.88, "output": 0.88}
    assert profiles.load_model("gpt-j-6b").quality == {}  # optional
    with pytest.raises(profiles.ProfileError, match=r"field 'quality.mmlu': expected a number in \[0, 1\]"):
        profiles.load_model("qwen2.5-1.5b", write_model(tmp_path, lambda d: d["quality"].update(mmlu=60.9)))
    with pytest.raises(profiles.ProfileError, match="field 'sources.quality.mmlu'"):
        profiles.load_model("qwen2.5-1.5b", write_model(tmp_path, lambda d: d["sources"].pop("quality.mmlu")))
    with pytest.raises(profiles.ProfileError, match="field 'api_price_usd_per_million_tokens.output'"):
        profiles.load_model("qwen2.5-1.5b", write_model(
            tmp_path, lambda d: d.update(api_price_usd_per_million_tokens={"input": 1.0})))
