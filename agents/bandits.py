"""Contextual-bandit routers (numpy) and the routing baselines.

Every router has ``act(x) -> arm`` (``x`` the observation, a 1-d float vector)
and ``update(x, arm, reward)``; the learners also ``save(path)`` to
``path.npz`` (arrays) + ``path.json`` (class, hyper-parameters, generator
state), written atomically, and ``load(path)`` them back with
``np.load(allow_pickle=False)``: no pickles.

Learners keep, per arm, the inverse of the ridge design matrix
``A = l2 I + sum x x^T`` and update it by Sherman-Morrison (``O(d^2)`` per
update, no matrix inversion):

* :class:`LinUCB`: disjoint LinUCB (Li et al. 2010, "A contextual-bandit
  approach to personalized news article recommendation", Alg. 1).
* :class:`LinTS`: linear Thompson sampling (Agrawal & Goyal 2013); it samples
  ``x . theta~`` ~ N(x . theta, v^2 x A^-1 x) per arm, which for the one
  context at hand has the law of ``x . theta~`` with theta~ ~ N(theta, v^2 A^-1).
* :class:`EpsilonGreedy`: ridge estimates, a uniformly random arm with
  probability epsilon.
* :class:`CostAwareLinUCB`: LinUCB on quality minus a Lagrange multiplier
  times the learned cost; the multiplier rises while spending runs above the
  budget per step and falls below it (projected dual descent, in the spirit
  of PerLLM's constrained UCB).

Baselines: :class:`FixedArm` (always-cheapest, always-best), :class:`RandomRouter`,
:class:`ThresholdRouter` (RouteLLM-style: a fitted logistic score, strong
model above a threshold) and :class:`OracleRouter` (privileged).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from offload_env.atomic import atomic_open

__all__ = [
    "LinUCB",
    "LinTS",
    "EpsilonGreedy",
    "CostAwareLinUCB",
    "FixedArm",
    "always_cheapest",
    "always_best",
    "RandomRouter",
    "ThresholdRouter",
    "share_threshold",
    "OracleRouter",
    "load",
    "FORMAT_VERSION",
]

FORMAT_VERSION = 1


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    return int(value)


def _check_number(name: str, value, low: float = 0.0, high: float | None = None, low_open: bool = False) -> float:
    v = float(value)
    if not np.isfinite(v) or v < low or (low_open and v == low) or (high is not None and v > high):
        rng = f"{'(' if low_open else '['}{low:g}, {'inf)' if high is None else f'{high:g}]'}"
        raise ValueError(f"{name}: expected a number in {rng}, got {value!r}")
    return v


def _paths(path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (".npz", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".npz"), p.with_name(p.name + ".json")


def _atomic_write(path: Path, write) -> None:
    """Write a file atomically: ``write(fh)`` fills a binary file handle."""
    with atomic_open(path, "wb") as fh:
        write(fh)


class _Saved:
    """save/load of a router: arrays to .npz, the rest to .json (never pickle)."""

    _arrays: tuple[str, ...] = ()
    _params: tuple[str, ...] = ()

    def save(self, path) -> tuple[Path, Path]:
        """Write ``path.npz`` and ``path.json`` atomically; return their paths."""
        npz, meta = _paths(path)
        arrays = {k: np.asarray(getattr(self, k)) for k in self._arrays}
        state = {"format_version": FORMAT_VERSION, "class": type(self).__name__,
                 "params": {k: getattr(self, k) for k in self._params}, "state": self._extra_state()}
        _atomic_write(npz, lambda fh: np.savez(fh, **arrays))
        _atomic_write(meta, lambda fh: fh.write(json.dumps(state, indent=1).encode("utf-8")))
        return npz, meta

    def _extra_state(self) -> dict:
        rng = getattr(self, "rng", None)
        return {"rng": rng.bit_generator.state} if rng is not None else {}

    def _restore_extra(self, state: dict) -> None:
        if "rng" in state:
            self.rng.bit_generator.state = state["rng"]

    @classmethod
    def load(cls, path):
        """Read a router written by :meth:`save` (``cls`` must match the saved class)."""
        npz, meta = _paths(path)
        state = json.loads(meta.read_text(encoding="utf-8"))
        if state.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{meta}: format_version: expected {FORMAT_VERSION}, got {state.get('format_version')!r}")
        name = state.get("class")
        target = _CLASSES.get(name) if cls is _Saved else cls
        if target is None or target.__name__ != name:
            raise ValueError(f"{meta}: class: expected {cls.__name__ if cls is not _Saved else 'a router'}, "
                             f"got {name!r}")
        obj = target(**state["params"])
        with np.load(npz, allow_pickle=False) as data:
            for k in target._arrays:
                if k not in data:  # e.g. a QualityRouter saved before its cost model had its own design matrix
                    raise ValueError(f"{npz}: expected an array {k!r}; a {name} saved by an earlier version "
                                     "of offload-env lacks it: train it again")
                setattr(obj, k, np.array(data[k]))
        obj._restore_extra(state.get("state", {}))
        return obj


def load(path):
    """Read any router written by ``save`` (the class is read from ``path.json``)."""
    return _Saved.load.__func__(_Saved, path)


# --------------------------------------------------------------------------
# Linear learners


#: Large contexts buffer this many rank-1 updates per arm before applying them to the stored inverse
#: (one matrix product instead of one pass over the d x d matrix per update); small ones apply at once.
DELAYED_RANK = 8
DELAY_MIN_FEATURES = 64


class _Ridge(_Saved):
    """Per-arm ridge regression with Sherman-Morrison updates of each arm's inverse design matrix.

    The inverse of arm a is ``A_inv[a] - U[a] diag(s[a]) U[a]^T``: the last
    few rank-1 Sherman-Morrison terms ``u u^T / (1 + x^T u)`` wait in ``U``
    and ``s`` (d >= DELAY_MIN_FEATURES) and are folded into ``A_inv`` every
    ``DELAYED_RANK`` updates, by :meth:`flush` and before saving.
    """

    _arrays = ("A_inv", "b", "theta", "counts")
    name = "ridge"

    def __init__(self, n_arms: int, n_features: int, l2: float = 1.0):
        self.n_arms = _check_int("n_arms", n_arms, 1)
        self.n_features = _check_int("n_features", n_features, 1)
        self.l2 = _check_number("l2", l2, 0.0, low_open=True)
        k, d = self.n_arms, self.n_features
        self.A_inv = np.repeat((np.eye(d) / self.l2)[None], k, axis=0)
        self.b = np.zeros((k, d))
        self.theta = np.zeros((k, d))
        self.counts = np.zeros(k, dtype=np.int64)
        self._rank = DELAYED_RANK if d >= DELAY_MIN_FEATURES else 0
        self._U = np.zeros((k, d, self._rank))
        self._s = np.zeros((k, self._rank))
        self._pending = np.zeros(k, dtype=np.int64)
        self._cache_x: np.ndarray | None = None
        self._cache_Ax: np.ndarray | None = None

    def _vector(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.n_features,):
            raise ValueError(f"x: expected a vector of {self.n_features} features, got shape {x.shape}")
        return x

    def _check_arm(self, arm) -> int:
        if int(arm) != arm or not 0 <= int(arm) < self.n_arms:
            raise ValueError(f"arm: expected an integer in [0, {self.n_arms - 1}], got {arm!r}")
        return int(arm)

    def _all_Ax(self, x: np.ndarray) -> np.ndarray:
        """A_a^-1 x for every arm, (k, d), cached for the update that follows."""
        Ax = (self.A_inv.reshape(-1, self.n_features) @ x).reshape(self.n_arms, self.n_features)
        if self._rank and self._pending.any():
            Ax -= (self._U @ ((x @ self._U) * self._s)[..., None])[..., 0]
        self._cache_x, self._cache_Ax = x, Ax
        return Ax

    def _arm_Ax(self, x: np.ndarray, arm: int) -> np.ndarray:
        if self._cache_x is not None and (self._cache_x is x or np.array_equal(self._cache_x, x)):
            return self._cache_Ax[arm]
        Ax = self.A_inv[arm] @ x
        if self._rank and self._pending[arm]:
            Ax -= self._U[arm] @ ((x @ self._U[arm]) * self._s[arm])
        return Ax

    def flush(self) -> None:
        """Fold the buffered rank-1 terms into ``A_inv`` (exact: ``A_inv`` is then each arm's inverse)."""
        for arm in np.flatnonzero(self._pending):
            self._flush_arm(arm)

    def _flush_arm(self, arm: int) -> None:
        U = self._U[arm]
        self.A_inv[arm] -= (U * self._s[arm]) @ U.T
        U[:] = 0.0
        self._s[arm] = 0.0
        self._pending[arm] = 0

    def save(self, path):
        self.flush()
        return super().save(path)

    def side_update(self, theta: np.ndarray, b: np.ndarray, x, arm: int, target: float) -> None:
        """Add (x, target) to a second regression ``theta``, ``b`` of ``arm`` on the same design matrix.

        Call it before :meth:`update` adds ``x`` to the matrix (Sherman-Morrison on the matrix before ``x``).
        """
        Ax = self._arm_Ax(x, arm)
        theta[arm] += Ax * ((target - theta[arm] @ x) / (1.0 + x @ Ax))
        b[arm] += target * x

    def update(self, x, arm: int, reward: float, weight: float = 1.0) -> None:
        """Add the observation (x, reward) to ``arm``'s ridge regression, with ``weight`` (A += weight x x^T)."""
        x = self._vector(x)
        arm = self._check_arm(arm)
        reward = float(reward)
        Ax = self._arm_Ax(x, arm)
        denom = 1.0 + weight * (x @ Ax)
        residual = reward - self.theta[arm] @ x
        if self._rank:
            j = self._pending[arm]
            self._U[arm, :, j] = Ax
            self._s[arm, j] = weight / denom
            self._pending[arm] += 1
        else:
            self.A_inv[arm] -= np.outer(Ax, Ax * weight / denom)
        self.b[arm] += (weight * reward) * x
        self.theta[arm] += Ax * (weight * residual / denom)  # = A'^-1 b' (Sherman-Morrison)
        self.counts[arm] += 1
        self._cache_x = self._cache_Ax = None
        if self._rank and self._pending[arm] == self._rank:
            self._flush_arm(arm)


class LinUCB(_Ridge):
    """Disjoint LinUCB: the arm maximising ``x . theta_a + alpha sqrt(x A_a^-1 x)`` (ties: lowest index)."""

    _params = ("n_arms", "n_features", "alpha", "l2")
    name = "LinUCB"

    def __init__(self, n_arms: int, n_features: int, alpha: float = 1.0, l2: float = 1.0):
        super().__init__(n_arms, n_features, l2)
        self.alpha = _check_number("alpha", alpha)

    def scores(self, x) -> np.ndarray:
        """Upper confidence bound of every arm."""
        x = self._vector(x)
        Ax = self._all_Ax(x)
        return self.theta @ x + self.alpha * np.sqrt(np.maximum(Ax @ x, 0.0))

    def act(self, x) -> int:
        return int(np.argmax(self.scores(x)))


class LinTS(_Ridge):
    """Linear Thompson sampling: the arm with the largest ``x . theta_a + v sqrt(x A_a^-1 x) z_a``, z ~ N(0, 1)."""

    _params = ("n_arms", "n_features", "v", "l2", "seed")
    name = "LinTS"

    def __init__(self, n_arms: int, n_features: int, v: float = 0.5, l2: float = 1.0, seed: int | None = None):
        super().__init__(n_arms, n_features, l2)
        self.v = _check_number("v", v)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def act(self, x) -> int:
        x = self._vector(x)
        Ax = self._all_Ax(x)
        sd = np.sqrt(np.maximum(Ax @ x, 0.0))
        return int(np.argmax(self.theta @ x + self.v * sd * self.rng.standard_normal(self.n_arms)))


class EpsilonGreedy(_Ridge):
    """With probability epsilon a uniformly random arm, else the best ridge estimate ``x . theta_a``."""

    _params = ("n_arms", "n_features", "epsilon", "l2", "seed")
    name = "eps-greedy"

    def __init__(self, n_arms: int, n_features: int, epsilon: float = 0.05, l2: float = 1.0,
                 seed: int | None = None):
        super().__init__(n_arms, n_features, l2)
        self.epsilon = _check_number("epsilon", epsilon, 0.0, 1.0)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def act(self, x) -> int:
        x = self._vector(x)
        if self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.n_arms))
        return int(np.argmax(self.theta @ x))


