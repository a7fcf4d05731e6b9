"""What a vehicle's own observation allows: the team best response cloned onto it (DAgger), on Vehicular-v0.

    python benchmarks/cloned_reference.py                  # 8 and 20 vehicles (vehicular_8/20.yaml's envs)
    python benchmarks/cloned_reference.py --settings 8 --rounds 1 --episodes 10   # a quick look
    python benchmarks/cloned_reference.py --settings 8_intents   # observations with the others' intents

The team best response (``agents/vehicular_baselines.py``) decides on the true
state, knowing what every other vehicle does this step; MAPPO's actor sees
only its vehicle's observation and id. This trains a student with the MAPPO
actor's network (``agents.madrl.common.mlp``: LayerNorm, two 64-unit ReLU
layers) on the vehicle's observation and one-hot id to predict the best
response's action (cross-entropy over the allowed actions): round 0 on
``--episodes`` episodes of the best response, then ``--rounds`` DAgger rounds
(Ross et al., AISTATS 2011) in which the student drives half as many episodes
and the best response labels the states it reaches. Printed per round: the
student's accuracy on its training data and its per-vehicle cost (minus the
return) over the best response's on the same evaluation episodes, with a 95%
bootstrap CI over episodes. A student well above 1 says the observation, not
the learner, holds the learned policies back (a reading, not a proof: a
policy trained for the observation can beat a clone of a teacher it cannot
see like).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # one core
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.vehicular_baselines import VehicularBestResponse, evaluate_vehicular  # noqa: E402
from experiments.config import load_config  # noqa: E402
from experiments.stats import bootstrap_ci  # noqa: E402
from offload_env import make_parallel  # noqa: E402

EVAL_SEED, DATA_SEED = 0, 50_000  #: evaluation episodes start at 0, the student's data episodes at 50,000


class Student:
    """Masked argmax of an MLP on (own observation, one-hot id): decentralised, as MAPPO's actor."""

    name = "cloned best response"

    def __init__(self, net, n_agents: int):
        self.net, self.eye = net, np.eye(n_agents, dtype=np.float32)

    def reset(self, env) -> None:
        self.agents = list(env.possible_agents)

    def act(self, observations: dict, infos: dict) -> dict:
        import torch

        live = [(i, a) for i, a in enumerate(self.agents) if a in observations]
        x = np.stack([np.concatenate([observations[a], self.eye[i]]) for i, a in live]).astype(np.float32)
        mask = np.stack([np.asarray(infos[a]["action_mask"], bool) for _, a in live])
        with torch.no_grad():
            logits = self.net(torch.as_tensor(x)).numpy()
        return {a: int(k) for (_, a), k in zip(live, np.where(mask, logits, -np.inf).argmax(axis=1))}


def label(driver, make_env, episode_seeds, n_agents: int) -> tuple[list, list, list]:
    """(inputs, masks, best-response actions) along episodes driven by ``driver`` (None: the best response)."""
    teacher, eye, xs, ms, ys = VehicularBestResponse(), np.eye(n_agents, dtype=np.float32), [], [], []
    for seed in episode_seeds:
        env = make_env()
        obs, infos = env.reset(seed=int(seed))
        teacher.reset(env)
        if driver is not None:
            driver.reset(env)
        while env.agents:
            wanted = teacher.act(obs, infos)
            for i, a in enumerate(env.possible_agents):
                if a in obs:
                    xs.append(np.concatenate([obs[a], eye[i]]))
                    ms.append(np.asarray(infos[a]["action_mask"], bool))
                    ys.append(wanted[a])
            obs, _, _, _, infos = env.step(wanted if driver is None else driver.act(obs, infos))
    return xs, ms, ys


def fit(net, xs, ms, ys, epochs: int, seed: int) -> float:
    """Cross-entropy over the allowed actions (Adam, minibatches of 512); the accuracy on the data after."""
    import torch

    x, m, y = torch.as_tensor(np.asarray(xs, np.float32)), torch.as_tensor(np.asarray(ms)), torch.as_tensor(ys)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    lowest = torch.finfo(torch.float32).min
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for k in range(0, len(y), 512):
            idx = order[k:k + 512]
            loss = torch.nn.functional.cross_entropy(torch.where(m[idx], net(x[idx]), lowest), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return float((torch.where(m, net(x), lowest).argmax(-1) == y).float().mean())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", nargs="+", default=["8", "20"], choices=["8", "20", "50", "8_intents"],
                        help="the env of experiments/configs/vehicular_<SETTING>.yaml (8_intents: vehicles "
                             "broadcast intents)")
    parser.add_argument("--episodes", type=int, default=40, help="best-response episodes of round 0")
    parser.add_argument("--rounds", type=int, default=2, help="DAgger rounds after round 0")
    parser.add_argument("--epochs", type=int, default=30, help="passes over the data per fit")
    parser.add_argument("--eval-episodes", type=int, default=10, help="evaluation episodes")
    args = parser.parse_args(argv)
    for name in ("episodes", "epochs", "eval_episodes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: expected an integer >= 1, got {getattr(args, name)}")
    if args.rounds < 0:
        parser.error(f"--rounds: expected an integer >= 0, got {args.rounds}")

    import torch

    from agents.madrl.common import mlp

    torch.set_num_threads(1)
    torch.manual_seed(0)
    for setting in args.settings:
        cfg = load_config(ROOT / "experiments" / "configs" / f"vehicular_{setting}.yaml", check_envs=False)
        kwargs = dict(cfg.env.kwargs)

        def make_env(kwargs=kwargs):
            return make_parallel(cfg.env.id, **kwargs)

        env = make_env()
        n_agents, n_actions = len(env.possible_agents), env.unwrapped.num_actions
        obs_dim = int(np.prod(env.observation_space(env.possible_agents[0]).shape))
        start = time.perf_counter()
        reference = -evaluate_vehicular(VehicularBestResponse(), make_env, episodes=args.eval_episodes,
                                        seed=EVAL_SEED).groupby("episode")["return"].mean().to_numpy()
        net = mlp(obs_dim + n_agents, (64, 64), n_actions, 0.01, True)
        student = Student(net, n_agents)
        data = label(None, make_env, DATA_SEED + np.arange(args.episodes), n_agents)
        print(f"\n## {cfg.name}: {kwargs}; best response {reference.mean():.1f} per vehicle "
              f"({args.eval_episodes} episodes)\n")
        print("| round | samples | accuracy on its data | student cost | / best response [95% CI] | elapsed (s) |")
        print("|---|---|---|---|---|---|")
        for round_ in range(args.rounds + 1):
            accuracy = fit(net, *data, epochs=args.epochs, seed=round_)
            cost = -evaluate_vehicular(student, make_env, episodes=args.eval_episodes,
                                       seed=EVAL_SEED).groupby("episode")["return"].mean().to_numpy()
            ratio = cost / reference
            lo, hi = bootstrap_ci(ratio)
            print(f"| {round_} | {len(data[2]):,} | {accuracy:.3f} | {cost.mean():.1f} | {ratio.mean():.3f} "
                  f"[{lo:.3f}, {hi:.3f}] | {time.perf_counter() - start:.0f} |", flush=True)
            if round_ < args.rounds:
                seeds = DATA_SEED + 10_000 * (round_ + 1) + np.arange(max(1, args.episodes // 2))
                for part, more in zip(data, label(student, make_env, seeds, n_agents)):
                    part.extend(more)


if __name__ == "__main__":
    main()
