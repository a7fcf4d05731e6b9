"""Profiles: shipped data, from_hf_config, user directories, clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from offload_env import profiles
from offload_env.profiles import ProfileError, from_hf_config, load_device, load_link, load_model, model_to_dict

REPO = Path(__file__).resolve().parent.parent

REQUIRED_MODELS = [
    "qwen2.5-0.5b", "qwen2.5-1.5b", "llama-3.2-1b", "llama-3.2-3b", "tinyllama-1.1b", "phi-3-mini-4k",
    "smollm2-1.7b", "llama-2-7b", "llama-3.1-8b", "qwen2.5-7b", "gpt-j-6b", "mixtral-8x7b", "llama-3.1-70b",
]
REQUIRED_DEVICES = [
    "jetson-orin-nano-8gb", "jetson-agx-orin-64gb", "raspberry-pi-5", "snapdragon-8-gen-3", "ryzen-7-7840u",
    "rtx-3090", "rtx-4090", "l4", "a100-80gb", "h100-sxm", "a800",
]
REQUIRED_LINKS = ["5g-nr", "lte", "wifi-6", "c-v2x", "dsrc", "backhaul-fiber"]


def test_required_profiles_are_shipped():
    assert set(REQUIRED_MODELS) <= set(profiles.list_models())
    assert set(REQUIRED_DEVICES) <= set(profiles.list_devices())
    assert set(REQUIRED_LINKS) <= set(profiles.list_links())


@pytest.mark.parametrize("name", REQUIRED_MODELS)
def test_parameter_count_matches_published_within_1_percent(name):
    model = load_model(name)
    assert model.published_params is not None and "published_params" in model.sources
    assert isinstance(model.num_params, int)
    assert abs(model.num_params / model.published_params - 1) < 0.01


@pytest.mark.parametrize("name", REQUIRED_MODELS)
def test_from_hf_config_reproduces_shipped_profile(name):
    model = load_model(name)
    rebuilt = from_hf_config(model.hf_config, name)
    assert model_to_dict(rebuilt) == model_to_dict(model)
    assert rebuilt.num_layers == model.num_layers == model.hf_config.get(
        "num_hidden_layers", model.hf_config.get("n_layer"))


def test_mixtral_counts_all_experts_for_memory_but_two_for_compute():
    m = load_model("mixtral-8x7b")
    (group,) = m.layers
    assert group.params > 3.5 * group.active_params  # 8 experts held, 2 used
    active_total = group.count * group.active_params + m.embedding_params + m.lm_head_params
    assert 12.5e9 < active_total < 13.3e9  # Mistral AI: 12.9B parameters used per token


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int8", "int4", "float32"])
def test_every_device_computes_every_dtype_somehow(dtype):
    for name in profiles.list_devices():
        d = load_device(name)
        assert d.effective_flops(dtype) > 0
        assert d.effective_bandwidth > 0
        assert set(d.sources) >= {"peak_flops", "power_w", "efficiency"}


def test_links_load_with_sources():
    for name in profiles.list_links():
        link = load_link(name)
        assert link.base_rtt_s >= 0 and link.sources
        if link.medium == "wireless":
            assert link.bandwidth_hz > 0 and link.carrier_hz > 0 and link.path_loss["model"]
        else:
            assert link.rate_bps > 0


GEMMA2_2B = {  # google/gemma-2-2b config.json (architecture keys)
    "model_type": "gemma2", "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
    "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "vocab_size": 256000,
    "tie_word_embeddings": True,
}
MISTRAL_7B = {  # mistralai/Mistral-7B-v0.1 config.json
    "model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000, "tie_word_embeddings": False,
    "sliding_window": 4096,
}


def test_from_hf_config_gemma2_honours_head_dim_and_four_norms():
    m = from_hf_config(GEMMA2_2B, "gemma-2-2b")
    assert abs(m.num_params / 2.614e9 - 1) < 0.01  # 2.61B, Gemma 2 report (arXiv:2408.00118)
    (g,) = m.layers
    # head_dim 256 x 8 heads = 2048 != hidden 2304: KV per token is 2 x 4 x 256 x 2 bytes
    assert g.kv_cache_bytes_per_token == 2 * 4 * 256 * 2
    assert g.attention_flops_per_context_token == 4 * 8 * 256
    assert m.lm_head_params == 0 and m.tie_word_embeddings


def test_from_hf_config_reads_a_path(tmp_path):
    folder = tmp_path / "Mistral-7B-v0.1"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(MISTRAL_7B))
    m = from_hf_config(folder / "config.json")
    assert m.name == "mistral-7b-v0.1"
    assert abs(m.num_params / 7.24e9 - 1) < 0.01  # Mistral 7B: 7.24B parameters (Mistral AI)


def test_from_hf_config_biases_follow_the_architecture():
    cfg = dict(load_model("qwen2.5-0.5b").hf_config)
    with_bias = from_hf_config(cfg).layers[0].params
    cfg["attention_bias"] = False  # HF's Qwen2 hard-codes q/k/v biases whatever this says
    assert from_hf_config(cfg).layers[0].params == with_bias
    cfg["model_type"] = "llama"  # the same shapes read as Llama: no biases ...
    plain = from_hf_config(cfg).layers[0].params
    assert with_bias - plain == 896 + 2 * 2 * 64  # q bias + k, v biases
    cfg["attention_bias"] = True  # ... unless attention_bias, which adds q, k, v and o biases
    assert from_hf_config(cfg).layers[0].params - plain == 896 + 2 * 2 * 64 + 896


@pytest.mark.parametrize("config, field", [
    ({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
      "vocab_size": 10}, "intermediate_size"),
    ({"model_type": "llama", "hidden_size": -64, "intermediate_size": 8, "num_hidden_layers": 2,
      "num_attention_heads": 4, "vocab_size": 10}, "hidden_size"),
    ({"model_type": "llama", "hidden_size": 64, "intermediate_size": 8, "num_hidden_layers": "2",
      "num_attention_heads": 4, "vocab_size": 10}, "num_hidden_layers"),
    ({"model_type": "llama", "hidden_size": 64, "intermediate_size": 8, "num_hidden_layers": 2,
      "num_attention_heads": 4, "num_key_value_heads": 3, "vocab_size": 10}, "num_key_value_heads"),
    ({"model_type": "t5", "d_ff": 3}, "model_type"),
])
def test_from_hf_config_rejects_bad_configs_naming_the_field(config, field):
    with pytest.raises(ProfileError, match=field):
        from_hf_config(config)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ProfileError, match="unknown model 'gpt-5'.*llama-3.1-8b"):
        load_model("gpt-5")
    with pytest.raises(ProfileError, match="unknown device"):
        load_device("abacus")
    with pytest.raises(ProfileError, match="unknown link"):
        load_link("carrier-pigeon")


def _write(tmp_path, kind, name, text):
    folder = tmp_path / kind
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _device_text(stem, **override):
    doc = yaml.safe_load((REPO / "profiles/devices/a100-80gb.yaml").read_text())
    doc["name"] = stem
    doc.update(override)
    return yaml.safe_dump(doc)


def test_user_directory_adds_and_overrides(tmp_path, monkeypatch):
    _write(tmp_path, "devices", "my-board", _device_text("my-board", memory_bytes=1234567))
    _write(tmp_path, "devices", "a100-80gb", _device_text("a100-80gb", memory_bytes=42.0))
    assert load_device("my-board", tmp_path).memory_bytes == 1234567
    assert load_device("a100-80gb", tmp_path).memory_bytes == 42
    assert load_device("a100-80gb").memory_bytes > 1e10  # shipped one untouched
    assert "my-board" in profiles.list_devices(tmp_path)
    monkeypatch.setenv("OFFLOAD_ENV_PROFILES", str(tmp_path))
    assert load_device("my-board").memory_bytes == 1234567


@pytest.mark.parametrize("override, field, expected", [
    ({"memory_bytes": -1}, "memory_bytes", "> 0"),
    ({"memory_bytes": "lots"}, "memory_bytes", "finite number"),
    ({"usable_memory_fraction": 1.5}, "usable_memory_fraction", r"in \(0, 1\]"),
    ({"category": "fridge"}, "category", "'edge', 'server'"),
    ({"peak_flops": {"float4": 1e15}}, "peak_flops.float4", "dtype key"),
    ({"schema_version": 2}, "schema_version", "1"),
    ({"name": "other"}, "name", "file name stem"),
    ({"power_w": {"idle": 3}}, "power_w.active", "missing"),
])
def test_bad_device_file_names_file_and_field(tmp_path, override, field, expected):
    path = _write(tmp_path, "devices", "bad-board", _device_text("bad-board", **override))
    with pytest.raises(ProfileError) as info:
        load_device("bad-board", tmp_path)
    message = str(info.value)
    assert str(path) in message and f"'{field}'" in message
    assert __import__("re").search(expected, message)


def test_bad_model_file_and_bad_yaml(tmp_path):
    doc = yaml.safe_load((REPO / "profiles/models/llama-3.2-1b.yaml").read_text())
    doc["name"] = "broken"
    doc["layers"][0]["active_params"] = doc["layers"][0]["params"] + 1
    _write(tmp_path, "models", "broken", yaml.safe_dump(doc))
    with pytest.raises(ProfileError, match=r"layers\[0\]\.active_params"):
        load_model("broken", tmp_path)
    doc["layers"][0].pop("active_params")
    doc["layers"][0]["params"] = 5
    _write(tmp_path, "models", "broken", yaml.safe_dump(doc))
    profiles._load_model_file.cache_clear()
    with pytest.raises(ProfileError, match=r"layers\[0\]\.active_params'.*missing"):
        load_model("broken", tmp_path)
    _write(tmp_path, "models", "garbled", "schema_version: [1\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_model("garbled", tmp_path)


def test_model_file_with_only_hf_config_is_derived(tmp_path):
    _write(tmp_path, "models", "mistral-7b", yaml.safe_dump({
        "schema_version": 1, "kind": "model", "name": "mistral-7b", "display_name": "Mistral 7B", "role": "llm",
        "weights_dtype": "bfloat16", "published_params": 7_240_000_000,
        "sources": {"published_params": "Mistral AI: 7.24B"}, "hf_config": MISTRAL_7B}))
    m = load_model("mistral-7b", tmp_path)
    assert m.num_layers == 32 and abs(m.num_params / m.published_params - 1) < 0.01


def test_missing_profile_dir_is_an_error(tmp_path):
    with pytest.raises(ProfileError, match="does not exist"):
        load_model("llama-3.2-1b", tmp_path / "nope")


def test_profiles_load_from_an_installed_wheel(tmp_path):
    """A non-editable install carries profiles/ inside the package."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(REPO)], check=True)
    assert (target / "offload_env" / "_profiles" / "models" / "llama-3.1-8b.yaml").is_file()
    code = ("import offload_env, offload_env.profiles as p; "
            "m = p.load_model('llama-3.1-8b'); "
            "print(offload_env.__file__); print(m.path); print(m.num_params)")
    env = {k: v for k, v in os.environ.items() if k != "OFFLOAD_ENV_PROFILES"}
    env["PYTHONPATH"] = str(target)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0].startswith(str(target)) and out[1].startswith(str(target))
    assert int(out[2]) == load_model("llama-3.1-8b").num_params
    shutil.rmtree(target)
