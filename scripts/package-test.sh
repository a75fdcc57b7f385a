#!/usr/bin/env bash
# Builds the Debian package with cargo-deb (the release binary, its shell
# completions and man page generated from it, the shipped workflows, the
# example /etc/sagaflow/sagaflow.toml, the systemd unit), installs it with
# dpkg, runs the installed binary's `migrate` and `serve` as the service
# user with the installed configuration against a fresh database on the
# local PostgreSQL (the simulators asked for explicitly, secrets from the
# environment), checks /readyz and /healthz, stops it with SIGTERM, purges
# the package and checks nothing is left. cargo-deb is installed from
# crates.io once into ~/.cache/sagaflow/cargo-deb-<version> and reused.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ] || ! command -v dpkg >/dev/null || ! command -v setpriv >/dev/null; then
  echo "package-test: needs root, dpkg and setpriv; skipped"
  exit 0
fi
if dpkg -s sagaflow >/dev/null 2>&1; then
  echo "package-test: a sagaflow package is already installed here; not touching it"
  exit 1
fi

t0=$(date +%s)
phase() { echo "package-test: $1 ($(($(date +%s) - t0)) s)"; }

CARGO_DEB_VERSION=3.8.0
CACHE="${HOME}/.cache/sagaflow/cargo-deb-${CARGO_DEB_VERSION}"
if [ ! -x "$CACHE/bin/cargo-deb" ]; then
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --root "$CACHE"
fi
export PATH="$CACHE/bin:$PATH"
phase "cargo-deb $CARGO_DEB_VERSION at hand"

cargo build --release --locked -p sagaflow
phase "release binary built"

# The generated assets `[package.metadata.deb]` names.
ASSETS=target/package-assets
rm -rf "$ASSETS"
mkdir -p "$ASSETS"
BIN=target/release/sagaflow
"$BIN" completions bash >"$ASSETS/sagaflow.bash"
"$BIN" completions zsh >"$ASSETS/_sagaflow"
"$BIN" completions fish >"$ASSETS/sagaflow.fish"
"$BIN" man | gzip -9n >"$ASSETS/sagaflow.1.gz"

DEB=target/debian/sagaflow.deb
rm -f "$DEB"
cargo deb -p sagaflow --no-build --output "$DEB"
phase "package built: $(du -h "$DEB" | cut -f1)"

contents=$(dpkg-deb -c "$DEB")
for f in ./usr/bin/sagaflow \
  ./usr/share/sagaflow/workflows/provision_subscriber.v1.toml \
  ./usr/share/sagaflow/workflows/schedules.toml \
  ./etc/sagaflow/sagaflow.toml \
  ./usr/share/bash-completion/completions/sagaflow \
  ./usr/share/zsh/vendor-completions/_sagaflow \
  ./usr/share/fish/vendor_completions.d/sagaflow.fish \
  ./usr/share/man/man1/sagaflow.1.gz \
  ./usr/share/doc/sagaflow/operations.md; do
  grep -q " $f\$" <<<"$contents" || { echo "package-test: $f is not in the package"; exit 1; }
done
grep -Eq ' \./(usr/)?lib/systemd/system/sagaflow\.service$' <<<"$contents" \
  || { echo "package-test: the systemd unit is not in the package"; exit 1; }

DB="sagaflow_package_test"
PORT_HTTP=19471
PORT_GRPC=15051
had_user=""
getent passwd sagaflow >/dev/null && had_user=1
PID=""
cleanup() {
  status=$?
  if [ -n "$PID" ]; then
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  if dpkg -s sagaflow >/dev/null 2>&1; then
    dpkg -P sagaflow >/dev/null || true
  fi
  if [ -z "$had_user" ] && getent passwd sagaflow >/dev/null; then
    deluser --system sagaflow >/dev/null 2>&1 || userdel sagaflow || true
    getent group sagaflow >/dev/null && { delgroup --system sagaflow >/dev/null 2>&1 || groupdel sagaflow || true; }
  fi
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB" || true
  exit "$status"
}
trap cleanup EXIT

dpkg -i "$DEB"
phase "installed"
files=$(dpkg -L sagaflow)
[ "$(stat -c %G:%a /etc/sagaflow/sagaflow.toml)" = sagaflow:640 ] \
  || { echo "package-test: /etc/sagaflow/sagaflow.toml is $(stat -c %U:%G:%a /etc/sagaflow/sagaflow.toml)"; exit 1; }
/usr/bin/sagaflow --version
zcat /usr/share/man/man1/sagaflow.1.gz | grep -c '^\.TH sagaflow 1' >/dev/null
bash -c 'source /usr/share/bash-completion/completions/sagaflow && complete -p sagaflow' >/dev/null

psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
# The installed configuration, with this test's database and ports, the
# simulators in place of the external systems, and the secret from the
# environment (as /etc/sagaflow/sagaflow.env gives them to the unit).
env=(
  SAGAFLOW_CONFIG=/etc/sagaflow/sagaflow.toml
  SAGAFLOW_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB"
  SAGAFLOW_HTTP_ADDR=127.0.0.1:$PORT_HTTP
  SAGAFLOW_GRPC_ADDR=127.0.0.1:$PORT_GRPC
  SAGAFLOW_SIMULATORS=true
  SAGAFLOW_RADIUS_SECRET=package-test-secret
)
cd /
as_service=(setpriv --reuid=sagaflow --regid=sagaflow --init-groups env "${env[@]}")
"${as_service[@]}" /usr/bin/sagaflow migrate
phase "migrated"
"${as_service[@]}" /usr/bin/sagaflow serve &
PID=$!

ok=""
for _ in $(seq 1 240); do
  if curl -fsS "http://127.0.0.1:$PORT_HTTP/readyz" >/dev/null 2>&1; then
    ok=1
    break
  fi
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.5
done
[ -n "$ok" ] || { echo "package-test: the installed sagaflow did not become ready"; exit 1; }
curl -fsS "http://127.0.0.1:$PORT_HTTP/healthz"
echo
phase "serving, /readyz and /healthz answer"

# SIGTERM drains and exits 0 (setpriv and env exec: $PID is the server).
kill -TERM "$PID"
rc=0
wait "$PID" || rc=$?
PID=""
[ "$rc" = 0 ] || { echo "package-test: serve exited $rc on SIGTERM"; exit 1; }
phase "stopped"

dpkg -P sagaflow
left=""
while IFS= read -r f; do
  [ -d "$f" ] && continue
  [ -e "$f" ] && left="$left $f"
done <<<"$files"
[ -e /etc/sagaflow ] && left="$left /etc/sagaflow"
[ -e /var/lib/sagaflow ] && left="$left /var/lib/sagaflow"
[ -z "$left" ] || { echo "package-test: left after purge:$left"; exit 1; }
phase "purged, nothing left"
echo "package-test: the installed sagaflow migrated, served, answered /readyz and /healthz, stopped and was purged"
