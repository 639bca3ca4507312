//! Telling waiting gateways what was decided: each committed batch, and on
//! taking a partition the previous owner's last batch again; and what
//! happened to the drop as a whole (finally sold out, back in stock).
//!
//! At most once and best effort: must not fail a batch nor retry, since a
//! gateway that misses an announcement reads the store before it answers.

use dropline_bus::Bus;
use dropline_core::wire::{DropEvent, LineAfter};
use dropline_core::{BatchPlan, Decision, Ledger, Outcome, Sku};
use dropline_store::{Store, StoreError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::context::Context;

/// Announces the previous owner's last batch again: it may have died
/// between committing and announcing, leaving buyers waiting out their wait.
pub(crate) async fn reannounce_last_batch(ctx: &Context, sku: &Sku) {
    match ctx.store.last_batch(sku, ctx.config.batch_len_max).await {
        Ok(decisions) => publish_decisions(ctx, sku, &decisions, None).await,
        Err(err) => tracing::warn!(%err, "read the last batch to announce it again"),
    }
}

/// Tells waiting gateways about every decision of the batch, new and
/// repeated, and where the `line` stands after it (gateways hold back what
/// the units left cannot cover).
pub(crate) async fn announce(ctx: &Context, sku: &Sku, plan: &BatchPlan, line: LineAfter) {
    publish_decisions(ctx, sku, &plan.decided, Some(line)).await;
    publish_decisions(ctx, sku, &plan.repeated, Some(line)).await;
}

async fn publish_decisions(
    ctx: &Context,
    sku: &Sku,
    decisions: &[Decision],
    line: Option<LineAfter>,
) {
    if let Err(err) = ctx.bus.publish_decisions(sku, decisions, line).await {
        // Gateways fall back to reading the store.
        tracing::warn!(%err, "announce decisions");
    }
}

/// What happened to the drop as a whole, announced in the order the
/// partition's batches made it happen but off the batch loop: announcing a
/// sell-out may read the drop's answers from the store, and the next batch
/// need not wait for that read (on a database 200 ms slow per transaction,
/// `just compare`'s slow-db, the tail of the burst waited 0.2 s for it).
/// One task per partition owner, so a sell-out and a later return of
/// units are never announced the other way round; it ends once the owner's
/// work ends and what it was handed is announced.
pub(crate) struct DropAnnouncer {
    changes: mpsc::UnboundedSender<DropChange>,
    store: Store,
    sku: Sku,
}

#[derive(Debug)]
enum DropChange {
    SoldOut(DropAnswers),
    InStock,
}

/// What a sell-out carries. From the ledger, when it remembers every
/// decision of the drop (a drop whose whole line went through this owner):
/// no store read, and gateways then know every key the line decided.
/// Otherwise the answers other than `sold_out`, read from the store: those
/// committed, being read, and those of the selling batch when the read
/// began before its commit. Begun while a batch that may sell the drop out
/// commits, the sell-out is announced as the batch commits, not a read
/// later (on `just compare`'s slow-db, 200 ms in which every new buyer went
/// to the line instead of being answered at the gateway).
#[derive(Debug)]
pub(crate) enum DropAnswers {
    Remembered(Vec<Decision>),
    Read {
        committed: JoinHandle<Result<Vec<Decision>, StoreError>>,
        of_the_batch: Vec<Decision>,
    },
}

/// At most this many decisions are announced with a sell-out as every
/// decision (`sold_out` ones included): about 1 MiB on the wire and in
/// each gateway's memory for the drop. A longer line announces only its
/// answers other than `sold_out`, and gateways read the store for what
/// they hold back.
const ANNOUNCED_IN_FULL_MAX: usize = 5_000;

impl DropAnswers {
    /// Every decision of the drop, if the ledger remembers them all.
    pub fn remembered(ledger: &Ledger) -> Option<Self> {
        ledger.every_decision().map(Self::Remembered)
    }

    /// Starts reading the answers committed so far. Before a batch's commit
    /// that is every earlier batch: a partition commits one at a time.
    pub fn read(store: &Store, sku: &Sku) -> Self {
        let (store, sku) = (store.clone(), sku.clone());
        Self::Read {
            committed: tokio::spawn(async move { store.answers_other_than_sold_out(&sku).await }),
            of_the_batch: Vec::new(),
        }
    }

    /// Adds the answers of the batch a read began before, once committed.
    pub fn with_batch(self, plan: &BatchPlan) -> Self {
        match self {
            Self::Read { committed, .. } => Self::Read {
                committed,
                of_the_batch: answers_of(&plan.decided),
            },
            remembered @ Self::Remembered(_) => remembered,
        }
    }

    /// The answers to announce, and whether they are every decision.
    async fn collect(self) -> anyhow::Result<(Vec<Decision>, bool)> {
        match self {
            Self::Remembered(every) if every.len() <= ANNOUNCED_IN_FULL_MAX => Ok((every, true)),
            Self::Remembered(every) => Ok((answers_of(&every), false)),
            Self::Read {
                committed,
                of_the_batch,
            } => Ok((merge_answers(committed.await??, of_the_batch), false)),
        }
    }
}

/// What a sell-out carries of a batch's decisions.
fn answers_of(decided: &[Decision]) -> Vec<Decision> {
    decided
        .iter()
        .filter(|decision| decision.outcome != Outcome::SoldOut)
        .cloned()
        .collect()
}

/// Both together, in line order. The read may have begun after the commit
/// and hold the batch's rows too: each place in line once.
fn merge_answers(mut committed: Vec<Decision>, of_the_batch: Vec<Decision>) -> Vec<Decision> {
    committed.extend(of_the_batch);
    committed.sort_unstable_by_key(|decision| decision.seq);
    committed.dedup_by_key(|decision| decision.seq);
    committed
}

impl DropAnnouncer {
    pub fn start(ctx: &Context, sku: &Sku) -> Self {
        let (changes, mut pending) = mpsc::unbounded_channel();
        let (bus, task_sku) = (ctx.bus.clone(), sku.clone());
        tokio::spawn(
            async move {
                while let Some(change) = pending.recv().await {
                    match change {
                        DropChange::SoldOut(answers) => {
                            announce_sell_out(&bus, &task_sku, answers).await;
                        }
                        DropChange::InStock => {
                            let event = DropEvent::InStock {
                                sku: task_sku.clone(),
                            };
                            publish_event(&bus, &event).await;
                        }
                    }
                }
            }
            .instrument(tracing::Span::current()),
        );
        Self {
            changes,
            store: ctx.store.clone(),
            sku: sku.clone(),
        }
    }

    /// The drop is finally sold out: gateways answer `sold_out` themselves.
    /// Its answers are read now unless their read began `ahead`.
    pub fn sold_out(&self, ahead: Option<DropAnswers>) {
        let answers = ahead.unwrap_or_else(|| DropAnswers::read(&self.store, &self.sku));
        // The task ends only when this sender is dropped.
        let _ = self.changes.send(DropChange::SoldOut(answers));
    }

    /// Units came back: purchases go to the line again.
    pub fn in_stock(&self) {
        let _ = self.changes.send(DropChange::InStock);
    }
}

/// Tells every gateway the drop is finally sold out, with the recorded
/// answers a repeated key must still get (from the ledger when it
/// remembers every decision, else read from the store): they answer every
/// other purchase `sold_out` from then on without sending it to the line.
async fn announce_sell_out(bus: &Bus, sku: &Sku, answers: DropAnswers) {
    let (answers, every_decision) = match answers.collect().await {
        Ok(collected) => collected,
        // Gateways learn the sell-out from the store at their next refresh.
        Err(err) => {
            return tracing::warn!(
                err = format!("{err:#}"),
                "read the answers to announce a sell-out"
            )
        }
    };
    for event in DropEvent::sold_out(sku, &answers, every_decision) {
        publish_event(bus, &event).await;
    }
    tracing::info!(
        answers = answers.len(),
        every_decision,
        "announced the final sell-out"
    );
}

async fn publish_event(bus: &Bus, event: &DropEvent) {
    if let Err(err) = bus.publish_drop_event(event).await {
        // Gateways learn the same from the store at their next refresh.
        tracing::warn!(%err, "announce a drop event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dropline_core::{IdempotencyKey, Quantity, UserId};

    fn decision(seq: u64, outcome: Outcome) -> Decision {
        Decision {
            seq,
            key: IdempotencyKey::parse(format!("k{seq}")).expect("key"),
            user_id: UserId::parse(format!("u{seq}")).expect("user"),
            quantity: Quantity::ONE,
            outcome,
            order_id: None,
        }
    }

    #[test]
    fn a_sell_out_carries_every_answer_but_sold_out_once_in_line_order() {
        // The read began after the commit: it holds the batch's winner too.
        let before = vec![decision(1, Outcome::Won), decision(5, Outcome::Won)];
        let batch = vec![
            decision(3, Outcome::LimitReached),
            decision(5, Outcome::Won),
            decision(6, Outcome::SoldOut),
        ];
        let answers = merge_answers(before, answers_of(&batch));
        let seqs: Vec<(u64, Outcome)> = answers.iter().map(|d| (d.seq, d.outcome)).collect();
        assert_eq!(
            seqs,
            [
                (1, Outcome::Won),
                (3, Outcome::LimitReached),
                (5, Outcome::Won)
            ]
        );
    }
}
