#!/usr/bin/env bash
# A project-local PostgreSQL cluster from Debian's packages, on 127.0.0.1:54329, data in .data/postgres.
# PostgreSQL refuses to run as root, so as root every server command runs as the postgres user.
# Usage: infra/postgres.sh up|down|status
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# 54329 stays clear of a system PostgreSQL on 5432.
PORT=${SPANSTREAM_POSTGRES_PORT:-54329}
DATABASE=${SPANSTREAM_POSTGRES_DB:-spanstream}
HOME_DIR=$DATA_DIR/postgres
PGDATA=$HOME_DIR/pgdata
SOCKET_DIR=$HOME_DIR/run

pg_bin() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  if [ -z "$bin" ] || [ ! -x "$bin/pg_ctl" ]; then
    ensure_packages postgresql
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  fi
  echo "$bin"
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# As root the cluster belongs to the postgres user, who must be able to reach it. A checkout
# under a private directory (mode 700) is out of its reach: the cluster then lives in /var/tmp,
# and .data/postgres is a link to it, so every path below stays the same.
prepare_dirs() {
  mkdir -p "$DATA_DIR"
  if [ "$(id -u)" = 0 ] && [ ! -L "$HOME_DIR" ]; then
    mkdir -p "$HOME_DIR"
    chown postgres:postgres "$HOME_DIR"
    if ! as_owner test -x "$HOME_DIR"; then
      local outside
      outside=/var/tmp/spanstream-postgres-$(echo "$DATA_DIR" | cksum | cut -d' ' -f1)
      say "the postgres user cannot reach $HOME_DIR; keeping the cluster in $outside"
      rmdir "$HOME_DIR"
      mkdir -p "$outside"
      chown postgres:postgres "$outside"
      ln -s "$outside" "$HOME_DIR"
    fi
  fi
  resolve_paths
  mkdir -p "$SOCKET_DIR"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$SOCKET_DIR"
  return 0
}

# The server is given real paths: it cannot walk through a link that starts in a private directory.
resolve_paths() {
  [ -L "$HOME_DIR" ] && HOME_DIR=$(readlink -f "$HOME_DIR")
  PGDATA=$HOME_DIR/pgdata
  SOCKET_DIR=$HOME_DIR/run
}

running() { [ -f "$PGDATA/postmaster.pid" ] && as_owner "$BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; }

up() {
  BIN=$(pg_bin)
  prepare_dirs
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    say "creating a PostgreSQL cluster in $PGDATA"
    # trust on loopback only: this cluster is a local development store, never exposed.
    as_owner "$BIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --no-locale \
      >"$HOME_DIR/initdb.log" 2>&1 || die "initdb failed; see $HOME_DIR/initdb.log"
  fi
  if running; then
    say "postgres already running on 127.0.0.1:$PORT"
  else
    port_open "$PORT" && die "port $PORT is taken by another program; stop it or set SPANSTREAM_POSTGRES_PORT"
    say "starting postgres on 127.0.0.1:$PORT"
    as_owner "$BIN/pg_ctl" -D "$PGDATA" -l "$HOME_DIR/postgres.log" -w -t 60 start \
      -o "-p $PORT -k $SOCKET_DIR -c listen_addresses=127.0.0.1 -c max_connections=200" >/dev/null \
      || { tail -n 20 "$HOME_DIR/postgres.log" >&2; die "postgres did not start; its log is $HOME_DIR/postgres.log"; }
  fi
  local psql=("$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qtA)
  if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != 1 ]; then
    "${psql[@]}" -c "CREATE DATABASE $DATABASE" >/dev/null
  fi
  say "postgres ready (database $DATABASE)"
}

down() {
  BIN=$(pg_bin)
  resolve_paths
  if running; then
    say "stopping postgres"
    as_owner "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
  else
    say "postgres not running"
  fi
}

status() {
  BIN=$(pg_bin)
  resolve_paths
  if running; then echo "postgres: running on 127.0.0.1:$PORT"; else echo "postgres: stopped"; return 3; fi
}

case "${1:-}" in
  up) up ;; down) down ;; status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
