#!/usr/bin/env bash
# Benchmark: whole `account-usage` processes against an object store with a
# round trip, where each request a process waits for in turn costs time
# that a local warehouse never shows.
#
# A moto S3 server holds a warehouse of SHARDS shard specs (8 accounts, 10
# days of 2,000 messages, from a SQLite source); bench/lib/lagproxy.py in
# front of it holds every chunk LAG seconds each way. Each binary given (by
# default this checkout's release build) runs, the binaries taking turns:
#   report  the same report (account 1, five days, daily, its own zone: from
#           rollups), ROUNDS times through the proxy and as often straight to
#           moto (the baseline with no round trip);
#   grain   the same, hourly (from the base grain);
#   night   the night of the tenth day on a fresh copy (a prefix backfilled
#           with the other nine days by the first binary, whole shard),
#           NIGHT_ROUNDS times through the proxy and as often straight to moto;
#   rerun   the backfill of those nine days run again on such a copy (each
#           day's files replaced, the old ones deleted), as often.
# Printed per case and binary: median ms through the proxy, median ms
# without it, their difference (what waiting for round trips costs) and the
# requests one process makes.
#
#   bench/on_s3.sh [BINARY ...]     CASES="report grain night rerun" ROUNDS=11 NIGHT_ROUNDS=5
#                                   LAG=0.01 SHARDS=4
#                                   BENCH_DIR (default /tmp/account-usage-bench-s3)
#
# To compare with an earlier commit, build it in a worktree and pass both:
#   git worktree add /tmp/before <rev> && (cd /tmp/before && cargo build --release)
#   bench/on_s3.sh /tmp/before/target/release/account-usage target/release/account-usage
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib/pg.sh   # now, median
WORK=${BENCH_DIR:-/tmp/account-usage-bench-s3}
ROUNDS=${ROUNDS:-11}
NIGHT_ROUNDS=${NIGHT_ROUNDS:-5}
CASES=${CASES:-report grain night rerun}
LAG=${LAG:-0.01}
SHARDS=${SHARDS:-4}

