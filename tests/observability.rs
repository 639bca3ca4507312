//! Every role is observable: a processor running alone answers /healthz,
//! /readyz and /metrics on its own address; what each role exposes passes
//! `promtool check metrics`; and the Prometheus configuration, alert rules
//! and Grafana dashboard in deploy/ are valid and query only metrics the
//! code really exports.
//!
//! promtool comes from Debian's `prometheus` package; these tests fail
//! (never skip) without it.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use dropline_suite::{
    spawn_app_with, start_processor, AppOptions, DroplineProcess, ProcessorSpec, Role, TestApp,
};

/// How long a process may take to log its address, connect, or show a
/// count after the answer that caused it.
const SETTLE_WAIT: Duration = Duration::from_secs(15);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// promtool on the PATH, or a failure that says how to get it.
fn promtool() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("promtool"))
            .find(|path| path.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "promtool is not installed: these tests check dropline's metrics and deploy/prometheus \
             with it. Install Debian's `prometheus` package \
             (`apt-get install -y --no-install-recommends prometheus`; .ci/run does)"
        )
    })
}

/// Runs promtool with `args` (and `input` on stdin): (exit code, output).
fn run_promtool(args: &[&str], input: &str) -> (Option<i32>, String) {
    let mut child = Command::new(promtool())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(input.as_bytes())
        .expect("feed promtool");
    let output = child.wait_with_output().expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "promtool {}: exit {:?}\n{text}",
        args.join(" "),
        output.status.code()
    );
    (output.status.code(), text)
}

/// A gateway (in this process) and one `dropline processor` process with
/// its ops listener on a port of its own.
struct Deployment {
    app: TestApp,
    processor: DroplineProcess,
    processor_url: String,
}

async fn deploy(stock: i64) -> Deployment {
    let app = spawn_app_with(AppOptions {
        role: Role::GatewayOnly,
        stock,
        ..AppOptions::default()
    })
    .await;
    let processor = start_processor(&ProcessorSpec {
        database_url: &app.database_url,
        nats_url: &app.nats_url,
        lease_ms: 2_000,
        ack_wait_ms: 5_000,
        batch_len_max: 100,
    });
    let addr: SocketAddr = processor
        .logged_addr("metrics_addr", SETTLE_WAIT)
        .await
        .expect("the processor logs its ops address");
    Deployment {
        app,
        processor,
        processor_url: format!("http://{addr}"),
    }
}

impl Deployment {
    /// `buyers` purchases, each waiting for its decision.
    async fn buy(&self, buyers: usize) -> Vec<u16> {
        let users: Vec<String> = (0..buyers).map(|i| format!("u{i}")).collect();
        self.buy_as(&users.iter().map(String::as_str).collect::<Vec<_>>())
            .await
    }

    /// One purchase per entry, in turn, by that user.
    async fn buy_as(&self, users: &[&str]) -> Vec<u16> {
        let mut statuses = Vec::with_capacity(users.len());
        for (i, user) in users.iter().enumerate() {
            statuses.push(self.app.buy(&format!("k{i}"), user, 10).await.status);
        }
        statuses
    }

    async fn processor_get(&self, path: &str) -> reqwest::Response {
        self.app
            .http
            .get(format!("{}{path}", self.processor_url))
            .send()
            .await
            .expect("the processor's ops listener answers")
    }

