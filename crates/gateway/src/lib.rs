//! The gateway: HTTP API v1 of dropline (see `DESIGN.md`).
//!
//! Owns the HTTP edge: parsing (every string becomes a domain type here or
//! the request gets a problem+json 4xx), who is buying (a bearer token's
//! `sub`, verified by `dropline_identity`), admission (which drops take new
//! keys, refreshed from the store every second), the sold-out fast path
//! (repeating what the line recorded once a drop is finally sold out),
//! publishing intents and answering once the PubAck is back, waiting for
//! decisions through ONE decision subscription per gateway, and the
//! operational endpoints (`probes`, which a processor's ops listener
//! serves too). Must stay stateless across restarts (everything
//! it holds is relearned from the store) and must not decide anything.

mod admission;
mod auth;
mod client_address;
mod config;
mod cors;
mod drop_events;
mod limits;
mod listener;
mod operator;
mod probes;
mod problem;
mod publisher;
mod rate_limit;
mod refresh;
mod room;
mod routes;
mod sell_out;
mod state;
mod waiters;

pub use auth::BuyerAuth;
pub use client_address::{parse_trusted_proxy, TrustedProxies};
pub use config::GatewayConfig;
pub use cors::parse_origin;
pub use operator::{OperatorAccess, OPERATOR_TOKEN_BYTES_MIN};
pub use probes::Probes;
pub use routes::router;
pub use state::AppState;

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;

/// Serves the API on `listener` until `shutdown` completes, then stops
/// accepting and lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let header_read_timeout = Duration::from_millis(state.config.header_read_timeout_ms);
    // The per-address limit needs every request's peer, not only an
    // operator's.
    let peers_for_all = state.address_rate.is_some();
    listener::serve(
        listener,
        router(state),
        header_read_timeout,
        peers_for_all,
        shutdown,
    )
    .await
}