cargo build --release --quiet
if [ $# -eq 0 ]; then set -- "$PWD/target/release/account-usage"; fi
PY=${ACCOUNT_USAGE_PYTHON:-$PWD/.venv/bin/python}
MOTO=$(dirname "$PY")/moto_server
[ -x "$MOTO" ] || { echo "moto_server not found next to $PY: run scripts/test.sh once (it installs moto into .venv)" >&2; exit 1; }

rm -rf "$WORK"; mkdir -p "$WORK"
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOTO_PORT=$(free_port); LAG_PORT=$(free_port)
"$MOTO" -H 127.0.0.1 -p "$MOTO_PORT" > "$WORK/moto.log" 2>&1 &
MOTO_PID=$!
"$PY" bench/lib/lagproxy.py "$LAG_PORT" "$MOTO_PORT" "$LAG" > "$WORK/lag.log" 2>&1 &
LAG_PID=$!
trap 'kill $MOTO_PID $LAG_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $MOTO_PORT), 1); socket.create_connection(('127.0.0.1', $LAG_PORT), 1)" 2>/dev/null && break
  sleep 0.1
done
"$PY" -c "import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:$MOTO_PORT', aws_access_key_id='test', aws_secret_access_key='test', region_name='us-east-1').create_bucket(Bucket='bkt')"

export AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
  AWS_VIRTUAL_HOSTED_STYLE_REQUEST=false
BIN=$1
"$BIN" seed --source "sqlite://$WORK/source.db" --accounts 8 --days 10 --start 2026-04-28 \
  --messages-per-day 2000 --seed 3 >/dev/null 2>&1
for i in $(seq 0 $((SHARDS - 1))); do
  AWS_ENDPOINT=http://127.0.0.1:$MOTO_PORT "$BIN" run --source "sqlite://$WORK/source.db" --warehouse s3://bkt/usage \
    --from 2026-04-28 --to 2026-05-07 --shard-index "$i" --shard-count "$SHARDS" >/dev/null 2>&1
done

ARGS=(report --warehouse s3://bkt/usage --account 1 --from 2026-05-01 --to 2026-05-05 --format json)
GRAIN_ARGS=("${ARGS[@]}" --interval hourly)
ms_of() {  # PORT BINARY ARGS...: one whole process, in ms
  local port=$1 bin=$2 t0 t1
  shift 2
  t0=$(date +%s%N)
  AWS_ENDPOINT=http://127.0.0.1:$port "$bin" "$@" > "$WORK/out" 2> "$WORK/err" ||
    { echo "$bin $* failed: $(cat "$WORK/err")" >&2; exit 1; }
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000000 ))
}
# A prefix holding the nine days before the night, written straight to moto.
backfilled() {
  AWS_ENDPOINT=http://127.0.0.1:$MOTO_PORT "$BIN" run --source "sqlite://$WORK/source.db" --warehouse "s3://bkt/$1" \
    --from 2026-04-28 --to 2026-05-06 >/dev/null 2>&1
  echo "s3://bkt/$1"
}
declare -A LAGGED DIRECT REQUESTS
case_rounds() {  # CASE ROUNDS: fills LAGGED, DIRECT and REQUESTS for CASE
  local case=$1 rounds=$2 b before n=0 wh
  shift 2
  for _ in $(seq "$rounds"); do
    for b in "$@"; do
      n=$((n + 1))
      if [ "$case" = report ] || [ "$case" = grain ]; then
        local -a args=("${ARGS[@]}") from=rollups
        [ "$case" = grain ] && args=("${GRAIN_ARGS[@]}") from=base_grain
        before=$(wc -l < "$WORK/moto.log")
        LAGGED[$case $b]+="$(ms_of "$LAG_PORT" "$b" "${args[@]}") "
        REQUESTS[$case $b]=$(( $(wc -l < "$WORK/moto.log") - before ))
        DIRECT[$case $b]+="$(ms_of "$MOTO_PORT" "$b" "${args[@]}") "
        grep -q "\"answered_from\": \"$from\"" "$WORK/out" || echo "note: $b did not answer $case from $from" >&2
      else
        local -a days=(--date 2026-05-07)
        [ "$case" = rerun ] && days=(--from 2026-04-28 --to 2026-05-06)
        wh=$(backfilled "$case-lagged-$n")
        before=$(wc -l < "$WORK/moto.log")
        LAGGED[$case $b]+="$(ms_of "$LAG_PORT" "$b" run --source "sqlite://$WORK/source.db" --warehouse "$wh" "${days[@]}") "
        REQUESTS[$case $b]=$(( $(wc -l < "$WORK/moto.log") - before ))
        wh=$(backfilled "$case-direct-$n")
        DIRECT[$case $b]+="$(ms_of "$MOTO_PORT" "$b" run --source "sqlite://$WORK/source.db" --warehouse "$wh" "${days[@]}") "
      fi
    done
  done
}

echo "on S3 (moto), the proxy holding each chunk ${LAG}s each way"
printf '%-8s %-50s %10s %10s %10s %9s\n' case binary lagged_ms direct_ms waiting_ms requests
for case in $CASES; do
  case $case in
    report|grain) case_rounds "$case" "$ROUNDS" "$@" ;;
    night|rerun) case_rounds "$case" "$NIGHT_ROUNDS" "$@" ;;
    *) echo "unknown case $case" >&2; exit 2 ;;
  esac
  for b in "$@"; do
    lagged=$(median ${LAGGED[$case $b]}); direct=$(median ${DIRECT[$case $b]})
    printf '%-8s %-50s %10s %10s %10s %9s\n' "$case" "$b" "$lagged" "$direct" "$((lagged - direct))" "${REQUESTS[$case $b]}"
    echo "  $case $b lagged runs: ${LAGGED[$case $b]}" >&2
    echo "  $case $b direct runs: ${DIRECT[$case $b]}" >&2
  done
done
