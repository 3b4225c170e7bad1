#!/usr/bin/env bash
# Installs the MMDetection stack (mmcv 2.1.0 with compiled ops, mmengine 0.10.7, mmdet 3.3.0) into the
# Python environment given as $1 (default: .venv/bin/python).
#
#   bash scripts/install_mmdet.sh .venv/bin/python
#
# Why a script: mmdet 3.3.0 asserts mmcv < 2.2 and needs mmcv's compiled ops, and mmcv 2.1.0 is source
# only. Its setup.py imports pkg_resources (setuptools < 81), must see the installed torch
# (--no-build-isolation), and hard-codes -std=c++17 while torch >= 2.10 headers need C++20. We patch that
# flag, build the wheel once (about 12 minutes on 2 cores for the CPU ops) and keep it in a wheel cache
# outside the work tree, keyed by torch version and CPU/CUDA, so later installs take seconds.
#
# Wheel cache: $DEFR_WHEEL_CACHE (default ~/.cache/defr-pipeline/wheels).
# GPU machines: FORCE_CUDA=1 (or a visible GPU) builds the CUDA ops too; TORCH_CUDA_ARCH_LIST picks archs.
# Prebuilt wheel of your own: drop it into the cache folder printed below, or set DEFR_MMCV_WHEEL=path.
set -euo pipefail
PY=${1:-.venv/bin/python}
CACHE=${DEFR_WHEEL_CACHE:-$HOME/.cache/defr-pipeline/wheels}
MMCV_VERSION=2.1.0

if "$PY" -c "import mmcv, mmdet, mmengine; from mmcv.ops import nms; from mmdet.apis import DetInferencer, init_detector" 2>/dev/null; then
  echo "mmdet stack already installed in $PY"
  exit 0
fi

flavour=$("$PY" - <<'PY'
import os, torch
cuda = os.environ.get("FORCE_CUDA") == "1" or torch.cuda.is_available()
print(f"torch{torch.__version__.split('+')[0]}-{'cuda' + torch.version.cuda if cuda else 'cpu'}")
PY
)
dir="$CACHE/mmcv-$MMCV_VERSION-$flavour"
mkdir -p "$dir"
wheel=${DEFR_MMCV_WHEEL:-$(ls "$dir"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n1 || true)}

if [ -z "$wheel" ]; then
  echo "building mmcv $MMCV_VERSION ($flavour) once into $dir; this takes about 12 minutes on 2 cores"
  start=$SECONDS
  "$PY" -m pip install -q 'setuptools<81' wheel ninja
  src=$(mktemp -d)
  "$PY" -m pip download -q --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$src"
  tar -xzf "$src/mmcv-$MMCV_VERSION.tar.gz" -C "$src"
  sed -i 's/-std=c++17/-std=c++20/g' "$src/mmcv-$MMCV_VERSION/setup.py"
  (cd "$src/mmcv-$MMCV_VERSION" && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
     "$PY" -m pip wheel -q --no-build-isolation --no-deps -w "$dir.tmp" .)
  mv "$dir.tmp"/mmcv-*.whl "$dir"/ && rmdir "$dir.tmp"
  rm -rf "$src"
  wheel=$(ls "$dir"/mmcv-$MMCV_VERSION-*.whl | head -n1)
  echo "built $wheel in $((SECONDS - start)) s" | tee "$dir/BUILD_TIME.txt"
else
  echo "reusing cached mmcv wheel $wheel"
fi

"$PY" -m pip install -q --no-deps "$wheel"
"$PY" -m pip install -q 'mmengine==0.10.7' 'mmdet==3.3.0' 'terminaltables' 'pycocotools' 'shapely' 'addict' 'yapf' 'opencv-python'
"$PY" -c "from mmdet.apis import DetInferencer, init_detector; from mmcv.ops import nms; print('mmdet stack OK')"
