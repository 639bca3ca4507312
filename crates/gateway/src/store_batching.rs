//! Turning on atomic batches for this gateway's messages of intents
//! (`dropline_bus::Bus::store_in_batches`) once the server and the stream
//! take them.
//!
//! The gateway may start before NATS answers, or before a processor has
//! let the stream take atomic batches; so it asks again now and then
//! until they are on, or the server is one that has none (before 2.12),
//! which stores one message at a time for good.

use std::time::Duration;

use dropline_bus::Bus;

/// How often to ask again: one stream-info request each time, while it is
/// not on yet.
const ASK_AGAIN_EVERY: Duration = Duration::from_secs(5);

/// Asks until atomic batches are on or the server cannot have them.
pub(crate) async fn turn_on(bus: Bus) {
    loop {
        match bus.store_in_batches().await {
            Ok(true) => {
                tracing::info!("messages of intents are stored in atomic batches");
                return;
            }
            Ok(false)
                if bus
                    .server_version()
                    .is_some_and(|v| !v.has_atomic_batches()) =>
            {
                return
            }
            Ok(false) => {}
            Err(err) => tracing::debug!(%err, "ask whether the stream takes atomic batches"),
        }
        tokio::time::sleep(ASK_AGAIN_EVERY).await;
    }
}
