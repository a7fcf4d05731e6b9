"""Crash consistency: SIGKILL train, evaluate and compare at seeded commit points, damage real checkpoints;
afterwards every finished run is whole (done.json agrees with eval.csv, the model loads) and compare reports each
once. A process is killed by its own fault injection (``OFFLOAD_ENV_CRASH_AT``: the n-th atomic write's temporary
file complete, its target not yet replaced), so each kill lands at the same place on every machine."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from experiments.compare import gather
from experiments.config import parse_config
from experiments.registry import load_agent
from experiments.runner import RunError, run_experiment, run_paths

ROOT = Path(__file__).resolve().parents[1]
_RNG = random.Random(14)
TRAIN_COMMITS = 23  #: commit points of one `run` of the tiny config with a 400-step budget (counted)
CRASH_POINTS = sorted(_RNG.sample(range(1, TRAIN_COMMITS + 1), 3))


def tiny(runs_dir: Path, budget: int = 600) -> dict:
    return {"name": "crash", "runs_dir": str(runs_dir), "seeds": [0],
            "env": {"id": "offload_env/LayerSplit-v0", "kwargs": {"max_episode_steps": 20}},
            "baselines": ["greedy"], "evaluation": {"episodes": 2, "curve_episodes": 1},
            "agents": {"ddpg": {"algo": "ddpg", "env_kwargs": {"continuous": True}, "budget": budget,
                                "checkpoint_every": 100, "learning_starts": 10, "batch_size": 8,
                                "policy_kwargs": {"net_arch": [8]}}}}


def crash(*args: str, at: int) -> bool:
    """Run ``python -m experiments ARGS`` killing itself at its ``at``-th commit point; whether it was killed
    (False: it finished first)."""
    cmd = [sys.executable, "-m", "experiments", *args] + (["--quiet"] if args[0] != "compare" else [])
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OFFLOAD_ENV_CRASH_AT": str(at)})
    if proc.returncode == -signal.SIGKILL:
        return True
    assert proc.returncode == 0, proc.stderr
    return False


def finish(*args: str) -> str:
    cmd = [sys.executable, "-m", "experiments", *args] + (["--quiet"] if args[0] != "compare" else [])
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


def assert_whole(cfg, agents: dict[str, int]) -> None:
    """Every run of ``agents`` (name -> training steps) finished and consistent; compare sees each once."""
    exp = Path(cfg.runs_dir) / cfg.name
    for name, steps in agents.items():
        paths = run_paths(cfg, name, 0)
        done = json.loads(paths.done.read_text())
        table = pd.read_csv(paths.eval_table)
        assert done["episodes"] == len(table) and table["return"].notna().all()
        assert done["total_steps"] == steps
        if steps:
            load_agent(cfg.agents[name].algo, paths.model)
            curve = pd.read_csv(paths.curve)["step"].tolist()
            assert curve == list(range(100, steps + 1, 100))  # no step lost or logged twice
        assert not list(paths.root.parent.glob(".seed_0.previous-*"))
    tidy = gather(exp)
    runs = tidy.groupby(["agent", "seed"]).size()
    assert sorted(runs.index) == sorted((a, 0) for a in agents)


def test_sigkill_train_at_seeded_commit_points_then_resume(tmp_path):
    raw = tiny(tmp_path / "runs", budget=400)
    config = tmp_path / "crash.yaml"
    config.write_text(yaml.safe_dump(raw))
    cfg = parse_config(raw)
    killed = [crash("run", str(config), "--resume", at=point) for point in CRASH_POINTS]
    assert killed[0]  # a fresh run has TRAIN_COMMITS commit points: the first kill always lands
    for f in (tmp_path / "runs").rglob("*.csv"):  # an atomic write is whole or absent
        pd.read_csv(f)
    finish("run", str(config), "--resume")
    assert_whole(cfg, {"ddpg": 400, "greedy": 0})


@pytest.fixture(scope="module")
def trained_ddpg(tmp_path_factory):
    """A DDPG run with real checkpoints at steps 200 and 300 (its budget), unfinished (made once)."""
    runs = tmp_path_factory.mktemp("trained") / "runs"
    cfg = parse_config(tiny(runs, budget=300))
    run_experiment(cfg, progress=False, baselines=False)
    paths = run_paths(cfg, "ddpg", 0)
    for f in (paths.done, paths.model, paths.eval_table):
        f.unlink()
    return runs


@pytest.fixture
def partial_ddpg(trained_ddpg, tmp_path):
    shutil.copytree(trained_ddpg, tmp_path / "runs")
    cfg = parse_config(tiny(tmp_path / "runs", budget=300))
    return cfg, run_paths(cfg, "ddpg", 0)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


DAMAGE = {
    "corrupt latest.json": (lambda c: (c / "latest.json").write_text('{"step": 3'), 300),
    "latest.json without folder": (lambda c: (c / "latest.json").write_text('{"step": 300}'), 300),
    "pointer to a missing folder": (lambda c: (c / "latest.json").write_text(
        '{"step": 400, "folder": "step_0000000400"}'), 300),
    "latest folder deleted": (lambda c: shutil.rmtree(c / "step_0000000300"), 200),
    "truncated model.zip": (lambda c: _truncate(c / "step_0000000300" / "model.zip"), 200),
    "truncated replay buffer": (lambda c: _truncate(c / "step_0000000300" / "replay_buffer.pkl"), 200),
    "replay buffer missing": (lambda c: (c / "step_0000000300" / "replay_buffer.pkl").unlink(), 200),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_checkpoints_resume_from_the_newest_intact(partial_ddpg, capsys, damage):
    cfg, paths = partial_ddpg
    hurt, step = DAMAGE[damage]
    hurt(paths.checkpoints)
    capsys.readouterr()
    run_experiment(cfg, progress=False, baselines=False, resume=True)
    assert f"resuming from step_{step:010d} (step {step})" in capsys.readouterr().err
    assert_whole(cfg, {"ddpg": 300})


def test_no_intact_checkpoint_stops(partial_ddpg):
    cfg, paths = partial_ddpg
    for model in paths.checkpoints.glob("step_*/model.zip"):
        _truncate(model)
    with pytest.raises(RunError, match="no intact checkpoint to resume from"):
        run_experiment(cfg, progress=False, baselines=False, resume=True)


@pytest.mark.slow  # about 40 s of subprocess start-ups on 2 cores
def test_sigkill_during_evaluate_and_compare(tmp_path):
    raw = tiny(tmp_path / "runs", budget=200)
    config = tmp_path / "crash.yaml"
    config.write_text(yaml.safe_dump(raw))
    cfg = parse_config(raw)
    run_experiment(cfg, progress=False)
    exp = tmp_path / "runs" / "crash"
    for point in (1, 2):  # evaluate commits eval.csv, then done.json
        assert crash("evaluate", str(config), "--episodes", "3", at=point)
        for name in ("ddpg", "greedy"):
            paths = run_paths(cfg, name, 0)
            json.loads(paths.done.read_text())  # whole, old or new
            assert len(pd.read_csv(paths.eval_table)) in (2, 3)
    for point in (1, 2, 3):  # compare commits its three tables
        assert crash("compare", str(config), at=point)
        for f in (exp / "summary").glob("*.csv") if (exp / "summary").exists() else ():
            assert not pd.read_csv(f).empty
    finish("evaluate", str(config), "--episodes", "3")
    paths = run_paths(cfg, "ddpg", 0)
    assert json.loads(paths.done.read_text())["episodes"] == 3 == len(pd.read_csv(paths.eval_table))
    out = finish("compare", str(config))
    assert "warning" not in out
    results = pd.read_csv(exp / "summary" / "results.csv")
    assert sorted(set(results["agent"])) == ["ddpg", "greedy"]
    assert len(results[results["agent"] == "ddpg"]) == 3
    assert list(pd.read_csv(exp / "summary" / "summary.csv")["agent"]).count("ddpg") == 1


def test_a_write_killed_at_its_commit_point_leaves_the_old_file(tmp_path):
    target = tmp_path / "table.txt"
    target.write_text("old\n")
    code = ("import sys; from offload_env.atomic import write_text; "
            "write_text(sys.argv[1], 'first\\n'); write_text(sys.argv[1], 'second\\n')")
    run = lambda at: subprocess.run([sys.executable, "-c", code, str(target)], cwd=ROOT,  # noqa: E731
                                    env={**os.environ, "OFFLOAD_ENV_CRASH_AT": at}, capture_output=True, text=True)
    assert run("1").returncode == -signal.SIGKILL
    assert target.read_text() == "old\n"  # killed with its temporary file complete: the target untouched
    assert run("2").returncode == -signal.SIGKILL
    assert target.read_text() == "first\n"
    assert run("3").returncode == 0 and target.read_text() == "second\n"
    bad = run("soon")
    assert bad.returncode == 1 and "OFFLOAD_ENV_CRASH_AT: expected a positive integer, got 'soon'" in bad.stderr
