"""Property-based fuzzing of every registered env at its boundary: constructors and ``step``.

Property: a bad argument or action raises ValueError / TypeError naming it;
anything accepted (the documented fallbacks included) gives numbers that are
all finite, observations inside the observation space.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.registration import load_env_creator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import offload_env
from offload_env.envs.layer_split import LayerSplitScenario, LayerSplitVectorEnv
from offload_env.envs.routing import RoutingScenario, RoutingVectorEnv
from offload_env.envs.vehicular import VehicularScenario


def fuzz(examples: int):
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


SCENARIOS = {"offload_env/LayerSplit-v0": LayerSplitScenario, "offload_env/Routing-v0": RoutingScenario,
             "offload_env/Vehicular-v0": VehicularScenario}


def test_every_registered_env_is_fuzzed():
    assert set(offload_env.ENV_IDS) | set(offload_env.PARALLEL_ENVS) == set(SCENARIOS)


# ---------------------------------------------------------------- values of any type

FLOATS = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, -1.0, 1e-9, 0.5, 0.99, 2.0, 1e9,
                                    2.0 ** 64]),
                   st.floats(-1e9, 1e9).map(lambda x: round(x, 6)))
INTS = st.one_of(st.integers(-3, 64), st.integers(-2 ** 70, 2 ** 70), st.sampled_from([2 ** 63, -2 ** 63]))
STRINGS = st.one_of(st.text(max_size=6), st.sampled_from(["l4", "lte", "wifi-6", "backhaul-fiber", "int8", "int4",
                                                          "grid", "trace", "highway", "edge_energy_j", "usd",
                                                          "false", "3", "nan", "qwen2.5-0.5b", "h100-sxm"]))
SCALARS = st.one_of(FLOATS, INTS, st.booleans(), st.none(), STRINGS,
                    st.sampled_from([np.float64(math.nan), np.int64(3), np.float32(0.5), np.bool_(True)]))
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=5).map(tuple),
                   st.lists(st.lists(FLOATS, min_size=2, max_size=2).map(tuple), max_size=4).map(tuple))


def kwargs_of(env_id):
    names = [f.name for f in dataclasses.fields(SCENARIOS[env_id])] + ["continuous"]
    return st.dictionaries(st.sampled_from(names), VALUES, min_size=1, max_size=3)


def build(env_id, **kwargs):
    if env_id in offload_env.PARALLEL_ENVS:
        return offload_env.make_parallel(env_id, **kwargs)
    return load_env_creator(gym.spec(env_id).entry_point)(**kwargs)  # the env's own errors, unwrapped


#: Info keys documented as possibly infinite: Routing's budget_left without a budget.
INFINITE_INFO = {"budget_left"}


def finite(*values):
    for v in values:
        assert np.isfinite(np.asarray(v, dtype=np.float64)).all(), v


def first_allowed(info):
    mask = info.get("action_mask")
    return 0 if mask is None else int(np.flatnonzero(mask)[0])


def check_gym_env(env):
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    finite(obs)
    for _ in range(3):
        action = np.zeros(env.action_space.shape) if isinstance(env.action_space, gym.spaces.Box) \
            else first_allowed(info)
        obs, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(obs), obs
        finite(obs, reward)
        if terminated or truncated:
            obs, info = env.reset()


def check_parallel_env(env):
    observations, infos = env.reset(seed=0)
    for _ in range(3):
        actions = {a: (np.zeros(env.action_space(a).shape) if env.continuous else first_allowed(infos[a]))
                   for a in env.agents}
        observations, rewards, _, _, infos = env.step(actions)
        for a, o in observations.items():
            assert env.observation_space(a).contains(o), o
        finite(list(rewards.values()), env.state())
        if not env.agents:
            break


@pytest.mark.parametrize("env_id", sorted(SCENARIOS))
def test_constructors_with_arbitrary_arguments(env_id):
    @fuzz(150)
    @given(kwargs=kwargs_of(env_id))
    def run(kwargs):
        try:
            env = build(env_id, **kwargs)
        except (TypeError, ValueError) as e:  # ProfileError is a ValueError
            assert any(k in str(e) for k in kwargs), f"{type(e).__name__} names none of {sorted(kwargs)}: {e}"
            return
        if env_id in offload_env.PARALLEL_ENVS:
            check_parallel_env(env)
        else:
            check_gym_env(env)

    run()


# ---------------------------------------------------------------- actions of any dtype, shape and value

DTYPES = st.sampled_from([np.int8, np.int32, np.int64, np.uint8, np.uint64, np.float16, np.float32, np.float64,
                          np.bool_, np.complex64])


def arrays(shapes):
    return DTYPES.flatmap(lambda dt: hnp.arrays(dt, shapes))


def any_action(shapes, n_actions=None, box_dim=None):
    """Arrays of any dtype and value of ``shapes``, Python scalars, strings, lists, None; and valid actions."""
    valid = []
    if n_actions is not None:
        valid.append(st.integers(0, n_actions - 1))
    if box_dim is not None:
        valid.append(hnp.arrays(np.float64, (box_dim,), elements=FLOATS))
    return st.one_of(arrays(shapes), SCALARS, st.lists(SCALARS, max_size=4), *valid)


@functools.cache
def single_env(env_id, continuous):
    kwargs = {"continuous": True} if continuous else {}
    env = build(env_id, **kwargs)
    env.reset(seed=0)
    return env


def names(e, word):
    return str(e).startswith(word) or f"{word}:" in str(e) or f"{word}[" in str(e)


@pytest.mark.parametrize("env_id, continuous", [("offload_env/LayerSplit-v0", False),
                                                ("offload_env/LayerSplit-v0", True),
                                                ("offload_env/Routing-v0", False)])
def test_single_env_step_with_any_action(env_id, continuous):
    env = single_env(env_id, continuous)
    n = getattr(env.action_space, "n", None)
    dim = env.action_space.shape[0] if continuous else None
    shapes = hnp.array_shapes(min_dims=0, max_dims=2, max_side=4)

    @fuzz(200)
    @given(action=any_action(shapes, n, dim))
    def run(action):
        try:
            obs, reward, terminated, truncated, info = env.step(action)
        except (TypeError, ValueError) as e:
            assert names(e, "action"), e
            return
        assert env.observation_space.contains(obs), obs
        finite(obs, reward, [v for k, v in info.items() if np.isscalar(v) and not isinstance(v, str)
                             and k not in INFINITE_INFO])
        if continuous and not np.isfinite(np.asarray(action, dtype=np.float64)).all():
            assert info["fallback"] and info["requested_split"] == -1
        if terminated or truncated:
            env.reset()

    run()


@pytest.mark.parametrize("kind", ["layer_split", "layer_split_continuous", "routing"])
def test_vector_env_step_with_any_actions(kind):
    num_envs = 3
    if kind == "routing":
        env = RoutingVectorEnv(num_envs)
        n, dim = env.single_action_space.n, None
    else:
        env = LayerSplitVectorEnv(num_envs, continuous=kind.endswith("continuous"), episode_requests=5)
        n = None if env.continuous else env.single_action_space.n
        dim = 3 if env.continuous else None
    env.reset(seed=0)
    shapes = st.sampled_from([(), (1,), (num_envs,), (num_envs + 1,), (num_envs, 1), (num_envs, 3), (num_envs, 4),
                              (1, 3), (2 * num_envs,)])
    valid = hnp.arrays(np.int64, (num_envs,), elements=st.integers(0, n - 1)) if n else \
        hnp.arrays(np.float64, (num_envs, dim), elements=FLOATS)

    @fuzz(200)
    @given(actions=st.one_of(arrays(shapes), SCALARS, st.lists(SCALARS, max_size=4), valid))
    def run(actions):
        try:
            obs, rewards, terminated, truncated, infos = env.step(actions)
        except ValueError as e:
            assert str(e).startswith("actions: expected"), e
            return
        assert env.observation_space.contains(obs), obs
        finite(obs, rewards)
        for key, value in infos.items():
            if isinstance(value, np.ndarray) and value.dtype.kind in "fiu" and key not in INFINITE_INFO:
                finite(value)

    run()


@pytest.mark.parametrize("continuous", [False, True])
def test_parallel_env_step_with_any_actions(continuous):
    env = offload_env.make_parallel("offload_env/Vehicular-v0", num_vehicles=3, max_cycles=20, continuous=continuous)
    env.reset(seed=0)
    agents = env.possible_agents
    dim = env.action_space(agents[0]).shape[0] if continuous else None
    n = None if continuous else env.num_actions
    action = any_action(hnp.array_shapes(min_dims=0, max_dims=2, max_side=8), n, dim)
    keys = st.one_of(st.sampled_from(agents), st.sampled_from(["vehicle_9", "x", 0, None]))
    actions = st.one_of(st.dictionaries(st.sampled_from(agents), action, max_size=3),
                        st.dictionaries(keys, action, max_size=3), st.lists(action, max_size=3), SCALARS)

    @fuzz(200)
    @given(actions=actions)
    def run(actions):
        if not env.agents:
            env.reset()
        try:
            observations, rewards, _, _, infos = env.step(actions)
        except (TypeError, ValueError) as e:
            assert names(e, "actions"), e
            return
        for a, o in observations.items():
            assert env.observation_space(a).contains(o), o
        finite(list(rewards.values()), env.state())
        for a in agents:
            if a not in actions or actions[a] is None:
                assert infos[a]["fallback"]  # missing: the documented fallback

    run()
