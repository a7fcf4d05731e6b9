"""Runs: train or evaluate one (agent, seed) into ``<runs_dir>/<experiment>/<agent>/seed_<k>/``.

A run folder holds ``config.yaml`` (the resolved experiment config),
``eval.csv`` (one row per evaluation episode), ``done.json`` (written last:
the run is finished) and, for learned agents, ``curve.csv`` (learning-curve
evaluations), ``tb/`` (TensorBoard), ``checkpoints/``, ``model.zip`` and,
with an imitation warm start, ``imitation.json`` (what it did).
A finished run is skipped unless ``force`` or its config changed; a killed one
continues from its last checkpoint with ``resume``.

Redoing a finished run (``force``, or its config changed) never deletes it
first: its folder is renamed, atomically, to ``.seed_<k>.previous-<time>``
beside it (a hidden name, so ``compare`` and ``report`` never see it; a note
on stderr says so). When the new run finishes, the previous one is removed
(only the newest run is kept, and said so); when it fails (any exception,
Ctrl-C included), the new folder is removed and the previous one renamed
back. A run killed while replacing another leaves both; the next start of
that run restores the previous one if it is what the config asks for again,
else keeps it aside until the new run finishes.

Resuming (``resume``) loads the newest checkpoint that loads whole: the one
``latest.json`` names, then every ``step_*`` folder newest first
(:func:`experiments.checkpoints.checkpoint_candidates`); each that does not
load through its agent kind's ``load`` (a truncated model, a missing replay
buffer, a corrupt pointer) is skipped with a note, and the one used is
named. When checkpoints are there but none loads, the run stops with a
one-line error (``--force`` starts over).

``reevaluate`` rewrites ``eval.csv`` and then ``done.json`` (its episode
count), each atomically; ``compare`` refuses a run whose two disagree (an
interrupted re-evaluation), and evaluating again repairs it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from . import atomic
from .config import ExperimentConfig, dump_yaml, to_dict
from .evaluation import evaluate_policy
from .registry import agent_file, agent_kind, baseline_label, env_factory, load_agent, make_agent, make_baseline
from .scalars import UpdateScalars, hyperparameter_text, open_writer, write_eval_scalars

__all__ = ["RunError", "RunPaths", "run_paths", "is_finished", "evaluate_baseline", "train_agent",
           "run_experiment", "reevaluate"]


class RunError(RuntimeError):
    """A run cannot start as asked (e.g. a partial run without --resume)."""


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def eval_table(self) -> Path:
        return self.root / "eval.csv"

    @property
    def curve(self) -> Path:
        return self.root / "curve.csv"

    @property
    def trace(self) -> Path:
        """Per-step training trace of an online learner (Routing: cumulative reward and regret)."""
        return self.root / "trace.csv"

    @property
    def done(self) -> Path:
        return self.root / "done.json"

    @property
    def imitation(self) -> Path:
        """What the agent's imitation warm start did (``agents.imitation.imitate``), when it had one."""
        return self.root / "imitation.json"

    @property
    def model(self) -> Path:
        """The saved SB3 agent (``model.zip``); other families save a folder (see :meth:`agent`)."""
        return self.root / "model.zip"

    def agent(self, algo: str) -> Path:
        return self.root / agent_file(algo)

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tb"


def experiment_dir(cfg: ExperimentConfig) -> Path:
    return Path(cfg.runs_dir) / cfg.name


def run_paths(cfg: ExperimentConfig, agent: str, seed: int) -> RunPaths:
    return RunPaths(experiment_dir(cfg) / agent / f"seed_{seed}")


def is_finished(paths: RunPaths) -> bool:
    return paths.done.exists()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)


def _run_record(cfg: ExperimentConfig, agent: str, seed: int) -> dict:
    """What defines a run: the resolved config with this run's agent and seed."""
    return {**to_dict(cfg), "run": {"agent": agent, "seed": seed}}


def _signature(record: dict) -> dict:
    """The parts of a run record that must not change between a run and its resumption."""
    agent = record["run"]["agent"]
    return {"env": record["env"], "evaluation": record["evaluation"], "run": record["run"],
            "agent": record["agents"].get(agent)}


def _saved_signature(paths: RunPaths) -> dict | None:
    return _signature(yaml.safe_load(paths.config.read_text())) if paths.config.exists() else None


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr, flush=True)


