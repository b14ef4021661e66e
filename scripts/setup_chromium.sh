#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium (/usr/bin/chromium) for the dashboard's end-to-end
# test, which drives it with the Python `playwright` package (executable_path=/usr/bin/chromium;
# never `playwright install`, which would download a browser at run time). Idempotent.
set -euo pipefail

log() { printf '[setup_chromium] %s\n' "$*"; }

if [[ -x /usr/bin/chromium ]]; then
  log "already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
# Another CI step may hold the dpkg lock: retry rather than fail.
for i in $(seq 1 30); do
  if $SUDO apt-get install -y --no-install-recommends chromium fonts-dejavu-core; then break; fi
  if [[ $i -eq 1 ]]; then $SUDO apt-get update || true; fi
  log "apt busy or failed (try $i/30), retrying in 5 s"; sleep 5
done
[[ -x /usr/bin/chromium ]] || { log "chromium did not install"; exit 1; }
log "installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
