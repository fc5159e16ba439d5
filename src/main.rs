//! The `account-usage` binary: parse flags, set up logging, dispatch, and map
//! every error to an exit code in one place (0 ok, 1 failure, 2 bad input).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use clap::error::ErrorKind;

use account_usage::cli::{Cli, Command, LogFormat, ReportFormat, UsageError};
use account_usage::{demo, job, report, seed};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(e),
    };
    init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<UsageError>().is_some() => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Seed(args) => {
            let config = args.validate()?;
            let report = seed::seed(&config).await.context("seed failed")?;
            print!("{}", report.summary());
        }
        Command::Run(args) => {
            let config = args.validate()?;
            let dry_run = config.dry_run;
            let report = job::run(&config).await.context("run failed")?;
            if !dry_run {
                print!("{}", report.summary());
            }
        }
        Command::Report(args) => {
            let (request, format, repeat) = args.validate()?;
            let mut times = Vec::with_capacity(repeat as usize);
            let mut last = None;
            for _ in 0..repeat {
                let started = std::time::Instant::now();
                last = Some(match report::report(&request).await {
                    Ok(r) => r,
                    Err(e) if e.is_input() => return Err(UsageError(e.to_string()).into()),
                    Err(e) => return Err(anyhow::Error::new(e).context("report failed")),
                });
                times.push(started.elapsed().as_secs_f64() * 1e3);
            }
            let report = last.expect("repeat is at least 1");
            if repeat > 1 {
                let mut sorted = times.clone();
                sorted.sort_by(f64::total_cmp);
                let runs: Vec<String> = times.iter().map(|t| format!("{t:.2}")).collect();
                eprintln!(
                    "report: {repeat} runs in process, median {:.3} ms, answered from {:?}; runs (ms): {}",
                    sorted[sorted.len() / 2],
                    report.answered_from,
                    runs.join(" ")
                );
            }
            print!(
                "{}",
                match format {
                    ReportFormat::Table => report::format::table(&report),
                    ReportFormat::Json => report::format::json(&report),
                    ReportFormat::Csv => report::format::csv(&report),
                }
            );
        }
        Command::Demo(args) => {
            let config = demo::DemoConfig {
                dir: args.dir,
                accounts: args.accounts,
                days: args.days,
                messages_per_day: args.messages_per_day,
                parallel: args.parallel as usize,
            };
            print!("{}", demo::demo(&config).await.context("demo failed")?);
        }
    }
    Ok(())
}

/// Help and version go to stdout with status 0; any other parse error is one
/// line on stderr with status 2.
fn clap_exit(e: clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(2)
        }
        _ => {
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("error: invalid arguments");
            eprintln!("{first} (see --help)");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
