//! The load-test machinery behind `just load-test` and `just bench`, and the
//! burst `compare` fires at every design: simultaneous buyers against a
//! dropline gateway, buying one SKU or spread over many ([`crowd`]).
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
pub mod credentials;
pub mod crowd;
pub mod html;
pub mod http;
pub mod latency;
pub mod report;
pub mod setup;
pub mod verify;

use dropline_core::Sku;
use dropline_testkit::cpu::{pids_named, CpuWatch};
use dropline_testkit::databases::backend_pids;
use dropline_testkit::stack::{Stack, StackOptions};
use dropline_testkit::{drop_database, BuyerTokens};

use crate::burst::BurstOptions;
use crate::cli::Args;
use crate::credentials::Credentials;
use crate::setup::{DropSource, DropUnderTest};
use crate::verify::VerifyOptions;

/// Processors of the tool's own stack unless told: two, so that a fault can
/// take one away.
const STACK_PROCESSORS: u32 = 2;

/// How long the processors may take to claim every new drop's partition;
/// the burst then goes anyway (and measures the claims).
const OWNED_WAIT_MS_MAX: u64 = 30_000;

/// Runs the load test the command line asks for; returns whether every
/// promise held.
pub async fn run(args: Args) -> anyhow::Result<bool> {
    anyhow::ensure!(
        args.sku.is_none() || args.skus == 1,
        "--sku names one existing drop: leave out --skus {} (or --sku, to create {} drops)",
        args.skus,
        args.skus
    );
    let mut stack = start_stack(&args).await?;
    let (url, database_url) = match &stack {
        Some(stack) => (stack.url().to_string(), stack.database_url.clone()),
        None => (
            args.url.clone().unwrap_or_default(),
            args.database_url.clone(),
        ),
    };
    let gateways = stack
        .as_ref()
        .map_or_else(|| vec![url.clone()], |stack| stack.gateway_urls.clone());
    let client = burst::client(args.connections)?;
    let drops = setup::prepare_drops(&drop_source(&args, &url, &database_url)?, &client).await?;
    announce(&args, &drops);
    if drops.iter().all(|drop| drop.fresh) {
        settle(&database_url, &drops, args.settle_ms).await?;
    }
    let credentials = credentials(&args, stack.as_ref())?;
    let burst = BurstOptions {
        gateways,
        buyers: args.buyers,
        crowd: (&args.crowd).into(),
        connections: args.connections,
        wait_s: args.wait_s,
        credentials: credentials.clone(),
    };
    let (results, chaos, cpu_during_burst_s) =
        fire_watched(&args, &burst, &drops, stack.as_mut()).await?;
    if let Some(done) = &chaos {
        eprintln!("chaos: {done}");
    }
    let verify = VerifyOptions {
        url: url.clone(),
        database_url: database_url.clone(),
        per_user_limit: args.per_user_limit,
        faults_injected: chaos.is_some(),
        credentials,
    };
    let verdict = verify::verify(&client, &verify, &drops, &results).await?;
    let mut report = report::Report::new(&drops, &results, &verdict, chaos);
    report.cpu_during_burst_s = cpu_during_burst_s
        .into_iter()
        .map(|(part, seconds)| (part.to_string(), seconds))
        .collect();
    report.print();
    write_reports(&args, &report, &results, &url)?;
    if let Some(stack) = &mut stack {
        finish_stack(&args, stack, verdict.passed()).await?;
    }
    Ok(verdict.passed())
}

/// The buyers' tokens: minted with the own stack's secret, or as told for
/// someone else's gateway.
fn credentials(args: &Args, stack: Option<&Stack>) -> anyhow::Result<Credentials> {
    if let Some(stack) = stack {
        return Ok(Credentials::Minted(stack.options.buyer_tokens.clone()));
    }
    if let Some(path) = &args.tokens_file {
        return Credentials::from_file(path);
    }
    if let Some(secret) = &args.jwt_secret {
        return Ok(Credentials::Minted(BuyerTokens::with_secret(secret)?));
    }
    eprintln!(
        "no --jwt-secret or --tokens-file: buyers send no token (only a gateway started \
         with --insecure-no-auth takes that)"
    );
    Ok(Credentials::None)
}

fn drop_source(args: &Args, url: &str, database_url: &str) -> anyhow::Result<DropSource> {
    Ok(match &args.sku {
        Some(sku) => DropSource::Existing {
            url: url.to_string(),
            sku: Sku::parse(sku.clone())?,
        },
        None => DropSource::New {
            database_url: database_url.to_string(),
            skus: args.skus,
            stock: args.stock,
            per_user_limit: args.per_user_limit,
        },
    })
}

fn announce(args: &Args, drops: &[DropUnderTest]) {
    let what = match drops {
        [drop] => format!("drop {}: {} units", drop.sku, drop.stock),
        [first, .., last] => format!(
            "{} drops {} … {}: {} units each",
            drops.len(),
            first.sku,
            last.sku,
            args.stock
        ),
        [] => "no drop".to_string(),
    };
    eprintln!(
        "{what}, per-user limit {}; {} buyers over {} connections",
        args.per_user_limit, args.buyers, args.connections
    );
}

