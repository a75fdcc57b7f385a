#!/usr/bin/env bash
# The CRM clients in other languages against a real `sagaflow dev`:
# examples/python/crm.py (grpcio, stubs generated from proto/ at start) with
# its webhook receiver, and examples/curl/provision.sh (curl and jq). Each
# must exit 0 (they check their own outcomes: runs COMPLETED, the failed run
# retried out of FAILED); then every delivery the receiver got must be the
# only one of its run and event, signed validly, and recorded delivered at
# the first try in sagaflow's delivery log.
# Installs grpcio-tools (PyPI) into a cached virtualenv under
# ~/.cache/sagaflow/.
set -euo pipefail
cd "$(dirname "$0")/.."

version=1.85.1
. scripts/dev-lib.sh
python_venv "grpcio-$version" "grpcio-tools==$version"
port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
secret="examples-webhook-secret-$$"
config=$(mktemp)
dev_cleanup+=("$config")
cat > "$config" <<EOF
[[webhooks]]
tenant = "demo"
url = "http://127.0.0.1:$port/hook"
secret = "$secret"
events = ["run_completed", "run_failed", "run_compensated", "run_cancelled",
          "run_terminated", "run_compensation_failed", "step_waiting"]
workflows = ["provision_subscriber", "demo_saga", "demo_wait"]
EOF

start_dev --config "$config"
echo "sagaflow dev: HTTP $api, gRPC $grpc, webhooks to 127.0.0.1:$port"

fail() {
  echo "examples: $*" >&2
  tail -n 50 "$work/stderr" >&2
  exit 1
}

echo "== examples/python/crm.py"
SAGAFLOW_GRPC="$grpc" ORDER="py-$$" WEBHOOK_PORT="$port" WEBHOOK_SECRET="$secret" \
  "$venv/bin/python" examples/python/crm.py | tee "$work/crm.out" \
  || fail "crm.py exited $?"
received=$(tail -n 1 "$work/crm.out")
jq -e 'length > 0 and all(.signature_valid and .headers_match)' <<< "$received" > /dev/null \
  || fail "crm.py: deliveries missing or badly signed: $received"
# Each (run, event) heard once, and every event the script waited for there.
jq -e 'group_by(.run_id + .event) | all(length == 1)' <<< "$received" > /dev/null \
  || fail "a run's event was delivered more than once: $received"
for want in run_completed step_waiting run_failed; do
  jq -e --arg e "$want" 'any(.event == $e)' <<< "$received" > /dev/null \
    || fail "no $want delivery: $received"
done

# sagaflow's delivery log agrees: every delivery the receiver got is
# delivered, at the first try.
# (The dispatcher records a try once the receiver has answered: polled.)
ids=$(jq -c '[.[].delivery_id]' <<< "$received")
for _ in $(seq 1 100); do
  log=$("$bin" webhooks deliveries --database-url "$db" --limit 1000 -o json)
  bad=$(jq -c --argjson ids "$ids" \
    '[.[] | select(.delivery_id as $i | $ids | index($i)) | select(.state != "delivered" or .attempts != 1)]' \
    <<< "$log")
  found=$(jq --argjson ids "$ids" '[.[] | select(.delivery_id as $i | $ids | index($i))] | length' <<< "$log")
  [ "$bad" = "[]" ] && [ "$found" = "$(jq length <<< "$ids")" ] && break
  sleep 0.1
done
[ "$bad" = "[]" ] && [ "$found" = "$(jq length <<< "$ids")" ] \
  || fail "the delivery log disagrees with the receiver: $bad (found $found of $ids)"
# The curl example after (its runs' webhooks find no receiver any more).
echo "== examples/curl/provision.sh"
SAGAFLOW_HTTP="$api" ORDER="curl-$$" examples/curl/provision.sh | tee "$work/curl.out" \
  || fail "provision.sh exited $?"
grep -q 'retried: COMPLETED' "$work/curl.out" || fail "provision.sh: the failed run was not retried to COMPLETED"

echo "examples: both clients passed; $(jq length <<< "$received") webhook deliveries verified"
