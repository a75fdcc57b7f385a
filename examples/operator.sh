#!/usr/bin/env bash
# An operator session with the CLI: find FAILED runs, show why they failed,
# and retry each with a reason. Against `sagaflow dev`:
#
#     examples/operator.sh
#
# SAGAFLOW (the binary, default `sagaflow`), SAGAFLOW_SERVER and
# SAGAFLOW_TOKEN (default dev-operator) can be set. PATCH, a JSON object,
# is merged into each run's context before the retry (default: none).
set -euo pipefail

sagaflow="${SAGAFLOW:-sagaflow}"
export SAGAFLOW_TOKEN="${SAGAFLOW_TOKEN:-dev-operator}"

failed=$("$sagaflow" workflow list --state FAILED --limit 1000 -o json | jq -r '.workflows[].id')
if [ -z "$failed" ]; then
  echo "no FAILED runs"
  exit 0
fi
for id in $failed; do
  echo "== run $id"
  "$sagaflow" workflow get "$id" -o json | jq -r '"   \(.workflow_name): \(.state), \(.error)"'
  if [ -n "${PATCH:-}" ]; then
    "$sagaflow" workflow retry "$id" --patch "$PATCH" --reason "operator.sh: input corrected" > /dev/null
  else
    "$sagaflow" workflow retry "$id" --reason "operator.sh: retry after the fix" > /dev/null
  fi
  echo "   retried"
done
