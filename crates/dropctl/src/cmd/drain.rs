//! `dropctl drain <SKU> [--json] [--stall-s S] [--quiet-s Q] [--timeout-s T]
//! [--operator NAME]`: closes the drop (as `drop close`) unless it is
//! closed, waits (bounded) until every live gateway refuses new keys for
//! it, then shows progress until everything on the SKU's subject is
//! decided and no new message came for `--quiet-s`; then prints the tally
//! and runs the audit `dropctl verify` runs, failing if a promise does not
//! hold. Ctrl-C (exit 130) or `--timeout-s` leave the drop closed; running
//! drain again goes on where it stopped.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use dropline_bus::Bus;
use dropline_core::wire::message_seq;
use dropline_core::{OperatorId, Sku};
use dropline_store::{DropStatusRow, OutcomeCounts, Store};

use crate::decided::status_of;
use crate::interrupt::until_ctrl_c;
use crate::operator::OperatorArgs;
use crate::progress::{Progress, Snapshot};
use crate::services::{explain, ServiceArgs};
use crate::{audit_table, closing};

/// A gateway heard from within this long counts as alive.
const GATEWAY_ALIVE_MS: u64 = 5_000;
/// Longest wait for every live gateway to apply the close.
const GATEWAYS_WAIT_S: u64 = 10;
/// How often the store and the stream are read while draining.
const POLL_INTERVAL_MS: u64 = 250;
/// The window decisions per second are measured over.
const RATE_WINDOW: Duration = Duration::from_secs(3);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The drop's SKU.
    sku: String,
    /// Print one JSON object at the end (tally and audit) instead of tables.
    #[arg(long)]
    json: bool,
    /// Say "stalled" after this many seconds without progress.
    #[arg(long, default_value_t = 5, value_name = "S")]
    stall_s: u64,
    /// Drained once everything is decided and no new message came for this many seconds.
    #[arg(long, default_value_t = 3, value_name = "Q")]
    quiet_s: u64,
    /// Give up after this many seconds (non-zero exit; the drop stays closed).
    #[arg(long, value_name = "T")]
    timeout_s: Option<u64>,
    #[command(flatten)]
    operator: OperatorArgs,
}

pub async fn run(args: Args, services: &ServiceArgs) -> anyhow::Result<()> {
    let sku = Sku::parse(args.sku.clone())?;
    let operator = args.operator.resolve()?;
    let store = services.store()?;
    let go_on = format!("the drop stays closed; run `dropctl drain {sku}` again to go on");
    let work = async {
        let bus = services.bus().await?;
        let drained = drain(&args, (&sku, &operator), &store, services, &bus);
        match args.timeout_s {
            None => drained.await?,
            Some(timeout_s) => tokio::time::timeout(Duration::from_secs(timeout_s), drained)
                .await
                .map_err(|_| {
                    anyhow::anyhow!("{sku} not drained within {timeout_s} s: {go_on}")
                })??,
        };
        report(&args, &sku, &store, &bus).await
    };
    until_ctrl_c(work, &go_on).await
}

/// Close, the gateways, then the line to its end.
async fn drain(
    args: &Args,
    (sku, operator): (&Sku, &OperatorId),
    store: &Store,
    services: &ServiceArgs,
    bus: &Bus,
) -> anyhow::Result<()> {
    let closing = closing::close(store, services, sku, operator).await?;
    closing.report();
    wait_for_gateways(store, closing.drop().admission_version).await?;
    follow(args, sku, store, bus).await
}

