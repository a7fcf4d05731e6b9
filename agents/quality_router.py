"""Quality router: learns each model's quality and cost as functions of the query once; the cost weight acts
only at decision time, so one learned model serves every cost weight lambda and every budget.

Per model ``a`` the router keeps

* a hierarchical mean quality per topic (the query's group, e.g. its MMLU
  subject, when the workload exposes one): ``(sum_a,g + kappa * m_a) /
  (n_a,g + kappa)``, shrunk with ``kappa = group_prior`` pseudo-observations
  towards the model's global mean ``m_a`` (itself from one pseudo-observation
  at 0.5);
* its mean cost ``k_a`` (0 before its first observation);
* ridge regressions of the quality residual (quality minus that mean) and of
  the cost residual, both on ``[x, 1]`` and sharing one design matrix
  (:class:`agents.bandits._Ridge`, Sherman-Morrison updates).

Predicted quality ``q_a = mean_a,g + theta_a . [x, 1]``; predicted cost
``c_a = max(0, k_a + theta_cost_a . [x, 1])``. The decision at cost weight
lambda is ``argmax_a q_a - lambda c_a`` (:func:`choose`), in the spirit of
MixLLM (Wang et al. 2025) and RouteLLM's threshold routers (Ong et al.
2024). Only the served model's quality and cost are observed (bandit
feedback). Exploration is Thompson sampling: :meth:`QualityRouter.act`
draws ``q~_a ~ N(q_a, v^2 s_a^2)`` once per query, with ``s_a^2`` a quarter
(the largest Bernoulli variance) of ``1 / (n_a,g + kappa) + (kappa / (n_a,g
+ kappa))^2 / n_a + [x, 1] A_a^-1 [x, 1]`` (the topic mean's, its prior
mean's and the ridge's variance per unit of noise). With ``budget_per_step``
the cost weight is ``lambda + nu / budget_per_step``, ``nu`` paced as in
:class:`agents.bandits.CostAwareLinUCB`.

Saved like the bandits (``path.npz`` + ``path.json``, no pickle).
"""

from __future__ import annotations

import numpy as np

from .bandits import _check_int, _check_number, _Ridge, _Saved

__all__ = ["QualityRouter", "choose"]


def choose(quality, cost, price: float) -> int:
    """The decision rule: ``argmax_a quality_a - price * cost_a`` (ties: the lowest index)."""
    return int(np.argmax(np.asarray(quality) - float(price) * np.asarray(cost)))


def _model_array(name: str) -> property:
    """An array of the router's ridge model, saved and loaded under the router's name for it."""
    return property(lambda self: getattr(self._model, name), lambda self, value: setattr(self._model, name, value))


