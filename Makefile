# sig2gps: `make demo` and `make test` are all a new user needs. Each target creates .venv on first use.
VENV     := .venv
PY       := $(VENV)/bin/python
CITY     ?= gridville
PROFILE  ?= demo
PYTEST_ARGS ?=
# pytest-xdist workers of make test / test-fast (the machines tests run on have 2 cores); 0 runs in-process
TEST_WORKERS ?= 2
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export GX_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
# no telemetry from the servers either (the library sets these too, for its own processes)
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export DVC_NO_ANALYTICS := 1
export DAGSTER_DISABLE_TELEMETRY := 1

.PHONY: venv demo test test-fast test-ui ui-browser ui mlflow-ui serve bench peers peers-valhalla clean-outputs

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

# two workers; a module's tests stay on one worker, and the modules reading the session's materialised
# ci city share one (tests/conftest.py, pytest_xdist_make_scheduler)
test: venv
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# the inner loop: everything but the tests marked slow (make test runs those too)
test-fast: venv
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow and not ui" $(PYTEST_ARGS)

# the browser suite (tests/test_ui.py, marker ui; `make test` deselects it): the Dagster and MLflow UIs over a
# tiny materialised city in headless Chromium, screenshots in outputs/ui/. Playwright (the `ui` extra) drives
# Debian's chromium, installed with apt when no Chromium is found (SIG2GPS_CHROMIUM names one); Playwright never
# downloads a browser. Installing the extra re-resolves the project: the same antlr fix as for the venv follows.
test-ui: venv $(VENV)/.ui-installed ui-browser
	$(PY) -m pytest -q -m ui tests/test_ui.py $(PYTEST_ARGS)

$(VENV)/.ui-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q -e ".[dev,ui]"
	$(PY) -m pip uninstall -q -y hydra-core omegaconf
	$(PY) -m pip install -q --no-deps "antlr4-python3-runtime==4.13.2"
	touch $@

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
ui-browser:
	@if [ -n "$${SIG2GPS_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; \
	  then :; else echo "test-ui: installing Debian's chromium"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; fi

ui: venv
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p 3000 -m dagster_project.definitions

mlflow-ui: venv
	mkdir -p mlflow
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow/mlflow.db --default-artifact-root $(CURDIR)/mlflow/artifacts -h 127.0.0.1 -p 5000

# the registered model of CITY (alias sft) over HTTP on 127.0.0.1:5001; the server starts uvicorn from the venv
serve: venv
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" MLFLOW_TRACKING_URI=sqlite:///$(CURDIR)/mlflow/mlflow.db \
	  $(VENV)/bin/mlflow models serve -m "models:/sig2gps-video-$(CITY)@sft" -h 127.0.0.1 -p 5001 --env-manager local

# peer map-matching engines (fmm, leuven; Valhalla below) for bench/peers.py and the evaluation report.
# Installing the extra re-resolves the project, which brings hydra-core/omegaconf and antlr 4.9 back: the
# same fix as for the venv follows.
peers: $(VENV)/.peers-installed

$(VENV)/.peers-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q -e ".[dev,peers]"
	$(PY) -m pip uninstall -q -y hydra-core omegaconf
	$(PY) -m pip install -q --no-deps "antlr4-python3-runtime==4.13.2"
	touch $@

# pyvalhalla publishes wheels for Python >= 3.12 only and the project runs 3.11: Valhalla gets its own
# Python 3.12 environment (PY312=/path/to/python3.12 to choose it); ml.baselines.peers.valhalla_meili
# runs it through SIG2GPS_VALHALLA_PYTHON. Without a Python 3.12 the method is reported as skipped.
PY312    ?= $(shell for p in python3.13 python3.12 $(HOME)/.pyenv/versions/3.1[23]*/bin/python3; do \
              "$$p" -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null && { command -v "$$p"; break; }; done)
VALHALLA_PY := $(VENV)/valhalla312/bin/python

peers-valhalla: $(VENV)/valhalla312/.installed

$(VENV)/valhalla312/.installed:
	@test -n "$(PY312)" || { echo "peers-valhalla: no Python >= 3.12 found (set PY312=...)"; exit 1; }
	$(PY312) -m venv $(VENV)/valhalla312
	$(VALHALLA_PY) -m pip install -q "pyvalhalla>=3.9,<4"
	touch $@

bench: venv peers
	@if [ -n "$(PY312)" ]; then $(MAKE) --no-print-directory peers-valhalla; \
	  else echo "bench: no Python >= 3.12 here, valhalla_meili will be skipped"; fi
	SIG2GPS_VALHALLA_PYTHON=$$( [ -x $(VALHALLA_PY) ] && echo $(CURDIR)/$(VALHALLA_PY) ) $(PY) -m bench

clean-outputs:
	rm -rf outputs
