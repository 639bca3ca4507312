//! `loadtest` end to end against a running service: a crowd with
//! double-clicks and two-tab buyers is verified, reported as JSON and as
//! HTML; a crowd spread over twenty SKUs is verified SKU by SKU.

use clap::Parser as _;
use dropline_suite::{spawn_app, TestApp};

/// Runs `loadtest` against `app`'s gateway and database with `flags` on top
/// of the ones every test shares; returns whether every promise held, the
/// JSON report and the HTML page.
async fn load_test(app: &TestApp, flags: &[&str]) -> (bool, serde_json::Value, String) {
    let out = std::env::temp_dir().join(format!("dropline-load-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&out).expect("report directory");
    let (json, html) = (out.join("report.json"), out.join("report.html"));
    let mut args = vec![
        "loadtest",
        "--url",
        &app.base_url,
        "--database-url",
        &app.database_url,
        "--connections",
        "64",
        "--settle-ms",
        "300",
        "--json",
        json.to_str().expect("utf-8 path"),
        "--html",
        html.to_str().expect("utf-8 path"),
        // Its buyers' tokens, as for anyone else's gateway.
        "--jwt-secret",
        app.tokens.secret(),
    ];
    args.extend_from_slice(flags);

    let verified = loadtest::run(loadtest::cli::Args::parse_from(args))
        .await
        .expect("the load test runs");

    let report =
        serde_json::from_slice(&std::fs::read(&json).expect("JSON report")).expect("valid JSON");
    let page = std::fs::read_to_string(&html).expect("HTML report");
    let _ = std::fs::remove_dir_all(&out);
    (verified, report, page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_that_double_clicks_and_buys_in_two_tabs_is_verified_and_reported() {
    let app = spawn_app().await;
    let flags = [
        "--buyers",
        "1500",
        "--stock",
        "40",
        "--retry-share",
        "0.2",
        "--twice-share",
        "0.2",
        "--seed",
        "7",
    ];

    let (verified, report, page) = load_test(&app, &flags).await;

    assert!(verified, "every promise held");
    assert_eq!(report["buyers"], 1500);
    assert_eq!(report["skus"], 1);
    assert_eq!(report["won"], 40);
    assert_eq!(report["errors"], 0);
    assert_eq!(report["seed"], 7);
    let (double_clicks, two_tabs) = (
        report["double_clicks"].as_u64().expect("double_clicks"),
        report["two_tabs"].as_u64().expect("two_tabs"),
    );
    assert!(
        (200..400).contains(&double_clicks) && (200..400).contains(&two_tabs),
        "about a fifth each: {double_clicks} double-clicks, {two_tabs} two-tab buyers"
    );
    assert_eq!(report["purchases"].as_u64(), Some(1500 + two_tabs));
    // A two-tab buyer who won has a second purchase after the win, which
    // the per-user limit of 1 must refuse; about a third of the winners
    // bought in two tabs.
    assert!(
        report["limit_reached"].as_u64().expect("limit_reached") >= 1,
        "{report}"
    );
    let sku = report["sku"].as_str().expect("sku");
    assert!(
        page.contains("<svg") && page.contains(sku),
        "the HTML report names the drop and has charts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_spread_over_twenty_sizes_sells_every_size_out_and_is_verified() {
    // The app's gateway serves any drop of its database: the tool creates
    // its twenty there, and the app's processor claims them.
    let app = spawn_app().await;
    let flags = [
        "--skus", "20", "--stock", "5", "--buyers", "1500", "--seed", "11",
    ];

    let (verified, report, _) = load_test(&app, &flags).await;

    assert!(verified, "every promise held on every SKU: {report}");
    assert_eq!(report["verified"], true);
    assert_eq!(report["skus"], 20);
    assert_eq!(report["stock"], 100, "the stock of all twenty");
    assert_eq!(report["won"], 100, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    // 75 buyers a size for 5 pairs: every size sells out.
    assert_eq!(report["skus_sold_out"], 20, "{report}");
    assert_eq!(report["buyers"], 1500);
}
