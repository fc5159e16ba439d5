"""The report's queries as DuckDB SQL over the warehouse's base-grain Parquet
(the baseline of bench/report_vs_duckdb.sh), timed in this process.

  report_duckdb.py WAREHOUSE ACCOUNT TZ FROM TO INTERVAL GROUP_BY REPEAT OUT.json

Prints the median seconds of REPEAT runs (after one warm-up) and writes the
answer as {"rows": [[metric, bucket_start_utc, group, value]...],
"totals": [[metric, group, value]...]} so the script can check that DuckDB and
`account-usage report` agree before comparing their speed.

The SQL follows DESIGN.md §2-3 the way an analyst would write it with
DuckDB's ICU time zones: an entity of the hour-grain activity tables is in a
bucket when its first or last instant of the hour is; buckets are local
calendar buckets, clipped to the range; UMC uses the whole months of the
range; totals are distinct over the range (GROUPING SETS), never sums.
"""

import datetime as dt
import json
import statistics
import sys
import time
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import duckdb

TRUNC = {"hourly": "hour", "daily": "day", "weekly": "week", "monthly": "month", "quarterly": "quarter", "yearly": "year"}


def instant(tz, d):
    """First instant of local date d (where midnight is skipped, the first that exists)."""
    z = ZoneInfo(tz)
    t = dt.datetime(d.year, d.month, d.day, tzinfo=z)
    # zoneinfo resolves a skipped midnight forward with fold=0 by the old offset; normalize via UTC.
    u = t.astimezone(dt.timezone.utc)
    back = u.astimezone(z)
    if back.date() < d:  # in a gap: move to the transition
        for m in range(1, 24 * 60 + 1):
            c = (t.replace(tzinfo=None) + dt.timedelta(minutes=m)).replace(tzinfo=z)
            cu = c.astimezone(dt.timezone.utc)
            if cu.astimezone(z).replace(tzinfo=None) == c.replace(tzinfo=None):
                return cu
    return u


def ts(u):
    return "TIMESTAMPTZ '" + u.strftime("%Y-%m-%d %H:%M:%S") + "+00'"


