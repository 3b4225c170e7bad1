#!/usr/bin/env bash
# `make lock`: (re)writes requirements.lock, the exact versions (with hashes) of every package that `make
# demo`, `make test`, the cluster image and every cluster node install, from pyproject.toml's ranges.
#
#   bash scripts/lock.sh [UV]           # UV: the uv binary (default: .venv/bin/uv)
#   LOCK_UPGRADE=1 bash scripts/lock.sh # newest versions inside the ranges (default: keep the locked ones)
#
# What is locked: the project's dependencies with the dev extra (make test) and the storage extra (the
# cluster image: S3, GCS, Azure), resolved for the tested platform, Linux x86-64 with Python 3.11 (the
# cluster image's Python). What is not: torch and torchvision, and the CUDA/NVIDIA libraries that only
# they need. Those are installed first, alone, by scripts/install.sh (TORCH_SPEC: exact versions), and the
# index decides the build (CPU here, CUDA on a GPU node), so one lock serves CPU and GPU nodes. The
# MMDetection stack (mmcv is built from source) is pinned exactly by scripts/install_mmdet.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${1:-.venv/bin/uv}
[ -x "$UV" ] || { echo "lock: $UV not found: run make install first (it installs uv into the venv)" >&2; exit 1; }
OUT=requirements.lock
TMP=$(mktemp "$OUT.XXXXXX")
trap 'rm -f "$TMP"' EXIT
[ -f "$OUT" ] && cp "$OUT" "$TMP"   # uv keeps the versions already in the output file unless --upgrade
compile() {
  "$UV" pip compile pyproject.toml --extra dev --extra storage --python-version 3.11 \
    --python-platform x86_64-unknown-linux-gnu --generate-hashes --no-header --quiet \
    ${LOCK_UPGRADE:+--upgrade} "$@" -o "$TMP"
}
compile
# Second pass without the torch stack: torch, torchvision and what nothing but them needs (the NVIDIA/CUDA
# libraries, triton; nvidia-ml-py stays: DVCLive needs it), read from the first pass's "# via" lines.
skip=()
for name in $("$(dirname "$UV")/python" - "$TMP" <<'PY'
import re, sys
parents, name = {}, None
for line in open(sys.argv[1]):
    m = re.match(r"^([A-Za-z0-9_.\-]+)==", line)
    if m:
        name = m.group(1).lower()
        parents[name] = set()
        continue
    m = re.match(r"^\s+#\s+(?:via\s+)?([A-Za-z0-9_.\-]+)(?:\s|$)", line)
    if name and m and m.group(1) != "via":
        parents[name].add(m.group(1).lower())
torch_only = {"torch", "torchvision"}
changed = True
while changed:
    changed = False
    for pkg, via in parents.items():
        if pkg not in torch_only and via and via <= torch_only:
            torch_only.add(pkg)
            changed = True
print("\n".join(sorted(torch_only & set(parents))))
PY
); do
  skip+=(--no-emit-package "$name")
done
compile "${skip[@]}"
{
  echo "# requirements.lock: written by \`make lock\` (scripts/lock.sh) from pyproject.toml; do not edit."
  echo "# Linux x86-64, Python 3.11; torch/torchvision (and their CUDA libraries) are installed by"
  echo "# scripts/install.sh (TORCH_SPEC) and the MMDetection stack by scripts/install_mmdet.sh."
  cat "$TMP"
} >"$OUT.new"
mv "$OUT.new" "$OUT"
echo "lock: $OUT: $(grep -cE '^[a-z0-9]' "$OUT") packages"
