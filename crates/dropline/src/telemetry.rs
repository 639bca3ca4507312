//! The process's metrics recorder: one Prometheus recorder for every role
//! (serve, gateway, processor), installed before any part counts anything,
//! so a processor running alone records its metrics too; and the one list
//! of every metric dropline exports, with its HELP text and unit.
//!
//! Must not render or serve metrics: the gateway's `probes` render them for
//! every role's listener with the handle returned here. Must stay
//! idempotent: tests start several roles in one process, and a process has
//! only one global recorder.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets (seconds): a PubAck within milliseconds, a decision
/// within a burst's second or two, a commit behind a slow database.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Size buckets (intents): one alone up to a full batch (`batch_len_max`
/// is at most 10,000).
const COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0,
];

/// How often histogram samples are folded into their buckets between
/// scrapes: without it, a process nobody scrapes keeps every sample.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

use Kind::{Counter, Gauge, Histogram};

/// One exported metric: its name (with its unit as suffix), kind, unit,
/// labels and HELP text.
struct Metric {
    name: &'static str,
    kind: Kind,
    unit: Unit,
    labels: &'static [&'static str],
    help: &'static str,
}

const fn metric(
    name: &'static str,
    kind: Kind,
    unit: Unit,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind,
        unit,
        labels,
        help,
    }
}

/// Every metric dropline exports. The README's "Watching" list, the
/// dashboard and the alert rules read these names; the end-to-end tests
/// check them against what each role really exposes. (Kept as a table:
/// one metric a line pair reads better than rustfmt's seven.)
#[rustfmt::skip]
const METRICS: &[Metric] = &[
    metric("dropline_gateway_requests_total", Counter, Unit::Count, &["route", "status"],
        "HTTP answers of the gateway, by route template and status."),
    metric("dropline_gateway_accepted_total", Counter, Unit::Count, &[],
        "Purchases accepted: their intent's publish was acked by JetStream."),
    metric("dropline_gateway_answers_total", Counter, Unit::Count, &["outcome"],
        "Purchases answered with a decision (won, sold_out, limit_reached, closed) or pending."),
    metric("dropline_gateway_fast_path_total", Counter, Unit::Count, &[],
        "New keys of a finally sold-out drop answered sold_out at once, without the line."),
    metric("dropline_gateway_errors_total", Counter, Unit::Count, &["status"],
        "Problem answers (problem+json), by status."),
    metric("dropline_gateway_accept_duration_seconds", Histogram, Unit::Seconds, &[],
        "Time from a purchase request read whole to its intent's PubAck (its acceptance)."),
    metric("dropline_gateway_decision_duration_seconds", Histogram, Unit::Seconds, &[],
        "Time from a purchase's arrival to its answer with a decision (201, or 409 with the purchase)."),
    metric("dropline_gateway_waiting_requests", Gauge, Unit::Count, &[],
        "Requests waiting for a decision, at the scrape."),
    metric("dropline_gateway_intents_per_message", Histogram, Unit::Count, &[],
        "Purchases carried by each JetStream message the gateway published."),
    metric("dropline_processor_decisions_total", Counter, Unit::Count, &["outcome"],
        "Intents decided and committed, by outcome."),
    metric("dropline_processor_repeats_total", Counter, Unit::Count, &[],
        "Intents of a key already decided, answered with its recorded decision."),
    metric("dropline_processor_batches_total", Counter, Unit::Count, &[],
        "Batches committed (one transaction each)."),
    metric("dropline_processor_batch_entries", Histogram, Unit::Count, &[],
        "Entries of the line (purchases, closes, restocks) in each committed batch."),
    metric("dropline_processor_commit_duration_seconds", Histogram, Unit::Seconds, &[],
        "Time to complete, decide and commit one batch, retries included."),
    metric("dropline_processor_claim_duration_seconds", Histogram, Unit::Seconds, &[],
        "Time from a partition's lease granted to its owner ready to decide (ledger loaded, consumer made)."),
    metric("dropline_processor_commit_failures_total", Counter, Unit::Count, &[],
        "Batch commits that failed and were retried after reloading the ledger."),
    metric("dropline_processor_halts_total", Counter, Unit::Count, &[],
        "Partitions halted before an entry of a kind or version this build does not know."),
    metric("dropline_processor_lease_changes_total", Counter, Unit::Count, &["change"],
        "Partition ownership changes on this instance: claimed, lost, handed_back, failed."),
    metric("dropline_processor_partitions_owned", Gauge, Unit::Count, &[],
        "Partitions this instance owns and works now."),
    metric("dropline_processor_live_drops", Gauge, Unit::Count, &[],
        "Drops that need an owner (open, or closed within the linger), as this instance last saw them."),
    metric("dropline_processor_remaining_units", Gauge, Unit::Count, &["sku"],
        "Units of the drop left to win, after the owner's last commit."),
    metric("dropline_processor_waiting_intents", Gauge, Unit::Count, &["sku"],
        "Intents of the SKU waiting to be decided (at least), after the owner's last commit."),
    metric("dropline_processor_lag_seconds", Gauge, Unit::Seconds, &["sku"],
        "Age of the SKU's oldest waiting intent after the owner's last commit; 0 when none waits."),
];

