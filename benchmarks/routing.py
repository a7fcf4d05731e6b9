"""Routing benchmark: quality-cost of the routers, bandit speed, LinUCB's regret slope.

    python benchmarks/routing.py            # the full run (5 orders; several minutes on one core)
    python benchmarks/routing.py --quick    # 1 order, fewer operating points (a smoke run)
    python benchmarks/routing.py --parts mmlu --features minilm --orders 3   # one table
    python benchmarks/routing.py --parts mmlu --quality-router link=identity l2=30   # the quality router's old model

Its routers and workloads come from the project's registrations, not a list
of its own: the bandits are those of ``agents.registry`` (kind ``bandit``)
with the hyper-parameters of ``experiments/configs/routing.yaml`` (for the
MMLU tables those of ``routing_mmlu.yaml`` where it sets them); the
reference routers are the Routing family's baselines
(``experiments.families``), each swept over its operating point here; the
workloads are ``offload_env/Routing-v0`` (built-in) and
``offload_env.workload.WORKLOADS["routellm-mmlu"]`` with the featurisers of
``FEATURIZERS`` (one table each of ``--features``: hashed, and MiniLM
embeddings when the 'embeddings' extra is installed).

1. Quality vs cost, on the built-in workload (RoutingEnv's default pool:
   Qwen2.5-1.5B local, Llama-3.1-8B edge, Llama-3.1-70B cloud, USD cost) and
   on RouteLLM's real MMLU table (Mixtral-8x7B vs GPT-4) when
   ../shared/data/routellm_mmlu exists. 20% of the queries fit the threshold
   router and the supervised references knn and per-subject (full outcomes of
   those queries); every router then makes one online pass over the other
   80%, in 5 shuffled orders. Each bandit runs one pass per operating point
   (cost weight lambda; budget for the cost-aware one), learning from its
   own decisions. The quality router is ONE learner for the whole grid in one
   pass (:func:`shared_pass`: each query is served at a lambda drawn from the
   grid; the curve is its estimates' decision at every lambda on every
   query; "as served" includes its exploration); "(after the 20%)" rows
   first learn online, by bandit feedback, over the fit 20% (the protocol
   of routing_mmlu.yaml), then make the same measured pass; "(full
   information)" learns every model's outcome: a privileged bound on what
   its model can learn online. Cost is normalised so that always-cheapest
   is 0 and always-best is 1 (MMLU: the share of GPT-4 calls, as in
   RouteLLM). Printed: APGR, CPT(50%), CPT(80%) and the cost at which the
   router's curve reaches the strong model's accuracy ("cost @ strong",
   GPT-4-level on MMLU), mean over orders [95% percentile-bootstrap CI over
   the orders].
2. Decisions + updates per second of each bandit, one core, 3 arms, 384-d
   (MiniLM size) and 32-d features; targets for LinUCB: >= 5,000/s and >= 50,000/s.
3. LinUCB's regret over 20,000 queries of the built-in env against the best
   linear policy in hindsight (per-arm ridge fit of the expected rewards on
   the observations): the slope of log-regret vs log-time must be clearly below 1.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # one core
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym  # noqa: E402

from agents.bandit_agent import BANDIT_ALGOS  # noqa: E402
from agents.bandits import CostAwareLinUCB, LinUCB, ThresholdRouter, share_threshold  # noqa: E402
from agents.quality_router import QualityRouter, choose  # noqa: E402
from agents.registry import AGENTS  # noqa: E402
from agents.routing_policies import group_gain, knn_gain  # noqa: E402
from experiments.config import load_config  # noqa: E402
from experiments.stats import bootstrap_ci  # noqa: E402
from experiments.families import FAMILIES  # noqa: E402
from offload_env import metrics  # noqa: E402
from offload_env.envs.routing import CONTEXT_FIELDS  # noqa: E402
from offload_env.workload import load_workload, workload_features  # noqa: E402

ROUTING_CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "configs" / "routing.yaml"
MMLU_CONFIG = ROUTING_CONFIG.with_name("routing_mmlu.yaml")
MMLU = "routellm-mmlu"
PARTS = ("builtin", "mmlu", "speed", "regret")


def bandit_routers(*configs: Path) -> dict[str, tuple[type, dict]]:
    """algo -> (router class, hyper-parameters): every bandit of the agent registry, as routing.yaml sets it
    (then each of ``configs``, for the algorithms it sets)."""
    settings = {}
    for config in (ROUTING_CONFIG, *configs):
        own = {}
        for agent in load_config(config).agents.values():
            own.setdefault(agent.algo, agent.hyperparams)
        settings.update(own)
    return {algo: (BANDIT_ALGOS[algo], dict(settings.get(algo, {})))
            for algo, family in AGENTS.items() if family.kind == "bandit"}


def baseline_names() -> list[str]:
    """The Routing family's baselines; each needs a sweep below (or is an end of the cost axis)."""
    names = list(FAMILIES["routing"].baselines)
    missing = [n for n in names if n not in SWEPT_BASELINES and n not in ("always-cheapest", "always-best")]
    if missing:
        raise SystemExit(f"benchmarks/routing.py: no operating-point sweep for the Routing baseline {missing[0]!r}")
    return [n for n in names if n in SWEPT_BASELINES]


