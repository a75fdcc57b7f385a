#!/usr/bin/env bash
# Checks Cargo.lock against the RustSec advisory database without the
# network: `cargo audit --no-fetch` on a local copy of the database, at
# $SAGAFLOW_ADVISORY_DB or ~/.cargo/advisory-db (a git clone of
# rustsec/advisory-db; `git -C ~/.cargo/advisory-db pull` refreshes it).
# Fails on any vulnerability advisory; warnings (unmaintained, unsound) are
# printed. Says clearly that it skipped when cargo-audit or the database is
# missing.
set -euo pipefail
cd "$(dirname "$0")/.."

db="${SAGAFLOW_ADVISORY_DB:-$HOME/.cargo/advisory-db}"
if ! cargo audit --version >/dev/null 2>&1; then
  echo "audit: SKIPPED: cargo-audit is not installed (cargo install cargo-audit --locked)"
  exit 0
fi
if [ ! -d "$db/crates" ]; then
  echo "audit: SKIPPED: no advisory database at $db (set SAGAFLOW_ADVISORY_DB)"
  exit 0
fi
echo "audit: advisory database $db ($(git -C "$db" log -1 --format='%h, %cs' 2>/dev/null || echo 'no git metadata'))"
for lock in Cargo.lock fuzz/Cargo.lock; do
  [ -f "$lock" ] || continue
  echo "audit: $lock"
  cargo audit --no-fetch --no-yanked --stale --db "$db" --file "$lock"
done
