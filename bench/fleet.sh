#!/usr/bin/env bash
# Benchmark: a night's cost against the size of the fleet and the age of the
# warehouse, each as a ratio between two cases measured in this script, on
# one throwaway PostgreSQL cluster.
#
# Fleet: the same 1M messages a day over 50 accounts and over 2,000 accounts.
#   Two days are backfilled (`run --from D1 --to D2`), then the night
#   (`run --date D3`) runs REPEAT times, each on a fresh copy of the
#   backfilled warehouse, the two fleets taking turns. Per case: wall time and peak RSS of the night
#   (medians, worst peak), and the objects the night wrote, rollup parts
#   and everything else (base files, manifests, index, run record) apart;
#   on stderr, from each night's log, its day (extraction to publish) and
#   its rollup refresh in ms, and the larger fleet's extra in each.
#   Targets: 2,000 accounts <= 1.2x 50 accounts (the ratio of the medians;
#   each round's own ratio and their median are printed beside it, to show
#   the machine's drift between rounds); <= 20 rollup objects per shard and
#   night.
#
# Late in a month (reported, no target of its own): the fleets of 50 and
#   2,000 accounts at LATE_PER_DAY messages a day, 19 days backfilled, then
#   the night of 2026-03-20 (REPEAT times each, taking turns): a month's
#   bucket then holds 20 days, so what the night reads back to rebuild it
#   weighs, where after two days it does not.
#
# History: 50 accounts, HISTORY_PER_DAY messages a day for 1,096 days. One
#   warehouse holds the 30 days before the night, the other the 1,095 days
#   (3 years) before it; the night runs 3x REPEAT times on a copy of each,
#   the two taking turns. The
#   night is 2026-01-31, so the 30 days are January's and the month, quarter
#   and year the night refreshes hold the same days in both warehouses:
#   what differs is history alone (a year's bucket grows through the year
#   whatever the history, and resets).
#   Target: 3 years <= 1.1x 30 days. Then q1 of bench/report_vs_duckdb.sh
#   (a year, monthly, the account's zone) in process on the 3-year
#   warehouse: median <= 20 ms.
#
# Memory (not in the default CASES; about 4 minutes): peak RSS against the
#   shard's accounts and the backfill's length, at MEMORY_PER_DAY messages a
#   day. 20,000 accounts seeded for 17 days: a backfill of 2 days and one of
#   16 days, each into a warehouse of its own, then the night of the 17th
#   REPEAT times on copies of the 16-day one; and 2,000 accounts seeded for
#   3 days, the night of the 3rd after 2 backfilled days, REPEAT times,
#   taking turns with the larger fleet's. Reports each peak RSS (MiB, the
#   worst run) and what an account adds to a night.
#   Target: the 16-day backfill's peak <= 1.5x the 2-day one's (a refresh
#   holds a bounded window of dates, whatever the shard's accounts).
#
# Year (not in the default CASES; about 15 minutes, and 25 GB of disk for
#   the source's cluster): 2,000 accounts, YEAR_PER_DAY messages a day
#   through 2025 and on 1 January 2026. One warehouse backfilled through 7
#   January, one through 30 December, one through 31 December; the night
#   of 8 January on copies of the first, of 31 December on copies of the
#   second and of 1 January 2026 (the night that closes 2025's fourth
#   quarter and year, and writes their parts) on copies of the third,
#   REPEAT times each, taking turns. Reports each night's time, refresh and
#   peak RSS, and their ratios to 8 January's (no target; bench/RESULTS.md,
#   sessions 40 and 41).
#
#   bench/fleet.sh            REPEAT=5 (the history nights run 3x REPEAT: they are short); FLEET_PER_DAY=1000000;
#                             LATE_PER_DAY=250000; HISTORY_PER_DAY=3000;
#                             BENCH_DIR (default /tmp/account-usage-bench-fleet);
#                             MEMORY_PER_DAY=250000; YEAR_PER_DAY=100000;
#                             CASES="fleet late history" to run some parts only
#                             (add memory or year for those cases);
#                             BIN to time a binary already built (no build)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib/pg.sh
WORK=${BENCH_DIR:-/tmp/account-usage-bench-fleet}
REPEAT=${REPEAT:-5}
FLEET_PER_DAY=${FLEET_PER_DAY:-1000000}
LATE_PER_DAY=${LATE_PER_DAY:-250000}
HISTORY_PER_DAY=${HISTORY_PER_DAY:-3000}
MEMORY_PER_DAY=${MEMORY_PER_DAY:-250000}
YEAR_PER_DAY=${YEAR_PER_DAY:-100000}
CASES=${CASES:-fleet late history}

