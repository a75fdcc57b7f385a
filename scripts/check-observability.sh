#!/usr/bin/env bash
# Checks the shipped alert rules and dashboard:
#  1. `promtool check rules docs/prometheus-alerts.yml` (installs Debian's
#     `prometheus` package, which ships promtool, when promtool is missing);
#  2. every sagaflow_* metric the rules and docs/grafana-dashboard.json use
#     exists: in docs/metrics.md, or, with METRICS_URL set (e.g.
#     http://127.0.0.1:9471/metrics of a running replica), in that scrape.
set -euo pipefail
cd "$(dirname "$0")/.."

rules=docs/prometheus-alerts.yml
dashboard=docs/grafana-dashboard.json

if ! command -v promtool >/dev/null 2>&1; then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
  echo "installing prometheus (for promtool)"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get install -y --no-install-recommends prometheus \
    || { "${sudo[@]}" apt-get update && "${sudo[@]}" apt-get install -y --no-install-recommends prometheus; }
fi

promtool check rules "$rules"

if [ -n "${METRICS_URL:-}" ]; then
  source="the scrape of $METRICS_URL"
  known=$(curl -fsS "$METRICS_URL" | sed -n 's/^# TYPE \(sagaflow_[a-zA-Z0-9_]*\) .*/\1/p' | sort -u)
else
  source="docs/metrics.md"
  known=$(sed -n 's/^| `\(sagaflow_[a-zA-Z0-9_]*\)`.*/\1/p' docs/metrics.md | sort -u)
fi
if [ -z "$known" ]; then
  echo "no metric names found in $source" >&2
  exit 1
fi

python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$dashboard" \
  || { echo "$dashboard is not valid JSON" >&2; exit 1; }

status=0
for file in "$rules" "$dashboard"; do
  used=$(grep -o 'sagaflow_[a-zA-Z0-9_]*' "$file" | sort -u)
  for name in $used; do
    base=$name
    for suffix in _bucket _count _sum; do
      stripped=${name%"$suffix"}
      if [ "$stripped" != "$name" ] && grep -qx "$stripped" <<<"$known"; then
        base=$stripped
      fi
    done
    if ! grep -qx "$base" <<<"$known"; then
      echo "$file uses $name, which is not in $source" >&2
      status=1
    fi
  done
done
if [ "$status" -eq 0 ]; then
  echo "every metric used by $rules and $dashboard is in $source"
fi
exit "$status"
