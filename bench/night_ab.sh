#!/usr/bin/env bash
# Benchmark: one night of two builds against each other, on the same data,
# in one script run (the check that a change leaves the ordinary night's
# cost where it was).
#
#   bench/night_ab.sh BIN_A BIN_B     (e.g. an older build against HEAD's)
#
# On a throwaway PostgreSQL cluster: ACCOUNTS accounts (default 2,000) and
# PER_DAY messages a day (default 1,000,000) seeded for three days from
# 2026-03-01; the first two backfilled by BIN_A; then the night of the
# third, ROUNDS times for each build (default 6), each on a fresh copy of
# the backfilled warehouse made before the first night, the builds taking
# turns. Prints each build's night times (ms) and their medians, and the
# ratio B / A. (bench/run_ab.sh runs one day into an empty warehouse; this
# runs the nightly job's case: a night after published days, whose plan
# reads the index and whose refresh reads earlier rollups.)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib/pg.sh
[ $# -eq 2 ] || { echo "usage: bench/night_ab.sh BIN_A BIN_B" >&2; exit 2; }
ACCOUNTS=${ACCOUNTS:-2000}
PER_DAY=${PER_DAY:-1000000}
ROUNDS=${ROUNDS:-6}
BIN_A=$(realpath "$1")
BIN_B=$(realpath "$2")
WORK=${BENCH_DIR:-/tmp/account-usage-bench-night-ab}
rm -rf "$WORK"; mkdir -p "$WORK"
pg_start "$WORK/pg"
PSQL=$(pg_bin psql)

q -d "$PG_URL_BASE/postgres" -c "CREATE DATABASE fleet"
"$BIN_A" seed --source "$PG_URL_BASE/fleet" --accounts "$ACCOUNTS" --days 3 --start 2026-03-01 \
  --messages-per-day "$PER_DAY" --seed 11 >/dev/null 2>&1
q -d "$PG_URL_BASE/fleet" -c "VACUUM ANALYZE"
"$BIN_A" run --source "$PG_URL_BASE/fleet" --warehouse "$WORK/wh" --from 2026-03-01 --to 2026-03-02 >/dev/null 2>&1
for r in $(seq "$ROUNDS"); do
  for b in A B; do cp -a "$WORK/wh" "$WORK/night-$b-$r"; done
done
sync; sleep 10   # the copies' writeback ends before the first night

declare -A MS
for r in $(seq "$ROUNDS"); do
  for b in A B; do
    bin=BIN_$b
    sync; sleep 1
    t0=$(now)
    "${!bin}" run --source "$PG_URL_BASE/fleet" --warehouse "$WORK/night-$b-$r" --date 2026-03-03 \
      > "$WORK/out-$b.txt" 2>&1
    t1=$(now)
    MS[$b]+="$(awk "BEGIN{printf \"%.0f\", ($t1 - $t0) * 1000}") "
  done
done
a=$(median ${MS[A]}); b=$(median ${MS[B]})
echo "A $BIN_A: night ms ${MS[A]}(median $a)"
echo "B $BIN_B: night ms ${MS[B]}(median $b)"
echo "B / A: $(awk "BEGIN{printf \"%.3f\", $b / $a}")"