if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=$PWD/target/release/account-usage
fi
rm -rf "$WORK"; mkdir -p "$WORK"
pg_start "$WORK/pg"
PSQL=$(pg_bin psql)
status=0
# Seconds to the millisecond: a small night lasts a tenth of a second.
secs_ms() { awk "BEGIN{printf \"%.3f\", $2 - $1}"; }

# copies NAME WAREHOUSE N: N copies of WAREHOUSE for NAME's nights
# ($WORK/night-NAME-1..N), made before any night of the case runs and
# written back to disk then. Copying or removing a large tree just before a
# night is not the night's work, yet it still slowed the 3-year night's
# file operations after a `sync` and a second's pause: its day step took a
# median 19.5 ms against the 30-day night's 15.5 with a copy made before
# each night, and 15 against 15 with the copies made up front
# (bench/RESULTS.md, session 35).
declare -A NEXT LAST
copies() {
  local name=$1 wh=$2 n=$3 i
  rm -rf "$WORK/night-$name"-*
  for i in $(seq "$n"); do cp -a "$wh" "$WORK/night-$name-$i"; done
  NEXT[$name]=1
}

# settle: after the copies, the disk's writeback of them ends before the
# first night (a second's pause did not: the first nights ran slower).
settle() { sync; sleep 10; }

# night_once NAME DB DAY: one timed night on NAME's next copy (see copies;
# LAST[NAME] names it); appends its seconds and peak RSS (MiB) to TS[NAME]
# and RSS[NAME], and from its log the milliseconds of its day (extraction
# to publish) and of its rollup refresh to DAY_MS[NAME] and REFRESH_MS[NAME].
declare -A TS RSS DAY_MS REFRESH_MS
night_once() {
  local name=$1 db=$2 day=$3 dir t0 t1
  dir="$WORK/night-$name-${NEXT[$name]}"
  NEXT[$name]=$(( NEXT[$name] + 1 ))
  LAST[$name]=$dir
  sync; sleep 1
  touch "$WORK/mark-$name"; sleep 0.01
  t0=$(now)
  /usr/bin/time -f '%M' -o "$WORK/rss" "$BIN" --log-format json run --source "$PG_URL_BASE/$db" \
    --warehouse "$dir" --date "$day" > "$WORK/$name.night.txt" 2> "$WORK/$name.night.log"
  t1=$(now)
  TS[$name]+="$(secs_ms "$t0" "$t1") "
  RSS[$name]+="$(awk '{printf "%.0f", $1 / 1024}' "$WORK/rss") "
  DAY_MS[$name]+="$(logged_ms 'Day published.' "$WORK/$name.night.log") "
  REFRESH_MS[$name]+="$(logged_ms 'Rollups refreshed.' "$WORK/$name.night.log") "
}

# logged_ms MESSAGE LOG: the elapsed_ms of the (last) JSON log line MESSAGE.
logged_ms() {
  grep -F "\"message\":\"$1\"" "$2" | tail -n 1 | sed -n 's/.*"elapsed_ms":\([0-9]*\).*/\1/p'
}

# night_summary NAME: sets night_s (median), night_rss (worst, MiB), parts
# and others (objects written by the last night: rollup parts, and the rest),
# and day_ms and refresh_ms (medians).
night_summary() {
  local name=$1 dir=${LAST[$1]}
  night_s=$(median ${TS[$name]})
  night_rss=$(printf '%s\n' ${RSS[$name]} | sort -n | tail -n 1)
  parts=$(find "$dir/rollups" -type f -newer "$WORK/mark-$name" | wc -l)
  others=$(find "$dir" -path "$dir/rollups" -prune -o -type f -newer "$WORK/mark-$name" -print | wc -l)
  day_ms=$(median ${DAY_MS[$name]})
  refresh_ms=$(median ${REFRESH_MS[$name]})
  echo "  $name nights: s=${TS[$name]}rss_MiB=${RSS[$name]% }; $(grep 'rollups refreshed' "$WORK/$name.night.txt")" >&2
  echo "  $name day_ms=${DAY_MS[$name]}refresh_ms=${REFRESH_MS[$name]% } (medians $day_ms and $refresh_ms)" >&2
}