/// Waits, at most [`GATEWAYS_WAIT_S`], until no live gateway is behind
/// admission `version`; then names the late ones and goes on (what they
/// still admit stands in line after the cutoff: it is decided `closed`).
async fn wait_for_gateways(store: &Store, version: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(GATEWAYS_WAIT_S);
    let mut told = false;
    loop {
        let behind = store
            .gateways_behind(version, GATEWAY_ALIVE_MS)
            .await
            .map_err(explain)?;
        if behind.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            eprintln!(
                "gateways still admitting after {GATEWAYS_WAIT_S} s: {}; going on \
                 (what they admit is decided closed)",
                behind.join(", ")
            );
            return Ok(());
        }
        if !told {
            eprintln!(
                "waiting for gateways to refuse new keys: {}",
                behind.join(", ")
            );
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

/// Shows progress until the line is drained.
async fn follow(args: &Args, sku: &Sku, store: &Store, bus: &Bus) -> anyhow::Result<()> {
    let mut progress = Progress::new(sku.as_str());
    let mut watch = Watch::new(Instant::now(), args);
    loop {
        let status = status_of(store, sku).await?;
        let tail = bus.last_message_seq(sku).await.map_err(|e| e.to_string());
        let (snapshot, drained) = watch.observe(Instant::now(), &status, tail);
        progress.show(&snapshot);
        if drained {
            progress.finish(&format!("drained: {} decided", status.decided));
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

/// What the drain has seen of the line: when its tail (the last message on
/// the subject) and its applied place last moved, and the pace.
struct Watch {
    stall: Duration,
    quiet: Duration,
    /// The last message's stream sequence, once read (`Some(None)`: the
    /// subject holds no message).
    tail: Option<Option<u64>>,
    tail_moved_at: Instant,
    applied_seq: Option<u64>,
    applied_moved_at: Instant,
    rate: Rate,
}

impl Watch {
    fn new(now: Instant, args: &Args) -> Self {
        Self {
            stall: Duration::from_secs(args.stall_s),
            quiet: Duration::from_secs(args.quiet_s),
            tail: None,
            tail_moved_at: now,
            applied_seq: None,
            applied_moved_at: now,
            rate: Rate::default(),
        }
    }

    /// Folds one look in: what to show, and whether the line is drained
    /// (everything on the subject decided, and no new message for
    /// `--quiet-s`, counted from the drain's start).
    fn observe(
        &mut self,
        now: Instant,
        status: &DropStatusRow,
        tail: Result<Option<u64>, String>,
    ) -> (Snapshot, bool) {
        let note = tail
            .as_ref()
            .err()
            .map(|e| format!("stream unreadable: {e}"));
        if let Ok(tail) = tail {
            if self.tail.is_some_and(|seen| seen != tail) {
                self.tail_moved_at = now;
            }
            self.tail = Some(tail);
        }
        if self.applied_seq != Some(status.applied_seq) {
            self.applied_seq = Some(status.applied_seq);
            self.applied_moved_at = now;
        }
        let caught_up = self
            .tail
            .is_some_and(|tail| tail.is_none_or(|last| message_seq(status.applied_seq) >= last));
        let still = now.saturating_duration_since(self.applied_moved_at);
        let snapshot = Snapshot {
            decided: status.decided,
            waiting: match (caught_up, status.lease_live, status.waiting_intents) {
                (true, _, _) => Some(0),
                (false, true, waiting) if waiting > 0 => Some(waiting),
                (false, _, _) => None,
            },
            decisions_per_s: self.rate.observe(now, status.decided),
            stalled: (!caught_up && still >= self.stall).then(|| stalled(status, still)),
            note: note.clone(),
        };
        let quiet = now.saturating_duration_since(self.tail_moved_at) >= self.quiet;
        (snapshot, note.is_none() && caught_up && quiet)
    }
}

/// Why nothing has moved for `still`: the owner, its epoch, a halt.
fn stalled(status: &DropStatusRow, still: Duration) -> String {
    let secs = still.as_secs();
    let epoch = status.epoch;
    match (&status.halted, &status.owner, status.lease_live) {
        (Some(reason), owner, _) => format!(
            "stalled {secs} s: partition HALTED (owner {}, epoch {epoch}): {reason}",
            owner.as_deref().unwrap_or("-")
        ),
        (None, Some(owner), true) => {
            format!("stalled {secs} s: owner {owner} (epoch {epoch}) decides nothing")
        }
        (None, Some(owner), false) => format!(
            "stalled {secs} s: no processor owns the line (last owner {owner}, epoch {epoch})"
        ),
        (None, None, _) => format!("stalled {secs} s: no processor has owned the line yet"),
    }
}

/// Decisions per second over the last [`RATE_WINDOW`].
#[derive(Default)]
struct Rate {
    samples: VecDeque<(Instant, u64)>,
}

impl Rate {
    fn observe(&mut self, now: Instant, decided: u64) -> f64 {
        self.samples.push_back((now, decided));
        while self.samples.len() > 2
            && self
                .samples
                .front()
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        let Some(&(since, decided_then)) = self.samples.front() else {
            return 0.0;
        };
        let window = now.saturating_duration_since(since).as_secs_f64();
        if window <= 0.0 {
            return 0.0;
        }
        decided.saturating_sub(decided_then) as f64 / window
    }
}

/// The tally, the audit, and the verdict.
async fn report(args: &Args, sku: &Sku, store: &Store, bus: &Bus) -> anyhow::Result<()> {
    let status = status_of(store, sku).await?;
    let counts = store.outcome_counts(sku).await.map_err(explain)?;
    let audit = dropline_audit::audit(store, bus, sku).await?;
    if args.json {
        let out = serde_json::json!({
            "sku": sku,
            "state": status.drop.status,
            "decided": counts.decided,
            "won": counts.won,
            "sold_out": counts.sold_out,
            "limit_reached": counts.limit_reached,
            "closed": counts.closed,
            "audit_passed": audit.passed(),
            "checks": audit.checks,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_tally(&counts);
        audit_table::print(&audit);
    }
    if let Some(cutoff) = status.drop.closed_seq {
        eprintln!(
            "{sku}: closed at place {cutoff}; {} intents decided",
            counts.decided
        );
    }
    if audit.queued > 0 {
        eprintln!(
            "{} intents came after the drain and are not decided yet",
            audit.queued
        );
    }
    audit_table::verdict(&audit)?;
    eprintln!("{sku}: drained; every promise holds");
    Ok(())
}

fn print_tally(counts: &OutcomeCounts) {
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED).set_header([
        "won",
        "sold_out",
        "limit_reached",
        "closed",
        "decided",
    ]);
    table.add_row([
        counts.won,
        counts.sold_out,
        counts.limit_reached,
        counts.closed,
        counts.decided,
    ]);
    println!("{table}");
}
