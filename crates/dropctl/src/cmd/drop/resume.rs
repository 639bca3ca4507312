//! `dropctl drop resume <SKU> [--operator NAME] [--json]`: the gateways take
//! new keys again, or, if the drop's opening is still ahead, from then on.

use dropline_store::AdmissionChange;

use crate::admission::{run_change, AdmissionArgs};
use crate::services::ServiceArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: AdmissionArgs,
}

pub async fn run(args: Args, services: &ServiceArgs) -> anyhow::Result<()> {
    run_change(args.target, services, AdmissionChange::Resume).await
}