# seeded_db DB ACCOUNTS DAYS START PER_DAY SEED: a new database DB seeded
# with the generator's data and analyzed.
seeded_db() {
  local db=$1 accounts=$2 days=$3 start=$4 per_day=$5 seed=$6
  q -d "$PG_URL_BASE/postgres" -c "CREATE DATABASE $db"
  "$BIN" seed --source "$PG_URL_BASE/$db" --accounts "$accounts" --days "$days" --start "$start" \
    --messages-per-day "$per_day" --seed "$seed" >/dev/null 2>&1
  q -d "$PG_URL_BASE/$db" -c "VACUUM ANALYZE"
}

# two_fleets CASE PER_DAY DAYS: 50 and 2,000 accounts at PER_DAY messages a
# day, seeded from 2026-03-01 for DAYS days, all but the last backfilled;
# the night of the last day runs REPEAT times for each, the fleets taking
# turns (so a drift of the machine over the runs weighs on both alike).
# Prints a row per fleet; sets ratio (2,000 / 50, medians) and max_parts.
two_fleets() {
  local case=$1 per_day=$2 days=$3 accounts db pairs
  local last_backfilled night
  last_backfilled=$(date -u -d "2026-03-01 + $((days - 2)) days" +%F)
  night=$(date -u -d "2026-03-01 + $((days - 1)) days" +%F)
  declare -A case_s case_day case_refresh
  printf '%-9s %8s %9s %14s %14s\n' accounts night_s rss_MiB rollup_objects other_objects
  for accounts in 50 2000; do
    db="$case$accounts"
    seeded_db "$db" "$accounts" "$days" 2026-03-01 "$per_day" 11
    "$BIN" run --source "$PG_URL_BASE/$db" --warehouse "$WORK/wh-$case-$accounts" \
      --from 2026-03-01 --to "$last_backfilled" >/dev/null 2>&1
  done
  for accounts in 50 2000; do
    copies "$case-$accounts" "$WORK/wh-$case-$accounts" "$REPEAT"
  done
  settle
  for _ in $(seq "$REPEAT"); do
    for accounts in 50 2000; do
      night_once "$case-$accounts" "$case$accounts" "$night"
    done
  done
  max_parts=0
  for accounts in 50 2000; do
    night_summary "$case-$accounts"
    case_s[$accounts]=$night_s
    case_day[$accounts]=$day_ms
    case_refresh[$accounts]=$refresh_ms
    max_parts=$(( parts > max_parts ? parts : max_parts ))
    printf '%-9s %8s %9s %14s %14s\n' "$accounts" "$night_s" "$night_rss" "$parts" "$others"
    q -d "$PG_URL_BASE/postgres" -c "DROP DATABASE $case$accounts"
    rm -rf "$WORK/wh-$case-$accounts" "$WORK/night-$case-$accounts"-*
  done
  ratio=$(awk "BEGIN{printf \"%.2f\", ${case_s[2000]} / ${case_s[50]}}")
  # Each round's two nights ran one after the other: their ratios, and
  # their median, show how much of the spread is the machine drifting
  # between rounds (reported; the target is the ratio of the medians).
  pairs=$(paste -d/ <(tr ' ' '\n' <<<"${TS[$case-2000]% }") <(tr ' ' '\n' <<<"${TS[$case-50]% }") |
    awk -F/ '{printf "%.2f\n", $1 / $2}')
  echo "  round by round, 2000 / 50: $(echo $pairs) (median $(median $pairs))" >&2
  # Where the larger fleet's extra time is: its day (extraction, aggregates,
  # publish) and its rollup refresh, medians against medians.
  echo "  2000 - 50 accounts, medians: night $(awk "BEGIN{printf \"%+.0f\", (${case_s[2000]} - ${case_s[50]}) * 1000}") ms," \
    "day $(printf %+d $(( case_day[2000] - case_day[50] ))) ms," \
    "refresh $(printf %+d $(( case_refresh[2000] - case_refresh[50] ))) ms" >&2
}

if [[ " $CASES " == *" fleet "* ]]; then
  echo "fleet: $FLEET_PER_DAY messages a day, nights after two backfilled days (REPEAT=$REPEAT)"
  two_fleets fleet "$FLEET_PER_DAY" 3
  awk "BEGIN{exit !($max_parts <= 20)}" || { echo "  target missed: $max_parts rollup objects in one night (> 20)" >&2; status=1; }
  echo "2000 / 50 accounts: $ratio (target <= 1.2)"
  awk "BEGIN{exit !($ratio <= 1.2)}" || { echo "  target missed: $ratio > 1.2" >&2; status=1; }
fi

