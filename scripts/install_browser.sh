#!/usr/bin/env bash
# A real headless browser for the test of `defr serve`'s web page (tests/integration/test_serve.py):
# Debian's chromium and chromium-driver (no browser download at run time; selenium drives it).
#
#   bash scripts/install_browser.sh        # `make install-browser`, which `make test` runs
#
# Nothing to do where /usr/bin/chromium and /usr/bin/chromedriver exist. Otherwise apt-get installs them,
# keeping the downloaded .deb files in ~/.cache/defr-pipeline/apt (DEFR_APT_CACHE) so that a later
# machine with the same ~/.cache installs them without downloading. Needs root (or sudo without a
# password); anywhere else it says what to run and fails.
set -euo pipefail
LOG=${DEFR_LOG_DIR:-logs}/install-browser.log
mkdir -p "$(dirname "$LOG")"
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  echo "install: chromium and chromium-driver already installed ($(/usr/bin/chromium --version 2>/dev/null | head -n 1))"
  exit 0
fi
SUDO=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    echo "install: chromium FAILED: not root and no password-less sudo; run as root:" >&2
    echo "  apt-get update && apt-get install -y chromium chromium-driver" >&2
    exit 1
  fi
fi
CACHE=${DEFR_APT_CACHE:-$HOME/.cache/defr-pipeline/apt}
mkdir -p "$CACHE/partial"
start=$SECONDS
printf 'install: chromium and chromium-driver (Debian packages; log: %s) ...' "$LOG"
if { "${SUDO[@]}" apt-get update -q \
     && DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q --no-install-recommends \
          -o Dir::Cache::archives="$CACHE" chromium chromium-driver; } >>"$LOG" 2>&1 \
   && [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  echo " $((SECONDS - start)) s"
else
  echo " FAILED (full log: $LOG)"
  tail -n 25 "$LOG" | sed 's/^/  | /'
  exit 1
fi
