#!/usr/bin/env bash
# A/B benchmark: two `account-usage` binaries run the same UTC day, taking
# turns on the same throwaway PostgreSQL cluster and data, beside the COPY
# floor of bench/run_vs_copy.sh (a). Tells a code change from the machine's
# drift, which moves both binaries alike.
#
#   bench/run_ab.sh OLD_BINARY NEW_BINARY [MESSAGES_PER_DAY]   (default 2000000)
#
# Prints, per binary, the median wall time of `run --date` and its ratio to
# (a); REPEAT (default 7) turns each.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib/pg.sh
OLD=$1; NEW=$2; N=${3:-2000000}
WORK=${BENCH_DIR:-/tmp/account-usage-bench-ab}
DAY=2026-03-02
REPEAT=${REPEAT:-7}
pg_start "$WORK/pg"
PSQL=$(pg_bin psql)

q -d "$PG_URL_BASE/postgres" -c "CREATE DATABASE ab"
"$NEW" seed --source "$PG_URL_BASE/ab" --accounts 50 --days 1 --start $DAY --messages-per-day "$N" --seed 1 >/dev/null 2>&1
q -d "$PG_URL_BASE/ab" -c "VACUUM ANALYZE"
copy="COPY (SELECT id, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id, sent_at, created_at FROM messages WHERE sent_at >= '${DAY}T00:00:00Z' AND sent_at < '${DAY}T00:00:00Z'::timestamptz + interval '1 day') TO STDOUT (FORMAT binary)"
q -d "$PG_URL_BASE/ab" -c "$copy" > /dev/null
as=(); olds=(); news=()
for r in $(seq "$REPEAT"); do
  q -d "$PG_URL_BASE/ab" -c CHECKPOINT
  t0=$(now); q -d "$PG_URL_BASE/ab" -c "$copy" > /dev/null; t1=$(now); as+=("$(secs "$t0" "$t1")")
  for which in old new; do
    bin=$OLD; [ "$which" = new ] && bin=$NEW
    q -d "$PG_URL_BASE/ab" -c CHECKPOINT
    rm -rf "$WORK/wh"
    t0=$(now); "$bin" run --source "$PG_URL_BASE/ab" --warehouse "$WORK/wh" --date $DAY >/dev/null 2>&1; t1=$(now)
    if [ "$which" = old ]; then olds+=("$(secs "$t0" "$t1")"); else news+=("$(secs "$t0" "$t1")"); fi
  done
done
a=$(median "${as[@]}"); o=$(median "${olds[@]}"); n=$(median "${news[@]}")
echo "runs: a=${as[*]} old=${olds[*]} new=${news[*]}" >&2
printf 'messages %s  a %s s  old %s s (c/a %s)  new %s s (c/a %s)  new/old %s\n' "$N" "$a" \
  "$o" "$(awk "BEGIN{printf \"%.2f\", $o / $a}")" "$n" "$(awk "BEGIN{printf \"%.2f\", $n / $a}")" \
  "$(awk "BEGIN{printf \"%.2f\", $n / $o}")"