    /// The processor's `/readyz` body once it answers `200`.
    async fn processor_ready(&self) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
        loop {
            let answer = self.processor_get("/readyz").await;
            let status = answer.status();
            let body: serde_json::Value = answer.json().await.expect("/readyz answers JSON");
            if status == 200 {
                return body;
            }
            assert_eq!(status, 503, "not ready yet is a 503: {body}");
            assert!(
                tokio::time::Instant::now() < deadline,
                "the processor never became ready: {body}\nits log:\n{}",
                self.processor.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The processor's exposition once `ready` holds for it.
    async fn processor_metrics_once(&self, ready: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
        loop {
            let text = scrape(&self.app.http, &format!("{}/metrics", self.processor_url)).await;
            if ready(&text) {
                return text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the processor's metrics never showed what was expected:\n{text}\nits log:\n{}",
                self.processor.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Both roles' expositions after a small drop sold out (a win, a sold
    /// out answer, an unknown SKU's 404): every metric has been touched.
    async fn expositions_after_traffic(&self) -> (String, String) {
        assert_eq!(self.buy(2).await, vec![201, 409]);
        let unknown = self.app.get("/v1/drops/no-such-drop").await;
        assert_eq!(unknown.status, 404);
        let sku = self.app.sku.as_str();
        let processor = self
            .processor_metrics_once(|text| {
                text.contains(&format!(
                    "dropline_processor_waiting_intents{{sku=\"{sku}\"}} 0"
                ))
            })
            .await;
        let gateway = scrape(&self.app.http, &format!("{}/metrics", self.app.base_url)).await;
        (gateway, processor)
    }
}

async fn scrape(http: &reqwest::Client, url: &str) -> String {
    let response = http.get(url).send().await.expect("scrape");
    assert_eq!(response.status(), 200, "{url}");
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    response.text().await.expect("the exposition")
}

/// The names of the samples in an exposition (histograms' `_bucket`,
/// `_sum` and `_count` included).
fn sample_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_alone_serves_health_readiness_and_metrics() {
    let deployment = deploy(3).await;
    let health = deployment.processor_get("/healthz").await;
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<serde_json::Value>().await.expect("json")["status"],
        "ok"
    );
    // The listener is up before NATS is connected: alive, then ready.
    let ready = deployment.processor_ready().await;
    assert_eq!(
        (ready["nats"].as_str(), ready["postgres"].as_str()),
        (Some("ok"), Some("ok"))
    );
    assert_eq!(deployment.processor_get("/v1/drops").await.status(), 404);

    // Three units, three purchases: two wins and one over the per-user
    // limit; a unit stays, so none is answered at once by a sold-out gateway.
    assert_eq!(
        deployment.buy_as(&["u0", "u0", "u1"]).await,
        vec![201, 409, 201]
    );
    let sku = deployment.app.sku.as_str();
    let expected = [
        "dropline_processor_decisions_total{outcome=\"won\"} 2".to_string(),
        "dropline_processor_decisions_total{outcome=\"sold_out\"} 0".to_string(),
        "dropline_processor_decisions_total{outcome=\"limit_reached\"} 1".to_string(),
        format!("dropline_processor_remaining_units{{sku=\"{sku}\"}} 1"),
        format!("dropline_processor_waiting_intents{{sku=\"{sku}\"}} 0"),
        format!("dropline_processor_lag_seconds{{sku=\"{sku}\"}} 0"),
        "dropline_processor_partitions_owned 1".to_string(),
        "dropline_processor_lease_changes_total{change=\"claimed\"} 1".to_string(),
        "dropline_processor_claim_duration_seconds_count 1".to_string(),
        "dropline_processor_commit_duration_seconds_bucket{le=\"+Inf\"}".to_string(),
        "dropline_processor_batch_entries_bucket{le=\"+Inf\"}".to_string(),
    ];
    let text = deployment
        .processor_metrics_once(|text| expected.iter().all(|line| text.contains(line.as_str())))
        .await;
    assert!(
        text.contains("dropline_processor_live_drops "),
        "live drops are counted:\n{text}"
    );
    assert!(
        !text.contains("dropline_gateway_"),
        "a processor alone exports no gateway metrics:\n{text}"
    );
}

/// The SKUs of which `exposition` holds a remaining-stock series.
fn skus_reported(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("dropline_processor_remaining_units{sku=\""))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_handed_to_another_processor_takes_its_sku_series_along() {
    let first = deploy(5).await;
    let second_sku = dropline_core::Sku::parse(format!("{}-b", first.app.sku)).expect("sku");
    first
        .app
        .store
        .create_drop(&dropline_store::NewDrop {
            sku: second_sku.clone(),
            name: "second drop".into(),
            stock: dropline_core::Stock::parse(5).expect("stock"),
            per_user_limit: dropline_core::PerUserLimit::parse(1).expect("limit"),
            opens_at: None,
        })
        .await
        .expect("create the second drop");
    let both: BTreeSet<String> = [first.app.sku.to_string(), second_sku.to_string()].into();
    first
        .processor_metrics_once(|text| skus_reported(text) == both)
        .await;

    // A second instance joins: the fair share is one partition each, so
    // the first hands one over and must stop reporting that SKU.
    let second = start_processor(&ProcessorSpec {
        database_url: &first.app.database_url,
        nats_url: &first.app.nats_url,
        lease_ms: 2_000,
        ack_wait_ms: 5_000,
        batch_len_max: 100,
    });
    let second_url = format!(
        "http://{}",
        second
            .logged_addr("metrics_addr", SETTLE_WAIT)
            .await
            .expect("the second processor logs its ops address")
    );
    let kept = first
        .processor_metrics_once(|text| {
            skus_reported(text).len() == 1
                && text.contains("dropline_processor_lease_changes_total{change=\"handed_back\"} 1")
        })
        .await;
    let kept = skus_reported(&kept);
    let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
    loop {
        let taken = skus_reported(&scrape(&first.app.http, &format!("{second_url}/metrics")).await);
        if taken.len() == 1 {
            assert!(
                taken.is_disjoint(&kept),
                "one owner reports each SKU: {kept:?} {taken:?}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second never reported the SKU handed over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fails unless promtool accepts `exposition` without a lint problem.
fn assert_promtool_accepts(role: &str, exposition: &str) {
    let (code, output) = run_promtool(&["check", "metrics"], exposition);
    assert_eq!(
        (code, output.trim()),
        (Some(0), ""),
        "promtool check metrics refuses the {role}'s exposition:\n{exposition}"
    );
}

/// Every metric of `prefix` that dropline exports shows in `exposition`,
/// with its HELP line.
fn assert_exports_all(exposition: &str, prefix: &str) {
    for (name, _labels) in dropline::exported_metrics().filter(|(n, _)| n.starts_with(prefix)) {
        assert!(
            exposition.contains(&format!("# HELP {name} ")),
            "{name} is missing from the exposition, or has no HELP:\n{exposition}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_metrics_of_every_role() {
    promtool();
    let deployment = deploy(1).await;
    let (gateway, processor) = deployment.expositions_after_traffic().await;
    assert_exports_all(&gateway, "dropline_gateway_");
    assert_exports_all(&processor, "dropline_processor_");
    assert_promtool_accepts("gateway", &gateway);
    assert_promtool_accepts("processor", &processor);
}

/// The `dropline_*` names a dashboard or rule file mentions.
fn dropline_names_in(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).expect("read a deploy file");
    let mut names = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("dropline_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_prometheus_config_and_rules_are_valid() {
    let prometheus = root().join("deploy/prometheus");
    let config = prometheus.join("prometheus.yml");
    let rules = prometheus.join("alerts.yml");
    for (what, path) in [("config", &config), ("rules", &rules)] {
        let (code, output) = run_promtool(&["check", what, path.to_str().expect("utf-8")], "");
        assert_eq!(
            code,
            Some(0),
            "promtool check {what} {}:\n{output}",
            path.display()
        );
    }

    let deployment = deploy(1).await;
    let (gateway, processor) = deployment.expositions_after_traffic().await;
    let exposed: BTreeSet<String> = sample_names(&gateway)
        .union(&sample_names(&processor))
        .cloned()
        .collect();
    let dashboard = root().join("deploy/grafana/dropline.json");
    let dashboard_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&dashboard).expect("read the dashboard"))
            .expect("the dashboard is JSON");
    assert!(dashboard_json["panels"]
        .as_array()
        .is_some_and(|p| p.len() >= 7));
    for file in [&dashboard, &rules] {
        let queried = dropline_names_in(file);
        assert!(
            queried.len() >= 5,
            "{} queries dropline metrics",
            file.display()
        );
        let unknown: Vec<_> = queried.difference(&exposed).collect();
        assert!(
            unknown.is_empty(),
            "{} queries metrics no role exposes: {unknown:?}\nexposed: {exposed:?}",
            file.display()
        );
    }
}

#[test]
fn the_readme_lists_every_exported_metric_with_its_labels() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let watching = readme
        .split("### Watching")
        .nth(1)
        .and_then(|rest| rest.split("\n### ").next())
        .expect("a Watching section");
    for (name, labels) in dropline::exported_metrics() {
        let row = watching
            .lines()
            .find(|line| line.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("README's Watching list lacks {name}"));
        for label in labels {
            assert!(
                row.contains(&format!("`{label}`")),
                "README's row of {name} lacks its label {label}"
            );
        }
    }
}
