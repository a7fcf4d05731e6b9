# The two commands of the README: `make demo` and `make test`.
# Both create .venv on first use (CPU build of torch, the package, its dev extras).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch==2.13.0 resolves to the CPU wheel on this project's machines; the
# PyTorch CPU index is the fallback elsewhere. Never a bare `torch`.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test test-aif test-ray setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" || \
	  $(PY) -m pip install --quiet "$(TORCH_SPEC)" --index-url https://download.pytorch.org/whl/cpu
	$(PY) -m pip install --quiet -e ".[envs,dev,profile,rl,sumo,embeddings]"
	touch $(STAMP)

setup: $(STAMP)

# The main job (experiments/configs/demo.yaml, a suite): DDPG and MaskablePPO on LayerSplit-v0, the
# four bandits on Routing-v0, MAPPO on Vehicular-v0 (2 seeds each), each next to its env's baselines;
# prints one table per env and the path of the one report (runs/demo/report.md); then exports the best
# learned agent of each env to a router artifact and prints the router's decision on a sample request.
demo: $(STAMP)
	$(PY) -m experiments run experiments/configs/demo.yaml $(DEMO_ARGS)
	$(PY) -m experiments export experiments/configs/demo.yaml --best

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The pymdp agent in its own venv: the 'aif' extra brings JAX (about 850 MB) and no torch.
AIF_VENV := .venv-aif
AIF_STAMP := $(AIF_VENV)/.installed

$(AIF_STAMP): pyproject.toml
	$(PYTHON) -m venv $(AIF_VENV)
	$(AIF_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(AIF_VENV)/bin/python -m pip install --quiet -e ".[aif]" "pytest>=8"
	touch $(AIF_STAMP)

test-aif: $(AIF_STAMP)
	JAX_PLATFORMS=cpu $(AIF_VENV)/bin/python -m pytest -q tests/test_pymdp_agent.py $(PYTEST_ARGS)

# RLlib in its own venv: Ray 2.60 pins gymnasium==1.2.2 exactly (about 1.7 GB with torch). Ray binds to
# 127.0.0.1 in these tests, dashboards and usage reporting off.
RAY_VENV := .venv-ray
RAY_STAMP := $(RAY_VENV)/.installed

$(RAY_STAMP): pyproject.toml
	$(PYTHON) -m venv $(RAY_VENV)
	$(RAY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(RAY_VENV)/bin/python -m pip install --quiet "$(TORCH_SPEC)" || \
	  $(RAY_VENV)/bin/python -m pip install --quiet "$(TORCH_SPEC)" --index-url https://download.pytorch.org/whl/cpu
	$(RAY_VENV)/bin/python -m pip install --quiet -e ".[ray]" "pytest>=8" "hypothesis>=6.90"
	touch $(RAY_STAMP)

test-ray: $(RAY_STAMP)
	RAY_USAGE_STATS_ENABLED=0 $(RAY_VENV)/bin/python -m pytest -q tests/test_rllib.py $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(AIF_VENV) $(RAY_VENV) build dist .pytest_cache
