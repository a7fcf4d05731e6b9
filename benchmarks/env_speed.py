"""Speed of LayerSplit-v0: single env vs CartPole-v1, and the native vector env.

Both single envs are built with ``gymnasium.make`` (same wrappers) and stepped
with actions drawn beforehand, in the same run; the vector env steps
``num_envs`` sub-envs per call. Pinned to one core. The three are measured in
turn for ``--rounds`` rounds and each keeps its best round (as ``timeit``
does: other load on the machine only slows a round down).

    python benchmarks/env_speed.py [--seconds 1] [--rounds 5] [--num-envs 1024]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import offload_env  # noqa: E402,F401

TARGET_RATIO = 0.5
TARGET_VECTOR = 1_000_000


def single_rate(env, seconds: float) -> float:
    """Steps per second of a single env with random actions (resetting at episode ends)."""
    actions = np.random.default_rng(0).integers(0, env.action_space.n, 1_000_000).tolist()
    steps, t0 = 0, time.perf_counter()
    while True:
        for _ in range(1000):
            _, _, terminated, truncated, _ = env.step(actions[steps % 1_000_000])
            steps += 1
            if terminated or truncated:
                env.reset()
        if time.perf_counter() - t0 >= seconds:
            return steps / (time.perf_counter() - t0)


def vector_rate(env, seconds: float) -> float:
    """Env-steps per second of a vector env with random actions."""
    rng = np.random.default_rng(0)
    actions = [rng.integers(0, env.single_action_space.n, env.num_envs) for _ in range(64)]
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        env.step(actions[steps % 64])
        steps += 1
    return steps * env.num_envs / (time.perf_counter() - t0)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="length of one round of one env")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--num-envs", type=int, default=1024)
    args = ap.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    envs = {"cart": gym.make("CartPole-v1"), "split": gym.make("offload_env/LayerSplit-v0"),
            "vec": gym.make_vec("offload_env/LayerSplit-v0", num_envs=args.num_envs,
                                vectorization_mode="vector_entry_point")}
    for env in envs.values():
        env.reset(seed=0)
    best = dict.fromkeys(envs, 0.0)
    for _ in range(args.rounds):
        for name, env in envs.items():
            rate = (vector_rate if name == "vec" else single_rate)(env, args.seconds)
            best[name] = max(best[name], rate)
    cart, split, vec = best["cart"], best["split"], best["vec"]
    print(f"{'env':<48} {'steps/s':>14}")
    print(f"{'CartPole-v1 (gymnasium.make)':<48} {cart:>14,.0f}")
    print(f"{'offload_env/LayerSplit-v0 (gymnasium.make)':<48} {split:>14,.0f}")
    print(f"{f'LayerSplit vector env, {args.num_envs} sub-envs':<48} {vec:>14,.0f}")
    ratio = split / cart
    print(f"single env / CartPole: {ratio:.2f} (target >= {TARGET_RATIO}) -> {'OK' if ratio >= TARGET_RATIO else 'MISSED'}")
    print(f"vector env-steps/s: {vec:,.0f} (target >= {TARGET_VECTOR:,}) -> "
          f"{'OK' if vec >= TARGET_VECTOR else 'MISSED'}")


if __name__ == "__main__":
    main()
