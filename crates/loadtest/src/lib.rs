//! The load-test machinery behind `just load-test` and `just bench`, and the
//! burst `compare` fires at every design: simultaneous buyers against a
//! dropline gateway.
//!
//! Prepares every buyer, releases them all at once over a bounded pool of
//! keep-alive connections ([`burst`], [`http`]), resolves every `202` by
//! reading the purchase, verifies the promises through the API, the
//! database and a replay of the line ([`verify`]), and reports for people
//! and machines ([`report`], [`html`]). [`bench`] measures dropline's halves
//! alone. Each part takes its own options; only [`run`] reads the command
//! line ([`cli`]). Must not reach into dropline's tables: what it reads of
//! the store goes through `dropline-store`'s read models.

pub mod bench;
pub mod burst;
pub mod chaos;
pub mod cli;
pub mod crowd;
pub mod html;
pub mod http;
pub mod latency;
pub mod report;
pub mod setup;
pub mod verify;

use dropline_core::Sku;
use dropline_testkit::drop_database;
use dropline_testkit::stack::{Stack, StackOptions};

use crate::burst::BurstOptions;
use crate::cli::Args;
use crate::setup::{DropSource, DropUnderTest};
use crate::verify::VerifyOptions;

/// Processors of the tool's own stack: two, so that a fault can take one away.
const STACK_PROCESSORS: usize = 2;

/// Runs the load test the command line asks for; returns whether every
/// promise held.
pub async fn run(args: Args) -> anyhow::Result<bool> {
    let mut stack = start_stack(&args).await?;
    let (url, database_url) = match &stack {
        Some(stack) => (stack.url.clone(), stack.database_url.clone()),
        None => (
            args.url.clone().unwrap_or_default(),
            args.database_url.clone(),
        ),
    };
    let client = burst::client(args.connections)?;
    let source = match &args.sku {
        Some(sku) => DropSource::Existing {
            url: url.clone(),
            sku: Sku::parse(sku.clone())?,
        },
        None => DropSource::New {
            database_url: database_url.clone(),
            stock: args.stock,
            per_user_limit: args.per_user_limit,
        },
    };
    let drop = setup::prepare_drop(&source, &client).await?;
    eprintln!(
        "drop {}: {} units, per-user limit {}; {} buyers over {} connections",
        drop.sku, drop.stock, args.per_user_limit, args.buyers, args.connections
    );
    if drop.fresh {
        tokio::time::sleep(std::time::Duration::from_millis(args.settle_ms)).await;
    }
    let burst = BurstOptions {
        url: url.clone(),
        buyers: args.buyers,
        crowd: (&args.crowd).into(),
        connections: args.connections,
        wait_s: args.wait_s,
    };
    let (results, chaos) = fire_with_chaos(&args, &burst, &drop, stack.as_mut()).await?;
    if let Some(done) = &chaos {
        eprintln!("chaos: {done}");
    }
    let verify = VerifyOptions {
        url: url.clone(),
        database_url: database_url.clone(),
        per_user_limit: args.per_user_limit,
        faults_injected: chaos.is_some(),
    };
    let verdict = verify::verify(&client, &verify, &drop, &results).await?;
    let report = report::Report::new(&drop, &results, &verdict, chaos);
    report.print();
    write_reports(&args, &report, &results, &url)?;
    if let Some(stack) = &mut stack {
        finish_stack(&args, stack, verdict.passed()).await?;
    }
    Ok(verdict.passed())
}

/// The tool's own stack, unless a gateway was given.
async fn start_stack(args: &Args) -> anyhow::Result<Option<Stack>> {
    if args.url.is_some() {
        anyhow::ensure!(
            args.chaos.is_none(),
            "--chaos needs the tool's own stack: leave out --url"
        );
        return Ok(None);
    }
    let mut options = StackOptions::new(
        &args.services.postgres,
        &args.services.nats_url,
        STACK_PROCESSORS,
    );
    options.private_nats = args.chaos == Some(chaos::Chaos::NatsRestart);
    Ok(Some(Stack::start(options).await?))
}

/// The burst, with the fault asked for injected into the stack meanwhile.
async fn fire_with_chaos(
    args: &Args,
    burst: &BurstOptions,
    drop: &DropUnderTest,
    stack: Option<&mut Stack>,
) -> anyhow::Result<(burst::BurstResults, Option<String>)> {
    match (args.chaos, stack) {
        (Some(chaos), Some(stack)) => {
            let (results, done) = tokio::join!(
                burst::fire(burst, drop),
                chaos::inject(chaos, stack, drop, args.buyers)
            );
            Ok((results?, Some(done?)))
        }
        _ => Ok((burst::fire(burst, drop).await?, None)),
    }
}

fn write_reports(
    args: &Args,
    report: &report::Report,
    results: &burst::BurstResults,
    url: &str,
) -> anyhow::Result<()> {
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(report)?)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(dir) = args.html.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let run = html::RunInfo {
        url: url.to_string(),
        per_user_limit: args.per_user_limit,
    };
    html::write(&args.html, report, results, &run)?;
    eprintln!(
        "HTML report (open it in a browser): {}",
        args.html.display()
    );
    Ok(())
}

/// Stops the tool's stack and drops its database, unless the run failed
/// (its database is kept, to be looked into) or `--keep-database`.
async fn finish_stack(args: &Args, stack: &mut Stack, passed: bool) -> anyhow::Result<()> {
    eprintln!("stack logs: {}", stack.log_dir().display());
    if args.keep_database || !passed {
        eprintln!("database kept: {}", stack.database_url);
        return Ok(());
    }
    stack.stop();
    drop_database(&args.services.postgres, stack.database_name()).await
}
