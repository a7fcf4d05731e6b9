"""RLlib scaling: env steps per second sampled and trained, with 0, 1 and 2 env runners, next to the project's
own trainers on the same env, measured in the same run.

    python benchmarks/rllib_scaling.py                 # LayerSplit-v0, Vehicular-v0 at 8 and 50 vehicles
    python benchmarks/rllib_scaling.py --settings layer_split --iterations 2   # a quick look

Needs the 'ray' extra (``make test-ray`` builds ``.venv-ray``). Ray runs on
this machine, bound to 127.0.0.1 (agents.rllib.cluster). Every trainer does
the same work per batch: ``--batch`` env steps, then 10 epochs of minibatch
128 on a 64x64 tanh MLP (RLlib PPO and SB3 MaskablePPO; MAPPO on 4 env copies
with its defaults). Rates are the wall time of ``--iterations`` batches after
one warm-up batch. For RLlib the batch's time splits into sampling (timed
alone: every runner samples its share at once) and the rest (the learner's
update and weight sync, on the driver), from which the table extrapolates to
a node with more cores: N runners take ``sample_1 / N + rest`` per batch, so
the rate is bounded by ``batch / rest`` however many runners sample.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.registry import env_factory  # noqa: E402

LAYER_SPLIT, VEHICULAR = "offload_env/LayerSplit-v0", "offload_env/Vehicular-v0"
SETTINGS = {"layer_split": (LAYER_SPLIT, {}, 1), "vehicular_8": (VEHICULAR, {"num_vehicles": 8}, 8),
            "vehicular_50": (VEHICULAR, {"num_vehicles": 50}, 50)}
VECTOR = 8  #: env copies per runner in the vectorised rows (RLlib batches the module's forward over them)
PPO = {"minibatch_size": 128, "num_epochs": 10, "hidden": (64, 64)}


def env_rate(env_id: str, kwargs: dict, seconds: float = 3.0) -> float:
    """Env steps per second with a random allowed action (per vehicle), resets included."""
    env, rng = env_factory(env_id, kwargs)(), np.random.default_rng(0)
    parallel = hasattr(env, "possible_agents")
    obs, info = env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        if parallel:
            masks = env.action_masks()
            pick = (rng.random(masks.shape) * masks).argmax(axis=1)
            env.step(dict(zip(env.possible_agents, pick.tolist())))
            if not env.agents:
                env.reset()
        else:
            allowed = np.flatnonzero(info["action_mask"])
            obs, _, terminated, truncated, info = env.step(int(rng.choice(allowed)))
            if terminated or truncated:
                obs, info = env.reset()
        steps += 1
    return steps / (time.perf_counter() - start)


def timed(agent, batch: int, iterations: int) -> float:
    """Env steps per second of ``iterations`` batches of learn after one warm-up batch."""
    agent.learn(None, batch)
    start = time.perf_counter()
    agent.learn(None, batch * (1 + iterations))
    return batch * iterations / (time.perf_counter() - start)


def project_trainer(env_id: str, kwargs: dict, batch: int, iterations: int) -> tuple[str, float]:
    make_env = env_factory(env_id, kwargs)
    if env_id == VEHICULAR:
        from agents.madrl import MAPPOAgent

        return "MAPPO (agents.madrl)", timed(MAPPOAgent(make_env, seed=0, n_envs=4, n_steps=batch // 4,
                                                        normalize_obs=False), batch, iterations)
    from sb3_contrib import MaskablePPO

    model = MaskablePPO("MlpPolicy", make_env(), n_steps=batch, batch_size=PPO["minibatch_size"],
                        n_epochs=PPO["num_epochs"], seed=0, device="cpu",
                        policy_kwargs={"net_arch": list(PPO["hidden"])})

    class Learn:  # the SB3 model on the timed() protocol
        def learn(self, _make_env, budget):
            model.learn(budget - model.num_timesteps, reset_num_timesteps=False)

    return "SB3 MaskablePPO", timed(Learn(), batch, iterations)


def rllib(env_id: str, kwargs: dict, batch: int, iterations: int, runners: int, n_envs: int) -> dict:
    from agents.rllib.agent import RLlibAgent

    agent = RLlibAgent(env_factory(env_id, kwargs), seed=0, train_batch_size=batch, num_env_runners=runners,
                       n_envs=n_envs, **PPO)
    rate = timed(agent, batch, iterations)
    group = agent.algorithm.env_runner_group
    share = batch // max(runners, 1)  # env steps each runner samples (over its n_envs copies)
    start = time.perf_counter()
    for _ in range(iterations):
        group.foreach_env_runner(lambda r: r.sample(num_timesteps=share, random_actions=False),
                                 local_env_runner=runners == 0)
    sample = (time.perf_counter() - start) / iterations
    agent.close()
    return {"rate": rate, "sample_s": sample, "rest_s": max(batch / rate - sample, 0.0)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--batch", type=int, default=2000, help="env steps per training batch")
    parser.add_argument("--iterations", type=int, default=3, help="timed batches (after one warm-up)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from agents.rllib.cluster import init_ray

    os.environ.pop("RAY_ADDRESS", None)  # this machine's Ray on 127.0.0.1, not a cluster the shell names
    init_ray()
    print(f"# RLlib scaling on this machine ({os.cpu_count()} cores), batch {args.batch} env steps, "
          f"{args.iterations} timed batches\n")
    for setting in args.settings:
        env_id, kwargs, agents = SETTINGS[setting]
        batch = args.batch if agents < 50 else args.batch // 4
        batch -= batch % (2 * VECTOR)  # every row splits it evenly over its runners and env copies
        env = env_rate(env_id, kwargs)
        name, own = project_trainer(env_id, kwargs, batch, args.iterations)
        print(f"## {setting} ({env_id} {kwargs or ''}), batch {batch} env steps\n")
        print("| trainer | env steps/s | agent steps/s | ratio to the project's trainer | sampling s/batch | "
              "rest s/batch |")
        print("|---|---|---|---|---|---|")
        print(f"| env alone (random allowed actions) | {env:,.0f} | {env * agents:,.0f} | {env / own:.2f} | | |")
        print(f"| {name} | {own:,.0f} | {own * agents:,.0f} | 1.00 | | |")
        one = None
        for runners, n_envs in ((0, 1), (1, 1), (2, 1), (1, VECTOR), (2, VECTOR)):
            r = rllib(env_id, kwargs, batch, args.iterations, runners, n_envs)
            one = r if (runners, n_envs) == (1, VECTOR) else one
            label = "driver samples" if runners == 0 else f"{runners} env runner{'s' * (runners > 1)}"
            print(f"| RLlib PPO, {label}, {n_envs} env cop{'ies' if n_envs > 1 else 'y'} each | {r['rate']:,.0f} | "
                  f"{r['rate'] * agents:,.0f} | {r['rate'] / own:.2f} | {r['sample_s']:.2f} | {r['rest_s']:.2f} |")
        for n in (15, 63):
            predicted = batch / (one["sample_s"] / n + one["rest_s"])
            print(f"| RLlib PPO, {n} env runners x {VECTOR} copies (extrapolated) | {predicted:,.0f} | "
                  f"{predicted * agents:,.0f} | {predicted / own:.2f} | {one['sample_s'] / n:.2f} | "
                  f"{one['rest_s']:.2f} |")
        print(f"\nbound with one learner: {batch / one['rest_s']:,.0f} env steps/s (batch / rest); more "
              "learners (num_learners) split the update.\n")


if __name__ == "__main__":
    main()
