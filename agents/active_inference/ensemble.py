"""An ensemble of probabilistic MLPs: each member predicts a diagonal Gaussian over its targets (PETS-style).

All members run as one batched forward (weights ``[E, in, out]``). Inputs
and targets are standardised with statistics frozen at each fit; the
log-variance is soft-clamped between learned bounds (Chua et al. 2018,
"Deep reinforcement learning in a handful of trials using probabilistic
dynamics models"). Each member trains on its own bootstrap of the data.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["GaussianEnsemble"]


class _Linear(nn.Module):
    """E independent linear layers applied in one batched matmul: ``[E, N, in] -> [E, N, out]``."""

    def __init__(self, members: int, n_in: int, n_out: int, generator: torch.Generator):
        super().__init__()
        bound = 1.0 / math.sqrt(n_in)
        self.weight = nn.Parameter((torch.rand(members, n_in, n_out, generator=generator) * 2 - 1) * bound)
        self.bias = nn.Parameter((torch.rand(members, 1, n_out, generator=generator) * 2 - 1) * bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class GaussianEnsemble(nn.Module):
    """``members`` MLPs ``x -> N(mu(x), diag var(x))`` over ``n_out`` targets."""

    def __init__(self, n_in: int, n_out: int, *, members: int = 5, hidden: tuple[int, ...] = (128, 128),
                 seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(int(seed))
        sizes = (n_in, *hidden)
        self.layers = nn.ModuleList(_Linear(members, a, b, g) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = _Linear(members, sizes[-1], 2 * n_out, g)
        self.max_logvar = nn.Parameter(torch.full((n_out,), 0.5))
        self.min_logvar = nn.Parameter(torch.full((n_out,), -10.0))
        self.members, self.n_in, self.n_out = members, n_in, n_out
        for name in ("x_mean", "y_mean"):
            self.register_buffer(name, torch.zeros(n_in if name[0] == "x" else n_out))
        for name in ("x_std", "y_std"):
            self.register_buffer(name, torch.ones(n_in if name[0] == "x" else n_out))

    def _raw(self, x_std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised input ``[E, N, in]`` -> standardised mean and log-variance ``[E, N, out]``."""
        h = x_std
        for layer in self.layers:
            h = F.silu(layer(h))
        mu, logvar = self.head(h).chunk(2, dim=-1)
        logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mu, logvar

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``[N, in]`` (or ``[E, N, in]``: one batch per member) -> mean and variance ``[E, N, out]`` in the
        targets' units."""
        if x.dim() == 2:
            x = x.expand(self.members, *x.shape)
        mu, logvar = self._raw((x - self.x_mean) / self.x_std)
        return mu * self.y_std + self.y_mean, torch.exp(logvar) * self.y_std ** 2

    def fit(self, x: np.ndarray, y: np.ndarray, optimizer: torch.optim.Optimizer, *, steps: int, batch_size: int,
            rng: np.random.Generator, weight: np.ndarray | None = None) -> float:
        """``steps`` Adam steps of the Gaussian negative log-likelihood on bootstrap minibatches of ``(x, y)``;
        ``weight`` ``[N, out]`` (0/1) leaves out the targets a row does not have. Returns the last loss."""
        n = len(x)
        xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
        wt = torch.ones_like(yt) if weight is None else torch.as_tensor(weight, dtype=torch.float32)
        with torch.no_grad():  # statistics frozen for this fit (and for planning until the next one)
            self.x_mean.copy_(xt.mean(0))
            self.x_std.copy_(xt.std(0, unbiased=False).clamp_min(1e-6))
            counts = wt.sum(0).clamp_min(1.0)
            y_mean = (yt * wt).sum(0) / counts
            self.y_mean.copy_(y_mean)
            self.y_std.copy_(((((yt - y_mean) ** 2) * wt).sum(0) / counts).sqrt().clamp_min(1e-6))
        xs, ys = (xt - self.x_mean) / self.x_std, (yt - self.y_mean) / self.y_std
        loss_value = float("nan")
        for _ in range(int(steps)):
            idx = torch.as_tensor(rng.integers(0, n, size=(self.members, min(batch_size, n))))
            mu, logvar = self._raw(xs[idx])
            w = wt[idx]
            nll = (((mu - ys[idx]) ** 2) * torch.exp(-logvar) + logvar) * w
            loss = nll.sum() / w.sum().clamp_min(1.0) + 0.01 * (self.max_logvar.sum() - self.min_logvar.sum())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_value = loss.item()
        return loss_value
