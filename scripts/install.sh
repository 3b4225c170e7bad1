#!/usr/bin/env bash
# Creates the virtual environment (if needed) and installs torch and the project into it: what `make demo`
# runs, nothing more (the MMDetection stack is `make install-detect`, scripts/install_mmdet.sh).
#
#   bash scripts/install.sh VENV_DIR [EXTRAS]        # e.g. bash scripts/install.sh .venv dev
#
# It installs requirements.lock, which holds the dev and storage extras too (one environment for the
# demo, the tests and the cluster); EXTRAS matters only with DEFR_NO_LOCK=1 (ranges instead of the lock).
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
# Then every other package at the exact version and hash of requirements.lock (`make lock` writes it), with
# no resolution (--no-deps): every machine, CI runner and cluster node gets the same environment, whatever
# the index holds that day. torch stays as installed above (the lock leaves it out). uv does it in seconds
# (pip: a minute or two on 2 cores); pip is the fallback where uv cannot reach the index (it ignores pip.conf).
# DEFR_NO_LOCK=1 installs from pyproject.toml's ranges instead (what `pip install -e .` would do).
install_project() {
  local uv=("$VENV/bin/uv" pip install -q --python "$PY") pip=("$PY" -m pip install -q)
  "$PY" -m pip install -q 'uv>=0.5,<1' || uv=()
  if [ "${DEFR_NO_LOCK:-0}" = 1 ]; then
    { [ ${#uv[@]} -gt 0 ] && "${uv[@]}" -e ".${EXTRAS:+[$EXTRAS]}"; } \
      || { echo "uv failed; installing with pip" >&2; "${pip[@]}" -e ".${EXTRAS:+[$EXTRAS]}"; }
    return
  fi
  { [ ${#uv[@]} -gt 0 ] && "${uv[@]}" --require-hashes --no-deps -r requirements.lock \
      && "${uv[@]}" --no-deps -e .; } \
    || { echo "uv failed; installing with pip" >&2; "${pip[@]}" --require-hashes --no-deps -r requirements.lock \
         && "${pip[@]}" --no-deps --no-build-isolation -e .; }
  # The lock must be complete: a package it misses would surface as an ImportError much later.
  "$PY" -m pip check >&2
}
step "the project and requirements.lock (log: $LOG)" install_project
