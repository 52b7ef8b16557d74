#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the tests on 127.0.0.1:${PGPORT:-55432}, installing
# Debian's package first when no server binary is found, and prints the URL to export as
# BACKSPACE_TEST_POSTGRES_URL. Idempotent: a server already answering there is reused.
set -euo pipefail

port="${PGPORT:-55432}"
dir="${BACKSPACE_PG_DIR:-/tmp/backspace-test-pg}"
url="postgres://backspace@127.0.0.1:${port}/postgres"

find_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  return 1
}

bin="$(find_bin || true)"
if [ -z "$bin" ]; then
  echo "installing postgresql from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  bin="$(find_bin)"
fi

if "$bin/pg_isready" -h 127.0.0.1 -p "$port" -q 2>/dev/null; then
  echo "$url"
  exit 0
fi

# PostgreSQL refuses to run as root: run it as the 'postgres' user (created by the package) or
# as 'nobody' when that user is missing.
run_as=""
if [ "$(id -u)" = "0" ]; then
  if id postgres >/dev/null 2>&1; then run_as=postgres; else run_as=nobody; fi
fi
as_user() {
  if [ -n "$run_as" ]; then su -s /bin/sh "$run_as" -c "$*"; else sh -c "$*"; fi
}

rm -rf "$dir"
mkdir -p "$dir"
[ -n "$run_as" ] && chown "$run_as" "$dir"
as_user "'$bin/initdb' -D '$dir/data' -U backspace --auth=trust -E UTF8 >'$dir/initdb.log' 2>&1" \
  || { cat "$dir/initdb.log" >&2; exit 1; }
as_user "'$bin/pg_ctl' -D '$dir/data' -l '$dir/server.log' -w -o \"-h 127.0.0.1 -p $port -k '$dir' -c fsync=off -c max_connections=200\" start >/dev/null" \
  || { cat "$dir/server.log" >&2; exit 1; }
echo "$url"
