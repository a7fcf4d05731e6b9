"""SB3 agents: save/load round trip, normalisation restored (not recomputed), masks respected."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import offload_env  # noqa: F401

pytest.importorskip("stable_baselines3")
pytest.importorskip("sb3_contrib")

from agents import DDPGAgent, MaskablePPOAgent, SB3Agent, TD3Agent  # noqa: E402

SMALL = {"policy_kwargs": {"net_arch": [16]}}


def make_continuous():
    return gym.make("offload_env/LayerSplit-v0", continuous=True, max_episode_steps=30)


def make_discrete():
    return gym.make("offload_env/LayerSplit-v0", max_episode_steps=30)


def observations(make_env, n=40, seed=5):
    env = make_env()
    obs, _ = env.reset(seed=seed)
    out = []
    for _ in range(n):
        out.append(obs)
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            obs, _ = env.reset()
    return out


@pytest.mark.parametrize("cls", [DDPGAgent, TD3Agent])
def test_save_load_gives_identical_actions(cls, tmp_path):
    agent = cls(make_continuous, seed=0, learning_starts=20, batch_size=8,
                action_noise={"kind": "ornstein-uhlenbeck", "sigma": 0.3}, **SMALL)
    agent.learn(None, 80)
    path = agent.save(tmp_path / "agent.zip")
    assert not [p for p in tmp_path.iterdir() if p.name != "agent.zip"]  # no temporary left behind
    loaded = SB3Agent.load(path)
    assert type(loaded) is cls and loaded.name == agent.name
    for obs in observations(make_continuous):
        np.testing.assert_array_equal(agent.act(obs), loaded.act(obs))


def test_normalisation_is_restored_and_frozen(tmp_path):
    agent = DDPGAgent(make_continuous, seed=1, learning_starts=20, batch_size=8, **SMALL)
    agent.learn(None, 60)
    saved = agent.obs_normalization
    assert saved.count > 60  # statistics were learned, not the initial ones
    agent.save(tmp_path / "a.zip")
    for loaded in (DDPGAgent.load(tmp_path / "a.zip"), DDPGAgent.load(tmp_path / "a.zip", make_continuous)):
        norm = loaded.obs_normalization
        np.testing.assert_array_equal(norm.mean, saved.mean)
        np.testing.assert_array_equal(norm.var, saved.var)
        assert norm.count == saved.count
        for obs in observations(make_continuous):  # acting never updates the statistics
            loaded.act(obs)
        assert loaded.obs_normalization.count == saved.count
    resumed = DDPGAgent.load(tmp_path / "a.zip", make_continuous)
    assert resumed.num_timesteps == 60
    resumed.learn(None, 80)  # training continues from the saved statistics
    assert resumed.num_timesteps == 80
    # 20 steps plus the observations of the resets (VecNormalize counts those too), on top of the saved count
    assert saved.count + 20 <= resumed.obs_normalization.count <= saved.count + 23


def test_maskable_ppo_never_picks_a_masked_action(tmp_path):
    agent = MaskablePPOAgent(make_discrete, seed=0, n_steps=32, batch_size=16, n_epochs=1, **SMALL)
    agent.learn(None, 64)
    loaded = SB3Agent.load(agent.save(tmp_path / "p.zip"))
    rng = np.random.default_rng(0)
    n = make_discrete().action_space.n
    for obs in observations(make_discrete, 60):
        mask = rng.random(n) < 0.2
        mask[rng.integers(n)] = True
        for a in (agent, loaded):
            assert mask[a.act(obs, {"action_mask": mask})]
    env = make_discrete()
    obs, info = env.reset(seed=3)
    for _ in range(30):
        obs, _, term, trunc, info = env.step(loaded.act(obs, info))
        assert not info["fallback"]
        if term or trunc:
            break


def test_wrong_action_space_and_wrong_file_are_clear(tmp_path):
    with pytest.raises(ValueError, match="continuous=True"):
        DDPGAgent(make_discrete)
    bogus = tmp_path / "x.zip"
    bogus.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not an agent saved by agents.sb3"):
        SB3Agent.load(bogus)
    agent = MaskablePPOAgent(make_discrete, n_steps=32, batch_size=16, **SMALL)
    agent.save(tmp_path / "p.zip")
    with pytest.raises(ValueError, match="maskable_ppo"):
        DDPGAgent.load(tmp_path / "p.zip")


def test_sb3_agents_follow_the_agent_protocol(tmp_path):
    from agents.protocol import Agent
    from offload_env.router import read_artifact

    agent = MaskablePPOAgent(make_discrete, seed=0, n_steps=32, batch_size=16, n_epochs=1, **SMALL)
    assert isinstance(agent, Agent)
    agent.learn(make_discrete, 32)  # the factory it was built on
    assert agent.num_timesteps == 32
    with pytest.raises(ValueError, match="must be None or the factory the agent was built on"):
        agent.learn(lambda: make_discrete(), 64)
    path = agent.export(tmp_path / "artifact", env_id="offload_env/LayerSplit-v0")  # tests/test_export.py: parity
    assert read_artifact(path).manifest["agent"]["algo"] == "maskable_ppo"
