//! Progress of a run over many days: a bar on a terminal, otherwise one
//! structured log line per finished day with the same numbers.
//!
//! The fields of the per-day line are stable (the README lists them):
//! `days_done`, `days_total`, `day`, `late`, `messages`, `rejects`,
//! `messages_per_second`, `eta_seconds`, `elapsed_ms`.

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How a run shows its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A progress bar on stderr (a terminal, human-readable logs).
    Bar,
    /// One log line per finished day (pods, files, pipes).
    Log,
}

/// Counts for the progress line; pure, so its arithmetic is tested alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub messages_per_second: f64,
    /// `None` until a day is done.
    pub eta: Option<Duration>,
}

pub fn rates(done: usize, total: usize, messages: u64, elapsed: Duration) -> Rates {
    let secs = elapsed.as_secs_f64();
    Rates {
        messages_per_second: if secs > 0.0 { messages as f64 / secs } else { 0.0 },
        eta: (done > 0).then(|| elapsed.mul_f64(total.saturating_sub(done) as f64 / done as f64)),
    }
}

pub struct Progress {
    total: usize,
    done: usize,
    messages: u64,
    started: Instant,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(total: usize, mode: ProgressMode) -> Self {
        let bar = (mode == ProgressMode::Bar && total > 1).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} days  {msg}  eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Progress {
            total,
            done: 0,
            messages: 0,
            started: Instant::now(),
            bar,
        }
    }

    pub fn day_done(&mut self, day: NaiveDate, late: bool, messages: u64, rejects: u64, elapsed: Duration) {
        self.done += 1;
        self.messages += messages;
        let r = rates(self.done, self.total, self.messages, self.started.elapsed());
        let eta_seconds = r.eta.map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let messages_per_second = r.messages_per_second.round() as u64;
        match &self.bar {
            Some(bar) => {
                bar.set_position(self.done as u64);
                bar.set_message(format!("{day} done, {messages_per_second} messages/s"));
                tracing::debug!(days_done = self.done, days_total = self.total, %day, "Day published.");
            }
            None => tracing::info!(
                days_done = self.done,
                days_total = self.total,
                %day,
                late,
                messages,
                rejects,
                messages_per_second,
                eta_seconds = (eta_seconds * 10.0).round() / 10.0,
                elapsed_ms = elapsed.as_millis() as u64,
                "Day published."
            ),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_extrapolate_from_the_days_done() {
        let r = rates(2, 10, 1_000, Duration::from_secs(4));
        assert_eq!(r.messages_per_second, 250.0);
        assert_eq!(r.eta, Some(Duration::from_secs(16)));
        assert_eq!(rates(10, 10, 5, Duration::from_secs(1)).eta, Some(Duration::ZERO));
        let none = rates(0, 3, 0, Duration::ZERO);
        assert_eq!((none.messages_per_second, none.eta), (0.0, None));
    }
}
