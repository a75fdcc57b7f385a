#!/usr/bin/env bash
# Runs the RADIUS tests against a real FreeRADIUS server: installs Debian's
# freeradius, freeradius-postgresql and freeradius-utils when they are
# missing, then runs steps/tests/freeradius.rs. Each test starts its own
# `freeradius -X` on free loopback ports with rlm_sql pointed at a fresh
# PostgreSQL test database (DATABASE_URL, as for the other tests), and stops
# it at the end. Extra arguments go to the test binary (e.g. a test name).
set -euo pipefail
cd "$(dirname "$0")/.."

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

source scripts/debian-packages.sh
ensure_debian_packages freeradius freeradius-postgresql freeradius-utils

exec cargo test -p sagaflow-steps --features freeradius-tests --test freeradius -- "$@"
