#!/usr/bin/env bash
# Every test: lint, types, unit tests with fakes, and integration tests against a real
# Kafka broker and Redis (the integration fixtures start both on free ports).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/bootstrap.sh
VENV="${VOLMATCH_VENV:-.venv}"

echo "== ruff"
"$VENV/bin/ruff" check .
echo "== mypy --strict"
"$VENV/bin/mypy"
# Integration tests give a starting worker two minutes; the first fit of the skill model
# can take longer on a slow machine, so it is made (or loaded from the cache) here first.
echo "== skill model"
"$VENV/bin/python" -m matcher prepare
echo "== pytest"
set +e
"$VENV/bin/pytest" "$@"
status=$?
set -e
if [[ $status -eq 5 ]]; then
  echo "pytest ran no test: that is a failure" >&2
  exit 1
fi
exit $status
