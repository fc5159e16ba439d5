//! The `account-usage` binary: parse flags, set up logging, dispatch, and map
//! every error to an exit code in one place:
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success |
//! | 1 | a failure that a retry may fix (database or store unreachable, timeout) |
//! | 2 | bad input or configuration (flags, URLs, a missing source file, a missing bucket, refused credentials) |
//! | 143 | stopped by SIGTERM or SIGINT |
//!
//! Every error is one line on stderr, each cause once.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use clap::error::ErrorKind;

use account_usage::cli::{Cli, Command, LogFormat, ReportFormat, UsageError};
use account_usage::warehouse::gate::WriteGate;
use account_usage::{demo, job, report, seed, serve, source, warehouse};

/// What a signal makes of a command that is not `run` (which stops itself).
#[derive(Debug, thiserror::Error)]
#[error("stopped by a signal")]
struct Stopped;

const EXIT_STOPPED: u8 = 143;

/// glibc gives every thread that allocates its own arena and hands freed
/// memory back to no other: the rollup refresh, spread over the runtime's
/// and the blocking pool's threads, kept 2.3x its live memory resident on an
/// 8M-message day (bench/RESULTS.md). One arena, with glibc's per-thread
/// caches in front of it, keeps a batch command's peak at what is live.
/// The readers (`serve`, `report`) compute on every core at once, and
/// threads waiting on one arena's lock cost a third of serve's throughput
/// and a tenth of a base-grain report's time: they get one arena a core.
/// An operator's `MALLOC_ARENA_MAX` wins.
///
/// Readers (`serve`, `report`) also keep freed memory instead of handing
/// it back to the kernel at once: reading Parquet allocates and frees
/// short-lived buffers (a zstd context per column chunk among them) that
/// glibc otherwise trims and faults in again, which took a seventh of a
/// base-grain report's profile (page faults, TLB shootdowns). Their memory
/// is bounded by their caches and by one answer at a time per core, so
/// what is kept is what a busy moment needed. `GLIBC_TUNABLES` wins.
fn tune_malloc(command: &Command) {
    let reader = matches!(command, Command::Serve(_) | Command::Report(_));
    let arenas = if reader {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        1
    };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator settings; called before any
    // other thread exists.
    unsafe {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            libc::mallopt(libc::M_ARENA_MAX, arenas as libc::c_int);
        }
        if reader && std::env::var_os("GLIBC_TUNABLES").is_none() {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = (arenas, reader);
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(e),
    };
    tune_malloc(&cli.command);
    init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let gate = WriteGate::new();
    // Handlers are installed before any work starts, so an early signal is
    // handled like a late one.
    let signals = {
        let _entered = runtime.enter();
        Signals::install()
    };
    let code = runtime.block_on(async {
        match signals {
            Ok(signals) => drop(tokio::spawn(signals.close_gate_on_signal(gate.clone()))),
            Err(e) => tracing::warn!(error = %e, "Cannot handle SIGTERM/SIGINT; they stop the process at once."),
        }
        match dispatch(cli, &gate).await {
            Ok(()) => 0,
            Err(e) => {
                let code = exit_code(&e);
                // An input error's own sentence is the whole story.
                let message = match e.downcast_ref::<UsageError>() {
                    Some(usage) => usage.to_string(),
                    None => account_usage::model::error_chain(e.as_ref()),
                };
                eprintln!("error: {}", one_line(&message));
                code
            }
        }
    });
    // Tasks still running (aborted uploads, refused writes) get a moment.
    runtime.shutdown_timeout(Duration::from_secs(1));
    ExitCode::from(code)
}

struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Closes the gate at the first signal: from then on nothing is written.
    async fn close_gate_on_signal(mut self, gate: WriteGate) {
        let name = tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        };
        tracing::warn!(
            signal = name,
            "Stopping: nothing more is written; unfinished uploads are aborted."
        );
        gate.close();
    }
}

