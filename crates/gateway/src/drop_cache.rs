//! A short-lived cache of drops, so that a burst of 50,000 purchases on one
//! SKU reads the drop from Postgres once, not 50,000 times. Must only gate
//! admission: a stale status may admit or refuse a purchase for a moment,
//! never decide one (the processor does, in stream order).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use dropline_core::Sku;
use dropline_store::{DropRow, Store, StoreError};

/// A cached lookup: when it was read, and the drop (`None`: no such drop).
type Entry = (Instant, Option<Arc<DropRow>>);

pub struct DropCache {
    store: Store,
    ttl: Duration,
    miss_ttl: Duration,
    /// Shared rows: a hit costs a reference count, not a copy of the row.
    entries: RwLock<HashMap<Sku, Entry>>,
    /// One refresh in flight per SKU; everyone else waits for its result.
    refreshing: Mutex<HashMap<Sku, Arc<tokio::sync::Mutex<()>>>>,
}

impl DropCache {
    pub fn new(store: Store, ttl: Duration, miss_ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            miss_ttl,
            entries: RwLock::default(),
            refreshing: Mutex::default(),
        }
    }

    pub async fn get(&self, sku: &Sku) -> Result<Option<Arc<DropRow>>, StoreError> {
        if let Some(hit) = self.fresh(sku) {
            return Ok(hit);
        }
        let gate = self
            .refreshing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(sku.clone())
            .or_default()
            .clone();
        let _refreshing = gate.lock().await;
        if let Some(hit) = self.fresh(sku) {
            return Ok(hit);
        }
        let row = match self.store.drop(sku).await {
            Ok(row) => row.map(Arc::new),
            // Postgres unreachable: a drop seen before is still the best
            // answer (its status rarely changes mid-burst); an unseen one is
            // an error.
            Err(err) => match self.stale(sku) {
                Some(row) => {
                    tracing::warn!(%sku, %err, "read drop; using the cached one");
                    return Ok(row);
                }
                None => return Err(err),
            },
        };
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sku.clone(), (Instant::now(), row.clone()));
        Ok(row)
    }

    fn stale(&self, sku: &Sku) -> Option<Option<Arc<DropRow>>> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries.get(sku).and_then(|(_, row)| row.clone()).map(Some)
    }

    fn fresh(&self, sku: &Sku) -> Option<Option<Arc<DropRow>>> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let (loaded, row) = entries.get(sku)?;
        let ttl = if row.is_some() {
            self.ttl
        } else {
            self.miss_ttl
        };
        (loaded.elapsed() < ttl).then(|| row.clone())
    }
}