if [[ " $CASES " == *" late "* ]]; then
  echo "late: $LATE_PER_DAY messages a day, the night of 2026-03-20 after 19 backfilled days (REPEAT=$REPEAT)"
  two_fleets late "$LATE_PER_DAY" 20
  echo "2000 / 50 accounts late in a month: $ratio (reported; the target is the fleet case's)"
fi

if [[ " $CASES " == *" history "* ]]; then
  echo "history: $HISTORY_PER_DAY messages a day over 50 accounts, the night of 2026-01-31 (REPEAT=$REPEAT)"
  db=history
  seeded_db "$db" 50 1096 2023-01-31 "$HISTORY_PER_DAY" 12
  t0=$(now)
  "$BIN" run --source "$PG_URL_BASE/$db" --warehouse "$WORK/wh-3y" --from 2023-01-31 --to 2026-01-30 \
    --parallel 2 >/dev/null 2>&1
  t1=$(now)
  "$BIN" run --source "$PG_URL_BASE/$db" --warehouse "$WORK/wh-30d" --from 2026-01-01 --to 2026-01-30 \
    --parallel 2 >/dev/null 2>&1
  echo "  the 3-year backfill took $(secs "$t0" "$t1") s" >&2
  printf '%-9s %8s %9s %14s %14s\n' history night_s rss_MiB rollup_objects other_objects
  # The two cases take turns, so a drift of the machine over the runs
  # weighs on both alike.
  copies history-30d "$WORK/wh-30d" $((REPEAT * 3))
  copies history-3y "$WORK/wh-3y" $((REPEAT * 3))
  settle
  for _ in $(seq $((REPEAT * 3))); do
    night_once history-30d "$db" 2026-01-31
    night_once history-3y "$db" 2026-01-31
  done
  night_summary history-30d
  short=$night_s
  printf '%-9s %8s %9s %14s %14s\n' 30d "$night_s" "$night_rss" "$parts" "$others"
  night_summary history-3y
  long=$night_s
  printf '%-9s %8s %9s %14s %14s\n' 3y "$night_s" "$night_rss" "$parts" "$others"
  ratio=$(awk "BEGIN{printf \"%.2f\", $long / $short}")
  echo "3 years / 30 days: $ratio (target <= 1.1)"
  awk "BEGIN{exit !($ratio <= 1.1)}" || { echo "  target missed: $ratio > 1.1" >&2; status=1; }

  # q1 on the 3-year warehouse (with the night published), in process.
  "$BIN" report --warehouse "${LAST[history-3y]}" --account 1 --from 2025-01-01 --to 2025-12-31 --interval monthly \
    --group-by platform --format json --repeat $((REPEAT * 4 + 1)) > "$WORK/q1.json" 2> "$WORK/q1.err"
  runs=$(sed -n 's/.*runs (ms): //p' "$WORK/q1.err" | tr ' ' '\n' | tail -n +2)
  q1=$(median $runs)
  from_where=$(sed -n 's/.*answered from \([A-Za-z]*\).*/\1/p' "$WORK/q1.err")
  echo "q1 on 3 years, in process: median $q1 ms, answered from $from_where (runs: $(echo $runs))"
  awk "BEGIN{exit !($q1 <= 20)}" || { echo "  target missed: q1 $q1 ms > 20 ms" >&2; status=1; }
  rm -rf "$WORK"/night-history-*
