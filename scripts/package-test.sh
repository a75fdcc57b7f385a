#!/usr/bin/env bash
# Builds the Debian package with cargo-deb (the binary, its shell
# completions and man page generated from it, the shipped workflows, the
# example /etc/sagaflow/sagaflow.toml, the systemd unit), installs it with
# dpkg, checks the unit (systemd-analyze), runs the installed binary's
# `migrate` and `serve` as the service user with the installed
# configuration against a fresh database on the local PostgreSQL (the
# simulators asked for explicitly, secrets from the environment), checks
# /readyz and /healthz, stops it with SIGTERM, purges the package and checks
# nothing is left. cargo-deb is installed from crates.io once into
# ~/.cache/sagaflow/cargo-deb-<version> and reused.
#
# CI packages the debug build (`cargo deb --profile dev`) to stay in its
# time budget: the binary `cargo test --workspace` has just built, so the
# build step is a no-op there. `scripts/package-test.sh --release` (or
# SAGAFLOW_PACKAGE_RELEASE=1) builds the release binary and packages that,
# as a release is made. (cargo-deb 3.8 warns that it means to refuse dev
# profiles one day; the version is pinned below.)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

release="${SAGAFLOW_PACKAGE_RELEASE:-}"
for arg in "$@"; do
  case "$arg" in
    --release) release=1 ;;
    *) echo "usage: scripts/package-test.sh [--release]" >&2; exit 2 ;;
  esac
done

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

if [ -n "$release" ]; then
  cargo build --release --locked -p sagaflow
  BIN=target/release/sagaflow
  PROFILE=()
  COMPRESS=()
  phase "release binary built"
else
  # The same command as CI's test step, without running the tests: its
  # target/debug/sagaflow (a build of the binary alone would resolve other
  # features and rebuild part of the tree).
  cargo test --workspace --locked --no-run
  BIN=target/debug/sagaflow
  PROFILE=(--profile dev)
  COMPRESS=(--fast)
  phase "debug binary built (as cargo test --workspace builds it)"
fi

# The generated assets `[package.metadata.deb]` names.
ASSETS=target/package-assets
rm -rf "$ASSETS"
mkdir -p "$ASSETS"
"$BIN" completions bash >"$ASSETS/sagaflow.bash"
"$BIN" completions zsh >"$ASSETS/_sagaflow"
"$BIN" completions fish >"$ASSETS/sagaflow.fish"
"$BIN" man | gzip -9n >"$ASSETS/sagaflow.1.gz"

DEB=target/debian/sagaflow.deb
# The same build as the next Debian revision, to upgrade to (compressed
# fast: it is only installed here).
DEB2=target/debian/sagaflow-upgrade.deb
rm -f "$DEB" "$DEB2"
cargo deb -p sagaflow --no-build --locked "${PROFILE[@]}" "${COMPRESS[@]}" --output "$DEB"
cargo deb -p sagaflow --no-build --locked "${PROFILE[@]}" --fast --deb-revision 2 --output "$DEB2" >/dev/null 2>&1
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
# The unit: its own user, restarted on failure, hardened; systemd-analyze
# (where there is one) parses it and rates its exposure (0 best, 100 worst).
unit=$(grep -E '^/(usr/)?lib/systemd/system/sagaflow\.service$' <<<"$files")
for line in User=sagaflow Group=sagaflow 'ExecStart=/usr/bin/sagaflow serve' Restart=on-failure \
  NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes CapabilityBoundingSet=; do
  grep -qxF "$line" "$unit" || { echo "package-test: $unit lacks $line"; exit 1; }
done
if command -v systemd-analyze >/dev/null; then
  verify=$(systemd-analyze verify "$unit" 2>&1 | grep sagaflow || true)
  [ -z "$verify" ] || { echo "package-test: systemd-analyze verify: $verify"; exit 1; }
  systemd-analyze security --offline=yes --threshold=20 "$unit" | tail -n1
fi
zcat /usr/share/man/man1/sagaflow.1.gz | grep -c '^\.TH sagaflow 1' >/dev/null
bash -c 'source /usr/share/bash-completion/completions/sagaflow && complete -p sagaflow' >/dev/null

psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
# As the unit runs it (the user's HOME, as systemd sets it): the installed
# configuration, with this test's database and ports, the
# simulators in place of the external systems, and the secret from the
# environment (as /etc/sagaflow/sagaflow.env gives them to the unit).
env=(
  HOME=/var/lib/sagaflow
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

# An upgrade: the edited configuration (a conffile) is kept, the user is
# not made again, and the new binary's `migrate` finds nothing to do.
echo "# edited by package-test" >>/etc/sagaflow/sagaflow.toml
dpkg -i "$root/$DEB2" </dev/null
[ "$(dpkg-query -W -f '${Version}' sagaflow)" = "$(dpkg-deb -f "$root/$DEB2" Version)" ] \
  || { echo "package-test: not upgraded"; exit 1; }
grep -q '^# edited by package-test$' /etc/sagaflow/sagaflow.toml \
  || { echo "package-test: the upgrade lost the edited configuration"; exit 1; }
[ "$(stat -c %G:%a /etc/sagaflow/sagaflow.toml)" = sagaflow:640 ] \
  || { echo "package-test: after the upgrade the configuration is $(stat -c %U:%G:%a /etc/sagaflow/sagaflow.toml)"; exit 1; }
"${as_service[@]}" /usr/bin/sagaflow migrate
phase "upgraded in place, configuration kept, migrate again"

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
echo "package-test: the installed sagaflow migrated, served, answered /readyz and /healthz, stopped, was upgraded in place and purged"
