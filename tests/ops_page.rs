//! The live ops page (`GET /ops/drops/{sku}`) in a real browser: headless
//! Chromium keeps it open while a small drop sells out, the stock it shows
//! counts down to 0, and each chart's series is drawn in its own colour
//! (pixels checked on a screenshot). The control: the same page with its
//! figures blocked draws none of them, so the check is not satisfied by the
//! page's frame alone. And what the page polls, `/ops/drops/{sku}/stats`.

use std::sync::Arc;
use std::time::Duration;

use dropline_suite::buyers::{assert_exactly_sold, buy_until_decided};
use dropline_suite::{spawn_app_with, AppOptions, TestApp};
use dropline_testkit::browser::Browser;
use dropline_testkit::pixels::{missing_series, Image, Series};

const STOCK: usize = 40;
/// Buyers come in waves, so the page sees the stock fall step by step.
const WAVES: usize = 10;
const BUYERS_PER_WAVE: usize = 8;
const WAVE_GAP: Duration = Duration::from_millis(300);
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 1000;
const PAGE_WAIT: Duration = Duration::from_secs(30);
const REMAINING: &str = "document.getElementById('remaining').textContent";
/// What the page shows, for a failure's message.
const SHOWN: &str = "[document.getElementById('remaining').textContent, \
                     document.getElementById('problem').textContent]";

/// The series colours of `ops_page.html`, spelled out again so a chart
/// drawn in the wrong colour (or not at all) fails here. A chart's plot is
/// about 550×170 px at this width; a drawn line spans most of its width.
/// Stock falls from 40 to 0 and the decision rate rises and falls, so
/// those two span height too; waiting and lag may stay near 0 in a drop
/// this small (the owner records them at most once a second).
const SERIES: [Series; 4] = [
    Series {
        name: "remaining stock",
        colour: [0xc0, 0x26, 0xd3],
        pixels_min: 600,
        width_px_min: 400,
        height_px_min: 100,
    },
    Series {
        name: "decisions per second",
        colour: [0x25, 0x63, 0xeb],
        pixels_min: 600,
        width_px_min: 400,
        height_px_min: 50,
    },
    Series {
        name: "waiting intents",
        colour: [0x0d, 0x94, 0x88],
        pixels_min: 600,
        width_px_min: 400,
        height_px_min: 0,
    },
    Series {
        name: "lag",
        colour: [0xf5, 0x9e, 0x0b],
        pixels_min: 600,
        width_px_min: 400,
        height_px_min: 0,
    },
];

async fn live_app() -> Arc<TestApp> {
    Arc::new(
        spawn_app_with(AppOptions {
            stock: STOCK as i64,
            ..AppOptions::default()
        })
        .await,
    )
}

fn page_url(app: &TestApp) -> String {
    format!("{}/ops/drops/{}", app.base_url, app.sku)
}

async fn open_page(app: &TestApp, dir: &std::path::Path, blocked: &[&str]) -> Browser {
    let mut browser = Browser::launch(dir, WIDTH, HEIGHT)
        .await
        .expect("headless Chromium");
    browser.block(blocked).await.expect("block URLs");
    browser
        .navigate(&page_url(app))
        .await
        .expect("load the page");
    browser
}

/// Sells the drop out in waves; every buyer is decided, exactly the stock won.
async fn sell_in_waves(app: &Arc<TestApp>) {
    let mut buyers = Vec::new();
    for wave in 0..WAVES {
        for i in 0..BUYERS_PER_WAVE {
            let app = app.clone();
            let (key, user) = (format!("w{wave}-{i}"), format!("user-w{wave}-{i}"));
            buyers.push(tokio::spawn(async move {
                buy_until_decided(&app, key, user, Duration::from_secs(60)).await
            }));
        }
        tokio::time::sleep(WAVE_GAP).await;
    }
    let mut outcomes = Vec::new();
    for buyer in buyers {
        outcomes.push(buyer.await.expect("buyer"));
    }
    assert_exactly_sold(&outcomes, STOCK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_counts_the_stock_down_and_charts_the_drop() {
    let app = live_app().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut browser = open_page(&app, dir.path(), &[]).await;
    let full = format!("{REMAINING} === '{STOCK}'");
    browser
        .wait_for(&full, SHOWN, PAGE_WAIT)
        .await
        .expect("the page shows the full stock before the drop starts");

    sell_in_waves(&app).await;
    browser
        .wait_for(&format!("{REMAINING} === '0'"), SHOWN, PAGE_WAIT)
        .await
        .expect("the page's stock reaches 0");
    // A few samples more, so the charts end on the final figures.
    let seen: u64 = browser
        .evaluate("samples.length")
        .await
        .expect("samples")
        .as_u64()
        .expect("a count");
    browser
        .wait_for(
            &format!("samples.length >= {}", seen + 3),
            "samples.length",
            PAGE_WAIT,
        )
        .await
        .expect("the page keeps polling");

    let shot = browser.screenshot().await.expect("screenshot");
    if let Ok(keep) = std::env::var("OPS_PAGE_SCREENSHOT") {
        std::fs::write(&keep, &shot).expect("keep the screenshot");
    }
    let image = Image::decode(&shot).expect("decode the screenshot");
    let failures = missing_series(&image, &SERIES);
    assert!(failures.is_empty(), "charts not drawn: {failures:#?}");
    app.assert_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_without_its_figures_fails_the_chart_check() {
    let app = live_app().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut browser = open_page(&app, dir.path(), &["*/stats"]).await;
    let problem = "document.getElementById('problem')";
    browser
        .wait_for(
            &format!("{problem}.style.display === 'block' && {problem}.textContent !== ''"),
            &format!("{problem}.textContent"),
            PAGE_WAIT,
        )
        .await
        .expect("the page says it has no figures");
    sell_in_waves(&app).await;
    // Polls keep failing meanwhile; the picture is the page's frame only.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let image = Image::decode(&browser.screenshot().await.expect("screenshot")).expect("decode");
    assert_eq!(
        missing_series(&image, &SERIES).len(),
        SERIES.len(),
        "a page without figures passed the chart check"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_give_the_drop_and_its_progress() {
    let app = live_app().await;
    let first = buy_until_decided(&app, "k1".into(), "u1".into(), Duration::from_secs(30)).await;
    assert_eq!(first.outcome.as_deref(), Some("won"));
    let stats = app.get(&format!("/ops/drops/{}/stats", app.sku)).await;
    assert_eq!(stats.status, 200, "{stats:?}");
    let body = &stats.body;
    assert_eq!(body["sku"], app.sku.as_str());
    assert_eq!(body["status"], "open");
    assert_eq!(body["initial_stock"], STOCK);
    assert_eq!(body["remaining"], STOCK - 1);
    assert_eq!(body["won"], 1);
    assert_eq!(body["decided"], 1);
    for field in ["waiting_intents", "lag_s", "decisions_per_s", "epoch"] {
        assert!(body[field].is_number(), "{field} in {body}");
    }
    assert_eq!(body["lease_live"], true);
    assert!(body["owner"].is_string(), "{body}");
    assert!(body["halted"].is_null(), "{body}");

    let page = app.get(&format!("/ops/drops/{}", app.sku)).await;
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"), "{page:?}");
    for (path, status) in [
        ("/ops/drops/no-such-drop", 404),
        ("/ops/drops/no-such-drop/stats", 404),
        ("/ops/drops/a.b/stats", 400),
    ] {
        let answer = app.get(path).await;
        assert_eq!(answer.status, status, "{path}: {answer:?}");
        assert_eq!(answer.content_type, "application/problem+json", "{path}");
    }
}
