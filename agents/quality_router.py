"""Quality router: learns each model's quality and cost as functions of the query once; the cost weight acts
only at decision time, so one learned model serves every cost weight lambda and every budget.

Per model ``a`` the router keeps

* a hierarchical mean quality per topic (the query's group, e.g. its MMLU
  subject, when the workload exposes one): ``mean_a,g = (sum_a,g + kappa *
  m_a) / (n_a,g + kappa)``, shrunk with ``kappa = group_prior``
  pseudo-observations towards the model's global mean ``m_a`` (itself from
  one pseudo-observation at 0.5);
* its mean cost ``k_a`` (0 before its first observation; the cost residual
  of an observation is taken from the mean with it, so a model of constant
  cost has a zero cost regression);
* a regression of the quality on ``z = [x, 1]`` around the topic's term, and
  a ridge regression of the cost residual (cost minus ``k_a``) on ``z``, each
  with its own design matrix (:class:`agents.bandits._Ridge`, Sherman-Morrison
  updates).

The quality's ``link`` is ``logistic`` (the default): ``q_a =
sigmoid(logit(mean_a,g) + theta_a . z)`` (the mean clipped to [0.02, 0.98]),
``theta_a`` fitted online by the extended Kalman filter of a Bayesian
logistic regression (one Newton step per observation: the design matrix
gains ``w z z^T`` with ``w = p (1 - p)``, ``theta += A^-1 z (quality - p)``;
a fractional logit: qualities in [0, 1], a penalty below 0 pulls towards 0);
or ``identity``: ``q_a = mean_a,g + theta_a . z``, ``theta_a`` the ridge
regression of the quality minus the topic mean. Predicted cost ``c_a =
max(0, k_a + theta_cost_a . z)``. The decision at cost weight lambda is
``argmax_a q_a - lambda c_a`` (:func:`choose`), in the spirit of MixLLM (Wang
et al. 2025) and RouteLLM's threshold routers (Ong et al. 2024). Only the
served model's quality and cost are observed (bandit feedback). Exploration
is Thompson sampling: :meth:`QualityRouter.act` draws the quality's
link-space score ``s_a`` from ``N(s_a, v^2 sd_a^2)`` once per query; ``sd_a^2``
is the topic term's variance (``u = 1 / (n_a,g + kappa) + (kappa / (n_a,g +
kappa))^2 / n_a`` per unit of outcome variance, a quarter of it: the largest
Bernoulli variance; logistic: by the delta method, ``u / (4 (mean (1 -
mean))^2)``) plus the regression's ``z A_a^-1 z`` (identity: a quarter of it).
With ``budget_per_step`` the cost weight is ``lambda + nu / budget_per_step``,
``nu`` paced as in :class:`agents.bandits.CostAwareLinUCB`.

Saved like the bandits (``path.npz`` + ``path.json``, no pickle).
"""

from __future__ import annotations

import numpy as np

from .bandits import _check_int, _check_number, _Ridge, _Saved

__all__ = ["QualityRouter", "choose", "LINKS"]

#: The quality's link functions (the first: the default).
LINKS = ("logistic", "identity")
_CLIP = 0.02  #: topic means are clipped to [_CLIP, 1 - _CLIP] before the logit
_MIN_WEIGHT = 1e-4  #: the least Newton weight p (1 - p) of a logistic update


def sigmoid(s):
    """The logistic link's inverse, as the router artifact computes it."""
    return 1.0 / (1.0 + np.exp(-s))


def choose(quality, cost, price: float) -> int:
    """The decision rule: ``argmax_a quality_a - price * cost_a`` (ties: the lowest index)."""
    return int(np.argmax(np.asarray(quality) - float(price) * np.asarray(cost)))


def _model_array(name: str, model: str = "_model") -> property:
    """An array of one of the router's ridge models, saved and loaded under the router's name for it."""
    return property(lambda self: getattr(getattr(self, model), name),
                    lambda self, value: setattr(getattr(self, model), name, value))


