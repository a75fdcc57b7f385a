#!/usr/bin/env bash
# A CRM on the JSON/HTTP API with nothing but curl and jq: start a
# provisioning (idempotent on the order id), poll it until it ends, then
# repair a failed run the way an operator would (retry with a context patch).
# Against `sagaflow dev`:
#
#     examples/curl/provision.sh
#
# SAGAFLOW_HTTP (default http://127.0.0.1:9090), CRM_TOKEN (default dev-crm),
# OPERATOR_TOKEN (default dev-operator) and ORDER (the CRM's order id) can be
# set.
set -euo pipefail

api="${SAGAFLOW_HTTP:-http://127.0.0.1:9090}"
crm="${CRM_TOKEN:-dev-crm}"
operator="${OPERATOR_TOKEN:-dev-operator}"
order="${ORDER:-order-$$}"

# call METHOD PATH TOKEN [JSON] [extra curl arguments…]: prints the answer's
# body; fails, printing the error JSON, unless the status is 2xx.
call() {
  local method=$1 path=$2 token=$3 body=${4:-}
  shift 4 || shift $#
  local out status
  out=$(mktemp)
  status=$(curl -sS -o "$out" -w '%{http_code}' -X "$method" "$api$path" \
    -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    ${body:+--data "$body"} "$@")
  if [ "${status:0:1}" != 2 ]; then
    echo "$method $path: HTTP $status $(cat "$out")" >&2
    rm -f "$out"
    return 1
  fi
  cat "$out"
  rm -f "$out"
}

# wait_for ID STATE…: polls the run until it is in one of the states (by
# their short name: COMPLETED, FAILED, …); prints the last state.
wait_for() {
  local id=$1 state
  shift
  for _ in $(seq 1 300); do
    state=$(call GET "/v1/workflows/$id" "$crm" | jq -r '.state | sub("^WORKFLOW_STATE_"; "")')
    for want in "$@"; do
      if [ "$state" = "$want" ]; then
        echo "$state"
        return 0
      fi
    done
    sleep 0.2
  done
  echo "run $id still $state after 60 s" >&2
  return 1
}

# 1. Start a provisioning. The order id is the idempotency key: sending the
#    same order again returns the same run (200 instead of 201).
input=$(jq -n --arg order "$order" '{
  subscriber_id: ("sub-" + $order), plan: "fiber-300", enable_ipv6: true,
  customer: {id: ("c-" + $order), name: "Ada Lovelace", email: "ada@example.net"},
  nas: {ip: "127.0.0.1"}, onu_serial: ("ONU-" + $order), cpe_serial: ("CPE-" + $order)}')
started=$(call POST /v1/workflows "$crm" \
  "$(jq -n --argjson input "$input" '{workflow_name: "provision_subscriber", input: $input}')" \
  -H "Idempotency-Key: $order")
id=$(jq -r .workflow.id <<<"$started")
echo "order $order: run $id ($(jq -r .workflow.state <<<"$started"))"
again=$(call POST /v1/workflows "$crm" \
  "$(jq -n --argjson input "$input" '{workflow_name: "provision_subscriber", input: $input}')" \
  -H "Idempotency-Key: $order")
echo "order $order sent again: created=$(jq .created <<<"$again"), same run: $(jq -r .workflow.id <<<"$again")"

# 2. Poll until it ends.
final=$(wait_for "$id" COMPLETED COMPENSATED FAILED COMPENSATION_FAILED CANCELLED TERMINATED)
echo "run $id: $final"
call GET "/v1/workflows/$id/history" "$crm" | jq -r '.events[] | "  \(.sequence) \(.type) \(.step)"'
if [ "$final" != COMPLETED ]; then
  echo "order $order was not provisioned: run $id ended $final" >&2
  exit 1
fi

# 3. A run that fails at a step and waits for an operator (the demo saga
#    fails where its input says), then the operator's retry with the input
#    corrected through a context patch.
failing=$(call POST /v1/workflows "$crm" '{"workflow_name": "demo_saga", "input": {"demo": {"fail_step": "bill"}}}')
fid=$(jq -r .workflow.id <<<"$failing")
echo "run $fid: $(wait_for "$fid" FAILED) at $(call GET "/v1/workflows/$fid" "$crm" | jq -r '.steps[] | select(.state == "STEP_STATE_FAILED") | .name')"
call GET "/v1/workflows?state=WORKFLOW_STATE_FAILED&workflow_name=demo_saga" "$crm" \
  | jq -r '.workflows[] | "  failed: \(.id) \(.error)"'
call POST "/v1/workflows/$fid:retry" "$operator" \
  '{"reason": "provision.sh: input corrected", "context_patch": {"demo": {}}}' > /dev/null
retried=$(wait_for "$fid" COMPLETED COMPENSATED FAILED COMPENSATION_FAILED CANCELLED TERMINATED)
echo "run $fid retried: $retried"
[ "$retried" = COMPLETED ] || { echo "run $fid did not complete after the retry" >&2; exit 1; }