def _asides(paths: RunPaths) -> list[Path]:
    """Previous finished runs of this (agent, seed) moved aside by a redo, oldest first."""
    return sorted(p for p in paths.root.parent.glob(f".{paths.root.name}.previous-*") if p.is_dir())


def _move_aside(paths: RunPaths, why: str) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = paths.root.with_name(f".{paths.root.name}.previous-{stamp}")
    n = 1
    while aside.exists():
        aside, n = paths.root.with_name(f".{paths.root.name}.previous-{stamp}-{n}"), n + 1
    atomic.crash_point()
    os.replace(paths.root, aside)
    _note(f"{paths.root}: {why}: the finished run is moved aside to {aside.name} until the new one finishes "
          "(it comes back if the new one fails)")
    return aside


def _drop_asides(paths: RunPaths, keep: Path | None = None) -> None:
    for aside in _asides(paths):
        if aside != keep:
            shutil.rmtree(aside, ignore_errors=True)
            _note(f"{paths.root}: removed the previous run {aside.name} (replaced by this one)")


def _saved_signature_at(root: Path) -> dict | None:
    try:
        return _signature(yaml.safe_load((root / "config.yaml").read_text()))
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return None


def _start(paths: RunPaths, record: dict, *, resume: bool, force: bool, resumable: bool
           ) -> tuple[str, Path | None]:
    """('skip' | 'resume' | 'fresh', the previous finished run moved aside or None).

    A finished run is skipped while its config is the one asked for; one whose
    config changed since (env, evaluation, agent settings), or any with
    ``force``, is redone: moved aside first (see the module docstring), never
    deleted before the new run has finished.
    """
    from .checkpoints import has_checkpoints

    signature = _signature(record)
    finished = is_finished(paths)
    asides = _asides(paths)
    previous = None
    if asides and finished:  # a redo finished but was killed before it removed the run it replaced
        _drop_asides(paths)
    elif asides:  # a redo was killed before it finished: the run it replaced is still aside
        previous = asides[-1]
        _drop_asides(paths, keep=previous)
        if not force and is_finished(RunPaths(previous)) and _saved_signature_at(previous) == signature:
            if paths.root.exists():
                shutil.rmtree(paths.root)
                _note(f"{paths.root}: removed an unfinished redo of this run (it had another config)")
            atomic.crash_point()
            os.replace(previous, paths.root)
            _note(f"{paths.root}: restored the finished run {previous.name} (the config asks for it again)")
            return "skip", None
    if finished and not force and _saved_signature(paths) == signature:
        return "skip", None
    if paths.root.exists():
        partial = resumable and not finished and has_checkpoints(paths.checkpoints)
        if finished:
            previous = _move_aside(paths, "--force" if force else "the config changed since it ran")
        elif partial and not force:
            if not resume:
                raise RunError(f"{paths.root}: a partial run is there; pass --resume to continue it "
                               "or --force to start over")
            saved = _saved_signature(paths)
            if saved is not None and saved != signature:
                raise RunError(f"{paths.root}: the config changed since this run started; "
                               "pass --force to start over")
            for stale in paths.root.rglob(".*.tmp"):  # atomic writes cut short by a kill
                stale.unlink(missing_ok=True)
            return "resume", previous
        else:
            if partial or any(paths.root.iterdir()):
                _note(f"{paths.root}: removing the unfinished run there"
                      + (" (--force)" if partial else " (it has no checkpoint to resume from)"))
            shutil.rmtree(paths.root)
    paths.root.mkdir(parents=True, exist_ok=True)
    return "fresh", previous


@contextmanager
def _replacing(paths: RunPaths, previous: Path | None):
    """Run the block that makes a new run at ``paths``; then drop ``previous`` (the finished run it replaces),
    or, if the block fails, remove the new folder and put ``previous`` back."""
    if previous is None:
        yield
        return
    try:
        yield
    except BaseException:
        shutil.rmtree(paths.root, ignore_errors=True)
        atomic.crash_point()
        os.replace(previous, paths.root)
        _note(f"{paths.root}: the new run failed; the previous finished run is back")
        raise
    _drop_asides(paths)


