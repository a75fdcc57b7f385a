#!/usr/bin/env bash
# A real NetBox on loopback for the NetBox IPAM tests.
#
#   scripts/netbox.sh start   installs (once), prepares a fresh database, starts
#                             gunicorn and prints NETBOX_URL=... and NETBOX_TOKEN=...
#   scripts/netbox.sh stop    stops the server this script started
#
# NetBox comes from PyPI (the `netbox` wheel, a pip-installable instance with
# the `netbox` management command) into a virtualenv under
# ~/.cache/sagaflow/netbox-<version>/, on Python >= 3.12 (NETBOX_PYTHON, else
# the first python3.13/python3.12 found). It uses the local PostgreSQL (its own
# database, sagaflow_netbox) and Redis (127.0.0.1:6379, databases 10 and 11).
#
# The first `migrate` takes about fifteen minutes on two cores; its result is
# kept as a pg_dump keyed by the NetBox version (migrated.dump next to the
# virtualenv) and every later start restores it instead (seconds). Each start
# gives a fresh database: the tests never see an earlier run's objects.
set -euo pipefail

version="${NETBOX_VERSION:-4.7.3}"
home="${XDG_CACHE_HOME:-$HOME/.cache}/sagaflow/netbox-$version"
venv="$home/venv"
root="$home/root"
dump="$home/migrated.dump"
pidfile="$home/gunicorn.pid"
envfile="$home/run.env"
db="${NETBOX_DB:-sagaflow_netbox}"
pg_host="${NETBOX_PG_HOST:-127.0.0.1}"
pg_port="${NETBOX_PG_PORT:-5432}"
pg_user="${NETBOX_PG_USER:-postgres}"
psql_admin=(psql -h "$pg_host" -p "$pg_port" -U "$pg_user" -d postgres -v ON_ERROR_STOP=1 -q)

log() { echo "netbox.sh: $*" >&2; }

stop() {
  if [ -f "$pidfile" ]; then
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
  fi
}

pick_python() {
  if [ -n "${NETBOX_PYTHON:-}" ]; then echo "$NETBOX_PYTHON"; return; fi
  # pyenv's shims exist for versions that are not selected: try each one.
  for candidate in python3.13 python3.12 \
    "$HOME"/.pyenv/versions/3.13*/bin/python3.13 "$HOME"/.pyenv/versions/3.12*/bin/python3.12; do
    if "$candidate" -c 'import sys; assert sys.version_info >= (3, 12)' > /dev/null 2>&1; then
      command -v "$candidate"
      return
    fi
  done
  log "NetBox $version needs Python >= 3.12; set NETBOX_PYTHON"
  exit 1
}

install() {
  if [ -x "$venv/bin/netbox" ]; then return; fi
  py=$(pick_python)
  log "installing NetBox $version into $venv with $py"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "netbox==$version"
}

configure() {
  mkdir -p "$root/conf" "$root/media" "$root/reports" "$root/scripts"
  : > "$root/conf/__init__.py"
  cat > "$root/conf/configuration.py" <<EOF
# Written by sagaflow's scripts/netbox.sh: a loopback NetBox for tests only.
ALLOWED_HOSTS = ['127.0.0.1', 'localhost']
DATABASES = {'default': {
    'ENGINE': 'django.db.backends.postgresql',
    'NAME': '$db', 'USER': '$pg_user', 'PASSWORD': '',
    'HOST': '$pg_host', 'PORT': '$pg_port', 'CONN_MAX_AGE': 300,
}}
REDIS = {
    'tasks': {'HOST': '127.0.0.1', 'PORT': 6379, 'USERNAME': '', 'PASSWORD': '', 'DATABASE': 10, 'SSL': False},
    'caching': {'HOST': '127.0.0.1', 'PORT': 6379, 'USERNAME': '', 'PASSWORD': '', 'DATABASE': 11, 'SSL': False},
}
SECRET_KEY = 'sagaflow-tests-only-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ'
API_TOKEN_PEPPERS = {1: 'sagaflow-tests-only-pepper-0123456789-abcdefghijklmnopqrstuvwxyz'}
CENSUS_REPORTING_ENABLED = False
RELEASE_CHECK_URL = None
TIME_ZONE = 'UTC'
LOGGING = {'version': 1, 'disable_existing_loggers': True}
EOF
}

netbox() { NETBOX_ROOT="$root" "$venv/bin/netbox" "$@"; }

prepare_database() {
  "${psql_admin[@]}" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$db'" > /dev/null
  "${psql_admin[@]}" -c "DROP DATABASE IF EXISTS $db"
  "${psql_admin[@]}" -c "CREATE DATABASE $db"
  redis-cli -h 127.0.0.1 -n 11 FLUSHDB > /dev/null 2>&1 || true
  if [ -f "$dump" ]; then
    log "restoring the migrated database from $dump"
    pg_restore -h "$pg_host" -p "$pg_port" -U "$pg_user" -d "$db" --no-owner "$dump"
  else
    log "first start of NetBox $version: migrate (about fifteen minutes on two cores)"
    started=$(date +%s)
    netbox migrate --no-input > "$home/migrate.log" 2>&1 || { tail -n 40 "$home/migrate.log" >&2; exit 1; }
    log "migrated in $(( $(date +%s) - started ))s; caching $dump"
    pg_dump -h "$pg_host" -p "$pg_port" -U "$pg_user" -Fc -f "$dump.tmp" "$db"
    mv "$dump.tmp" "$dump"
  fi
}

# A superuser with a v2 API token; prints the token as the client sends it.
make_token() {
  netbox shell --no-imports -c "
from users.models import Token, User
user, _ = User.objects.get_or_create(username='sagaflow', defaults={'is_superuser': True})
token = Token(user=user, version=2, write_enabled=True)
token.save()
print(f'nbt_{token.key}.{token.token}')
" 2> "$home/token.log" | tail -n 1
}

free_port() {
  "$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  mkdir -p "$home"
  stop
  install
  configure
  prepare_database
  token=$(make_token)
  case "$token" in nbt_*) ;; *) log "token creation failed"; cat "$home/token.log" >&2; exit 1 ;; esac
  port="${NETBOX_PORT:-$(free_port)}"
  url="http://127.0.0.1:$port"
  log "starting gunicorn on $url"
  NETBOX_ROOT="$root" setsid "$venv/bin/gunicorn" --bind "127.0.0.1:$port" \
    --workers "${NETBOX_WORKERS:-3}" --timeout 120 --pid "$pidfile" \
    netbox.wsgi > "$home/gunicorn.log" 2>&1 < /dev/null &
  for _ in $(seq 1 600); do
    if curl -fsS -H "Authorization: Bearer $token" "$url/api/status/" > /dev/null 2>&1; then
      printf 'NETBOX_URL=%s\nNETBOX_TOKEN=%s\n' "$url" "$token" | tee "$envfile"
      return
    fi
    sleep 0.2
  done
  log "NetBox did not answer on $url"
  tail -n 40 "$home/gunicorn.log" >&2
  stop
  exit 1
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
