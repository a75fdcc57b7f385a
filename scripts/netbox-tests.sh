#!/usr/bin/env bash
# Runs the NetBox IPAM tests (steps/tests/netbox.rs) against a real NetBox:
# scripts/netbox.sh installs it (once, cached), gives it a fresh database and
# starts it on loopback; the tests get NETBOX_URL and NETBOX_TOKEN, and NetBox
# is stopped at the end. Extra arguments go to the test binary (e.g. a test
# name). The first run installs NetBox and migrates its database (about 11
# minutes on two shared cores); later runs restore the cached dump (NetBox up
# in about 47 s), and the tests take 3.5 to 7.5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

trap 'scripts/netbox.sh stop' EXIT
env=$(scripts/netbox.sh start)
NETBOX_URL=$(sed -n 's/^NETBOX_URL=//p' <<< "$env")
NETBOX_TOKEN=$(sed -n 's/^NETBOX_TOKEN=//p' <<< "$env")
export NETBOX_URL NETBOX_TOKEN

# One test at a time: they share one NetBox (three gunicorn workers), and
# the two hundred concurrent allocations would starve the saga tests.
cargo test -p sagaflow-steps --features netbox-tests --test netbox -- \
  --test-threads="${NETBOX_TEST_THREADS:-1}" "$@"
