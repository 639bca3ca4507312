//! The page's numbers, series and escaping.

use std::time::Duration;

use dropline_core::Sku;

use super::series::{bucket_width_ms, histogram, nice_step, timeline, TIMELINE_POINTS};
use super::text::{duration_ms, number, thousands};
use super::*;
use crate::burst::BuyerResult;
use crate::setup::DropUnderTest;
use crate::verify::{Verdict, Violation};

fn buyer(
    i: usize,
    outcome: Option<&str>,
    accepted_ms: u64,
    decided_ms: Option<u64>,
) -> BuyerResult {
    BuyerResult {
        key: format!("key-{i}"),
        user: format!("user-{i}"),
        first_status: if outcome == Some("won") { 201 } else { 409 },
        statuses: vec![201],
        final_status: 201,
        outcome: outcome.map(str::to_owned),
        seq: Some(i as u64 + 1),
        accepted_after: Duration::from_millis(accepted_ms),
        decided_after: decided_ms.map(Duration::from_millis),
        ..BuyerResult::default()
    }
}

fn results(buyers: Vec<BuyerResult>) -> BurstResults {
    let wall = buyers
        .iter()
        .filter_map(|b| b.decided_after)
        .max()
        .unwrap_or_default();
    BurstResults {
        buyers,
        wall,
        seed: 7,
    }
}

fn report(results: &BurstResults, stock: u32, verdict: &Verdict) -> Report {
    let drop = DropUnderTest {
        sku: Sku::parse("html-test").unwrap(),
        stock,
        fresh: true,
    };
    Report::new(&[drop], results, verdict, None)
}

fn passed() -> Verdict {
    Verdict::default()
}

