//! The HTML report, opened in a real browser: headless Chromium renders the
//! page for 50,000 synthetic buyers to a screenshot, and each chart series
//! must cover a real stretch of its chart in its own colour.

use std::path::Path;
use std::time::Duration;

use dropline_core::Sku;
use dropline_testkit::browser::Browser;
use dropline_testkit::pixels::{missing_series, Image, Series};
use loadtest::burst::{BurstResults, BuyerResult};
use loadtest::html::{self, RunInfo};
use loadtest::report::Report;
use loadtest::setup::DropUnderTest;
use loadtest::verify::Verdict;

/// Longest the report may take to load before the test gives up.
const PAGE_WAIT: Duration = Duration::from_secs(120);
const WINDOW_WIDTH: u32 = 1280;
/// Tall enough for the whole page at this width.
const WINDOW_HEIGHT: u32 = 2000;

/// The series colours of `html/charts.rs`, spelled out again so a chart drawn in
/// the wrong colour (or not at all) fails here.
const DECISION_BARS: [u8; 3] = [0x25, 0x63, 0xeb];
const ACCEPT_BARS: [u8; 3] = [0xf5, 0x9e, 0x0b];
const DECIDED_LINE: [u8; 3] = [0x0d, 0x94, 0x88];
const REMAINING_LINE: [u8; 3] = [0xc0, 0x26, 0xd3];

const BUYERS: usize = 50_000;
const STOCK: u32 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_charts_render_in_headless_chromium() {
    let (report, results) = realistic_burst();
    let run = RunInfo {
        url: "http://127.0.0.1:8080".into(),
        per_user_limit: 1,
    };
    let dir = tempfile::tempdir().expect("create a temp dir");
    let page = dir.path().join("report.html");
    html::write(&page, &report, &results, &run).expect("write the report");

    let shot = screenshot(&page, dir.path()).await;
    // To look at it: the screenshot there, and the page beside it (.html).
    if let Ok(keep) = std::env::var("HTML_REPORT_SCREENSHOT") {
        std::fs::write(&keep, &shot).expect("keep the screenshot");
        std::fs::copy(&page, Path::new(&keep).with_extension("html")).expect("keep the page");
    }
    let failures = missing_series(&decode(&shot), &EXPECTED);
    assert!(failures.is_empty(), "charts did not render: {failures:#?}");
}

/// The control: with the series taken out of the same page, what is left
/// (legend swatches, header, axes) must not pass the check above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_without_its_series_fails_the_render_check() {
    let (report, results) = realistic_burst();
    let dir = tempfile::tempdir().expect("create a temp dir");
    let page = dir.path().join("report.html");
    let stripped = without_series(&html::render(&report, &results, None));
    assert!(!stripped.contains("class=\"series "));
    std::fs::write(&page, stripped).expect("write the stripped report");

    let image = decode(&screenshot(&page, dir.path()).await);
    assert_eq!(
        missing_series(&image, &EXPECTED).len(),
        4,
        "the legend alone passed"
    );
}

/// 50,000 buyers against 100 units, decided at about 9,000 per second after
/// a 40 ms start; one in ten got an early 202 and was decided by a GET.
fn realistic_burst() -> (Report, BurstResults) {
    let mut random = XorShift(0x5eed_1234_abcd_0001);
    let buyers: Vec<BuyerResult> = (0..BUYERS)
        .map(|i| {
            let decided_ms = 40.0 + i as f64 / 9.0 + random.below(30.0);
            let early_202 = random.below(1.0) < 0.1;
            let accepted_ms = if early_202 {
                20.0 + random.below(280.0)
            } else {
                decided_ms
            };
            let outcome = if i < STOCK as usize {
                "won"
            } else {
                "sold_out"
            };
            BuyerResult {
                key: format!("key-{i}"),
                user: format!("user-{i}"),
                first_status: if early_202 {
                    202
                } else if i < STOCK as usize {
                    201
                } else {
                    409
                },
                statuses: vec![201],
                final_status: if i < STOCK as usize { 201 } else { 409 },
                outcome: Some(outcome.into()),
                order_id: (i < STOCK as usize).then(|| format!("order-{i}")),
                seq: Some(i as u64 + 1),
                accepted_after: Duration::from_secs_f64(accepted_ms / 1e3),
                decided_after: Some(Duration::from_secs_f64(decided_ms / 1e3)),
                ..BuyerResult::default()
            }
        })
        .collect();
    let wall = buyers
        .iter()
        .filter_map(|b| b.decided_after)
        .max()
        .unwrap_or_default();
    let results = BurstResults {
        buyers,
        wall,
        seed: 42,
    };
    let drop = DropUnderTest {
        sku: Sku::parse("AJ1-chicago").expect("a valid SKU"),
        stock: STOCK,
        fresh: true,
    };
    let verdict = Verdict {
        replays_checked: 200,
        ..Verdict::default()
    };
    let report = Report::new(&[drop], &results, &verdict, None);
    (report, results)
}

/// Deterministic noise, so the picture is the same every run.
struct XorShift(u64);

impl XorShift {
    /// Uniform in `[0, max)`.
    fn below(&mut self, max: f64) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 * max
    }
}

/// Renders `page` in headless Chromium (testkit's browser) and returns the
/// PNG, taken once the page has loaded.
async fn screenshot(page: &Path, dir: &Path) -> Vec<u8> {
    let mut browser = Browser::launch(dir, WINDOW_WIDTH, WINDOW_HEIGHT)
        .await
        .expect("headless Chromium");
    browser
        .navigate(&format!("file://{}", page.display()))
        .await
        .expect("load the report");
    browser
        .wait_for(
            "document.readyState === 'complete'",
            "document.readyState",
            PAGE_WAIT,
        )
        .await
        .expect("the report loads");
    browser.screenshot().await.expect("screenshot")
}

/// What a drawn series must cover: far more than its legend swatch (12×12
/// for bars, 20×3 for lines), spread across the plot. The decided line
/// rises and the stock line falls, so both span height as well.
const EXPECTED: [Series; 4] = [
    Series {
        name: "decision latency bars",
        colour: DECISION_BARS,
        pixels_min: 5_000,
        width_px_min: 400,
        height_px_min: 60,
    },
    Series {
        name: "accept latency bars",
        colour: ACCEPT_BARS,
        pixels_min: 5_000,
        width_px_min: 400,
        height_px_min: 60,
    },
    Series {
        name: "buyers decided line",
        colour: DECIDED_LINE,
        pixels_min: 600,
        width_px_min: 400,
        height_px_min: 100,
    },
    Series {
        name: "remaining stock line",
        colour: REMAINING_LINE,
        pixels_min: 600,
        width_px_min: 400,
        height_px_min: 100,
    },
];

fn decode(shot: &[u8]) -> Image {
    Image::decode(shot).expect("decode the screenshot")
}

/// The page with every series element (bar groups, lines) removed.
fn without_series(html: &str) -> String {
    let mut out = html.to_string();
    for (open, close) in [
        ("<g class=\"series ", "</g>"),
        ("<polyline class=\"series ", "/>"),
    ] {
        while let Some(start) = out.find(open) {
            let end = out[start..]
                .find(close)
                .map(|at| start + at + close.len())
                .expect("a closed series element");
            out.replace_range(start..end, "");
        }
    }
    out
}
