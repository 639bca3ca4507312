//! The load-test machinery behind `just load-test` (and the reference
//! comparisons): a burst of simultaneous buyers against a dropline gateway.
//!
//! Prepares every buyer, releases them all at once over a bounded pool of
//! keep-alive connections, resolves every `202` by reading the purchase,
//! verifies the promises through the API, and prints the tally. Exits
//! non-zero when a promise is broken or a buyer got no definitive answer.

pub mod burst;
pub mod chaos;
pub mod compare;
pub mod html;
pub mod http;
pub mod latency;
pub mod reference;
pub mod report;
pub mod setup;
pub mod stack;
pub mod verify;

use clap::Parser;

/// The load generator shares the machine with what it measures: mimalloc
/// keeps its allocations cheap (as in the `dropline` binary).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Where a tool-made stack finds the local services (shared by the load
/// test and the comparisons).
#[derive(Debug, Clone, clap::Args)]
pub struct Services {
    /// Postgres base URL (no database part): stacks create fresh databases on it.
    #[arg(
        long,
        env = "DROPLINE_POSTGRES",
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    pub postgres: String,
    /// NATS for dropline.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
}

#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    /// The gateway to load. Without it, the tool brings up its own stack
    /// (fresh database, a gateway and two processors) on the local services.
    #[arg(long, env = "DROPLINE_URL")]
    pub url: Option<String>,
    #[command(flatten)]
    pub services: Services,
    /// Inject a fault mid-burst (own stack only); verification must still pass.
    #[arg(long, value_enum)]
    pub chaos: Option<chaos::Chaos>,
    /// Simultaneous buyers.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub buyers: u32,
    /// Units in the drop the tool creates.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=100_000_000))]
    pub stock: u32,
    /// Most units one user may win.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub per_user_limit: u32,
    #[command(flatten)]
    pub crowd: burst::Crowd,
    /// HTTP/1.1 keep-alive connections shared by all buyers (at most this
    /// many purchases in flight). Real buyers each have their own; a few
    /// hundred keep the generator's own cost bounded on a shared machine.
    #[arg(long, default_value_t = 800, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connections: u32,
    /// Seconds each buyer asks to wait for its decision (`Prefer: wait=N`;
    /// 0 sends `Prefer: respond-async`, and every 202 is then read by GET).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=30))]
    pub wait_s: u64,
    /// Use this existing drop instead of creating one (its stock is read).
    #[arg(long)]
    pub sku: Option<String>,
    /// Postgres, to create the drop.
    #[arg(long, env = "DATABASE_URL", default_value = dropline_store::DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Milliseconds between creating the drop and the burst. Real drops are
    /// created ahead of their sale; this gives processors time to discover
    /// and claim the new partition, so the burst measures selling, not setup.
    #[arg(long, default_value_t = 1_000)]
    pub settle_ms: u64,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Keep the database of the tool's own stack (it is dropped after a
    /// verified run; a failed run always keeps it).
    #[arg(long)]
    pub keep_database: bool,
    /// Where to write the HTML report with charts.
    #[arg(long, default_value = "target/load-test/report.html")]
    pub html: std::path::PathBuf,
}

impl Args {
    /// The gateway under test (set once the stack is up).
    pub fn url(&self) -> &str {
        self.url.as_deref().unwrap_or_default()
    }
}

/// Returns whether verification passed.
pub async fn run(mut args: Args) -> anyhow::Result<bool> {
    let mut stack = match &args.url {
        Some(_) => {
            anyhow::ensure!(
                args.chaos.is_none(),
                "--chaos needs the tool's own stack: leave out --url"
            );
            None
        }
        None => {
            let private_nats = args.chaos == Some(chaos::Chaos::NatsRestart);
            let stack = stack::Stack::start(
                &args.services.postgres,
                &args.services.nats_url,
                private_nats,
                2,
            )
            .await?;
            args.url = Some(stack.url.clone());
            args.database_url = stack.database_url.clone();
            Some(stack)
        }
    };
    let client = burst::client(args.connections)?;
    let drop = setup::prepare_drop(&args, &client).await?;
    eprintln!(
        "drop {}: {} units, per-user limit {}; {} buyers over {} connections",
        drop.sku, drop.stock, args.per_user_limit, args.buyers, args.connections
    );
    if args.sku.is_none() {
        tokio::time::sleep(std::time::Duration::from_millis(args.settle_ms)).await;
    }
    let (results, chaos) = match (args.chaos, stack.as_mut()) {
        (Some(chaos), Some(stack)) => {
            let (results, done) = tokio::join!(
                burst::fire(&args, &drop),
                chaos::inject(chaos, stack, &drop, args.buyers)
            );
            (results?, Some(done?))
        }
        _ => (burst::fire(&args, &drop).await?, None),
    };
    if let Some(done) = &chaos {
        eprintln!("chaos: {done}");
    }
    let verdict = verify::verify(&client, &args, &drop, &results).await?;
    let report = report::Report::new(&args, &drop, &results, &verdict, chaos);
    report.print();
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(dir) = args.html.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    html::write_with(
        &args.html,
        &report,
        &results,
        &html::RunInfo::from_args(&args),
    )?;
    eprintln!(
        "HTML report (open it in a browser): {}",
        args.html.display()
    );
    if let Some(stack) = &mut stack {
        eprintln!("stack logs: {}", stack.log_dir().display());
        // A failed run keeps its database, to be looked into.
        if args.keep_database || !verdict.passed() {
            eprintln!("database kept: {}", args.database_url);
        } else {
            stack.stop().await;
            stack::drop_database(&args.services.postgres, stack.database_name()).await?;
        }
    }
    Ok(verdict.passed())
}
