"""Router benchmark: decide() latency of exported artifacts against the torch forward of the same policy.

    python benchmarks/router.py            # the full run (about a minute on one core)
    python benchmarks/router.py --quick    # fewer repetitions (a smoke run)

Trains three small policies briefly (their decisions, not their quality,
are measured): MaskablePPO on LayerSplit-v0 (SB3's default 64x64 MLP), DDPG
on the continuous LayerSplit-v0 (SB3's default 400x300 actor) and LinUCB on
Routing-v0; exports each (``agents.export``) and loads it with
``offload_env.router.Router``. On one core, in the same run:

1. ``Router.decide(request)`` p50/p99 in microseconds, request validation
   and observation building included, for requests built from the env's
   own states (the env's request fields where it has them, else its
   observation vector), against the torch forward of the same network
   (``torch.no_grad``, one observation, one thread; the bandit has no torch
   forward). Targets: p50 <= 10 us, p99 <= 50 us.
2. ``Router.decide_batch`` decisions per second (batches of 1,000).
3. HTTP on loopback (``offload-env serve`` in another process, stdlib
   ``http.client`` keep-alive clients): requests/s and p50/p99 at
   concurrency 1 and 16, and the number of errors (must be 0).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # one core
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gymnasium as gym  # noqa: E402

import offload_env  # noqa: E402,F401
from offload_env.router import Router  # noqa: E402

LAYER_SPLIT, ROUTING = "offload_env/LayerSplit-v0", "offload_env/Routing-v0"


def _train(algo: str, env_id: str, kwargs: dict, budget: int, **hyper):
    from agents.registry import AGENTS
    from experiments.config import AgentConfig

    make_env = lambda: gym.make(env_id, **kwargs)  # noqa: E731
    agent = AGENTS[algo].build(make_env, seed=0, name=algo,
                               settings=AgentConfig(algo=algo, budget=budget, hyperparams=hyper))
    agent.learn(make_env if AGENTS[algo].kind == "bandit" else None, budget)
    return agent, make_env


def _requests(router: Router, make_env, n: int) -> tuple[list[dict], list[np.ndarray]]:
    """``n`` requests from env states (the env's request fields if the router has them), and the observations."""
    env = make_env()
    obs, info = env.reset(seed=3)
    requests, observations = [], []
    for _ in range(n):
        req = env.unwrapped.router_request()  # what the edge box knows, as the router reads it
        if "action_mask" in info and router.policy.uses_mask and "action_mask" not in req:
            req["action_mask"] = np.asarray(info["action_mask"]).astype(int).tolist()
        requests.append(req)
        observations.append(np.asarray(obs, dtype=np.float32))
        obs, _, terminated, truncated, info = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, info = env.reset()
    env.close()
    return requests, observations


def _percentiles(times_s: np.ndarray) -> tuple[float, float]:
    return float(np.percentile(times_s, 50) * 1e6), float(np.percentile(times_s, 99) * 1e6)


def _time_each(fn, items, repeats: int) -> np.ndarray:
    clock = time.perf_counter
    out = np.empty(len(items) * repeats)
    k = 0
    for _ in range(repeats):
        for item in items:
            t0 = clock()
            fn(item)
            out[k] = clock() - t0
            k += 1
    return out


def _torch_forward(agent):
    """One-observation torch forward of the agent's exported network (the policy head), or None."""
    import torch

    torch.set_num_threads(1)
    model = agent.model
    norm = agent.obs_normalization
    if agent.algo in ("ddpg", "td3"):
        net = model.actor.mu
    else:
        net = torch.nn.Sequential(*model.policy.mlp_extractor.policy_net, model.policy.action_net)

    def forward(obs):
        x = norm.apply(obs) if norm is not None else obs
        with torch.no_grad():
            return net(torch.as_tensor(x)).numpy()
    return forward


def _serve(path: str, port_queue) -> None:
    from offload_env.router.http import make_server

    server = make_server(Router.from_artifact(path), "127.0.0.1", 0)
    port_queue.put(server.server_address[1])
    server.serve_forever()


def _http_load(port: int, requests: list[dict], concurrency: int, per_client: int) -> dict:
    bodies = [json.dumps(r).encode() for r in requests]
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine = []
        for i in range(per_client):
            body = bodies[(k * per_client + i) % len(bodies)]
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/decide", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
            except OSError:
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            mine.append(time.perf_counter() - t0)
            if not ok:
                with lock:
                    errors[0] += 1
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    p50, p99 = _percentiles(np.asarray(latencies))
    return {"rps": len(latencies) / wall, "p50_us": p50, "p99_us": p99, "errors": errors[0]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    args = parser.parse_args(argv)
    n, repeats = (300, 2) if args.quick else (2000, 5)
    http_n = 200 if args.quick else 2000

    from agents.export import export

    cases = [
        ("maskable_ppo (64x64)", *_train("maskable_ppo", LAYER_SPLIT, {}, 512, n_steps=256, batch_size=64),
         LAYER_SPLIT, {}),
        ("ddpg (400x300)", *_train("ddpg", LAYER_SPLIT, {"continuous": True}, 300, learning_starts=100),
         LAYER_SPLIT, {"continuous": True}),
        ("linucb (3 arms)", *_train("linucb", ROUTING, {}, 2000), ROUTING, {}),
    ]
    tmp = Path(tempfile.mkdtemp(prefix="router-bench-"))
    rows = []
    http_case = None
    for label, agent, make_env, env_id, kwargs in cases:
        path = export(agent, tmp / agent.algo, env_id=env_id, env_kwargs=kwargs)
        router = Router.from_artifact(path)
        requests, observations = _requests(router, make_env, n)
        for r in requests[:50]:
            d = router.decide(r)
            assert d.ok, d.reason
        p50, p99 = _percentiles(_time_each(router.decide, requests, repeats))
        t_p50 = t_p99 = float("nan")
        if getattr(agent, "model", None) is not None:
            forward = _torch_forward(agent)
            t_p50, t_p99 = _percentiles(_time_each(forward, observations, repeats))
        t0 = time.perf_counter()
        batches = 0
        while time.perf_counter() - t0 < (0.5 if args.quick else 2.0):
            router.decide_batch(requests[:1000])
            batches += 1
        batch_rate = batches * min(1000, len(requests)) / (time.perf_counter() - t0)
        rows.append((label, p50, p99, t_p50, t_p99, batch_rate))
        if agent.algo == "maskable_ppo":
            http_case = (path, requests)

    print("decide(request), one core, microseconds (targets: p50 <= 10, p99 <= 50)")
    print(f"| {'artifact':<22} | {'p50':>6} | {'p99':>6} | {'torch p50':>9} | {'torch p99':>9} | "
          f"{'p50 ratio':>9} | {'batch decisions/s':>17} |")
    print("|" + "|".join("-" * w for w in (24, 8, 8, 11, 11, 11, 19)) + "|")
    for label, p50, p99, t50, t99, rate in rows:
        if np.isfinite(t50):  # a torch forward exists for this artifact
            torch_cols = f"{t50:9.1f} | {t99:9.1f} | {t50 / p50:8.1f}x"
        else:
            torch_cols = f"{'-':>9} | {'-':>9} | {'-':>9}"
        print(f"| {label:<22} | {p50:6.1f} | {p99:6.1f} | {torch_cols} | {rate:17,.0f} |")

    path, requests = http_case
    queue = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=_serve, args=(str(path), queue), daemon=True)
    proc.start()
    try:
        port = queue.get(timeout=60)
        print("\nHTTP /decide on loopback (maskable_ppo artifact, server in its own process)")
        print(f"| {'concurrency':>11} | {'requests/s':>10} | {'p50 us':>8} | {'p99 us':>8} | {'errors':>6} |")
        print("|" + "|".join("-" * w for w in (13, 12, 10, 10, 8)) + "|")
        for c in (1, 16):
            r = _http_load(port, requests, c, max(http_n // c, 10))
            print(f"| {c:>11} | {r['rps']:10,.0f} | {r['p50_us']:8.0f} | {r['p99_us']:8.0f} | {r['errors']:>6} |")
    finally:
        proc.terminate()
        proc.join(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
