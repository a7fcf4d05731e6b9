"""Discrete active inference with pymdp (``inferactively-pymdp`` 1.x, JAX): a POMDP over binned observations.

Each request is a one-step POMDP. Hidden-state factors: the request's
context (LayerSplit: channel quality, server load, prompt size; Routing:
the query's topic and the cloud's load), each seen through an observation
modality of the same bins (``A`` known: the bin is read with probability
``1 - context_noise``), and a **choice** factor: ``start``, then the
macro-action taken (``B`` known and deterministic: the action sets it). The
outcome modalities (latency per deadline, energy, accuracy penalty; Routing:
answer right or wrong, cost, overrun) depend on every factor; their ``A`` is
learned with Dirichlet counts (``pA``, a flat prior of ``prior_count``). ``C``,
the preferences over outcome bins, is the env's reward weights applied to
each bin's representative value (the same objective as the reward, read
through bins); a config's ``preference`` overrides bins by modality name.

Per request: (1) observe the context (outcomes ``none``), infer the states
and pick the choice whose expected free energy is least (expected utility,
the information gain about the states and about ``A``: novelty); (2) after
the env's step, observe the outcomes with the choice known and learn ``A``.
Both JAX steps are compiled once per agent.

The discretisation (:data:`MODELS`):

| env | context factors (observation, bin edges) | choices | outcome modalities (bin edges) |
|---|---|---|---|
| LayerSplit-v0 | channel (obs 0: SNR / 30; 1/3, 2/3: 10 and 20 dB), load (obs 5; 1/3, 2/3), prompt (obs 1; 0.1, 0.3) | 5 splits: 0, L/4, L/2, 3L/4, L, each the nearest allowed | latency / deadline (0.5, 1: over 1 is a miss), energy share (0.5, 1.5), accuracy penalty (0.02, 0.1) |
| Routing-v0 (built-in workload) | topic (the one-hot features), cloud load (obs d+1; 0.5) | the k models | quality (0.5: wrong or right), cost x cost_weight (0.05, 0.2), overrun (0: none or some) |

Needs the ``aif`` extra (``pip install "offload-env[aif]"``: pymdp and JAX,
about 850 MB). Saved as ``weights.npz`` (``pA``) + ``agent.json``. Exports
for the edge router (``pomdp_efe``, numpy only): the binning rules live in
:mod:`offload_env.router.bins`, shared by the agent and the router.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from offload_env.router.bins import Argmax, Bins, bin_index, nearest_allowed

from .config import PymdpAIFConfig

__all__ = ["PymdpAIFConfig", "PymdpAIFAgent", "MODELS", "DiscreteModel"]


@dataclass(frozen=True)
class Modality:
    """An outcome modality: its name, how to read its value from ``info``, its bin edges and each bin's
    representative value and weight (C = -weight * representative value, per bin)."""

    name: str
    read: Callable[[dict], float]
    edges: tuple[float, ...]
    values: tuple[float, ...]  #: per bin (len(edges) + 1): what the bin stands for, in the reward's terms
    weight: float
    extra: tuple[float, ...] = ()  #: per bin: preference added on top (a deadline miss's penalty)

    def preferences(self) -> np.ndarray:
        extra = self.extra or (0.0,) * len(self.values)
        return np.array([-self.weight * v + e for v, e in zip(self.values, extra)], dtype=np.float32)


@dataclass(frozen=True)
class DiscreteModel:
    """The discretisation of one env (see the module docstring's table)."""

    context: tuple[tuple[str, Callable[[np.ndarray], int], int], ...]  #: (name, obs -> bin, bins)
    choices: int
    choose: Callable[[int, dict | None], Any]  #: (choice, info) -> the env's action
    outcomes: tuple[Modality, ...]
    #: each choice's target action, the nearest allowed taken (``_nearest_choice``): what an export needs
    targets: tuple[float, ...] | None = None


_bin = bin_index  # the one binning rule, shared with the router (offload_env.router.bins)


def _nearest_choice(targets, n_actions: int) -> Callable[[int, dict | None], int]:
    """(choice, info) -> the allowed action nearest the choice's target (every action where no mask allows one)."""
    targets = np.asarray(targets, dtype=np.float64)

    def choose(c: int, info: dict | None) -> int:
        mask = None if info is None else info.get("action_mask")
        allowed = np.arange(n_actions) if mask is None else np.flatnonzero(np.asarray(mask))
        if allowed.size == 0:
            allowed = np.arange(n_actions)
        return nearest_allowed(targets[c], allowed)
    return choose


def _layer_split(env) -> DiscreteModel:
    u = env.unwrapped
    s, L = u.scenario, u.num_layers
    energy_ref = s.energy_unit_j  # the reward's energy unit
    targets = (0.0, L / 4, L / 2, 3 * L / 4, float(L))
    return DiscreteModel(
        context=(("channel", Bins(0, (1 / 3, 2 / 3)), 3),
                 ("load", Bins(5, (1 / 3, 2 / 3)), 3),
                 ("prompt", Bins(1, (0.1, 0.3)), 3)),
        choices=5, choose=_nearest_choice(targets, L + 1), targets=targets,
        outcomes=(Modality("latency_per_deadline", lambda i: i["latency_s"] / i["deadline_s"], (0.5, 1.0),
                           (0.25, 0.75, 1.5), s.w_latency, (0.0, 0.0, -s.w_deadline_miss)),
                  Modality("energy_share", lambda i: i["edge_energy_j"] / energy_ref, (0.5, 1.5), (0.25, 1.0, 2.5),
                           s.w_energy),
                  Modality("accuracy_penalty", lambda i: i["accuracy_penalty"], (0.02, 0.1), (0.01, 0.06, 0.2),
                           s.w_accuracy)))


def _routing(env) -> DiscreteModel:
    u = env.unwrapped
    if u.table is not None:
        raise ValueError("pymdp_aif: on Routing-v0 it reads the built-in workload's topics (workload=None)")
    n_topics, d, k = int(u.scenario.n_topics), int(u.n_query_features), int(env.action_space.n)
    targets = tuple(float(c) for c in range(k))  # no action mask on Routing: the choice is the model
    return DiscreteModel(
        context=(("topic", Argmax(0, n_topics), n_topics),
                 ("cloud_load", Bins(d + 1, (0.5,)), 2)),
        choices=k, choose=_nearest_choice(targets, k), targets=targets,
        outcomes=(Modality("quality", lambda i: i["quality"], (0.5,), (0.0, 1.0), -1.0),
                  Modality("cost", lambda i: u.cost_weight * i["cost"], (0.05, 0.2), (0.025, 0.1, 0.4), 1.0),
                  Modality("overrun_s", lambda i: i["overrun_s"], (1e-9,), (0.0, 10.0), u.scenario.overrun_weight)))


#: Env id -> factory(env) -> DiscreteModel.
MODELS: dict[str, Callable[[Any], DiscreteModel]] = {
    "offload_env/LayerSplit-v0": _layer_split,
    "offload_env/Routing-v0": _routing,
}


class PymdpAIFAgent:
    """Discrete active inference with pymdp on LayerSplit-v0 (discrete) or Routing-v0 (built-in workload); see
    the module docstring."""

    algo = "pymdp_aif"

    def __init__(self, make_env: Callable[[], Any], *, seed: int = 0, name: str | None = None, **settings: Any):
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        try:
            import jax
            import jax.numpy as jnp
            from pymdp.agent import Agent
        except ImportError as err:
            raise ImportError(f"pymdp_aif needs the 'aif' extra (pip install 'offload-env[aif]'): {err}") from err

        self.config = PymdpAIFConfig(**settings)
        self.config.check()
        self.name, self.seed = name or self.algo, int(seed)
        env = make_env()
        env_id = getattr(env.spec, "id", None)
        if env_id not in MODELS:
            raise ValueError(f"env: pymdp_aif has a discretisation for {', '.join(MODELS)}, got {env_id!r}")
        if not hasattr(env.action_space, "n"):
            raise ValueError(f"pymdp_aif: needs a Discrete action space, the env has {env.action_space}")
        self.model = MODELS[env_id](env)
        self.env_id, self.obs_dim, self.n_actions = env_id, int(np.prod(env.observation_space.shape)), \
            int(env.action_space.n)
        env.close()
        m, cfg = self.model, self.config
        ctx_sizes = [n for _, _, n in m.context]
        k = m.choices
        n_ctx = len(ctx_sizes)
        noise = cfg.context_noise
        A, pA, A_deps = [], [], []
        for f, n in enumerate(ctx_sizes):  # context modalities: known, each reads its own factor
            a = np.full((n, n), noise / max(n - 1, 1), dtype=np.float32) if n > 1 else np.ones((1, 1), np.float32)
            np.fill_diagonal(a, 1.0 - noise if n > 1 else 1.0)
            A.append(jnp.asarray(a))
            pA.append(jnp.asarray(a * 1e6))  # known: counts so large that learning does not move them
            A_deps.append([f])
        all_factors = list(range(n_ctx + 1))
        self._outcome_bins = [len(o.edges) + 1 for o in m.outcomes]
        for bins in self._outcome_bins:  # outcome modalities: bin 0 is "none yet" (the start state), learned
            shape = (bins + 1, *ctx_sizes, k + 1)
            counts = np.full(shape, cfg.prior_count, dtype=np.float32)
            counts[0] = 1e-3 * cfg.prior_count  # a choice is never followed by "none"
            counts[..., 0] = 1e-3 * cfg.prior_count
            counts[0, ..., 0] = 1e3  # ...and the start state always is
            pA.append(jnp.asarray(counts))
            A.append(jnp.asarray(counts / counts.sum(axis=0, keepdims=True)))
            A_deps.append(all_factors)
        B = [jnp.asarray(np.eye(n, dtype=np.float32)[:, :, None]) for n in ctx_sizes]  # a request's context stays
        choice = np.zeros((k + 1, k + 1, k), dtype=np.float32)
        for a in range(k):
            choice[a + 1, :, a] = 1.0
        B.append(jnp.asarray(choice))
        C = [jnp.zeros(n) for n in ctx_sizes]
        for o in m.outcomes:
            pref = cfg.preference.get(o.name)
            values = o.preferences() if pref is None else np.asarray(pref, dtype=np.float32)
            if values.shape != (len(o.edges) + 1,) or not np.isfinite(values).all():
                raise ValueError(f"preference.{o.name}: expected {len(o.edges) + 1} finite numbers, got {pref!r}")
            C.append(jnp.asarray(np.concatenate([[0.0], values]).astype(np.float32)))
        unknown = sorted(set(cfg.preference) - {o.name for o in m.outcomes})
        if unknown:
            raise ValueError(f"preference.{unknown[0]}: expected one of {', '.join(o.name for o in m.outcomes)}")
        D = [jnp.ones(n) / n for n in ctx_sizes] + [jnp.asarray(np.eye(k + 1, dtype=np.float32)[0])]
        self._agent = Agent(A=A, B=B, C=C, D=D, pA=pA, A_dependencies=A_deps, B_dependencies=[[f] for f in
                            all_factors], num_controls=[1] * n_ctx + [k], control_fac_idx=[n_ctx], policy_len=1,
                            gamma=cfg.gamma, use_param_info_gain=cfg.novelty, use_states_info_gain=True,
                            learn_A=True, learn_B=False, action_selection="stochastic", batch_size=1)
        self._n_ctx = n_ctx
        self._key = jax.random.PRNGKey(self.seed)
        self._steps = 0
        self._compile()
        self._make_env = self._env = self._obs = self._info = None

    def _compile(self) -> None:
        import equinox as eqx
        import jax
        import jax.numpy as jnp

        def decide(agent, obs):
            qs = agent.infer_states(obs, empirical_prior=agent.D)
            q_pi, neg_efe = agent.infer_policies(qs)
            return qs, q_pi, neg_efe

        def learn(agent, obs, qs, action):
            prior = agent.update_empirical_prior(action, qs)
            qs2 = agent.infer_states(obs, empirical_prior=prior)
            return agent.infer_parameters(qs2, obs, action)

        self._decide = eqx.filter_jit(decide)
        self._learn = eqx.filter_jit(learn)
        self._jnp, self._jax = jnp, jax

    # ------------------------------------------------------------------ inference

    def _observation(self, obs, outcome_bins: list[int] | None):
        jnp = self._jnp
        ctx = [fn(np.asarray(obs)) for _, fn, _ in self.model.context]
        out = [0] * len(self.model.outcomes) if outcome_bins is None else [b + 1 for b in outcome_bins]
        return [jnp.array([[v]], dtype=jnp.int32) for v in ctx + out]

    def posterior(self, obs) -> tuple[list[np.ndarray], np.ndarray]:
        """The posterior over each factor and the negative expected free energy of each choice, for ``obs``."""
        qs, _, neg_efe = self._decide(self._agent, self._observation(obs, None))
        return [np.asarray(q[0, -1]) for q in qs], np.asarray(neg_efe[0])

    def _choice(self, obs, explore: bool) -> tuple[int, Any]:
        o = self._observation(obs, None)
        qs, q_pi, neg_efe = self._decide(self._agent, o)
        if explore:
            self._key, sub = self._jax.random.split(self._key)
            c = int(self._jax.random.categorical(sub, self._jnp.log(q_pi[0] + 1e-16)))
        else:
            c = int(np.argmax(np.asarray(neg_efe[0])))
        return c, qs

    # ------------------------------------------------------------------ protocol

    @property
    def num_timesteps(self) -> int:
        return self._steps

    def reset(self, env: Any = None) -> None:
        """Start of an evaluation episode: the learned likelihoods are kept."""

    def act(self, obs, info: dict | None = None):
        """The choice of least expected free energy, as the env's action."""
        c, _ = self._choice(obs, explore=False)
        return self.model.choose(c, info)

    def learn(self, make_env: Callable[[], Any] | None, budget: int, callback: Callable | None = None
              ) -> "PymdpAIFAgent":
        """Act (choices sampled from softmax(gamma * -G)) and learn A online until ``budget`` steps in all;
        ``callback(agent, info)`` after every step (returning False stops early)."""
        if make_env is not None and make_env is not self._make_env:
            self._make_env, self._env = make_env, make_env()
            self._obs, self._info = self._env.reset(seed=self.seed + self._steps)
        if self._env is None:
            raise RuntimeError(f"{self.name}: learn needs make_env the first time")
        jnp = self._jnp
        while self._steps < int(budget):
            c, qs = self._choice(self._obs, explore=True)
            obs, _reward, terminated, truncated, info = self._env.step(self.model.choose(c, self._info))
            bins = [_bin(o.read(info), o.edges) for o in self.model.outcomes]
            action = jnp.array([[0] * self._n_ctx + [c]], dtype=jnp.int32)
            self._agent = self._learn(self._agent, self._observation(self._obs, bins), qs, action)
            self._steps += 1
            self._obs, self._info = (obs, info) if not (terminated or truncated) else self._env.reset()
            if callback is not None and callback(self, info) is False:
                break
        return self

    def snapshot(self) -> "PymdpAIFAgent":
        import copy

        twin = copy.copy(self)
        twin._make_env = twin._env = twin._obs = twin._info = None
        return twin

    def save(self, folder: str | os.PathLike) -> Path:
        from .._arrays import save_arrays

        arrays = {f"pA.{m}": np.asarray(p) for m, p in enumerate(self._agent.pA)}
        arrays["key"] = np.asarray(self._key)  # a raw uint32 PRNGKey
        meta = {"algo": self.algo, "name": self.name, "seed": self.seed, "num_timesteps": self._steps,
                "config": dataclasses.asdict(self.config)}
        return save_arrays(folder, arrays, meta)

    @classmethod
    def load(cls, folder: str | os.PathLike, make_env: Callable[[], Any] | None = None, **_: Any
             ) -> "PymdpAIFAgent":
        """Read an agent written by :meth:`save` (no pickle); ``make_env`` builds its env (needed)."""
        from .._arrays import load_arrays

        arrays, meta = load_arrays(folder)
        if meta.get("algo") != cls.algo or make_env is None:
            raise ValueError(f"{folder}: expected a saved {cls.algo} agent and make_env, got algo "
                             f"{meta.get('algo')!r}")
        agent = cls(make_env, seed=meta["seed"], name=meta["name"], **meta["config"])
        jnp = agent._jnp
        pA = list(agent._agent.pA)
        A = list(agent._agent.A)
        for m, p in enumerate(pA):
            saved = arrays.get(f"pA.{m}")
            if saved is None or saved.shape != tuple(p.shape):
                raise ValueError(f"{folder}: pA.{m} missing or not of this env's model's shape {tuple(p.shape)}")
            pA[m] = jnp.asarray(saved)
            A[m] = jnp.asarray(saved / saved.sum(axis=1, keepdims=True))
        import equinox as eqx

        agent._agent = eqx.tree_at(lambda a: (a.pA, a.A), agent._agent, (pA, A))
        agent._key = jnp.asarray(arrays["key"])
        agent._steps = int(meta["num_timesteps"])
        return agent

    def export(self, path: str | os.PathLike, *, env_id: str, env_kwargs: dict | None = None) -> Path:
        """The pickle-free artifact for the edge router (``agents.export``): the binning, A, B, C, D, the policies
        and the EFE rule (``pomdp_efe``), as ``act`` decides."""
        from ..export import export

        return export(self, path, env_id=env_id, env_kwargs=env_kwargs)
