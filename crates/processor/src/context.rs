//! What every partition loop of an instance shares: its store and bus
//! handles, its settings, its share of the partitions, the leases it
//! holds (renewed together), where its batches are committed (together
//! when several are ready) and where its progress is recorded (together).
//!
//! Must hold handles, settings and what instance-wide bookkeeping needs
//! (slots counted, epochs held), no partition's work state, and must not
//! import the modules that use it, so that none of them imports another
//! through it.

use std::sync::Arc;

use dropline_bus::Bus;
use dropline_store::Store;

use crate::lease::Leases;
use crate::progress_records::ProgressRecords;
use crate::share::Share;
use crate::shared_commit::SharedCommits;
use crate::ProcessorConfig;

pub(crate) struct Context {
    pub store: Store,
    pub bus: Bus,
    pub config: ProcessorConfig,
    pub share: Share,
    pub leases: Arc<Leases>,
    pub commits: SharedCommits,
    pub progress: ProgressRecords,
}
