"""The envs' boundary: bad arguments and actions fail with one message naming them; fallbacks stay finite."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import offload_env
from offload_env import vehicular
from offload_env.envs import _layer_split_kernels as kernels
from offload_env.envs.layer_split import LayerSplitEnv, LayerSplitVectorEnv
from offload_env.envs.routing import GPT4_1106_API, PoolMember, RoutingEnv, RoutingVectorEnv

LAYERS = 28  # llama-3.2-3b, the LayerSplit default


# ---------------------------------------------------------------- 1. vector env action shapes

@pytest.mark.parametrize("actions", [np.full(4096, 5), np.array([5]), np.full((8, 1), 5), np.full(8, 5.0),
                                     [5] * 7, [5] * 9, "5", np.full(8, 5, dtype=object), [[1, 2], [3]]])
def test_vector_step_refuses_a_wrong_number_shape_or_dtype_of_actions(actions):
    env = LayerSplitVectorEnv(8)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"^actions: expected integers of shape \(8,\)"):
        env.step(actions)
    obs, *_ = env.step(np.full(8, 5))  # nothing stepped before the refusal
    assert obs.shape == (8, 9)


@pytest.mark.parametrize("bad", [29, -1, 100])
def test_vector_step_refuses_actions_out_of_range(bad):
    env = LayerSplitVectorEnv(8)
    env.reset(seed=0)
    actions = np.full(8, 5)
    actions[3] = bad
    with pytest.raises(ValueError, match=rf"^actions: expected integers in \[0, 28\], got actions\[3\] = {bad}$"):
        env.step(actions)


def test_vector_step_takes_lists_and_any_integer_dtype():
    env = LayerSplitVectorEnv(4)
    env.reset(seed=0)
    for actions in ([5, 6, 7, 8], np.array([5, 6, 7, 8], dtype=np.int32), np.array([5, 6, 7, 8], dtype=np.uint8)):
        _, _, _, _, infos = env.step(actions)
        np.testing.assert_array_equal(infos["requested_split"], [5, 6, 7, 8])


@pytest.mark.parametrize("actions", [np.zeros(8), np.zeros((8, 2)), np.zeros((4, 3)), np.zeros(24),
                                     np.full((8, 3), "a"), np.zeros((8, 3), dtype=complex)])
def test_continuous_vector_step_refuses_a_wrong_shape_or_dtype(actions):
    env = LayerSplitVectorEnv(8, continuous=True)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"^actions: expected numbers of shape \(8, 3\)"):
        env.step(actions)


# ---------------------------------------------------------------- 2. non-finite continuous actions

@pytest.mark.parametrize("bad", [[0.0, 0.0, np.nan], [np.nan] * 3, [np.inf, 0.0, 0.0], [0.0, -np.inf, 0.0]])
def test_non_finite_continuous_action_is_the_documented_penalised_fallback(bad):
    env, twin = LayerSplitEnv(continuous=True), LayerSplitEnv(continuous=True)
    env.reset(seed=4)
    twin.reset(seed=4)
    w = env.scenario.w_invalid
    for t in range(30):
        obs, r, terminated, truncated, info = env.step(bad if t % 3 == 0 else [0.1, 0.0, 0.5])
        obs2, r2, _, _, info2 = twin.step(kernels.NON_FINITE_ACTION if t % 3 == 0 else [0.1, 0.0, 0.5])
        assert np.isfinite(obs).all() and env.observation_space.contains(obs) and np.isfinite(r)
        if t % 3 == 0:
            assert info["fallback"] and info["requested_split"] == -1
            assert (info["split"], info["compression"], info["tx_power_fraction"]) == (
                info2["split"], 0, pytest.approx(1.0))
            assert r == pytest.approx(r2 - w * (not info2["fallback"]), rel=1e-12)
        np.testing.assert_allclose(obs, obs2)
        if terminated or truncated:
            break


def test_non_finite_rows_of_the_continuous_vector_env_fall_back_alone():
    env = LayerSplitVectorEnv(4, continuous=True)
    env.reset(seed=0)
    actions = np.zeros((4, 3))
    actions[1, 2] = np.nan
    actions[3] = np.inf
    obs, rewards, _, _, infos = env.step(actions)
    assert np.isfinite(obs).all() and np.isfinite(rewards).all()
    np.testing.assert_array_equal(infos["fallback"][[1, 3]], [True, True])
    np.testing.assert_array_equal(infos["requested_split"][[1, 3]], [-1, -1])
    assert infos["requested_split"][0] == LAYERS // 2


# ---------------------------------------------------------------- 3. non-finite scenario values

@pytest.mark.parametrize("make, field, value", [
    (LayerSplitEnv, "energy_budget_j", np.inf), (LayerSplitEnv, "speed_mps", np.nan),
    (LayerSplitEnv, "distance_m", (30.0, np.inf)), (LayerSplitEnv, "server_load_levels", (0.0, np.nan)),
    (LayerSplitEnv, "w_dropped", 1e400), (LayerSplitEnv, "w_latency", 10 ** 400),
    (RoutingEnv, "overrun_weight", np.inf), (RoutingEnv, "cost_weight", np.nan), (RoutingEnv, "budget", np.inf),
    (vehicular.parallel_env, "w_latency", np.nan), (vehicular.parallel_env, "speed_mps", (np.inf, np.inf)),
    (vehicular.parallel_env, "rsu_admission_backlog_s", np.nan),
])
def test_non_finite_scenario_values_are_refused_naming_the_field(make, field, value):
    with pytest.raises(ValueError, match=rf"scenario field '{field}': expected .*(finite|not NaN)"):
        make(**{field: value})


def test_inf_is_allowed_where_documented():
    env = vehicular.parallel_env(num_vehicles=2, rsu_admission_backlog_s=np.inf)
    env.reset(seed=0)
    assert env.admission_backlog_s == np.inf


# ---------------------------------------------------------------- 4. bools, ints, discrete actions, PettingZoo dicts

@pytest.mark.parametrize("make", [lambda **kw: gym.make("offload_env/LayerSplit-v0", **kw), LayerSplitEnv,
                                  LayerSplitVectorEnv, vehicular.parallel_env])
@pytest.mark.parametrize("value", ["false", "True", 1, 0.0, None])
def test_continuous_must_be_a_bool(make, value):
    with pytest.raises(TypeError, match=r"continuous: expected True or False"):
        make(continuous=value)


@pytest.mark.parametrize("make, field, value", [
    (LayerSplitEnv, "min_split", 1.5), (LayerSplitEnv, "min_split", True), (LayerSplitEnv, "episode_requests", 2.0),
    (LayerSplitEnv, "prompt_tokens", (256.0, 0.8, 16.5, 2048)),
    (RoutingEnv, "n_topics", 2.5), (RoutingEnv, "structure_seed", False),
    (vehicular.parallel_env, "max_cycles", 2.5), (vehicular.parallel_env, "lanes_per_direction", 1.5),
    (vehicular.parallel_env, "num_vehicles", True), (vehicular.parallel_env, "fading", "no"),
])
def test_integer_and_bool_fields_refuse_other_types(make, field, value):
    with pytest.raises(TypeError, match=rf"scenario field '{field}': expected "):
        make(**{field: value})


def test_integer_fields_take_numpy_integers_and_float_fields_ints():
    env = vehicular.parallel_env(num_vehicles=np.int64(2), max_cycles=np.int32(3), w_deadline_miss=2 ** 63)
    env.reset(seed=0)
    assert env.N == 2 and env.max_cycles == 3 and type(env.scenario.num_vehicles) is int
    assert type(env.scenario.w_deadline_miss) is float  # numbers as annotated: no huge int reaches numpy
    _, rewards, _, _, _ = env.step({a: 0 for a in env.agents})
    assert np.isfinite(list(rewards.values())).all()
    split = LayerSplitEnv(min_split=np.int16(2), distance_m=(30, 300))
    split.reset(seed=0)
    assert split.scenario.distance_m == (30.0, 300.0) and type(split.scenario.distance_m[0]) is float


@pytest.mark.parametrize("action, error", [(1.7, TypeError), ("3", TypeError), (True, TypeError), (3.0, TypeError),
                                           (np.array([5]), TypeError), (np.array(5.0), TypeError), (None, TypeError),
                                           (29, ValueError), (100, ValueError), (-1, ValueError)])
def test_discrete_actions_outside_the_action_space_are_refused(action, error):
    env = LayerSplitEnv()
    env.reset(seed=0)
    with pytest.raises(error, match=r"^action: expected an integer in \[0, 28\], got "):
        env.step(action)
    routing = RoutingEnv()
    routing.reset(seed=0)
    with pytest.raises((TypeError, ValueError), match=r"^action: expected an integer in \[0, 2\], got "):
        routing.step(action)


@pytest.mark.parametrize("action", [5, np.int64(5), np.int8(5), np.array(5), np.array(5, dtype=np.uint16)])
def test_discrete_actions_take_python_and_numpy_integers(action):
    env = LayerSplitEnv()
    env.reset(seed=0)
    assert env.step(action)[4]["requested_split"] == 5


def test_masked_split_in_range_stays_the_penalised_fallback():
    env = LayerSplitEnv(min_split=3)
    _, info = env.reset(seed=0)
    assert not info["action_mask"][0]
    _, _, _, _, info = env.step(0)
    assert info["fallback"] and info["split"] == 3


def test_vehicular_actions_must_be_a_dict_of_live_agents():
    env = vehicular.parallel_env(num_vehicles=3)
    env.reset(seed=0)
    with pytest.raises(TypeError, match=r"^actions: expected a dict \{agent: action\}, got list"):
        env.step([0, 0, 0])
    with pytest.raises(ValueError, match=r"^actions: unknown agent 'vehicle_9'; live agents are vehicle_0, "
                                         r"vehicle_1, vehicle_2"):
        env.step({"vehicle_0": 0, "vehicle_9": 0})


@pytest.mark.parametrize("action, error", [(999, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError),
                                           ("x", TypeError), (np.array([1]), TypeError)])
def test_vehicular_discrete_action_is_checked_against_its_space(action, error):
    env = vehicular.parallel_env(num_vehicles=2)
    env.reset(seed=0)
    n = env.num_actions
    with pytest.raises(error, match=rf"^actions\['vehicle_1'\]: expected an integer in \[0, {n - 1}\]"):
        env.step({"vehicle_0": 0, "vehicle_1": action})


@pytest.mark.parametrize("action, error", [(np.zeros(3), ValueError), (np.zeros((1, 7)), ValueError), (0.0, ValueError),
                                           ("abc", TypeError), ([0, 0, 0, 0, 0, 0, "a"], TypeError)])
def test_vehicular_continuous_action_is_checked_against_its_space(action, error):
    env = vehicular.parallel_env(num_vehicles=2, continuous=True)  # 3 RSUs: Box (7,)
    env.reset(seed=0)
    with pytest.raises(error, match=r"^actions\['vehicle_0'\]: expected "):
        env.step({"vehicle_0": action, "vehicle_1": np.zeros(7)})
    _, rewards, _, _, infos = env.step({"vehicle_0": np.full(7, 5.0), "vehicle_1": np.full(7, np.inf)})
    assert not infos["vehicle_0"]["fallback"] and infos["vehicle_1"]["fallback"]  # clipped; non-finite falls back
    assert all(np.isfinite(list(rewards.values())))


# ---------------------------------------------------------------- 5. type errors name the field

@pytest.mark.parametrize("make, env_name", [(LayerSplitEnv, "LayerSplit"), (RoutingEnv, "Routing"),
                                            (vehicular.parallel_env, "Vehicular")])
@pytest.mark.parametrize("field, value, error", [
    ("distance_m", 5, TypeError), ("distance_m", (1.0, 2.0, 3.0), ValueError), ("deadline_s", "soon", TypeError),
    ("prompt_tokens", 256, TypeError), ("prompt_tokens", (256.0, 0.8), ValueError)])
def test_scenario_type_errors_name_the_field_and_the_expected_type(make, env_name, field, value, error):
    if env_name == "Vehicular" and field == "distance_m":
        field = "speed_mps"
    with pytest.raises(error, match=rf"^{env_name} scenario field '{field}': expected (a|None).*, got "):
        make(**{field: value})


def test_string_where_a_number_belongs_names_the_field():
    with pytest.raises(TypeError, match=r"^LayerSplit scenario field 'speed_mps': expected a finite number, got 'x'$"):
        LayerSplitEnv(speed_mps="x")
    with pytest.raises(TypeError, match=r"^Vehicular scenario field 'rsu_positions'"):
        vehicular.parallel_env(num_rsus=1, rsu_positions=((0.0, "y"),))


def test_routing_structure_seed_and_pool_members_are_checked():
    with pytest.raises(ValueError, match=r"^Routing scenario field 'structure_seed': expected an integer >= 0"):
        RoutingEnv(structure_seed=-1)
    member = PoolMember("qwen2.5-1.5b", "jetson-orin-nano-8gb", "local", accuracy="high")
    with pytest.raises(TypeError, match=r"^Routing scenario field 'pool\[0\]\.accuracy': expected None or a finite"):
        RoutingEnv(pool=(member, GPT4_1106_API))
    with pytest.raises(offload_env.ProfileError, match=r"^Routing scenario field 'pool\[1\]\.device': unknown device"):
        RoutingEnv(pool=(PoolMember("qwen2.5-1.5b", "jetson-orin-nano-8gb", "local"),
                         PoolMember("llama-3.1-8b", "toaster", "edge")))


@pytest.mark.parametrize("make, field", [(LayerSplitEnv, "edge"), (RoutingEnv, "access_link"),
                                         (vehicular.parallel_env, "rsu_device")])
def test_unknown_profiles_name_the_field(make, field):
    with pytest.raises(offload_env.ProfileError, match=rf"scenario field '{field}': unknown"):
        make(**{field: "toaster"})


@pytest.mark.parametrize("make, typo, nearest", [(LayerSplitEnv, "min_spilt", "min_split"),
                                                 (RoutingEnv, "overun_weight", "overrun_weight"),
                                                 (vehicular.parallel_env, "num_vehicle", "num_vehicles")])
def test_unknown_arguments_name_the_nearest_field(make, typo, nearest):
    with pytest.raises(TypeError, match=rf"unknown argument\(s\) '{typo}' \(did you mean '{nearest}'\?\)"):
        make(**{typo: 1})


@pytest.mark.parametrize("kwargs, match", [({"num_envs": 0}, r"^num_envs: expected an integer in \[1, "),
                                           ({"num_envs": 2.0}, r"^num_envs: expected an integer"),
                                           ({"num_envs": 2, "scenario": 3}, r"^scenario: expected None, a preset")])
def test_vector_env_arguments(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        LayerSplitVectorEnv(**kwargs)


def test_sizes_that_would_exhaust_memory_are_refused():
    with pytest.raises(ValueError, match="'prompt_tokens'"):
        LayerSplitEnv(prompt_tokens=(256.0, 0.8, 16, 2 ** 40))
    with pytest.raises(ValueError, match="'num_vehicles'"):
        vehicular.parallel_env(num_vehicles=2 ** 40)
    with pytest.raises(ValueError, match="'n_topics'"):
        RoutingEnv(n_topics=2 ** 40)
    with pytest.raises(ValueError, match="^block: "):
        RoutingEnv(block=2 ** 40)


# ---------------------------------------------------------------- 12. API gaps

def test_layer_split_masks_are_int8_and_sample_takes_them():
    env = LayerSplitEnv(min_split=2)
    _, info = env.reset(seed=0)
    for _ in range(20):
        mask = info["action_mask"]
        assert mask.dtype == np.int8 and env.action_masks().dtype == np.int8
        np.testing.assert_array_equal(mask, env.action_masks())
        a = env.action_space.sample(mask=mask)
        assert mask[a] == 1
        _, _, _, _, info = env.step(a)
        assert not info["fallback"]


def test_vector_env_action_masks():
    env = gym.make_vec("offload_env/LayerSplit-v0", num_envs=4, vectorization_mode="vector_entry_point", min_split=1)
    with pytest.raises(gym.error.ResetNeeded):
        env.unwrapped.action_masks()
    _, infos = env.reset(seed=0)
    masks = env.unwrapped.action_masks()
    assert masks.shape == (4, LAYERS + 1) and masks.dtype == np.int8 and infos["action_mask"].dtype == np.int8
    np.testing.assert_array_equal(masks, infos["action_mask"])
    assert (masks[:, 0] == 0).all()
    actions = np.array([np.flatnonzero(m)[-1] for m in masks])
    _, _, _, _, infos = env.step(actions)
    assert not infos["fallback"].any()
    np.testing.assert_array_equal(env.unwrapped.action_masks(), infos["action_mask"])


def test_routing_make_vec_with_the_vector_entry_point():
    env = gym.make_vec("offload_env/Routing-v0", num_envs=4, vectorization_mode="vector_entry_point")
    assert isinstance(env, RoutingVectorEnv)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4,) + env.single_observation_space.shape
    twin = RoutingEnv()
    first, _ = twin.reset(seed=2)
    np.testing.assert_array_equal(obs[2], first)  # sub-env i gets seed + i
    for t in range(5):
        obs, rewards, terminated, truncated, _ = env.step(np.arange(4) % 3)
        assert env.observation_space.contains(obs) and np.isfinite(rewards).all()
    with pytest.raises(ValueError, match=r"^actions: expected integers of shape \(4,\) in \[0, 2\]"):
        env.step(np.zeros(3, dtype=np.int64))
    short = gym.make_vec("offload_env/Routing-v0", num_envs=2, vectorization_mode="vector_entry_point",
                         max_episode_steps=3)
    short.reset(seed=0)
    for _ in range(3):
        _, _, _, truncated, _ = short.step(np.zeros(2, dtype=np.int64))
    assert truncated.all()


def test_pettingzoo_render_test_and_human_mode(capsys):
    from pettingzoo.test import render_test

    render_test(lambda render_mode=None: vehicular.env(num_vehicles=3, max_cycles=20, render_mode=render_mode))
    env = vehicular.parallel_env(num_vehicles=2, render_mode="human")
    env.reset(seed=0)
    env.step({a: 0 for a in env.agents})
    capsys.readouterr()
    assert env.render() is None
    out = capsys.readouterr().out
    assert out.startswith("step 1/100") and "vehicle_1" in out and "local" in out
    ansi = vehicular.parallel_env(num_vehicles=2, render_mode="ansi")
    ansi.reset(seed=0)
    assert ansi.render().count("\n") == 3


def test_maskable_ppo_reads_int8_masks():
    sb3_contrib = pytest.importorskip("sb3_contrib")
    env = LayerSplitEnv(min_split=2, episode_requests=16)
    model = sb3_contrib.MaskablePPO("MlpPolicy", env, n_steps=32, batch_size=16, n_epochs=1, seed=0, device="cpu")
    model.learn(64)
    obs, info = env.reset(seed=1)
    for _ in range(16):
        a, _ = model.predict(obs, action_masks=env.action_masks(), deterministic=False)
        obs, _, terminated, truncated, info = env.step(int(a))
        assert not info["fallback"]
        if terminated or truncated:
            break
