//! `compare` end to end, small: the real binary against the machine's NATS,
//! Postgres and Redis, every design on the sneaker drop and the
//! slow-database day. The seed's design must oversell (its lock expires
//! under the slow write), dropline must keep every promise, and the verdict
//! must say so. And the sizes drop (buyers over several SKUs at once): each
//! careful design sells each SKU exactly its stock. Needs `target/debug/dropline` beside the binary (`just test`
//! builds it). Each row uses its own SKU and database, dropped afterwards.

use std::process::Command;

use serde_json::Value;

const STOCK: u64 = 10;

#[test]
fn the_seed_design_oversells_and_dropline_keeps_every_promise() {
    let stock = STOCK.to_string();
    let (rows, stdout) = compare(&[
        &["--workloads", "sneaker,slow-db"],
        &["--sneaker-buyers", "200", "--sneaker-stock", &stock],
        &["--slow-db-buyers", "60", "--slow-db-stock", &stock],
        &["--db-delay-ms", "50"],
        // The lock expires before the write ends: the incident, in small.
        &["--lock-ms", "50", "--write-ms", "80"],
    ]);
    assert_eq!(rows.len(), 8, "two workloads × four designs: {rows:#?}");
    assert_every_row_is_complete(&rows);
    assert_only_the_seed_broke_a_promise(&rows);
    assert_the_verdict_is_printed(&stdout);
}

#[test]
fn every_careful_design_sells_each_size_exactly_its_stock() {
    let (rows, stdout) = compare(&[
        &["--workloads", "sizes"],
        &["--strategies", "row-lock,redis-lua,dropline"],
        &[
            "--sizes-buyers",
            "300",
            "--sizes-skus",
            "4",
            "--sizes-stock",
            "3",
        ],
    ]);
    assert_eq!(rows.len(), 3, "one workload × three designs: {rows:#?}");
    assert_every_row_is_complete(&rows);
    for row in &rows {
        assert_eq!(
            (&row["skus"], &row["stock"]),
            (&4.into(), &12.into()),
            "{row}"
        );
        // Sold in all is 12; `oversold` counts each SKU against its own 3,
        // so 12 sold with none oversold is 3 of every size.
        assert_eq!(row["sold"], 12, "{row}");
        for broken in ["oversold", "duplicates", "lost", "errors"] {
            assert_eq!(row[broken], 0, "{broken}: {row}");
        }
    }
    assert!(
        stdout.contains("sizes: 300 buyers, 4 SKUs × 3 units"),
        "{stdout}"
    );
}

/// Runs `compare` small (32 connections, 8 database connections per
/// design, 200 ms settle) with `args` on top; its JSON rows and stdout.
fn compare(args: &[&[&str]]) -> (Vec<Value>, String) {
    let out = tempfile::tempdir().expect("temporary directory");
    let json = out.path().join("compare.json");
    let run = Command::new(env!("CARGO_BIN_EXE_compare"))
        .args(args.iter().flat_map(|group| group.iter()))
        .args(["--connections", "32", "--db-connections-max", "8"])
        .args(["--settle-ms", "200", "--json"])
        .arg(&json)
        .output()
        .expect("run compare");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "compare failed: {}\n{stdout}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let rows =
        serde_json::from_slice(&std::fs::read(&json).expect("JSON rows")).expect("valid JSON");
    (rows, stdout)
}

/// Every field a reader of the JSON relies on is in every row.
fn assert_every_row_is_complete(rows: &[Value]) {
    for fields in rows {
        for field in [
            "workload",
            "strategy",
            "buyers",
            "skus",
            "stock",
            "sold",
            "oversold",
            "duplicates",
            "lost",
            "errors",
            "wall_s",
            "decisions_per_s",
            "p50_ms",
            "p99_ms",
        ] {
            assert!(fields.get(field).is_some(), "{field} missing in {fields}");
        }
    }
}

fn assert_only_the_seed_broke_a_promise(rows: &[Value]) {
    let row = |workload: &str, strategy: &str| -> &Value {
        rows.iter()
            .find(|r| r["workload"] == workload && r["strategy"] == strategy)
            .unwrap_or_else(|| panic!("no row {workload} / {strategy}"))
    };
    let seed = row("sneaker", "seed-lock");
    assert!(
        seed["oversold"].as_u64().expect("oversold") > 0,
        "the seed's lock expired under its write, so it oversells: {seed}"
    );
    for workload in ["sneaker", "slow-db"] {
        for strategy in ["row-lock", "dropline"] {
            let clean = row(workload, strategy);
            assert_eq!(clean["sold"], STOCK, "{clean}");
            for broken in ["oversold", "duplicates", "lost", "errors"] {
                assert_eq!(clean[broken], 0, "{broken}: {clean}");
            }
        }
    }
}

/// Each table is followed by the ratios, and the run by the verdict.
fn assert_the_verdict_is_printed(stdout: &str) {
    assert!(
        stdout.contains("wall time against dropline's"),
        "each table is followed by the ratios: {stdout}"
    );
    let verdict = stdout
        .lines()
        .find(|line| line.starts_with("kept every promise in every workload run:"))
        .unwrap_or_else(|| panic!("no verdict: {stdout}"));
    assert!(
        verdict.contains("dropline") && !verdict.contains("seed-lock"),
        "{verdict}"
    );
    assert!(
        stdout.contains("seed-lock broke a promise (sneaker: "),
        "{stdout}"
    );
}
