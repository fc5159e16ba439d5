#!/usr/bin/env bash
# Benchmark: `account-usage report` against DuckDB (Python package) running the
# equivalent SQL over the same Parquet tables, in the same script.
#
# Data: one large account with a year of data (default 368 UTC days from
# 2024-12-30 at 55,000 messages a day: 20.2 million messages), seeded into a
# throwaway PostgreSQL cluster and run through `account-usage run`, which
# writes the base grain and the rollups.
#
# Queries (the seeded account's zone is Asia/Kathmandu):
#   q1  2025-01-01..2025-12-31, monthly, the account's zone, by platform  (rollups)
#   q2  2025-03-01..2025-05-29 (90 days), daily, America/New_York          (base grain)
#   q3  2025-06-02..2025-06-08 (7 days), hourly, Asia/Kathmandu, by channel (base grain)
#
# Each is timed REPEAT times after one warm-up, medians count:
#   report_ms   inside the process (`report --repeat`), the engine's own time;
#   process_ms  the whole `account-usage report` process, start to exit;
#   duckdb_ms   DuckDB's execute + fetch in one Python process (bench/report_duckdb.py).
# The script first checks that DuckDB and `report` give the same numbers.
#
# Targets: duckdb_ms / report_ms >= 5 for every query; q1 report_ms < 50.
#
#   bench/report_vs_duckdb.sh     REPEAT=20 by default; BENCH_DIR to keep data elsewhere;
#                                 REUSE=1 queries the warehouse a previous run left in BENCH_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib/pg.sh
WORK=${BENCH_DIR:-/tmp/account-usage-bench-report}
REPEAT=${REPEAT:-20}
PER_DAY=${MESSAGES_PER_DAY:-55000}
DAYS=${DAYS:-368}
START=${START:-2024-12-30}
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
"$PY" -c 'import duckdb' || { echo "DuckDB missing: scripts/test.sh makes .venv with it" >&2; exit 1; }

cargo build --release --quiet
BIN=$PWD/target/release/account-usage
now() { date +%s%N; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

if [ -n "${REUSE:-}" ] && [ -d "$WORK/wh/rollups" ]; then
  echo "REUSE set: querying the warehouse of an earlier run in $WORK/wh"
else
rm -rf "$WORK"; mkdir -p "$WORK"
pg_start "$WORK/pg"
"$(pg_bin psql)" -X -q -d "$PG_URL_BASE/postgres" -c "CREATE DATABASE big"
t0=$(now)
"$BIN" seed --source "$PG_URL_BASE/big" --accounts 1 --days "$DAYS" --start "$START" \
  --messages-per-day "$PER_DAY" --seed 7 > "$WORK/seed.txt" 2>/dev/null
t1=$(now)
LAST=$(date -d "$START + $((DAYS - 1)) days" +%F)
/usr/bin/time -f '%M' -o "$WORK/run-rss" "$BIN" run --source "$PG_URL_BASE/big" --warehouse "$WORK/wh" \
  --from "$START" --to "$LAST" --parallel 2 > "$WORK/run.txt" 2>/dev/null
t2=$(now)
pg_stop
messages=$(awk '$1 == "messages" {print $2}' "$WORK/seed.txt")
echo "seeded $messages messages in $(( (t1 - t0) / 1000000000 ))s; run (base grain + rollups) in $(( (t2 - t1) / 1000000000 ))s, peak RSS $(( $(cat "$WORK/run-rss") / 1024 )) MiB"
grep "rollups refreshed" "$WORK/run.txt"
fi

printf '%-4s %-18s %-24s %-9s %-9s %11s %11s %11s %9s %9s %s\n' \
  query zone range interval group report_ms process_ms duckdb_ms ratio ratio_proc answered_from
status=0
while read -r name zone from to interval group; do
  args=(report --warehouse "$WORK/wh" --account 1 --from "$from" --to "$to" --interval "$interval" --group-by "$group" --format json)
  [ "$zone" = account ] || args+=(--time-zone "$zone")
  # In process: one warm-up run, then REPEAT.
  "$BIN" "${args[@]}" --repeat $((REPEAT + 1)) > "$WORK/$name.json" 2> "$WORK/$name.err"
  report_ms=$(sed -n 's/.*runs (ms): //p' "$WORK/$name.err" | tr ' ' '\n' | tail -n +2 | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
  from_where=$(sed -n 's/.*answered from \([A-Za-z]*\).*/\1/p' "$WORK/$name.err")
  proc=()
  for _ in $(seq "$REPEAT"); do
    a=$(now); "$BIN" "${args[@]}" > /dev/null; b=$(now)
    proc+=("$(( (b - a) / 1000 ))")
  done
  process_ms=$(awk "BEGIN{printf \"%.2f\", $(median "${proc[@]}") / 1000}")
  tz=$zone; [ "$zone" = account ] && tz=$("$PY" -c "import json,sys; print(json.load(open('$WORK/$name.json'))['time_zone'])")
  duck_s=$("$PY" bench/report_duckdb.py "$WORK/wh" 1 "$tz" "$from" "$to" "$interval" "$group" "$REPEAT" "$WORK/$name.duckdb.json")
  # Same numbers? (zero rows are filler in the report and absent from GROUP BY.)
  "$PY" - "$WORK/$name.json" "$WORK/$name.duckdb.json" <<'EOF' || status=1
import datetime as dt, json, sys
ours, duck = (json.load(open(p)) for p in sys.argv[1:3])
utc = lambda s: dt.datetime.fromisoformat(s).astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
rows = sorted([r["metric"], utc(r["bucket_start"]), r["group"], r["value"]] for r in ours["rows"] if r["value"])
totals = sorted(([t["metric"], t["group"], t["value"]] for t in ours["totals"] if t["value"]), key=lambda t: (t[0], t[1] or ""))
drows = sorted(r for r in duck["rows"] if r[3])
dtotals = sorted((t for t in duck["totals"] if t[2]), key=lambda t: (t[0], t[1] or ""))
if rows != drows or totals != dtotals:
    print(f"MISMATCH {sys.argv[1]}: {len(rows)} vs {len(drows)} rows; totals {totals} vs {dtotals}", file=sys.stderr)
    sys.exit(1)
EOF
  duckdb_ms=$(awk "BEGIN{printf \"%.2f\", $duck_s * 1000}")
  ratio=$(awk "BEGIN{printf \"%.1f\", $duckdb_ms / $report_ms}")
  ratio_proc=$(awk "BEGIN{printf \"%.1f\", $duckdb_ms / $process_ms}")
  printf '%-4s %-18s %-24s %-9s %-9s %11s %11s %11s %9s %9s %s\n' \
    "$name" "$tz" "$from..$to" "$interval" "$group" "$report_ms" "$process_ms" "$duckdb_ms" "$ratio" "$ratio_proc" "$from_where"
  awk "BEGIN{exit !($ratio >= 5)}" || { echo "  target missed: $name is not 5x faster than DuckDB" >&2; status=1; }
  if [ "$name" = q1 ]; then
    awk "BEGIN{exit !($report_ms < 50)}" || { echo "  target missed: q1 median $report_ms ms >= 50 ms" >&2; status=1; }
  fi
done <<'QUERIES'
q1 account          2025-01-01 2025-12-31 monthly platform
q2 America/New_York 2025-03-01 2025-05-29 daily   platform
q3 Asia/Kathmandu   2025-06-02 2025-06-08 hourly  channel
QUERIES
exit $status
