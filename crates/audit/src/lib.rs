//! Audits a drop's promises from the two sources of truth: Postgres (what
//! was decided) and the stream (what was accepted).
//!
//! Run by `dropctl verify` and after every fault test. Reads only; never
//! repairs. The strongest check replays the stream through a fresh
//! [`Ledger`] and compares every decision: same input, same decisions.

use std::collections::{HashMap, HashSet};

use dropline_bus::{Bus, PulledEntry};
use dropline_core::{Decision, Entry, Ledger, LedgerState, Outcome, Sku};
use dropline_store::{DropRow, OperationRow, Store};
use serde::Serialize;

/// One check and what it found.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub sku: String,
    pub checks: Vec<Check>,
    /// Intents accepted and not decided yet (beyond the applied sequence).
    pub queued: usize,
}

impl AuditReport {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    pub fn violations(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed)
    }

    fn check(&mut self, name: &'static str, passed: bool, detail: String) {
        self.checks.push(Check {
            name,
            passed,
            detail,
        });
    }
}

/// Audits `sku`. Errors only when a source cannot be read.
pub async fn audit(store: &Store, bus: &Bus, sku: &Sku) -> anyhow::Result<AuditReport> {
    let status = store
        .drop_statuses(Some(sku))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no drop {sku}"))?;
    let decisions = store.decisions(sku).await?;
    let operations = store.operations(sku).await?;
    let stream = bus
        .read_all_intents(sku)
        .await
        .map_err(|e| anyhow::anyhow!("read the stream: {e}"))?;
    let drop = &status.drop;
    let mut report = AuditReport {
        sku: sku.to_string(),
        checks: Vec::new(),
        queued: stream
            .iter()
            .filter(|i| i.seq() > status.applied_seq)
            .count(),
    };

    check_stock(&mut report, drop, &decisions);
    check_one_decision_per_key(&mut report, &decisions);
    check_per_user_limit(&mut report, &decisions, drop.per_user_limit.get());
    check_every_accepted_intent_decided(
        &mut report,
        &decisions,
        &operations,
        &stream,
        status.applied_seq,
    );
    check_replay(
        &mut report,
        (&decisions, &operations),
        &stream,
        status.applied_seq,
        drop,
    );
    Ok(report)
}

/// Nothing oversold, stock conserved, and the drop's count of units won is
/// what its orders hold.
fn check_stock(report: &mut AuditReport, drop: &DropRow, decisions: &[Decision]) {
    let stock = drop.initial_stock + drop.restocked;
    report.check(
        "no oversell",
        drop.won_units <= stock,
        format!("{} units won of {stock}", drop.won_units),
    );
    report.check(
        "stock conserved",
        drop.remaining + drop.won_units == stock,
        format!(
            "remaining {} + won {} = {} (stock {stock})",
            drop.remaining,
            drop.won_units,
            drop.remaining + drop.won_units
        ),
    );
    let won_rows: u32 = decisions
        .iter()
        .filter(|d| d.outcome == Outcome::Won)
        .map(|d| d.quantity.get())
        .sum();
    report.check(
        "won units match orders",
        won_rows == drop.won_units,
        format!(
            "orders hold {won_rows} units, the drop says {}",
            drop.won_units
        ),
    );
}

fn check_one_decision_per_key(report: &mut AuditReport, decisions: &[Decision]) {
    let keys: HashSet<_> = decisions.iter().map(|d| &d.key).collect();
    let seqs: HashSet<_> = decisions.iter().map(|d| d.seq).collect();
    let orders: Vec<_> = decisions.iter().filter_map(|d| d.order_id).collect();
    let distinct_orders: HashSet<_> = orders.iter().collect();
    report.check(
        "one decision per key",
        keys.len() == decisions.len()
            && seqs.len() == decisions.len()
            && distinct_orders.len() == orders.len(),
        format!(
            "{} decisions, {} keys, {} sequences, {} orders ({} distinct)",
            decisions.len(),
            keys.len(),
            seqs.len(),
            orders.len(),
            distinct_orders.len()
        ),
    );
}

fn check_per_user_limit(report: &mut AuditReport, decisions: &[Decision], limit: u32) {
    let mut per_user: HashMap<&str, u32> = HashMap::new();
    for d in decisions.iter().filter(|d| d.outcome == Outcome::Won) {
        *per_user.entry(d.user_id.as_str()).or_default() += d.quantity.get();
    }
    let over: Vec<_> = per_user
        .iter()
        .filter(|(_, units)| **units > limit)
        .collect();
    report.check(
        "per-user limit",
        over.is_empty(),
        match over.first() {
            None => format!("no user over {limit}"),
            Some((user, units)) => format!(
                "{} users over {limit}, e.g. {user} with {units}",
                over.len()
            ),
        },
    );
}

