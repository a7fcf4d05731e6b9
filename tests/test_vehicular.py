"""Vehicular ParallelEnv: PettingZoo API tests, determinism, contention, masking, baselines, SUMO."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pettingzoo")
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test  # noqa: E402

from agents.vehicular_baselines import (  # noqa: E402
    VehicularGreedy,
    evaluate_vehicular,
    per_episode,
    vehicular_baselines,
)
from offload_env import costs, mobility, profiles, vehicular  # noqa: E402
from offload_env.channel import LinkModel, shared_rate_bps  # noqa: E402

#: Identical tasks for every vehicle (zero spread), so expected costs can be computed by hand.
FIXED_TASKS = {"prompt_tokens": (256.0, 0.0, 16, 2048), "output_tokens": (32.0, 0.0, 4, 512),
               "deadline_s": (5.0, 5.0)}


def parked_trace(tmp_path, points):
    """An FCD file where vehicle i stands still at ``points[i]``."""
    rows = "".join(f'<vehicle id="v{i}" x="{x}" y="{y}" speed="0" angle="0"/>' for i, (x, y) in enumerate(points))
    path = tmp_path / "parked.xml"
    path.write_text(f'<fcd-export><timestep time="0">{rows}</timestep><timestep time="1">{rows}</timestep>'
                    "</fcd-export>")
    return str(path)


@pytest.mark.parametrize("kwargs", [{}, {"continuous": True}, {"road": "grid", "num_vehicles": 5},
                                    {"team_reward_weight": 0.5, "num_rsus": 1},
                                    {"broadcast_intents": True, "difference_reward": True, "num_vehicles": 6}])
def test_parallel_api(kwargs):
    parallel_api_test(vehicular.parallel_env(max_cycles=60, **kwargs), num_cycles=60)


@pytest.mark.parametrize("kwargs", [{}, {"continuous": True}])
def test_parallel_seed(kwargs):
    parallel_seed_test(lambda: vehicular.parallel_env(**kwargs), num_cycles=60)


@pytest.mark.parametrize("kwargs", [{}, {"continuous": True, "road": "grid"}])
def test_aec_api(kwargs):
    api_test(vehicular.env(max_cycles=40, **kwargs), num_cycles=40)


def rollout(env, seed, steps=30):
    obs, infos = env.reset(seed=seed)
    rng = np.random.default_rng(0)
    out = [obs]
    for _ in range(steps):
        actions = {a: int(rng.integers(env.num_actions)) for a in env.agents}
        obs, rewards, _, _, infos = env.step(actions)
        out.append((obs, rewards, {a: {k: v for k, v in i.items() if k != "action_mask"} for a, i in infos.items()}))
    return out


def test_same_seed_same_trajectories():
    a = rollout(vehicular.parallel_env(), 7)
    b = rollout(vehicular.parallel_env(), 7)
    c = rollout(vehicular.parallel_env(), 8)
    for x, y in zip(a[1:], b[1:]):
        for agent in x[0]:
            np.testing.assert_array_equal(x[0][agent], y[0][agent])
        assert x[1] == y[1] and x[2] == y[2]
    assert any(x[1] != y[1] for x, y in zip(a[1:], c[1:]))


def test_spaces_are_built_once_and_state_fits():
    env = vehicular.parallel_env(num_vehicles=4)
    assert env.observation_space("vehicle_3") is env.observation_space("vehicle_3")
    assert env.action_space("vehicle_0") is env.action_space("vehicle_0")
    assert env.possible_agents == [f"vehicle_{i}" for i in range(4)]
    env.reset(seed=0)
    assert env.state_space.contains(env.state())
    obs, *_ = env.step({a: 0 for a in env.agents})
    assert all(env.observation_space(a).contains(o) for a, o in obs.items())


def contention_env(tmp_path, n):
    """n vehicles parked 30 m from RSU 0; RSU 1 far away; deterministic channel and tasks."""
    points = [(100.0, 0.0)] * n
    return vehicular.parallel_env(num_vehicles=n, num_rsus=2, road="trace", trace_path=parked_trace(tmp_path, points),
                                  rsu_positions=((100.0, 30.0), (5000.0, 30.0)), fading=False, **FIXED_TASKS)


@pytest.mark.parametrize("split_index", [0, 2])
def test_contention_follows_the_sharing_rule(tmp_path, split_index):
    link = LinkModel.from_profile(profiles.load_link("c-v2x"))
    rate = float(link.uplink_rate_bps(30.0))
    model = profiles.load_model("llama-3.2-1b")
    parts = costs.request_parts(model, profiles.load_device("jetson-agx-orin-64gb"), profiles.load_device("l4"),
                                256, 32, edge_weight_format="f16", server_weight_format="f16")  # the env's format
    uplinks = []
    for n in (1, 2, 4):
        env = contention_env(tmp_path, n)
        env.reset(seed=0)
        action = env.action_of(1, split_index)  # RSU 0
        k = env.split_points[split_index]
        _, _, _, _, infos = env.step({a: action for a in env.agents})
        up = np.array([infos[a]["uplink_s"] for a in env.possible_agents])
        gpu = np.array([infos[a]["server_compute_s"] for a in env.possible_agents])
        # equal time share of the RSU's channel: each gets rate / n
        expected_up = infos["vehicle_0"]["uplink_bytes"] * 8.0 / (rate / n)
        np.testing.assert_allclose(up, expected_up, rtol=1e-9)
        # processor sharing of the RSU's GPU (capacity 1 task): n times the full-speed compute
        np.testing.assert_allclose(gpu, n * parts.server_compute_s[k], rtol=1e-9)
        assert all(infos[a]["rsu"] == 0 and not infos[a]["fallback"] for a in env.possible_agents)
        uplinks.append(up)
    assert np.all(uplinks[0][0] < uplinks[1]) and np.all(uplinks[1][0] < uplinks[2])


def test_shared_rate_bps():
    np.testing.assert_allclose(shared_rate_bps(100.0, 4), 25.0)
    np.testing.assert_allclose(shared_rate_bps(100.0, 1, relay_rate_bps=100.0, relay_sharers=3), 25.0)
    np.testing.assert_allclose(shared_rate_bps([100.0, 50.0], [2, 1]), [50.0, 50.0])
    with pytest.raises(ValueError, match="sharers"):
        shared_rate_bps(100.0, 0)
    with pytest.raises(ValueError, match="rate_bps"):
        shared_rate_bps(0.0, 1)


def test_out_of_range_rsu_is_masked_and_falls_back(tmp_path):
    env = contention_env(tmp_path, 2)
    _, infos = env.reset(seed=0)
    far = env.action_of(2, 0)  # RSU 1, 4.9 km away
    mask = infos["vehicle_0"]["action_mask"]
    assert mask[env.action_of(1, 0)] and not mask[far]
    _, rewards, _, _, infos = env.step({"vehicle_0": far, "vehicle_1": 0})
    assert infos["vehicle_0"]["fallback"] and infos["vehicle_0"]["target"] == 0 and infos["vehicle_0"]["rsu"] == -1
    assert not infos["vehicle_1"]["fallback"]
    # the same task served locally without the fallback penalty differs by w_invalid exactly
    assert rewards["vehicle_0"] == pytest.approx(rewards["vehicle_1"] - env.scenario.w_invalid)


def test_missing_and_non_finite_actions_fall_back():
    env = vehicular.parallel_env(num_vehicles=3)
    env.reset(seed=0)
    _, _, _, _, infos = env.step({"vehicle_0": None})  # vehicle_1 and vehicle_2 missing
    assert all(infos[a]["fallback"] for a in env.possible_agents)
    env.reset(seed=0)
    for bad in (999, "x"):  # out of the action space: refused (test_env_hardening)
        with pytest.raises((TypeError, ValueError), match=r"actions\['vehicle_1'\]"):
            env.step({"vehicle_0": 0, "vehicle_1": bad})
    cont = vehicular.parallel_env(num_vehicles=2, continuous=True)
    _, infos = cont.reset(seed=0)
    assert "target_mask" in infos["vehicle_0"] and "split_mask" in infos["vehicle_0"]
    _, _, _, _, infos = cont.step({"vehicle_0": np.full(7, np.nan), "vehicle_1": np.zeros(7)})
    assert infos["vehicle_0"]["fallback"] and not infos["vehicle_1"]["fallback"]


def test_team_reward_mixing():
    own = vehicular.parallel_env(team_reward_weight=0.0)
    team = vehicular.parallel_env(team_reward_weight=0.25)
    for env in (own, team):
        env.reset(seed=3)
    actions = {a: i % own.num_actions for i, a in enumerate(own.possible_agents)}
    _, r_own, _, _, infos = own.step(actions)
    _, r_team, _, _, _ = team.step(actions)
    mean = np.mean(list(r_own.values()))
    for a in own.possible_agents:
        assert r_own[a] == pytest.approx(infos[a]["reward_own"])
        assert r_team[a] == pytest.approx(0.75 * r_own[a] + 0.25 * mean)


def test_difference_reward_adds_what_a_vehicle_did_to_the_others():
    """Paid = own + sum over the others of (their reward with its task as chosen - with it run locally), the
    others' rewards by the cost model: ``joint_rewards`` (no fading, full power) prices both."""
    env = vehicular.parallel_env(num_vehicles=8, difference_reward=True, fading=False)
    _, infos = env.reset(seed=1)
    rng, N, effects = np.random.default_rng(0), env.N, []
    for _ in range(8):
        actions = {a: int(rng.choice(np.flatnonzero(infos[a]["action_mask"]))) for a in env.agents}
        joint = np.array([actions[a] for a in env.possible_agents])
        priced = env.joint_rewards(np.stack([joint] + [np.where(np.arange(N) == m, 0, joint) for m in range(N)], 1))
        effect = priced[:, :1] - priced[:, 1:]
        effect[np.arange(N), np.arange(N)] = 0.0
        _, rewards, _, _, infos = env.step(actions)
        own = np.array([infos[a]["reward_own"] for a in env.possible_agents])
        paid = np.array([rewards[a] for a in env.possible_agents])
        np.testing.assert_allclose(paid - own, effect.sum(axis=0), atol=1e-9)
        effects.append(effect.sum(axis=0))
    assert np.min(effects) < -0.01 and np.max(effects) <= 1e-12  # sharing only slows the others down


