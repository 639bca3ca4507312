//! The gateway's listener: HTTP/1.1 connections served by hyper with a
//! header-read timeout, stopped gracefully.
//!
//! `axum::serve` installs no timer, so hyper's header-read timeout never
//! fires there, and a client that sends half a request line holds its
//! connection (and a task) for ever: 900 such clients were all still
//! connected 40 s later. Here every connection has a timer: a request's
//! head (and, on a kept-alive connection, the next one) must arrive within
//! `header_read_timeout_ms` or the connection is closed. HTTP/2 is left to
//! the load balancer or TLS terminator in front (which speaks HTTP/1.1 to
//! the gateways); so is TLS.
//!
//! Must not route or answer: that is the router's.

use std::future::Future;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// The largest request head (request line and headers) read.
const HEAD_BYTES_MAX: usize = 64 * 1024;

/// Pause after a failed accept (out of file descriptors, say), so the
/// loop does not spin while the condition lasts.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Serves `app` on `listener` until `shutdown` completes, then stops
/// accepting and waits for the requests in flight.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    peers_for_all: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        // A request's head (line and headers) beyond this is refused `431`
        // (hyper's default buffers ~400 KiB per connection, and takes a
        // head that arrives whole in one read whatever its size). A
        // buyer's head is well under 2 KiB.
        .max_header_size(HEAD_BYTES_MAX)
        .max_buf_size(HEAD_BYTES_MAX)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // An operator surface's request knows its peer (without an
        // operator token only this machine is let in); every request does
        // when the per-address limit is on. Otherwise only theirs: the
        // extension costs an allocation, which a purchase need not pay.
        let with_peer = tower::ServiceBuilder::new()
            .map_request(move |mut request: axum::extract::Request<Incoming>| {
                if peers_for_all || crate::operator::is_operator_path(request.uri().path()) {
                    request.extensions_mut().insert(ConnectInfo(peer));
                }
                request
            })
            .service(app.clone());
        let service = TowerToHyperService::new(with_peer);
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that goes away, or is timed out, is not an error of ours.
            if let Err(err) = connection.await {
                tracing::debug!(%err, "connection ended");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
