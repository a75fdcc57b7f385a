#!/usr/bin/env bash
# Fuzzes workflow definition parsing and start-request validation with
# cargo-fuzz (libFuzzer) for a bounded time: `scripts/fuzz.sh [SECONDS]`
# (per target, default 60). Exits non-zero when a target crashes; the input
# is saved under fuzz/artifacts/<target>/. Skips (exit 0) when cargo-fuzz is
# not installed (`cargo install cargo-fuzz`).
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: skipped: cargo-fuzz is not installed (cargo install cargo-fuzz)"
  exit 0
fi
# cargo-fuzz passes nightly-only flags; a stable toolchain accepts them so.
export RUSTC_BOOTSTRAP=1

status=0
for target in definition start_request; do
  corpus="fuzz/corpus/$target"
  mkdir -p "$corpus"
  if [ "$target" = definition ]; then
    cp workflows/*.toml "$corpus/"
  fi
  log="fuzz/$target.log"
  echo "fuzz: $target for ${secs}s"
  if cargo fuzz run --sanitizer none --debug-assertions "$target" "$corpus" -- \
      -max_total_time="$secs" -max_len=65536 -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^Done [0-9]+ runs' "$log" | sed "s/^/fuzz: $target: /"
  else
    status=1
    echo "fuzz: $target FAILED; see $log and fuzz/artifacts/$target/"
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -20 || true
  fi
done
exit "$status"
