//! `dropline`: the service binary. Thin: logging, flags, run until signalled.
//! Must not wire parts itself: the library's `run_*` does, so that tests
//! start exactly what the binary starts.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use dropline::{Settings, SettingsArgs, Shutdown};
use tracing_subscriber::EnvFilter;

/// mimalloc on small pages (see `dropline_memory`).
#[global_allocator]
static ALLOCATOR: dropline_memory::Allocator = dropline_memory::Allocator;

/// dropline sells limited stock without a lock: HTTP gateway, per-SKU
/// JetStream partitions, one batched processor per partition, Postgres.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    settings: SettingsArgs,
    /// Log as JSON lines (for log shippers) instead of text.
    #[arg(long, env = "DROPLINE_LOG_JSON", global = true)]
    log_json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Create the database if missing and apply migrations.
    Migrate,
    /// Gateway and processor in one process (the single-machine default).
    Serve,
    /// The HTTP gateway only.
    Gateway,
    /// The processor only.
    Processor,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    dropline_memory::use_small_pages();
    let cli = Cli::parse();
    init_tracing(cli.log_json);
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("dropline: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let serves_buyers = matches!(cli.command, Command::Serve | Command::Gateway);
    // Resolved before anything starts: a gateway without a way to know
    // its buyers does not start at all. Operators are known to every role
    // (a processor's /metrics takes their credential too).
    let operators = cli.settings.auth.operator_access()?;
    let buyers = serves_buyers
        .then(|| cli.settings.auth.buyer_auth())
        .transpose()?;
    let mut settings = Settings::from(cli.settings);
    settings.gateway.operators = operators;
    if let Some(buyers) = buyers {
        settings.gateway.auth = buyers;
    }
    let (fire, shutdown) = Shutdown::new();
    tokio::spawn(async move {
        dropline::shutdown_signal().await;
        tracing::info!("shutdown signal received");
        fire();
    });
    match cli.command {
        Command::Migrate => {
            dropline::migrate(&settings).await?;
            eprintln!("migrated {}", dropline::redact(&settings.database_url));
            Ok(())
        }
        Command::Serve => dropline::run_serve(&settings, bind(&settings).await?, shutdown).await,
        Command::Gateway => {
            dropline::run_gateway(&settings, bind(&settings).await?, shutdown).await
        }
        Command::Processor => dropline::run_processor(&settings, shutdown).await,
    }
}

async fn bind(settings: &Settings) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(&settings.http_addr)
        .await
        .with_context(|| format!("listen on {}", settings.http_addr))
}

fn init_tracing(json: bool) {
    let filter =
        EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
