//! Exactly once under faults: each test injects a real fault (a killed or
//! frozen process, a slow database, a broker or database restart, a lost
//! cluster node, a storm of duplicates) in the middle of a burst, and ends
//! with the same audit as `dropctl verify`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dropline_suite::buyers::{assert_exactly_sold, buy_until_decided, spawn_burst, storm};
use dropline_suite::{
    db, spawn_app_with, start_processor, AppOptions, Delay, DelayProxy, PrivateCluster,
    PrivateNats, PrivatePostgres, ProcessorSpec, Role, Signal, TestApp,
};

const PATIENCE: Duration = Duration::from_secs(120);

/// Stock for a burst of `buyers` whose fault must land mid-burst: half of
/// them win, so the line is still busy when the fault lands. Once a drop is
/// finally sold out, gateways answer new keys without the line, so a small
/// stock would leave the line quiet (and the decided count short of where
/// the fault fires).
fn stock_for(buyers: usize) -> i64 {
    buyers as i64 / 2
}

/// Intents of the test's drop decided so far (0 while the store is unreachable).
async fn decided(app: &TestApp) -> u64 {
    match app.store.drop_statuses(Some(&app.sku)).await {
        Ok(rows) => rows.first().map_or(0, |r| r.decided),
        Err(_) => 0,
    }
}

