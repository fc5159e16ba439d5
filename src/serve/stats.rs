//! The service's own Prometheus metrics, rendered as text for `/metrics`.
//!
//! - Labels are bounded: a route is the matched route template (never the
//!   raw path, which carries account ids), a status is its number.
//! - Counters only go up; the snapshot's age and the caches' sizes are
//!   read when scraped.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Upper bounds (seconds) of the latency histogram's buckets.
const LATENCY_BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default)]
struct RouteStats {
    requests: BTreeMap<u16, u64>,
    latency: Histogram,
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; LATENCY_BOUNDS.len()],
    count: u64,
    sum: f64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What one of the server's bounded caches holds when scraped.
#[derive(Debug, Clone, Copy)]
pub struct CacheUsage {
    /// The `cache` label: `result`, `rollup_parts` or `base_grain`.
    pub name: &'static str,
    pub entries: usize,
    /// Estimated bytes held (the weight the cache evicts by); `None` for a
    /// cache bounded by its number of entries.
    pub bytes: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Stats {
    /// By route: requests by status, and the latency histogram. One lock,
    /// and a route's name is allocated once, when first seen.
    routes: Mutex<BTreeMap<String, RouteStats>>,
    from_rollups: AtomicU64,
    from_base_grain: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    not_modified: AtomicU64,
    refresh_failures: AtomicU64,
    /// When the current snapshot was loaded (for its age).
    loaded_at: Mutex<Option<Instant>>,
}

impl Stats {
    pub fn record(&self, route: &str, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let mut routes = lock(&self.routes);
        if !routes.contains_key(route) {
            routes.insert(route.to_string(), RouteStats::default());
        }
        let stats = routes.get_mut(route).expect("inserted above");
        *stats.requests.entry(status).or_insert(0) += 1;
        let h = &mut stats.latency;
        for (i, bound) in LATENCY_BOUNDS.iter().enumerate() {
            if seconds <= *bound {
                h.buckets[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    pub fn answered(&self, from_rollups: bool) {
        let counter = if from_rollups {
            &self.from_rollups
        } else {
            &self.from_base_grain
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn cache(&self, hit: bool) {
        let counter = if hit { &self.cache_hits } else { &self.cache_misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn not_modified(&self) {
        self.not_modified.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refresh_failed(&self) {
        self.refresh_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot_loaded(&self) {
        *lock(&self.loaded_at) = Some(Instant::now());
    }

    /// The Prometheus text exposition format, with the caches' sizes as
    /// gauges.
    pub fn render(&self, caches: &[CacheUsage]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP account_usage_http_requests_total HTTP requests by matched route and status."
        );
        let _ = writeln!(out, "# TYPE account_usage_http_requests_total counter");
        let routes = lock(&self.routes);
        for (route, stats) in routes.iter() {
            for (status, n) in &stats.requests {
                let _ = writeln!(
                    out,
                    "account_usage_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP account_usage_http_request_duration_seconds Time to answer, by matched route."
        );
        let _ = writeln!(out, "# TYPE account_usage_http_request_duration_seconds histogram");
        for (route, h) in routes.iter().map(|(route, stats)| (route, &stats.latency)) {
            for (bound, n) in LATENCY_BOUNDS.iter().zip(h.buckets) {
                let _ = writeln!(
                    out,
                    "account_usage_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "account_usage_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "account_usage_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "account_usage_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        drop(routes);
        let counter = |out: &mut String, name: &str, help: &str, samples: &[(&str, u64)]| {
            family(out, name, "counter", help, samples);
        };
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        counter(
            &mut out,
            "account_usage_report_answers_total",
            "Computed report answers by where they came from.",
            &[
                ("{answered_from=\"rollups\"}", load(&self.from_rollups)),
                ("{answered_from=\"base_grain\"}", load(&self.from_base_grain)),
            ],
        );
        counter(
            &mut out,
            "account_usage_result_cache_requests_total",
            "Report requests by whether the result cache had the answer.",
            &[
                ("{result=\"hit\"}", load(&self.cache_hits)),
                ("{result=\"miss\"}", load(&self.cache_misses)),
            ],
        );
        counter(
            &mut out,
            "account_usage_not_modified_total",
            "Requests answered 304 from a matching If-None-Match.",
            &[("", load(&self.not_modified))],
        );
        counter(
            &mut out,
            "account_usage_snapshot_refresh_failures_total",
            "Snapshot refreshes that failed (the previous snapshot stays).",
            &[("", load(&self.refresh_failures))],
        );
        let _ = writeln!(
            out,
            "# HELP account_usage_snapshot_age_seconds Seconds since the served snapshot was loaded."
        );
        let _ = writeln!(out, "# TYPE account_usage_snapshot_age_seconds gauge");
        if let Some(at) = *lock(&self.loaded_at) {
            let _ = writeln!(out, "account_usage_snapshot_age_seconds {}", at.elapsed().as_secs_f64());
        }
        let by_cache = |value: fn(&CacheUsage) -> Option<u64>| -> Vec<(String, u64)> {
            caches
                .iter()
                .filter_map(|c| Some((format!("{{cache=\"{}\"}}", c.name), value(c)?)))
                .collect()
        };
        family(
            &mut out,
            "account_usage_cache_entries",
            "gauge",
            "Entries held by each enabled cache.",
            &by_cache(|c| Some(c.entries as u64)),
        );
        family(
            &mut out,
            "account_usage_cache_bytes",
            "gauge",
            "Estimated bytes held by each cache bounded in bytes.",
            &by_cache(|c| c.bytes),
        );
        out
    }
}

/// One metric family: its help, its type and a sample per label set
/// (labels already in braces, or empty).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(impl AsRef<str>, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{} {v}", labels.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let s = Stats::default();
        s.record("/v1/accounts/{account}/report", 200, Duration::from_micros(700));
        s.record("/v1/accounts/{account}/report", 200, Duration::from_millis(30));
        s.cache(true);
        s.answered(true);
        let text = s.render(&[
            CacheUsage {
                name: "result",
                entries: 3,
                bytes: None,
            },
            CacheUsage {
                name: "base_grain",
                entries: 2,
                bytes: Some(4096),
            },
        ]);
        assert!(
            text.contains(
                "account_usage_http_requests_total{route=\"/v1/accounts/{account}/report\",status=\"200\"} 2"
            )
        );
        assert!(text.contains("le=\"0.001\"} 1"), "{text}");
        assert!(text.contains("le=\"0.05\"} 2"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 2"));
        assert!(text.contains("account_usage_result_cache_requests_total{result=\"hit\"} 1"));
        assert!(text.contains("account_usage_report_answers_total{answered_from=\"rollups\"} 1"));
        assert!(
            text.contains("account_usage_cache_entries{cache=\"result\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("account_usage_cache_entries{cache=\"base_grain\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("account_usage_cache_bytes{cache=\"base_grain\"} 4096"),
            "{text}"
        );
        assert!(!text.contains("account_usage_cache_bytes{cache=\"result\"}"), "{text}");
    }

    /// A bucket's bound is inclusive (`le`), and the sum is the seconds
    /// taken, so that a rate of sum over count is the mean latency.
    #[test]
    fn a_latency_on_a_bound_falls_in_its_bucket_and_the_sum_adds_up() {
        let s = Stats::default();
        s.record("/x", 200, Duration::from_millis(250));
        s.record("/x", 500, Duration::from_millis(500));
        let text = s.render(&[]);
        for line in [
            "account_usage_http_request_duration_seconds_bucket{route=\"/x\",le=\"0.1\"} 0",
            "account_usage_http_request_duration_seconds_bucket{route=\"/x\",le=\"0.25\"} 1",
            "account_usage_http_request_duration_seconds_bucket{route=\"/x\",le=\"0.5\"} 2",
            "account_usage_http_request_duration_seconds_sum{route=\"/x\"} 0.75",
            "account_usage_http_request_duration_seconds_count{route=\"/x\"} 2",
            "account_usage_http_requests_total{route=\"/x\",status=\"500\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}: {text}");
        }
    }
}
