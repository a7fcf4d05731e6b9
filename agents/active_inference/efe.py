"""Expected free energy of a planned action, from an ensemble's Gaussian predictions (Tschantz et al. 2020).

For one candidate action (sequence), each of the E ensemble members
predicts a diagonal Gaussian over the K outcomes of the request: means
``mu[e, k]``, variances ``var[e, k]``. The expected free energy that the
agent minimises is

    G = - extrinsic - epistemic_weight * information_gain

``extrinsic`` is the expected log-probability of the outcomes under the
prior preference. The preference is a Boltzmann distribution over the
outcomes, ``log p~(o) = -sum_j w_j o_j + const`` (``w_j`` > 0 for an
outcome to avoid, < 0 for one to seek), so its expectation under the
predictive mixture is ``-w . mean_e(mu_e)``: exact, no sampling.

``information_gain`` is the information the outcomes would carry about the
outcome model: the mutual information between the outcome and the ensemble
member, ``H[mixture] - mean_e H[member e]``. The mixture's entropy has no
closed form; it is approximated by that of the moment-matched Gaussian (per
outcome: ``var_total = mean_e var_e + var_e(mu_e)``), which gives
``0.5 * sum_k (log var_total_k - mean_e log var_e_k)`` >= 0, zero when the
members agree. A Gaussian has the largest entropy for its variance, so this
is an upper bound on the mutual information. (Tschantz et al. estimate the
same term with a kernel density estimate.) ``floor`` is added to every
variance first: a near-deterministic outcome (a cost fixed by the model
chosen) would otherwise turn a tiny disagreement of the means into a large
gain. The agent's observation predictions carry no preference and are
left out: here the next request is drawn by the env whatever the action,
and the members' disagreement about it would only add noise to the choice.
"""

from __future__ import annotations

import torch

__all__ = ["extrinsic_value", "information_gain", "expected_free_energy"]


def extrinsic_value(mu: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``E[log p~(o)]`` (up to its constant) of the outcomes predicted by ``mu[..., E, D]`` (their means)."""
    return -(mu.mean(dim=-2) * weights).sum(dim=-1)


def information_gain(mu: torch.Tensor, var: torch.Tensor, floor: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Moment-matched mutual information between the outcome and the ensemble member, in nats: ``[..., E, K] ->
    [...]``; ``floor`` (a number or ``[K]``) is added to the variances."""
    var = var + floor
    total = var.mean(dim=-2) + mu.var(dim=-2, unbiased=False)
    return 0.5 * (torch.log(total) - torch.log(var).mean(dim=-2)).sum(dim=-1)


def expected_free_energy(mu: torch.Tensor, var: torch.Tensor, weights: torch.Tensor, epistemic_weight: float,
                         floor: torch.Tensor | float = 0.0) -> torch.Tensor:
    """``G`` of each candidate from the outcomes' predictions ``mu``, ``var`` ``[..., E, K]``."""
    return -extrinsic_value(mu, weights) - epistemic_weight * information_gain(mu, var, floor)
