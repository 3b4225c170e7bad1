# Two commands do everything on a fresh machine:
#   make demo   - create .venv, install, run `dvc repro` on the embedded demo data, print the metrics
#   make test   - create .venv if needed, install, run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
# On a machine with a GPU and a normal index this pulls the default (CUDA) wheels of the same versions.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

# DVC runs stage commands with the first `python` on PATH: put the venv first.
export PATH := $(abspath $(VENV))/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export RAY_AUTH_MODE := disabled
export RAY_USAGE_STATS_ENABLED := 0
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/install_mmdet.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 'setuptools<81' wheel
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev]'
	bash scripts/install_mmdet.sh $(PY)
	touch $@

demo: install
	test -d .git || git init -q
	test -d .dvc || dvc init -q
	dvc repro
	@echo "== metrics (demo data: tiny random-init model, oracle boxes; see README) =="
	dvc metrics show

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV)
