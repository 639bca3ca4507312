//! `bench`: dropline's halves alone, then an idle stack with many open
//! drops, then a SKU with a long history claimed (see `loadtest::bench`). All run by default, in that order;
//! `--only` picks one.

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use loadtest::bench::gateway::GatewayBench;
use loadtest::bench::history::HistoryBench;
use loadtest::bench::idle::IdleBench;
use loadtest::bench::processor::ProcessorBench;
use serde_json::{Map, Value};

/// The bench shares the machine with what it measures (see `loadtest`).
#[global_allocator]
static ALLOCATOR: dropline_memory::Allocator = dropline_memory::Allocator;

#[derive(Debug, Parser)]
#[command(
    about = "dropline's halves alone: the processor draining a pre-filled partition \
             (decisions/s, and its share of what Postgres and JetStream allow), then the gateway with no processor (accepted purchases/s); \
             then many open drops and no buyers (time to own them all, idle CPU); \
             then a SKU with a long history claimed (claim time, memory, old repeats)"
)]
struct Args {
    /// Run only this part [default: all four, in this order].
    #[arg(long, value_enum)]
    only: Option<Part>,
    /// Processor: intents to pre-fill.
    #[arg(long, default_value_t = 200_000)]
    intents: u32,
    /// Units in each part's drop (the default sells out at once; try the
    /// intents count for all-win). The gateway part decides nothing, so
    /// there it only has to exist.
    #[arg(long, default_value_t = 100)]
    stock: u32,
    /// Base URL of Postgres (a fresh database is created under it).
    #[arg(
        long,
        env = "DROPLINE_POSTGRES",
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    postgres: String,
    #[arg(long, env = "NATS_URL", default_value = dropline_bus::DEFAULT_NATS_URL)]
    nats_url: String,
    /// Processor: the dropline binary to run. (The gateway part runs the
    /// `dropline` next to this executable, as `loadtest`'s stack does.)
    #[arg(long, default_value = "target/release/dropline")]
    dropline: String,
    /// Processor: extra arguments for `dropline processor` (e.g.
    /// --batch-len-max 1000).
    #[arg(long, allow_hyphen_values = true, num_args = 0..)]
    processor_args: Vec<String>,
    /// Gateway: purchases to send, each with its own idempotency key and user.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    purchases: u32,
    /// Gateway: HTTP/1.1 keep-alive connections the purchases share (also
    /// the most purchases in flight).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connections: u32,
    /// Idle: open drops created together.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    idle_drops: u32,
    /// Idle: seconds of the idle window whose CPU is measured.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    idle_s: u64,
    /// Idle: how long the drops may take to be owned before the bench fails.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    owned_wait_s: u64,
    /// History: intents decided in the claimed SKU's history.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1_000..=100_000_000))]
    history_decided: u32,
    /// Also write the result as JSON here: the processor's fields
    /// (`decisions_per_s`, …) and the gateway's (`gateway_accepted_per_s`, …).
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    Processor,
    Gateway,
    Idle,
    History,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    dropline_memory::use_small_pages();
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut result = Map::new();
    let runs = |part: Part| args.only.is_none_or(|only| only == part);
    if runs(Part::Processor) {
        let bench = ProcessorBench {
            intents: args.intents,
            stock: args.stock,
            postgres: args.postgres.clone(),
            nats_url: args.nats_url.clone(),
            dropline: args.dropline.clone(),
            processor_args: args.processor_args.clone(),
        };
        result.extend(
            loadtest::bench::processor::run(&bench)
                .await
                .context("processor")?,
        );
    }
    if runs(Part::Gateway) {
        let bench = GatewayBench {
            purchases: args.purchases,
            connections: args.connections,
            stock: args.stock,
            postgres: args.postgres.clone(),
            nats_url: args.nats_url.clone(),
        };
        result.extend(
            loadtest::bench::gateway::run(&bench)
                .await
                .context("gateway")?,
        );
    }
    if runs(Part::Idle) {
        let bench = IdleBench {
            drops: args.idle_drops,
            idle_s: args.idle_s,
            owned_wait_s: args.owned_wait_s,
            postgres: args.postgres.clone(),
        };
        result.extend(loadtest::bench::idle::run(&bench).await.context("idle")?);
    }
    if runs(Part::History) {
        let bench = HistoryBench {
            decided: args.history_decided,
            postgres: args.postgres.clone(),
        };
        result.extend(
            loadtest::bench::history::run(&bench)
                .await
                .context("history")?,
        );
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&Value::Object(result))?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}