/// The exit code of a failed command (see the module docs). Wrappers that
/// are `#[error(transparent)]` hide their inner error from the chain, so
/// each layer's error is asked through its own method.
fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause.is::<UsageError>() {
            return 2;
        }
        if cause.is::<Stopped>() {
            return EXIT_STOPPED;
        }
        let job_error = cause
            .downcast_ref::<job::Error>()
            .or_else(|| match cause.downcast_ref() {
                Some(demo::Error::Run(j)) => Some(j),
                _ => None,
            });
        if let Some(j) = job_error {
            if j.is_stopped() {
                return EXIT_STOPPED;
            }
            if j.is_bad_input() {
                return 2;
            }
        }
        let bad_input = cause
            .downcast_ref::<report::Error>()
            .is_some_and(report::Error::is_input)
            || cause
                .downcast_ref::<source::Error>()
                .is_some_and(source::Error::is_bad_input)
            || cause
                .downcast_ref::<warehouse::Error>()
                .is_some_and(warehouse::Error::is_bad_input)
            || cause
                .downcast_ref::<seed::Error>()
                .is_some_and(seed::Error::is_bad_input)
            || cause
                .downcast_ref::<demo::Error>()
                .is_some_and(demo::Error::is_bad_input)
            || cause
                .downcast_ref::<serve::Error>()
                .is_some_and(serve::Error::is_bad_input);
        if bad_input {
            return 2;
        }
    }
    1
}

/// Stores answer with multi-line bodies (XML, say); the contract is one line.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Resolves at the first SIGTERM or SIGINT (when the gate closes): `serve`
/// then drains and exits 0.
fn stop_signal(gate: &WriteGate) -> impl Future<Output = ()> + Send + 'static {
    let gate = gate.clone();
    async move { gate.closed().await }
}

/// Runs a command that has no stop logic of its own until the gate closes.
async fn until_stopped<T>(gate: &WriteGate, work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::select! {
        result = work => result,
        () = gate.closed() => Err(Stopped.into()),
    }
}

async fn dispatch(cli: Cli, gate: &WriteGate) -> anyhow::Result<()> {
    let log_format = cli.log_format;
    match cli.command {
        Command::Seed(args) => {
            let config = args.validate()?;
            let report = until_stopped(gate, async { seed::seed(&config).await.context("seed failed") }).await?;
            print!("{}", report.summary());
        }
        Command::Run(args) => {
            let config = args.validate(log_format)?;
            let dry_run = config.dry_run;
            let report = job::run(&config, gate).await.context("run failed")?;
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
                let answer = until_stopped(gate, async { Ok(report::report(&request).await) }).await?;
                last = Some(match answer {
                    Ok(r) => r,
                    // Its causes too: a store that cannot be configured says why.
                    Err(e) if e.is_input() => return Err(UsageError(account_usage::model::error_chain(&e)).into()),
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
            let (config, listen) = args.validate()?;
            print!("{}", demo::demo(&config, gate).await.context("demo failed")?);
            if let Some(listen) = listen {
                let (serve_config, page_url) = demo::serve_config(&config, listen).context("demo failed")?;
                println!(
                    "\nServing the demo warehouse. The report page (token valid 12 h):\n  {page_url}\nStop with Ctrl-C."
                );
                serve::serve(serve_config, stop_signal(gate))
                    .await
                    .context("serve failed")?;
            }
        }
        Command::Serve(args) => {
            let config = args.validate()?;
            serve::serve(config, stop_signal(gate)).await.context("serve failed")?;
        }
        Command::Token(args) => {
            let (secret, grant, ttl) = args.validate()?;
            println!("{}", serve::auth::mint(&secret, grant, ttl).context("token failed")?);
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
            eprintln!("{} (see --help)", clap_one_line(&e.render().to_string()));
            ExitCode::from(2)
        }
    }
}

/// clap's message up to its usage block, on one line: a missing or
/// conflicting argument keeps its name ("…were not provided: --source <URL>").
fn clap_one_line(rendered: &str) -> String {
    let message: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if message.is_empty() {
        "error: invalid arguments".to_string()
    } else {
        message.join(" ")
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
