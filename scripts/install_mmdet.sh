#!/usr/bin/env bash
# Installs the MMDetection stack (mmcv 2.1.0 with compiled ops, mmengine 0.10.7, mmdet 3.3.0) into the
# Python environment given as $1 (default: .venv/bin/python; a relative or absolute path). `make
# install-detect` (and `make test`) run it; `make demo` does not need it (oracle boxes). docs/detection.md.
#
#   bash scripts/install_mmdet.sh .venv/bin/python
#
# Why a script: mmdet 3.3.0 asserts mmcv >= 2.0.0rc4, < 2.2 and needs mmcv's compiled ops (mmcv._ext;
# mmcv-lite is not enough), and mmcv 2.1.0 is published as source only. Its setup.py imports
# pkg_resources (setuptools < 81), must see the installed torch (--no-build-isolation), and hard-codes
# -std=c++17 while torch >= 2.10 headers need C++20. We patch that flag, build the wheel once and keep it
# in a wheel cache outside the work tree, keyed by Python, torch and CPU/CUDA, so later installs (new
# venvs, CI, colleagues on a shared home) take seconds.
# Measured here (2 shared cores, torch 2.14.1 CPU, Python 3.11): 573 s build; cached re-install ~10 s.
#
# Environment:
#   DEFR_WHEEL_CACHE       wheel cache (default ~/.cache/defr-pipeline/wheels); the build time of each
#                          wheel is recorded beside it in BUILD_TIME.txt
#   DEFR_MMCV_WHEEL        path of a prebuilt mmcv 2.1.0 wheel to install instead of building (it must
#                          match this torch's version, C++ ABI and CUDA version)
#   DEFR_FORCE_REINSTALL=1 reinstall from the cache even when the stack already imports
#   FORCE_CUDA=1           build the CUDA ops (default: when torch sees a GPU); needs nvcc of the CUDA
#                          version torch was built with (torch.version.cuda) and CUDA_HOME set
#   TORCH_CUDA_ARCH_LIST   GPU architectures to compile, e.g. "8.0;9.0" (A100, H100): fewer = faster
#   MAX_JOBS               parallel compile jobs (default: all cores)
set -euo pipefail
PY=${1:-.venv/bin/python}
# Absolute: the build below runs $PY from inside the unpacked source (a relative venv path broke there).
case "$PY" in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac
CACHE=${DEFR_WHEEL_CACHE:-$HOME/.cache/defr-pipeline/wheels}
MMCV_VERSION=2.1.0
STACK="mmcv $MMCV_VERSION, mmengine 0.10.7, mmdet 3.3.0"
CHECK="import mmcv, mmdet, mmengine; from mmcv.ops import nms; from mmdet.apis import DetInferencer, init_detector"
LOG=${DEFR_LOG_DIR:-logs}/install-detect.log
mkdir -p "$(dirname "$LOG")"
touch "$LOG"
# shellcheck source=scripts/install_steps.sh
source "$(dirname "$0")/install_steps.sh"
echo "== $(date -u +%FT%TZ) install the MMDetection stack into $PY" >>"$LOG"
t0=$SECONDS

if [ "${DEFR_FORCE_REINSTALL:-0}" != 1 ] && "$PY" -c "$CHECK" 2>/dev/null; then
  echo "install: the MMDetection stack ($STACK) is already installed in $PY (DEFR_FORCE_REINSTALL=1 reinstalls it)"
  exit 0
fi

if ! flavour=$("$PY" - 2>>"$LOG" <<'PY'
import os, sys, torch
cuda = os.environ.get("FORCE_CUDA") == "1" or torch.cuda.is_available()
arch = os.environ.get("TORCH_CUDA_ARCH_LIST", "").replace(";", "_").replace(" ", "_").replace("+", "p")
kind = f"cuda{torch.version.cuda}" + (f"-sm{arch}" if arch else "") if cuda else "cpu"
print(f"py{sys.version_info[0]}{sys.version_info[1]}-torch{torch.__version__.split('+')[0]}-{kind}")
PY
); then
  echo "install: the MMDetection stack FAILED: $PY cannot import torch, which mmcv is built against (make install first; log: $LOG)"
  tail -n 5 "$LOG" | sed 's/^/  | /'
  exit 1