# --------------------------------------------------------------------------
# Data: contexts, every model's quality and normalised cost per query


def builtin_stream(n: int, seed: int = 0):
    """(X, quality, cost, topic) of ``n`` queries of Routing-v0's default scenario; cost: USD / mean USD of the
    best model; X the observation (query features, then the live context)."""
    env = gym.make("offload_env/Routing-v0", max_episode_steps=None).unwrapped
    obs, _ = env.reset(seed=seed)
    X, Q, C, T = [], [], [], []
    for _ in range(n):
        X.append(obs)
        T.append(env.query_topic())
        obs, _, _, _, info = env.step(0)
        Q.append(info["outcomes"])
        C.append(info["costs"])
    cost = np.array(C)
    return np.array(X, dtype=np.float64), np.array(Q), cost / cost[:, -1].mean(), np.array(T)


def mmlu_stream(features: str = "hashed"):
    """(X, quality, cost, subject) of the registered RouteLLM MMLU workload; cost 1 per GPT-4 call."""
    table = load_workload(MMLU).select(["mixtral-8x7b", "gpt-4-1106-preview"])
    X = workload_features(MMLU, features).astype(np.float64)
    cost = np.tile([0.0, 1.0], (len(table), 1))
    names = sorted(set(table.groups))
    return X, table.quality, cost, np.array([names.index(g) for g in table.groups])


# --------------------------------------------------------------------------
# One online pass


def online_pass(agent, X, Q, C, order, lam=0.0, cost_aware=False):
    """Mean (quality, cost) of ``agent`` learning online from reward quality - lam * cost, in ``order``."""
    quality = cost = 0.0
    for i in order:
        x = X[i]
        arm = agent.act(x)
        q, c = Q[i, arm], C[i, arm]
        if cost_aware:
            agent.update(x, arm, q, cost=c)
        else:
            agent.update(x, arm, q - lam * c)
        quality += q
        cost += c
    return quality / len(order), cost / len(order)


