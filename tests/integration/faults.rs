//! A flaky object store: a seeded fault-injecting HTTP proxy on loopback in
//! front of moto. Runs through it end byte-for-byte like a clean run or with
//! exit 1 and every day's previous version readable; reports through it give
//! the right numbers or a clear error. Never wrong numbers, never half a day.
//!
//! Each test prints its seed; `ACCOUNT_USAGE_TEST_SEED=N` replays one.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use account_usage::seed::rng::Rng;

use crate::common::{self, Moto, TempDir};
use crate::run::Src;
use crate::wh;

const FROM: &str = "2026-03-06";
const TO: &str = "2026-03-09";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    SlowDown,
    Internal,
    ResetMidBody,
    Stall,
    DropResponse,
}

/// The proxy: every request on its own connection; `share` of them faulty.
pub struct FaultProxy {
    pub endpoint: String,
    stop: Arc<AtomicBool>,
    pub requests: Arc<AtomicU64>,
    pub faults: Arc<AtomicU64>,
}

impl FaultProxy {
    pub fn start(upstream: &str, seed: u64, share_percent: i64) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.strip_prefix("http://").unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let (requests, faults) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let rng = Arc::new(Mutex::new(Rng::new(seed)));
        listener.set_nonblocking(true).unwrap();
        {
            let (stop, requests, faults) = (stop.clone(), requests.clone(), faults.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            requests.fetch_add(1, Ordering::Relaxed);
                            let fault = {
                                let mut rng = rng.lock().unwrap();
                                (rng.range(0, 100) < share_percent).then(|| match rng.range(0, 5) {
                                    0 => Fault::SlowDown,
                                    1 => Fault::Internal,
                                    2 => Fault::ResetMidBody,
                                    3 => Fault::Stall,
                                    _ => Fault::DropResponse,
                                })
                            };
                            if fault.is_some() {
                                faults.fetch_add(1, Ordering::Relaxed);
                            }
                            let upstream = upstream.clone();
                            std::thread::spawn(move || {
                                let _ = serve(client, &upstream, fault);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            });
        }
        FaultProxy {
            endpoint,
            stop,
            requests,
            faults,
        }
    }

