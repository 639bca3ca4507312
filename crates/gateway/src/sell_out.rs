//! The sold-out fast path's memory: for each drop finally sold out, the
//! recorded answers that are not `sold_out` (or, when the owner knew them
//! all, every recorded answer), by idempotency key, learned from the
//! owner's `SoldOut` announcement (all its parts) or from the store;
//! lifted by `InStock` or a view that shows units again.
//!
//! Must not decide: it repeats what the line recorded, and the line's own
//! rule that once a drop is finally sold out every later purchase is
//! `sold_out`. Must never let older evidence override newer: each change
//! carries the moment its evidence was seen, and an older one is ignored
//! (a store read that began before an `InStock` arrived must not reinstate
//! the sell-out). Does no I/O.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use dropline_core::{Decision, IdempotencyKey, Sku};

/// Keys with a recorded answer other than `sold_out` (bounded by the stock
/// times the per-user limit, plus the keys refused for the limit), and the
/// `sold_out` ones when the announcement carried every decision (bounded
/// by what the owner announces so, `ANNOUNCED_IN_FULL_MAX`).
type Answers = HashMap<IdempotencyKey, Decision>;

/// What the fast path answers for a key of a finally sold-out drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FastAnswer {
    /// The key's recorded answer.
    Recorded(Decision),
    /// Any other key: `sold_out`, without standing in line.
    SoldOut,
}

/// The parts of one `SoldOut` announcement received so far.
struct Assembly {
    parts: u32,
    next: u32,
    /// When its first part arrived: the evidence time of the whole.
    first_at: Instant,
    answers: Vec<Decision>,
    every_decision: bool,
}

#[derive(Default)]
struct Known {
    /// When the evidence behind `answers` was seen; `None` before any.
    evidence_at: Option<Instant>,
    /// `Some` while the drop is finally sold out.
    answers: Option<Arc<Answers>>,
    /// `answers` holds every decision recorded as of the sell-out, its
    /// `sold_out` ones too (announced so by an owner that knew them all).
    every_decision: bool,
    assembly: Option<Assembly>,
}

impl Known {
    /// Applies a change seen at `at`, unless newer evidence is in already.
    fn set(&mut self, answers: Option<Arc<Answers>>, every_decision: bool, at: Instant) -> bool {
        if self.evidence_at.is_some_and(|seen| seen > at) {
            return false;
        }
        self.evidence_at = Some(at);
        self.every_decision = every_decision && answers.is_some();
        self.answers = answers;
        true
    }
}

/// One part of a `SoldOut` announcement, as it came.
pub struct SoldOutPart {
    pub part: u32,
    pub parts: u32,
    pub answers: Vec<Decision>,
    pub every_decision: bool,
}

#[derive(Default)]
pub struct SellOuts {
    skus: RwLock<HashMap<Sku, Known>>,
}

impl SellOuts {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Sku, Known>> {
        // Every change is one assignment under the lock: nothing half-done
        // survives a panic, so poisoning is moot.
        self.skus.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The fast answer for `key`, while `sku` is known finally sold out.
    pub fn answer(&self, sku: &Sku, key: &IdempotencyKey) -> Option<FastAnswer> {
        let skus = self.skus.read().unwrap_or_else(|p| p.into_inner());
        let answers = skus.get(sku)?.answers.as_ref()?;
        Some(match answers.get(key) {
            Some(decision) => FastAnswer::Recorded(decision.clone()),
            None => FastAnswer::SoldOut,
        })
    }

    pub fn is_sold_out(&self, sku: &Sku) -> bool {
        let skus = self.skus.read().unwrap_or_else(|p| p.into_inner());
        skus.get(sku).is_some_and(|known| known.answers.is_some())
    }

    /// `sku` is finally sold out and its answers are every decision the
    /// line recorded as of the sell-out: [`Self::answer`] then gives a
    /// repeat of any key decided by then its recorded answer, `sold_out`
    /// ones with their `seq`, and no store read could tell more.
    pub fn knows_every_decision(&self, sku: &Sku) -> bool {
        let skus = self.skus.read().unwrap_or_else(|p| p.into_inner());
        skus.get(sku).is_some_and(|known| known.every_decision)
    }

