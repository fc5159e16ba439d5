#!/usr/bin/env bash
# Benchmark: `account-usage run` for one UTC day against two baselines in the
# same script, on the same throwaway PostgreSQL cluster and data:
#   (a) psql COPY (SELECT <message columns the job reads> FROM messages
#       WHERE sent_at in the day) TO STDOUT (FORMAT binary) > /dev/null
#       — the floor for reading a day's messages;
#   (b) the same per-day aggregates computed inside PostgreSQL with
#       INSERT … SELECT … GROUP BY (bench/dbt_day.sql), what a dbt model does;
#   (c) account-usage run --date <day> into a local warehouse, with its peak RSS.
#
#   bench/run_vs_copy.sh [CASE ...]     (default: 2000000 short long 8000000)
#
# A CASE is a day of one shape, each with its own ratios:
#   N       the seeded day (`account-usage seed`, 50 accounts) of N messages;
#   short   many short conversations: 400,000 of 5 messages each, 600,000
#           contacts, 2,000 agents, two thirds resolved within ten minutes of
#           their start (bench/shape_day.sql);
#   long    few long conversations: 20,000 of 100 messages each.
#
# Targets (#11): c/a <= 1.3 on every case, c/b < 0.5, peak RSS of (c)
# <= 512 MiB at 8M and at most 1.2x its figure at 2M.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib/pg.sh
CASES=${*:-2000000 short long 8000000}
WORK=${BENCH_DIR:-/tmp/account-usage-bench-run}
DAY=2026-03-02

cargo build --release --quiet
BIN=$PWD/target/release/account-usage
pg_start "$WORK/pg"
PSQL=$(pg_bin psql)
REPEAT=${REPEAT:-3}

printf '%-10s %8s %8s %8s %7s %7s %9s\n' case a_s b_s c_s c/a c/b peak_rss_MiB
for n in $CASES; do
  db="m$n"
  q -d "$PG_URL_BASE/postgres" -c "CREATE DATABASE $db"
  shape() {
    q -d "$PG_URL_BASE/$db" -v day="'$DAY'" -v conversations="$1" -v per_conversation="$2" \
      -v contacts=600000 -v agents=2000 -v accounts=50 -v span_minutes="$3" -f bench/shape_day.sql >/dev/null
  }
  case $n in
    short) shape 400000 5 5 ;;
    long) shape 20000 100 200 ;;
    # One day of n messages (seed spreads conversations a little into the next day).
    *) "$BIN" seed --source "$PG_URL_BASE/$db" --accounts 50 --days 1 --start $DAY \
         --messages-per-day "$n" --seed 1 >/dev/null 2>&1 ;;
  esac
  q -d "$PG_URL_BASE/$db" -c "VACUUM ANALYZE"
  copy="COPY (SELECT id, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id, sent_at, created_at FROM messages WHERE sent_at >= '${DAY}T00:00:00Z' AND sent_at < '${DAY}T00:00:00Z'::timestamptz + interval '1 day') TO STDOUT (FORMAT binary)"
  q -d "$PG_URL_BASE/$db" -c "$copy" > /dev/null   # warm the cache for everyone

  # Each step runs REPEAT times after a CHECKPOINT (so no step pays for
  # another's dirty pages); the median counts.
  as=(); bs=(); cs=(); rsss=()
  for r in $(seq "$REPEAT"); do
    q -d "$PG_URL_BASE/$db" -c CHECKPOINT
    t0=$(now); q -d "$PG_URL_BASE/$db" -c "$copy" > /dev/null; t1=$(now)
    as+=("$(secs "$t0" "$t1")")

    q -d "$PG_URL_BASE/$db" -c CHECKPOINT
    t0=$(now)
    q -d "$PG_URL_BASE/$db" -v day_start="'${DAY}T00:00:00Z'" -v day_end="'${DAY}T00:00:00Z'::timestamptz + interval '1 day'" -f bench/dbt_day.sql 2>/dev/null
    t1=$(now)
    bs+=("$(secs "$t0" "$t1")")

    q -d "$PG_URL_BASE/$db" -c CHECKPOINT
    rm -rf "$WORK/wh-$n"
    t0=$(now)
    /usr/bin/time -f '%M' -o "$WORK/rss-$n" "$BIN" run --source "$PG_URL_BASE/$db" --warehouse "$WORK/wh-$n" --date $DAY >/dev/null 2>&1
    t1=$(now)
    cs+=("$(secs "$t0" "$t1")")
    rsss+=("$(awk '{printf "%.0f", $1 / 1024}' "$WORK/rss-$n")")
  done
  a=$(median "${as[@]}"); b=$(median "${bs[@]}"); c=$(median "${cs[@]}")
  rss=$(printf '%s\n' "${rsss[@]}" | sort -n | tail -n 1)   # the worst run's peak
  echo "  $n runs: a=${as[*]} b=${bs[*]} c=${cs[*]} rss_MiB=${rsss[*]}" >&2

  printf '%-10s %8s %8s %8s %7s %7s %9s\n' "$n" "$a" "$b" "$c" \
    "$(awk "BEGIN{printf \"%.2f\", $c / $a}")" "$(awk "BEGIN{printf \"%.2f\", $c / $b}")" "$rss"
  q -d "$PG_URL_BASE/postgres" -c "DROP DATABASE $db"
done
