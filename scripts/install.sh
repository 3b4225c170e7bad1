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
# tail is printed when a step fails, with a non-zero exit (scripts/install_steps.sh). A step fails when its
# command fails and when what it was to install is not there afterwards: after the lock step every package
# of the lock must be installed at its locked version (a hash the index does not match installs nothing, and
# says so). TORCH_SPEC overrides the torch build (default: the tested versions; on a machine with a GPU and
# a normal index this pulls the CUDA wheels of the same versions; empty: keep the environment's own torch).
# DEFR_LOCK names another lock file (default: requirements.lock).
set -euo pipefail
VENV=${1:-.venv}
EXTRAS=${2:-}
TORCH_SPEC=${TORCH_SPEC-torch==2.14.1 torchvision==0.29.1}
LOCK=${DEFR_LOCK:-requirements.lock}
[ -f "$LOCK" ] || { echo "install: lock file $LOCK not found (run from the project root, or set DEFR_LOCK)" >&2; exit 1; }
mkdir -p "$VENV"
VENV=$(cd "$VENV" && pwd)   # absolute: later steps run from other directories
LOG=${DEFR_LOG_DIR:-logs}/install.log
mkdir -p "$(dirname "$LOG")"
touch "$LOG"
# shellcheck source=scripts/install_steps.sh
source "$(dirname "$0")/install_steps.sh"
echo "== $(date -u +%FT%TZ) install into $VENV" >>"$LOG"
[ -x "$VENV/bin/python" ] || step "virtual environment $VENV" python3 -m venv "$VENV"
PY=$VENV/bin/python
step "pip and setuptools<81" "$PY" -m pip install -q --upgrade pip 'setuptools<81' wheel
# torch first, alone, so that pip never swaps its build while resolving the project's ranges.
if [ -n "$TORCH_SPEC" ]; then
  # shellcheck disable=SC2086
  step "$TORCH_SPEC" "$PY" -m pip install -q $TORCH_SPEC
else
  echo "install: torch: TORCH_SPEC is empty, the environment's own torch is kept"
fi
# Then every other package at the exact version and hash of requirements.lock (`make lock` writes it), with
# no resolution (--no-deps): every machine, CI runner and cluster node gets the same environment, whatever
# the index holds that day. torch stays as installed above (the lock leaves it out). uv does it in seconds
# (pip: a minute or two on 2 cores); pip is the fallback where uv cannot reach the index (it ignores pip.conf).
# DEFR_NO_LOCK=1 installs from pyproject.toml's ranges instead (what `pip install -e .` would do).
install_project() {
  local uv=("$VENV/bin/uv" pip install -q --python "$PY") pip=("$PY" -m pip install -q) said=""
  "$PY" -m pip install -q 'uv>=0.5,<1' || uv=()
  if [ "${DEFR_NO_LOCK:-0}" = 1 ]; then
    if [ ${#uv[@]} -eq 0 ] || ! "${uv[@]}" -e ".${EXTRAS:+[$EXTRAS]}"; then
      echo "uv failed; installing with pip"
      "${pip[@]}" -e ".${EXTRAS:+[$EXTRAS]}"
    fi
  elif [ ${#uv[@]} -eq 0 ] \
      || ! said=$({ "${uv[@]}" --require-hashes --no-deps -r "$LOCK" && "${uv[@]}" --no-deps -e .; } 2>&1); then
    echo "$said"
    # A file whose hash is not in the lock is refused by pip as well: say so instead of trying again.
    if [[ $said == *"Hash mismatch"* ]]; then
      echo "refused: a downloaded file does not have the sha256 that $LOCK gives for it (above)"
      return 1
    fi
    echo "uv failed; installing with pip"
    "${pip[@]}" --require-hashes --no-deps -r "$LOCK"
    "${pip[@]}" --no-deps --no-build-isolation -e .
  else
    echo "$said"
  fi
  check_installed
}
# What the step was to install, checked after it: the project itself, every package of the lock at its
# locked version (a package the installers skipped would surface as an ImportError much later), and
# pip check (the lock is complete: no package lacks a dependency).
check_installed() {
  "$PY" - "$LOCK" "${DEFR_NO_LOCK:-0}" <<'PY'
import re
import sys
from importlib.metadata import PackageNotFoundError, version


def installed(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return None


lock, ranges = sys.argv[1], sys.argv[2] == "1"
# name==version lines without an environment marker (one with a marker may rightly be skipped here)
wanted = [] if ranges else re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*\\?$", open(lock).read(), re.M)
wrong = [f"{name}=={v} ({'missing' if installed(name) is None else 'found ' + installed(name)})"
         for name, v in wanted if installed(name) != v]
if installed("defr-pipeline") is None:
    wrong.append("defr-pipeline (the project itself: missing)")
if wrong:
    sys.exit(f"not installed as {lock} says: {len(wrong)} package(s): {', '.join(wrong[:8])}"
             + (" ..." if len(wrong) > 8 else ""))
print(f"{len(wanted)} packages of {lock} and the project installed")
PY
  "$PY" -m pip check
}
step "the project and $LOCK (log: $LOG)" install_project
