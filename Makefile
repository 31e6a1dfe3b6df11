# sig2gps: `make demo` and `make test` are all a new user needs. Each target creates .venv on first use.
VENV     := .venv
PY       := $(VENV)/bin/python
CITY     ?= gridville
PROFILE  ?= demo
PYTEST_ARGS ?=
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export GX_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1

.PHONY: venv demo test ui mlflow-ui serve bench clean-outputs

venv: $(VENV)/.installed

# torch is pinned first so no dependency can pull a multi-GB CUDA build. dvc's hydra-core/omegaconf
# pin the antlr4 runtime to 4.9, which breaks Dagster's asset-selection parser (it needs 4.13).
# DVC only uses hydra for `dvc exp`, which sig2gps does not use, so hydra-core and omegaconf are
# removed and the 4.13 runtime installed (checked by tests/test_environment.py).
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip uninstall -q -y hydra-core omegaconf
	$(PY) -m pip install -q --no-deps "antlr4-python3-runtime==4.13.2"
	touch $@

demo: venv
	$(VENV)/bin/sig2gps demo --city $(CITY) --profile $(PROFILE)

test: venv
	$(PY) -m pytest -q $(PYTEST_ARGS)

ui: venv
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p 3000 -m dagster_project.definitions

mlflow-ui: venv
	mkdir -p mlflow
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow/mlflow.db --default-artifact-root $(CURDIR)/mlflow/artifacts -h 127.0.0.1 -p 5000

# the registered model of CITY (alias sft) over HTTP on 127.0.0.1:5001; the server starts uvicorn from the venv
serve: venv
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" MLFLOW_TRACKING_URI=sqlite:///$(CURDIR)/mlflow/mlflow.db \
	  $(VENV)/bin/mlflow models serve -m "models:/sig2gps-video-$(CITY)@sft" -h 127.0.0.1 -p 5001 --env-manager local

bench: venv
	$(PY) -m bench

clean-outputs:
	rm -rf outputs
