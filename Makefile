# Two commands do everything on a fresh machine:
#   make demo   - create .venv, install what the demo runs, `dvc repro` the embedded demo, print a summary
#   make test   - create .venv if needed, install everything (MMDetection too), run the test suite
#   make test-fast - the unit tests plus one smoke run per stage (minutes; no MMDetection install)
# and four more:
#   make install-browser - Debian's chromium + chromium-driver (root), for the test of `defr serve`'s web page
#   make install-detect  - add the MMDetection stack (mmcv is built from source once, ~10-17 min on 2 cores,
#                          then cached in ~/.cache/defr-pipeline/wheels): needed by detect.backend: mmdet
#   make bench           - the benchmarks in bench/ (`python -m bench scale`, hours, only when named)
#   make lock            - rewrite requirements.lock (what every install uses) from pyproject.toml's ranges
VENV ?= .venv
VENV_DIR := $(abspath $(VENV))
PY := $(VENV_DIR)/bin/python
PYTEST_ARGS ?=
# Test processes (pytest-xdist): a test spends about half its time waiting on Ray, DVC or a subprocess, so
# two share 2 cores well; the tests of the session's pipeline run stay in one (tests/conftest.py).
PYTEST_WORKERS ?= 2
XDIST := -n $(PYTEST_WORKERS) --dist loadgroup
LOGS ?= logs

# DVC runs stage commands with the first `python` on PATH: put the venv first.
export PATH := $(VENV_DIR)/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export RAY_USAGE_STATS_ENABLED := 0
export TOKENIZERS_PARALLELISM := false
export DEFR_LOG_DIR := $(abspath $(LOGS))

.PHONY: install install-dev install-detect install-browser lock demo test test-fast bench clean

install: $(VENV_DIR)/.installed
install-dev: $(VENV_DIR)/.installed-dev
install-detect: $(VENV_DIR)/.installed-detect
install-browser:
	@bash scripts/install_browser.sh

$(VENV_DIR)/.installed: pyproject.toml requirements.lock scripts/install.sh scripts/install_steps.sh
	@bash scripts/install.sh "$(VENV_DIR)"
	@touch $@

$(VENV_DIR)/.installed-dev: $(VENV_DIR)/.installed
	@bash scripts/install.sh "$(VENV_DIR)" dev
	@touch $@

# One line per step: the mmcv build's minutes (first time only), the install's seconds, the total.
$(VENV_DIR)/.installed-detect: $(VENV_DIR)/.installed scripts/install_mmdet.sh scripts/install_steps.sh
	@bash scripts/install_mmdet.sh "$(PY)"
	@touch $@

# make lock: rewrite requirements.lock from pyproject.toml's ranges, keeping the versions already locked
# (LOCK_UPGRADE=1: the newest inside the ranges). Commit it with the dvc.lock of a `dvc repro`: every stage
# depends on it, so a new lock re-runs the pipeline.
lock: install
	@bash scripts/lock.sh $(VENV_DIR)/bin/uv

demo: install
	@test -d .git || git init -q
	@test -d .dvc || dvc init -q
	@echo "demo: dvc repro (each stage prints a few lines; full logs in $(LOGS)/<stage>.log)"
	@$(PY) scripts/with_local_ray.py dvc repro --quiet   # one local Ray (loopback, token) for every stage
	@$(PY) -m stage_support.summary

# make test: everything (what CI runs). DEFR_TEST_STRICT=1: what it installed (MMDetection, moto) must be
# importable, a skip would hide a broken install. Ends with the 15 slowest tests and the suite's wall time.
test: install-dev install-detect install-browser
	@start=$$(date +%s); DEFR_TEST_STRICT=1 $(PY) -m pytest $(XDIST) --durations=15 $(PYTEST_ARGS); rc=$$?; \
	  echo "test: the suite took $$(( $$(date +%s) - start )) s (exit $$rc)"; exit $$rc

# make test-fast: the unit tests plus one quick run per stage (marker smoke), a few minutes; no MMDetection
# (DEFR_TEST_STRICT=0: what it does not install is skipped with the reason, also where CI=true).
test-fast: install-dev
	@start=$$(date +%s); DEFR_TEST_STRICT=0 $(PY) -m pytest $(XDIST) -m "(smoke or not integration) and not slow" --durations=15 \
	  $(PYTEST_ARGS); rc=$$?; echo "test-fast: the suite took $$(( $$(date +%s) - start )) s (exit $$rc)"; exit $$rc

bench: install-dev install-detect
	$(PY) -m bench

clean:
	rm -rf $(VENV)
