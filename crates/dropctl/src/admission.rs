//! Admission changes (pause, resume, and the admission half of a close):
//! record the change, then tell the gateways at once with
//! `DropEvent::AdmissionChanged`; and `drop pause`/`drop resume`, which are
//! nothing else. The event is best effort: a gateway that
//! misses it reads the change at its next refresh, within a second.

use dropline_bus::Bus;
use dropline_core::wire::DropEvent;
use dropline_core::{DropStatus, OperatorId, Sku};
use dropline_store::{AdmissionChange, DropRow, Store};

use crate::operator::OperatorArgs;
use crate::services::{explain, ServiceArgs};

/// A drop before and after an admission change.
pub struct Changed {
    pub before: DropRow,
    pub after: DropRow,
}

impl Changed {
    /// False when the drop already was where the change leads.
    pub fn changed(&self) -> bool {
        self.after.admission_version != self.before.admission_version
    }
}

/// Records `change` for `sku` (an impossible one, such as resuming a
/// closed drop, is the operator's error and changes nothing).
pub async fn change(store: &Store, sku: &Sku, change: AdmissionChange) -> anyhow::Result<Changed> {
    let before = store
        .drop(sku)
        .await
        .map_err(explain)?
        .ok_or_else(|| anyhow::anyhow!("no drop {sku}"))?;
    let after = store.change_admission(sku, change).await.map_err(explain)?;
    Ok(Changed { before, after })
}

/// Tells every gateway to read `sku`'s admission now, over `bus` if there
/// is one, else over a new connection. Never fails: the gateways' own
/// refresh is the fallback, and the operator is told so.
pub async fn announce(services: &ServiceArgs, bus: Option<&Bus>, sku: &Sku) {
    let connected;
    let bus = match bus {
        Some(bus) => bus,
        None => match services.bus().await {
            Ok(bus) => {
                connected = bus;
                &connected
            }
            Err(err) => {
                eprintln!(
                    "warning: gateways not told at once ({err:#}); they see it within a second"
                );
                return;
            }
        },
    };
    let event = DropEvent::AdmissionChanged { sku: sku.clone() };
    let sent = match bus.publish_drop_event(&event).await {
        Ok(()) => bus.flush().await,
        Err(err) => Err(err),
    };
    if let Err(err) = sent {
        eprintln!("warning: gateways not told at once ({err}); they see it within a second");
    }
}

/// What `drop pause` and `drop resume` take.
#[derive(Debug, clap::Args)]
pub struct AdmissionArgs {
    /// The drop's SKU.
    sku: String,
    #[command(flatten)]
    operator: OperatorArgs,
    /// Print the drop's admission as JSON.
    #[arg(long)]
    json: bool,
}

/// `drop pause` or `drop resume`: the change, the gateways told, the result
/// shown (data on stdout, the story on stderr).
pub async fn run_change(
    args: AdmissionArgs,
    services: &ServiceArgs,
    what: AdmissionChange,
) -> anyhow::Result<()> {
    let sku = Sku::parse(args.sku)?;
    let operator = args.operator.resolve()?;
    let store = services.store()?;
    let changed = change(&store, &sku, what).await?;
    if changed.changed() {
        announce(services, None, &sku).await;
    }
    let drop = &changed.after;
    if args.json {
        let out = serde_json::json!({
            "sku": drop.sku,
            "status": drop.status,
            "opens_at": drop.opens_at,
            "changed": changed.changed(),
            "admission_version": drop.admission_version,
            "operator": operator,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{}\t{}", drop.sku, drop.status.as_str());
    }
    eprintln!("{}", describe(what, &changed, &operator));
    Ok(())
}

/// The operator's sentence for an admission change.
fn describe(what: AdmissionChange, changed: &Changed, operator: &OperatorId) -> String {
    let drop = &changed.after;
    let (sku, status) = (&drop.sku, drop.status.as_str());
    if !changed.changed() {
        return format!("drop {sku} is already {status}");
    }
    match (what, drop.opens_at) {
        (AdmissionChange::Pause, _) => format!(
            "drop {sku} paused by {operator}: gateways refuse new keys; \
             intents already in line are still decided"
        ),
        (AdmissionChange::Resume, Some(opens_at)) if drop.status == DropStatus::Scheduled => {
            format!("drop {sku} resumed by {operator}: scheduled, opens at {opens_at}")
        }
        (AdmissionChange::Resume, _) => {
            format!("drop {sku} resumed by {operator}: open, gateways take new keys")
        }
        (AdmissionChange::Close, _) => format!("drop {sku} closed by {operator}"),
    }
}