def query_args(argv):
    """The command line, with the query's instants: the range [start, end),
    the whole months UMC counts over [umc_start, umc_end), and the UTC days
    under them (lo_dt..hi_dt, for partition pruning). Shared with report_chdb.py."""
    wh, account, tz, d_from, d_to, interval, group_by, repeat, out = argv
    d_from = dt.date.fromisoformat(d_from)
    d_to = dt.date.fromisoformat(d_to)
    start, end = instant(tz, d_from), instant(tz, d_to + dt.timedelta(days=1))
    m0 = d_from.replace(day=1)
    m1 = (d_to.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    umc_start, umc_end = instant(tz, m0), instant(tz, m1)
    day = lambda u: u.date().isoformat()
    return SimpleNamespace(
        wh=wh, account=int(account), tz=tz, interval=interval, group_by=group_by, repeat=int(repeat), out=out,
        start=start, end=end, umc_start=umc_start, umc_end=umc_end,
        lo_dt=day(min(start, umc_start)), hi_dt=day(max(end, umc_end) - dt.timedelta(microseconds=1)),
    )


def timed(repeat, run):
    """Runs `run` once to warm up and `repeat` times more: (last result, median seconds)."""
    times, result = [], None
    for i in range(repeat + 1):
        t0 = time.perf_counter()
        result = run()
        if i > 0:
            times.append(time.perf_counter() - t0)
    return result, statistics.median(times)


def write_answer(out, result):
    """Writes (metric, bucket start in UTC, group, value, grouping(bucket),
    grouping(group)) rows as the answer file the script compares."""
    rows, totals = [], []
    for metric, b, g, v, gb, gg in result:
        if int(gb) == 0:
            rows.append([metric, b, g, int(v)])
        else:
            totals.append([metric, None if int(gg) else g, int(v)])
    with open(out, "w") as f:
        json.dump({"rows": sorted(rows), "totals": sorted(totals, key=lambda t: (t[0], t[1] or ""))}, f)


def main():
    q = query_args(sys.argv[1:])
    wh, account, tz, interval, group_by, repeat, out = q.wh, q.account, q.tz, q.interval, q.group_by, q.repeat, q.out
    start, end, umc_start, umc_end, lo_dt, hi_dt = q.start, q.end, q.umc_start, q.umc_end, q.lo_dt, q.hi_dt
    trunc = TRUNC[interval]
    group = "c.platform" if group_by == "platform" else "CAST(c.channel_id AS VARCHAR)"

    con = duckdb.connect()
    con.execute(f"SET TimeZone = 'UTC'")
    src = lambda t: f"read_parquet('{wh}/{t}/*/*.parquet', hive_partitioning = true)"
    latest = con.execute(
        f"SELECT max(dt) FROM read_parquet('{wh}/channels/*/*.parquet', hive_partitioning = true)"
    ).fetchone()[0]
    con.execute(
        f"CREATE TEMP TABLE ch AS SELECT * FROM read_parquet('{wh}/channels/dt={latest}/*.parquet') WHERE account_id = {account}"
    )

    def bucket(expr, lo, hi):
        # The local calendar bucket as a wall-clock timestamp: one ICU call
        # per row; keys go back to instants after grouping (see `clip`).
        return f"date_trunc('{trunc}', timezone('{tz}', {expr}))"

    def clip(b, lo):
        # A bucket's first instant inside the range.
        return f"CASE WHEN {b} IS NULL THEN NULL ELSE greatest(timezone('{tz}', {b}), {ts(lo)}) END"

    # Bucket edges for the channels metric (interval overlap), from the same truncation.
    sql = f"""
WITH
acts AS (
  SELECT a.channel_id, a.contact_id AS id, u.t
  FROM {src('contact_activity')} a, unnest([a.first_at, a.last_at]) AS u(t)
  WHERE a.account_id = {account} AND a.dt BETWEEN '{lo_dt}' AND '{hi_dt}'
),
umc AS (
  SELECT 'unique_monthly_contacts' AS metric,
         date_trunc('month', timezone('{tz}', t)) AS b, {group} AS g, count(DISTINCT id) AS v,
         grouping(b) AS gb, grouping(g) AS gg
  FROM acts a JOIN ch c USING (channel_id)
  WHERE t >= {ts(umc_start)} AND t < {ts(umc_end)}
  GROUP BY GROUPING SETS ((b, g), (g), ())
),
agents AS (
  SELECT 'active_agents' AS metric, {bucket('t', start, end)} AS b, {group} AS g, count(DISTINCT id) AS v,
         grouping(b) AS gb, grouping(g) AS gg
  FROM (SELECT a.channel_id, a.agent_id AS id, u.t
        FROM {src('agent_activity')} a, unnest([a.first_at, a.last_at]) AS u(t)
        WHERE a.account_id = {account} AND a.dt BETWEEN '{lo_dt}' AND '{hi_dt}') x
  JOIN ch c USING (channel_id)
  WHERE t >= {ts(start)} AND t < {ts(end)}
  GROUP BY GROUPING SETS ((b, g), (g), ())
),
resolved AS (
  SELECT 'resolved_conversations' AS metric, {bucket('r.resolved_at', start, end)} AS b, {group} AS g, count(*) AS v,
         grouping(b) AS gb, grouping(g) AS gg
  FROM {src('resolved_conversations')} r JOIN ch c USING (channel_id)
  WHERE r.account_id = {account} AND r.dt BETWEEN '{lo_dt}' AND '{hi_dt}'
    AND r.resolved_at >= {ts(start)} AND r.resolved_at < {ts(end)}
  GROUP BY GROUPING SETS ((b, g), (g), ())
),
proactive AS (
  SELECT 'proactive_messages' AS metric, {bucket('p.slot_start', start, end)} AS b, {group} AS g, sum(p.messages) AS v,
         grouping(b) AS gb, grouping(g) AS gg
  FROM {src('proactive_messages')} p JOIN ch c USING (channel_id)
  WHERE p.account_id = {account} AND p.dt BETWEEN '{lo_dt}' AND '{hi_dt}'
    AND p.slot_start >= {ts(start)} AND p.slot_start < {ts(end)}
  GROUP BY GROUPING SETS ((b, g), (g), ())
),
edges AS (
  SELECT {bucket('x', start, end)} AS b, min(x) AS s
  FROM (SELECT unnest(generate_series({ts(start)}, {ts(end)} - INTERVAL 1 microsecond, INTERVAL 15 minute)) AS x)
  GROUP BY ALL
),
spans AS (
  SELECT b, s, coalesce(lead(s) OVER (ORDER BY s), {ts(end)}) AS e FROM edges
),
channels AS (
  SELECT 'channels' AS metric, s.b, {group} AS g, count(DISTINCT c.channel_id) AS v,
         grouping(s.b) AS gb, grouping(g) AS gg
  FROM ch c JOIN spans s ON c.connected_at < s.e AND (c.disconnected_at IS NULL OR c.disconnected_at > s.s)
  WHERE c.environment = 'production'
  GROUP BY GROUPING SETS ((s.b, g), (g), ())
)
SELECT metric, {clip('b', umc_start)}, g, v, gb, gg FROM umc
UNION ALL
SELECT metric, {clip('b', start)}, g, v, gb, gg FROM (
  SELECT * FROM agents UNION ALL SELECT * FROM resolved UNION ALL SELECT * FROM proactive UNION ALL SELECT * FROM channels)
"""
    result, median = timed(repeat, lambda: con.execute(sql).fetchall())
    utc = lambda b: b.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if b is not None else None
    write_answer(out, [(m, utc(b) if gb == 0 else None, g, v, gb, gg) for m, b, g, v, gb, gg in result])
    print(f"{median:.6f}")

if __name__ == "__main__":
    main()
