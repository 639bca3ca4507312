//! What operators read: `dropctl winners` (the warehouse's export) and
//! `dropctl status` (per drop: state, stock, waiting, lag, owner), and
//! `drop create`/`drop pause` shaping the states status shows. Every
//! command is the real `dropctl` binary.

use std::time::Duration;

use chrono::SecondsFormat;
use dropline_core::Sku;
use dropline_store::PartitionProgress;
use dropline_suite::{create_sizes, db, dropctl, spawn_app_with, AppOptions, Role, TestApp};

const HEADER: &str = "seq,order_id,user_id,quantity,idempotency_key,decided_at";

fn quoted(field: &str) -> String {
    if field.contains([',', '"', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// The CSV `dropctl winners` must print, made from the store's read model.
async fn expected_csv(app: &TestApp) -> String {
    let winners = app.store.winners(&app.sku).await.expect("winners");
    let mut csv = format!("{HEADER}\n");
    for w in &winners {
        csv += &format!(
            "{},{},{},{},{},{}\n",
            w.seq,
            w.order_id,
            quoted(w.user_id.as_str()),
            w.quantity.get(),
            quoted(w.idempotency_key.as_str()),
            w.decided_at.to_rfc3339_opts(SecondsFormat::Micros, true)
        );
    }
    csv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn winners_exports_every_won_order_in_line_order() {
    let app = spawn_app_with(AppOptions {
        stock: 3,
        ..AppOptions::default()
    })
    .await;
    let buyers = [
        ("k1", "smith, john"),
        ("k2", "o\"neil"),
        ("k3", "ana"),
        ("k4", "bob"),
    ];
    for (key, user) in buyers {
        app.buy(key, user, 10).await;
    }
    let sku = app.sku.as_str();
    let csv = dropctl(&app, &["winners", sku]).await;
    assert!(csv.ok, "{csv:#?}");
    assert_eq!(csv.stdout.lines().next(), Some(HEADER));
    assert_eq!(csv.stdout, expected_csv(&app).await);
    assert_eq!(
        csv.stdout.lines().count(),
        4,
        "three winners: {}",
        csv.stdout
    );
    assert!(csv.stdout.contains(",\"smith, john\",") && csv.stdout.contains(",\"o\"\"neil\","));

    let json = dropctl(&app, &["winners", sku, "--format", "json"]).await;
    let rows = json.json();
    let rows = rows.as_array().expect("an array");
    let winners = app.store.winners(&app.sku).await.expect("winners");
    assert_eq!(rows.len(), winners.len());
    for (row, winner) in rows.iter().zip(&winners) {
        assert_eq!(row["seq"], winner.seq);
        assert_eq!(row["order_id"], winner.order_id.to_string());
        assert_eq!(row["user_id"], winner.user_id.as_str());
        assert_eq!(row["idempotency_key"], winner.idempotency_key.as_str());
        assert_eq!(row["quantity"], 1);
        assert!(row["decided_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    }

    let path = std::env::temp_dir().join(format!("winners-{sku}.csv"));
    let path_text = path.to_string_lossy().into_owned();
    let file = dropctl(&app, &["winners", sku, "--output", &path_text]).await;
    assert!(file.ok && file.stdout.is_empty(), "{file:#?}");
    assert!(
        file.stderr.contains(&path_text),
        "says where: {}",
        file.stderr
    );
    let written = std::fs::read_to_string(&path).expect("the file");
    std::fs::remove_file(&path).expect("remove the file");
    assert_eq!(written, csv.stdout);
}

/// The status row of `sku` in `dropctl status --json`'s rows.
fn row<'a>(rows: &'a serde_json::Value, sku: &str) -> &'a serde_json::Value {
    rows.as_array()
        .and_then(|rows| rows.iter().find(|r| r["sku"] == sku))
        .unwrap_or_else(|| panic!("no row for {sku} in {rows:#}"))
}

/// Beside the app's open drop: `<sku>-s`, scheduled an hour ahead, and
/// `<sku>-p`, created with an opening already past (so open) and paused.
async fn create_scheduled_and_paused(app: &TestApp) -> (String, String) {
    let open = app.sku.as_str();
    let (scheduled, paused) = (format!("{open}-s"), format!("{open}-p"));
    let opens_at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let create = [
        "drop",
        "create",
        &scheduled,
        "--stock",
        "5",
        "--opens-at",
        &opens_at,
        "--json",
    ];
    let created = dropctl(app, &create).await;
    assert_eq!(created.json()["status"], "scheduled", "{created:#?}");
    let past = "2020-01-01T00:00:00Z";
    let created = dropctl(
        app,
        &[
            "drop",
            "create",
            &paused,
            "--stock",
            "7",
            "--opens-at",
            past,
        ],
    )
    .await;
    assert!(
        created.ok && created.stdout.contains("open"),
        "opens at once: {created:#?}"
    );
    let pause = dropctl(app, &["drop", "pause", &paused, "--json"])
        .await
        .json();
    assert_eq!(
        (&pause["status"], &pause["changed"]),
        (&"paused".into(), &true.into())
    );
    (scheduled, paused)
}

/// A malformed `--opens-at` is a one-line error and creates nothing.
async fn a_bad_opening_changes_nothing(app: &TestApp) {
    let sku = format!("{}-x", app.sku);
    let bad = dropctl(
        app,
        &[
            "drop",
            "create",
            &sku,
            "--stock",
            "1",
            "--opens-at",
            "next tuesday",
        ],
    )
    .await;
    assert!(
        !bad.ok && bad.stderr.trim().lines().count() == 1,
        "{bad:#?}"
    );
    assert!(bad.stderr.starts_with("dropctl: --opens-at"), "{bad:#?}");
    let never = Sku::parse(sku).expect("sku");
    assert!(
        app.store.drop(&never).await.expect("read").is_none(),
        "nothing created"
    );
}

/// Every row has the progress fields, sane for a line with nothing waiting.
fn assert_row(rows: &serde_json::Value, (sku, state, stock, decided): (&str, &str, u32, u64)) {
    let row = row(rows, sku);
    let shown = (&row["status"], &row["stock"], &row["decided"]);
    assert_eq!(
        shown,
        (&state.into(), &stock.into(), &decided.into()),
        "{row:#}"
    );
    assert_eq!(row["waiting_intents"], 0, "{row:#}");
    assert!(
        row["lag_s"].as_f64().is_some_and(|lag| lag >= 0.0),
        "{row:#}"
    );
    assert!(
        row["decisions_per_s"].as_f64().is_some_and(|r| r >= 0.0),
        "{row:#}"
    );
    assert!(row["halted"].is_null() && row["epoch"].is_u64(), "{row:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_waiting_lag_and_state_per_drop() {
    let app = spawn_app_with(AppOptions::default()).await;
    assert_eq!(app.buy("k1", "ana", 10).await.status, 201);
    let open = app.sku.as_str();
    let (scheduled, paused) = create_scheduled_and_paused(&app).await;
    a_bad_opening_changes_nothing(&app).await;

    let status = dropctl(&app, &["status", "--json"]).await;
    assert!(status.ok, "{status:#?}");
    let rows = status.json();
    assert_row(&rows, (open, "open", 100, 1));
    assert_row(&rows, (&scheduled, "scheduled", 5, 0));
    assert_row(&rows, (&paused, "paused", 7, 0));
    assert!(row(&rows, &scheduled)["opens_at"].is_string());
    assert_eq!(
        row(&rows, open)["lease_live"],
        true,
        "the open drop has an owner"
    );

    let table = dropctl(&app, &["status"]).await;
    let columns = ["state", "waiting", "lag s", "dec/s", "owner", "epoch"];
    for shown in columns.into_iter().chain(["scheduled (opens", "paused"]) {
        assert!(table.stdout.contains(shown), "{shown}: {}", table.stdout);
    }
    let missing = dropctl(&app, &["status", "no-such-drop"]).await;
    let refused = (missing.ok, missing.stderr.trim());
    assert_eq!(refused, (false, "dropctl: no drop no-such-drop"));
}

/// A scheduled drop whose opening time has come is open for buyers (every
/// gateway's clock opens it, the store still says scheduled): status says
/// so too, in the table and in JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_a_drop_open_once_its_time_has_come() {
    let opens_at = chrono::Utc::now() + chrono::Duration::milliseconds(1_500);
    let app = spawn_app_with(AppOptions {
        opens_at: Some(opens_at),
        ..AppOptions::default()
    })
    .await;
    let sku = app.sku.as_str();
    let before = dropctl(&app, &["status", sku, "--json"]).await;
    assert_eq!(before.json()[0]["status"], "scheduled", "{before:#?}");
    tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_millis(2_000)).await;
    let after = dropctl(&app, &["status", sku, "--json"]).await;
    assert_eq!(after.json()[0]["status"], "open", "{after:#?}");
    let table = dropctl(&app, &["status", sku]).await;
    assert!(table.stdout.contains("┆ open "), "{}", table.stdout);
    assert!(!table.stdout.contains("scheduled"), "{}", table.stdout);
}

/// An instance writes its partitions' progress records in one statement,
/// which never waits for a partition row another transaction holds (a
/// shared commit locks its rows in SKU order; a wait here could deadlock
/// with it and stall every batch of the instance): the locked row is
/// skipped, for the writer to write again; a record of an epoch gone is
/// not written at all; the others are, with the moment their owner looked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_records_skip_a_locked_partition_row_instead_of_waiting() {
    let (app, sizes) = sizes_nobody_owns::<3>().await;
    let [locked, free, gone] = sizes;
    let seen_at = chrono::Utc::now() - chrono::Duration::seconds(3);
    let progress = PartitionProgress {
        waiting_intents: 7,
        oldest_waiting_at: None,
        decisions_per_s: 12.5,
        seen_at,
    };
    let pool = db(&app.database_url).await;
    let mut holder = pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM partitions WHERE sku = $1 FOR UPDATE")
        .bind(locked.as_str())
        .execute(&mut *holder)
        .await
        .expect("hold the row");

    let records = [
        (locked.clone(), 0, progress),
        (free.clone(), 0, progress),
        (gone.clone(), 9, progress),
    ];
    let written = tokio::time::timeout(
        Duration::from_secs(5),
        app.store.record_progress_of(&records),
    )
    .await
    .expect("the write does not wait for the locked row")
    .expect("the write goes through");
    assert_eq!(written, std::slice::from_ref(&free));
    holder.rollback().await.expect("let go of the row");
    let again = app
        .store
        .record_progress_of(&records[..1])
        .await
        .expect("write");
    assert_eq!(
        again,
        std::slice::from_ref(&locked),
        "written once the row is free"
    );

    let shown = progress_rows(&pool, [&locked, &free, &gone]).await;
    let recorded = |sku: &Sku| (sku.to_string(), 7, 12.5, Some(seen_at.timestamp_micros()));
    assert_eq!(shown[..2], [recorded(&locked), recorded(&free)]);
    assert_eq!(
        (shown[2].1, shown[2].3),
        (0, None),
        "the epoch gone wrote nothing"
    );
}

/// Each partition's recorded waiting intents, rate and `progress_at` (in
/// microseconds, Postgres' precision), in SKU order.
async fn progress_rows(
    pool: &sqlx::PgPool,
    skus: [&Sku; 3],
) -> Vec<(String, i64, f64, Option<i64>)> {
    let rows: Vec<(String, i64, f64, Option<chrono::DateTime<chrono::Utc>>)> = sqlx::query_as(
        "SELECT sku, waiting_intents, decisions_per_s, progress_at FROM partitions \
          WHERE sku = ANY($1) ORDER BY sku",
    )
    .bind(skus.map(Sku::as_str))
    .fetch_all(pool)
    .await
    .expect("read the partitions");
    rows.into_iter()
        .map(|(sku, waiting, rate, at)| (sku, waiting, rate, at.map(|at| at.timestamp_micros())))
        .collect()
}

/// A lease renewal takes its partitions' rows in SKU order, as a shared
/// commit does: a commit holding the first row and then taking the second
/// gets it while the renewal waits, instead of a deadlock that Postgres
/// breaks only after a second (every batch of the instance waiting).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_renewal_takes_rows_in_the_order_a_shared_commit_does() {
    let (app, sizes) = sizes_nobody_owns::<2>().await;
    let [first, second] = sizes;
    let pool = db(&app.database_url).await;
    sqlx::query("UPDATE partitions SET owner = 'me', epoch = 1 WHERE sku = ANY($1)")
        .bind([first.as_str(), second.as_str()])
        .execute(&pool)
        .await
        .expect("own both");
    // A commit in progress: it holds the first row and will take the second.
    let mut commit = pool.begin().await.expect("begin");
    let lock = |sku: &Sku| {
        sqlx::query("SELECT 1 FROM partitions WHERE sku = $1 FOR UPDATE").bind(sku.to_string())
    };
    lock(&first)
        .execute(&mut *commit)
        .await
        .expect("hold the first row");
    // The renewal is handed the SKUs the other way round.
    let store = app.store.clone();
    let held = [(second.clone(), 1), (first.clone(), 1)];
    let renewal = tokio::spawn(async move { store.renew_partitions("me", &held, 10_000).await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let took = tokio::time::timeout(Duration::from_secs(5), lock(&second).execute(&mut *commit))
        .await
        .expect("the commit gets the second row without waiting for a deadlock check");
    took.expect("no deadlock");
    commit.commit().await.expect("commit");
    let mut renewed = renewal
        .await
        .expect("renewal task")
        .expect("the renewal goes through once the commit is done");
    renewed.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(renewed, [first, second]);
}

/// A drop of `N` sizes with no processor to own them: the test alone
/// touches their partition rows.
async fn sizes_nobody_owns<const N: usize>() -> (TestApp, [Sku; N]) {
    let app = spawn_app_with(AppOptions {
        role: Role::GatewayOnly,
        ..AppOptions::default()
    })
    .await;
    create_sizes(&app, N).await;
    let sizes = std::array::from_fn(|i| Sku::parse(format!("{}-size-{i}", app.sku)).expect("sku"));
    (app, sizes)
}