class QualityRouter(_Saved):
    """Per-model quality and cost estimates of the query; ``argmax quality - lambda cost`` at any lambda."""

    _arrays = ("A_inv", "b", "theta", "counts", "b_cost", "theta_cost", "group_sum", "group_count", "total_sum",
               "total_count", "cost_sum", "nu")
    _params = ("n_arms", "n_features", "cost_weight", "n_groups", "group_prior", "l2", "v", "budget_per_step",
               "step_size", "seed")
    name = "quality-router"

    A_inv, b, theta, counts = (_model_array(k) for k in ("A_inv", "b", "theta", "counts"))

    def __init__(self, n_arms: int, n_features: int, cost_weight: float = 0.0, n_groups: int = 0,
                 group_prior: float = 10.0, l2: float = 30.0, v: float = 1.0, budget_per_step: float | None = None,
                 step_size: float = 0.01, seed: int | None = None):
        self.n_arms = _check_int("n_arms", n_arms, 1)
        self.n_features = _check_int("n_features", n_features, 1)
        self.cost_weight = _check_number("cost_weight", cost_weight)
        self.n_groups = _check_int("n_groups", n_groups, 0)
        self.group_prior = _check_number("group_prior", group_prior, 0.0, low_open=True)
        self.l2 = _check_number("l2", l2, 0.0, low_open=True)
        self.v = _check_number("v", v)
        self.budget_per_step = (None if budget_per_step is None
                                else _check_number("budget_per_step", budget_per_step, 0.0, low_open=True))
        self.step_size = _check_number("step_size", step_size)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        k = self.n_arms
        self._model = _Ridge(k, self.n_features + 1, self.l2)
        self.b_cost = np.zeros((k, self.n_features + 1))
        self.theta_cost = np.zeros((k, self.n_features + 1))
        self.group_sum = np.zeros((k, self.n_groups))
        self.group_count = np.zeros((k, self.n_groups))
        self.total_sum = np.full(k, 0.5)
        self.total_count = np.ones(k)
        self.cost_sum = np.zeros(k)
        self.nu = np.array(0.0)

    # ------------------------------------------------------------------ inputs

    def _z(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.n_features,):
            raise ValueError(f"x: expected a vector of {self.n_features} features, got shape {x.shape}")
        return np.append(x, 1.0)

    def _group(self, group) -> int | None:
        if group is None:
            return None
        if self.n_groups == 0:
            raise ValueError(f"group: expected None (the router has n_groups=0), got {group!r}")
        if isinstance(group, bool) or int(group) != group or not 0 <= int(group) < self.n_groups:
            raise ValueError(f"group: expected None or an integer in [0, {self.n_groups - 1}], got {group!r}")
        return int(group)

    def _base(self, g: int | None) -> tuple[np.ndarray, np.ndarray]:
        """(hierarchical mean quality, its variance per unit of outcome variance) of every model in group g."""
        mean = self.total_sum / self.total_count
        if g is None:
            return mean, 1.0 / self.total_count
        n = self.group_count[:, g] + self.group_prior
        shrink = self.group_prior / n
        return (self.group_sum[:, g] + self.group_prior * mean) / n, 1.0 / n + shrink ** 2 / self.total_count

    # ------------------------------------------------------------------ estimates and decisions

    def _estimates(self, z: np.ndarray, g: int | None, sample: bool) -> tuple[np.ndarray, np.ndarray]:
        base, var = self._base(g)
        quality = base + self.theta @ z
        if sample and self.v > 0:
            Az = self._model._all_Ax(z)
            sd = 0.5 * np.sqrt(var + np.maximum(Az @ z, 0.0))
            quality = quality + self.v * sd * self.rng.standard_normal(self.n_arms)
        return quality, np.maximum(self._mean_cost() + self.theta_cost @ z, 0.0)

    def _mean_cost(self) -> np.ndarray:
        return self.cost_sum / np.maximum(self.counts, 1)

    def estimates(self, x, group=None, sample: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(quality, cost) predicted for every model on query ``x`` of topic ``group``; ``sample``: a Thompson draw
        of the quality (moves the generator)."""
        return self._estimates(self._z(x), self._group(group), sample)

    def price(self, cost_weight: float | None = None) -> float:
        """The weight of cost at decision time: ``cost_weight`` (default the router's) plus the pacing price."""
        lam = self.cost_weight if cost_weight is None else _check_number("cost_weight", cost_weight)
        return lam + (float(self.nu) / self.budget_per_step if self.budget_per_step is not None else 0.0)

    def decide(self, x, group=None, cost_weight: float | None = None, sample: bool = False) -> int:
        """The model chosen at ``cost_weight`` (default the router's own), without exploring unless ``sample``."""
        quality, cost = self.estimates(x, group, sample)
        return choose(quality, cost, self.price(cost_weight))

    def act(self, x, group=None) -> int:
        """The served model: the decision at the router's cost weight on a Thompson draw of the quality."""
        return self.decide(x, group, sample=True)

    # ------------------------------------------------------------------ learning

    def update(self, x, arm: int, reward: float, cost: float = 0.0, group=None) -> None:
        """Learn the quality ``reward`` and the ``cost`` of ``arm`` on query ``x`` of topic ``group``."""
        z = self._z(x)
        arm = self._model._check_arm(arm)
        g = self._group(group)
        quality = float(reward)
        if not np.isfinite(quality):
            raise ValueError(f"reward: expected a finite quality, got {reward!r}")
        cost = _check_number("cost", cost)
        residual = quality - self._base(g)[0][arm]
        self._model.side_update(self.theta_cost, self.b_cost, z, arm, cost - self._mean_cost()[arm])
        self._model.update(z, arm, residual)
        self.cost_sum[arm] += cost
        if g is not None:
            self.group_sum[arm, g] += quality
            self.group_count[arm, g] += 1.0
        self.total_sum[arm] += quality
        self.total_count[arm] += 1.0
        if self.budget_per_step is not None:
            self.nu = np.array(max(0.0, float(self.nu) + self.step_size * (cost / self.budget_per_step - 1.0)))

    def decision_arrays(self) -> dict[str, np.ndarray]:
        """The arrays of the deterministic rule (:meth:`decide` without ``sample``), for the router artifact:
        ``topic_quality`` (k, n_groups + 1; the last column: no topic), ``theta``, ``theta_cost`` (k, d + 1) and
        ``mean_cost`` (k)."""
        table = np.stack([self._base(g)[0] for g in range(self.n_groups)] + [self._base(None)[0]], axis=1)
        return {"topic_quality": table, "theta": np.array(self.theta), "theta_cost": np.array(self.theta_cost),
                "mean_cost": self._mean_cost()}

    def flush(self) -> None:
        """Fold the ridge model's buffered rank-1 terms into its inverse design matrix (exact)."""
        self._model.flush()

    def save(self, path):
        self.flush()
        return super().save(path)