def shared_pass(router, X, Q, C, G, order, lambdas, rng, warm=(), full_information=False):
    """The curves of ONE quality router serving every operating point in one online pass over ``order``.

    Each query is served at a cost weight drawn uniformly from ``lambdas`` (a
    population of users with different cost weights behind one router) by the
    router's rule on a Thompson draw of the quality; the router learns only
    the served model's quality and cost. Returned: two (cost, quality)
    curves, one point per lambda, each over every query of ``order``: the
    decision at lambda from the router's estimates at that moment (means, no
    exploration; for the queries served at lambda this is what they were
    served but for the exploration, for the others what that operating point
    would have chosen: the table knows its outcome), and "as served" (the same
    Thompson draw at every lambda: exploration included). Also the share of
    served decisions that the exploration changed. ``warm``: queries learned
    the same way first, outside the curves. ``full_information`` (PRIVILEGED,
    a bound): the router learns every model's outcome of every query.
    """
    def serve(i):
        mean, cost = router.estimates(X[i], G[i])
        draw, _ = router.estimates(X[i], G[i], sample=True)
        lam = lambdas[rng.integers(len(lambdas))]
        arm = choose(draw, cost, lam)
        for a in range(Q.shape[1]) if full_information else (arm,):
            router.update(X[i], a, Q[i, a], cost=C[i, a], group=G[i])
        return mean, draw, cost, arm != choose(mean, cost, lam)

    for i in warm:
        serve(i)
    means, draws, costs, changed = map(np.array, zip(*(serve(i) for i in order)))
    greedy = metrics.lambda_sweep(means, costs, Q[order], C[order], lambdas)
    served = metrics.lambda_sweep(draws, costs, Q[order], C[order], lambdas)
    return greedy, served, float(changed.mean())


def curve_metrics(costs, quals, q_weak, q_strong):
    share = np.clip(costs, 0.0, 1.0)
    return (metrics.apgr(share, quals, q_weak, q_strong),
            metrics.cpt(share, quals, q_weak, q_strong, 0.5),
            metrics.cpt(share, quals, q_weak, q_strong, 0.8),
            # the router's own points only (not the always-strong end point): nan when it never gets there
            metrics.cost_at_quality(np.concatenate([[0.0], share]), np.concatenate([[q_weak], quals]), q_strong))


def _served(ctx, arms):
    order = ctx["order"]
    return ctx["Q"][order, arms].mean(), ctx["C"][order, arms].mean()


def _threshold_sweep(ctx):
    """RouteLLM-style threshold at each target share of strong calls (fitted on the held-out 20%)."""
    curve = []
    for share in ctx["budgets"]:
        ctx["threshold"].threshold_for_share(ctx["X"][ctx["fit_idx"]], share)
        strong = ctx["threshold"].score(ctx["X"][ctx["order"]]) >= ctx["threshold"].threshold
        curve.append(_served(ctx, np.where(strong, ctx["strong"], ctx["weak"])))
    return curve


def _random_sweep(ctx):
    """The strong model with probability p, else the cheapest."""
    return [_served(ctx, np.where(ctx["rng"].random(len(ctx["order"])) < p, ctx["strong"], ctx["weak"]))
            for p in ctx["budgets"]]


def _gain_sweep(ctx, fit_scores, scores):
    """Strong model when a fitted gain score reaches the threshold that sends each target share of the fit set."""
    curve = []
    for share in ctx["budgets"]:
        strong = scores >= share_threshold(fit_scores, share)
        curve.append(_served(ctx, np.where(strong, ctx["strong"], ctx["weak"])))
    return curve


def _gain(ctx, rows):
    return ctx["Q"][rows, ctx["strong"]] - ctx["Q"][rows, ctx["weak"]]


def _knn_sweep(ctx):
    """Supervised reference: mean gain of the 40 nearest fit-set queries (cosine of the query features)."""
    F, fit = ctx["Xq"], ctx["fit_idx"]
    return _gain_sweep(ctx, knn_gain(F[fit], _gain(ctx, fit), F[fit], 40, exclude_self=True),
                       knn_gain(F[fit], _gain(ctx, fit), F[ctx["order"]], 40))


def _per_subject_sweep(ctx):
    """Supervised reference: mean gain in the query's subject (topic) on the fit set."""
    G, fit = ctx["G"], ctx["fit_idx"]
    return _gain_sweep(ctx, group_gain(G[fit], _gain(ctx, fit), G[fit]),
                       group_gain(G[fit], _gain(ctx, fit), G[ctx["order"]]))


def _oracle_sweep(ctx):
    """PRIVILEGED: the best model in hindsight at each lambda."""
    order = ctx["order"]
    return [_served(ctx, np.argmax(ctx["Q"][order] - lam * ctx["C"][order], axis=1)) for lam in ctx["lambdas"]]


