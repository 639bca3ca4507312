//! What every partition loop of an instance shares: its store and bus
//! handles, its settings and its share of the partitions.
//!
//! Must hold handles and settings only, no partition's state, and must not
//! import the modules that use it, so that none of them imports another
//! through it.

use dropline_bus::Bus;
use dropline_store::Store;

use crate::share::Share;
use crate::ProcessorConfig;

pub(crate) struct Context {
    pub store: Store,
    pub bus: Bus,
    pub config: ProcessorConfig,
    pub share: Share,
}
