#!/usr/bin/env bash
# Builds the Debian package with cargo-deb, installs it with dpkg, runs the
# installed binary's `migrate` and `serve` with the installed configuration
# against a fresh database on the local PostgreSQL, checks /healthz and
# /readyz, stops it and removes the package. cargo-deb is installed from
# crates.io once into ~/.cache/sagaflow/cargo-deb and reused.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ] || ! command -v dpkg >/dev/null; then
  echo "package-test: needs root and dpkg; skipped"
  exit 0
fi

CACHE="${HOME}/.cache/sagaflow/cargo-deb"
if [ ! -x "$CACHE/bin/cargo-deb" ]; then
  cargo install --locked --root "$CACHE" cargo-deb
fi
export PATH="$CACHE/bin:$PATH"

cargo deb --no-strip --output target/debian/sagaflow.deb
dpkg -i target/debian/sagaflow.deb

DB="sagaflow_package_test"
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
export SAGAFLOW_CONFIG=/etc/sagaflow/sagaflow.toml
export SAGAFLOW_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB"
export SAGAFLOW_SIMULATORS=true SAGAFLOW_RADIUS_SECRET=package-test-secret
export SAGAFLOW_HTTP_ADDR=127.0.0.1:19471 SAGAFLOW_GRPC_ADDR=127.0.0.1:15051

/usr/bin/sagaflow migrate
/usr/bin/sagaflow serve &
PID=$!
cleanup() {
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  dpkg -r sagaflow || true
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB" || true
}
trap cleanup EXIT

ok=""
for _ in $(seq 1 120); do
  if curl -fsS http://127.0.0.1:19471/readyz >/dev/null 2>&1; then
    ok=1
    break
  fi
  sleep 0.5
done
[ -n "$ok" ] || { echo "package-test: serve did not become ready"; exit 1; }
curl -fsS http://127.0.0.1:19471/healthz >/dev/null
echo "package-test: the installed sagaflow migrated, served and answered /healthz and /readyz"
