//! Keeping what the gateway knows of every drop current: a task reads every
//! drop's admission in one query every `admission_refresh_ms` (and at once
//! when nudged by an `AdmissionChanged` event), replaces the admission
//! view, reports the newest admission change applied (`gateways` table, so
//! a drain knows when every gateway refuses a closed drop), and reconciles
//! the sell-outs with what the view shows: a drop open with no unit left
//! and no sell-out known gets one from the store (a gateway that started
//! late or missed the announcement), one with units again loses it.
//!
//! Must not serve requests nor decide. A store that does not answer leaves
//! the last view in use: admission is then stale, never lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use dropline_core::{DropStatus, Sku};
use dropline_store::{AdmissionView, Store};
use tokio::sync::Notify;

use crate::admission::{effective_status, Admissions};
use crate::publisher::Publisher;
use crate::sell_out::SellOuts;

pub struct Refresher {
    pub store: Store,
    pub admissions: Arc<Admissions>,
    pub sell_outs: Arc<SellOuts>,
    /// Told of sell-outs and restocks the view shows, for its lanes.
    pub publisher: Arc<Publisher>,
    pub instance_id: String,
    pub every: Duration,
    /// Wakes the task before its next tick.
    pub nudge: Arc<Notify>,
}

impl Refresher {
    /// Refreshes at once, then every `every` or when nudged, until aborted.
    pub async fn run(self) {
        loop {
            self.refresh().await;
            tokio::select! {
                _ = tokio::time::sleep(self.every) => {}
                _ = self.nudge.notified() => {}
            }
        }
    }

    async fn refresh(&self) {
        // Taken before the read: evidence that came while the view was read
        // is newer than the view, and wins over it.
        let read_at = Instant::now();
        let view = match self.store.admission_view().await {
            Ok(view) => view,
            Err(err) => {
                tracing::warn!(%err, "read the admission view; keeping the last one");
                return;
            }
        };
        self.admissions.replace(&view.drops);
        if let Err(err) = self
            .store
            .gateway_heartbeat(&self.instance_id, view.version)
            .await
        {
            tracing::warn!(%err, "report the admission version applied");
        }
        self.reconcile_sell_outs(&view, read_at).await;
    }

    async fn reconcile_sell_outs(&self, view: &AdmissionView, read_at: Instant) {
        let now = Utc::now();
        for drop in &view.drops {
            let status = effective_status(drop.status, drop.opens_at, now);
            if drop.remaining > 0 || status == DropStatus::Closed {
                // Units again (a restock whose InStock was lost), or a drop
                // that takes no key ever again: nothing to answer fast.
                if self.sell_outs.is_sold_out(&drop.sku) {
                    self.sell_outs.lift(&drop.sku, read_at);
                    self.publisher.restocked(&drop.sku);
                }
            } else if status == DropStatus::Open && !self.sell_outs.is_sold_out(&drop.sku) {
                self.learn_sell_out(&drop.sku, read_at).await;
            }
        }
        let skus: std::collections::HashSet<&Sku> = view.drops.iter().map(|d| &d.sku).collect();
        self.sell_outs.retain(read_at, |sku| skus.contains(sku));
    }

    /// No unit left means finally sold out (only a restock, itself in line,
    /// brings units back): every decision after the view's read is
    /// `sold_out`, so the answers read now are all a repeated key can need.
    async fn learn_sell_out(&self, sku: &Sku, read_at: Instant) {
        match self.store.answers_other_than_sold_out(sku).await {
            Ok(answers) => {
                self.sell_outs.install(sku, answers, read_at);
                self.publisher.sold_out(sku);
            }
            // The line answers meanwhile; the next refresh tries again.
            Err(err) => tracing::warn!(%sku, %err, "read the answers of a sold-out drop"),
        }
    }
}