#: The Routing family's baselines, each swept over its operating point (name -> curve of (quality, cost)).
SWEPT_BASELINES = {"threshold": _threshold_sweep, "knn": _knn_sweep, "per-subject": _per_subject_sweep,
                   "random": _random_sweep, "oracle": _oracle_sweep}


def quality_cost_table(name, X, Q, C, G, orders, lambdas, budgets, seed=0, n_query_features=None, configs=(),
                       quality_router=None):
    rng = np.random.default_rng(seed)
    n, k = Q.shape
    perm = rng.permutation(n)
    fit_idx, eval_idx = perm[: n // 5], perm[n // 5:]
    weak, strong = int(np.argmin(C.mean(axis=0))), int(np.argmax(Q.mean(axis=0)))
    q_weak, q_strong = Q[eval_idx, weak].mean(), Q[eval_idx, strong].mean()
    d = X.shape[1]
    thresh = ThresholdRouter(d, strong=strong, weak=weak, l2=1.0).fit(X[fit_idx], Q[fit_idx, weak], Q[fit_idx, strong])
    rows = {}
    t0 = time.perf_counter()

    def record(label, curve):
        rows.setdefault(label, []).append(curve_metrics(*np.array(curve).T[::-1], q_weak, q_strong))

    routers = bandit_routers(*configs)
    changed = []
    for o in orders:  # the order indices (seeds of their shuffles)
        order = eval_idx[np.random.default_rng(seed + 1 + o).permutation(len(eval_idx))]
        warm = fit_idx[np.random.default_rng(seed + 101 + o).permutation(len(fit_idx))]
        for algo, (router, params) in routers.items():
            extra = {"seed": o} if "seed" in inspect.signature(router).parameters else {}
            if router is QualityRouter:  # one learner for every lambda: one pass, cold and after the 20%
                params = {"n_groups": int(G.max()) + 1, **params, **(quality_router or {})}
                groups = G if params["n_groups"] else np.full(n, None)
                for label, before, full in ((algo, (), False), (f"{algo} (after the 20%)", warm, False),
                                            (f"{algo} (full information: PRIVILEGED)", (), True)):
                    qr = router(k, d, **params, **extra)
                    greedy, served, share = shared_pass(qr, X, Q, C, groups, order, lambdas,
                                                        np.random.default_rng(o), before, full)
                    record(label, np.array(greedy).T[:, ::-1])
                    if not full:
                        record(f"{label}, as served", np.array(served).T[:, ::-1])
                        changed.append(share)
                continue
            if router is CostAwareLinUCB:  # its operating point is its budget per query, not lambda
                params = {k: v for k, v in params.items() if k != "budget_per_step"}
                curve = [online_pass(router(k, d, budget_per_step=b, **params, **extra), X, Q, C, order,
                                     cost_aware=True) for b in budgets]
            else:
                curve = [online_pass(router(k, d, **params, **extra), X, Q, C, order, lam) for lam in lambdas]
            record(algo, curve)
            if router is LinUCB:  # the same pass after an online pass over the 20%, as the quality router's
                agents = [router(k, d, **params, **extra) for _ in lambdas]
                for agent, lam in zip(agents, lambdas):
                    online_pass(agent, X, Q, C, warm, lam)
                record(f"{algo} (after the 20%)", [online_pass(agent, X, Q, C, order, lam)
                                                   for agent, lam in zip(agents, lambdas)])
        ctx = {"X": X, "Xq": X[:, :n_query_features], "G": G, "Q": Q, "C": C, "order": order, "fit_idx": fit_idx,
               "weak": weak, "strong": strong, "threshold": thresh, "rng": np.random.default_rng(o),
               "lambdas": lambdas, "budgets": budgets}
        for baseline in baseline_names():
            record(baseline, SWEPT_BASELINES[baseline](ctx))

    print(f"\n## {name}: {len(eval_idx)} queries per pass, {len(orders)} orders ({orders.start}-{orders.stop - 1}), "
          f"{len(lambdas)} operating points "
          f"({time.perf_counter() - t0:.0f} s)")
    print(f"always-cheapest quality {q_weak:.3f}, always-best quality {q_strong:.3f}; cost normalised to [0, 1]")
    if changed:
        print(f"quality router: one learner, each query served at a lambda drawn from the grid; its exploration "
              f"changed {np.mean(changed):.1%} of the served decisions")
    print()
    print("mean over orders [95% bootstrap CI over the orders]\n")
    print(f"| router | APGR | CPT(50%) | CPT(80%) | cost @ strong |")
    print("|---|---|---|---|---|")
    for label, vals in rows.items():
        v = np.array(vals)
        cells = []
        for j in range(4):
            col = v[:, j]
            if np.all(np.isnan(col)):
                cells.append("not reached")
            elif np.any(np.isnan(col)):
                cells.append(f"{np.nanmean(col):.3f} ({np.sum(~np.isnan(col))}/{len(col)} reached)")
            else:
                lo, hi = bootstrap_ci(col)
                cells.append(f"{col.mean():.3f} [{lo:.3f}, {hi:.3f}]")
        print(f"| {label} | " + " | ".join(cells) + " |")


# --------------------------------------------------------------------------
# Speed and regret


def speed_table(steps_384=3000, steps_32=20000):
    print("\n## Decisions + updates per second (one core, 3 arms)\n")
    print("| router | 384-d | 32-d |")
    print("|---|---|---|")
    rng = np.random.default_rng(0)
    results = {}
    def maker(router, params):
        extra = {"seed": 0} if "seed" in inspect.signature(router).parameters else {}
        if router is CostAwareLinUCB:
            extra["budget_per_step"] = 0.5
            params = {k: v for k, v in params.items() if k != "budget_per_step"}
        return lambda d: router(3, d, **params, **extra)

    makers = {algo: maker(router, params) for algo, (router, params) in bandit_routers().items()}
    for label, make in makers.items():
        row = []
        for d, steps in ((384, steps_384), (32, steps_32)):
            X = rng.standard_normal((steps, d))
            X /= np.linalg.norm(X, axis=1, keepdims=True)
            r = rng.random((steps, 3))
            agent = make(d)
            cost_aware = isinstance(agent, CostAwareLinUCB)
            t = time.perf_counter()
            for x, rr in zip(X, r):
                a = agent.act(x)
                if cost_aware:
                    agent.update(x, a, rr[a], cost=0.5)
                else:
                    agent.update(x, a, rr[a])
            row.append(steps / (time.perf_counter() - t))
        results[label] = row
        print(f"| {label} | {row[0]:,.0f} | {row[1]:,.0f} |")
    lin = results["linucb"]
    print(f"\nLinUCB 384-d: {lin[0]:,.0f}/s, target >= 5,000: {'MET' if lin[0] >= 5000 else 'NOT MET'}")
    print(f"LinUCB 32-d: {lin[1]:,.0f}/s, target >= 50,000: {'MET' if lin[1] >= 50000 else 'NOT MET'}")


def regret_slope(steps=20_000, seed=0):
    env = gym.make("offload_env/Routing-v0", max_episode_steps=None).unwrapped
    obs, _ = env.reset(seed=seed)
    agent = LinUCB(env.n_models, obs.shape[0], **bandit_routers()["linucb"][1])
    X, expected, chosen = [], [], []
    t = time.perf_counter()
    for _ in range(steps):
        arm = agent.act(obs)
        nxt, reward, _, _, info = env.step(arm)
        agent.update(obs, arm, reward)
        X.append(obs)
        expected.append(info["rewards"] - info["outcomes"] + info["expected_outcomes"])
        chosen.append(arm)
        obs = nxt
    X, expected, chosen = np.array(X, dtype=np.float64), np.array(expected), np.array(chosen)
    # best linear policy in hindsight: per-arm ridge fit of the expected reward, then argmax
    A = X.T @ X + np.eye(X.shape[1])
    theta = np.linalg.solve(A, X.T @ expected)
    best = np.argmax(X @ theta, axis=1)
    rows = np.arange(steps)
    regret = metrics.cumulative_regret(expected[rows, chosen], expected[rows, best])
    hindsight = metrics.cumulative_regret(expected[rows, chosen], expected.max(axis=1))
    slope = metrics.regret_slope(regret, start=200)
    print(f"\n## LinUCB regret on the built-in workload ({steps:,} queries, {time.perf_counter() - t:.1f} s)\n")
    print(f"regret vs the best linear policy in hindsight: {regret[-1]:.1f} after {steps:,} queries "
          f"({regret[steps // 10 - 1]:.1f} after {steps // 10:,})")
    print(f"slope of log-regret vs log-time over [200, {steps:,}]: {slope:.2f} "
          f"(target clearly below 1: {'MET' if slope < 0.85 else 'NOT MET'})")
    print(f"for reference, pseudo-regret vs the per-query Bayes oracle (knows each query's P(correct), linear "
          f"by nature): {hindsight[-1]:.1f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 order, fewer operating points")
    parser.add_argument("--orders", type=int, default=None, help="shuffled orders (default 5; --quick: 1)")
    parser.add_argument("--first-order", type=int, default=0,
                        help="index of the first order (its shuffle's seed): e.g. 5 for 5 orders unseen by the defaults")
    parser.add_argument("--features", nargs="+", default=["hashed", "minilm"], choices=["hashed", "minilm"],
                        help="MMLU prompt features, one table each (offload_env.workload.FEATURIZERS; minilm: the "
                             "embeddings extra, skipped when it is not installed)")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS), help="what to run")
    parser.add_argument("--quality-router", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override the quality router's hyper-parameters (YAML values), e.g. link=identity l2=30")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.quality_router:
        key, sep, value = item.partition("=")
        if not sep or key not in inspect.signature(QualityRouter).parameters:
            parser.error(f"--quality-router: expected KEY=VALUE with KEY a parameter of QualityRouter, got {item!r}")
        overrides[key] = yaml.safe_load(value)
    if overrides:
        print(f"quality router overrides: {overrides}")
    orders = range(args.first_order, args.first_order + (args.orders or (1 if args.quick else 5)))
    lambdas = np.array([0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5]) if not args.quick else np.array([0.0, 0.1, 0.3])
    budgets = np.array([0.1, 0.25, 0.4, 0.55, 0.7, 0.85]) if not args.quick else np.array([0.2, 0.5, 0.8])
    start = time.perf_counter()
    if "builtin" in args.parts:
        X, Q, C, G = builtin_stream(4000 if not args.quick else 1500)
        quality_cost_table("Built-in workload (Qwen2.5-1.5B local / Llama-3.1-8B edge / Llama-3.1-70B cloud, USD)",
                           X, Q, C, G, orders, lambdas, budgets, n_query_features=-len(CONTEXT_FIELDS),
                           quality_router=overrides)
    for features in args.features if "mmlu" in args.parts else ():
        try:
            X, Q, C, G = mmlu_stream(features)
        except FileNotFoundError as err:
            print(f"\n## RouteLLM MMLU: skipped ({err})")
            break
        except ImportError as err:
            print(f"\n## RouteLLM MMLU, {features} features: skipped ({err})")
            continue
        quality_cost_table(f"RouteLLM MMLU (Mixtral-8x7B vs GPT-4-1106, real outcomes, {features} prompt "
                           "features)", X, Q, C, G, orders, lambdas, budgets, configs=(MMLU_CONFIG,),
                           quality_router=overrides)
    if "speed" in args.parts:
        speed_table(*((3000, 20000) if not args.quick else (500, 3000)))
    if "regret" in args.parts:
        regret_slope(20_000 if not args.quick else 5_000)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
