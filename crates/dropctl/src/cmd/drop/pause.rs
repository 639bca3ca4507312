//! `dropctl drop pause <SKU> [--operator NAME] [--json]`: the gateways stop
//! taking new keys for the drop; whatever is in its line is still decided.

use dropline_store::AdmissionChange;

use crate::admission::{run_change, AdmissionArgs};
use crate::services::ServiceArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: AdmissionArgs,
}

pub async fn run(args: Args, services: &ServiceArgs) -> anyhow::Result<()> {
    run_change(args.target, services, AdmissionChange::Pause).await
}