def test_evaluation_reports_the_own_return_whatever_is_paid():
    frames = [evaluate_vehicular(VehicularGreedy(), lambda kw=kw: vehicular.parallel_env(max_cycles=20, **kw),
                                 episodes=2, seed=5)
              for kw in ({}, {"team_reward_weight": 0.7}, {"difference_reward": True})]
    for frame in frames[1:]:
        np.testing.assert_allclose(frame["return"].to_numpy(), frames[0]["return"].to_numpy())


def test_infos_carry_the_cost_breakdown():
    env = vehicular.parallel_env()
    env.reset(seed=0)
    _, _, _, _, infos = env.step({a: 0 for a in env.agents})
    info = infos["vehicle_0"]
    for key in vehicular.INFO_KEYS + ("deadline_met", "target", "split", "handover", "failed", "action_mask"):
        assert key in info
    parts = (info["edge_wait_s"] + info["server_wait_s"] + info["edge_compute_s"] + info["uplink_s"]
             + info["server_compute_s"] + info["downlink_s"] + info["round_trip_s"] + info["handover_s"])
    assert info["latency_s"] == pytest.approx(parts)
    assert info["deadline_met"] == (info["latency_s"] <= info["deadline_s"])


def test_episode_truncates_at_max_cycles():
    env = vehicular.parallel_env(max_cycles=3)
    env.reset(seed=0)
    for t in range(3):
        _, _, terms, truncs, _ = env.step({a: 0 for a in env.agents})
    assert all(truncs.values()) and not any(terms.values()) and env.agents == []


