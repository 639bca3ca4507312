//! Admission: whether a drop takes new keys (scheduled, open, paused,
//! closed), changed by operators and read by every gateway once a second;
//! and the gateways' word on which change they have applied, so a drain can
//! wait until all of them refuse a closed drop.
//!
//! Admission is not the line: a pause only stops new keys at the gateways,
//! and a close only takes effect in the line through its own entry (see
//! `dropline_core::Action::Close`), which the batch records.

use chrono::{DateTime, Utc};
use dropline_core::{DropStatus, Sku};
use sqlx::Row;

use crate::drops::{drop_from_row, DropRow, DROP_COLUMNS};
use crate::error::corrupt;
use crate::{Store, StoreError};

/// An operator's admission change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionChange {
    /// Stop taking new keys for now (from open or scheduled).
    Pause,
    /// Take new keys again (from paused): open, or scheduled if its opening
    /// is still ahead.
    Resume,
    /// Stop taking new keys for good.
    Close,
}

/// One drop as a gateway admits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub sku: Sku,
    pub status: DropStatus,
    pub opens_at: Option<DateTime<Utc>>,
    pub remaining: u32,
}

/// Every drop's admission, and the newest change it reflects.
#[derive(Debug, Clone, Default)]
pub struct AdmissionView {
    pub version: u64,
    pub drops: Vec<Admission>,
}

impl Store {
    /// Applies `change` to `sku`'s admission. Asking for the state it is
    /// already in changes nothing (a retried command is harmless); a change
    /// a drop cannot make (resuming a closed drop) is
    /// [`StoreError::InvalidTransition`].
    pub async fn change_admission(
        &self,
        sku: &Sku,
        change: AdmissionChange,
    ) -> Result<DropRow, StoreError> {
        let (target, allowed_from) = match change {
            AdmissionChange::Pause => ("'paused'", "('open', 'scheduled', 'paused')"),
            AdmissionChange::Resume => (
                "CASE WHEN d.opens_at > now() THEN 'scheduled' ELSE 'open' END",
                "('paused', 'open', 'scheduled')",
            ),
            AdmissionChange::Close => ("'closed'", "('open', 'scheduled', 'paused', 'closed')"),
        };
        let updated = sqlx::query(&format!(
            "UPDATE drops AS d SET status = {target}, \
                    admission_version = CASE WHEN d.status = {target} THEN d.admission_version \
                                             ELSE nextval('drops_admission_version') END, \
                    updated_at = now() \
              WHERE d.sku = $1 AND d.status IN {allowed_from} RETURNING {DROP_COLUMNS}"
        ))
        .bind(sku.as_str())
        .fetch_optional(&self.pool)
        .await?;
        match updated {
            Some(row) => drop_from_row(&row),
            None => match self.drop(sku).await? {
                None => Err(StoreError::UnknownDrop(sku.to_string())),
                Some(drop) => Err(StoreError::InvalidTransition(format!(
                    "drop {sku} is {}: it cannot {}",
                    drop.status.as_str(),
                    match change {
                        AdmissionChange::Pause => "be paused",
                        AdmissionChange::Resume => "be resumed",
                        AdmissionChange::Close => "be closed",
                    }
                ))),
            },
        }
    }

    /// Every drop's admission, in one read.
    pub async fn admission_view(&self) -> Result<AdmissionView, StoreError> {
        let rows =
            sqlx::query("SELECT sku, status, opens_at, remaining, admission_version FROM drops")
                .fetch_all(&self.pool)
                .await?;
        let mut view = AdmissionView::default();
        for row in &rows {
            let version: i64 = row.try_get("admission_version")?;
            view.version = view.version.max(version.max(0) as u64);
            let sku: String = row.try_get("sku")?;
            let status: String = row.try_get("status")?;
            let remaining: i32 = row.try_get("remaining")?;
            view.drops.push(Admission {
                sku: Sku::parse(sku).map_err(corrupt)?,
                status: DropStatus::parse(&status).map_err(corrupt)?,
                opens_at: row.try_get("opens_at")?,
                remaining: u32::try_from(remaining).map_err(|_| corrupt("drops.remaining < 0"))?,
            });
        }
        Ok(view)
    }

    /// Records that gateway `instance` is alive and has applied every
    /// admission change up to `version`.
    pub async fn gateway_heartbeat(&self, instance: &str, version: u64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO gateways (instance_id, admission_version) VALUES ($1, $2) \
             ON CONFLICT (instance_id) DO UPDATE \
                SET admission_version = excluded.admission_version, heartbeat_at = now()",
        )
        .bind(instance)
        .bind(version as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Gateways heard from within `alive_ms` that have not applied `version`
    /// yet: they may still admit what that change refuses.
    pub async fn gateways_behind(
        &self,
        version: u64,
        alive_ms: u64,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT instance_id FROM gateways \
              WHERE admission_version < $1 \
                AND heartbeat_at > now() - $2 * interval '1 millisecond' ORDER BY instance_id",
        )
        .bind(version as i64)
        .bind(alive_ms as f64)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Forgets gateways silent for a day (restarted under another name).
    pub async fn forget_silent_gateways(&self) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM gateways WHERE heartbeat_at < now() - interval '1 day'")
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