class CostAwareLinUCB(LinUCB):
    """LinUCB on quality with a Lagrange multiplier pacing a budget per step.

    Picks ``argmax_a UCB_quality(a) - nu * cost_hat(a) / budget_per_step``
    where ``cost_hat`` is a ridge estimate of the arm's cost (sharing the
    arm's design matrix). After each query ``nu <- max(0, nu + step_size *
    (cost / budget_per_step - 1))``: spending above the budget raises the
    price of costly arms, spending below lowers it. ``update`` takes the
    quality and the cost of the served query separately.
    """

    _arrays = _Ridge._arrays + ("b_cost", "theta_cost", "nu")
    _params = ("n_arms", "n_features", "budget_per_step", "alpha", "l2", "step_size", "initial_nu")
    name = "CostAwareLinUCB"

    def __init__(self, n_arms: int, n_features: int, budget_per_step: float, alpha: float = 1.0, l2: float = 1.0,
                 step_size: float = 0.01, initial_nu: float = 0.0):
        super().__init__(n_arms, n_features, alpha, l2)
        self.budget_per_step = _check_number("budget_per_step", budget_per_step, 0.0, low_open=True)
        self.step_size = _check_number("step_size", step_size)
        self.initial_nu = _check_number("initial_nu", initial_nu)
        self.b_cost = np.zeros((self.n_arms, self.n_features))
        self.theta_cost = np.zeros((self.n_arms, self.n_features))
        self.nu = np.array(self.initial_nu)

    def scores(self, x) -> np.ndarray:
        ucb = super().scores(x)
        cost = np.maximum(self.theta_cost @ self._vector(x), 0.0)
        return ucb - float(self.nu) * cost / self.budget_per_step

    def update(self, x, arm: int, reward: float, cost: float = 0.0) -> None:
        """Learn quality ``reward`` and ``cost`` of ``arm`` at ``x``; move the multiplier."""
        x = self._vector(x)
        arm = self._check_arm(arm)
        cost = _check_number("cost", cost)
        self.side_update(self.theta_cost, self.b_cost, x, arm, cost)
        super().update(x, arm, reward)
        self.nu = np.array(max(0.0, float(self.nu) + self.step_size * (cost / self.budget_per_step - 1.0)))


