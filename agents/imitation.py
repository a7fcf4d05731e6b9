"""Imitation warm start: a learner's policy cloned from a teacher's actions (DAgger), before it trains.

The teacher may be privileged (the LayerSplit ``reference`` reads the true
state and paces the budget in hindsight); the student sees only the
observation, as at deployment: it learns the teacher's choice as far as the
observation tells it (Ross et al., "A reduction of imitation learning and
structured prediction to no-regret online learning", AISTATS 2011; the
privileged teacher as in Chen et al., "Learning by cheating", CoRL 2019).

Round 0 runs the teacher for ``episodes`` episodes and records (observation,
action mask, teacher's action). Each of ``dagger_rounds`` further rounds lets
the student act for ``episodes // 2`` episodes while the teacher labels the
states the student reaches, and refits on everything so far. The learner
must implement ``clone(observations, masks, actions, *, epochs,
learning_rate, batch_size, seed) -> accuracy`` (SB3's PPO and MaskablePPO do).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np

__all__ = ["ImitationSettings", "collect", "imitate"]

#: Episode seeds of the imitation data: seed * SEED_STRIDE + SEED_BASE + k (apart from evaluation's and
#: the baselines' calibration episodes, which start at 0, 10,000 and 20,000).
SEED_BASE, SEED_STRIDE = 500_000, 10_000


@dataclass(frozen=True)
class ImitationSettings:
    """How a learner imitates its teacher before training (``imitate``)."""

    teacher: str  #: a baseline of the env's family (e.g. LayerSplit's ``reference``)
    episodes: int = 100  #: teacher episodes of round 0 (each DAgger round: half as many)
    dagger_rounds: int = 2  #: rounds in which the student acts and the teacher labels
    epochs: int = 30  #: passes over the data per fit
    learning_rate: float = 1e-3  #: Adam's, for the cloning only (the learner's own optimiser is untouched)
    batch_size: int = 256


def collect(teacher, env: gym.Env, episodes: int, first_seed: int, student=None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(observations, action masks, teacher's actions) over ``episodes`` episodes from ``first_seed``; the
    student acts where given (its states, the teacher's labels), else the teacher."""
    observations, masks, actions = [], [], []
    for k in range(episodes):
        obs, info = env.reset(seed=first_seed + k)
        teacher.reset(env)
        if student is not None and hasattr(student, "reset"):
            student.reset(env)
        done = False
        while not done:
            action = teacher.act(obs, info)
            observations.append(np.asarray(obs, dtype=np.float32))
            masks.append(np.asarray(info["action_mask"], dtype=bool))
            actions.append(int(action))
            played = action if student is None else student.act(obs, info)
            obs, _, terminated, truncated, info = env.step(played)
            done = terminated or truncated
    return np.stack(observations), np.stack(masks), np.asarray(actions, dtype=np.int64)


def imitate(agent, teacher, make_env: Callable[[], gym.Env], settings: ImitationSettings, seed: int = 0
            ) -> dict[str, Any]:
    """Clone ``teacher`` into ``agent`` (round 0, then DAgger rounds); returns what was done: samples (env
    steps recorded, beside the learner's budget), rounds, the training accuracy of each fit, seconds."""
    if not hasattr(agent, "clone"):
        raise TypeError(f"{type(agent).__name__} cannot imitate (no clone method)")
    start = time.perf_counter()
    env = make_env()
    first = SEED_BASE + SEED_STRIDE * int(seed)
    try:
        parts = [collect(teacher, env, settings.episodes, first)]
        fit = dict(epochs=settings.epochs, learning_rate=settings.learning_rate, batch_size=settings.batch_size,
                   seed=seed)
        accuracy = [agent.clone(*parts[0], **fit)]
        per_round = max(settings.episodes // 2, 1)
        for r in range(settings.dagger_rounds):
            parts.append(collect(teacher, env, per_round, first + settings.episodes + r * per_round,
                                 student=agent))
            data = [np.concatenate(column) for column in zip(*parts)]
            accuracy.append(agent.clone(*data, **fit))
    finally:
        env.close()
    samples = sum(len(p[2]) for p in parts)
    return {"teacher": getattr(teacher, "name", type(teacher).__name__), "samples": samples,
            "rounds": 1 + settings.dagger_rounds,
            "accuracy": [round(a, 4) for a in accuracy], "seconds": round(time.perf_counter() - start, 1)}
