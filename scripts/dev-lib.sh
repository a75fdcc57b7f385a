# Sourced by the scripts that run against a live `sagaflow dev`
# (schemathesis.sh, examples.sh): a cached virtualenv of a PyPI package, and
# a `sagaflow dev` on free ports with its own SQLite database, stopped when
# the script exits (with the files the script adds to `dev_cleanup`).

dev="" work=""
dev_cleanup=()
dev_stop() {
  if [ -n "$dev" ]; then
    kill "$dev" 2> /dev/null || true
    wait "$dev" 2> /dev/null || true
  fi
  rm -rf ${work:+"$work"} "${dev_cleanup[@]}"
}
trap dev_stop EXIT

# python_venv NAME SPEC…: sets `venv` to ~/.cache/sagaflow/NAME, a
# virtualenv with SPEC… installed (once; later runs reuse it).
python_venv() {
  local name=$1
  shift
  venv="${XDG_CACHE_HOME:-$HOME/.cache}/sagaflow/$name"
  if [ ! -f "$venv/.installed" ]; then
    echo "installing $* into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
    touch "$venv/.installed"
  fi
}

# start_dev [GLOBAL ARGS…]: builds the binary and starts `sagaflow [GLOBAL
# ARGS…] dev` in the background; sets `bin`, `work` (a temporary directory,
# removed on exit), `db` (its database URL), `api` (the HTTP base URL) and
# `grpc` (the gRPC address) once it is ready. Stopped on exit.
start_dev() {
  # The binary as `cargo test --workspace` builds it (same features): right
  # after CI's test step this builds nothing, where `cargo build --bin`
  # would relink it with other features.
  cargo test --workspace --locked --no-run --quiet
  bin="$PWD/${CARGO_TARGET_DIR:-target}/debug/sagaflow"
  work=$(mktemp -d)
  db="sqlite://$work/dev.db"
  "$bin" "$@" dev --database-url "$db" --workflows workflows \
    --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --poll-ms 50 \
    > "$work/stdout" 2> "$work/stderr" &
  dev=$!
  api="" grpc=""
  for _ in $(seq 1 300); do
    api=$(sed -n 's/^ *HTTP *\(http:[^ ]*\).*/\1/p' "$work/stderr" | head -n1)
    grpc=$(sed -n 's/^ *gRPC *\([^ ]*\).*/\1/p' "$work/stderr" | head -n1)
    if [ -n "$api" ] && curl -fsS "$api/readyz" > /dev/null 2>&1; then
      return 0
    fi
    kill -0 "$dev" 2> /dev/null || { cat "$work/stderr"; return 1; }
    sleep 0.2
  done
  echo "sagaflow dev did not start" >&2
  cat "$work/stderr"
  return 1
}