# --------------------------------------------------------------------------
# Baselines


class FixedArm:
    """Always the same arm (always-cheapest, always-best)."""

    def __init__(self, arm: int, name: str | None = None):
        self.arm = int(arm)
        self.name = name or f"always-{self.arm}"

    def act(self, x) -> int:
        return self.arm

    def update(self, x, arm: int, reward: float) -> None:
        pass


def always_cheapest(mean_costs: Sequence[float]) -> FixedArm:
    """The arm with the lowest mean cost (e.g. ``RoutingEnv.mean_cost``)."""
    return FixedArm(int(np.argmin(mean_costs)), "always-cheapest")


def always_best(mean_quality: Sequence[float]) -> FixedArm:
    """The arm with the highest mean quality (e.g. ``RoutingEnv.published_accuracy``)."""
    return FixedArm(int(np.argmax(mean_quality)), "always-best")


class RandomRouter:
    """The strong arm with probability ``p``, else the weak arm (RouteLLM's random baseline)."""

    def __init__(self, p: float, strong: int, weak: int, seed: int | None = None):
        self.p = _check_number("p", p, 0.0, 1.0)
        self.strong, self.weak = int(strong), int(weak)
        self.rng = np.random.default_rng(seed)
        self.name = f"random(p={self.p:g})"

    def act(self, x) -> int:
        return self.strong if self.rng.random() < self.p else self.weak

    def update(self, x, arm: int, reward: float) -> None:
        pass


