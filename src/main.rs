//! The `tether` binary: parse the command line, set up logs, load the config, call the library.
#![forbid(unsafe_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "tether", version, about = "Sticky load balancer and AM-compatible auth node")]
struct Cli {
    /// Log line format on stderr (RUST_LOG filters, default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy, the admin listener and every `embedded = true` auth node.
    Run {
        /// Config file.
        #[arg(short, long, default_value = "proxy.toml")]
        config: PathBuf,
    },
    /// Run one auth node alone: the backend with this ID, on the host:port of its url.
    Node {
        /// Server ID of the backend to run.
        #[arg(long)]
        id: String,
        /// Config file.
        #[arg(short, long, default_value = "proxy.toml")]
        config: PathBuf,
    },
    /// Validate the config file and report every problem.
    Check {
        /// Config file.
        #[arg(short, long, default_value = "proxy.toml")]
        config: PathBuf,
    },
    /// Print the argon2id PHC hash of a password for `[[auth.user]] password`: asked twice without echo
    /// on a terminal, read from stdin when piped.
    HashPassword,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match execute(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tether: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn execute(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check { config } => Ok(match tether::config::load(&config) {
            Ok(c) => {
                println!("{}: ok: {}", config.display(), c.summary());
                // A warning, not a failure: the certificate still serves today, and a deploy gate that
                // failed 30 days early would be bypassed rather than heeded.
                let now = std::time::SystemTime::now();
                for e in c.expiring_certificates(now, tether::config::EXPIRY_WARNING) {
                    let at = std::time::UNIX_EPOCH
                        + std::time::Duration::from_secs(u64::try_from(e.not_after).unwrap_or(0));
                    let left = e.not_after - unix_now(now);
                    let when = if left <= 0 {
                        "has expired".to_owned()
                    } else {
                        // Rounded: a certificate made for 10 days says 10 until half a day has passed.
                        format!("expires in {} day(s)", (left + 43_200) / 86_400)
                    };
                    eprintln!(
                        "{}: warning: `{}`: the certificate {} {when}, on {}: renew it before then",
                        config.display(),
                        e.key,
                        e.file.display(),
                        tether::am::time::iso_utc_of(at)
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        }),
        Command::HashPassword => {
            let password = read_password()?;
            anyhow::ensure!(!password.is_empty(), "the password is empty");
            println!("{}", tether::hash_password(&password).map_err(anyhow::Error::msg)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config } => {
            let config = tether::config::load(&config)?;
            runtime(config.proxy.workers)?.block_on(async {
                let shutdown = CancellationToken::new();
                let running = tether::start(config, shutdown.clone()).await?;
                tokio::spawn(on_signals(shutdown, Some(Arc::clone(&running.reloader))));
                running.wait().await;
                Ok::<_, tether::StartError>(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Node { id, config } => {
            let config = tether::config::load(&config)?;
            runtime(config.proxy.workers)?.block_on(async {
                let shutdown = CancellationToken::new();
                tokio::spawn(on_signals(shutdown.clone(), None));
                tether::run_node(config, &id, shutdown).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Seconds since the Unix epoch of `now`.
fn unix_now(now: std::time::SystemTime) -> i64 {
    now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The password for `hash-password`. On a terminal: asked twice, without echo (as `passwd` does), so it
/// is neither shown nor mistyped unnoticed. Piped: stdin as it is, less one trailing newline, so scripts
/// (`printf %s "$PW" | tether hash-password`) are unchanged.
fn read_password() -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let mut terminal = tether::terminal::Terminal::without_echo().context("opening the terminal")?;
        let first = terminal.ask("Password: ").context("reading the password")?;
        let second = terminal.ask("Confirm: ").context("reading the confirmation")?;
        drop(terminal);
        anyhow::ensure!(first == second, "the two passwords differ; nothing was hashed, run it again");
        return Ok(first);
    }
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).context("reading the password from stdin")?;
    let password = input.strip_suffix('\n').map(|p| p.strip_suffix('\r').unwrap_or(p)).unwrap_or(&input);
    Ok(password.to_owned())
}

/// The runtime: `[proxy] workers` threads, or one per core. One worker is tokio's current-thread
/// scheduler on the main thread: the same single thread of work without the multi-thread scheduler's
/// cross-thread queues and wake-ups (measured in bench/RESULTS.md).
fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build().context("starting the tokio runtime")
}

/// SIGTERM and SIGINT start the phased shutdown (`tether::start`); SIGHUP reloads the config file.
async fn on_signals(shutdown: CancellationToken, reloader: Option<Arc<tether::Reloader>>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()))
    else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down in phases"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down in phases"); break; }
            _ = hup.recv() => match &reloader {
                // The reloader logs the outcome; a refused file leaves the running config as it was.
                Some(r) => { let r = Arc::clone(r); let _ = tokio::task::spawn_blocking(move || r.reload()).await; }
                None => tracing::info!("SIGHUP: nothing to reload for a single node"),
            },
        }
    }
    shutdown.cancel();
}
