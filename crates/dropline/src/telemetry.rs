//! The process's metrics recorder: one Prometheus recorder for every role
//! (serve, gateway, processor), installed before any part counts anything,
//! so a processor running alone records its metrics too.
//!
//! Must not render or serve metrics: the gateway renders `GET /metrics` with
//! the handle returned here. Must stay idempotent: tests start several roles
//! in one process, and a process has only one global recorder.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Installs the process-wide Prometheus recorder on the first call and
/// returns its handle; every later call returns the same handle.
pub(crate) fn install_metrics_recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Fails only if a host embedding these parts installed a recorder of
        // its own: that one then gets the counts, and ours renders empty,
        // which is better than refusing to start over metrics.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_shares_the_one_installed_recorder() {
        let first = install_metrics_recorder();
        metrics::counter!("dropline_test_shared_recorder_total").increment(1);
        let again = install_metrics_recorder();
        assert!(std::ptr::eq(first, again));
        assert!(
            again
                .render()
                .contains("dropline_test_shared_recorder_total 1"),
            "a count made after the first install shows in the shared handle"
        );
    }
}