fi
if [[ " $CASES " == *" year "* ]]; then
  echo "year: $YEAR_PER_DAY messages a day over 2,000 accounts through 2025, the nights of 8 January, 31 December and 1 January 2026 (REPEAT=$REPEAT)"
  db=year
  seeded_db "$db" 2000 366 2025-01-01 "$YEAR_PER_DAY" 11
  "$BIN" run --source "$PG_URL_BASE/$db" --warehouse "$WORK/wh-jan" --from 2025-01-01 --to 2025-01-07 >/dev/null 2>&1
  cp -a "$WORK/wh-jan" "$WORK/wh-dec"
  "$BIN" run --source "$PG_URL_BASE/$db" --warehouse "$WORK/wh-dec" --from 2025-01-08 --to 2025-12-30 \
    --parallel 2 >/dev/null 2>&1
  cp -a "$WORK/wh-dec" "$WORK/wh-close"
  "$BIN" run --source "$PG_URL_BASE/$db" --warehouse "$WORK/wh-close" --date 2025-12-31 >/dev/null 2>&1
  printf '%-9s %8s %9s %14s %14s\n' night night_s rss_MiB rollup_objects other_objects
  copies year-jan "$WORK/wh-jan" "$REPEAT"
  copies year-dec "$WORK/wh-dec" "$REPEAT"
  copies year-close "$WORK/wh-close" "$REPEAT"
  settle
  for _ in $(seq "$REPEAT"); do
    night_once year-jan "$db" 2025-01-08
    night_once year-dec "$db" 2025-12-31
    night_once year-close "$db" 2026-01-01
  done
  night_summary year-jan
  read -r jan_s jan_rss jan_refresh <<< "$night_s $night_rss $refresh_ms"
  printf '%-9s %8s %9s %14s %14s\n' 01-08 "$night_s" "$night_rss" "$parts" "$others"
  for night in dec:12-31 close:2026-01-01; do
    night_summary "year-${night%%:*}"
    printf '%-9s %8s %9s %14s %14s\n' "${night#*:}" "$night_s" "$night_rss" "$parts" "$others"
    echo "${night#*:} / 01-08: night $(awk "BEGIN{printf \"%.2f\", $night_s / $jan_s}"), refresh $(awk "BEGIN{printf \"%.2f\", $refresh_ms / $jan_refresh}") ($jan_refresh and $refresh_ms ms), peak RSS $(awk "BEGIN{printf \"%.2f\", $night_rss / $jan_rss}") (reported, no target)"
  done
  rm -rf "$WORK"/night-year-* "$WORK"/wh-jan "$WORK"/wh-dec "$WORK"/wh-close
  q -d "$PG_URL_BASE/postgres" -c "DROP DATABASE $db"
fi
if [[ " $CASES " == *" memory "* ]]; then
  echo "memory: $MEMORY_PER_DAY messages a day, 2,000 and 20,000 accounts (REPEAT=$REPEAT)"
  # peak_mib CMD...: runs CMD (output dropped), prints its peak RSS in MiB.
  peak_mib() {
    /usr/bin/time -f '%M' -o "$WORK/rss" "$@" >/dev/null 2>&1
    awk '{printf "%.0f", $1 / 1024}' "$WORK/rss"
  }
  for accounts in 2000 20000; do
    days=$([ "$accounts" = 2000 ] && echo 3 || echo 17)
    seeded_db "memory$accounts" "$accounts" "$days" 2026-03-01 "$MEMORY_PER_DAY" 11
  done
  settle
  short=$(peak_mib "$BIN" run --source "$PG_URL_BASE/memory20000" --warehouse "$WORK/wh-memory-2d" \
    --from 2026-03-01 --to 2026-03-02)
  long=$(peak_mib "$BIN" run --source "$PG_URL_BASE/memory20000" --warehouse "$WORK/wh-memory-16d" \
    --from 2026-03-01 --to 2026-03-16)
  "$BIN" run --source "$PG_URL_BASE/memory2000" --warehouse "$WORK/wh-memory-2000" \
    --from 2026-03-01 --to 2026-03-02 >/dev/null 2>&1
  copies memory-2000 "$WORK/wh-memory-2000" "$REPEAT"
  copies memory-20000 "$WORK/wh-memory-16d" "$REPEAT"
  settle
  for _ in $(seq "$REPEAT"); do
    night_once memory-2000 memory2000 2026-03-03
    night_once memory-20000 memory20000 2026-03-17
  done
  printf '%-9s %8s %9s\n' accounts night_s rss_MiB
  night_summary memory-2000
  small_rss=$night_rss
  printf '%-9s %8s %9s\n' 2000 "$night_s" "$night_rss"
  night_summary memory-20000
  printf '%-9s %8s %9s\n' 20000 "$night_s" "$night_rss"
  echo "  a night's peak per account past 2,000: $(awk "BEGIN{printf \"%.1f\", ($night_rss - $small_rss) * 1024 / 18000}") KiB"
  echo "20,000 accounts, backfill peak: 2 days $short MiB, 16 days $long MiB"
  ratio=$(awk "BEGIN{printf \"%.2f\", $long / $short}")
  echo "16-day / 2-day backfill peak: $ratio (target <= 1.5)"
  awk "BEGIN{exit !($ratio <= 1.5)}" || { echo "  target missed: $ratio > 1.5" >&2; status=1; }
  for accounts in 2000 20000; do q -d "$PG_URL_BASE/postgres" -c "DROP DATABASE memory$accounts"; done
  rm -rf "$WORK"/wh-memory-* "$WORK"/night-memory-*
fi
exit $status
