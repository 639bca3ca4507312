//! `dropctl drop <create|pause|resume|close|restock>`: one file per action.
//! Pause and resume change admission at the gateways; close and restock
//! are entries in the drop's own line, decided by its owner.

pub mod close;
pub mod create;
pub mod pause;
pub mod restock;
pub mod resume;

use clap::Subcommand;

use crate::services::ServiceArgs;

#[derive(Subcommand)]
pub enum DropCommand {
    /// Create a drop: open at once, or scheduled with --opens-at.
    Create(create::Args),
    /// Stop taking new keys for now; intents already in line are still decided.
    Pause(pause::Args),
    /// Take new keys again (or wait for the opening, if still ahead).
    Resume(resume::Args),
    /// Close for good: a cutoff in line (later purchases are `closed`), then at the gateways.
    Close(close::Args),
    /// Add units, at a place in line; a retry with the same --operation-id adds them once.
    Restock(restock::Args),
}

pub async fn run(command: DropCommand, services: &ServiceArgs) -> anyhow::Result<()> {
    match command {
        DropCommand::Create(args) => create::run(args, services).await,
        DropCommand::Pause(args) => pause::run(args, services).await,
        DropCommand::Resume(args) => resume::run(args, services).await,
        DropCommand::Close(args) => close::run(args, services).await,
        DropCommand::Restock(args) => restock::run(args, services).await,
    }
}