/// How often `needle` occurs in `haystack`.
fn occurrences(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// The `data-last` of the polyline of class `series`.
fn last_value(html: &str, series: &str) -> String {
    let start = html
        .find(&format!("class=\"series {series}\" data-last=\""))
        .unwrap_or_else(|| panic!("no {series} line in the page"));
    let rest = &html[start..];
    let value = &rest[rest.find("data-last=\"").unwrap() + "data-last=\"".len()..];
    value[..value.find('"').unwrap()].to_string()
}

#[test]
fn histogram_counts_each_latency_in_its_bucket() {
    let histogram = histogram(&[0.0, 0.5, 1.5, 1.7, 9.0, 10.0], 1.0, 10.0);
    assert_eq!(histogram.counts, vec![2, 2, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
    assert_eq!(histogram.non_empty(), 4);
}

#[test]
fn bucket_widths_are_round_and_keep_bars_under_two_hundred() {
    assert_eq!(bucket_width_ms(8_000.0), 100.0);
    assert_eq!(bucket_width_ms(950.0), 10.0);
    assert_eq!(bucket_width_ms(0.0), 1.0);
    for max_ms in [0.3, 7.0, 123.0, 9_999.0, 120_000.0] {
        let buckets = histogram(&[max_ms], bucket_width_ms(max_ms), max_ms)
            .counts
            .len();
        assert!(buckets <= 200, "{buckets} buckets for {max_ms} ms");
    }
}

#[test]
fn histogram_draws_one_bar_per_non_empty_bucket() {
    // Three tight clusters of decisions and two of accepts, far apart:
    // whatever the bucket width, each cluster fills exactly one bucket.
    let buyers = (0..300)
        .map(|i| {
            let decided = [10, 500, 990][i % 3];
            let accepted = [5, 400][i % 2];
            buyer(i, Some("sold_out"), accepted, Some(decided))
        })
        .collect();
    let results = results(buyers);
    let html = render(&report(&results, 0, &passed()), &results, None);
    assert_eq!(occurrences(&html, "<rect class=\"bar decision\""), 3);
    assert_eq!(occurrences(&html, "<rect class=\"bar accept\""), 2);
}

#[test]
fn decided_series_ends_at_the_number_of_decided_buyers() {
    // 300 buyers, every 15th never decided: 280 decided.
    let buyers = (0..300)
        .map(|i| {
            let decided = (i % 15 != 0).then_some(3 * i as u64);
            buyer(i, decided.map(|_| "sold_out"), 2, decided)
        })
        .collect();
    let results = results(buyers);
    let series = timeline(&results, 0);
    assert_eq!(series.decided.last(), Some(&280));
    assert_eq!(series.decided.first(), Some(&0));
    assert_eq!(series.times_ms.len(), TIMELINE_POINTS);
    let html = render(&report(&results, 0, &passed()), &results, None);
    assert_eq!(last_value(&html, "decided"), "280");
    assert!(html.contains("purchases decided (final 280)"));
}

#[test]
fn remaining_stock_ends_at_stock_minus_winners() {
    // 60 winners of a stock of 100, then sold_out answers.
    let buyers = (0..500)
        .map(|i| {
            let outcome = if i < 60 { "won" } else { "sold_out" };
            buyer(i, Some(outcome), 1, Some(10 + i as u64))
        })
        .collect();
    let results = results(buyers);
    let series = timeline(&results, 100);
    assert_eq!(series.remaining.first(), Some(&100));
    assert_eq!(series.remaining.last(), Some(&40));
    // Midway through the wins (win i answered at 10 + i ms), the units
    // won so far are gone and no more.
    let t = series.times_ms[20];
    assert!((40.0..69.0).contains(&t), "sample 20 at {t} ms");
    let won_by_t = (0..60).filter(|i| (10 + i) as f64 <= t).count() as i64;
    assert_eq!(series.remaining[20], 100 - won_by_t);
    let html = render(&report(&results, 100, &passed()), &results, None);
    assert_eq!(last_value(&html, "remaining"), "40");
}

#[test]
fn over_many_skus_the_remaining_stock_is_the_total_and_the_sell_out_is_counted() {
    // Three sizes of 4 units: size 0 sells out, size 1 sells 2, size 2 none.
    let drops: Vec<DropUnderTest> = (0..3)
        .map(|i| DropUnderTest {
            sku: Sku::parse(format!("size-{i}")).unwrap(),
            stock: 4,
            fresh: true,
        })
        .collect();
    let buyers = (0..10)
        .map(|i| {
            let (size, outcome) = match i {
                0..=3 => (0, "won"),
                4..=5 => (1, "won"),
                6 => (0, "sold_out"),
                _ => (2, "limit_reached"),
            };
            BuyerResult {
                sku: format!("size-{size}"),
                ..buyer(i, Some(outcome), 1, Some(5 + i as u64))
            }
        })
        .collect();
    let results = results(buyers);
    let report = Report::new(&drops, &results, &passed(), None);
    assert_eq!(
        (report.skus, report.skus_sold_out, report.stock),
        (3, 1, 12)
    );
    assert_eq!(report.won, 6);
    assert_eq!(report.sku, "size-0 … size-2");
    assert_eq!(report.sell_out(), "1 of 3 SKUs sold their 4 units");
    let html = render(&report, &results, None);
    assert_eq!(last_value(&html, "remaining"), "6");
    assert!(html.contains("for 12 units over 3 SKUs"));
    assert!(html.contains("<dt>SKUs sold out</dt><dd>1 of 3</dd>"));
}

#[test]
fn an_oversell_shows_as_negative_remaining_stock() {
    let buyers = (0..12).map(|i| buyer(i, Some("won"), 1, Some(5))).collect();
    let results = results(buyers);
    assert_eq!(timeline(&results, 10).remaining.last(), Some(&-2));
}

#[test]
fn embedded_text_is_escaped() {
    let results = results(vec![buyer(0, Some("won"), 1, Some(2))]);
    let verdict = Verdict {
        violations: vec![Violation("replay of <script>alert(1)</script> & co".into())],
        notes: vec!["note <i>".into()],
        ..Verdict::default()
    };
    let mut report = report(&results, 1, &verdict);
    report.sku = "<script>alert('sku')</script>".into();
    report.chaos = Some("kill <b>".into());
    let run = RunInfo {
        url: "http://x/\"><script>alert(2)</script>".into(),
        per_user_limit: 1,
    };
    let html = render(&report, &results, Some(&run));
    assert!(!html.contains("<script"), "raw <script> in the page");
    assert!(!html.contains("<b>"));
    assert!(html.contains("kill &lt;b&gt;"));
    assert!(!html.contains("<i>"));
    assert!(html.contains("note &lt;i&gt;"));
    assert!(html.contains("replay of &lt;script&gt;alert(1)&lt;/script&gt; &amp; co"));
    assert!(html.contains("&lt;script&gt;alert(&#39;sku&#39;)&lt;/script&gt;"));
    assert!(html.contains("http://x/&quot;&gt;&lt;script&gt;"));
    assert!(html.contains("FAILED"));
}

#[test]
fn header_says_what_ran_and_the_verdict() {
    let buyers = (0..3)
        .map(|i| buyer(i, Some(if i == 0 { "won" } else { "sold_out" }), 1, Some(2)))
        .collect();
    let results = results(buyers);
    let report = report(&results, 1, &passed());
    let run = RunInfo {
        url: "http://127.0.0.1:8080".into(),
        per_user_limit: 3,
    };
    let html = render(&report, &results, Some(&run));
    assert!(html.contains("PASSED"));
    assert!(!html.contains("FAILED"));
    assert!(html.contains("<dt>per-user limit</dt><dd>3</dd>"));
    assert!(html.contains("<dd class=\"wide\">http://127.0.0.1:8080</dd>"));
    assert!(html.contains("<dt>won</dt><dd>1</dd>"));
    assert!(html.contains("<dt>sold_out</dt><dd>2</dd>"));
    let bare = render(&report, &results, None);
    assert!(
        bare.contains(">target</dt><dd class=\"wide\"><span class=\"muted\">not recorded</span>")
    );
}

#[test]
fn page_loads_nothing_from_elsewhere() {
    let results = results(vec![buyer(0, Some("won"), 1, Some(2))]);
    let html = render(&report(&results, 1, &passed()), &results, None);
    for fetch in ["<script", "src=", "href=", "url(", "@import", "<link"] {
        assert!(!html.contains(fetch), "the page contains {fetch}");
    }
}

#[test]
fn fifty_thousand_buyers_make_a_small_page() {
    let buyers = (0..50_000)
        .map(|i| {
            let outcome = if i < 100 { "won" } else { "sold_out" };
            buyer(i, Some(outcome), i as u64 / 9, Some(i as u64 / 7))
        })
        .collect();
    let results = results(buyers);
    let html = render(&report(&results, 100, &passed()), &results, None);
    assert!(occurrences(&html, "<rect class=\"bar decision\"") <= 200);
    assert!(occurrences(&html, "<rect class=\"bar accept\"") <= 200);
    assert!(html.len() < 300 * 1024, "{} bytes", html.len());
    assert_eq!(last_value(&html, "decided"), "50000");
    assert_eq!(last_value(&html, "remaining"), "0");
}

#[test]
fn numbers_read_well() {
    assert_eq!(thousands(0), "0");
    assert_eq!(thousands(999), "999");
    assert_eq!(thousands(50_000), "50,000");
    assert_eq!(thousands(1_234_567), "1,234,567");
    assert_eq!(number(0.3, 0.1), "0.3");
    assert_eq!(number(2500.0, 500.0), "2,500");
    assert_eq!(number(-20.0, 10.0), "−20");
    assert_eq!(nice_step(8_000.0, 10), 1_000.0);
    assert_eq!(nice_step(7.0, 10), 1.0);
    assert_eq!(nice_step(0.9, 10), 0.1);
    assert_eq!(duration_ms(2_533.44), "2,533.4 ms");
    assert_eq!(duration_ms(0.06), "0.1 ms");
    assert_eq!(duration_ms(12_345.0), "12.35 s");
}
