#!/usr/bin/env bash
# Benchmark: `account-usage seed` into PostgreSQL vs PostgreSQL's own
# `COPY … FROM` of CSV files holding the very same rows, in the same run, on
# the same throwaway cluster and the same schema (indexes included).
#
#   bench/seed_vs_copy.sh [MESSAGES_PER_DAY]      (default 2000000)
#
# Prints both timings and the rate ratio seed/COPY (target: >= 0.5).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib/pg.sh
MESSAGES=${1:-2000000}
WORK=${BENCH_DIR:-/tmp/account-usage-bench-seed}

cargo build --release --quiet
BIN=target/release/account-usage
pg_start "$WORK/pg"
PSQL=$(pg_bin psql)

q -d "$PG_URL_BASE/postgres" -c "CREATE DATABASE seeded" -c "CREATE DATABASE baseline"
TABLES="accounts channels agents contacts conversations messages conversation_events"

# (1) account-usage seed, schema created by seed itself.
t0=$(date +%s.%N)
"$BIN" seed --source "$PG_URL_BASE/seeded" --accounts 50 --days 1 --start 2026-03-02 \
  --messages-per-day "$MESSAGES" --seed 1 >/dev/null
t1=$(date +%s.%N)
seed_s=$(awk "BEGIN{print $t1 - $t0}")

# Export the same rows as CSV, readable by the server.
CSV="$WORK/pg/csv"; mkdir -p "$CSV"; [ "$(id -u)" = 0 ] && chown postgres "$CSV"
rows=0
for t in $TABLES; do
  q -d "$PG_URL_BASE/seeded" -c "COPY $t TO '$CSV/$t.csv' (FORMAT csv)"
  rows=$((rows + $(wc -l < "$CSV/$t.csv")))
done
messages=$(wc -l < "$CSV/messages.csv")

# (2) baseline: the same schema, then server-side COPY FROM CSV of every table.
q -d "$PG_URL_BASE/baseline" -f sql/source/postgres.sql
copy_sql=""
for t in $TABLES; do copy_sql="$copy_sql COPY $t FROM '$CSV/$t.csv' (FORMAT csv);"; done
t0=$(date +%s.%N)
q -d "$PG_URL_BASE/baseline" -c "$copy_sql"
t1=$(date +%s.%N)
copy_s=$(awk "BEGIN{print $t1 - $t0}")

ratio=$(awk "BEGIN{print $copy_s / $seed_s}")
printf 'rows (all tables)        %d (messages: %d)\n' "$rows" "$messages"
printf 'seed (binary COPY)       %.2f s  %.0f rows/s\n' "$seed_s" "$(awk "BEGIN{print $rows / $seed_s}")"
printf 'COPY FROM CSV (baseline) %.2f s  %.0f rows/s\n' "$copy_s" "$(awk "BEGIN{print $rows / $copy_s}")"
printf 'rate ratio seed/COPY     %.2f   (target >= 0.5)\n' "$ratio"
