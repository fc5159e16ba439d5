# Sourced by the benchmark scripts: a throwaway PostgreSQL cluster.
#   pg_start DIR   initdb + start on a free loopback port; exports PG_URL_BASE
#   pg_stop        stops it and deletes DIR (also on EXIT)
# As root, the server runs as the `postgres` user (PostgreSQL refuses root).

pg_bin() {
  if command -v "$1" >/dev/null 2>&1; then command -v "$1"; return; fi
  ls /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1
}

pg_as() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_start() {
  PG_DIR=$1
  local initdb pg_ctl
  initdb=$(pg_bin initdb); pg_ctl=$(pg_bin pg_ctl)
  [ -n "$initdb" ] || { echo "PostgreSQL server not found: apt-get install postgresql" >&2; exit 1; }
  rm -rf "$PG_DIR"; mkdir -p "$PG_DIR"
  [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$PG_DIR"
  pg_as "$initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >/dev/null
  PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  pg_as "$pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$PG_DIR -c shared_buffers=1GB -c max_wal_size=8GB -c checkpoint_timeout=30min" \
    start >/dev/null
  PG_URL_BASE="postgres://postgres@127.0.0.1:$PG_PORT"
  PG_CTL=$pg_ctl
  export PG_URL_BASE PG_PORT PG_DIR
  trap pg_stop EXIT
}

pg_stop() {
  [ -n "${PG_DIR:-}" ] || return 0
  pg_as "$PG_CTL" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
  PG_DIR=
}

# Peak resident set size (KiB) of a command, printed to stderr as RSS_KIB=N.
peak_rss() {
  /usr/bin/time -f 'RSS_KIB=%M' "$@"
}

# Timing helpers of the run benchmarks (they need PSQL set: PSQL=$(pg_bin psql)).
q() { "$PSQL" -X -q -v ON_ERROR_STOP=1 "$@"; }
now() { date +%s.%N; }
secs() { awk "BEGIN{printf \"%.2f\", $2 - $1}"; }
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
