#!/usr/bin/env bash
# schemathesis against the OpenAPI document of a running `sagaflow dev`
# (GET /v1/openapi.json), with an admin token: no answer may be a 5xx, and
# every answer's status, content type and body must be the document's.
# Installs schemathesis (PyPI) into a cached virtualenv under
# ~/.cache/sagaflow/. Short by design: a few examples per operation.
# Every operation of the document is tested.
set -euo pipefail
cd "$(dirname "$0")/.."

version=4.32.5
. scripts/dev-lib.sh
python_venv "schemathesis-$version" "schemathesis==$version"
start_dev
echo "sagaflow dev at $api"

"$venv/bin/schemathesis" run "$api/v1/openapi.json" \
  --header "Authorization: Bearer dev-admin" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" \
  --seed "${SCHEMATHESIS_SEED:-16}" \
  --no-color
