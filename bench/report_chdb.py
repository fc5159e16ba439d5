"""The report's queries as ClickHouse SQL over the warehouse's base-grain
Parquet, run in chDB (ClickHouse's in-process engine): the second baseline
of bench/report_vs_duckdb.sh, timed in this process.

  report_chdb.py WAREHOUSE ACCOUNT TZ FROM TO INTERVAL GROUP_BY REPEAT OUT.json

Arguments, output and answer file as bench/report_duckdb.py, so the script
checks chDB's numbers against `account-usage report` the same way.

The SQL is the DuckDB query written the way a ClickHouse user would:
file() over the hive-partitioned folders (dt prunes the files), the local
bucket from toStartOf*(t, zone), uniqExact for distinct counts, GROUPING SETS
for the totals (distinct over the range, never sums).
"""

import json
import sys

from chdb import session

from report_duckdb import query_args, timed, write_answer

START_OF = {
    "hourly": "toStartOfHour({t}, '{tz}')",
    "daily": "toDateTime(toStartOfDay({t}, '{tz}'), '{tz}')",
    "weekly": "toDateTime(toMonday({t}, '{tz}'), '{tz}')",
    "monthly": "toDateTime(toStartOfMonth({t}, '{tz}'), '{tz}')",
    "quarterly": "toDateTime(toStartOfQuarter({t}, '{tz}'), '{tz}')",
    "yearly": "toDateTime(toStartOfYear({t}, '{tz}'), '{tz}')",
}


def ts(u):
    return "toDateTime64('" + u.strftime("%Y-%m-%d %H:%M:%S") + "', 6, 'UTC')"


def main():
    q = query_args(sys.argv[1:])
    wh, account, tz, interval, group_by, repeat, out = q.wh, q.account, q.tz, q.interval, q.group_by, q.repeat, q.out
    start, end, umc_start, umc_end, lo_dt, hi_dt = q.start, q.end, q.umc_start, q.umc_end, q.lo_dt, q.hi_dt
    group = "c.platform" if group_by == "platform" else "toString(c.channel_id)"
    bucket = lambda t: START_OF[interval].format(t=t, tz=tz)
    month = lambda t: START_OF["monthly"].format(t=t, tz=tz)

    s = session.Session()
    src = lambda t: f"file('{wh}/{t}/*/*.parquet', Parquet)"
    latest = s.query(f"SELECT max(dt) FROM {src('channels')}", "TabSeparated").bytes().decode().strip()
    s.query(
        f"CREATE TABLE ch ENGINE = Memory AS SELECT * FROM file('{wh}/channels/dt={latest}/*.parquet', Parquet)"
        f" WHERE account_id = {account}"
    )
    slots = int((end - start).total_seconds() // 900)

    # Each metric: rows per (bucket, group), then totals per group and overall.
    sql = f"""
WITH
umc AS (
  SELECT 'unique_monthly_contacts' AS metric, {month('t')} AS b, {group} AS g, uniqExact(id) AS v,
         grouping(b) AS gb, grouping(g) AS gg
  FROM (SELECT a.channel_id AS channel_id, a.contact_id AS id, arrayJoin([a.first_at, a.last_at]) AS t
        FROM {src('contact_activity')} a
        WHERE a.account_id = {account} AND a.dt BETWEEN '{lo_dt}' AND '{hi_dt}') x
  JOIN ch c ON c.channel_id = x.channel_id
  WHERE t >= {ts(umc_start)} AND t < {ts(umc_end)}
  GROUP BY GROUPING SETS ((b, g), (g), ())
),
agents AS (
  SELECT 'active_agents' AS metric, {bucket('t')} AS b, {group} AS g, uniqExact(id) AS v,
         grouping(b) AS gb, grouping(g) AS gg
  FROM (SELECT a.channel_id AS channel_id, a.agent_id AS id, arrayJoin([a.first_at, a.last_at]) AS t
        FROM {src('agent_activity')} a
        WHERE a.account_id = {account} AND a.dt BETWEEN '{lo_dt}' AND '{hi_dt}') x
  JOIN ch c ON c.channel_id = x.channel_id
  WHERE t >= {ts(start)} AND t < {ts(end)}
  GROUP BY GROUPING SETS ((b, g), (g), ())
),
resolved AS (
  SELECT 'resolved_conversations' AS metric, {bucket('r.resolved_at')} AS b, {group} AS g, count() AS v,
         grouping(b) AS gb, grouping(g) AS gg
  FROM {src('resolved_conversations')} r JOIN ch c ON c.channel_id = r.channel_id
  WHERE r.account_id = {account} AND r.dt BETWEEN '{lo_dt}' AND '{hi_dt}'
    AND r.resolved_at >= {ts(start)} AND r.resolved_at < {ts(end)}
  GROUP BY GROUPING SETS ((b, g), (g), ())
),
proactive AS (
  SELECT 'proactive_messages' AS metric, {bucket('p.slot_start')} AS b, {group} AS g, sum(p.messages) AS v,
         grouping(b) AS gb, grouping(g) AS gg
  FROM {src('proactive_messages')} p JOIN ch c ON c.channel_id = p.channel_id
  WHERE p.account_id = {account} AND p.dt BETWEEN '{lo_dt}' AND '{hi_dt}'
    AND p.slot_start >= {ts(start)} AND p.slot_start < {ts(end)}
  GROUP BY GROUPING SETS ((b, g), (g), ())
),
-- Bucket spans for the channels metric (interval overlap), from 15-minute
-- slots: every zone's bucket edges fall on one.
spans AS (
  SELECT {bucket('x')} AS b, min(x) AS s, least(max(x) + INTERVAL 15 MINUTE, {ts(end)}) AS e
  FROM (SELECT arrayJoin(arrayMap(i -> {ts(start)} + toIntervalMinute(15 * i), range({slots}))) AS x)
  GROUP BY b
),
channels AS (
  SELECT 'channels' AS metric, sp.b AS b, {group} AS g, uniqExact(c.channel_id) AS v,
         grouping(b) AS gb, grouping(g) AS gg
  FROM ch c CROSS JOIN spans sp
  WHERE c.environment = 'production'
    AND c.connected_at < sp.e AND (c.disconnected_at IS NULL OR c.disconnected_at > sp.s)
  GROUP BY GROUPING SETS ((b, g), (g), ())
)
SELECT metric, formatDateTime(toTimeZone(greatest(toDateTime64(b, 6, 'UTC'), {ts(umc_start)}), 'UTC'), '%Y-%m-%dT%H:%i:%SZ'),
       g, v, gb, gg FROM umc
UNION ALL
SELECT metric, formatDateTime(toTimeZone(greatest(toDateTime64(b, 6, 'UTC'), {ts(start)}), 'UTC'), '%Y-%m-%dT%H:%i:%SZ'),
       g, v, gb, gg FROM (
  SELECT * FROM agents UNION ALL SELECT * FROM resolved UNION ALL SELECT * FROM proactive UNION ALL SELECT * FROM channels)
SETTINGS joined_subquery_requires_alias = 0
"""
    result, median = timed(repeat, lambda: s.query(sql, "JSONCompact").bytes())
    write_answer(out, json.loads(result)["data"])
    print(f"{median:.6f}")

if __name__ == "__main__":
    main()
