"""Baseline policies for the vehicular env and the joint evaluation loop.

Every policy has ``reset(env)`` (the ParallelEnv, at the start of each
episode) and ``act(observations, infos) -> {agent: action}``, reading each
vehicle's ``infos[agent]["action_mask"]`` (discrete actions). Every action
they return is allowed by the mask. On the continuous env (``continuous=True``)
they read the env's discrete masks and return the Box action that the env
serves as the same choice (``box_action``): the same returns on the same seeds.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from agents._episodes import episode_range

__all__ = [
    "VehicularAllLocal",
    "VehicularNearestRSU",
    "VehicularLeastLoadedRSU",
    "VehicularAllCloud",
    "VehicularRandomValid",
    "VehicularGreedy",
    "VehicularSequentialGreedy",
    "VehicularBestResponse",
    "VehicularSelfishBestResponse",
    "vehicular_baselines",
    "evaluate_vehicular",
    "per_episode",
]


class _VehicularBase:
    """A rule that picks a discrete action per vehicle (``_decide``); on the continuous env
    (``continuous=True``) it acts with the Box action that the env serves as the same choice."""

    name = "baseline"

    def reset(self, env) -> None:
        self.env = env.unwrapped if hasattr(env, "unwrapped") else env
        self.continuous = bool(getattr(self.env, "continuous", False))

    def act(self, observations: dict, infos: dict) -> dict:
        if self.continuous:  # the infos carry target and split masks: the discrete ones come from the env
            masks = dict(zip(self.env.possible_agents, self.env.action_masks()))
        else:
            masks = {agent: _mask(infos, agent) for agent in observations}
        choice = self._decide(observations, masks)
        return {a: self.env.box_action(c) for a, c in choice.items()} if self.continuous else choice

    def _decide(self, observations: dict, masks: dict) -> dict:
        """{vehicle: discrete action} for the live vehicles, given their allowed actions ``masks``."""
        return {agent: self._choose(observations[agent], masks[agent]) for agent in observations}

    def _choose(self, obs: np.ndarray, mask: np.ndarray) -> int:
        raise NotImplementedError

    def _or_local(self, action: int, mask: np.ndarray) -> int:
        """``action`` if allowed, else local, else the first allowed action."""
        if mask[action]:
            return int(action)
        return 0 if mask[0] else int(np.flatnonzero(mask)[0])


def _mask(infos: dict, agent: str) -> np.ndarray:
    try:
        return np.asarray(infos[agent]["action_mask"], dtype=bool)
    except KeyError:
        raise KeyError(f"infos[{agent!r}]['action_mask'] missing: vehicular baselines need the discrete env") from None


class VehicularAllLocal(_VehicularBase):
    """Every task on board."""

    name = "all-local"

    def _choose(self, obs, mask):
        return self._or_local(0, mask)


class VehicularNearestRSU(_VehicularBase):
    """The nearest RSU in range at the shallowest split (``split_index``); local when none is in range."""

    name = "nearest-rsu"

    def __init__(self, split_index: int = 0):
        self.split_index = split_index

    def _choose(self, obs, mask):
        dist = obs[self.env.obs_slices["rsu_distance"]]
        if dist.min() > 1.0:
            return self._or_local(0, mask)
        return self._or_local(self.env.action_of(int(dist.argmin()) + 1, self.split_index), mask)


class VehicularLeastLoadedRSU(_VehicularBase):
    """The in-range RSU with the fewest tasks last step (ties: the nearer); local when none is in range."""

    name = "least-loaded-rsu"

    def __init__(self, split_index: int = 0):
        self.split_index = split_index

    def _choose(self, obs, mask):
        s = self.env.obs_slices
        dist, load = obs[s["rsu_distance"]], obs[s["rsu_load"]] + obs[s["rsu_backlog"]]
        if dist.min() > 1.0:
            return self._or_local(0, mask)
        score = np.where(dist <= 1.0, load + 1e-3 * dist, np.inf)
        return self._or_local(self.env.action_of(int(score.argmin()) + 1, self.split_index), mask)


class VehicularAllCloud(_VehicularBase):
    """The cloud at the shallowest split (``split_index``); local when no RSU can relay."""

    name = "all-cloud"

    def __init__(self, split_index: int = 0):
        self.split_index = split_index

    def _choose(self, obs, mask):
        return self._or_local(self.env.action_of(self.env.num_rsus + 1, self.split_index), mask)


class VehicularRandomValid(_VehicularBase):
    """A uniformly random allowed action per vehicle."""

    name = "random"

    def __init__(self, seed: int | None = None):
        self.rng = np.random.default_rng(seed)

    def _choose(self, obs, mask):
        return int(self.rng.choice(np.flatnonzero(mask)))


class VehicularGreedy(_VehicularBase):
    """Per vehicle, the best action by the cost model given the broadcast loads, ignoring the others' choices.

    Reads ``env.predicted_rewards()`` (each vehicle joining last step's load,
    mean fading, no handover), one vectorised call for all vehicles.
    """

    name = "greedy"

    def _decide(self, observations, masks):
        rewards = self.env.predicted_rewards()
        agents = self.env.possible_agents
        out = {}
        for i, agent in enumerate(agents):
            if agent in observations:
                out[agent] = self._or_local(int(np.argmax(np.where(masks[agent], rewards[i], -np.inf))),
                                            masks[agent])
        return out


class VehicularSequentialGreedy(_VehicularBase):
    """FULL-INFORMATION reference: vehicles choose one after another, each its own best action by the cost model
    given the choices of the vehicles before it (this step's sharing, not last step's broadcast loads).

    Reads ``env.joint_rewards`` (mean fading, no handover); vehicles not yet
    decided count as absent. Not deployable: it needs the others' choices
    of the same step.
    """

    name = "sequential-greedy"

    def _decide(self, observations, masks):
        return self._as_dict(self._sequential(observations, masks), observations)

    def _sequential(self, observations, masks) -> np.ndarray:
        """(N,) the joint action of the vehicles choosing in turn; absent vehicles stay local."""
        env = self.env
        joint = np.zeros(env.N, dtype=np.int64)  # local: shares nothing, so undecided vehicles are absent
        for i, agent in enumerate(env.possible_agents):
            if agent in observations:
                rewards = env.joint_rewards(self._deviations(joint, i))
                joint[i] = self._or_local(int(np.argmax(rewards[i])), masks[agent])
        return joint

    def _deviations(self, joint: np.ndarray, i: int) -> np.ndarray:
        """(N, A) joint actions: ``joint`` with vehicle i taking each of its actions in turn."""
        candidates = np.repeat(joint[:, None], self.env.num_actions, axis=1)
        candidates[i] = np.arange(self.env.num_actions)
        return candidates

    def _as_dict(self, joint: np.ndarray, observations) -> dict:
        return {a: int(joint[i]) for i, a in enumerate(self.env.possible_agents) if a in observations}


class VehicularBestResponse(VehicularSequentialGreedy):
    """FULL-INFORMATION reference for the team: from the sequential greedy's choices, ``rounds`` rounds in which each
    vehicle in turn takes the action that maximises the sum of all vehicles' rewards, the others' held fixed.

    Reads ``env.joint_rewards`` (the cost model on the true state: backlogs,
    positions, this step's sharing; mean fading, no handover). It plans one
    step ahead only. A learner that coordinates must approach it.
    """

    name = "best-response"
    team = True  #: each reply maximises the sum of all vehicles' rewards (False: the vehicle's own)

    def __init__(self, rounds: int = 2):
        if not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"rounds: expected an integer >= 1, got {rounds!r}")
        self.rounds = rounds

    def _decide(self, observations, masks):
        env = self.env
        live = [i for i, a in enumerate(env.possible_agents) if a in observations]
        joint = self._sequential(observations, masks)
        for _ in range(self.rounds):
            for i in live:
                rewards = env.joint_rewards(self._deviations(joint, i))
                if self.team:
                    own_ok = np.isfinite(rewards[i])
                    score = np.where(own_ok, np.where(np.isfinite(rewards), rewards, 0.0).sum(axis=0), -np.inf)
                else:
                    score = rewards[i]
                joint[i] = self._or_local(int(np.argmax(score)), masks[env.possible_agents[i]])
        return self._as_dict(joint, observations)


class VehicularSelfishBestResponse(VehicularBestResponse):
    """FULL-INFORMATION: as :class:`VehicularBestResponse`, but each vehicle replies for its own reward only.

    Its gap to the team best response is what coordination is worth in a scenario.
    """

    name = "selfish-best-response"
    team = False


def vehicular_baselines(seed: int = 0) -> list:
    """The vehicular baselines, ready for :func:`evaluate_vehicular`."""
    return [VehicularAllLocal(), VehicularNearestRSU(), VehicularLeastLoadedRSU(), VehicularAllCloud(),
            VehicularRandomValid(seed), VehicularGreedy()]


def evaluate_vehicular(policy, make_env: Callable, episodes: int = 5, seed: int = 0,
                       progress: bool = False) -> pd.DataFrame:
    """Run ``policy`` on a vehicular ParallelEnv; one row per episode and vehicle.

    ``policy`` follows the multi-agent side of the agent protocol:
    ``reset(env)`` at each episode start, then ``act(observations, infos) ->
    {agent: action}`` for every live agent (baselines here, MADRL agents).

    Columns: agent (policy name), episode, seed, vehicle, steps, return (the
    vehicle's own: ``infos[agent]["reward_own"]``, whatever the env pays it
    under ``team_reward_weight`` or ``difference_reward``), team_return (the
    episode's sum over vehicles, on every row of the episode), mean latency
    (s), energy (J), deadline-miss rate, fallback,
    handover and failure rates, the shares of tasks run locally, on RSUs and
    in the cloud, and the mean latency of the tasks run at each of those
    (``latency_local_s`` ...; NaN where none ran there). :func:`per_episode`
    aggregates it to one row per episode.
    """
    env = make_env() if callable(make_env) else make_env
    rows = []
    for ep in episode_range(episodes, policy, progress):
        observations, infos = env.reset(seed=seed + ep)
        policy.reset(env)
        base = env.unwrapped if hasattr(env, "unwrapped") else env
        cloud = base.num_rsus + 1
        stats = {a: {"steps": 0, "return": 0.0, "latency": 0.0, "energy": 0.0, "miss": 0, "fallback": 0,
                     "handover": 0, "failed": 0, "local": 0, "rsu": 0, "cloud": 0,
                     "latency_local": 0.0, "latency_rsu": 0.0, "latency_cloud": 0.0} for a in env.possible_agents}
        while env.agents:
            observations, rewards, terminations, truncations, infos = env.step(policy.act(observations, infos))
            for agent, reward in rewards.items():
                st, info = stats[agent], infos[agent]
                st["steps"] += 1
                st["return"] += info.get("reward_own", reward)
                st["latency"] += info["latency_s"]
                st["energy"] += info["edge_energy_j"]
                st["miss"] += not info["deadline_met"]
                st["fallback"] += info["fallback"]
                st["handover"] += info["handover"]
                st["failed"] += info["failed"]
                kind = "local" if info["target"] == 0 else "cloud" if info["target"] == cloud else "rsu"
                st[kind] += 1
                st[f"latency_{kind}"] += info["latency_s"]
        team_return = sum(st["return"] for st in stats.values())
        for agent, st in stats.items():
            n = max(st["steps"], 1)
            rows.append({"agent": getattr(policy, "name", type(policy).__name__), "episode": ep, "seed": seed + ep,
                         "vehicle": agent, "steps": st["steps"], "return": st["return"], "team_return": team_return,
                         "mean_latency_s": st["latency"] / n, "energy_j": st["energy"],
                         "deadline_miss_rate": st["miss"] / n, "fallback_rate": st["fallback"] / n,
                         "handover_rate": st["handover"] / n, "failure_rate": st["failed"] / n,
                         "share_local": st["local"] / n, "share_rsu": st["rsu"] / n, "share_cloud": st["cloud"] / n,
                         **{f"latency_{k}_s": st[f"latency_{k}"] / st[k] if st[k] else np.nan
                            for k in ("local", "rsu", "cloud")}})
    return pd.DataFrame(rows)


def per_episode(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (agent, episode): the team return (sum over vehicles) and the means of the rest."""
    keys = ["agent", "episode", "seed"]
    means = frame.drop(columns=["vehicle"]).groupby(keys, sort=False).mean(numeric_only=True)
    means["team_return"] = frame.groupby(keys, sort=False)["return"].sum()  # the same as each row's
    return means.reset_index()
