#!/usr/bin/env bash
# Runs the operator console's end-to-end tests in a real headless Chromium:
# installs Debian's chromium and chromium-driver when they are missing, then
# runs tests/console_browser.rs (built with --features console-tests, so
# `cargo test --workspace` never needs a browser). Each test starts an
# in-process server on a fresh PostgreSQL test database (DATABASE_URL, as
# for the other tests) and its own chromedriver on a free loopback port.
# SAGAFLOW_CONSOLE_SCREENSHOTS=docs/console saves the pages' screenshots
# there. Extra arguments go to the test binary (e.g. a test name).
set -euo pipefail
cd "$(dirname "$0")/.."

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

source scripts/debian-packages.sh
ensure_debian_packages chromium chromium-driver

# One browser at a time: two cores.
exec cargo test -p sagaflow --features console-tests --test console_browser -- --test-threads=1 "$@"
