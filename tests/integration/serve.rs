//! `account-usage serve`, the real binary on a loopback port, against the
//! shared report world (and, for caching, a warehouse of its own): the
//! same numbers as the CLI, tenancy, errors, caching, shutdown.

use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use account_usage::seed::rng::Rng;
use account_usage::warehouse::paths::{DirtyMarkerKey, RunId, ShardSpec};
use serde_json::Value;

use crate::common::{self, Moto, TempDir};
use crate::report::world;
use crate::wh;

pub(crate) const SECRET: &str = "test-secret-0123456789abcdefghijklmnopqrstuvwxyz";

/// A running `serve`; killed on drop.
pub(crate) struct Server {
    pub(crate) base: String,
    child: Option<Child>,
    _dir: TempDir,
}

impl Server {
    pub(crate) fn start(warehouse: &str, extra: &[&str]) -> Server {
        Server::start_env(warehouse, extra, &[])
    }

    /// With extra environment (a store's credentials and endpoint).
    pub(crate) fn start_env(warehouse: &str, extra: &[&str], env: &[(String, String)]) -> Server {
        let dir = TempDir::new("serve");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
        let port = common::free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec![
            "serve",
            "--warehouse",
            warehouse,
            "--listen",
            &listen,
            "--jwt-secret-file",
            secret.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let child = Command::new(env!("CARGO_BIN_EXE_account-usage"))
            .args(&args)
            .env_remove("ACCOUNT_USAGE_JWT_SECRET")
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start serve");
        let server = Server {
            base: format!("http://{listen}"),
            child: Some(child),
            _dir: dir,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if ureq_like_get(&format!("{}/readyz", self.base), &[]).is_ok_and(|r| r.0 == 200) {
                return;
            }
            assert!(Instant::now() < deadline, "serve did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Waits for the process to exit; its status code.
    pub(crate) fn wait(&mut self, within: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A response: status, headers (lowercase names), body.
pub(crate) type Response = (u16, Vec<(String, String)>, String);

/// A response whose body is kept as bytes.
pub(crate) type RawResponse = (u16, Vec<(String, String)>, Vec<u8>);

pub(crate) fn header<'r>(r: &'r Response, name: &str) -> Option<&'r str> {
    r.1.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A blocking HTTP/1.1 GET on loopback (one connection per request) with
/// extra headers; the body is read to its end.
pub(crate) fn ureq_like_get(url: &str, headers: &[(&str, &str)]) -> std::io::Result<Response> {
    request("GET", url, headers)
}

pub(crate) fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> std::io::Result<Response> {
    let (status, headers, body) = request_bytes(method, url, headers)?;
    Ok((status, headers, String::from_utf8_lossy(&body).to_string()))
}

/// [`request`], with the body as its bytes (compressed bodies are not text).
pub(crate) fn request_bytes(method: &str, url: &str, headers: &[(&str, &str)]) -> std::io::Result<RawResponse> {
    use std::io::Write;
    let rest = url.strip_prefix("http://").expect("http:// URL");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Ok((status, headers, body))
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&raw[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[eol + 2 + size + 2..];
    }
    out
}

pub(crate) fn token(account: &str) -> String {
    common::run_ok_env(
        &["token", "--account", account],
        &[("ACCOUNT_USAGE_JWT_SECRET".to_string(), SECRET.to_string())],
    )
    .trim()
    .to_string()
}

pub(crate) fn get(server: &Server, path: &str, token: &str) -> Response {
    let auth = format!("Bearer {token}");
    ureq_like_get(&format!("{}{path}", server.base), &[("Authorization", &auth)]).unwrap()
}

fn json(r: &Response) -> Value {
    serde_json::from_str(&r.2).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.2))
}

/// The problem body without its request id (which differs per request).
fn problem(r: &Response) -> Value {
    assert_eq!(header(r, "content-type"), Some("application/problem+json"), "{r:?}");
    assert_eq!(
        header(r, "cache-control"),
        Some("no-store"),
        "an error is never cached: {r:?}"
    );
    let mut v = json(r);
    assert_eq!(v["status"], r.0, "{r:?}");
    assert_eq!(
        v["request_id"].as_str(),
        header(r, "x-request-id"),
        "the problem echoes the request id"
    );
    v.as_object_mut().unwrap().remove("request_id");
    v
}

const ZONES: [Option<&str>; 8] = [
    None,
    Some("Asia/Kathmandu"),
    Some("Asia/Kolkata"),
    Some("Australia/Lord_Howe"),
    Some("America/Santiago"),
    Some("Europe/London"),
    Some("America/New_York"),
    Some("UTC"),
];
const INTERVALS: [&str; 6] = ["hourly", "daily", "weekly", "monthly", "quarterly", "yearly"];

#[tokio::test(flavor = "multi_thread")]
async fn the_api_answers_what_the_cli_answers_on_220_random_queries() {
    let world = world().await;
    let server = Server::start(&world.warehouse, &[]);
    let service = token("*");
    let warehouse = wh::open(&world.warehouse, &[]);
    let mut channels = Vec::new();
    for account in 1..=5 {
        channels.push(
            account_usage::report::channels_of(&warehouse, wh::day("2026-04-13"), account)
                .await
                .unwrap(),
        );
    }
    let seed = common::test_seed(8);
    let mut rng = Rng::new(seed);
    let mut cases = Vec::new();
    let queries = common::test_cases(220);
    for _ in 0..queries {
        let account = rng.range(1, 5);
        let interval = INTERVALS[rng.range(0, 5) as usize];
        let zone = ZONES[rng.range(0, 7) as usize];
        let span = match interval {
            "hourly" => rng.range(0, 3),
            "daily" | "weekly" => rng.range(0, 40),
            _ => rng.range(0, 100),
        };
        let mut from = wh::day("2026-01-02") + chrono::Days::new(rng.range(0, 99 - span.min(99)) as u64);
        let mut to = (from + chrono::Days::new(span as u64)).min(wh::day("2026-04-12"));
        // A third are whole buckets in the account's zone: the rollups' to answer.
        let whole = matches!(interval, "daily" | "weekly" | "monthly") && rng.chance(0.35);
        let zone = if whole {
            let i: account_usage::calendar::Interval = clap::ValueEnum::from_str(interval, false).unwrap();
            from = i.period_of(from).unwrap().0.max(wh::day("2026-01-01"));
            from = i.period_of(from).unwrap().0;
            if from < wh::day("2026-01-01") {
                from = i.period_of(from).unwrap().1 + chrono::Days::new(1);
            }
            if from > wh::day("2026-03-31") && interval == "monthly" {
                from = wh::day("2026-03-01");
            }
            to = i.period_of(to.max(from)).unwrap().1;
            if to > wh::day("2026-04-12") {
                // Weeks end on Sundays, and 2026-04-12 is one.
                to = wh::day("2026-03-31");
            }
            None
        } else {
            zone
        };
        let mut q = vec![
            ("from".to_string(), from.to_string()),
            ("to".to_string(), to.to_string()),
            ("interval".to_string(), interval.to_string()),
            (
                "group_by".to_string(),
                if rng.chance(0.5) { "channel" } else { "platform" }.to_string(),
            ),
        ];
        if let Some(z) = zone {
            q.push(("time_zone".into(), z.into()));
        }
        if rng.chance(0.3) {
            for c in &channels[account as usize - 1] {
                if rng.chance(0.5) {
                    q.push(("channel".into(), c.id.to_string()));
                }
            }
        }
        if rng.chance(0.2) {
            q.push(("metric".into(), "active_agents".into()));
            q.push(("metric".into(), "unique_monthly_contacts".into()));
        }
        if rng.chance(0.3) {
            q.push(("base_grain".into(), "true".into()));
        }
        cases.push((account, q));
    }

    let answered: Vec<(String, bool)> = std::thread::scope(|scope| {
        let chunks: Vec<_> = cases.chunks(cases.len().div_ceil(2)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let (server, service, warehouse) = (&server, &service, &world.warehouse);
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for (account, q) in chunk {
                        out.push(compare(server, service, warehouse, *account, q));
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let from_rollups = answered.iter().filter(|(from, _)| from == "rollups").count();
    let from_base = answered.iter().filter(|(from, _)| from == "base_grain").count();
    // Floors of 25, 80 and 150 of the default 220 queries, scaled with them.
    let at_least = |of_220: u64| (queries * of_220).div_ceil(220) as usize;
    assert!(
        from_rollups >= at_least(25),
        "only {from_rollups} of {queries} answers came from rollups"
    );
    assert!(
        from_base >= at_least(80),
        "only {from_base} of {queries} answers came from the base grain"
    );
    assert!(
        answered.iter().filter(|(_, rows)| *rows).count() >= at_least(150),
        "too few of {queries} answers had rows"
    );
}

/// One query through the API (JSON and CSV) and the CLI; where it came
/// from and whether it had rows.
fn compare(server: &Server, service: &str, warehouse: &str, account: i64, q: &[(String, String)]) -> (String, bool) {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(q.iter())
        .finish();
    let path = format!("/v1/accounts/{account}/report?{query}");
    let api = get(server, &path, service);
    let account_arg = account.to_string();
    let mut args = vec!["report", "--warehouse", warehouse, "--account", &account_arg];
    let flags: Vec<(String, String)> = q
        .iter()
        .map(|(k, v)| (format!("--{}", k.replace('_', "-")), v.clone()))
        .collect();
    for (k, v) in &flags {
        if k == "--base-grain" {
            args.push("--base-grain");
        } else {
            args.push(k);
            args.push(v);
        }
    }
    let mut json_args = args.clone();
    json_args.extend(["--format", "json"]);
    let cli = common::run_bin(&json_args);
    assert!(cli.status.success(), "{path}: {}", String::from_utf8_lossy(&cli.stderr));
    assert_eq!(api.0, 200, "{path}: {}", api.2);
    let api_json = json(&api);
    let cli_json: Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(api_json, cli_json, "{path}");

    let csv = get(server, &format!("{path}&format=csv"), service);
    assert_eq!(csv.0, 200);
    assert!(header(&csv, "content-type").unwrap().starts_with("text/csv"));
    let mut csv_args = args.clone();
    csv_args.extend(["--format", "csv"]);
    assert_eq!(csv.2, common::run_ok(&csv_args), "{path}: CSV");
    (
        api_json["answered_from"].as_str().unwrap().to_string(),
        !api_json["rows"].as_array().unwrap().is_empty(),
    )
}

/// The account's complete dates are where a report in its zone can run:
/// the page's default (the last 30 of them) answers for every account, west
/// of UTC as well as east, and one date further does not.
#[tokio::test(flavor = "multi_thread")]
async fn an_accounts_complete_dates_bound_the_reports_in_its_zone() {
    let world = world().await;
    let server = Server::start(&world.warehouse, &[]);
    let mut zones = BTreeSet::new();
    for account in 1..=5 {
        let t = token(&account.to_string());
        let info = json(&get(&server, &format!("/v1/accounts/{account}"), &t));
        let zone: chrono_tz::Tz = info["time_zone"].as_str().unwrap().parse().unwrap();
        let day = |field: &str| wh::day(info[field].as_str().unwrap());
        let (first, last) = (day("first_complete_date"), day("last_complete_date"));
        assert_eq!(
            account_usage::calendar::dates_within(&zone, day("first_published_day"), day("last_published_day")),
            Some((first, last)),
            "{info}"
        );
        zones.insert(zone.name());
        let report = |from: chrono::NaiveDate, to: chrono::NaiveDate| {
            get(
                &server,
                &format!("/v1/accounts/{account}/report?from={from}&to={to}"),
                &t,
            )
        };
        let from = (last - chrono::Days::new(29)).max(first);
        assert_eq!(report(from, last).0, 200, "{zone}: the default range");
        let past = report(from, last + chrono::Days::new(1));
        assert_eq!(past.0, 422, "{zone}: a date not ended");
        assert!(problem(&past)["detail"].as_str().unwrap().contains("no published data"));
        // In UTC the complete dates are the published days: a range ends on
        // the midnight that ends the last one, and needs no day after it.
        let last_day = day("last_published_day");
        let in_utc = |to: chrono::NaiveDate| {
            let from = (last_day - chrono::Days::new(29)).max(day("first_published_day"));
            get(
                &server,
                &format!("/v1/accounts/{account}/report?from={from}&to={to}&time_zone=UTC"),
                &t,
            )
        };
        let through_last = in_utc(last_day);
        assert_eq!(
            through_last.0, 200,
            "{zone}: UTC through the last day: {}",
            through_last.2
        );
        assert_eq!(in_utc(last_day + chrono::Days::new(1)).0, 422, "{zone}: UTC past it");
    }
    // East and west of UTC both.
    assert!(
        zones.contains("Asia/Kathmandu") && zones.contains("America/New_York"),
        "{zones:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_reads_its_own_account_and_nothing_else() {
    let world = world().await;
    let server = Server::start(&world.warehouse, &[]);
    let (a, b) = (token("1"), token("2"));
    let warehouse = wh::open(&world.warehouse, &[]);
    let latest = wh::day("2026-04-13");
    let a_channels: BTreeSet<String> = account_usage::report::channels_of(&warehouse, latest, 1)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id.to_string())
        .collect();
    let b_channel = account_usage::report::channels_of(&warehouse, latest, 2).await.unwrap()[0].id;
    let range = "from=2026-02-01&to=2026-02-28&group_by=channel";

    // B's answer is in the cache before A asks for it.
    assert_eq!(get(&server, &format!("/v1/accounts/2/report?{range}"), &b).0, 200);
    assert_eq!(
        get(&server, &format!("/v1/accounts/2/report?{range}"), &token("*")).0,
        200
    );

    // An unknown account's body, with the id asked for in its place.
    let unknown = |path: &str| {
        let text = get(&server, &path.replace("{}", "99999"), &token("*"));
        let mut p = problem(&text);
        p["detail"] = Value::from(p["detail"].as_str().unwrap().replace("99999", "2"));
        p
    };
    for path in [
        "/v1/accounts/{}",
        "/v1/accounts/{}/channels",
        &format!("/v1/accounts/{{}}/report?{range}"),
    ] {
        let denied = get(&server, &path.replace("{}", "2"), &a);
        assert_eq!(denied.0, 404, "{path}");
        assert_eq!(
            problem(&denied),
            unknown(path),
            "{path}: B looks exactly like an unknown account"
        );
        assert!(!denied.2.contains("Account 2"), "{}", denied.2);
    }
    // B's channel through A's path.
    let r = get(
        &server,
        &format!("/v1/accounts/1/report?{range}&channel={b_channel}"),
        &a,
    );
    assert_eq!(r.0, 404);
    assert_eq!(
        problem(&r)["detail"],
        format!("unknown channel {b_channel} for account 1")
    );
    // A's own answers hold only A's channels.
    let own = json(&get(&server, &format!("/v1/accounts/1/report?{range}"), &a));
    for row in own["rows"].as_array().unwrap() {
        assert!(a_channels.contains(row["group"].as_str().unwrap()), "{row}");
    }
    let listed = json(&get(&server, "/v1/accounts/1/channels", &a));
    let ids: BTreeSet<String> = listed["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].to_string())
        .collect();
    assert_eq!(ids, a_channels);

    // Tokens that are not valid: 401 with WWW-Authenticate, one body.
    let secret = account_usage::serve::auth::Secret::new(SECRET.as_bytes()).unwrap();
    let other = account_usage::serve::auth::Secret::new(b"some-other-secret-0123456789abcdefgh").unwrap();
    let grant = account_usage::serve::auth::Grant::Account(1);
    let expired = account_usage::serve::auth::mint_at(&secret, grant, 1_000_000).unwrap();
    let foreign = account_usage::serve::auth::mint(&other, grant, Duration::from_secs(600)).unwrap();
    let payload = a.split('.').nth(1).unwrap();
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    let hs512 = {
        // A valid signature under another algorithm (HS512) is refused too.
        let header = "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9";
        format!("{header}.{payload}.{}", a.split('.').nth(2).unwrap())
    };
    let first = problem(&get(&server, "/v1/accounts/1", &expired));
    for (label, t) in [
        ("expired", expired.as_str()),
        ("foreign", &foreign),
        ("none", &none),
        ("hs512", &hs512),
        ("junk", "x.y.z"),
    ] {
        let r = get(&server, "/v1/accounts/1", t);
        assert_eq!(r.0, 401, "{label}");
        assert!(header(&r, "www-authenticate").unwrap().starts_with("Bearer"), "{label}");
        assert_eq!(problem(&r), first, "{label}");
    }
    let missing = ureq_like_get(&format!("{}/v1/accounts/1/report?{range}", server.base), &[]).unwrap();
    assert_eq!(missing.0, 401);
    assert_eq!(problem(&missing), first);
    // The scheme's name is case-insensitive (RFC 9110 §11.1); another
    // scheme carries no bearer token.
    let url = format!("{}/v1/accounts/1", server.base);
    for scheme in ["bearer", "BEARER", "Bearer "] {
        let r = ureq_like_get(&url, &[("Authorization", &format!("{scheme} {a}"))]).unwrap();
        assert_eq!(r.0, 200, "{scheme:?}: {}", r.2);
    }
    let basic = ureq_like_get(&url, &[("Authorization", &format!("Basic {a}"))]).unwrap();
    assert_eq!(problem(&basic), first);
    // Two Authorization fields, even both valid, are one too many.
    let bearer = format!("Bearer {a}");
    let twice = ureq_like_get(&url, &[("Authorization", &bearer), ("Authorization", &bearer)]).unwrap();
    assert_eq!(twice.0, 401, "{}", twice.2);
    assert_eq!(problem(&twice), first);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_is_a_problem_with_the_cli_message_and_no_internals() {
    let world = world().await;
    let server = Server::start(&world.warehouse, &[]);
    let t = token("1");
    let base = "/v1/accounts/1/report?";
    for (query, status, detail) in [
        (
            "from=2026-02-01&to=2026-02-02&time_zone=Mars/Olympus",
            400,
            "unknown time zone \"Mars/Olympus\": expected an IANA name such as Europe/London",
        ),
        (
            "from=2026-02-05&to=2026-02-02",
            400,
            "--from 2026-02-05 is after --to 2026-02-02",
        ),
        (
            "from=2026-02-01&to=2026-02-02&from=2026-02-02",
            400,
            "from: given more than once",
        ),
        (
            "from=2026-02-30&to=2026-03-02",
            400,
            "from: expected a date as YYYY-MM-DD, got \"2026-02-30\"",
        ),
        (
            "from=2026-02-01&to=2026-02-02&interval=fortnightly",
            400,
            "interval: unknown value \"fortnightly\"; expected one of hourly, daily, weekly, monthly, quarterly, yearly",
        ),
        (
            "from=2026-02-01&to=2026-02-02&metric=umc",
            400,
            "metric: unknown value \"umc\"; expected one of active_agents, channels, proactive_messages, resolved_conversations, unique_monthly_contacts",
        ),
        (
            "from=2026-02-01&to=2026-02-02&channel=123456789",
            404,
            "unknown channel 123456789 for account 1",
        ),
        (
            "from=2026-04-10&to=2026-04-20",
            422,
            "no published data for 7 day(s) the report needs: 2026-04-14..2026-04-20",
        ),
    ] {
        let r = get(&server, &format!("{base}{query}"), &t);
        assert_eq!(r.0, status, "{query}: {}", r.2);
        let p = problem(&r);
        assert_eq!(p["detail"], detail, "{query}");
        if status == 422 {
            assert_eq!(p["missing_days"].as_array().unwrap().len(), 7);
            assert_eq!(p["missing_days"][0], "2026-04-14");
        }
        // The CLI says the same.
        if status != 404 {
            let mut args = vec!["report", "--warehouse", world.warehouse.as_str(), "--account", "1"];
            let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (format!("--{}", k.replace('_', "-")), v.to_string()))
                .collect();
            for (k, v) in &pairs {
                args.push(k);
                args.push(v);
            }
            let out = common::run_bin(&args);
            assert_eq!(out.status.code(), Some(2), "{query}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            // clap words its enum errors itself; the rest is our own sentence.
            let tail = match detail.split_once(": ") {
                Some((_, t)) if t.starts_with("unknown value") => t
                    .split(';')
                    .next()
                    .unwrap()
                    .trim_start_matches("unknown value ")
                    .trim_matches('"'),
                // clap's words for a flag given twice.
                Some((_, "given more than once")) => "cannot be used multiple times",
                Some((_, t)) if detail.starts_with("from:") => t,
                _ => detail,
            };
            assert!(stderr.contains(tail), "{query}: CLI said {stderr}");
        }
        for secret_or_internal in [
            "parquet",
            "object_store",
            "sqlx",
            "panicked",
            "/tmp",
            "warehouse/",
            "backtrace",
        ] {
            assert!(!r.2.to_lowercase().contains(secret_or_internal), "{query}: {}", r.2);
        }
    }
    // Hourly over ten years is refused before anything is read (the days
    // are not published either), with the CLI's sentence.
    let huge = "from=2016-01-01&to=2026-01-07&interval=hourly&time_zone=UTC";
    let r = get(&server, &format!("{base}{huge}"), &t);
    assert_eq!(r.0, 400, "{}", r.2);
    let detail = problem(&r)["detail"].as_str().unwrap().to_string();
    assert!(
        detail.starts_with("the answer would have about ") && detail.contains("rows, more than 500000; ask for"),
        "{detail}"
    );
    let out = common::run_bin(&[
        "report",
        "--warehouse",
        world.warehouse.as_str(),
        "--account",
        "1",
        "--from",
        "2016-01-01",
        "--to",
        "2026-01-07",
        "--interval",
        "hourly",
        "--time-zone",
        "UTC",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        format!("error: {detail}")
    );

    let unknown_route = get(&server, "/v2/nothing", &t);
    assert_eq!(unknown_route.0, 404);
    problem(&unknown_route);
    let post = request("POST", &format!("{}/v1/accounts/1", server.base), &[]).unwrap();
    assert_eq!(post.0, 405);
    problem(&post);

    // A request slower than --request-timeout gets its 503.
    let slow = Server::start(&world.warehouse, &["--request-timeout", "1ms", "--result-cache", "0"]);
    let r = get(
        &slow,
        &format!("{base}from=2026-01-02&to=2026-04-10&interval=hourly&time_zone=UTC"),
        &t,
    );
    assert_eq!(r.0, 503, "{}", r.2);
    assert_eq!(problem(&r)["type"], "urn:account-usage:problem:timeout");

    // An answer heavier than --result-cache-mib is computed each time and
    // never kept; a light one is kept, and the bytes stay under the bound.
    let tight = Server::start(&world.warehouse, &["--result-cache-mib", "1"]);
    let heavy = format!("{base}from=2026-01-02&to=2026-04-10&interval=hourly&group_by=channel&time_zone=UTC");
    let light = format!("{base}from=2026-02-01&to=2026-02-28&interval=monthly");
    for path in [&heavy, &heavy, &light, &light] {
        let r = get(&tight, path, &t);
        assert_eq!(r.0, 200, "{path}: {}", r.2);
    }
    let metrics = get(&tight, "/metrics", "").2;
    for (series, value) in [
        ("account_usage_result_cache_requests_total{result=\"miss\"}", 3.0),
        ("account_usage_result_cache_requests_total{result=\"hit\"}", 1.0),
        ("account_usage_cache_entries{cache=\"result\"}", 1.0),
    ] {
        assert_eq!(sample(&metrics, series), value, "{series}: {metrics}");
    }
    let held = sample(&metrics, "account_usage_cache_bytes{cache=\"result\"}");
    assert!(held > 0.0 && held <= f64::from(1 << 20), "{metrics}");

    // Before the first night has published anything: ready, and every
    // account is unknown (a 404 like any other, not a server error).
    let empty = TempDir::new("serve-empty");
    let server = Server::start(&empty.path().display().to_string(), &[]);
    let r = get(&server, "/v1/accounts/1/report?from=2026-02-01&to=2026-02-02", &t);
    assert_eq!(r.0, 404, "{}", r.2);
    assert_eq!(
        problem(&r)["detail"],
        "unknown account 1: it is not in the published data"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_carry_etags_and_a_rerun_changes_them_within_one_refresh() {
    let dir = TempDir::new("serve-cache");
    let warehouse = dir.path().join("wh").display().to_string();
    etags_and_reruns(&warehouse, &[], &[]).await;
}

/// The same on S3 (moto): there a part is confirmed by its object's ETag,
/// not by a file's metadata.
#[tokio::test(flavor = "multi_thread")]
async fn on_s3_answers_carry_etags_and_a_rerun_changes_them_within_one_refresh() {
    let moto = Moto::start("serve");
    etags_and_reruns("s3://serve/usage", &moto.options(), &moto.env()).await;
}

/// Answers equal the CLI's, a matching `If-None-Match` gets 304, and after a
/// rerun with a changed source the ETag, the numbers and the rollup answers
/// (through the decoded parts kept across requests) change within one
/// refresh interval.
async fn etags_and_reruns(warehouse: &str, options: &[(&'static str, String)], env: &[(String, String)]) {
    let dir = TempDir::new("serve-cache-src");
    let db = dir.path().join("source.db");
    let source = format!("sqlite://{}", db.display());
    common::run_ok(&[
        "seed",
        "--source",
        &source,
        "--accounts",
        "2",
        "--days",
        "3",
        "--start",
        "2026-05-01",
        "--messages-per-day",
        "600",
        "--seed",
        "3",
    ]);
    let run = || {
        common::run_ok_env(
            &[
                "run",
                "--source",
                &source,
                "--warehouse",
                warehouse,
                "--from",
                "2026-05-01",
                "--to",
                "2026-05-03",
            ],
            env,
        )
    };
    run();
    let server = Server::start_env(warehouse, &["--refresh-interval", "1s"], env);
    // Without the result cache, rollup answers come through the decoded
    // parts kept across requests: a rewritten part must be read again.
    let uncached = Server::start_env(warehouse, &["--refresh-interval", "1s", "--result-cache", "0"], env);
    let t = token("1");
    // The account's own zone (Asia/Kathmandu) and whole days: rollups answer.
    let rollup_question =
        "/v1/accounts/1/report?from=2026-05-02&to=2026-05-02&interval=daily&metric=proactive_messages";
    let answer = |server: &Server| {
        let r = get(server, rollup_question, &t);
        assert_eq!(r.0, 200, "{}", r.2);
        json(&r)
    };
    let from_rollups = |server: &Server| {
        let body = answer(server);
        assert_eq!(body["answered_from"], "rollups");
        body
    };
    let cli_answer = || -> Value {
        let out = common::run_ok_env(
            &[
                "report",
                "--warehouse",
                warehouse,
                "--account",
                "1",
                "--from",
                "2026-05-02",
                "--to",
                "2026-05-02",
                "--interval",
                "daily",
                "--metric",
                "proactive_messages",
                "--format",
                "json",
            ],
            env,
        );
        serde_json::from_str(&out).unwrap()
    };
    let rollups_before = from_rollups(&uncached);
    assert_eq!(from_rollups(&uncached), rollups_before, "a part read twice");
    assert_eq!(rollups_before, cli_answer());
    let path = "/v1/accounts/1/report?from=2026-05-02&to=2026-05-02&time_zone=UTC&metric=proactive_messages";
    let first = get(&server, path, &t);
    assert_eq!(first.0, 200);
    let etag = header(&first, "etag").unwrap().to_string();
    assert!(etag.starts_with("W/\""), "{etag}");
    assert_eq!(header(&first, "cache-control"), Some("private, no-cache"));
    let auth = format!("Bearer {t}");
    let revalidate = |tag: &str| {
        ureq_like_get(
            &format!("{}{path}", server.base),
            &[("Authorization", &auth), ("If-None-Match", tag)],
        )
        .unwrap()
    };
    let same = revalidate(&etag);
    assert_eq!(same.0, 304);
    assert!(same.2.is_empty());
    assert_eq!(header(&same, "etag"), Some(etag.as_str()));
    // A list of tags matches if one does; `*` matches any current answer.
    assert_eq!(revalidate(&format!("W/\"0\", {etag}")).0, 304);
    assert_eq!(revalidate("*").0, 304);
    assert_eq!(revalidate("W/\"0\"").0, 200);
    // Another question has another tag.
    let other = get(&server, &path.replace("05-02&to", "05-01&to"), &t);
    assert_ne!(header(&other, "etag"), Some(etag.as_str()));
    // So has the same question as CSV (asked by Accept, on the same URL):
    // the JSON's tag does not revalidate it.
    let csv = ureq_like_get(
        &format!("{}{path}", server.base),
        &[
            ("Authorization", &auth),
            ("Accept", "text/csv"),
            ("If-None-Match", &etag),
        ],
    )
    .unwrap();
    assert_eq!(csv.0, 200);
    assert!(header(&csv, "content-type").is_some_and(|c| c.starts_with("text/csv")));
    assert_ne!(header(&csv, "etag"), Some(etag.as_str()));
    // Accept is weighed: q=0 refuses CSV, so the JSON (and its tag) answer.
    let refused = ureq_like_get(
        &format!("{}{path}", server.base),
        &[
            ("Authorization", &auth),
            ("Accept", "text/csv;q=0, application/json"),
            ("If-None-Match", &etag),
        ],
    )
    .unwrap();
    assert_eq!(refused.0, 304, "{}", refused.2);

    // More proactive messages on 2026-05-02, then a rerun of that day.
    let conn = format!(
        "INSERT INTO messages (id, account_id, conversation_id, channel_id, contact_id, agent_id, direction, sender_type, sent_at, created_at) \
         SELECT 900000000 + id, account_id, conversation_id, channel_id, contact_id, NULL, 'outbound', 'proactive_api', sent_at, created_at \
         FROM messages WHERE account_id = 1 AND sent_at >= {lo} AND sent_at < {hi} LIMIT 25;",
        lo = 1_777_680_000_000_000i64,
        hi = 1_777_766_400_000_000i64
    );
    crate::run::Src::Lite(source.clone()).exec(&conn).await;
    run();
    let changed_at = Instant::now();
    let fresh = loop {
        let r = revalidate(&etag);
        if r.0 == 200 {
            break r;
        }
        assert!(
            changed_at.elapsed() < Duration::from_secs(3),
            "the ETag did not change within a refresh"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_ne!(header(&fresh, "etag"), Some(etag.as_str()));
    let before = json(&first)["totals"].as_array().unwrap().last().unwrap()["value"]
        .as_u64()
        .unwrap();
    let after = json(&fresh)["totals"].as_array().unwrap().last().unwrap()["value"]
        .as_u64()
        .unwrap();
    assert_eq!(after, before + 25, "the numbers changed with the ETag");

    let expected = cli_answer();
    assert_ne!(expected, rollups_before);
    // A snapshot loaded while the rerun refreshed rollups answers from the
    // base grain until the next refresh; then rollups answer, read again.
    let changed_at = Instant::now();
    loop {
        let body = answer(&uncached);
        if body["answered_from"] == "rollups" && body == expected {
            break;
        }
        assert!(
            changed_at.elapsed() < Duration::from_secs(3),
            "rollup answers kept the parts decoded before the rerun: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A refresh that starts changes no index, only the markers: its days
    // are answered from the base grain within a refresh all the same, and
    // from rollups again once it ends.
    let store = wh::open(warehouse, options);
    let marker = DirtyMarkerKey {
        shard: ShardSpec::WHOLE,
        run_id: RunId::new(chrono::Utc::now(), 7),
    }
    .relative();
    store.put(&marker, "[\"2026-05-02\"]".into()).await.unwrap();
    let answered_from_within_a_refresh = |from: &str| {
        let changed_at = Instant::now();
        loop {
            let body = answer(&uncached);
            if body["answered_from"] == from {
                assert_eq!(body["totals"], expected["totals"]);
                break;
            }
            assert!(
                changed_at.elapsed() < Duration::from_secs(3),
                "still answered from {} after the markers changed",
                body["answered_from"]
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    answered_from_within_a_refresh("base_grain");
    store.delete(&marker).await.unwrap();
    answered_from_within_a_refresh("rollups");
}

/// A refresh that finds the index and markers unchanged reads nothing else:
/// with the latest day's dimension files gone, refreshes neither fail nor
/// change what is served.
#[tokio::test(flavor = "multi_thread")]
async fn an_unchanged_warehouse_is_refreshed_from_its_index_alone() {
    let dir = TempDir::new("serve-unchanged");
    let source = crate::run::Src::sqlite(&dir);
    source.seed("2", "300");
    let warehouse = dir.path().join("wh");
    let wh = warehouse.display().to_string();
    common::run_ok(&[
        "run",
        "--source",
        source.url(),
        "--warehouse",
        &wh,
        "--date",
        "2026-03-06",
    ]);
    let server = Server::start(&wh, &["--refresh-interval", "500ms"]);
    let t = token("1");
    let before = get(&server, "/v1/accounts/1/channels", &t);
    assert_eq!(before.0, 200, "{}", before.2);
    std::fs::rename(warehouse.join("channels"), dir.path().join("channels-away")).unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    let metrics = ureq_like_get(&format!("{}/metrics", server.base), &[]).unwrap();
    assert!(
        metrics.2.contains("account_usage_snapshot_refresh_failures_total 0\n"),
        "{}",
        metrics.2
    );
    assert_eq!(get(&server, "/v1/accounts/1/channels", &t).2, before.2);

    // An index that cannot be read fails the refreshes, which are counted;
    // the snapshot already loaded goes on answering.
    std::fs::write(warehouse.join("_index/s0of1.json"), b"{ not json").unwrap();
    let started = std::time::Instant::now();
    loop {
        let metrics = get(&server, "/metrics", "").2;
        if sample(&metrics, "account_usage_snapshot_refresh_failures_total") >= 1.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no refresh failure counted: {metrics}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(&server, "/v1/accounts/1/channels", &t).2, before.2);
    assert_eq!(get(&server, "/readyz", "").0, 200);
}

#[test]
fn serve_refuses_to_start_without_a_way_to_check_tokens() {
    let dir = TempDir::new("serve-refuse");
    let wh = dir.path().display().to_string();
    for (args, expect) in [
        (
            vec!["serve", "--warehouse", &wh],
            "serve needs --jwt-secret-file or ACCOUNT_USAGE_JWT_SECRET",
        ),
        (
            vec!["serve", "--warehouse", &wh, "--no-auth", "--listen", "0.0.0.0:0"],
            "--no-auth is for local use only",
        ),
        (vec!["token", "--account", "1"], "token needs --jwt-secret-file"),
        (
            vec!["token", "--account", "one", "--jwt-secret-file", "/dev/null"],
            "--account: expected an account id or *",
        ),
        (
            vec!["token", "--account", "1", "--jwt-secret-file", "/no/such/secret"],
            "--jwt-secret-file /no/such/secret: cannot read it: No such file or directory",
        ),
    ] {
        // Bounded: a serve that started after all would never exit.
        let child = Command::new(env!("CARGO_BIN_EXE_account-usage"))
            .args(&args)
            .env_remove("ACCOUNT_USAGE_JWT_SECRET")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (code, stderr, _) = common::wait_bounded(child, Duration::from_secs(30));
        assert_eq!(code, Some(2), "{args:?}");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
    let short = dir.path().join("short");
    std::fs::write(&short, "tiny\n").unwrap();
    let out = common::run_bin(&[
        "serve",
        "--warehouse",
        &wh,
        "--jwt-secret-file",
        short.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "--jwt-secret-file {}: the JWT secret is 4 bytes; at least 32",
            short.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("tiny"), "the secret is never printed: {stderr}");
}

/// The value of one series in a Prometheus text exposition; 0 when absent
/// (a counter not yet incremented has no sample).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap_or_else(|e| panic!("{series} {v}: {e}")))
}

#[tokio::test(flavor = "multi_thread")]
async fn conventions_probes_metrics_and_a_clean_sigterm() {
    let world = world().await;
    let mut server = Server::start(&world.warehouse, &["--cors-origin", "https://app.example.com"]);
    let t = token("1");
    let path = "/v1/accounts/1/report?from=2026-02-01&to=2026-02-28";
    let auth = format!("Bearer {t}");
    let url = format!("{}{path}", server.base);
    // Compressed answers decode to the plain one, computed and then cached
    // (the cached answer keeps its compressed bodies); what was compressed
    // says so in `Vary`.
    let plain = request_bytes("GET", &url, &[("Authorization", &auth)]).unwrap();
    assert_eq!(plain.0, 200);
    for (accept, coding) in [("gzip", "gzip"), ("br", "br"), ("gzip, deflate, br, zstd", "br")] {
        for turn in ["computed", "cached"] {
            let r = request_bytes("GET", &url, &[("Authorization", &auth), ("Accept-Encoding", accept)]).unwrap();
            let headers = (r.0, r.1.clone(), String::new());
            assert_eq!(header(&headers, "content-encoding"), Some(coding), "{accept}, {turn}");
            assert!(
                header(&headers, "vary").is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding")),
                "{:?}",
                r.1
            );
            let mut decoded = Vec::new();
            match coding {
                "gzip" => flate2::read::GzDecoder::new(&r.2[..]).read_to_end(&mut decoded),
                _ => brotli::Decompressor::new(&r.2[..], 4096).read_to_end(&mut decoded),
            }
            .unwrap();
            assert_eq!(decoded, plain.2, "{accept}, {turn}");
        }
    }
    let csv_gz = request_bytes(
        "GET",
        &format!("{url}&format=csv"),
        &[("Authorization", &auth), ("Accept-Encoding", "gzip")],
    )
    .unwrap();
    let mut csv = String::new();
    flate2::read::GzDecoder::new(&csv_gz.2[..])
        .read_to_string(&mut csv)
        .unwrap();
    assert!(csv.starts_with("metric,bucket_start,group,value\n"), "{csv}");
    let allowed = ureq_like_get(&url, &[("Authorization", &auth), ("Origin", "https://app.example.com")]).unwrap();
    assert_eq!(
        header(&allowed, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    let other = ureq_like_get(&url, &[("Authorization", &auth), ("Origin", "https://evil.example")]).unwrap();
    assert_eq!(header(&other, "access-control-allow-origin"), None);
    assert!(header(&other, "x-request-id").is_some());
    // A page on the allowed origin sends its token, so its browser asks first.
    let preflight = request(
        "OPTIONS",
        &url,
        &[
            ("Origin", "https://app.example.com"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "authorization"),
        ],
    )
    .unwrap();
    assert!(matches!(preflight.0, 200 | 204), "{preflight:?}");
    assert_eq!(
        header(&preflight, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(
        header(&preflight, "access-control-allow-headers")
            .is_some_and(|h| h.to_ascii_lowercase().contains("authorization")),
        "{preflight:?}"
    );
    // HEAD is GET without the body.
    let head = request("HEAD", &url, &[("Authorization", &auth)]).unwrap();
    assert_eq!(head.0, 200, "{head:?}");
    assert!(head.2.is_empty());
    assert_eq!(header(&head, "etag"), header(&allowed, "etag"));
    let ids: BTreeSet<String> = (0..3)
        .map(|_| header(&get(&server, "/livez", ""), "x-request-id").unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3, "each response has its own request id");

    // Each counter moves by what each request did: an answer asked again
    // is a cache hit, a new question a miss and a computed answer, a
    // matching tag a 304; every one of them is timed.
    let before = get(&server, "/metrics", "").2;
    let cached = get(&server, path, &t);
    assert_eq!(cached.0, 200);
    let new_question = get(&server, &format!("{path}&interval=weekly"), &t);
    assert_eq!(new_question.0, 200, "{}", new_question.2);
    let etag = header(&cached, "etag").unwrap().to_string();
    let not_modified = request("GET", &url, &[("Authorization", &auth), ("If-None-Match", &etag)]).unwrap();
    assert_eq!(not_modified.0, 304);
    let metrics = get(&server, "/metrics", "").2;
    let report = "route=\"/v1/accounts/{account}/report\"";
    for (series, moved) in [
        (
            "account_usage_result_cache_requests_total{result=\"hit\"}".to_string(),
            1.0,
        ),
        ("account_usage_result_cache_requests_total{result=\"miss\"}".into(), 1.0),
        ("account_usage_not_modified_total".into(), 1.0),
        (
            format!("account_usage_http_requests_total{{{report},status=\"200\"}}"),
            2.0,
        ),
        (
            format!("account_usage_http_requests_total{{{report},status=\"304\"}}"),
            1.0,
        ),
        (
            format!("account_usage_http_request_duration_seconds_count{{{report}}}"),
            3.0,
        ),
        (
            format!("account_usage_http_request_duration_seconds_bucket{{{report},le=\"+Inf\"}}"),
            3.0,
        ),
    ] {
        assert_eq!(
            sample(&metrics, &series) - sample(&before, &series),
            moved,
            "{series}: {metrics}"
        );
    }
    let answers = |text: &str| {
        sample(text, "account_usage_report_answers_total{answered_from=\"rollups\"}")
            + sample(text, "account_usage_report_answers_total{answered_from=\"base_grain\"}")
    };
    assert_eq!(answers(&metrics) - answers(&before), 1.0, "{metrics}");
    let took = format!("account_usage_http_request_duration_seconds_sum{{{report}}}");
    assert!(sample(&metrics, &took) > sample(&before, &took), "{metrics}");
    assert!(
        metrics.contains("route=\"/v1/accounts/{account}/report\",status=\"200\""),
        "{metrics}"
    );
    assert!(!metrics.contains("/v1/accounts/1/"), "raw paths never become labels");
    assert!(
        metrics.contains("account_usage_result_cache_requests_total{result=\"hit\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("account_usage_report_answers_total{answered_from=\"rollups\"}"));
    assert!(metrics.contains("account_usage_snapshot_age_seconds "));
    // The caches' sizes, by the defaults every cache on; the result cache
    // holds at least the answer just served from it.
    let results_held = sample(&metrics, "account_usage_cache_entries{cache=\"result\"}");
    assert!(
        results_held >= 1.0,
        "no result cache gauge, or an empty cache: {metrics}"
    );
    common::promtool_check_metrics(&metrics);
    for cache in ["result", "rollup_parts", "base_grain"] {
        assert!(
            metrics.contains(&format!("account_usage_cache_bytes{{cache=\"{cache}\"}} ")),
            "{metrics}"
        );
    }
    assert_eq!(get(&server, "/livez", "").0, 200);
    assert_eq!(get(&server, "/readyz", "").0, 200);
    let openapi: Value = serde_json::from_str(&get(&server, "/openapi.json", "").2).unwrap();
    assert_eq!(openapi["openapi"], "3.1.0");

    // SIGTERM: exit 0, promptly.
    let started = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &server.pid().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(server.wait(Duration::from_secs(12)), Some(0));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_5xx_and_every_response_conforms() {
    let world = world().await;
    let server = Server::start(&world.warehouse, &[]);
    let schemathesis = format!("{}/.venv/bin/schemathesis", env!("CARGO_MANIFEST_DIR"));
    assert!(
        std::path::Path::new(&schemathesis).exists(),
        "schemathesis is missing: scripts/test.sh installs it into .venv"
    );
    let auth = format!("Authorization: Bearer {}", token("*"));
    let out = Command::new(&schemathesis)
        .args(["run", &format!("{}/openapi.json", server.base), "--header", &auth])
        .args(["--max-examples", "150", "--seed", "1", "--no-color"])
        // Every conformance check; positive_data_acceptance is left out on
        // purpose: a schema-valid range over unpublished days is a 422 by
        // contract, not a rejection of valid data.
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,ignored_auth",
        ])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("No issues found"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_draws_what_the_api_answers() {
    let world = world().await;
    let server = Server::start(&world.warehouse, &[]);
    let dir = format!("{}/tests/browser", env!("CARGO_MANIFEST_DIR"));
    assert!(
        std::path::Path::new(&format!("{dir}/node_modules/playwright-core")).exists(),
        "playwright-core is missing: scripts/test.sh installs it (npm ci in tests/browser)"
    );
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "chromium is missing: apt-get install chromium"
    );
    let screenshot = format!("{}/page.png", env!("CARGO_TARGET_TMPDIR"));
    let out = Command::new("node")
        // Account 1 keeps its books in Kathmandu, 3 in New York.
        .args([
            &format!("{dir}/page.mjs"),
            &server.base,
            &token("1"),
            &screenshot,
            &token("3"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the page test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(result["charts_checked"].as_u64().unwrap() >= 15, "{result}");
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
}

#[test]
fn demo_serve_prints_a_page_url_whose_token_reads_the_api() {
    use std::io::{BufRead, BufReader};
    let dir = TempDir::new("demo-serve");
    let listen = format!("127.0.0.1:{}", common::free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_account-usage"))
        .args([
            "demo",
            "--dir",
            dir.path().to_str().unwrap(),
            "--messages-per-day",
            "300",
            "--days",
            "35",
        ])
        .args(["--serve", "--listen", &listen])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let url = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.trim()
                .strip_prefix(&format!("http://{listen}/embed#token="))
                .map(str::to_string)
        })
        .expect("demo --serve prints the page's URL");
    let base = format!("http://{listen}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ureq_like_get(&format!("{base}/readyz"), &[]).is_ok_and(|r| r.0 == 200) {
        assert!(Instant::now() < deadline, "demo --serve never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let page = ureq_like_get(&format!("{base}/embed"), &[]).unwrap();
    assert_eq!(page.0, 200);
    assert!(page.2.contains("Chart.js v4"));
    let auth = format!("Bearer {url}");
    let account = ureq_like_get(&format!("{base}/v1/accounts/1"), &[("Authorization", &auth)]).unwrap();
    assert_eq!(account.0, 200, "{}", account.2);
    assert_eq!(
        ureq_like_get(&format!("{base}/v1/accounts/2"), &[("Authorization", &auth)])
            .unwrap()
            .0,
        404
    );
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
