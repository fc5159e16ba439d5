// Loads the report page in Debian's chromium (through playwright-core),
// changes the interval, the zone and the channel filter, and checks that
// every chart's data, read from the page, equals the API's JSON for the
// same query. Also checks the error state and writes a screenshot.
//
// Then loads the page of an account west of UTC, whose default range must
// end on a date that has ended there.
//
// node page.mjs BASE_URL TOKEN SCREENSHOT_PATH WEST_TOKEN
import { chromium } from "playwright-core";

const [base, token, screenshot, westToken] = process.argv.slice(2);
const fail = (message) => {
  console.error("page test: " + message);
  process.exit(1);
};
if (!westToken) fail("usage: node page.mjs BASE_URL TOKEN SCREENSHOT_PATH WEST_TOKEN");

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
  ],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
const requests = [];
page.on("request", (r) => requests.push(r.url()));
const logs = [];
page.on("console", (m) => logs.push(m.type() + ": " + m.text()));
page.on("pageerror", (e) => fail("script error: " + e.message));

async function settle() {
  await page.waitForFunction(() => document.body.dataset.ready === "yes" || document.body.dataset.ready === "error", null, { timeout: 20000 });
  return page.evaluate(() => document.body.dataset.ready);
}

async function apply(changes) {
  await page.evaluate(() => { document.body.dataset.ready = ""; });
  for (const [id, value] of Object.entries(changes)) {
    if (id === "channels") {
      await page.selectOption("#channels", value);
    } else if (id === "interval" || id === "group_by") {
      await page.selectOption("#" + id, value);
    } else {
      await page.fill("#" + id, value);
    }
  }
  await page.click("#apply");
  return settle();
}

// What the page drew, per metric: labels, one dataset per group, totals.
const drawn = () => page.evaluate(() => {
  const out = {};
  for (const [metric, chart] of Object.entries(window.accountUsage.charts)) {
    out[metric] = {
      labels: chart.data.labels,
      datasets: chart.data.datasets.map((d) => ({ group: d.group, data: d.data })),
      totals: chart.$totals,
    };
  }
  return { charts: out, query: new URL(location.href).hash, sections: document.querySelectorAll("section").length };
});

async function check(label) {
  const state = await drawn();
  const controls = await page.evaluate(() => ({
    from: document.getElementById("from").value,
    to: document.getElementById("to").value,
    time_zone: document.getElementById("time_zone").value,
    interval: document.getElementById("interval").value,
    group_by: document.getElementById("group_by").value,
    channels: [...document.getElementById("channels").selectedOptions].map((o) => o.value),
  }));
  const q = new URLSearchParams({ from: controls.from, to: controls.to, time_zone: controls.time_zone, interval: controls.interval, group_by: controls.group_by });
  for (const c of controls.channels) q.append("channel", c);
  const account = await page.evaluate(() => window.accountUsage.account);
  const response = await fetch(`${base}/v1/accounts/${account}/report?${q}`, { headers: { Authorization: "Bearer " + token } });
  if (!response.ok) fail(`${label}: the API answered ${response.status}`);
  const report = await response.json();
  let charts = 0;
  for (const metric of ["unique_monthly_contacts", "resolved_conversations", "active_agents", "channels", "proactive_messages"]) {
    const buckets = report.bucket_totals.filter((t) => t.metric === metric);
    const rows = report.rows.filter((r) => r.metric === metric);
    const chart = state.charts[metric];
    if (rows.length === 0) {
      if (chart) fail(`${label}: ${metric} has no rows but a chart`);
      continue;
    }
    if (!chart) fail(`${label}: ${metric} has rows but no chart`);
    charts += 1;
    const labels = buckets.map((b) => b.bucket_start);
    if (JSON.stringify(chart.labels) !== JSON.stringify(labels)) fail(`${label}: ${metric} labels ${JSON.stringify(chart.labels)} != ${JSON.stringify(labels)}`);
    if (JSON.stringify(chart.totals) !== JSON.stringify(buckets.map((b) => b.value))) fail(`${label}: ${metric} stack totals differ`);
    const groups = [...new Set(rows.map((r) => r.group))];
    if (JSON.stringify(chart.datasets.map((d) => d.group)) !== JSON.stringify(groups)) fail(`${label}: ${metric} groups differ`);
    for (const d of chart.datasets) {
      const want = labels.map((b) => (rows.find((r) => r.group === d.group && r.bucket_start === b) || { value: 0 }).value);
      if (JSON.stringify(d.data) !== JSON.stringify(want)) fail(`${label}: ${metric}/${d.group} ${JSON.stringify(d.data)} != ${JSON.stringify(want)}`);
    }
  }
  if (charts < 2) fail(`${label}: only ${charts} charts had data`);
  return charts;
}

