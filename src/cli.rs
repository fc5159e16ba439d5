//! Command-line flags, parsed by clap and validated once into typed configs.
//!
//! Every flag has a doc comment (its `--help` text) and an environment
//! fallback. Anything wrong with the input becomes a [`UsageError`], which
//! `main` turns into a one-line message and exit code 2.

use chrono::{NaiveDate, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::seed::{SeedConfig, SeedParams};
use crate::source::SourceUrl;

/// Input the user can fix: a bad flag value or a bad combination of flags.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

const ROOT_EXAMPLES: &str = "\
Examples:
  # Fill a local SQLite file with 5 accounts and 30 days of synthetic data
  account-usage seed --source sqlite://demo/source.db --accounts 5 --days 30

  # The same into PostgreSQL, credentials from the environment
  PGPASSWORD=… account-usage seed --source postgres://app@localhost/ops

Logging: RUST_LOG sets the level (default: info); logs go to stderr.
Exit codes: 0 success, 1 runtime failure, 2 bad input.";

/// Account usage: the nightly ETL job and report engine behind the Account
/// usage report (unique monthly contacts, resolved conversations, active
/// agents, channels and proactive messages).
#[derive(Debug, Parser)]
#[command(name = "account-usage", version, after_help = ROOT_EXAMPLES)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, env = "ACCOUNT_USAGE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fill an operational database with realistic synthetic data.
    Seed(SeedArgs),
}

const SEED_EXAMPLES: &str = "\
Examples:
  # A small SQLite source for a laptop (schema created when missing)
  account-usage seed --source sqlite://demo/source.db --accounts 5 --days 60 --start 2026-01-01

  # One day of 2 million messages over 50 accounts into PostgreSQL
  account-usage seed --source postgres://postgres@localhost/ops \\
      --accounts 50 --days 1 --start 2026-03-01 --messages-per-day 2000000

The same flags and --seed always give the same rows. The data has per-account
time zones (Asia/Kathmandu, Asia/Kolkata, America/New_York, Australia/Lord_Howe,
America/Santiago, Europe/London, …), daily and weekly cycles in local time,
heavy-tailed contacts, agents on shifts, proactive and unanswered conversations,
reopened conversations, test and development channels, channels connected and
disconnected mid-window, automation messages and about 2% late rows.
SQLite timestamps are INTEGER microseconds since the Unix epoch (UTC).";

/// Flags of `account-usage seed`.
#[derive(Debug, Args)]
#[command(after_help = SEED_EXAMPLES)]
pub struct SeedArgs {
    /// Database to fill: postgres://user@host:port/db or sqlite://path/to/file.db.
    /// The reference schema is created when missing. Passwords belong in the
    /// environment (PGPASSWORD), not on the command line.
    #[arg(long, env = "SOURCE_DATABASE_URL", value_name = "URL")]
    pub source: String,

    /// Number of accounts; their sizes are heavy-tailed (account 1 is the largest).
    #[arg(long, env = "SEED_ACCOUNTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub accounts: u32,

    /// Number of UTC days to generate, starting at --start.
    #[arg(long, env = "SEED_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3_660))]
    pub days: u32,

    /// First UTC day of the data [default: --days days before today, UTC].
    #[arg(long, env = "SEED_START", value_name = "YYYY-MM-DD", value_parser = parse_date)]
    pub start: Option<NaiveDate>,

    /// Messages per day, all accounts together (the average over the window;
    /// weekends are quieter than weekdays). The total is exactly this times --days.
    #[arg(long, env = "SEED_MESSAGES_PER_DAY", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub messages_per_day: u64,

    /// Random seed; the same seed and flags give identical tables.
    #[arg(long, env = "SEED_SEED", default_value_t = 1)]
    pub seed: u64,

    /// Empty the reference tables first, instead of refusing a non-empty source.
    #[arg(long, env = "SEED_TRUNCATE")]
    pub truncate: bool,
}

/// Parses a `YYYY-MM-DD` date (for clap).
pub fn parse_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| format!("expected a date as YYYY-MM-DD, got {s:?}"))
}

impl SeedArgs {
    pub fn validate(self) -> Result<SeedConfig, UsageError> {
        let source: SourceUrl = self.source.parse().map_err(|e| UsageError(format!("--source: {e}")))?;
        let start = self
            .start
            .unwrap_or_else(|| Utc::now().date_naive() - chrono::Days::new(self.days.into()));
        start
            .checked_add_days(chrono::Days::new(self.days.into()))
            .ok_or_else(|| UsageError("--start plus --days is past the last supported date".into()))?;
        Ok(SeedConfig {
            source,
            params: SeedParams {
                accounts: self.accounts,
                days: self.days,
                start,
                messages_per_day: self.messages_per_day,
                seed: self.seed,
            },
            truncate: self.truncate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_has_help_text() {
        fn walk(cmd: &clap::Command) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(arg.get_help().is_some(), "--{id} of `{}` has no help", cmd.get_name());
            }
            for sub in cmd.get_subcommands() {
                walk(sub);
            }
        }
        walk(&Cli::command());
    }

    #[test]
    fn seed_rejects_an_unknown_scheme() {
        let cli = Cli::try_parse_from(["account-usage", "seed", "--source", "mysql://x/y"]).unwrap();
        let Command::Seed(args) = cli.command;
        assert!(args.validate().unwrap_err().0.contains("unsupported"));
    }
}
