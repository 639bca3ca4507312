//! Which drops take new keys, as this gateway knows it: the admission view
//! (every drop's state and opening time, replaced whole by `refresh.rs`), the rule that a scheduled drop opens by this gateway's
//! clock, and the one store read for a SKU the view does not know yet.
//!
//! Must not read the store per request: a SKU in the view is answered from
//! memory, any other is read at most once per `drop_cache_miss_ttl_ms`. Only
//! gates admission: a view a moment old may admit or refuse a new key for
//! that moment, never decide one (the line does, in order).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dropline_core::{DropStatus, Sku};
use dropline_store::{Admission, Store};
use tokio::sync::OnceCell;

/// What admission needs of a drop (its SKU is the key of the view).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub status: DropStatus,
    pub opens_at: Option<DateTime<Utc>>,
    /// Units left when the view was read: where a SKU's first lane starts
    /// its room (`room.rs`), never what admits or refuses a key.
    pub remaining: u32,
}

impl From<&Admission> for Entry {
    fn from(admission: &Admission) -> Self {
        Self {
            status: admission.status,
            opens_at: admission.opens_at,
            remaining: admission.remaining,
        }
    }
}

/// Whether a drop takes new keys now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    NotOpen(NotOpen),
}

/// Why a drop takes no new keys now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotOpen {
    Scheduled { opens_at: Option<DateTime<Utc>> },
    Paused,
    Closed,
}

impl NotOpen {
    pub fn state(self) -> &'static str {
        match self {
            NotOpen::Scheduled { .. } => DropStatus::Scheduled.as_str(),
            NotOpen::Paused => DropStatus::Paused.as_str(),
            NotOpen::Closed => DropStatus::Closed.as_str(),
        }
    }
}

