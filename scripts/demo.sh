#!/usr/bin/env bash
# The main job: start Kafka and Redis locally, start the matching worker, publish the
# bundled sample week (Chinese and English), show the assignments and unmatched needs it
# published and the consumer lag, then stop everything cleanly.
#
#   bash scripts/demo.sh          # run the demo and stop
#   bash scripts/demo.sh --keep   # leave Kafka, Redis and the worker running afterwards
#
# Ports: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), REDIS_PORT (6390; not 6379, so a
# Redis that Debian's package may have started does not collide). Input: DEMO_INPUT.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

keep=0
[[ "${1:-}" == "--keep" ]] && keep=1

export KAFKA_PORT="${KAFKA_PORT:-9092}"
export KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
export REDIS_PORT="${REDIS_PORT:-6390}"
export VOLMATCH_STATE="${VOLMATCH_STATE:-$PWD/.state/demo}"
input="${DEMO_INPUT:-samples/week.jsonl}"
py=".venv/bin/python"

log() { printf '\n== %s\n' "$*"; }

log "bootstrap (venv, redis-server, Kafka jars)"
bash scripts/bootstrap.sh

log "start Kafka and Redis"
bash scripts/services.sh start

# A fresh topic prefix, group and Redis key prefix per run: a second demo starts clean.
run_id="demo$(date +%s)"
export VOLMATCH_KAFKA__BOOTSTRAP_SERVERS="127.0.0.1:$KAFKA_PORT"
export VOLMATCH_KAFKA__TOPIC_PREFIX="$run_id-"
export VOLMATCH_KAFKA__GROUP_ID="volmatch-$run_id"
export VOLMATCH_REDIS__URL="redis://127.0.0.1:$REDIS_PORT/0"
export VOLMATCH_REDIS__KEY_PREFIX="volmatch-$run_id"
export VOLMATCH_LOG_LEVEL="${VOLMATCH_LOG_LEVEL:-WARNING}"
# The coordinator page: a district token (every community, no personal data) made per run.
export VOLMATCH_COORDINATOR__DISTRICT_TOKEN="${VOLMATCH_COORDINATOR__DISTRICT_TOKEN:-$("$py" -c 'import secrets; print(secrets.token_urlsafe(18))')}"

worker_log="$VOLMATCH_STATE/worker-$run_id.log"
cleanup() {
  if [[ -n "${worker_pid:-}" ]] && kill -0 "$worker_pid" 2>/dev/null; then
    kill -TERM "$worker_pid" 2>/dev/null || true
    wait "$worker_pid" 2>/dev/null || true
  fi
  bash scripts/services.sh stop >/dev/null 2>&1 || true
}

# Fitted here, not inside the worker's start: the first fit takes minutes, later ones
# load from the fit cache in seconds, and the wait for the worker below stays short.
log "skill model: fit it, or load it from the fit cache"
"$py" -m matcher prepare
log "create topics ($run_id-*) and start the worker (log: $worker_log)"
"$py" -m streams topics
"$py" -m streams worker --datadir "$VOLMATCH_STATE/faust-$run_id" >"$worker_log" 2>&1 &
worker_pid=$!
[[ $keep -eq 1 ]] || trap cleanup EXIT
for _ in $(seq 1 120); do
  grep -q "volmatch worker ready" "$worker_log" 2>/dev/null && break
  kill -0 "$worker_pid" 2>/dev/null || { cat "$worker_log"; echo "worker exited" >&2; exit 1; }
  sleep 1
done
grep -q "volmatch worker ready" "$worker_log" || { tail -50 "$worker_log"; echo "worker not ready" >&2; exit 1; }

log "publish $input"
"$py" -m streams produce "$input"

log "assignments, unmatched needs and lag, once the worker has caught up"
"$py" -m streams report --timeout 180

if [[ $keep -eq 1 ]]; then
  log "still running: worker pid $worker_pid; stop with: kill $worker_pid; bash scripts/services.sh stop"
  echo "coordinator page (district view): http://127.0.0.1:${VOLMATCH_OPS__PORT:-8088}/coordinator#token=$VOLMATCH_COORDINATOR__DISTRICT_TOKEN"
  echo "a community's own view (with contacts, accept/decline): set VOLMATCH_COORDINATOR__TOKENS='{\"<community>\": \"<token>\"}' before the demo"
  echo "export the VOLMATCH_* variables printed below to use python -m streams tail/lag:"
  env | grep '^VOLMATCH_' | sed 's/^/export /'
fi