    /// Takes part `part` (from 1) of `parts` of a `SoldOut` announcement
    /// that arrived at `at`; the sell-out holds once every part is in, in
    /// order. A part out of place (one was lost) drops the announcement:
    /// the refresh then reads the answers from the store.
    pub fn part(&self, sku: &Sku, part: SoldOutPart, at: Instant) {
        let SoldOutPart {
            part,
            parts,
            answers,
            every_decision,
        } = part;
        let mut skus = self.write();
        let known = skus.entry(sku.clone()).or_default();
        if part == 1 {
            known.assembly = Some(Assembly {
                parts,
                next: 1,
                first_at: at,
                answers: Vec::new(),
                every_decision,
            });
        }
        let Some(mut assembly) = known.assembly.take() else {
            tracing::info!(%sku, part, parts, "a sell-out part without its first; the store will tell");
            return;
        };
        if assembly.parts != parts || assembly.next != part {
            tracing::info!(%sku, part, parts, "a sell-out part out of place; the store will tell");
            return;
        }
        assembly.answers.extend(answers);
        assembly.next += 1;
        if assembly.next <= parts {
            known.assembly = Some(assembly);
            return;
        }
        let answers = Some(Arc::new(by_key(assembly.answers)));
        if known.set(answers, assembly.every_decision, assembly.first_at) {
            tracing::info!(%sku, "finally sold out (announced): new keys answered at once");
        }
    }

    /// Installs a sell-out read from the store, whose evidence (a view
    /// showing no unit left) was read at `at`.
    pub fn install(&self, sku: &Sku, answers: Vec<Decision>, at: Instant) {
        let installed = self.write().entry(sku.clone()).or_default().set(
            Some(Arc::new(by_key(answers))),
            false,
            at,
        );
        if installed {
            tracing::info!(%sku, "finally sold out (from the store): new keys answered at once");
        }
    }

    /// Lifts the sell-out of `sku` (units came back, or the drop closed),
    /// on evidence seen at `at`; an announcement being assembled is dropped.
    pub fn lift(&self, sku: &Sku, at: Instant) {
        let mut skus = self.write();
        let known = skus.entry(sku.clone()).or_default();
        let was = known.answers.is_some();
        known.assembly = None;
        if known.set(None, false, at) && was {
            tracing::info!(%sku, "in stock again: purchases go to the line");
        }
    }

