#!/usr/bin/env bash
# Creates the virtual environment (if needed) and installs torch and the project into it: what `make demo`
# runs, nothing more (the MMDetection stack is `make install-detect`, scripts/install_mmdet.sh).
#
#   bash scripts/install.sh VENV_DIR [EXTRAS]        # e.g. bash scripts/install.sh .venv dev
#
# Each step prints one line with its time; pip's own output goes to logs/install.log (DEFR_LOG_DIR), whose
# tail is printed when a step fails. TORCH_SPEC overrides the torch build (default: the tested versions;
# on a machine with a GPU and a normal index this pulls the CUDA wheels of the same versions).
set -euo pipefail
VENV=${1:-.venv}
EXTRAS=${2:-}
TORCH_SPEC=${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}
mkdir -p "$VENV"
VENV=$(cd "$VENV" && pwd)   # absolute: later steps run from other directories
LOG=${DEFR_LOG_DIR:-logs}/install.log
mkdir -p "$(dirname "$LOG")"
step() {
  local what=$1 start=$SECONDS
  shift
  printf 'install: %s ...' "$what"
  if "$@" >>"$LOG" 2>&1; then
    echo " $((SECONDS - start)) s"
  else
    echo " FAILED (full log: $LOG)"
    tail -n 25 "$LOG" | sed 's/^/  | /'
    exit 1
  fi
}
echo "== $(date -u +%FT%TZ) install into $VENV" >>"$LOG"
[ -x "$VENV/bin/python" ] || step "virtual environment $VENV" python3 -m venv "$VENV"
PY=$VENV/bin/python
step "pip and setuptools<81" "$PY" -m pip install -q --upgrade pip 'setuptools<81' wheel
# torch first, alone, so that pip never swaps its build while resolving the project's ranges.
# shellcheck disable=SC2086
step "$TORCH_SPEC" "$PY" -m pip install -q $TORCH_SPEC
# The project's ~150 dependencies with uv (measured here: 12 s against pip's 55-128 s on 2 cores); torch
# stays as installed above (it satisfies the project's range). pip is the fallback where uv cannot reach
# the index (uv does not read pip.conf).
install_project() {
  "$PY" -m pip install -q 'uv>=0.5,<1' && "$VENV/bin/uv" pip install -q --python "$PY" -e ".${EXTRAS:+[$EXTRAS]}" \
    || { echo "uv failed; installing with pip" >&2; "$PY" -m pip install -q -e ".${EXTRAS:+[$EXTRAS]}"; }
}
step "the project${EXTRAS:+ [$EXTRAS]} (log: $LOG)" install_project
