//! Shared test harness: a throwaway PostgreSQL cluster, one database per test,
//! and helpers to run the real `account-usage` binary.
//!
//! The cluster is started once per test binary (initdb + pg_ctl from PATH or
//! `/usr/lib/postgresql/*/bin`, on a free loopback port). As root it runs as
//! the `postgres` system user, since PostgreSQL refuses to run as root. A
//! reaper process stops it and deletes its directory when the test process
//! exits, however it exits. With `TEST_DATABASE_URL` set, that server is used
//! instead. A missing PostgreSQL is a failure that says what to install.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{Connection, PgConnection};

pub const BIN: &str = env!("CARGO_BIN_EXE_account-usage");

/// Admin URL (a superuser, database `postgres`) of the server the tests use.
pub struct PgServer {
    admin_url: String,
}

static SERVER: OnceLock<PgServer> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

pub fn server() -> &'static PgServer {
    SERVER.get_or_init(|| match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => PgServer { admin_url: url },
        _ => PgServer {
            admin_url: PgCluster::start().admin_url.clone(),
        },
    })
}

impl PgServer {
    /// The URL of a database of this server that nobody made.
    pub fn absent_database(&self, name: &str) -> String {
        let (server, _) = self.admin_url.rsplit_once('/').expect("a URL with a database");
        format!("{server}/{name}")
    }

    /// A fresh, empty database for one test; returns its URL.
    pub async fn new_database(&self, label: &str) -> String {
        new_database_on(&self.admin_url, label).await
    }
}

/// A fresh, empty database on the server of `admin_url`; returns its URL.
pub async fn new_database_on(admin_url: &str, label: &str) -> String {
    let name = format!(
        "t_{}_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed),
        label.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>()
    )
    .to_lowercase();
    let mut admin = PgConnection::connect(admin_url)
        .await
        .expect("connect to the test PostgreSQL server");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    with_database(admin_url, &name)
}

/// `url` with its database name replaced.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{base}/{db}{query}")
}

pub fn find_pg_bin(tool: &str) -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(tool);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(tool))
        .filter(|p| p.is_file())
        .collect();
    versions.sort_by_key(|p| {
        p.components()
            .nth(4)
            .and_then(|c| c.as_os_str().to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root.
fn pg_command(tool: &Path, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(tool);
        c
    } else {
        Command::new(tool)
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free loopback port")
}

/// A throwaway cluster of our own (the shared one is [`server`]), for tests
/// that stop, freeze or restart the server under a running job.
pub struct PgCluster {
    pub admin_url: String,
    pg_ctl: PathBuf,
    data: PathBuf,
    as_postgres: bool,
}

impl PgCluster {
    /// Starts a new cluster on a free loopback port. It is stopped and its
    /// files removed when the test process exits, however it exits.
    pub fn start() -> PgCluster {
        start_cluster()
    }

    /// The postmaster and every backend.
    pub fn pids(&self) -> Vec<u32> {
        let pid_file = std::fs::read_to_string(self.data.join("postmaster.pid")).expect("read postmaster.pid");
        let postmaster: u32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
        let children = Command::new("pgrep")
            .args(["-P", &postmaster.to_string()])
            .output()
            .expect("run pgrep");
        let mut pids = vec![postmaster];
        pids.extend(
            String::from_utf8_lossy(&children.stdout)
                .lines()
                .filter_map(|l| l.trim().parse::<u32>().ok()),
        );
        pids
    }

    /// Sends `signal` (e.g. "STOP", "CONT") to the postmaster and backends.
    pub fn signal_all(&self, signal: &str) {
        for pid in self.pids() {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), &pid.to_string()])
                .status();
        }
    }

    /// `pg_ctl stop -m immediate`: every connection is cut at once.
    pub fn stop_immediate(&self) {
        let out = pg_command(&self.pg_ctl, self.as_postgres)
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output()
            .expect("run pg_ctl stop");
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn start_cluster() -> PgCluster {
    let (Some(initdb), Some(pg_ctl)) = (find_pg_bin("initdb"), find_pg_bin("pg_ctl")) else {
        panic!(
            "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH or under \
             /usr/lib/postgresql/*/bin. Install the server (Debian/Ubuntu: `apt-get install postgresql`) \
             or set TEST_DATABASE_URL to a server the tests may create databases on."
        );
    };
    let as_postgres = is_root();
    let dir = std::env::temp_dir().join(format!("account-usage-pg-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).expect("create the cluster directory");
    if as_postgres {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .expect("run chown");
        assert!(status.success(), "chown of {} to postgres failed", dir.display());
    }
    let data = dir.join("data");
    let out = pg_command(&initdb, as_postgres)
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--locale=C",
        ])
        .output()
        .expect("run initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let port = free_port();
    let options = format!(
        "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off \
         -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
        dir.display()
    );
    let out = pg_command(&pg_ctl, as_postgres)
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("server.log"))
        .args(["-o", &options, "-w", "-t", "60", "start"])
        .stdin(Stdio::null())
        .output()
        .expect("run pg_ctl start");
    assert!(
        out.status.success(),
        "pg_ctl start failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
    );

    // The reaper outlives this process by a moment: when we are gone, it stops
    // the cluster and removes its files.
    let stop = format!(
        "{} {} -D {} -m immediate stop",
        if as_postgres { "runuser -u postgres --" } else { "" },
        pg_ctl.display(),
        data.display()
    );
    when_this_process_exits(&format!("{stop} >/dev/null 2>&1; rm -rf {}", dir.display()));

    PgCluster {
        admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        pg_ctl,
        data,
        as_postgres,
    }
}

/// Runs the shell command `cleanup` once this process has exited, however
/// it exits: a reaper that outlives us by a moment.
fn when_this_process_exits(cleanup: &str) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {cleanup}",
        pid = std::process::id()
    );
    // Never waited on: it must outlive us.
    #[allow(clippy::zombie_processes)]
    let _reaper = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn a reaper");
}

