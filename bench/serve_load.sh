#!/usr/bin/env bash
# Benchmark: `account-usage serve` under load (wrk, Debian's, on loopback),
# beside the in-process median of the same query (`report --repeat`) measured
# in the same run.
#
# Data: the 20M-message warehouse of bench/report_vs_duckdb.sh (built by it
# when BENCH_DIR has none; REUSE=1 there keeps an earlier one).
# Queries: its q1 (a year, monthly, rollups), q2 (90 days, daily, another zone,
# base grain) and q3 (7 days, hourly, by channel, base grain).
#
# Cases, DURATION seconds each (default 20), 64 connections unless noted:
#   qN-cached           the result cache on (each answer computed once), sent
#                       the Accept-Encoding every browser sends (the page's
#                       requests): a full-speed closed loop, its throughput
#   qN-cached-paced     the same, each connection waiting PACE_MS (default
#                       10) after each answer: about 6,000 req/s offered, so
#                       p50 is the time to answer at that load. wrk runs 8
#                       threads here (PACED_THREADS): one thread's event loop
#                       adds its lag to every connection it serves (on /livez,
#                       p50 0.74 ms with 2 threads, 0.29 ms with 8)
#   livez-paced         GET /livez paced the same way: the floor of wrk and
#                       the machine, measured beside the cases
#   qN-cached-identity  the same without Accept-Encoding (bodies of 32 kB,
#                       178 kB and 347 kB), closed loop and paced: shown
#   q1-304, q1-304-paced    If-None-Match with the current ETag
#   qN-uncached         --result-cache 0: every request computes (q2/q3 also
#                       at 2 connections); no Accept-Encoding
# How the targets are read: a closed loop at full speed measures queueing, not
# the time to answer (its p50 is 64 / throughput, Little's law: p50 <= 1 ms
# there would need 64,000 req/s). So "p50 <= 1 ms and >= 5,000 req/s" is
# checked as p50 <= 1 ms on the paced case, which must itself reach 5,000
# req/s; the closed loop must reach 5,000 req/s. q1 uncached p50 <= 5 ms is
# checked on the closed loop, as written.
# The in-process medians are measured at the start (shown in the header) and
# again right before each 2-connection case, which is checked against the
# latter.
# Targets (issue #8):
#   q1 uncached p50 <= 5 ms; cached and 304: p50 <= 1 ms and >= 5,000 req/s;
#   q2, q3 uncached: at 2 connections p99 <= 2x the in-process median; at 64,
#     req/s >= 0.8x the 2-connection figure, and every request answered (200)
#     or refused (503) within the request timeout (no socket timeouts);
#   the server's RSS at the end <= 1.2x its RSS after the warm-up (WARMUP
#   seconds, default 5, of each case's load at 64 connections: RSS after it
#   holds the allocator's working set, so growth beyond it is a leak).
#
#   bench/serve_load.sh     DURATION=20 BENCH_DIR=/tmp/account-usage-bench-report
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${BENCH_DIR:-/tmp/account-usage-bench-report}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-5}
PACE_MS=${PACE_MS:-10}
PACED_THREADS=${PACED_THREADS:-8}
BROWSER='Accept-Encoding: gzip, deflate, br, zstd'
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet
BIN=$PWD/target/release/account-usage

if [ ! -d "$WORK/wh/rollups" ]; then
  echo "building the 20M-message warehouse with bench/report_vs_duckdb.sh (REPEAT=3)"
  REPEAT=3 BENCH_DIR="$WORK" bench/report_vs_duckdb.sh
fi

SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n')
export ACCOUNT_USAGE_JWT_SECRET=$SECRET
TOKEN=$("$BIN" token --account 1 --ttl 2h)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SERVER_PID=
stop_server() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null; SERVER_PID=; }
trap stop_server EXIT
start_server() { # $1: --result-cache N
  PORT=$(port)
  RUST_LOG=warn "$BIN" serve --warehouse "$WORK/wh" --listen "127.0.0.1:$PORT" --result-cache "$1" \
    --request-timeout 10s > "$WORK/serve.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && return 0
    sleep 0.05
  done
  echo "serve did not become ready" >&2; cat "$WORK/serve.log" >&2; exit 1
}
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status"; }

