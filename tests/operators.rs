//! The life of a drop through the operator's hands: `dropctl drop restock`
//! and `drop close` are entries in the drop's line, decided in order by its
//! owner; an entry of an unknown kind halts the line; `dropctl drain`
//! closes, decides everything queued and audits. Every command is the real
//! `dropctl` binary.

use std::time::Duration;

use dropline_core::names::{line_subject, Lane};
use dropline_core::{IdempotencyKey, Outcome};
use dropline_suite::{
    dropctl, eventually, send_directly, spawn_app_with, start_processor, AppOptions, PrivateNats,
    ProcessorSpec, Role, TestApp,
};

async fn outcome(app: &TestApp, key: &str) -> Option<Outcome> {
    let key = IdempotencyKey::parse(key).expect("key");
    let decision = app.store.purchase(&app.sku, &key).await.expect("read");
    decision.map(|d| d.outcome)
}

async fn decided(app: &TestApp) -> u64 {
    let rows = app
        .store
        .drop_statuses(Some(&app.sku))
        .await
        .expect("status");
    rows.first().map_or(0, |row| row.decided)
}

/// The stock for sale and what is left of it.
async fn stock(app: &TestApp) -> (u32, u32) {
    let drop = app.store.drop(&app.sku).await.expect("read").expect("drop");
    (drop.initial_stock + drop.restocked, drop.remaining)
}

/// `dropctl drop restock SKU --add 5 --no-wait`, then its retry with the
/// same operation id, with no processor running: both stand in line
/// undecided. Returns the operation id.
async fn restock_and_retry_undecided(app: &TestApp) -> String {
    let sku = app.sku.as_str();
    let first = dropctl(
        app,
        &["drop", "restock", sku, "--add", "5", "--no-wait", "--json"],
    )
    .await;
    assert!(first.ok, "{first:#?}");
    assert!(
        first.stderr.contains("accepted, not decided yet"),
        "{first:#?}"
    );
    let id = first.json()["operation_id"]
        .as_str()
        .expect("an id")
        .to_string();
    let retry_command = format!("--add 5 --operation-id {id}");
    assert!(
        first.stderr.contains(&retry_command),
        "how to retry it: {first:#?}"
    );
    // The answer was lost, say: the operator retries with the same id.
    let retry = [
        "drop",
        "restock",
        sku,
        "--add",
        "5",
        "--operation-id",
        &id,
        "--no-wait",
    ];
    let second = dropctl(app, &retry).await;
    assert!(second.ok, "{second:#?}");
    assert_eq!(
        app.intents_in_stream().await,
        2,
        "both attempts are in line"
    );
    id
}

