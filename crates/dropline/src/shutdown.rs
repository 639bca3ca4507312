//! A shutdown signal that can be cloned into every task, and fired by
//! SIGINT/SIGTERM in the binary or by hand in tests. Must not stop anything
//! itself: each task stops its own work when the signal fires.

use tokio::sync::watch;

#[derive(Clone)]
pub struct Shutdown {
    fired: watch::Receiver<bool>,
}

impl Shutdown {
    /// A signal and the function that fires it. Dropping the function
    /// without calling it fires the signal too, so a test that lets go of
    /// its app stops it.
    pub fn new() -> (impl FnOnce() + Send + 'static, Self) {
        let (tx, rx) = watch::channel(false);
        let fire = move || {
            let _ = tx.send(true);
        };
        (fire, Self { fired: rx })
    }

    /// Completes once the signal fired (or its trigger is gone).
    pub async fn wait(mut self) {
        let _ = self.fired.wait_for(|fired| *fired).await;
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(signal) => signal,
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM; only SIGINT stops the process");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