    /// The AWS settings for the binary, pointing at this proxy.
    pub fn env(&self, moto: &Moto) -> Vec<(String, String)> {
        moto.env()
            .into_iter()
            .map(|(k, v)| {
                if k == "AWS_ENDPOINT" {
                    (k, self.endpoint.clone())
                } else {
                    (k, v)
                }
            })
            .collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads one HTTP/1.1 request (head and Content-Length body).
fn read_request(client: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = client.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf)
}

/// The request with `Connection: close`, so that one connection carries one request.
fn one_shot(request: &[u8]) -> Vec<u8> {
    let head_end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&request[..head_end - 4]);
    let mut out: Vec<u8> = Vec::new();
    for (i, line) in head.split("\r\n").enumerate() {
        if i > 0 && line.to_lowercase().starts_with("connection:") {
            continue;
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(&request[head_end..]);
    out
}

fn forward(request: &[u8], upstream: &str) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(&one_shot(request))?;
    let mut response = Vec::new();
    up.read_to_end(&mut response)?;
    Ok(response)
}

fn error_response(status: &str, code: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected</Message></Error>"
    );
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn serve(mut client: TcpStream, upstream: &str, fault: Option<Fault>) -> std::io::Result<()> {
    let request = read_request(&mut client)?;
    match fault {
        None => {
            let response = forward(&request, upstream)?;
            client.write_all(&response)?;
        }
        Some(Fault::SlowDown) => client.write_all(&error_response("503 Slow Down", "SlowDown"))?,
        Some(Fault::Internal) => client.write_all(&error_response("500 Internal Server Error", "InternalError"))?,
        Some(Fault::ResetMidBody) => {
            let response = forward(&request, upstream)?;
            // Half the response, then the connection ends: the body is cut
            // short of its Content-Length.
            client.write_all(&response[..response.len() / 2])?;
        }
        Some(Fault::Stall) => {
            std::thread::sleep(Duration::from_secs(2));
            let response = forward(&request, upstream)?;
            client.write_all(&response)?;
        }
        Some(Fault::DropResponse) => {
            // The request takes effect; its answer never arrives.
            let _ = forward(&request, upstream)?;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

/// A report's JSON without `answered_from`: a failed run's dirty marker sends
/// reports to the base grain, which must give the same numbers.
fn numbers(json: &[u8]) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(json).unwrap();
    v.as_object_mut().unwrap().remove("answered_from");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_and_reports_through_a_flaky_store_give_the_right_numbers_or_exit_1() {
    let dir = TempDir::new("faults");
    let src = Src::sqlite(&dir);
    src.seed("5", "2000");
    let moto = Moto::start("flaky");
    let warehouse = "s3://flaky/usage";
    let run_args = |shard: &'static str| -> Vec<String> {
        [
            "run",
            "--source",
            src.url(),
            "--warehouse",
            warehouse,
            "--from",
            FROM,
            "--to",
            TO,
            "--shard-count",
            "2",
            "--shard-index",
            shard,
            // Several times the proxy's 2-second stalls, so renewals outlast them.
            "--lease-ttl",
            "10s",
            "--store-request-timeout",
            "5s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |args: &[String], env: &[(String, String)]| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        common::run_bin_env(&refs, env)
    };
    // The clean version every later state is compared with.
    for shard in ["0", "1"] {
        let out = run(&run_args(shard), &moto.env());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let wh = wh::open(warehouse, &moto.options());
    let days = wh::days(FROM, TO);
    let tables = wh::snapshot(&wh, &days).await;
    let rollups = wh::rollup_snapshot(&wh).await;
    let report_args = common::two_day_report(
        warehouse,
        &["resolved_conversations", "active_agents"],
        &["--store-request-timeout", "5s"],
    );
    let report_args: Vec<&str> = report_args.iter().map(String::as_str).collect();
    let clean_report = common::run_ok_env(&report_args, &moto.env());

    let seed = common::test_seed(20261201);
    let (mut completed, mut failed) = (0, 0);
    for round in 0..3u64 {
        let proxy = FaultProxy::start(&moto.endpoint, seed + round, 12);
        let env = proxy.env(&moto);
        for shard in ["0", "1"] {
            let out = run(&run_args(shard), &env);
            let stderr = String::from_utf8_lossy(&out.stderr);
            match out.status.code() {
                Some(0) => completed += 1,
                Some(1) => {
                    failed += 1;
                    eprintln!(
                        "seed {}: shard {shard}: {}",
                        seed + round,
                        stderr.lines().last().unwrap_or("")
                    );
                    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
                    assert_eq!(errors.len(), 1, "seed {}: {stderr}", seed + round);
                }
                other => panic!("seed {}: exit {other:?}: {stderr}", seed + round),
            }
            // Whatever happened, every day reads whole and as before.
            assert_eq!(
                wh::snapshot(&wh, &days).await,
                tables,
                "seed {}: tables changed",
                seed + round
            );
        }
        for _ in 0..4 {
            let out = common::run_bin_env(&report_args, &env);
            match out.status.code() {
                Some(0) => assert_eq!(
                    numbers(&out.stdout),
                    numbers(clean_report.as_bytes()),
                    "seed {}: other numbers",
                    seed + round
                ),
                Some(1) => {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    assert_eq!(
                        stderr.lines().filter(|l| l.starts_with("error:")).count(),
                        1,
                        "{stderr}"
                    );
                }
                other => panic!("seed {}: report exit {other:?}", seed + round),
            }
        }
        let (requests, faults) = (
            proxy.requests.load(Ordering::Relaxed),
            proxy.faults.load(Ordering::Relaxed),
        );
        eprintln!("seed {}: {faults} of {requests} requests faulty", seed + round);
        assert!(
            requests > 50 && faults * 100 >= requests * 8,
            "too few faults: {faults} of {requests}"
        );
    }
    eprintln!("runs through the proxy: {completed} completed, {failed} failed with exit 1");

    // A rerun without faults repairs everything a failed run left.
    for shard in ["0", "1"] {
        let out = run(&run_args(shard), &moto.env());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(wh::snapshot(&wh, &days).await, tables);
    assert_eq!(wh::rollup_snapshot(&wh).await, rollups);
    assert!(wh.list("_rollups/dirty").await.unwrap().is_empty());
}