/// Waits until the owner has decided everything now in the drop's line.
async fn wait_until_line_decided(app: &TestApp) {
    let last = last_place(app).await;
    eventually("the line decided", || async {
        let status = app
            .store
            .drop_statuses(Some(&app.sku))
            .await
            .expect("status");
        status[0].applied_seq >= last
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_restock_is_counted_once() {
    let app = spawn_app_with(AppOptions {
        role: Role::GatewayOnly,
        stock: 2,
        ..AppOptions::default()
    })
    .await;
    let id = restock_and_retry_undecided(&app).await;
    let processor = app.start_processor();
    wait_until_line_decided(&app).await;
    assert_eq!(stock(&app).await, (7, 7), "five units added once");
    let operations = app.store.operations(&app.sku).await.expect("operations");
    assert_eq!(operations.len(), 1, "{operations:#?}");
    let recorded = (operations[0].units, operations[0].operator.as_str());
    assert_eq!(recorded, (Some(5), "tester"));

    // A retry of a decided restock sends nothing and says so.
    let sku = app.sku.as_str();
    let retry = ["drop", "restock", sku, "--add", "5", "--operation-id", &id];
    let third = dropctl(&app, &retry).await;
    assert!(
        third.ok && third.stderr.contains("decided already"),
        "{third:#?}"
    );
    assert_eq!(app.intents_in_stream().await, 2);
    // The id of another amount is refused; a new restock waits for its
    // decision.
    let reused = ["drop", "restock", sku, "--add", "4", "--operation-id", &id];
    assert!(!dropctl(&app, &reused).await.ok);
    let more = dropctl(&app, &["drop", "restock", sku, "--add", "1", "--json"]).await;
    let more = more.json();
    assert_eq!(
        (&more["decided"], &more["stock"]),
        (&true.into(), &8.into())
    );
    assert_eq!(stock(&app).await, (8, 8));
    processor.stop().await;
    app.assert_invariants().await;
}

/// The place in line of the first entry of the drop's last message.
async fn last_place(app: &TestApp) -> u64 {
    let bus = dropline_bus::Bus::connect(&app.nats_url, &Default::default(), true)
        .await
        .expect("nats");
    let last = bus
        .last_message_seq(&app.sku)
        .await
        .expect("tail")
        .expect("a message");
    dropline_core::wire::intent_seq(last, 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restock_the_broker_did_not_take_names_the_operation_to_retry() {
    let mut nats = PrivateNats::start().await.expect("private nats-server");
    let app = spawn_app_with(AppOptions {
        nats_url: Some(nats.url.clone()),
        stock: 1,
        ..AppOptions::default()
    })
    .await;
    let sku = app.sku.as_str();
    nats.kill();
    let failed = dropctl(&app, &["drop", "restock", sku, "--add", "3"]).await;
    assert!(!failed.ok, "{failed:#?}");
    let last_line = failed.stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last_line.starts_with("dropctl: restock restock-"),
        "{failed:#?}"
    );
    let id = last_line
        .split("--operation-id ")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .expect("the id to retry with")
        .to_string();
    assert_eq!(stock(&app).await, (1, 1), "nothing changed");

    nats.restart().await.expect("restart nats-server");
    let retry = [
        "drop",
        "restock",
        sku,
        "--add",
        "3",
        "--operation-id",
        &id,
        "--wait-s",
        "30",
    ];
    let retried = dropctl(&app, &retry).await;
    assert!(retried.ok, "{retried:#?}");
    assert!(retried.stderr.contains("restock decided"), "{retried:#?}");
    assert_eq!(stock(&app).await, (4, 4));
    let operations = app.store.operations(&app.sku).await.expect("operations");
    assert_eq!(operations.len(), 1);
    assert_eq!(operations[0].operation_id.as_str(), id);
}

/// `dropctl drop close` with no processor: the close stands in line,
/// accepted and not decided; the gateways refuse new keys.
async fn close_undecided(app: &TestApp) {
    let closed = dropctl(
        app,
        &["drop", "close", app.sku.as_str(), "--wait-s", "1", "--json"],
    )
    .await;
    assert!(closed.ok, "{closed:#?}");
    assert!(
        closed.stderr.contains("accepted, not decided yet"),
        "{closed:#?}"
    );
    let closed = closed.json();
    assert_eq!(
        (&closed["decided"], &closed["status"]),
        (&false.into(), &"closed".into())
    );
    let id = closed["operation_id"].as_str().unwrap_or_default();
    assert!(id.starts_with("close-"), "{closed:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_is_a_cutoff_in_line() {
    let app = spawn_app_with(AppOptions {
        role: Role::GatewayOnly,
        ..AppOptions::default()
    })
    .await;
    for i in 0..3 {
        app.queue(&format!("before-{i}"), &format!("early-{i}"))
            .await;
    }
    close_undecided(&app).await;
    // A gateway that learned of the close late still put these in line.
    send_directly(&app, &[("after-0", "late-0"), ("after-1", "late-1")]).await;
    eventually("the gateway refuses new keys", || async {
        app.buy("refused", "late-2", 0).await.status == 409
    })
    .await;

    let processor = app.start_processor();
    eventually("every intent decided", || async {
        decided(&app).await == 5
    })
    .await;
    for i in 0..3 {
        assert_eq!(
            outcome(&app, &format!("before-{i}")).await,
            Some(Outcome::Won)
        );
    }
    for i in 0..2 {
        assert_eq!(
            outcome(&app, &format!("after-{i}")).await,
            Some(Outcome::Closed)
        );
    }
    assert_eq!(
        outcome(&app, "refused").await,
        None,
        "refused keys are not recorded"
    );
    let drop = app.store.drop(&app.sku).await.expect("read").expect("drop");
    assert!(drop.closed_seq.is_some(), "{drop:?}");
    let sku = app.sku.as_str();
    let again = dropctl(&app, &["drop", "close", sku]).await;
    assert!(
        again.ok && again.stderr.contains("already closed"),
        "{again:#?}"
    );
    let verified = dropctl(&app, &["verify", sku]).await;
    assert!(verified.ok, "the replay agrees: {verified:#?}");
    processor.stop().await;
}

/// Publishes what a newer dropline might write: an entry of a kind this
/// one does not know, on the control lane (where operators write).
async fn publish_unknown_entry(app: &TestApp) {
    let client = async_nats::connect(&app.nats_url).await.expect("nats");
    let js = async_nats::jetstream::new(client);
    let subject = line_subject(&app.sku, Lane::Control);
    let body = r#"[{"t":"refund","v":1,"op":"x","by":"y"}]"#;
    let ack = js.publish(subject, body.into()).await.expect("publish");
    ack.await.expect("PubAck");
}

/// `dropctl status` (JSON and table) shows the halt and its reason.
async fn assert_status_shows_halt(app: &TestApp) {
    let sku = app.sku.as_str();
    eventually("the partition halts", || async {
        let status = dropctl(app, &["status", sku, "--json"]).await;
        status.ok && status.json()[0]["halted"].is_string()
    })
    .await;
    let status = dropctl(app, &["status", sku, "--json"]).await.json();
    let reason = status[0]["halted"].as_str().unwrap_or_default();
    assert!(
        reason.contains("\"refund\""),
        "the reason names the kind: {reason}"
    );
    let table = dropctl(app, &["status", sku]).await;
    let shown = table.stdout.contains("HALTED") && table.stdout.contains("refund");
    assert!(shown, "{table:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_entry_kind_halts_the_partition() {
    let app = spawn_app_with(AppOptions {
        role: Role::GatewayOnly,
        ..AppOptions::default()
    })
    .await;
    let processor = start_processor(&ProcessorSpec {
        database_url: &app.database_url,
        nats_url: &app.nats_url,
        lease_ms: 2_000,
        ack_wait_ms: 2_000,
        batch_len_max: 100,
    });
    for i in 0..2 {
        let answer = app.buy(&format!("before-{i}"), &format!("u{i}"), 20).await;
        assert_eq!(answer.status, 201, "{answer:?}");
    }
    publish_unknown_entry(&app).await;
    for i in 0..2 {
        app.queue(&format!("after-{i}"), &format!("v{i}")).await;
    }
    assert_status_shows_halt(&app).await;
    for i in 0..2 {
        assert_eq!(
            outcome(&app, &format!("before-{i}")).await,
            Some(Outcome::Won)
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..2 {
        let after = outcome(&app, &format!("after-{i}")).await;
        assert_eq!(after, None, "nothing after it is decided");
    }
    let log = processor.log_text();
    assert!(
        log.contains("partition halted") && log.contains("refund"),
        "{log}"
    );
}

/// `dropctl drain` with short windows, as a task of its own.
fn spawn_drain(app: &TestApp) -> tokio::task::JoinHandle<dropline_suite::CtlRun> {
    let (sku, database_url, nats_url) = (
        app.sku.clone(),
        app.database_url.clone(),
        app.nats_url.clone(),
    );
    tokio::spawn(async move {
        let args = [
            "drain",
            sku.as_str(),
            "--json",
            "--stall-s",
            "1",
            "--quiet-s",
            "2",
            "--timeout-s",
            "60",
        ];
        dropline_suite::dropctl_at(&database_url, &nats_url, &args).await
    })
}

/// The drain's JSON, checked for its fields and the audit's verdict.
fn drained(run: &dropline_suite::CtlRun, sku: &str) -> serde_json::Value {
    assert!(run.ok, "{run:#?}");
    let out = run.json();
    assert_eq!(
        (&out["sku"], &out["state"]),
        (&sku.into(), &"closed".into())
    );
    assert_eq!(out["audit_passed"], true, "{out:#}");
    assert!(
        out["checks"].as_array().is_some_and(|c| !c.is_empty()),
        "{out:#}"
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_decides_everything_queued_and_audits() {
    let app = spawn_app_with(AppOptions {
        role: Role::GatewayOnly,
        stock: 3,
        ..AppOptions::default()
    })
    .await;
    for i in 0..8 {
        app.queue(&format!("k{i}"), &format!("u{i}")).await;
    }
    let drain = spawn_drain(&app);
    // Nothing decides for a while: the drain says it is stalled.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let processor = app.start_processor();
    let run = drain.await.expect("drain task");
    let out = drained(&run, app.sku.as_str());
    let tally = ["decided", "won", "sold_out", "limit_reached", "closed"].map(|k| out[k].clone());
    assert_eq!(
        tally,
        [8, 3, 5, 0, 0].map(serde_json::Value::from),
        "{out:#}"
    );
    assert!(run.stderr.contains("stalled"), "{}", run.stderr);
    assert!(
        run.stderr.contains("no processor has owned the line"),
        "{}",
        run.stderr
    );
    app.assert_invariants().await;
    processor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_decides_what_a_late_gateway_admitted_closed() {
    // A unit stays in stock, so that no purchase is answered at once by a
    // sold-out gateway: all three stand in line.
    let app = spawn_app_with(AppOptions {
        stock: 3,
        ..AppOptions::default()
    })
    .await;
    for (key, user) in [("k0", "u0"), ("k1", "u0"), ("k2", "u1")] {
        app.buy(key, user, 10).await;
    }
    let drain = spawn_drain(&app);
    eventually("the drain closed the drop", || async {
        let drop = app.store.drop(&app.sku).await.expect("read").expect("drop");
        drop.status == dropline_core::DropStatus::Closed
    })
    .await;
    // A gateway that has not heard of the close yet.
    send_directly(
        &app,
        &[("late-0", "v0"), ("late-1", "v1"), ("late-2", "v2")],
    )
    .await;
    let out = drained(&drain.await.expect("drain task"), app.sku.as_str());
    let tally = ["decided", "won", "limit_reached", "closed"].map(|k| out[k].clone());
    assert_eq!(tally, [6, 2, 1, 3].map(serde_json::Value::from), "{out:#}");
    for i in 0..3 {
        assert_eq!(
            outcome(&app, &format!("late-{i}")).await,
            Some(Outcome::Closed)
        );
    }
    app.assert_invariants().await;
}