declare -A QUERY=(
  [q1]="from=2025-01-01&to=2025-12-31&interval=monthly&group_by=platform"
  [q2]="from=2025-03-01&to=2025-05-29&interval=daily&group_by=platform&time_zone=America/New_York"
  [q3]="from=2025-06-02&to=2025-06-08&interval=hourly&group_by=channel&time_zone=Asia/Kathmandu"
)
declare -A INPROC
inproc() { # query: its in-process median (ms) into INPROC[query], now
  local q=$1 parts p k v args
  IFS='&' read -ra parts <<<"${QUERY[$q]}"
  args=(report --warehouse "$WORK/wh" --account 1 --format json)
  for p in "${parts[@]}"; do k=${p%%=*}; v=${p#*=}; args+=("--${k//_/-}" "$v"); done
  "$BIN" "${args[@]}" --repeat 21 > /dev/null 2> "$WORK/$q.inproc"
  INPROC[$q]=$(sed -n 's/.*runs (ms): //p' "$WORK/$q.inproc" | tr ' ' '\n' | tail -n +2 | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
}
for q in q1 q2 q3; do inproc "$q"; done

# wrk's latency distribution in ms: p50 p99, and req/s, non-2xx/3xx count, socket errors.
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.3f", v}'; }
printf 'function delay()\n  return %s\nend\n' "$PACE_MS" > "$WORK/pace.lua"
load() { # name connections url [extra header]
  local name=$1 conns=$2 url=$3 extra=${4:-}
  local hdr=(-H "Authorization: Bearer $TOKEN") pace=() threads=2
  [ -n "$extra" ] && hdr+=(-H "$extra")
  [[ $name == *-paced ]] && pace=(-s "$WORK/pace.lua") threads=$PACED_THREADS
  wrk -t "$threads" -c "$conns" -d "${DURATION}s" --timeout 11s --latency "${pace[@]}" "${hdr[@]}" "$url" > "$WORK/$name.wrk"
  local p50 p99 rps non2xx errors
  p50=$(awk '$1 == "50%" {print $2}' "$WORK/$name.wrk" | to_ms)
  p99=$(awk '$1 == "99%" {print $2}' "$WORK/$name.wrk" | to_ms)
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$name.wrk")
  non2xx=$(awk '/Non-2xx or 3xx/ {print $NF}' "$WORK/$name.wrk"); non2xx=${non2xx:-0}
  errors=$(awk '/Socket errors/ {gsub(",",""); print $4+$6+$8+$10}' "$WORK/$name.wrk"); errors=${errors:-0}
  printf '%-26s %5s %10s %10s %10s %8s %8s\n' "$name" "$conns" "$p50" "$p99" "$rps" "$non2xx" "$errors"
  RESULT_P50=$p50 RESULT_P99=$p99 RESULT_RPS=$rps RESULT_NON2XX=$non2xx RESULT_ERRORS=$errors
}
warm_up() {
  for q in q1 q2 q3; do
    curl -sf -H "Authorization: Bearer $TOKEN" "$base?${QUERY[$q]}" -o /dev/null
    curl -sf -H "Authorization: Bearer $TOKEN" -H "$BROWSER" "$base?${QUERY[$q]}" -o /dev/null
    wrk -t 2 -c 64 -d "${WARMUP}s" --timeout 11s -H "Authorization: Bearer $TOKEN" "$base?${QUERY[$q]}" > /dev/null
  done
}
status=0
check() { awk "BEGIN{exit !($1)}" || { echo "  target missed: $2" >&2; status=1; }; }

echo "wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}') (-t 2; paced: -t $PACED_THREADS, ${PACE_MS} ms between answers), $(nproc) cores, ${DURATION}s per case, in-process medians (ms): q1 ${INPROC[q1]}, q2 ${INPROC[q2]}, q3 ${INPROC[q3]}"
printf '%-26s %5s %10s %10s %10s %8s %8s\n' case conns p50_ms p99_ms req_per_s non2xx sockerr

start_server 1024
base="http://127.0.0.1:$PORT/v1/accounts/1/report"
warm_up
warm_rss=$(rss_kib)
load livez-paced 64 "http://127.0.0.1:$PORT/livez"
for q in q1 q2 q3; do
  load "$q-cached" 64 "$base?${QUERY[$q]}" "$BROWSER"
  check "$RESULT_RPS >= 5000 && $RESULT_NON2XX == 0" "$q cached: $RESULT_RPS req/s"
  load "$q-cached-paced" 64 "$base?${QUERY[$q]}" "$BROWSER"
  check "$RESULT_P50 <= 1 && $RESULT_RPS >= 5000 && $RESULT_NON2XX == 0" "$q cached, paced: p50 $RESULT_P50 ms at $RESULT_RPS req/s"
  load "$q-cached-identity" 64 "$base?${QUERY[$q]}"
  load "$q-cached-identity-paced" 64 "$base?${QUERY[$q]}"
done
etag=$(curl -sf -D - -o /dev/null -H "Authorization: Bearer $TOKEN" "$base?${QUERY[q1]}" | awk 'tolower($1) == "etag:" {print $2}' | tr -d '\r')
load q1-304 64 "$base?${QUERY[q1]}" "If-None-Match: $etag"
check "$RESULT_RPS >= 5000" "q1 304: $RESULT_RPS req/s"
load q1-304-paced 64 "$base?${QUERY[q1]}" "If-None-Match: $etag"
check "$RESULT_P50 <= 1 && $RESULT_RPS >= 5000" "q1 304, paced: p50 $RESULT_P50 ms at $RESULT_RPS req/s"
end_rss=$(rss_kib)
stop_server

start_server 0
base="http://127.0.0.1:$PORT/v1/accounts/1/report"
warm_up
warm_rss0=$(rss_kib)
load q1-uncached 64 "$base?${QUERY[q1]}"
check "$RESULT_P50 <= 5 && $RESULT_NON2XX == 0" "q1 uncached: p50 $RESULT_P50 ms"
load q1-uncached-paced 64 "$base?${QUERY[q1]}"
for q in q2 q3; do
  # The last case's computations whose clients gave up (at most one a core,
  # up to a q2 each) finish before this one starts timing.
  sleep 3
  # The yardstick is measured again right before the case: this machine's
  # speed drifts by a third within a run, and a median from minutes earlier
  # compared a slow phase with a fast one.
  inproc "$q"
  echo "  in-process median of $q just before: ${INPROC[$q]} ms"
  load "$q-uncached" 2 "$base?${QUERY[$q]}"
  two_rps=$RESULT_RPS
  check "$RESULT_P99 <= 2 * ${INPROC[$q]}" "$q uncached at 2 connections: p99 $RESULT_P99 ms > 2x in-process ${INPROC[$q]} ms"
  load "$q-uncached" 64 "$base?${QUERY[$q]}"
  check "$RESULT_RPS >= 0.8 * $two_rps" "$q uncached at 64 connections: $RESULT_RPS req/s < 0.8x $two_rps"
  # The server times a request from its arrival; 250 ms covers the client's side.
  check "$RESULT_ERRORS == 0 && $RESULT_P99 <= 10250" "$q uncached at 64: $RESULT_ERRORS socket errors/timeouts, p99 $RESULT_P99 ms"
done
end_rss0=$(rss_kib)
stop_server

echo "RSS (MiB): cache on: after warm-up $((warm_rss / 1024)), at the end $((end_rss / 1024)); cache off: after warm-up $((warm_rss0 / 1024)), at the end $((end_rss0 / 1024))"
check "$end_rss <= 1.2 * $warm_rss" "RSS grew from $warm_rss to $end_rss KiB (cache on)"
check "$end_rss0 <= 1.2 * $warm_rss0" "RSS grew from $warm_rss0 to $end_rss0 KiB (cache off)"
exit $status