class QualityRouter(_Saved):
    """Per-model quality and cost estimates of the query; ``argmax quality - lambda cost`` at any lambda."""

    _arrays = ("A_inv", "b", "theta", "counts", "cost_A_inv", "b_cost", "theta_cost", "group_sum", "group_count",
               "total_sum", "total_count", "cost_sum", "nu")
    _params = ("n_arms", "n_features", "cost_weight", "n_groups", "group_prior", "l2", "v", "link",
               "budget_per_step", "step_size", "seed")
    name = "quality-router"

    A_inv, b, theta, counts = (_model_array(k) for k in ("A_inv", "b", "theta", "counts"))
    cost_A_inv, b_cost, theta_cost = (_model_array(k, "_cost_model") for k in ("A_inv", "b", "theta"))

    def __init__(self, n_arms: int, n_features: int, cost_weight: float = 0.0, n_groups: int = 0,
                 group_prior: float = 10.0, l2: float = 10.0, v: float = 1.0, link: str = "logistic",
                 budget_per_step: float | None = None, step_size: float = 0.01, seed: int | None = None):
        self.n_arms = _check_int("n_arms", n_arms, 1)
        self.n_features = _check_int("n_features", n_features, 1)
        self.cost_weight = _check_number("cost_weight", cost_weight)
        self.n_groups = _check_int("n_groups", n_groups, 0)
        self.group_prior = _check_number("group_prior", group_prior, 0.0, low_open=True)
        self.l2 = _check_number("l2", l2, 0.0, low_open=True)
        self.v = _check_number("v", v)
        if link not in LINKS:
            raise ValueError(f"link: expected one of {', '.join(LINKS)}, got {link!r}")
        self.link = link
        self.budget_per_step = (None if budget_per_step is None
                                else _check_number("budget_per_step", budget_per_step, 0.0, low_open=True))
        self.step_size = _check_number("step_size", step_size)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        k = self.n_arms
        self._model = _Ridge(k, self.n_features + 1, self.l2)
        self._cost_model = _Ridge(k, self.n_features + 1, self.l2)
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

    def _topic_term(self, g: int | None) -> tuple[np.ndarray, np.ndarray]:
        """(the topic's term of every model's quality score in link space, its variance there)."""
        base, var = self._base(g)
        if self.link == "identity":
            return base, 0.25 * var
        mean = np.clip(base, _CLIP, 1.0 - _CLIP)
        return np.log(mean / (1.0 - mean)), var / (4.0 * (mean * (1.0 - mean)) ** 2)

    def _estimates(self, z: np.ndarray, g: int | None, sample: bool) -> tuple[np.ndarray, np.ndarray]:
        term, var = self._topic_term(g)
        score = term + self.theta @ z
        if sample and self.v > 0:
            Az = self._model._all_Ax(z)
            ridge = np.maximum(Az @ z, 0.0) * (0.25 if self.link == "identity" else 1.0)
            score = score + self.v * np.sqrt(var + ridge) * self.rng.standard_normal(self.n_arms)
        quality = score if self.link == "identity" else sigmoid(score)
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
        self.cost_sum[arm] += cost  # the residual is taken from the mean cost with this observation in it
        self._cost_model.update(z, arm, cost - self.cost_sum[arm] / (self.counts[arm] + 1))
        term = self._topic_term(g)[0][arm]
        if self.link == "identity":
            self._model.update(z, arm, quality - term)
        else:  # one Newton step of the logistic regression: a weighted ridge update (see the docstring)
            fitted = float(self.theta[arm] @ z)
            p = float(sigmoid(term + fitted))
            w = max(p * (1.0 - p), _MIN_WEIGHT)
            self._model.update(z, arm, fitted + (quality - p) / w, weight=w)
        if g is not None:
            self.group_sum[arm, g] += quality
            self.group_count[arm, g] += 1.0
        self.total_sum[arm] += quality
        self.total_count[arm] += 1.0
        if self.budget_per_step is not None:
            self.nu = np.array(max(0.0, float(self.nu) + self.step_size * (cost / self.budget_per_step - 1.0)))

    def decision_arrays(self) -> dict[str, np.ndarray]:
        """The arrays of the deterministic rule (:meth:`decide` without ``sample``), for the router artifact:
        ``topic_term`` (k, n_groups + 1: the topic's term of the quality score in link space; the last column: no
        topic), ``theta``, ``theta_cost`` (k, d + 1) and ``mean_cost`` (k)."""
        table = np.stack([self._topic_term(g)[0] for g in range(self.n_groups)] + [self._topic_term(None)[0]], axis=1)
        return {"topic_term": table, "theta": np.array(self.theta), "theta_cost": np.array(self.theta_cost),
                "mean_cost": self._mean_cost()}

    def flush(self) -> None:
        """Fold the ridge models' buffered rank-1 terms into their inverse design matrices (exact)."""
        self._model.flush()
        self._cost_model.flush()

    def save(self, path):
        self.flush()
        return super().save(path)