fi
dir="$CACHE/mmcv-$MMCV_VERSION-$flavour"
mkdir -p "$dir"
# Two installs at once (make -j, two terminals) wait for one build instead of compiling twice.
if command -v flock >/dev/null; then
  exec 9>"$dir.lock"
  w0=$SECONDS
  flock -n 9 || { printf "install: waiting for another install's mmcv build (%s) ..." "$dir.lock"; flock 9
                  echo " $(duration $((SECONDS - w0)))"; }
fi

wheel=${DEFR_MMCV_WHEEL:-}
if [ -n "$wheel" ] && [ ! -f "$wheel" ]; then
  echo "install: the MMDetection stack FAILED: DEFR_MMCV_WHEEL=$wheel does not exist" >&2; exit 1
fi
[ -n "$wheel" ] || wheel=$(ls "$dir"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n1 || true)

build_mmcv() {
  case "$flavour" in
    *cuda*) command -v nvcc >/dev/null || [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ] || {
      echo "building mmcv's CUDA ops needs nvcc (CUDA toolkit ${flavour#*-cuda}); set CUDA_HOME, or FORCE_CUDA=0 for CPU ops only" >&2; exit 1; } ;;
  esac
  local start=$SECONDS src
  "$PY" -m pip install -q 'setuptools<81' wheel ninja
  src=$(mktemp -d)
  # Expanded now: the trap runs when step's subshell exits, after this function's locals are gone (set -u
  # made a late "$src" an error that failed a build that had succeeded).
  trap "rm -rf $(printf '%q ' "$src" "$dir.tmp")" EXIT
  "$PY" -m pip download -q --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$src"
  tar -xzf "$src/mmcv-$MMCV_VERSION.tar.gz" -C "$src"
  grep -q -- '-std=c++17' "$src/mmcv-$MMCV_VERSION/setup.py" || {
    echo "mmcv $MMCV_VERSION setup.py no longer has -std=c++17: check the C++20 patch" >&2; exit 1; }
  sed -i 's/-std=c++17/-std=c++20/g' "$src/mmcv-$MMCV_VERSION/setup.py"
  case "$flavour" in *cuda*) export FORCE_CUDA=1 ;; *) export FORCE_CUDA=0 ;; esac
  (cd "$src/mmcv-$MMCV_VERSION" && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
     "$PY" -m pip wheel -q --no-build-isolation --no-deps -w "$dir.tmp" .)
  mv "$dir.tmp"/mmcv-*.whl "$dir"/
  echo "built in $(duration $((SECONDS - start))) on $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)" >"$dir/BUILD_TIME.txt"
}

built=""
if [ -z "$wheel" ]; then
  b0=$SECONDS
  step "mmcv $MMCV_VERSION built from source ($flavour) into $dir, once: about 10-17 min on 2 cores" build_mmcv
  built=$((SECONDS - b0))
  wheel=$(ls "$dir"/mmcv-$MMCV_VERSION-*.whl | head -n1)
else
  echo "install: mmcv $MMCV_VERSION: the cached wheel $wheel ($(cat "$(dirname "$wheel")/BUILD_TIME.txt" 2>/dev/null || echo 'a prebuilt wheel'))"
fi

install_stack() {
  "$PY" -m pip install -q --no-deps --force-reinstall "$wheel"
  # mmcv's own runtime deps (installed --no-deps above) plus mmengine and mmdet.
  "$PY" -m pip install -q 'mmengine==0.10.7' 'mmdet==3.3.0' addict packaging pyyaml yapf \
    terminaltables pycocotools shapely opencv-python
  "$PY" -c "$CHECK; print('mmdet stack OK:', mmcv.__version__, mmengine.__version__, mmdet.__version__)"
}
step "$STACK and their dependencies, checked by importing mmdet.apis and mmcv.ops" install_stack
if [ -n "$built" ]; then
  echo "install: the MMDetection stack took $(duration $((SECONDS - t0))) in all, $(duration "$built") of it the mmcv build (cached for later installs; log: $LOG)"
else
  echo "install: the MMDetection stack took $(duration $((SECONDS - t0))) (no build: the cached mmcv wheel; log: $LOG)"
fi
