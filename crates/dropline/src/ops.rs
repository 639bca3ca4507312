//! A processor's ops listener: `/healthz`, `/readyz` and `/metrics` on its
//! own address (`DROPLINE_METRICS_ADDR`), so that a processor running alone
//! is watched like a gateway, `/metrics` behind the same operator
//! credential. Port 0 takes any free port, logged at info, so
//! several processors on one host never collide.
//!
//! Must not serve the API, nor hold what the probes answer (the gateway's
//! `Probes`, which the API address serves too); `serve` and `gateway`
//! answer the probes on the API address and start no ops listener.

use std::net::SocketAddr;

use anyhow::Context as _;
use dropline_gateway::{OperatorAccess, Probes};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running ops listener. Dropping it stops it too.
pub(crate) struct OpsListener {
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

/// Binds `addr` and serves the probes there until stopped.
pub(crate) async fn start(
    addr: &str,
    probes: &Probes,
    operators: &OperatorAccess,
) -> anyhow::Result<OpsListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listen on {addr} for /healthz, /readyz and /metrics"))?;
    let bound = listener
        .local_addr()
        .context("read the ops listener's address")?;
    // Tests and operators read the port chosen for port 0 from this line.
    tracing::info!(metrics_addr = %bound, "serving /healthz, /readyz and /metrics");
    let (stop, stopped) = oneshot::channel::<()>();
    // The peer is known, so that without an operator token /metrics
    // answers this machine only, as a gateway's does.
    let app = probes
        .router(operators)
        .into_make_service_with_connect_info::<SocketAddr>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                // Sent, or the listener dropped: either way, stop.
                let _ = stopped.await;
            })
            .await
    });
    Ok(OpsListener { stop, task })
}

impl OpsListener {
    /// Stops accepting, lets a scrape in flight finish, and waits for it.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(%err, "serve /healthz, /readyz and /metrics"),
            Err(err) => tracing::warn!(%err, "the ops listener's task"),
        }
    }
}