/// Installs the process-wide Prometheus recorder on the first call and
/// returns its handle; every later call returns the same handle.
pub(crate) fn install_metrics_recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        // Fails only if a host embedding these parts installed a recorder of
        // its own: that one then gets the counts, and ours renders empty,
        // which is better than refusing to start over metrics.
        let _ = metrics::set_global_recorder(recorder);
        describe_metrics();
        spawn_upkeep(handle.clone());
        handle
    })
}

/// Histograms for every distribution (summaries cannot be aggregated over
/// instances): latencies in seconds, sizes in intents.
fn builder() -> PrometheusBuilder {
    let mut builder = PrometheusBuilder::new();
    for metric in METRICS.iter().filter(|m| m.kind == Histogram) {
        let buckets = match metric.unit {
            Unit::Seconds => SECONDS_BUCKETS,
            _ => COUNT_BUCKETS,
        };
        builder = builder
            .set_buckets_for_metric(Matcher::Full(metric.name.to_string()), buckets)
            .expect("the bucket lists are constants, not empty");
    }
    builder
}

fn describe_metrics() {
    for metric in METRICS {
        match metric.kind {
            Counter => metrics::describe_counter!(metric.name, metric.unit, metric.help),
            Gauge => metrics::describe_gauge!(metric.name, metric.unit, metric.help),
            Histogram => metrics::describe_histogram!(metric.name, metric.unit, metric.help),
        }
    }
}

fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            handle.run_upkeep();
        });
    if let Err(err) = spawned {
        // Scrapes still fold the samples in; only an unscraped process grows.
        tracing::warn!(%err, "start the metrics upkeep thread");
    }
}

/// Every exported metric as `(name, labels)`, for the documentation's and
/// the tests' sake.
pub fn exported_metrics() -> impl Iterator<Item = (&'static str, &'static [&'static str])> {
    METRICS.iter().map(|m| (m.name, m.labels))
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

    #[test]
    fn every_metric_name_follows_the_prometheus_conventions() {
        for metric in METRICS {
            let name = metric.name;
            assert!(
                name.starts_with("dropline_"),
                "{name}: the dropline_ prefix"
            );
            assert_eq!(
                metric.kind == Counter,
                name.ends_with("_total"),
                "{name}: counters, and only counters, end in _total"
            );
            assert_eq!(
                metric.unit == Unit::Seconds,
                name.trim_end_matches("_total").ends_with("_seconds"),
                "{name}: a duration is in seconds, named so"
            );
            assert!(
                metric.help.ends_with('.') && metric.help.len() > 20,
                "{name}: a sentence of HELP"
            );
        }
        let mut names: Vec<_> = METRICS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METRICS.len(), "each metric is listed once");
    }

    #[test]
    fn described_metrics_render_with_help_and_histograms_with_buckets() {
        let handle = install_metrics_recorder();
        metrics::histogram!("dropline_processor_commit_duration_seconds").record(0.003);
        let text = handle.render();
        assert!(
            text.contains("# HELP dropline_processor_commit_duration_seconds Time to complete"),
            "{text}"
        );
        assert!(
            text.contains("dropline_processor_commit_duration_seconds_bucket{le=\"0.005\"}"),
            "{text}"
        );
    }
}