/// Waits until processors own every new drop's partition (at most
/// `OWNED_WAIT_MS_MAX`), then `settle_ms` more.
async fn settle(database_url: &str, drops: &[DropUnderTest], settle_ms: u64) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let unowned = setup::wait_until_owned(database_url, drops, OWNED_WAIT_MS_MAX).await?;
    let waited_s = started.elapsed().as_secs_f64();
    if unowned == 0 {
        eprintln!("every drop's partition owned after {waited_s:.1} s");
    } else {
        eprintln!(
            "warning: {unowned} of {} drops' partitions still unowned after {waited_s:.1} s; \
             the burst goes anyway",
            drops.len()
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(settle_ms)).await;
    Ok(())
}

/// The tool's own stack, unless a gateway was given.
async fn start_stack(args: &Args) -> anyhow::Result<Option<Stack>> {
    if args.url.is_some() {
        let own_stack_only = [
            ("--chaos", args.chaos.is_some()),
            ("--gateways", args.gateways.is_some()),
            ("--processors", args.processors.is_some()),
            ("--nats-cluster", args.nats_cluster),
        ];
        if let Some((flag, _)) = own_stack_only.iter().find(|(_, given)| *given) {
            anyhow::bail!("{flag} needs the tool's own stack: leave out --url");
        }
        return Ok(None);
    }
    let restarts_nats = args.chaos == Some(chaos::Chaos::NatsRestart);
    anyhow::ensure!(
        !(restarts_nats && args.nats_cluster),
        "--chaos nats-restart restarts a private nats-server, not a cluster: leave out --nats-cluster"
    );
    let mut options = StackOptions::new(
        &args.services.postgres,
        &args.services.nats_url,
        args.processors.unwrap_or(STACK_PROCESSORS) as usize,
    );
    options.private_nats = restarts_nats;
    options.nats_cluster = args.nats_cluster;
    options.gateways = args.gateways.unwrap_or(1) as usize;
    Ok(Some(Stack::start(options).await?))
}

/// Starts reading the CPU of each part of the tool's own stack: its
/// gateways and processors, NATS (the stack's own servers, or else every
/// nats-server on this machine), the Postgres backends of its database
/// (not the server's shared background work) and this load generator.
async fn watch_cpu(stack: &Stack) -> anyhow::Result<CpuWatch> {
    let nats = match stack.nats_pids() {
        own if !own.is_empty() => own,
        _ => pids_named("nats-server"),
    };
    let postgres = backend_pids(&stack.options.postgres, stack.database_name()).await?;
    Ok(CpuWatch::start(vec![
        ("gateways", stack.gateway_pids()),
        ("processors", stack.processor_pids()),
        ("nats", nats),
        ("postgres", postgres),
        ("load generator", vec![std::process::id()]),
    ]))
}

/// The burst (see [`fire_with_chaos`]), and the CPU each part of the
/// tool's own stack used meanwhile (none against someone else's gateway).
async fn fire_watched(
    args: &Args,
    burst: &BurstOptions,
    drops: &[DropUnderTest],
    stack: Option<&mut Stack>,
) -> anyhow::Result<(
    burst::BurstResults,
    Option<String>,
    Vec<(&'static str, f64)>,
)> {
    let Some(stack) = stack else {
        let (results, chaos) = fire_with_chaos(args, burst, drops, None).await?;
        return Ok((results, chaos, Vec::new()));
    };
    let watch = watch_cpu(stack).await?;
    let (results, chaos) = fire_with_chaos(args, burst, drops, Some(stack)).await?;
    Ok((results, chaos, watch.seconds()?))
}

/// The burst, with the fault asked for injected into the stack meanwhile.
async fn fire_with_chaos(
    args: &Args,
    burst: &BurstOptions,
    drops: &[DropUnderTest],
    stack: Option<&mut Stack>,
) -> anyhow::Result<(burst::BurstResults, Option<String>)> {
    match (args.chaos, stack) {
        (Some(chaos), Some(stack)) => {
            let (results, done) = tokio::join!(
                burst::fire(burst, drops),
                chaos::inject(chaos, stack, drops, args.buyers)
            );
            Ok((results?, Some(done?)))
        }
        _ => Ok((burst::fire(burst, drops).await?, None)),
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

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[tokio::test]
    async fn an_existing_sku_is_refused_with_more_than_one_sku_in_one_line() {
        // Refused before anything is reached: nothing listens on port 1.
        let args = Args::parse_from([
            "loadtest",
            "--url",
            "http://127.0.0.1:1",
            "--sku",
            "some-drop",
            "--skus",
            "20",
        ]);

        let refused = run(args).await.expect_err("refused");

        let message = format!("{refused:#}");
        assert!(
            message.starts_with("--sku names one existing drop"),
            "{message}"
        );
        assert!(!message.contains('\n'), "one line: {message}");
    }

    #[tokio::test]
    async fn the_own_stack_s_shape_is_refused_against_someone_else_s_gateway() {
        for flags in [
            &["--gateways", "2"][..],
            &["--processors", "3"][..],
            &["--nats-cluster"][..],
        ] {
            let mut line = vec!["loadtest", "--url", "http://127.0.0.1:1"];
            line.extend_from_slice(flags);

            let refused = run(Args::parse_from(line)).await.expect_err("refused");

            let message = format!("{refused:#}");
            assert_eq!(
                message,
                format!("{} needs the tool's own stack: leave out --url", flags[0])
            );
        }
    }
}