/// Runs the real binary with `args`, returning its output.
pub fn run_bin(args: &[&str]) -> Output {
    run_bin_env(args, &[])
}

/// Runs the binary and fails the test with its stderr unless it succeeds.
pub fn run_ok(args: &[&str]) -> String {
    run_ok_env(args, &[])
}

/// The seed of a randomized test (its data, queries, signal times or
/// faults): `default`, or `ACCOUNT_USAGE_TEST_SEED` to try others. It is
/// printed, so a failing test's output says how to run it again.
pub fn test_seed(default: u64) -> u64 {
    let seed = env_number("ACCOUNT_USAGE_TEST_SEED").unwrap_or(default);
    eprintln!("seed {seed} (replay with ACCOUNT_USAGE_TEST_SEED={seed})");
    seed
}

/// How many random queries a randomized test asks: `default`, or
/// `ACCOUNT_USAGE_TEST_CASES`.
pub fn test_cases(default: u64) -> u64 {
    env_number("ACCOUNT_USAGE_TEST_CASES").unwrap_or(default)
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok().filter(|v| !v.is_empty())?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a whole number")),
    )
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "account-usage-{label}-{}-{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    /// A directory for a fixture shared by the whole test process (held in
    /// a static, which is never dropped): removed once the process exits.
    pub fn for_process(label: &str) -> PathBuf {
        let dir = std::mem::ManuallyDrop::new(TempDir::new(label));
        when_this_process_exits(&format!("rm -rf {}", dir.path().display()));
        dir.0.clone()
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn with_database_replaces_only_the_name() {
    assert_eq!(with_database("postgres://u@h:1/postgres", "x"), "postgres://u@h:1/x");
    assert_eq!(
        with_database("postgres://u@h/postgres?sslmode=disable", "x"),
        "postgres://u@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
}

/// A moto S3 server on a free loopback port, with one bucket; stopped on drop.
pub struct Moto {
    pub endpoint: String,
    child: std::process::Child,
}

impl Moto {
    pub fn start(bucket: &str) -> Moto {
        let moto = Moto::start_with_env(&[]);
        moto.create_bucket(bucket);
        moto
    }

    /// A server with no bucket, started with extra environment (e.g.
    /// `INITIAL_NO_AUTH_ACTION_COUNT=0`, which makes it check credentials).
    pub fn start_with_env(env: &[(&str, &str)]) -> Moto {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto_server ({e}); install it with: pip install 'moto[server]'"));
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "moto_server did not start on port {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Moto { endpoint, child }
    }

    pub fn create_bucket(&self, bucket: &str) {
        let script = format!(
            "import boto3; boto3.client('s3', endpoint_url='{}', aws_access_key_id='test', \
             aws_secret_access_key='test', region_name='us-east-1').create_bucket(Bucket='{bucket}')",
            self.endpoint
        );
        let out = Command::new(python())
            .args(["-c", &script])
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "create bucket: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Store options (lower case) for opening the warehouse in-process.
    pub fn options(&self) -> Vec<(&'static str, String)> {
        vec![
            ("aws_endpoint", self.endpoint.clone()),
            ("aws_allow_http", "true".into()),
            ("aws_access_key_id", "test".into()),
            ("aws_secret_access_key", "test".into()),
            ("aws_region", "us-east-1".into()),
            ("aws_virtual_hosted_style_request", "false".into()),
        ]
    }

    /// The same settings as the standard AWS environment variables, for the binary.
    pub fn env(&self) -> Vec<(String, String)> {
        self.options().into_iter().map(|(k, v)| (k.to_uppercase(), v)).collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python that has duckdb: `ACCOUNT_USAGE_PYTHON`, else `.venv/bin/python`
/// in the repository (what `.ci/run` makes), else `python3`.
pub fn python() -> String {
    if let Ok(p) = std::env::var("ACCOUNT_USAGE_PYTHON") {
        return p;
    }
    let venv = format!("{}/.venv/bin/python", env!("CARGO_MANIFEST_DIR"));
    if Path::new(&venv).exists() {
        return venv;
    }
    "python3".into()
}

/// Runs a Python script (DuckDB lives in the venv) and parses what it prints as JSON.
pub fn python_json(script: &str) -> serde_json::Value {
    let out = std::process::Command::new(python())
        .args(["-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "DuckDB (Python package) failed; .ci/run installs it in .venv: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Runs the binary with extra environment variables (`RUST_LOG` among them
/// overrides the default `warn`).
pub fn run_bin_env(args: &[&str], env: &[(String, String)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    output_bounded(&mut cmd, RUN_LIMIT)
}

/// How long one run of the binary may take before its test fails: far above
/// the slowest run in the suite (a backfill in a debug build, two cores
/// shared with the other tests), far below CI's limit, so a regression that
/// makes a command wait or serve for ever fails one test instead of hanging
/// the suite.
pub const RUN_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

/// `cmd.output()` that fails the test when the command runs past `limit`.
fn output_bounded(cmd: &mut Command, limit: std::time::Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
    collect_bounded(child, limit).0
}

pub fn run_ok_env(args: &[&str], env: &[(String, String)]) -> String {
    let out = run_bin_env(args, env);
    assert!(
        out.status.success(),
        "account-usage {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// Waits for `child` up to `limit`; returns its exit code, stderr and how
/// long it took. A process that should exit but runs on fails the test
/// instead of hanging it.
pub fn wait_bounded(
    child: std::process::Child,
    limit: std::time::Duration,
) -> (Option<i32>, String, std::time::Duration) {
    let (out, took) = collect_bounded(child, limit);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        took,
    )
}

/// Waits for `child` up to `limit`, reading whichever of its stdout and
/// stderr are piped on threads of their own: a child that fills a pipe
/// while we only wait would otherwise block, and look hung. Kills the
/// child and fails the test, with what it wrote to stderr, when it runs
/// past `limit`.
fn collect_bounded(mut child: std::process::Child, limit: std::time::Duration) -> (Output, std::time::Duration) {
    fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    }
    let started = std::time::Instant::now();
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let exited = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let took = started.elapsed();
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let Some(status) = exited else {
        panic!(
            "account-usage did not exit within {limit:?}: {}",
            String::from_utf8_lossy(&stderr)
        );
    };
    (Output { status, stdout, stderr }, took)
}

/// Runs the binary and checks the bad-input contract: exit code 2, one line
/// on stderr, no password; returns that line.
pub fn assert_usage_error(args: &[&str]) -> String {
    let out = run_bin(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?} printed: {stderr}");
    assert!(!stderr.contains("pw@"), "password leaked: {stderr}");
    stderr
}

/// A real Prometheus Pushgateway (Debian's `prometheus-pushgateway`) on a
/// free loopback port, without persistence; stopped on drop.
pub struct Pushgateway {
    pub url: String,
    child: std::process::Child,
}

impl Pushgateway {
    pub fn start() -> Pushgateway {
        let port = free_port();
        let binary = ["prometheus-pushgateway", "pushgateway"]
            .into_iter()
            .find(|b| {
                Command::new(b)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok()
            })
            .expect("the Pushgateway is not installed (Debian: apt-get install prometheus-pushgateway)");
        let child = Command::new(binary)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the Pushgateway");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the Pushgateway did not start on port {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Pushgateway {
            url: format!("http://127.0.0.1:{port}"),
            child,
        }
    }

    /// The gateway's own /metrics: sample lines (no comments) whose labels
    /// include `job="account-usage"`, keyed by the whole series text.
    pub fn samples(&self) -> BTreeMap<String, f64> {
        let body = http_get(&format!("{}/metrics", self.url));
        body.lines()
            .filter(|l| !l.starts_with('#') && l.contains("job=\"account-usage\""))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_string(), value.parse().ok()?))
            })
            .collect()
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET on loopback; returns the body.
pub fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http:// URL");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = std::net::TcpStream::connect(host).expect("connect");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{head}"
    );
    body.to_string()
}

/// A copy of the tree `from` at `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Every file below `root`, recursively (a folder that vanishes meanwhile is skipped).
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files
}

/// `report --format json` of account 1 over the local dates 2026-03-07 and
/// 2026-03-08 (inside the seeded UTC days; unique monthly contacts would
/// need all of March), for `metrics`, with `extra` flags.
pub fn two_day_report(warehouse: &str, metrics: &[&str], extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "report",
        "--warehouse",
        warehouse,
        "--account",
        "1",
        "--from",
        "2026-03-07",
        "--to",
        "2026-03-08",
        "--format",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for m in metrics {
        args.extend(["--metric".to_string(), m.to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Checks a Prometheus text exposition with the real `promtool check
/// metrics` (Debian's `prometheus`): its format and naming rules.
pub fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is not installed (Debian: apt-get install prometheus)");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("writing to promtool");
    let out = child.wait_with_output().expect("running promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
