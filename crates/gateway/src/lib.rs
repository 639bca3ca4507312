//! The gateway: HTTP API v1 of dropline (see `DESIGN.md`).
//!
//! Owns the HTTP edge: parsing (every string becomes a domain type here or
//! the request gets a problem+json 4xx), admission (which drops take new
//! keys, refreshed from the store every second), the sold-out fast path
//! (repeating what the line recorded once a drop is finally sold out),
//! publishing intents and answering once the PubAck is back, waiting for
//! decisions through ONE decision subscription per gateway, and the
//! operational endpoints (`probes`, which a processor's ops listener
//! serves too). Must stay stateless across restarts (everything
//! it holds is relearned from the store) and must not decide anything.

mod admission;
mod config;
mod drop_events;
mod limits;
mod probes;
mod problem;
mod publisher;
mod refresh;
mod routes;
mod sell_out;
mod state;
mod waiters;

pub use config::GatewayConfig;
pub use probes::Probes;
pub use routes::router;
pub use state::AppState;

use std::future::Future;

use tokio::net::TcpListener;

/// Serves the API on `listener` until `shutdown` completes, then stops
/// accepting and lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