async fn wait_until_decided(app: &TestApp, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while decided(app).await < at_least {
        assert!(
            Instant::now() < deadline,
            "fewer than {at_least} decided after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn epoch(app: &TestApp) -> i64 {
    let pool = db(&app.database_url).await;
    sqlx::query_scalar("SELECT epoch FROM partitions WHERE sku = $1")
        .bind(app.sku.as_str())
        .fetch_one(&pool)
        .await
        .expect("read epoch")
}

async fn wait_until_epoch(app: &TestApp, at_least: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while epoch(app).await < at_least {
        assert!(Instant::now() < deadline, "epoch never reached {at_least}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn spec(app: &TestApp) -> ProcessorSpec<'_> {
    ProcessorSpec {
        database_url: &app.database_url,
        nats_url: &app.nats_url,
        lease_ms: 1_000,
        ack_wait_ms: 1_000,
        // Small batches: the burst spans many commits, so a fault lands mid-burst.
        batch_len_max: 50,
    }
}

fn report(test: &str, started: Instant) {
    eprintln!("{test}: {:.1} s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_a_processor_killed_mid_burst_loses_and_doubles_nothing() {
    let started = Instant::now();
    let app = Arc::new(
        spawn_app_with(AppOptions {
            role: Role::GatewayOnly,
            stock: stock_for(2_000),
            ..AppOptions::default()
        })
        .await,
    );
    let mut first = start_processor(&spec(&app));
    wait_until_epoch(&app, 1).await;

    let buyers = spawn_burst(&app, "crash", 2_000, PATIENCE);
    wait_until_decided(&app, 200).await;
    first.kill();
    let killed_at = decided(&app).await;
    let _second = start_processor(&spec(&app));

    let outcomes = buyers.await.expect("burst");
    assert!(
        killed_at < 2_000,
        "the kill landed mid-burst ({killed_at} decided)"
    );
    assert_exactly_sold(&outcomes, stock_for(2_000) as usize);
    assert!(
        epoch(&app).await >= 2,
        "the second processor took over with a new epoch"
    );
    app.assert_invariants().await;
    report("crash", started);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zombie_a_frozen_owner_that_wakes_after_losing_its_partition_applies_nothing() {
    let started = Instant::now();
    let app = Arc::new(
        spawn_app_with(AppOptions {
            role: Role::GatewayOnly,
            stock: stock_for(2_000),
            ..AppOptions::default()
        })
        .await,
    );
    let mut zombie = start_processor(&spec(&app));
    wait_until_epoch(&app, 1).await;
    let _successor = start_processor(&spec(&app));

    let buyers = spawn_burst(&app, "zombie", 2_000, PATIENCE);
    wait_until_decided(&app, 200).await;
    zombie.signal(Signal::Stop).expect("SIGSTOP the owner");
    let at_fault = decided(&app).await;
    let frozen_epoch = epoch(&app).await;
    // Longer than the lease: the successor takes the partition over.
    wait_until_epoch(&app, frozen_epoch + 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    zombie.signal(Signal::Cont).expect("SIGCONT the zombie");

    let outcomes = buyers.await.expect("burst");
    assert!(
        at_fault < 2_000,
        "the freeze landed mid-burst ({at_fault} decided)"
    );
    assert_exactly_sold(&outcomes, stock_for(2_000) as usize);

    // Nothing the zombie did after waking was applied: every row of its
    // epoch was committed before the first row of the successor's.
    let pool = db(&app.database_url).await;
    let (zombie_last, successor_first): (Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT (SELECT extract(epoch FROM max(decided_at))::float8 FROM purchases WHERE sku = $1 AND epoch = $2), \
                (SELECT extract(epoch FROM min(decided_at))::float8 FROM purchases WHERE sku = $1 AND epoch > $2)",
    )
    .bind(app.sku.as_str())
    .bind(frozen_epoch)
    .fetch_one(&pool)
    .await
    .expect("commit times by epoch");
    if let (Some(zombie_last), Some(successor_first)) = (zombie_last, successor_first) {
        assert!(
            zombie_last <= successor_first,
            "a zombie commit landed after the takeover"
        );
    }
    // It noticed and let go, without dying.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(zombie.is_running(), "the zombie survives its fencing");
    let log = zombie.log_text();
    assert!(
        ["fenced", "lease lost", "moved to another instance"]
            .iter()
            .any(|m| log.contains(m)),
        "the zombie noticed it lost the partition:\n{log}"
    );
    app.assert_invariants().await;
    report("zombie", started);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_database_writes_slower_than_the_lease_and_ack_wait_never_oversell_or_double() {
    let started = Instant::now();
    let app = Arc::new(
        spawn_app_with(AppOptions {
            role: Role::GatewayOnly,
            stock: 30,
            ..AppOptions::default()
        })
        .await,
    );
    // Every statement the slow processor sends waits 1.2 s: above the 1 s
    // lease and the 1 s ack_wait (the seed's 12 s database, scaled down).
    let proxy = DelayProxy::start(
        "127.0.0.1:5432".parse().expect("addr"),
        Delay::EveryStatement(Duration::from_millis(1_200)),
    )
    .await
    .expect("start the delaying proxy");
    let slow_url = app
        .database_url
        .replace(":5432/", &format!(":{}/", proxy.port));
    assert_ne!(
        slow_url, app.database_url,
        "the slow processor goes through the proxy"
    );
    let slow = start_processor(&ProcessorSpec {
        database_url: &slow_url,
        ..spec(&app)
    });
    wait_until_epoch(&app, 1).await;
    let buyers = spawn_burst(&app, "slow", 300, PATIENCE);
    // The slow owner commits through the proxy first; then a fast instance
    // joins, ready to take over whenever the slow one's lease lapses.
    wait_until_decided(&app, 1).await;
    let _fast = start_processor(&spec(&app));
    let outcomes = buyers.await.expect("burst");
    assert_exactly_sold(&outcomes, 30);
    let log = slow.log_text();
    assert!(
        log.contains("slow statement") && log.contains("dropline_apply_batch"),
        "the slow owner's batch commits took longer than the lease and ack_wait:\n{log}"
    );
    app.assert_invariants().await;
    drop(slow);
    report("slow database", started);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_burst_answers_503_while_down_and_decides_every_accepted_intent() {
    let started = Instant::now();
    let mut nats = PrivateNats::start().await.expect("private nats-server");
    let app = Arc::new(
        spawn_app_with(AppOptions {
            nats_url: Some(nats.url.clone()),
            stock: stock_for(1_500),
            ..AppOptions::default()
        })
        .await,
    );
    let buyers = spawn_burst(&app, "broker", 1_500, PATIENCE);
    wait_until_decided(&app, 100).await;
    let at_fault = decided(&app).await;
    nats.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // While it is down, a purchase is refused quickly and accepts nothing
    // (or, should the drop have sold out first, is answered sold_out at
    // once: that needs no broker).
    let sent = Instant::now();
    let refused = app.buy("while-down", "late-user", 5).await;
    if !refused.is_fast_sold_out() {
        assert_eq!(refused.status, 503, "{refused:?}");
        assert!(refused.headers.contains_key("retry-after"));
    }
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "no hang: {:?}",
        sent.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    nats.restart().await.expect("restart nats-server");

    let late = buy_until_decided(&app, "while-down".into(), "late-user".into(), PATIENCE).await;
    let mut outcomes = buyers.await.expect("burst");
    assert!(
        at_fault < 1_500,
        "the fault landed mid-burst ({at_fault} decided)"
    );
    outcomes.push(late);
    assert_exactly_sold(&outcomes, stock_for(1_500) as usize);
    let slowest = outcomes.iter().map(|o| o.slowest).max().unwrap_or_default();
    assert!(
        slowest < Duration::from_secs(30),
        "no request hung: slowest {slowest:?}"
    );
    app.assert_invariants().await;
    report("broker restart", started);
}

/// A message whose PubAck is awaited when the connection drops fails at
/// once, not at the request timeout: its purchases hear `503` and retry on
/// the new connection, and the SKU's publisher lane (which holds every later
/// purchase of the SKU behind its messages in flight) does not stall for the
/// rest of the timeout. The server is frozen first, so the PubAck cannot
/// come before the kill; the timeout is a minute, so only the lost
/// connection can end the wait within the bound below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_lost_while_a_puback_is_awaited_fails_that_publish_at_once() {
    use dropline_bus::{Bus, BusOptions, IntentMessage, PublishError, StreamSettings};
    use dropline_core::wire::IntentPayload;
    use dropline_core::{IdempotencyKey, Quantity, Sku, UserId};

    let mut nats = PrivateNats::start().await.expect("private nats-server");
    let options = BusOptions {
        request_timeout_ms: 60_000,
        ..BusOptions::default()
    };
    let bus = Bus::connect(&nats.url, &options, true)
        .await
        .expect("connect to the private NATS");
    bus.ensure_stream(&StreamSettings::default())
        .await
        .expect("the intent stream");
    let sku = Sku::parse("lost-puback".to_string()).expect("valid sku");
    let message = |key: &str| {
        let mut message = IntentMessage::default();
        message.push(&IntentPayload {
            key: IdempotencyKey::parse(key.to_string()).expect("valid key"),
            user_id: UserId::parse("buyer".to_string()).expect("valid user"),
            quantity: Quantity::ONE,
        });
        message
    };
    // The path works while the server answers.
    let stored = bus
        .send_intents(&sku, message("before"))
        .await
        .expect("sent")
        .accepted()
        .await;
    assert!(stored.is_ok(), "{stored:?}");

    nats.freeze().expect("SIGSTOP nats-server");
    let pending = bus
        .send_intents(&sku, message("in-flight"))
        .await
        .expect("sent while the connection is still up");
    let waiting = tokio::spawn(pending.accepted());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a frozen server sends no PubAck");
    let lost_at = Instant::now();
    nats.kill();

    let answer = tokio::time::timeout(Duration::from_secs(15), waiting)
        .await
        .expect("answered long before the one-minute request timeout")
        .expect("the wait did not panic");
    assert!(
        matches!(&answer, Err(PublishError::Unavailable(why)) if why.contains("connection")),
        "{answer:?}"
    );
    eprintln!(
        "lost PubAck answered {:.0} ms after the server died",
        lost_at.elapsed().as_secs_f64() * 1e3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_losing_one_of_three_nodes_mid_burst_loses_nothing_accepted() {
    let started = Instant::now();
    let mut cluster = PrivateCluster::start()
        .await
        .expect("private 3-node cluster");
    let app = Arc::new(
        spawn_app_with(AppOptions {
            nats_url: Some(cluster.url()),
            stock: stock_for(1_500),
            tune: Box::new(|s| s.stream.replicas = 3),
            ..AppOptions::default()
        })
        .await,
    );
    let buyers = spawn_burst(&app, "cluster", 1_500, PATIENCE);
    wait_until_decided(&app, 100).await;
    let at_fault = decided(&app).await;
    cluster.nodes[0].kill();
    let outcomes = buyers.await.expect("burst");
    assert!(
        at_fault < 1_500,
        "the fault landed mid-burst ({at_fault} decided)"
    );
    assert_exactly_sold(&outcomes, stock_for(1_500) as usize);
    app.assert_invariants().await;
    report("cluster node loss", started);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_mid_burst_recovers_by_itself_with_nothing_lost_or_doubled() {
    let started = Instant::now();
    let postgres = PrivatePostgres::start().await.expect("private Postgres");
    let app = Arc::new(
        spawn_app_with(AppOptions {
            postgres_base: Some(postgres.base_url()),
            stock: stock_for(1_500),
            ..AppOptions::default()
        })
        .await,
    );
    let buyers = spawn_burst(&app, "pg", 1_500, PATIENCE);
    wait_until_decided(&app, 100).await;
    let at_fault = decided(&app).await;
    postgres.restart().await.expect("restart Postgres");
    let outcomes = buyers.await.expect("burst");
    assert!(
        at_fault < 1_500,
        "the fault landed mid-burst ({at_fault} decided)"
    );
    assert_exactly_sold(&outcomes, stock_for(1_500) as usize);
    app.assert_invariants().await;
    report("postgres restart", started);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_storm_the_same_key_from_many_connections_before_and_after_the_window_gets_one_decision(
) {
    let started = Instant::now();
    let nats = PrivateNats::start().await.expect("private nats-server");
    let app = Arc::new(
        spawn_app_with(AppOptions {
            nats_url: Some(nats.url.clone()),
            stock: 5,
            tune: Box::new(|s| s.stream.duplicate_window_s = 1),
            ..AppOptions::default()
        })
        .await,
    );
    let first = storm(&app, "storm", "ana", 50).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let second = storm(&app, "storm", "ana", 50).await;
    let reference = &first[0];
    assert_eq!(reference.status, 201);
    for answer in first.iter().chain(&second) {
        assert_eq!(
            (answer.status, &answer.body),
            (201, &reference.body),
            "one answer for every copy"
        );
    }
    // No `Nats-Msg-Id` (a gateway's message carries many keys), so the
    // duplicate window drops nothing: every copy answered was accepted as an
    // intent of its own, and the processor decided one of them. The short
    // window keeps this test meaningful should a per-key dedupe return.
    let copies = (first.len() + second.len()) as u64;
    assert!(
        app.intents_in_stream().await >= copies,
        "every copy of the storm reached the stream"
    );
    assert_eq!(app.stored_counts().await, (1, 1));
    assert_eq!(app.drop_view().await["won"], 1);
    app.assert_invariants().await;
    report("duplicate storm", started);
}
