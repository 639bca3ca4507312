//! `bench --only idle`, small: the real binary with a real stack (gateway,
//! two processors, a private nats-server, a fresh database). Its figures
//! are timings and are judged in `just bench`, not here; this checks that
//! the part runs and reports what it measured, consistently: every drop
//! owned, by both processors, each acquisition counted, and CPU shares
//! that add up. Needs `dropline` beside the binary (`just test` builds it).

use std::process::Command;

use serde_json::Value;

const DROPS: u64 = 12;

#[test]
fn the_idle_part_reports_ownership_and_cpu_of_many_open_drops() {
    let out = tempfile::tempdir().expect("temporary directory");
    let json = out.path().join("bench.json");
    let run = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--only", "idle", "--idle-drops", &DROPS.to_string()])
        .args(["--idle-s", "1", "--json"])
        .arg(&json)
        .output()
        .expect("run bench");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "bench failed: {}\n{stdout}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let figures: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("JSON figures")).expect("valid JSON");
    assert_eq!(figures["idle_drops"], DROPS, "{figures}");
    let per_processor = figures["idle_partitions_per_processor"]
        .as_object()
        .expect("partitions per processor");
    let owned: u64 = per_processor.values().filter_map(Value::as_u64).sum();
    assert_eq!(owned, DROPS, "every drop has one owner: {figures}");
    let acquisitions = figures["idle_lease_acquisitions"].as_u64().expect("count");
    assert!(
        acquisitions >= DROPS,
        "one claim per drop at least: {figures}"
    );
    let share = |name: &str| figures[name].as_f64().unwrap_or(-1.0);
    let parts = ["gateway", "processors", "nats", "postgres"]
        .map(|p| share(&format!("idle_cpu_{p}_share")));
    assert!(parts.iter().all(|s| *s >= 0.0), "{figures}");
    assert!(
        (parts.iter().sum::<f64>() - share("idle_cpu_share")).abs() < 1e-9,
        "the total is the sum of its parts: {figures}"
    );
    assert!(
        stdout.contains(&format!("{DROPS} drops created together: all owned")),
        "{stdout}"
    );
}
