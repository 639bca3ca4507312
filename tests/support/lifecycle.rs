//! Operating a test's drop the way an operator does: admission changes in
//! the store (with or without the event that makes gateways read them at
//! once), entries in the drop's line (close, restock), waiting until every
//! live gateway has applied an admission change; and telling a sold-out
//! answer given at once from one decided in line.

use std::time::{Duration, Instant};

use dropline_bus::{Bus, BusOptions};
use dropline_core::wire::{ControlPayload, DropEvent};
use dropline_core::{Action, OperationId, OperatorId, Stock};
use dropline_store::AdmissionChange;

use crate::{db, Answer, TestApp};

/// Gateways heard from within this long count as live.
const GATEWAY_ALIVE_MS: i64 = 3_000;

impl TestApp {
    async fn bus(&self) -> Bus {
        Bus::connect(&self.nats_url, &BusOptions::default(), true)
            .await
            .expect("connect to NATS")
    }

    /// Changes the drop's admission as an operator does (the store, then
    /// the event), and returns once every live gateway applied it.
    pub async fn change_admission(&self, change: AdmissionChange) {
        let version = self.change_admission_silently(change).await;
        let bus = self.bus().await;
        bus.publish_drop_event(&DropEvent::AdmissionChanged {
            sku: self.sku.clone(),
        })
        .await
        .expect("publish the admission change");
        bus.flush().await.expect("flush");
        self.wait_until_gateways_applied(version).await;
    }

    /// Changes the drop's admission in the store only: gateways learn it at
    /// their next refresh. Returns the change's admission version.
    pub async fn change_admission_silently(&self, change: AdmissionChange) -> u64 {
        self.store
            .change_admission(&self.sku, change)
            .await
            .expect("change admission")
            .admission_version
    }

    /// Waits until at least one gateway is live and every live one reports
    /// admission `version` applied.
    pub async fn wait_until_gateways_applied(&self, version: u64) {
        let pool = db(&self.database_url).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (live, applied): (i64, i64) = sqlx::query_as(
                "SELECT count(*), count(*) FILTER (WHERE admission_version >= $1) FROM gateways \
                  WHERE heartbeat_at > now() - $2 * interval '1 millisecond'",
            )
            .bind(version as i64)
            .bind(GATEWAY_ALIVE_MS as f64)
            .fetch_one(&pool)
            .await
            .expect("read the gateways");
            if live > 0 && live == applied {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gateways applied admission {version}: {applied} of {live}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Puts an operator's entry (close, restock) in the drop's line.
    pub async fn send_control(&self, action: Action) {
        let op = OperationId::parse(format!("op-{}", uuid::Uuid::new_v4().simple())).expect("op");
        let by = OperatorId::parse("test").expect("operator");
        self.bus()
            .await
            .send_control(&self.sku, &ControlPayload::new(&op, &by, action))
            .await
            .expect("send the entry");
    }

    /// Adds `units` to the drop's stock, in line.
    pub async fn restock(&self, units: i64) {
        let units = Stock::parse(units).expect("units");
        self.send_control(Action::Restock(units)).await;
    }
}

impl Answer {
    /// A `409 sold_out` answered at once by a gateway: no place in line.
    pub fn is_fast_sold_out(&self) -> bool {
        self.status == 409 && self.body["outcome"] == "sold_out" && self.body["seq"].is_null()
    }
}

impl TestApp {
    /// Sends new keys `<prefix>-<i>` until one is answered at once (the
    /// gateway knows the drop is finally sold out); the keys sent before
    /// went to the line, which decided them `sold_out`.
    pub async fn wait_for_fast_path(&self, prefix: &str) {
        for i in 0..100 {
            let probe = self
                .buy(&format!("{prefix}-{i}"), &format!("{prefix}-u{i}"), 5)
                .await;
            if probe.is_fast_sold_out() {
                return;
            }
            assert_eq!(probe.status, 409, "{probe:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the gateway never answered the sold-out drop at once");
    }

    /// A metric's value in the gateway's `/metrics` (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base_url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}
