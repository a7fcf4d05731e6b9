"""Issue 14 (experiments): redoing a finished run keeps it until the new one finishes; resume falls back to the
newest intact checkpoint; every env kwarg and hyper-parameter is checked at config load; evaluate keeps
done.json consistent; compare names every run it skips. Plus a hypothesis fuzz of configs and --set."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.protocol import SettingError
from experiments.compare import compare, gather
from experiments.config import ConfigError, apply_overrides, parse_config
from experiments.runner import RunError, reevaluate, run_experiment, run_paths

ROOT = Path(__file__).resolve().parents[1]


def routing(runs_dir: Path, **linucb) -> dict:
    """A config that runs in about a second: LinUCB (no torch) and a baseline on a short Routing-v0."""
    return {"name": "rt", "runs_dir": str(runs_dir), "seeds": [0],
            "env": {"id": "offload_env/Routing-v0", "kwargs": {"max_episode_steps": 20}},
            "baselines": ["always-best"], "evaluation": {"episodes": 2, "curve_episodes": 1},
            "agents": {"linucb": {"algo": "linucb", "budget": 60, "checkpoint_every": 20, "alpha": 0.3, **linucb}}}


def layer_split(runs_dir: Path) -> dict:
    return {"name": "ls", "runs_dir": str(runs_dir), "seeds": [0],
            "env": {"id": "offload_env/LayerSplit-v0", "kwargs": {"max_episode_steps": 20}},
            "baselines": ["greedy"], "evaluation": {"episodes": 2, "curve_episodes": 1},
            "agents": {"default": {"policy_kwargs": {"net_arch": [16]}},
                       "ddpg": {"algo": "ddpg", "env_kwargs": {"continuous": True}, "budget": 60,
                                "checkpoint_every": 20, "learning_starts": 10, "batch_size": 8},
                       "ppo": {"algo": "maskable_ppo", "budget": 64, "n_steps": 32, "batch_size": 16,
                               "n_epochs": 1}}}


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------- 6: a redo keeps the finished run


def test_redo_that_fails_restores_the_finished_run(tmp_path, monkeypatch, capsys):
    raw = routing(tmp_path / "runs")
    cfg = parse_config(raw)
    run_experiment(cfg, progress=False)
    paths = run_paths(cfg, "linucb", 0)
    before = snapshot(paths.root)
    changed = parse_config({**raw, "agents": {"linucb": {**raw["agents"]["linucb"], "alpha": 0.5}}})

    import experiments.runner as runner

    def broken(*_, **__):
        raise ValueError("boom")

    monkeypatch.setattr(runner, "make_agent", broken)
    with pytest.raises(RunError, match=r"^agents\.linucb: cannot build the agent: boom"):
        run_experiment(changed, progress=False, baselines=False)
    err = capsys.readouterr().err
    assert "moved aside" in err and "previous finished run is back" in err
    assert snapshot(paths.root) == before  # model, table, curve, checkpoints: byte for byte
    assert not list(paths.root.parent.glob(".seed_0.previous-*"))
    tidy, _ = compare(paths.root.parents[1], echo=False)
    assert set(tidy["agent"]) == {"linucb", "always-best"}


def test_redo_that_finishes_replaces_the_finished_run_and_says_so(tmp_path, capsys):
    raw = routing(tmp_path / "runs")
    run_experiment(parse_config(raw), progress=False)
    changed = parse_config({**raw, "agents": {"linucb": {**raw["agents"]["linucb"], "alpha": 0.5}}})
    run_experiment(changed, progress=False, baselines=False)
    err = capsys.readouterr().err
    assert "moved aside" in err and "removed the previous run" in err
    paths = run_paths(changed, "linucb", 0)
    assert yaml.safe_load(paths.config.read_text())["agents"]["linucb"]["alpha"] == 0.5
    assert not list(paths.root.parent.glob(".seed_0.previous-*"))


def test_redo_killed_midway_is_undone_by_the_old_config(tmp_path, capsys):
    raw = routing(tmp_path / "runs")
    cfg = parse_config(raw)
    run_experiment(cfg, progress=False)
    paths = run_paths(cfg, "linucb", 0)
    before = snapshot(paths.root)
    # what a redo killed after moving the run aside leaves: the previous run aside, an unfinished new one
    aside = paths.root.with_name(".seed_0.previous-20000101T000000")
    paths.root.rename(aside)
    (paths.checkpoints).mkdir(parents=True)
    run_experiment(cfg, progress=False)  # the config asks for the old run again: it comes back
    assert "restored the finished run" in capsys.readouterr().err
    assert snapshot(paths.root) == before and not aside.exists()


def test_cli_bad_env_kwarg_fails_before_touching_the_finished_run(tmp_path):
    raw = routing(tmp_path / "runs")
    cfg = parse_config(raw)
    run_experiment(cfg, progress=False)
    paths = run_paths(cfg, "linucb", 0)
    before = snapshot(paths.root)
    config = tmp_path / "rt.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = cli("train", str(config), "--quiet", "--set", "env.kwargs.cost_weight=-1")
    assert out.returncode == 2 and out.stderr.startswith("error: env.kwargs.cost_weight: ")
    assert len(out.stderr.strip().splitlines()) == 1
    assert snapshot(paths.root) == before
    out = cli("compare", str(config))
    assert out.returncode == 0 and "linucb" in out.stdout and "warning" not in out.stderr


# ---------------------------------------------------------------------------- 7: resume from the newest intact


def _partial_linucb(tmp_path):
    """A LinUCB run with checkpoints at steps 40 and 60 (the budget) but not finished."""
    cfg = parse_config(routing(tmp_path / "runs"))
    run_experiment(cfg, progress=False, baselines=False)
    paths = run_paths(cfg, "linucb", 0)
    paths.done.unlink()
    return cfg, paths


@pytest.mark.parametrize("damage, resumed_from", [
    (lambda c: (c / "latest.json").write_text("{not json"), "step_0000000060"),
    (lambda c: (c / "latest.json").write_text('{"step": 60}'), "step_0000000060"),  # no 'folder' key
    (lambda c: (c / "latest.json").write_text('{"step": 90, "folder": "step_0000000090"}'), "step_0000000060"),
    (lambda c: (c / "latest.json").unlink(), "step_0000000060"),
    (lambda c: __import__("shutil").rmtree(c / "step_0000000060"), "step_0000000040"),
    (lambda c: (c / "step_0000000060" / "agent" / "router.npz").write_bytes(b"PK\x03"), "step_0000000040"),
    (lambda c: (c / "step_0000000060" / "agent" / "agent.json").write_text('{"algo": "lin'), "step_0000000040"),
])
def test_resume_uses_the_newest_intact_checkpoint(tmp_path, capsys, damage, resumed_from):
    cfg, paths = _partial_linucb(tmp_path)
    damage(paths.checkpoints)
    capsys.readouterr()
    run_experiment(cfg, progress=False, baselines=False, resume=True)
    err = capsys.readouterr().err
    assert f"resuming from {resumed_from}" in err
    done = json.loads(paths.done.read_text())
    assert done["total_steps"] == 60 and done["episodes"] == len(pd.read_csv(paths.eval_table))
    curve = pd.read_csv(paths.curve)["step"].tolist()
    assert curve == [20, 40, 60]  # no step lost or logged twice


def test_resume_with_no_intact_checkpoint_stops_with_one_line(tmp_path):
    cfg, paths = _partial_linucb(tmp_path)
    for folder in paths.checkpoints.glob("step_*"):
        (folder / "agent" / "router.npz").write_bytes(b"")
    with pytest.raises(RunError, match=r"no intact checkpoint to resume from \(tried: step_0000000060, "
                                       r"step_0000000040\); pass --force"):
        run_experiment(cfg, progress=False, baselines=False, resume=True)
    assert paths.checkpoints.is_dir()  # nothing removed
    config = tmp_path / "rt.yaml"
    config.write_text(yaml.safe_dump(routing(tmp_path / "runs")))
    out = cli("train", str(config), "--quiet", "--resume")
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "no intact checkpoint" in out.stderr.strip().splitlines()[-1]


# ---------------------------------------------------------------------------- 8: everything checked at load


def _set(raw: dict, *overrides: str):
    return parse_config(apply_overrides(raw, list(overrides)))


@pytest.mark.parametrize("override, key", [
    ("agent.learning_rate=fast", "agents.ddpg.learning_rate"),
    ("agents.ppo.policy_kwargs.net_arch='64'", "agents.ppo.policy_kwargs.net_arch"),
    ("agents.ppo.policy_kwargs.net_arch={pi: [8], qf: [8]}", "agents.ppo.policy_kwargs.net_arch"),
    ("agents.ppo.policy_kwargs.activation_fn=sigmoid", "agents.ppo.policy_kwargs.activation_fn"),
    ("agents.ppo.policy_kwargs.net_arc=[8]", "agents.ppo.policy_kwargs.net_arc"),
    ("agent.learning_rate=-1", "agents.ddpg.learning_rate"),
    ("agents.ppo.learning_rate=.nan", "agents.ppo.learning_rate"),
    ("agents.ppo.gamma=2.0", "agents.ppo.gamma"),
    ("agents.ppo.batch_size=0", "agents.ppo.batch_size"),
    ("agents.ppo.batch_size=1", "agents.ppo.batch_size"),  # SB3 normalises advantages per minibatch
    ("agents.ddpg.tau=0", "agents.ddpg.tau"),
    ("agents.ddpg.buffer_size=0", "agents.ddpg.buffer_size"),
    ("agents.ppo.policy=MlpPolicyy", "agents.ppo.policy"),
    ("agents.ppo.env_kwargs.energy_budgt_j=1", "agents.ppo.env_kwargs.energy_budgt_j"),
    ("env.kwargs.energy_budget_j=-1", "env.kwargs.energy_budget_j"),
    ("env.kwargs.max_episode_steps=x", "env.kwargs.max_episode_steps"),
    ("evaluation.env_kwargs.scenario=nope", "evaluation.env_kwargs.scenario"),
    ("agents.ddpg.env_kwargs.continuous=false", "agents.ddpg.env_kwargs"),  # DDPG on the discrete env
    ("agents.ddpg=5", "agents.ddpg"),
    ("agents.ddpg.action_noise.sigma=-1", "agents.ddpg.action_noise.sigma"),
    ("agents.ddpg.checkpoint_every=-5", "agents.ddpg.checkpoint_every"),
    ("evaluation.seed=-1", "evaluation.seed"),
])
def test_layer_split_settings_fail_at_load_naming_the_key(tmp_path, override, key):
    runs = tmp_path / "runs"
    with pytest.raises(ConfigError, match="^" + re.escape(key) + ": ") as err:
        _set(layer_split(runs), override)
    assert "\n" not in str(err.value)
    assert not runs.exists()


@pytest.mark.parametrize("override, key", [
    ("agents.linucb.alpha=-1", "agents.linucb.alpha"),
    ("agents.linucb.l2=0", "agents.linucb.l2"),
    ("agents.linucb.algo=cost_aware_linucb", "agents.linucb.budget_per_step"),  # required
    ("agents.linucb.env_kwargs.cost_weight=-1", "agents.linucb.env_kwargs.cost_weight"),
    ("agents.linucb.policy=CnnPolicy", "agents.linucb.policy"),
])
def test_bandit_settings_fail_at_load_naming_the_key(tmp_path, override, key):
    with pytest.raises(ConfigError, match="^" + re.escape(key) + ": "):
        _set(routing(tmp_path / "runs"), override)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("override, key", [
    ("agents.mappo.gamma=2", "agents.mappo.gamma"),
    ("agents.mappo.learning_rate=.inf", "agents.mappo.learning_rate"),
    ("agents.mappo.hidden=[0]", "agents.mappo.hidden"),
])
def test_madrl_settings_fail_at_load_naming_the_key(tmp_path, override, key):
    raw = {"name": "v", "runs_dir": str(tmp_path / "runs"), "env": {"id": "offload_env/Vehicular-v0",
                                                                    "kwargs": {"num_vehicles": 2, "max_cycles": 10}},
           "agents": {"mappo": {"algo": "mappo", "budget": 20, "n_steps": 10, "n_envs": 1}}}
    parse_config(raw)
    with pytest.raises(ConfigError, match="^" + re.escape(key) + ": "):
        _set(raw, override)


def test_a_config_without_env_is_an_error():
    with pytest.raises(ConfigError, match=r"^env: required key missing"):
        parse_config({"name": "t", "baselines": ["greedy"]})
    with pytest.raises(ConfigError, match=r"^env\.id: required key missing"):
        parse_config({"name": "t", "env": {"kwargs": {}}, "baselines": ["greedy"]})


def test_kind_checks_raise_setting_errors():
    from agents.registry import AGENTS

    cfg = parse_config(layer_split(Path("/nonexistent")), check_envs=False)
    ppo = cfg.agents["ppo"]
    ppo.hyperparams["gamma"] = 1.5
    with pytest.raises(SettingError, match="^gamma: expected a number in"):
        AGENTS["maskable_ppo"].impl.check("maskable_ppo", ppo)


def test_cli_set_agent_to_a_number_is_one_line_and_writes_nothing(tmp_path):
    raw = layer_split(tmp_path / "runs")
    config = tmp_path / "ls.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = cli("run", str(config), "--quiet", "--set", "agents.ddpg=5")
    assert out.returncode == 2 and out.stderr == "error: agents.ddpg: expected a mapping of agent settings, got 5\n"
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------- 9: evaluate and compare


def test_reevaluate_updates_done_json(tmp_path):
    cfg = parse_config(routing(tmp_path / "runs"))
    run_experiment(cfg, progress=False)
    paths = run_paths(cfg, "linucb", 0)
    reevaluate(cfg, "linucb", 0, episodes=3, progress=False)
    done = json.loads(paths.done.read_text())
    assert done["episodes"] == 3 == len(pd.read_csv(paths.eval_table))
    assert done["total_steps"] == 60 and done["kind"] == "learned"  # the rest kept
    assert not list(paths.root.glob(".*.tmp"))


def test_compare_names_every_run_it_skips(tmp_path):
    raw = routing(tmp_path / "runs")
    raw["seeds"] = [0, 1, 2]
    raw["baselines"] = ["always-best", "oracle"]
    cfg = parse_config(raw)
    run_experiment(cfg, progress=False)
    exp = tmp_path / "runs" / "rt"
    text = (exp / "linucb" / "seed_0" / "eval.csv").read_text()
    (exp / "linucb" / "seed_0" / "eval.csv").write_text(text[: len(text) // 2])  # truncated
    pd.read_csv(exp / "linucb" / "seed_1" / "eval.csv").drop(columns="return").to_csv(
        exp / "linucb" / "seed_1" / "eval.csv", index=False)
    (exp / "always-best" / "seed_0" / "done.json").unlink()  # unfinished
    (exp / "always-best" / "seed_1" / "eval.csv").write_bytes(b"\xff\xfe\x00garbage\n")
    done = exp / "oracle" / "seed_2" / "done.json"
    done.write_text(json.dumps({**json.loads(done.read_text()), "episodes": 5}))
    config = tmp_path / "rt.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = cli("compare", str(config))
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 5, out.stderr
    for run, why in (("linucb/seed_0", "eval.csv"), ("linucb/seed_1", "lacks column(s) return"),
                     ("always-best/seed_0", "unfinished"), ("always-best/seed_1", "eval.csv"),
                     ("oracle/seed_2", "done.json says 5")):
        assert any(run in w and why in w for w in warnings), (run, why, warnings)
    tidy = gather(exp)
    assert sorted(set(zip(tidy["agent"], tidy["seed"]))) == [
        ("always-best", 2), ("linucb", 2), ("oracle", 0), ("oracle", 1)]
    for folder in exp.glob("*/seed_*"):  # nothing compared is left: compare exits 2, one error line
        (folder / "done.json").unlink(missing_ok=True)
    out = cli("compare", str(exp))
    assert out.returncode == 2 and out.stderr.splitlines()[-1].startswith("error: ")
    assert "no run can be compared (9 skipped" in out.stderr


# ---------------------------------------------------------------------------- fuzz: configs and --set

KEYS = ["name", "seeds", "runs_dir", "env", "env.id", "env.kwargs", "env.kwargs.max_episode_steps",
        "env.kwargs.cost_weight", "env.kwargs.scenario", "baselines", "evaluation", "evaluation.episodes",
        "evaluation.curve_episodes", "evaluation.seed", "evaluation.function", "evaluation.env_kwargs",
        "evaluation.breakdown_keys", "agents", "agents.linucb", "agents.linucb.algo", "agents.linucb.budget",
        "agents.linucb.alpha", "agents.linucb.l2", "agents.linucb.checkpoint_every", "agents.linucb.eval_every",
        "agents.linucb.env_kwargs", "agents.linucb.eval_mode", "agents.linucb.n_envs", "agents.linucb.policy",
        "agents.linucb.action_noise", "agents.linucb.sweep", "agents.default", "agent.alpha", "agent.budget"]
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8) | st.sampled_from(["linucb", "ppo", "fast", "1e-3", "offload_env/Routing-v0", "x:y"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6)


def _set_raw(raw: dict, key: str, value) -> dict:
    node = raw
    *parents, last = key.split(".")
    if parents and parents[0] == "agent":
        parents, last = ["agents", "linucb"], last
    for p in parents:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[last] = value
    return raw


def _one_line_naming_a_key(err: Exception) -> None:
    text = str(err)
    assert "\n" not in text and text, text
    assert re.match(r"^(--set |[\w.\[\]@=-]+[:.]|/|config)", text) or ": " in text, text


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(KEYS), value=VALUES, via_set=st.booleans())
def test_fuzz_config_values_give_config_errors_or_configs(tmp_path, key, value, via_set):
    runs = tmp_path / "fuzz-runs"
    raw = routing(runs)
    try:
        if via_set:
            text = yaml.safe_dump(value, default_flow_style=True).strip()
            if text.endswith("..."):
                text = text[:-3].strip()
            cfg = parse_config(apply_overrides(raw, [f"{key}={text}"]))
        else:
            cfg = parse_config(_set_raw(raw, key, value))
    except ConfigError as err:
        _one_line_naming_a_key(err)
    else:
        for agent in cfg.agents.values():
            assert agent.budget >= 1 and agent.checkpoint_every >= 1 and agent.eval_every >= 1
            for v in agent.hyperparams.values():
                assert not (isinstance(v, float) and not math.isfinite(v))
    assert not runs.exists() and list(tmp_path.iterdir()) == []  # loading writes nothing


SB3_KEYS = ["agents.ppo.learning_rate", "agents.ppo.gamma", "agents.ppo.batch_size", "agents.ppo.n_steps",
            "agents.ppo.n_epochs", "agents.ppo.clip_range", "agents.ppo.ent_coef", "agents.ppo.policy_kwargs",
            "agents.ppo.policy_kwargs.net_arch", "agents.ppo.policy_kwargs.activation_fn",
            "agents.ppo.policy_kwargs.ortho_init", "agents.ppo.policy", "agents.ppo.normalize_advantage",
            "agents.ddpg.tau", "agents.ddpg.buffer_size", "agents.ddpg.train_freq", "agents.ddpg.gradient_steps",
            "agents.ddpg.learning_starts", "agents.ddpg.action_noise", "agents.ddpg.action_noise.kind",
            "agents.ddpg.action_noise.sigma", "agents.ddpg.env_kwargs", "agents.ddpg.env_kwargs.continuous",
            "agents.ddpg.replay_buffer_class", "agents.ddpg.n_envs", "agents.default.gamma", "agent.learning_rate"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(SB3_KEYS), value=VALUES, via_set=st.booleans())
def test_fuzz_sb3_settings_give_config_errors_or_configs(tmp_path, key, value, via_set):
    runs = tmp_path / "fuzz-runs"
    raw = layer_split(runs)
    if key.startswith("agent."):
        key = "agents.ppo." + key.split(".", 1)[1]
    try:
        if via_set:
            text = yaml.safe_dump(value, default_flow_style=True).strip()
            if text.endswith("..."):
                text = text[:-3].strip()
            parse_config(apply_overrides(raw, [f"{key}={text}"]))
        else:
            parse_config(_set_raw(raw, key, value))
    except ConfigError as err:
        _one_line_naming_a_key(err)
    assert not runs.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("key, value", [("agents.linucb.\n", 1), ("agents.linucb.sweep.\n", None),
                                        ("env.kwargs.\r\x85", 2)])
def test_a_key_holding_a_newline_gives_a_one_line_error(tmp_path, key, value):
    """Found by the fuzz test above: the key is shown escaped, so the message stays one line."""
    with pytest.raises(ConfigError) as info:
        parse_config(_set_raw(routing(tmp_path / "runs"), key, value))
    _one_line_naming_a_key(info.value)
    assert "\\n" in str(info.value) or "\\r" in str(info.value)