@pytest.mark.parametrize("field, value", [("num_vehicles", 0), ("road", "autobahn"), ("rsu_range_m", -1.0),
                                          ("split_fractions", (1.0,)), ("team_reward_weight", 2.0),
                                          ("rsu_positions", ((0.0, 0.0),))])
def test_scenario_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"'{field}'"):
        vehicular.parallel_env(**{field: value})


def test_unknown_argument_lists_the_fields():
    with pytest.raises(TypeError, match="num_vehicles"):
        vehicular.parallel_env(vehicles=3)


def test_render_rgb_array():
    for road in ("highway", "grid"):
        env = vehicular.parallel_env(render_mode="rgb_array", road=road)
        env.reset(seed=0)
        env.step({a: 0 for a in env.agents})
        frame = env.render()
        assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8


def test_baselines_pick_allowed_actions_and_evaluate_to_a_frame():
    make = lambda: vehicular.parallel_env(num_vehicles=6, max_cycles=15)  # noqa: E731
    frames = [evaluate_vehicular(p, make, episodes=2, seed=1) for p in vehicular_baselines(seed=0)]
    for frame in frames:
        assert len(frame) == 2 * 6 and (frame["fallback_rate"] == 0).all()
        assert set(frame["vehicle"]) == {f"vehicle_{i}" for i in range(6)}
    by_name = {f["agent"].iloc[0]: f for f in frames}
    assert (by_name["all-local"]["share_local"] == 1).all()
    assert by_name["all-cloud"]["share_cloud"].mean() > 0.5
    episodes = per_episode(by_name["greedy"])
    assert len(episodes) == 2 and "team_return" in episodes


def test_greedy_avoids_a_crowded_rsu(tmp_path):
    env = contention_env(tmp_path, 6)
    env.reset(seed=0)
    env.step({a: env.action_of(1, 0) for a in env.agents})  # everyone on RSU 0: broadcast load 6
    crowded = env.predicted_rewards()[0, env.action_of(1, 0)]
    env.reset(seed=0)
    alone = env.predicted_rewards()[0, env.action_of(1, 0)]
    assert crowded < alone
    greedy = VehicularGreedy()
    greedy.reset(env)
    _, infos = env.reset(seed=0)
    assert set(greedy.act({a: None for a in env.agents}, infos)) == set(env.agents)