await page.goto(`${base}/embed#token=${token}`);
if ((await settle()) !== "yes") fail("the first load failed: " + (await page.textContent("#status")));
let checked = await check("default");
if ((await apply({ interval: "weekly" })) !== "yes") fail("weekly failed");
checked += await check("weekly");
if ((await apply({ time_zone: "America/Santiago", interval: "daily", to: "2026-04-10" })) !== "yes") fail("Santiago failed");
checked += await check("Santiago daily");
const channelIds = await page.evaluate(() => [...document.querySelectorAll("#channels option")].map((o) => o.value));
if ((await apply({ channels: channelIds.slice(0, 2), group_by: "channel", interval: "monthly" })) !== "yes") fail("channels failed");
checked += await check("two channels by channel, monthly");
if ((await apply({ channels: [], group_by: "platform", interval: "daily", time_zone: "Asia/Kathmandu" })) !== "yes") fail("reset failed");
checked += await check("Kathmandu daily");
await page.screenshot({ path: screenshot, fullPage: true });

// The error state is words, not a blank chart.
const to = await page.inputValue("#to");
if ((await apply({ from: to, to: "2000-01-01" })) !== "error") fail("a bad range did not show an error");
const status = await page.textContent("#status");
if (!status.includes("is after")) fail("the error state says: " + status);
if ((await page.$$("canvas")).length !== 0) fail("charts are left on the error state");

// Groups are the source's free text: a platform named "__proto__" or
// "constructor" is a group like any other, and drawing it changes nothing
// outside the chart (a plain object keyed by group lost both, showed
// another group's number in their place, and polluted Object.prototype).
const oddGroups = await page.evaluate(() => {
  const report = {
    group_labels: { "7": "Support" },
    bucket_totals: [{ metric: "m", bucket_start: "b1", value: 8 }, { metric: "m", bucket_start: "b2", value: 4 }],
    rows: [
      { metric: "m", bucket_start: "b1", group: "__proto__", value: 3 },
      { metric: "m", bucket_start: "b1", group: "constructor", value: 5 },
      { metric: "m", bucket_start: "b2", group: "7", value: 4 },
    ],
  };
  const data = chartData(report, "m");
  return { datasets: data.datasets.map((d) => [d.label, d.data]), polluted: ({}).b1 !== undefined };
});
const oddExpected = [["__proto__", [3, 0]], ["constructor", [5, 0]], ["Support (7)", [0, 4]]];
if (JSON.stringify(oddGroups.datasets) !== JSON.stringify(oddExpected) || oddGroups.polluted) {
  fail("groups named like Object's own keys: " + JSON.stringify(oddGroups));
}

// West of UTC the last published day's date has not ended: the default
// range stops the date before, and loads.
const west = await browser.newPage();
west.on("request", (r) => requests.push(r.url()));
west.on("pageerror", (e) => fail("script error (west): " + e.message));
await west.goto(`${base}/embed#token=${westToken}`);
await west.waitForFunction(() => document.body.dataset.ready === "yes" || document.body.dataset.ready === "error", null, { timeout: 20000 });
if ((await west.evaluate(() => document.body.dataset.ready)) !== "yes") fail("the west account's first load failed: " + (await west.textContent("#status")));
const westAccount = await west.evaluate(() => window.accountUsage.account);
const westInfo = await (await fetch(`${base}/v1/accounts/${westAccount}`, { headers: { Authorization: "Bearer " + westToken } })).json();
if (westInfo.last_complete_date >= westInfo.last_published_day) fail("the west account's dates: " + JSON.stringify(westInfo));
if ((await west.inputValue("#to")) !== westInfo.last_complete_date) fail("the west account's range ends on " + (await west.inputValue("#to")));
const through = await west.textContent("#account");
if (!through.endsWith(`data through ${westInfo.last_complete_date} (${westInfo.time_zone})`)) fail("the west account's header says: " + through);

const foreign = requests.filter((u) => !u.startsWith(base) && !u.startsWith("blob:") && !u.startsWith("data:"));
if (foreign.length) fail("the page reached outside the server: " + foreign.join(" "));
if (requests.some((u) => u.includes(token))) fail("the token reached a request URL");
await browser.close();
console.log(JSON.stringify({ charts_checked: checked, requests: requests.length }));