def share_threshold(scores, share: float) -> float:
    """The threshold at which ``score >= threshold`` holds for ``share`` of ``scores`` (ties: more than that)."""
    share = _check_number("share", share, 0.0, 1.0)
    s = np.asarray(scores, dtype=np.float64)
    return float(np.quantile(s, 1.0 - share)) if share > 0 else float(np.nextafter(s.max(), np.inf))


class ThresholdRouter(_Saved):
    """RouteLLM-style: the strong arm when a fitted score of "the weak model fails" reaches ``threshold``.

    :meth:`fit` learns an L2-regularised logistic regression of
    ``[quality_weak < quality_strong]`` on features (Newton's method);
    :meth:`threshold_for_share` picks the threshold that sends a given share
    of the training queries to the strong arm.
    """

    _arrays = ("weights",)
    _params = ("n_features", "strong", "weak", "threshold", "l2")
    name = "threshold"

    def __init__(self, n_features: int, strong: int, weak: int, threshold: float = 0.5, l2: float = 1.0):
        self.n_features = _check_int("n_features", n_features, 1)
        self.strong, self.weak = int(strong), int(weak)
        self.threshold = _check_number("threshold", threshold, 0.0, 1.0)
        self.l2 = _check_number("l2", l2, 0.0, low_open=True)
        self.weights = np.zeros(self.n_features)

    def score(self, X) -> np.ndarray:
        """Fitted probability that the weak model fails where the strong one succeeds."""
        z = np.asarray(X, dtype=np.float64) @ self.weights
        return 0.5 * (1.0 + np.tanh(0.5 * z))

    def fit(self, X, quality_weak, quality_strong, iterations: int = 25) -> "ThresholdRouter":
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X: expected a (n, {self.n_features}) matrix, got shape {X.shape}")
        y = (np.asarray(quality_weak) < np.asarray(quality_strong)).astype(np.float64)
        w = np.zeros(self.n_features)
        for _ in range(iterations):
            p = 0.5 * (1.0 + np.tanh(0.5 * (X @ w)))
            grad = X.T @ (p - y) + self.l2 * w
            hess = (X * (p * (1.0 - p))[:, None]).T @ X + self.l2 * np.eye(self.n_features)
            step = np.linalg.solve(hess, grad)
            w -= step
            if np.max(np.abs(step)) < 1e-10:
                break
        self.weights = w
        return self

    def threshold_for_share(self, X, share: float) -> float:
        """Set and return the threshold that routes ``share`` of ``X`` to the strong arm."""
        self.threshold = share_threshold(self.score(X), share)
        return self.threshold

    def act(self, x) -> int:
        return self.strong if float(self.score(x)) >= self.threshold else self.weak

    def update(self, x, arm: int, reward: float) -> None:
        pass


class OracleRouter:
    """The best model in hindsight for the current query. PRIVILEGED: reads the env's hidden outcomes.

    For regret and upper bounds only; never a deployable router.
    """

    name = "oracle (privileged)"

    def __init__(self, env):
        self.env = env.unwrapped

    def act(self, x=None) -> int:
        return int(self.env.oracle_action())

    def update(self, x, arm: int, reward: float) -> None:
        pass


_CLASSES = {c.__name__: c for c in (LinUCB, LinTS, EpsilonGreedy, CostAwareLinUCB, ThresholdRouter)}
