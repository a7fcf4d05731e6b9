"""The active-inference agents' settings (``hyperparams`` of an experiment config), checked without importing
torch or JAX."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["DeepAIFConfig", "PymdpAIFConfig"]


@dataclass
class DeepAIFConfig:
    """The deep active-inference agent's settings (``hyperparams`` of an experiment config)."""

    members: int = 5  #: ensemble members
    hidden: tuple[int, ...] = (128, 128)  #: hidden layer widths of each member
    horizon: int = 1  #: planning horizon in steps
    epistemic_weight: float = 1.0  #: weight of the information gain in the expected free energy
    information_floor: float = 0.05  #: disagreement below this share of an outcome's spread counts for nothing
    preference: dict = field(default_factory=dict)  #: outcome name -> preference weight (default: the reward's)
    learning_starts: int = 500  #: steps of uniform actions before the first fit
    train_every: int = 250  #: steps between fits
    gradient_steps: int = 100  #: Adam steps per fit
    batch_size: int = 256
    learning_rate: float = 1e-3
    buffer_size: int = 100_000  #: transitions kept (the oldest are dropped)
    cem_population: int = 200  #: Box actions: candidate sequences per CEM iteration
    cem_elites: int = 20
    cem_iterations: int = 4

    def check(self) -> None:
        def need(ok: bool, key: str, expected: str) -> None:
            if not ok:
                raise ValueError(f"{key}: expected {expected}, got {getattr(self, key)!r}")

        def is_int(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        for key in ("members", "horizon", "train_every", "gradient_steps", "batch_size", "buffer_size",
                    "cem_population", "cem_elites", "cem_iterations"):
            need(is_int(getattr(self, key)) and getattr(self, key) >= 1, key, "an integer >= 1")
        need(is_int(self.learning_starts) and self.learning_starts >= 0, "learning_starts", "an integer >= 0")
        need(self.members <= 64, "members", "at most 64")
        need(self.horizon <= 50, "horizon", "at most 50")
        need(self.cem_elites <= self.cem_population, "cem_elites", f"at most cem_population "
             f"({self.cem_population})")
        need(isinstance(self.hidden, (tuple, list)) and len(self.hidden) >= 1
             and all(is_int(h) and 1 <= h <= 4096 for h in self.hidden), "hidden",
             "a list of 1 or more layer widths in [1, 4096]")
        for key in ("epistemic_weight", "information_floor", "learning_rate"):
            v = getattr(self, key)
            positive = key == "learning_rate"
            need(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                 and (v > 0 if positive else v >= 0), key, "a finite number > 0" if positive else "a finite number >= 0")
        need(isinstance(self.preference, dict) and all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for k, v in self.preference.items()), "preference", "a mapping of outcome names to finite numbers")


@dataclass
class PymdpAIFConfig:
    """The pymdp agent's settings (``hyperparams`` of an experiment config)."""

    context_noise: float = 0.05  #: probability mass of a context observation on the other bins
    prior_count: float = 1.0  #: flat Dirichlet prior of the learned outcome likelihoods
    learning_rate: float = 1.0  #: pymdp's lr_pA
    gamma: float = 16.0  #: policy precision (softmax over -G while learning)
    novelty: bool = True  #: the information gain about A (use_param_info_gain)
    preference: dict = field(default_factory=dict)  #: modality name -> preference per bin (overrides C)

    def check(self) -> None:
        def number(key, low, high=math.inf, open_low=False):
            v = getattr(self, key)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and \
                (v > low if open_low else v >= low) and v <= high
            if not ok:
                raise ValueError(f"{key}: expected a finite number in {'(' if open_low else '['}{low}, {high}], "
                                 f"got {v!r}")
        number("context_noise", 0.0, 0.5)
        number("prior_count", 0.0, 1e6, open_low=True)
        number("learning_rate", 0.0, 1e6, open_low=True)
        number("gamma", 0.0, 1e6, open_low=True)
        if not isinstance(self.novelty, bool):
            raise ValueError(f"novelty: expected true or false, got {self.novelty!r}")
        if not isinstance(self.preference, dict):
            raise ValueError(f"preference: expected a mapping of modality names to lists, got {self.preference!r}")