fn check_every_accepted_intent_decided(
    report: &mut AuditReport,
    decisions: &[Decision],
    operations: &[OperationRow],
    stream: &[PulledEntry],
    applied_seq: u64,
) {
    let by_seq: HashSet<u64> = decisions.iter().map(|d| d.seq).collect();
    let keys: HashSet<&str> = decisions.iter().map(|d| d.key.as_str()).collect();
    let ops: HashSet<&str> = operations.iter().map(|o| o.operation_id.as_str()).collect();
    let mut undecided = Vec::new();
    let mut malformed = Vec::new();
    for entry in stream.iter().filter(|m| m.seq() <= applied_seq) {
        match entry {
            // Decided at this sequence, or a repeat of a key decided earlier.
            PulledEntry::Purchase(i)
                if by_seq.contains(&i.seq) || keys.contains(i.key.as_str()) => {}
            // Applied, here or (a retry) at an earlier place.
            PulledEntry::Control(c) if ops.contains(c.op.as_str()) => {}
            // An entry of a kind this build does not know must stop the line,
            // never fall behind the applied sequence.
            PulledEntry::Purchase(_) | PulledEntry::Control(_) | PulledEntry::Unknown { .. } => {
                undecided.push(entry.seq())
            }
            PulledEntry::Malformed { seq, .. } => malformed.push(*seq),
        }
    }
    report.check(
        "every accepted intent decided",
        undecided.is_empty(),
        format!(
            "{} entries up to applied sequence {applied_seq}; undecided: {:?}",
            stream.iter().filter(|m| m.seq() <= applied_seq).count(),
            &undecided[..undecided.len().min(10)]
        ),
    );
    report.check(
        "no stray messages",
        malformed.is_empty(),
        format!(
            "messages that are not dropline's: {:?}",
            &malformed[..malformed.len().min(10)]
        ),
    );
}

/// Replays the stream through a fresh ledger: the decisions and operator
/// actions must be exactly the recorded ones (first come, first served;
/// same input, same decisions).
fn check_replay(
    report: &mut AuditReport,
    recorded: (&[Decision], &[OperationRow]),
    stream: &[PulledEntry],
    applied_seq: u64,
    drop: &DropRow,
) {
    let (decisions, operations) = recorded;
    let oldest_decision = decisions.iter().map(|d| d.seq).min();
    let oldest_message = stream.first().map(PulledEntry::seq);
    if let (Some(decided), Some(held)) = (oldest_decision, oldest_message) {
        if held > decided {
            report.check(
                "replay matches",
                true,
                "skipped: the stream no longer holds the drop's first intents".into(),
            );
            return;
        }
    }
    let entries: Vec<Entry> = stream
        .iter()
        .filter(|m| m.seq() <= applied_seq)
        .filter_map(PulledEntry::entry)
        .collect();
    let ledger = Ledger::new(LedgerState::fresh(
        drop.sku.clone(),
        drop.initial_stock,
        drop.per_user_limit,
    ));
    let plan = ledger.decide(&entries);
    let mismatch = first_difference(&plan.decided, decisions, |d| (d.seq, d.outcome.as_str()));
    let recorded_controls = operations
        .iter()
        .map(OperationRow::control)
        .collect::<Result<Vec<_>, _>>();
    let control_mismatch = match &recorded_controls {
        Ok(recorded) => first_difference(&plan.controls, recorded, |c| (c.seq, c.action.kind())),
        Err(err) => Some(format!("unreadable operation: {err}")),
    };
    report.check(
        "replay matches",
        mismatch.is_none() && control_mismatch.is_none(),
        match mismatch.or(control_mismatch) {
            None => format!(
                "{} decisions and {} operator actions replayed from the stream, all identical",
                plan.decided.len(),
                plan.controls.len()
            ),
            Some(difference) => difference,
        },
    );
}

/// Where `replayed` and `recorded` first differ, in words.
fn first_difference<T: PartialEq, S: std::fmt::Debug>(
    replayed: &[T],
    recorded: &[T],
    show: impl Fn(&T) -> S,
) -> Option<String> {
    let at = replayed
        .iter()
        .zip(recorded)
        .position(|(r, d)| r != d)
        .or((replayed.len() != recorded.len()).then(|| replayed.len().min(recorded.len())))?;
    Some(format!(
        "first difference at entry {at}: replay {:?}, recorded {:?}",
        replayed.get(at).map(&show),
        recorded.get(at).map(&show)
    ))
}
