#!/usr/bin/env bash
# Benchmark: `account-usage report` against two engines running the
# equivalent SQL over the same Parquet tables, in the same script: DuckDB
# (bench/report_duckdb.py) and chDB, ClickHouse's in-process engine
# (bench/report_chdb.py). Their versions are pinned below and installed into
# BENCH_VENV (default .venv-bench) when missing; the output names them.
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
#   duckdb_ms   DuckDB's execute + fetch in one Python process (bench/report_duckdb.py);
#   chdb_ms     chDB's query + result in one Python process (bench/report_chdb.py).
# The script first checks that DuckDB, chDB and `report` give the same numbers.
#
# Targets (#11): for every query, duckdb_ms and chdb_ms are each >= 10x
# report_ms and >= 10x process_ms; q1 report_ms < 50. A missed one is
# printed and makes the exit status 1.
#
#   bench/report_vs_duckdb.sh     REPEAT=20 by default; BENCH_DIR to keep data elsewhere;
#                                 REUSE=1 queries the warehouse a previous run left in BENCH_DIR;
#                                 DAYS=367 ends the warehouse on 2025-12-31, so q1's year
#                                 is still open: answered from the unions of its closed
#                                 quarters and its months, not from a yearly part
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib/pg.sh
WORK=${BENCH_DIR:-/tmp/account-usage-bench-report}
REPEAT=${REPEAT:-20}
PER_DAY=${MESSAGES_PER_DAY:-55000}
DAYS=${DAYS:-368}
START=${START:-2024-12-30}
DUCKDB_VERSION=2.0.1
CHDB_VERSION=4.4.0
VENV=${BENCH_VENV:-.venv-bench}
PY=$VENV/bin/python
if ! "$PY" -c "import duckdb, chdb, sys; sys.exit(duckdb.__version__ != '$DUCKDB_VERSION' or chdb.__version__ != '$CHDB_VERSION')" 2>/dev/null; then
  echo "installing duckdb==$DUCKDB_VERSION and chdb==$CHDB_VERSION into $VENV" >&2
  python3 -m venv "$VENV"
  "$PY" -m pip install --quiet --disable-pip-version-check "duckdb==$DUCKDB_VERSION" "chdb==$CHDB_VERSION"
fi
ENGINES=$("$PY" -c 'import duckdb, chdb; print(f"duckdb {duckdb.__version__}, chdb {chdb.__version__} (ClickHouse {chdb.engine_version})")')
echo "engines: $ENGINES; $(rustc --version)"

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

row() { printf '%-4s %-16s %-22s %-8s %-8s %10s %10s %10s %10s %6s %6s %6s %6s %s\n' "$@"; }
row query zone range interval group report_ms process_ms duckdb_ms chdb_ms d/r d/p c/r c/p answered_from
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
  ch_s=$(cd bench && "../$PY" report_chdb.py "$WORK/wh" 1 "$tz" "$from" "$to" "$interval" "$group" "$REPEAT" "$WORK/$name.chdb.json")
  # Same numbers? (zero rows are filler in the report and absent from GROUP BY.)
  for engine in duckdb chdb; do
  "$PY" - "$WORK/$name.json" "$WORK/$name.$engine.json" <<'EOF' || status=1
import datetime as dt, json, sys
ours, theirs = (json.load(open(p)) for p in sys.argv[1:3])
utc = lambda s: dt.datetime.fromisoformat(s).astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
rows = sorted([r["metric"], utc(r["bucket_start"]), r["group"], r["value"]] for r in ours["rows"] if r["value"])
totals = sorted(([t["metric"], t["group"], t["value"]] for t in ours["totals"] if t["value"]), key=lambda t: (t[0], t[1] or ""))
trows = sorted(r for r in theirs["rows"] if r[3])
ttotals = sorted((t for t in theirs["totals"] if t[2]), key=lambda t: (t[0], t[1] or ""))
if rows != trows or totals != ttotals:
    print(f"MISMATCH {sys.argv[2]}: {len(rows)} vs {len(trows)} rows; totals {totals} vs {ttotals}", file=sys.stderr)
    sys.exit(1)
EOF
  done
  duckdb_ms=$(awk "BEGIN{printf \"%.2f\", $duck_s * 1000}")
  chdb_ms=$(awk "BEGIN{printf \"%.2f\", $ch_s * 1000}")
  ratio() { awk "BEGIN{printf \"%.1f\", $1 / $2}"; }
  dr=$(ratio "$duckdb_ms" "$report_ms"); dp=$(ratio "$duckdb_ms" "$process_ms")
  cr=$(ratio "$chdb_ms" "$report_ms"); cp=$(ratio "$chdb_ms" "$process_ms")
  row "$name" "$tz" "$from..$to" "$interval" "$group" "$report_ms" "$process_ms" "$duckdb_ms" "$chdb_ms" "$dr" "$dp" "$cr" "$cp" "$from_where"
  for r in "d/r $dr" "d/p $dp" "c/r $cr" "c/p $cp"; do
    set -- $r
    awk "BEGIN{exit !($2 >= 10)}" || { echo "  target missed: $name $1 = $2 < 10" >&2; status=1; }
  done
  if [ "$name" = q1 ]; then
    awk "BEGIN{exit !($report_ms < 50)}" || { echo "  target missed: q1 median $report_ms ms >= 50 ms" >&2; status=1; }
  fi
done <<'QUERIES'
q1 account          2025-01-01 2025-12-31 monthly platform
q2 America/New_York 2025-03-01 2025-05-29 daily   platform
q3 Asia/Kathmandu   2025-06-02 2025-06-08 hourly  channel
QUERIES
exit $status