def _finish(paths: RunPaths, frame: pd.DataFrame, **extra) -> pd.DataFrame:
    atomic.write_csv(paths.eval_table, frame)
    atomic.write_json(paths.done, {"finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "episodes": len(frame), **extra})
    return frame


def _evaluate(cfg: ExperimentConfig, policy, agent: str, env_kwargs: dict, seed: int, episodes: int,
              progress: bool, online: bool = False) -> pd.DataFrame:
    ev = cfg.evaluation
    return evaluate_policy(policy, cfg.env.id, {**env_kwargs, **ev.env_kwargs}, agent=agent, seed=seed,
                           episodes=episodes, eval_seed=ev.seed, function=ev.function,
                           breakdown_keys=ev.breakdown_keys, progress=progress, online=online)


# ---------------------------------------------------------------------------- baselines


def evaluate_baseline(cfg: ExperimentConfig, name: str, seed: int, *, force: bool = False,
                      progress: bool = True) -> Path:
    """Evaluate baseline ``name`` for training seed ``seed``; returns the run folder."""
    label = baseline_label(name)
    paths = run_paths(cfg, label, seed)
    record = _run_record(cfg, label, seed)
    mode, previous = _start(paths, record, resume=False, force=force, resumable=False)
    if mode == "skip":
        return paths.root
    with _replacing(paths, previous):
        _evaluate_baseline(cfg, name, label, seed, paths, record, progress)
    return paths.root


def _evaluate_baseline(cfg: ExperimentConfig, name: str, label: str, seed: int, paths: RunPaths, record: dict,
                       progress: bool) -> None:
    atomic.write_text(paths.config, dump_yaml(record))
    _seed_everything(seed)
    env_kwargs = cfg.agent_env_kwargs(None)
    policy = make_baseline(name, env_factory(cfg.env.id, env_kwargs), seed, cfg.env.id)
    frame = _evaluate(cfg, policy, label, env_kwargs, seed, cfg.evaluation.episodes, progress)
    writer = open_writer(paths.tensorboard)
    write_eval_scalars(writer, frame, 0)
    writer.close()
    _finish(paths, frame, kind="baseline", total_steps=0)


# ---------------------------------------------------------------------------- learned agents


def _build_or_resume(cfg: ExperimentConfig, name: str, seed: int, paths: RunPaths, mode: str):
    algo = cfg.agents[name].algo
    make_env = env_factory(cfg.env.id, cfg.agent_env_kwargs(name))
    if mode == "resume":
        agent, step = _resume(algo, seed, paths, make_env, cfg.agents[name].device)
        return agent, step, make_env
    _seed_everything(seed)
    try:
        agent = make_agent(name, cfg.agents[name], make_env, seed)
    except (TypeError, ValueError) as err:
        raise RunError(f"agents.{name}: cannot build the agent: {' '.join(str(err).split())}") from None
    return agent, 0, make_env


def _resume(algo: str, seed: int, paths: RunPaths, make_env, device: str = "cpu"):
    """(agent, step) from the newest checkpoint that loads whole through the agent kind's ``load``."""
    from .checkpoints import checkpoint_candidates

    tried = []
    for step, folder in checkpoint_candidates(paths.checkpoints):
        try:
            agent = load_agent(algo, folder / agent_file(algo), make_env, seed=seed + step,  # fresh env streams
                               device=device)
            if getattr(agent, "has_replay_buffer", False):
                buffer = folder / "replay_buffer.pkl"
                if not buffer.exists():
                    raise FileNotFoundError("no replay_buffer.pkl")
                agent.load_replay_buffer(buffer)
        except Exception as err:  # noqa: BLE001 - a corrupt file can fail to unpickle in any way
            reason = " ".join(f"{type(err).__name__}: {err}".split())[:300]
            _note(f"{folder}: checkpoint does not load ({reason}); trying an older one")
            tried.append(folder.name)
            continue
        step = int(agent.num_timesteps)
        _note(f"{paths.root}: resuming from {folder.name} (step {step})")
        return agent, step
    raise RunError(f"{paths.checkpoints}: no intact checkpoint to resume from (tried: "
                   f"{', '.join(tried) or 'none found'}); pass --force to start over")


def _rows_up_to(path: Path, up_to: int) -> list[dict]:
    """Rows of a per-step table already written (curve.csv, trace.csv), up to step ``up_to``
    (later ones belong to lost work)."""
    if not path.exists() or up_to == 0:
        return []
    frame = pd.read_csv(path)
    return frame[frame["step"] <= up_to].to_dict("records")


def _training_trace(cfg: ExperimentConfig, paths: RunPaths, budget: int, step: int):
    """The env family's per-step trace of an online learner's training (None: the family has none)."""
    from .families import family_of
    from .registry import import_object

    family = family_of(cfg.env.id)
    if family is None or not family.trace:
        return None
    return import_object(family.trace, "trace")(every=max(budget // 500, 1), rows=_rows_up_to(paths.trace, step))


def _imitate(cfg: ExperimentConfig, spec, seed: int, agent, make_env, progress: bool) -> dict:
    """Clone the agent's teacher (a baseline of the env's family, built as the baselines are) into it."""
    from agents.imitation import imitate

    teacher = make_baseline(spec.imitation.teacher, make_env, seed, cfg.env.id)
    if progress:
        _note(f"{agent.name} seed {seed}: imitating {teacher.name} ({spec.imitation.episodes} episodes, "
              f"{spec.imitation.dagger_rounds} DAgger rounds)")
    return imitate(agent, teacher, make_env, spec.imitation, seed=seed)


def train_agent(cfg: ExperimentConfig, name: str, seed: int, *, resume: bool = False, force: bool = False,
                progress: bool = True) -> Path:
    """Train agent ``name`` with ``seed`` to its budget, checkpointing; then evaluate it. Returns the run folder."""
    paths = run_paths(cfg, name, seed)
    record = _run_record(cfg, name, seed)
    mode, previous = _start(paths, record, resume=resume, force=force, resumable=True)
    if mode == "skip":
        return paths.root
    with _replacing(paths, previous):
        _train(cfg, name, seed, paths, record, mode, progress)
    return paths.root


def _train(cfg: ExperimentConfig, name: str, seed: int, paths: RunPaths, record: dict, mode: str,
           progress: bool) -> None:
    from tqdm.auto import tqdm

    from .checkpoints import save_checkpoint

    spec = cfg.agents[name]
    kind = agent_kind(spec.algo)
    atomic.write_text(paths.config, dump_yaml(record))
    if kind.uses_torch:
        import torch

        torch.set_num_threads(spec.torch_threads)
    agent, step, make_env = _build_or_resume(cfg, name, seed, paths, mode)
    writer = open_writer(paths.tensorboard, purge_step=step if step else None)
    if step == 0:
        writer.add_text("hyperparameters", hyperparameter_text({**record["agents"][name], "seed": seed}))
        if spec.imitation is not None:  # a resumed run has it in its checkpoint already
            imitation = _imitate(cfg, spec, seed, agent, make_env, progress)
            atomic.write_json(paths.imitation, imitation)
            writer.add_text("imitation", json.dumps(imitation))
    env_kwargs = cfg.agent_env_kwargs(name)
    curve = _rows_up_to(paths.curve, step)
    bar = tqdm(total=spec.budget, initial=step, desc=f"{name} seed {seed}", unit="step", leave=False,
               disable=not progress)
    if getattr(kind, "sb3_callbacks", False):
        from .callbacks import EpisodeScalars, StepProgress, sb3_logger

        agent.set_logger(sb3_logger(writer))
        callbacks = [EpisodeScalars(writer), StepProgress(bar)]

        def learn(target: int) -> None:
            agent.learn(make_env, target, callback=callbacks)
    else:
        per_update = getattr(kind, "update_scalars", False)  # callback(agent, losses); else callback(agent, info)
        trace = None if per_update else _training_trace(cfg, paths, spec.budget, step)
        hooks = [h for h in (trace, UpdateScalars(writer) if per_update else None) if h]

        def callback(agent_, stats):
            for hook in hooks:
                hook(agent_, stats)

        def learn(target: int) -> None:
            agent.learn(make_env, target, callback=callback)
            bar.update(agent.num_timesteps - bar.n)
            if trace is not None:
                atomic.write_csv(paths.trace, pd.DataFrame(trace.finish()))
    started = time.perf_counter() - (curve[-1]["wall_s"] if curve else 0.0)  # training seconds, across resumes
    try:
        while agent.num_timesteps < spec.budget:
            target = min((agent.num_timesteps // spec.checkpoint_every + 1) * spec.checkpoint_every, spec.budget)
            learn(target)
            if agent.num_timesteps != target:
                raise RunError(f"{name}: trained to step {agent.num_timesteps}, expected {target}")
            if target % spec.eval_every == 0 or target == spec.budget:
                view = agent.snapshot() if hasattr(agent, "snapshot") else agent  # evaluation leaves training as is
                frame = _evaluate(cfg, view, name, env_kwargs, seed, cfg.evaluation.curve_episodes, False)
                means = write_eval_scalars(writer, frame, target)
                curve.append({"step": target, "wall_s": time.perf_counter() - started,
                              **{k.split("/")[1]: v for k, v in means.items()},
                              "cost_per_request": float(frame["cost_per_request"].mean())})
                atomic.write_csv(paths.curve, pd.DataFrame(curve))
            save_checkpoint(agent, paths.checkpoints, agent_file(spec.algo))
    finally:
        bar.close()
    total_steps = agent.num_timesteps
    agent.save(paths.agent(spec.algo))  # the trained agent, before an online evaluation moves it on
    frame = _evaluate(cfg, agent, name, env_kwargs, seed, cfg.evaluation.episodes, progress,
                      online=spec.eval_mode == "online")
    write_eval_scalars(writer, frame, total_steps)
    writer.close()
    _finish(paths, frame, kind="learned", total_steps=total_steps,
            train_wall_s=round(time.perf_counter() - started, 3))


def reevaluate(cfg: ExperimentConfig, name: str, seed: int, episodes: int | None = None,
               progress: bool = True) -> pd.DataFrame:
    """Evaluate a finished learned run again from its saved agent (normalisation frozen); rewrites eval.csv,
    then done.json's episode count (each atomically: see the module docstring)."""
    paths = run_paths(cfg, name, seed)
    spec = cfg.agents[name]
    if not is_finished(paths) or not paths.agent(spec.algo).exists():
        raise RunError(f"{paths.root}: no finished learned run to evaluate; train it first")
    agent = load_agent(spec.algo, paths.agent(spec.algo))
    frame = _evaluate(cfg, agent, name, cfg.agent_env_kwargs(name), seed, episodes or cfg.evaluation.episodes,
                      progress, online=spec.eval_mode == "online")
    try:
        done = json.loads(paths.done.read_text())
    except (OSError, ValueError):
        done = {}
    if not isinstance(done, dict):
        done = {}
    atomic.write_csv(paths.eval_table, frame)
    atomic.write_json(paths.done, {**done, "episodes": len(frame),
                                   "evaluated": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return frame


# ---------------------------------------------------------------------------- whole experiments


def run_experiment(cfg: ExperimentConfig, *, agents: list[str] | None = None, seeds: list[int] | None = None,
                   baselines: bool = True, learned: bool = True, resume: bool = False, force: bool = False,
                   progress: bool = True) -> list[Path]:
    """Every (baseline or agent, seed) of ``cfg``, filtered by ``agents`` and ``seeds``; returns the run folders."""
    from tqdm.auto import tqdm

    seeds = list(cfg.seeds if seeds is None else seeds)
    unknown = [s for s in seeds if s not in cfg.seeds]
    if unknown:
        raise RunError(f"--seed {unknown[0]}: not among the config's seeds {cfg.seeds}")
    names = [baseline_label(b) for b in cfg.baselines] + list(cfg.agents)
    for a in agents or ():
        if a not in names:
            raise RunError(f"--agent {a}: not in the config (expected one of {', '.join(names)})")
    jobs = []
    if baselines:
        jobs += [("baseline", b) for b in cfg.baselines if agents is None or baseline_label(b) in agents]
    if learned:
        jobs += [("learned", a) for a in cfg.agents if agents is None or a in agents]
    done = []
    todo = [(kind, name, seed) for kind, name in jobs for seed in seeds]
    for kind, name, seed in tqdm(todo, desc=f"{cfg.name} runs", unit="run", disable=not progress):
        if kind == "baseline":
            done.append(evaluate_baseline(cfg, name, seed, force=force, progress=progress))
        else:
            done.append(train_agent(cfg, name, seed, resume=resume, force=force, progress=progress))
    return done
