"""TensorBoard scalars with CleanRL's key names (``charts/...``, ``losses/...``, ``eval/...``).

Uses ``torch.utils.tensorboard`` (needs torch and tensorboard, the ``rl``
extra). Without them, scalars are dropped with one warning: baselines-only
experiments still run.
"""

from __future__ import annotations

import warnings
from pathlib import Path

__all__ = ["open_writer", "NullWriter", "EVAL_SCALARS", "UPDATE_SCALARS", "UpdateScalars", "write_eval_scalars",
           "hyperparameter_text"]

#: Evaluation-table column -> TensorBoard key.
EVAL_SCALARS = {
    "return": "eval/episodic_return",
    "mean_latency_s": "eval/latency_s",
    "edge_energy_j": "eval/edge_energy_j",
    "deadline_miss_rate": "eval/deadline_miss_rate",
    "cost_ratio_to_oracle": "eval/cost_ratio_to_oracle",
    # Routing-v0
    "accuracy": "eval/accuracy",
    "cost": "eval/cost",
    "regret": "eval/regret",
    # Vehicular-v0 (per-vehicle rows: the mean team return is the mean over episodes)
    "team_return": "eval/team_return",
    "energy_j": "eval/energy_j",
    "handover_rate": "eval/handover_rate",
}


#: Update-statistics keys of the project's own learners (MADRL) -> TensorBoard key; others go to ``losses/<key>``.
UPDATE_SCALARS = {
    "clip_fraction": "losses/clipfrac",
    "critic_loss": "losses/qf_loss",
    "q": "losses/qf_values",
    "mean_reward": "charts/rollout_mean_reward",
    "federated_bytes": "charts/federated_bytes",
}


class UpdateScalars:
    """A learner's ``callback(agent, stats)``: each finite number of ``stats`` (one update's losses) as a scalar
    at the agent's step (CleanRL's names: ``losses/policy_loss``, ``losses/value_loss``, ``losses/entropy``...)."""

    def __init__(self, writer):
        self.writer = writer

    def __call__(self, agent, stats: dict) -> None:
        step = int(agent.num_timesteps)
        for key, value in stats.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value \
                    and abs(value) != float("inf"):
                self.writer.add_scalar(UPDATE_SCALARS.get(key, f"losses/{key}"), float(value), step)


class NullWriter:
    """Stands in for a SummaryWriter when TensorBoard is not installed."""

    def add_scalar(self, *args, **kwargs) -> None: ...

    def add_text(self, *args, **kwargs) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


_warned = False


def open_writer(log_dir: str | Path, purge_step: int | None = None):
    """A SummaryWriter on ``log_dir``; ``purge_step`` hides events at or after it (a resumed run)."""
    global _warned
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        if not _warned:
            warnings.warn(f"TensorBoard scalars are off ({err}); install the 'rl' extra", stacklevel=2)
            _warned = True
        return NullWriter()
    return SummaryWriter(str(log_dir), purge_step=purge_step)


def write_eval_scalars(writer, frame, step: int) -> dict[str, float]:
    """Means of an evaluation table's columns as ``eval/...`` scalars at ``step``; returns them."""
    means = {key: float(frame[col].mean()) for col, key in EVAL_SCALARS.items() if col in frame}
    for key, value in means.items():
        writer.add_scalar(key, value, step)
    writer.flush()
    return means


def hyperparameter_text(params: dict) -> str:
    """CleanRL's hyper-parameter table (Markdown) for ``add_text``."""
    rows = "\n".join(f"|{k}|{v}|" for k, v in sorted(params.items()))
    return "|param|value|\n|-|-|\n" + rows