    /// Forgets drops `keep` refuses, unless evidence newer than `before`
    /// came for them (a drop created after the view was read).
    pub fn retain(&self, before: Instant, keep: impl Fn(&Sku) -> bool) {
        self.write()
            .retain(|sku, known| keep(sku) || known.evidence_at.is_some_and(|at| at > before));
    }
}

fn by_key(answers: Vec<Decision>) -> Answers {
    answers.into_iter().map(|d| (d.key.clone(), d)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use dropline_core::{Outcome, Quantity, UserId};

    fn won(key: &str, seq: u64) -> Decision {
        Decision {
            seq,
            key: IdempotencyKey::parse(key).unwrap(),
            user_id: UserId::parse(format!("u-{key}")).unwrap(),
            quantity: Quantity::parse(1).unwrap(),
            outcome: Outcome::Won,
            order_id: Some(uuid::Uuid::nil()),
        }
    }

    fn part(part: u32, parts: u32, answers: Vec<Decision>) -> SoldOutPart {
        SoldOutPart {
            part,
            parts,
            answers,
            every_decision: false,
        }
    }

    fn key(raw: &str) -> IdempotencyKey {
        IdempotencyKey::parse(raw).unwrap()
    }

    fn sku() -> Sku {
        Sku::parse("s1").unwrap()
    }

    #[test]
    fn a_sell_out_holds_once_every_part_is_in_and_answers_each_key() {
        let sell_outs = SellOuts::default();
        let now = Instant::now();
        sell_outs.part(&sku(), part(1, 2, vec![won("a", 1)]), now);
        assert_eq!(
            sell_outs.answer(&sku(), &key("new")),
            None,
            "part 2 missing"
        );
        sell_outs.part(&sku(), part(2, 2, vec![won("b", 2)]), now);
        assert_eq!(
            sell_outs.answer(&sku(), &key("b")),
            Some(FastAnswer::Recorded(won("b", 2)))
        );
        assert_eq!(
            sell_outs.answer(&sku(), &key("new")),
            Some(FastAnswer::SoldOut)
        );
    }

    #[test]
    fn an_announcement_of_every_decision_answers_sold_out_repeats_with_their_place() {
        let sell_outs = SellOuts::default();
        let now = Instant::now();
        let late = Decision {
            outcome: Outcome::SoldOut,
            order_id: None,
            ..won("late", 9)
        };
        let every = |part, parts, answers| SoldOutPart {
            every_decision: true,
            ..super::tests::part(part, parts, answers)
        };
        sell_outs.part(&sku(), every(1, 2, vec![won("a", 1)]), now);
        assert!(!sell_outs.knows_every_decision(&sku()), "part 2 missing");
        sell_outs.part(&sku(), every(2, 2, vec![late.clone()]), now);
        assert!(sell_outs.knows_every_decision(&sku()));
        assert_eq!(
            sell_outs.answer(&sku(), &key("late")),
            Some(FastAnswer::Recorded(late))
        );
        // A store read carries only the answers other than `sold_out`.
        sell_outs.install(&sku(), vec![won("a", 1)], now + Duration::from_millis(1));
        assert!(sell_outs.is_sold_out(&sku()));
        assert!(!sell_outs.knows_every_decision(&sku()));
        sell_outs.part(&sku(), every(1, 1, vec![]), now + Duration::from_millis(2));
        sell_outs.lift(&sku(), now + Duration::from_millis(3));
        assert!(!sell_outs.knows_every_decision(&sku()));
    }

    #[test]
    fn a_lost_part_leaves_the_drop_to_the_line() {
        let sell_outs = SellOuts::default();
        let now = Instant::now();
        sell_outs.part(&sku(), part(1, 3, vec![won("a", 1)]), now);
        sell_outs.part(&sku(), part(3, 3, vec![won("c", 3)]), now);
        assert!(!sell_outs.is_sold_out(&sku()));
        // A re-announcement starts over and completes.
        sell_outs.part(&sku(), part(1, 1, vec![won("a", 1)]), now);
        assert!(sell_outs.is_sold_out(&sku()));
    }

    #[test]
    fn a_store_read_older_than_an_in_stock_does_not_reinstate_the_sell_out() {
        let sell_outs = SellOuts::default();
        let read_at = Instant::now();
        let in_stock_at = read_at + Duration::from_millis(5);
        sell_outs.lift(&sku(), in_stock_at);
        sell_outs.install(&sku(), vec![won("a", 1)], read_at);
        assert!(!sell_outs.is_sold_out(&sku()));
        sell_outs.install(
            &sku(),
            vec![won("a", 1)],
            in_stock_at + Duration::from_millis(1),
        );
        assert!(sell_outs.is_sold_out(&sku()));
    }

    #[test]
    fn an_in_stock_lifts_the_sell_out_and_forgets_a_half_announcement() {
        let sell_outs = SellOuts::default();
        let now = Instant::now();
        sell_outs.install(&sku(), vec![], now);
        sell_outs.part(&sku(), part(1, 2, vec![]), now);
        sell_outs.lift(&sku(), now + Duration::from_millis(1));
        sell_outs.part(&sku(), part(2, 2, vec![]), now + Duration::from_millis(2));
        assert_eq!(sell_outs.answer(&sku(), &key("new")), None);
    }

    #[test]
    fn drops_gone_from_the_view_are_forgotten_unless_heard_of_since() {
        let sell_outs = SellOuts::default();
        let read_at = Instant::now();
        sell_outs.install(&sku(), vec![], read_at);
        let newer = Sku::parse("s2").unwrap();
        sell_outs.install(&newer, vec![], read_at + Duration::from_millis(1));
        sell_outs.retain(read_at, |_| false);
        assert!(!sell_outs.is_sold_out(&sku()));
        assert!(sell_outs.is_sold_out(&newer));
    }
}
