//! Keeping what the gateway knows of every drop current: a task reads every
//! drop's admission in one query every `admission_refresh_ms` (and at once
//! when nudged by an `AdmissionChanged` event), replaces the admission
//! view, reports the newest admission change applied (`gateways` table, so
//! a drain knows when every gateway refuses a closed drop).
//!
//! Must not serve requests nor decide. A store that does not answer leaves
//! the last view in use: admission is then stale, never lost.

use std::sync::Arc;
use std::time::Duration;

use dropline_store::Store;
use tokio::sync::Notify;

use crate::admission::Admissions;

pub struct Refresher {
    pub store: Store,
    pub admissions: Arc<Admissions>,
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
    }
}