/// The state a buyer sees at `now` (see [`DropStatus::as_met`]).
pub fn effective_status(
    status: DropStatus,
    opens_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> DropStatus {
    status.as_met(opens_at.is_some_and(|at| at <= now))
}

impl Entry {
    pub fn gate(&self, now: DateTime<Utc>) -> Gate {
        match effective_status(self.status, self.opens_at, now) {
            DropStatus::Open => Gate::Open,
            DropStatus::Scheduled => Gate::NotOpen(NotOpen::Scheduled {
                opens_at: self.opens_at,
            }),
            DropStatus::Paused => Gate::NotOpen(NotOpen::Paused),
            DropStatus::Closed => Gate::NotOpen(NotOpen::Closed),
        }
    }
}

/// One store read of a SKU the view did not know, shared by every request
/// that asks while it is fresh.
struct MissRead {
    started: Instant,
    /// `Err` when the store could not answer: remembered like an answer, so
    /// that a store that is down is not asked once per request either.
    result: OnceCell<Result<Option<Entry>, ()>>,
    /// What the previous read found: the best answer while the store is down.
    previous: Option<Entry>,
}

/// A drop neither in the view nor readable from the store (the store's
/// error is logged where it happened).
#[derive(Debug)]
pub struct Unknowable;

pub struct Admissions {
    store: Store,
    miss_ttl: Duration,
    /// Replaced whole at each refresh; a request clones nothing but the hit.
    view: RwLock<HashMap<Sku, Entry>>,
    misses: Mutex<HashMap<Sku, Arc<MissRead>>>,
}

impl Admissions {
    pub fn new(store: Store, miss_ttl: Duration) -> Self {
        Self {
            store,
            miss_ttl,
            view: RwLock::default(),
            misses: Mutex::default(),
        }
    }

    /// Whether `sku` takes new keys at `now`; `None` for no such drop.
    pub async fn gate(&self, sku: &Sku, now: DateTime<Utc>) -> Result<Option<Gate>, Unknowable> {
        if let Some(entry) = self.known(sku) {
            return Ok(Some(entry.gate(now)));
        }
        Ok(self.read_missing(sku).await?.map(|entry| entry.gate(now)))
    }

    /// Replaces the view with `drops`; forgets the misses it answers and
    /// those gone stale.
    pub fn replace(&self, drops: &[Admission]) {
        let view: HashMap<Sku, Entry> = drops.iter().map(|a| (a.sku.clone(), a.into())).collect();
        let mut misses = self.misses.lock().unwrap_or_else(|p| p.into_inner());
        misses
            .retain(|sku, miss| !view.contains_key(sku) && miss.started.elapsed() < self.miss_ttl);
        drop(misses);
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = view;
    }

    /// Units of `sku` left when the view was read, if the view has it.
    pub fn remaining(&self, sku: &Sku) -> Option<u32> {
        self.known(sku).map(|entry| entry.remaining)
    }

    fn known(&self, sku: &Sku) -> Option<Entry> {
        // A panic cannot leave the map half-written (it is replaced whole).
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        view.get(sku).copied()
    }

    /// A SKU unknown to the view may be a drop created since the last
    /// refresh: read it, once per `miss_ttl` however many ask.
    async fn read_missing(&self, sku: &Sku) -> Result<Option<Entry>, Unknowable> {
        let miss = self.miss_read(sku);
        let result = miss
            .result
            .get_or_init(|| async {
                match self.store.drop(sku).await {
                    Ok(row) => Ok(row.map(|row| Entry {
                        status: row.status,
                        opens_at: row.opens_at,
                        remaining: row.remaining,
                    })),
                    Err(err) => {
                        tracing::warn!(%sku, %err, "read a drop the admission view lacks");
                        Err(())
                    }
                }
            })
            .await;
        match (result, miss.previous) {
            (Ok(found), _) => Ok(*found),
            // Postgres unreachable: a drop seen before is still the best
            // answer; an unseen one cannot be answered.
            (Err(()), Some(previous)) => Ok(Some(previous)),
            (Err(()), None) => Err(Unknowable),
        }
    }

    /// The fresh read of `sku`, or a new one started now.
    fn miss_read(&self, sku: &Sku) -> Arc<MissRead> {
        let mut misses = self.misses.lock().unwrap_or_else(|p| p.into_inner());
        let previous = match misses.get(sku) {
            Some(miss) if miss.started.elapsed() < self.miss_ttl => return miss.clone(),
            Some(miss) => match miss.result.get() {
                Some(Ok(found)) => *found,
                _ => miss.previous,
            },
            None => None,
        };
        let miss = Arc::new(MissRead {
            started: Instant::now(),
            result: OnceCell::new(),
            previous,
        });
        misses.insert(sku.clone(), miss.clone());
        miss
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn entry(status: DropStatus, opens_at: Option<DateTime<Utc>>) -> Entry {
        Entry {
            status,
            opens_at,
            remaining: 1,
        }
    }

    #[test]
    fn a_scheduled_drop_opens_by_the_clock_at_its_opening_time() {
        let scheduled = entry(DropStatus::Scheduled, Some(at(10)));
        assert_eq!(
            scheduled.gate(at(9)),
            Gate::NotOpen(NotOpen::Scheduled {
                opens_at: Some(at(10))
            })
        );
        assert_eq!(scheduled.gate(at(10)), Gate::Open);
        assert_eq!(scheduled.gate(at(11)), Gate::Open);
    }

    #[test]
    fn paused_and_closed_drops_stay_shut_whatever_their_opening_time() {
        for (status, why) in [
            (DropStatus::Paused, NotOpen::Paused),
            (DropStatus::Closed, NotOpen::Closed),
        ] {
            let shut = entry(status, Some(at(0)));
            assert_eq!(shut.gate(at(100)), Gate::NotOpen(why));
            assert_eq!(why.state(), status.as_str());
        }
        assert_eq!(entry(DropStatus::Open, None).gate(at(0)), Gate::Open);
    }
}