def test_broadcast_intents_append_what_the_others_intend():
    """With ``broadcast_intents``, each observation ends with the others' greedy intents per RSU and the cloud
    and their intended RSU compute; the rest of the observation is the env's without intents."""
    kwargs = {"num_vehicles": 8, "step_s": 0.5}  # a short step: the RSU backlogs carry the intended work
    plain, told = vehicular.parallel_env(**kwargs), vehicular.parallel_env(broadcast_intents=True, **kwargs)
    N, R = told.N, told.R
    assert plain.obs_dim == 9 + 4 * R and told.obs_dim == 10 + 6 * R
    assert told.observation_names[:plain.obs_dim] == plain.observation_names
    assert told.observation_names[plain.obs_dim:plain.obs_dim + R + 1] == (
        *[f"rsu_{j}_intents" for j in range(R)], "cloud_intents")
    obs_plain, _ = plain.reset(seed=4)
    obs, infos = told.reset(seed=4)
    greedy = VehicularGreedy()
    greedy.reset(told)
    queued = 0
    for _ in range(12):
        for a in told.agents:
            np.testing.assert_array_equal(obs[a][:plain.obs_dim], obs_plain[a])
        tasks, work = told.others_intents()
        x = np.stack([obs[a] for a in told.possible_agents])
        sl = told.obs_slices
        np.testing.assert_allclose(x[:, sl["rsu_intents"]], tasks[:, :R] / N, rtol=1e-6)
        np.testing.assert_allclose(x[:, sl["cloud_intents"]], tasks[:, R] / N, rtol=1e-6)
        np.testing.assert_allclose(x[:, sl["rsu_intent_work"]], np.minimum(work / 8.0, 10.0), rtol=1e-5)
        # every vehicle is counted by the N - 1 others: the totals are what greedy (the intents) sends
        actions = greedy.act(obs, infos)
        targets = told.action_target[[actions[a] for a in told.possible_agents]]
        intended = np.bincount(targets, minlength=R + 2)[1:]
        np.testing.assert_allclose(tasks.sum(axis=0) / (N - 1), intended)
        rsu_work = work.sum(axis=0) / (N - 1)
        before = told.rsu_backlog.copy()
        obs, _, _, _, infos = told.step(actions)
        obs_plain, _, _, _, _ = plain.step(actions)
        np.testing.assert_array_equal(told.rsu_tasks, intended[:R])  # the intents, served
        assert told.cloud_tasks == intended[R]
        # the GPU backlogs grow by the intended compute (work conserving, drained by step_s)
        np.testing.assert_allclose(told.rsu_backlog, np.maximum(before + rsu_work - 0.5, 0.0), atol=1e-9)
        queued += int((told.rsu_backlog > 0).sum())
    assert queued > 0  # the backlog check above saw work


def _sumo_available() -> bool:
    try:
        mobility.sumo_home()
        return True
    except RuntimeError:
        return False


@pytest.mark.skipif(not _sumo_available(), reason="SUMO (extra 'sumo': eclipse-sumo) not installed")
def test_sumo_grid_drives_a_full_episode(tmp_path):
    fcd = mobility.generate_sumo_grid(tmp_path, grid_size=3, num_vehicles=20, duration_s=200.0, seed=2)
    env = vehicular.parallel_env(road="trace", trace_path=str(fcd), num_vehicles=20, max_cycles=40, step_s=5.0)
    parallel_api_test(env, num_cycles=40)
    frame = evaluate_vehicular(vehicular_baselines()[2], lambda: env, episodes=1)
    assert len(frame) == 20 and (frame["steps"] == 40).all()
    assert frame["share_rsu"].mean() > 0.5  # the 3 RSUs cover the 400 m grid


def test_registered_id_builds_the_parallel_env():
    import offload_env

    env = offload_env.make_parallel("offload_env/Vehicular-v0", num_vehicles=3, max_cycles=5)
    assert isinstance(env, vehicular.VehicularParallelEnv) and len(env.possible_agents) == 3
    assert offload_env.is_parallel_env("offload_env/Vehicular-v0")
    assert not offload_env.is_parallel_env("offload_env/LayerSplit-v0")
    parallel_api_test(offload_env.make_parallel("offload_env/Vehicular-v0", num_vehicles=3, max_cycles=5),
                      num_cycles=5)
    with pytest.raises(ValueError, match="^env_id: expected one of offload_env/Vehicular-v0, got 'Vehicular'"):
        offload_env.make_parallel("Vehicular")
