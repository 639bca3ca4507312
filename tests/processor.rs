//! The processor's guarantees that do not need a fault injected from outside.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy};
use dropline_core::names::{consumer_name, line_lanes_filter, INTENTS_STREAM};
use dropline_core::{
    Action, BatchPlan, Control, Decision, IdempotencyKey, OperationId, OperatorId, Outcome,
    Quantity, Sku, Stock, UserId,
};
use dropline_store::{AppliedBatch, PartitionBatch, Store, StoreError};
use dropline_suite::{db, spawn_app_with, AppOptions, Role};
use futures::StreamExt;

fn plan_of_one_win(seq: u64, applied_seq_before: u64) -> BatchPlan {
    BatchPlan {
        decided: vec![Decision {
            seq,
            key: IdempotencyKey::parse(format!("zombie-{seq}")).expect("valid key"),
            user_id: UserId::parse("zombie").expect("valid user"),
            quantity: Quantity::ONE,
            outcome: Outcome::Won,
            order_id: Some(uuid::Uuid::new_v4()),
        }],
        repeated: vec![],
        controls: vec![],
        applied_seq_before,
        applied_seq_after: seq,
        won_units: 1,
        restocked_units: 0,
        closed_seq: None,
    }
}

/// Another puller on the SKU's durable consumer, as an earlier owner would
/// be: it takes deliveries and never acks them.
struct RoguePuller(async_nats::jetstream::consumer::Consumer<pull::Config>);

impl RoguePuller {
    async fn join(app: &dropline_suite::TestApp, ack_wait: Duration) -> Self {
        let js =
            async_nats::jetstream::new(async_nats::connect(&app.nats_url).await.expect("connect"));
        let stream = js.get_stream(INTENTS_STREAM).await.expect("stream");
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(consumer_name(&app.sku)),
                filter_subject: line_lanes_filter(&app.sku),
                ack_policy: AckPolicy::All,
                ack_wait,
                ..Default::default()
            })
            .await
            .expect("create the consumer");
        Self(consumer)
    }

    /// Takes exactly `n` deliveries.
    async fn take(&self, n: usize) {
        let mut batch = self
            .0
            .fetch()
            .max_messages(n)
            .messages()
            .await
            .expect("fetch");
        let mut got = 0;
        while let Some(message) = batch.next().await {
            message.expect("delivery");
            got += 1;
        }
        assert_eq!(got, n);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_from_a_stale_epoch_or_a_stale_ledger_is_refused_and_changes_nothing() {
    let app = spawn_app_with(AppOptions {
        stock: 5,
        role: Role::GatewayOnly,
        ..AppOptions::default()
    })
    .await;
    let store = &app.store;
    let old = store
        .claim_partition(&app.sku, "old-owner", 60_000)
        .await
        .unwrap()
        .expect("free partition");
    // A live lease keeps others out...
    assert!(store
        .claim_partition(&app.sku, "new-owner", 60_000)
        .await
        .unwrap()
        .is_none());
    // ...until it is handed back (or runs out); taking over bumps the epoch.
    store
        .release_partition(&app.sku, "old-owner", old.epoch)
        .await
        .unwrap();
    let new = store
        .claim_partition(&app.sku, "new-owner", 60_000)
        .await
        .unwrap()
        .expect("claim");
    assert_eq!(new.epoch, old.epoch + 1);

    let fenced = store
        .apply_batch(&app.sku, old.epoch, &plan_of_one_win(7, 0))
        .await;
    assert!(matches!(fenced, Err(StoreError::Fenced)), "{fenced:?}");
    let stale = store
        .apply_batch(&app.sku, new.epoch, &plan_of_one_win(7, 3))
        .await;
    assert!(matches!(stale, Err(StoreError::StaleLedger)), "{stale:?}");
    // The old owner cannot renew either.
    assert!(!store
        .renew_partition(&app.sku, "old-owner", old.epoch, 60_000)
        .await
        .unwrap());
    assert_only_the_owner_renews_at_its_epoch(store, &app.sku, old.epoch, new.epoch).await;

    let applied = store
        .apply_batch(&app.sku, new.epoch, &plan_of_one_win(7, 0))
        .await
        .expect("current owner applies");
    assert_eq!(applied.remaining, 4);
    let again = store
        .apply_batch(&app.sku, new.epoch, &plan_of_one_win(7, 0))
        .await;
    assert!(
        matches!(again, Err(StoreError::StaleLedger)),
        "a replayed batch is refused: {again:?}"
    );
    let view = app.drop_view().await;
    assert_eq!(
        (view["won"].as_u64(), view["applied_seq"].as_u64()),
        (Some(1), Some(7))
    );
}

/// A processor's renewal of all it holds renews the current owner at the
/// current epoch only: `new-owner` holds `sku` at `new_epoch`, taken over
/// from `old-owner` at `old_epoch`.
async fn assert_only_the_owner_renews_at_its_epoch(
    store: &Store,
    sku: &Sku,
    old_epoch: u64,
    new_epoch: u64,
) {
    for (owner, epoch, renewed) in [
        ("old-owner", old_epoch, vec![]),
        ("new-owner", old_epoch, vec![]),
        ("new-owner", new_epoch, vec![sku.clone()]),
    ] {
        let held = [(sku.clone(), epoch)];
        let got = store
            .renew_partitions(owner, &held, 60_000)
            .await
            .expect("renew");
        assert_eq!(got, renewed, "{owner} at epoch {epoch}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_refuses_an_oversell_even_from_a_buggy_writer() {
    let app = spawn_app_with(AppOptions {
        stock: 1,
        role: Role::GatewayOnly,
        ..AppOptions::default()
    })
    .await;
    let pool = db(&app.database_url).await;
    let oversell = sqlx::query(
        "UPDATE drops SET remaining = remaining - 2, won_units = won_units + 2 WHERE sku = $1",
    )
    .bind(app.sku.as_str())
    .execute(&pool)
    .await
    .expect_err("stock below zero");
    assert!(
        oversell.to_string().contains("drops_no_oversell"),
        "{oversell}"
    );
    let vanish = sqlx::query("UPDATE drops SET remaining = remaining - 1 WHERE sku = $1")
        .bind(app.sku.as_str())
        .execute(&pool)
        .await
        .expect_err("stock not conserved");
    assert!(
        vanish.to_string().contains("drops_stock_conserved"),
        "{vanish}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_keeps_every_purchase_tied_to_its_drop() {
    let app = spawn_app_with(AppOptions {
        role: Role::GatewayOnly,
        ..AppOptions::default()
    })
    .await;
    let pool = db(&app.database_url).await;
    let orphan = sqlx::query(
        "INSERT INTO purchases (sku, idempotency_key, user_id, quantity, outcome, seq, epoch) \
         VALUES ($1, 'k1', 'u1', 1, 'sold_out', 1, 1), ('no-such-drop', 'k2', 'u2', 1, 'sold_out', 2, 1)",
    )
    .bind(app.sku.as_str())
    .execute(&pool)
    .await
    .expect_err("a purchase of an unknown drop");
    assert!(
        orphan.to_string().contains("unknown drop no-such-drop"),
        "{orphan}"
    );

    sqlx::query(
        "INSERT INTO purchases (sku, idempotency_key, user_id, quantity, outcome, seq, epoch) \
         VALUES ($1, 'k1', 'u1', 1, 'sold_out', 1, 1)",
    )
    .bind(app.sku.as_str())
    .execute(&pool)
    .await
    .expect("a purchase of a known drop");
    let moved = sqlx::query("UPDATE purchases SET sku = 'no-such-drop' WHERE sku = $1")
        .bind(app.sku.as_str())
        .execute(&pool)
        .await
        .expect_err("a purchase moved to an unknown drop");
    assert!(moved.to_string().contains("unknown drop"), "{moved}");
    let renamed = sqlx::query("UPDATE drops SET sku = 'renamed' WHERE sku = $1")
        .bind(app.sku.as_str())
        .execute(&pool)
        .await
        .expect_err("a drop with purchases renamed");
    assert!(renamed.to_string().contains("has purchases"), "{renamed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_held_by_another_puller_are_decided_in_order_without_waiting_for_redelivery() {
    let app = spawn_app_with(AppOptions {
        stock: 3,
        role: Role::GatewayOnly,
        ..AppOptions::default()
    })
    .await;
    for i in 0..10 {
        app.queue(&format!("k{i}"), &format!("u{i}")).await;
    }
    // A rogue puller takes the first three deliveries and never acks them.
    RoguePuller::join(&app, Duration::from_secs(60))
        .await
        .take(3)
        .await;

    let processor = app.start_processor();
    let keys: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
    let outcomes = app.outcomes_of(&keys).await;
    let expected: Vec<&str> = (0..10)
        .map(|i| if i < 3 { "won" } else { "sold_out" })
        .collect();
    assert_eq!(
        outcomes, expected,
        "the stolen first three still won, in stream order"
    );
    processor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_service_continues_from_the_applied_sequence() {
    // One unit stays: every key below is decided in line, none answered by
    // a gateway that knows the drop finally sold out.
    let app = spawn_app_with(AppOptions {
        stock: 5,
        ..AppOptions::default()
    })
    .await;
    assert_eq!(app.buy("before-1", "u1", 10).await.status, 201);
    assert_eq!(app.buy("before-2", "u2", 10).await.status, 201);
    let app = app.restarted().await;
    let replay = app.buy("before-1", "u1", 10).await;
    assert_eq!(
        replay.status, 201,
        "a decision from before the restart is replayed"
    );
    for (key, user, status) in [
        ("after-1", "u3", 201),
        ("after-2", "u4", 201),
        ("after-3", "u1", 409),
    ] {
        let answer = app.buy(key, user, 10).await;
        assert_eq!(answer.status, status, "{key}: {answer:?}");
    }
    assert_eq!(app.stored_counts().await, (5, 4));
    let pool = db(&app.database_url).await;
    let epoch: i64 = sqlx::query_scalar("SELECT epoch FROM partitions WHERE sku = $1")
        .bind(app.sku.as_str())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        epoch, 2,
        "the restarted processor took the partition over with a new epoch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_owner_never_skips_messages_an_earlier_owner_still_holds() {
    // The hole this guards against: an earlier owner holds some deliveries
    // (pending until ack_wait) while the reused consumer hands the new owner
    // later messages with contiguous delivery sequences. Each owner now
    // starts a fresh consumer at its applied sequence.
    let app = spawn_app_with(AppOptions {
        stock: 5,
        role: Role::GatewayOnly,
        ..AppOptions::default()
    })
    .await;
    let publish = |from: usize, to: usize| {
        let app = &app;
        async move {
            for i in from..to {
                app.queue(&format!("k{i:02}"), &format!("u{i}")).await;
            }
        }
    };
    publish(0, 6).await;
    // The earlier owner took k00..k01, then (half a second later) k02.
    let earlier_owner = RoguePuller::join(&app, Duration::from_millis(1_000)).await;
    earlier_owner.take(2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    earlier_owner.take(1).await;
    // k00..k01 come due for redelivery before k02 does.
    tokio::time::sleep(Duration::from_millis(600)).await;
    publish(6, 12).await;

    let processor = app.start_processor();
    let keys: Vec<String> = (0..12).map(|i| format!("k{i:02}")).collect();
    let outcomes = app.outcomes_of(&keys).await;
    let expected: Vec<&str> = (0..12)
        .map(|i| if i < 5 { "won" } else { "sold_out" })
        .collect();
    assert_eq!(
        outcomes, expected,
        "first come, first served, no intent skipped"
    );
    app.assert_invariants().await;
    processor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_too_big_for_one_message_is_announced_whole() {
    use dropline_bus::{Bus, BusOptions};
    let bus = Bus::connect(&dropline_suite::nats_url(), &BusOptions::default(), true)
        .await
        .expect("connect to NATS");
    let mut feed = bus.decision_feed().await.expect("subscribe to decisions");
    let sku = dropline_core::Sku::parse(format!(
        "announce-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ))
    .expect("valid sku");
    // Longest keys and user ids: 2,500 of them are about 1.3 MB of JSON, over
    // NATS's 1 MiB payload limit for a single message.
    let decisions: Vec<Decision> = (1..=2_500u64)
        .map(|seq| Decision {
            seq,
            key: IdempotencyKey::parse(format!("{seq:0>255}")).expect("valid key"),
            user_id: UserId::parse(format!("{seq:0>128}")).expect("valid user"),
            quantity: Quantity::ONE,
            outcome: Outcome::SoldOut,
            order_id: None,
        })
        .collect();
    bus.publish_decisions(&sku, &decisions, None)
        .await
        .expect("announce the batch");

    let mut heard = Vec::new();
    while heard.len() < decisions.len() {
        let batch = tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .expect("every decision is heard within 10 s")
            .expect("the feed stays open");
        if batch.sku == sku {
            heard.extend(batch.decisions);
        }
    }
    assert_eq!(heard, decisions, "every decision, once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_fence_on_one_sku_in_a_shared_commit_leaves_the_others_committed() {
    let app = spawn_app_with(AppOptions {
        role: Role::GatewayOnly,
        ..AppOptions::default()
    })
    .await;
    let store = &app.store;
    let (sizes, epochs, taken_over) = four_sizes_the_third_taken_over(&app).await;

    let restocked = with_control(plan_of_one_win(7, 0), 8, Action::Restock(stock(3)));
    let closed = with_control(plan_of_one_win(7, 0), 8, Action::Close);
    let stale_ledger = plan_of_one_win(7, 3);
    let fenced = plan_of_one_win(7, 0);
    let plans = [&restocked, &stale_ledger, &fenced, &closed];
    let batches: Vec<PartitionBatch<'_>> = sizes
        .iter()
        .zip(&epochs)
        .zip(plans)
        .map(|((sku, &epoch), plan)| PartitionBatch { sku, epoch, plan })
        .collect();
    let outcomes = store
        .apply_batches(&batches)
        .await
        .expect("the shared commit goes through");
    assert!(
        matches!(
            outcomes.as_slice(),
            [
                Ok(AppliedBatch { remaining: 12 }),
                Err(StoreError::StaleLedger),
                Err(StoreError::Fenced),
                Ok(AppliedBatch { remaining: 9 }),
            ]
        ),
        "{outcomes:?}"
    );

    // The two held batches are in, with their operator actions; the
    // refused two wrote nothing.
    assert_eq!(
        recorded(store, &sizes).await,
        [
            (12, 8, None, 1, 1),
            (10, 0, None, 0, 0),
            (10, 0, None, 0, 0),
            (9, 8, Some(8), 1, 1)
        ]
    );
    let closed_drop = store.drop(&sizes[3]).await.expect("read").expect("drop");
    assert_eq!(closed_drop.status.as_str(), "closed");
    // The new owner of the fenced size commits as if nothing happened.
    let applied = store
        .apply_batch(&sizes[2], taken_over.epoch, &plan_of_one_win(7, 0))
        .await
        .expect("the new owner applies");
    assert_eq!(applied.remaining, 9);
}

fn stock(units: u32) -> Stock {
    Stock::parse(units.into()).expect("stock")
}

/// `plan` with an operator action at `seq`, its place in line after it.
fn with_control(mut plan: BatchPlan, seq: u64, action: Action) -> BatchPlan {
    plan.controls.push(Control {
        seq,
        op: OperationId::parse(format!("op-{seq}")).expect("valid operation id"),
        by: OperatorId::parse("ops-lead").expect("valid operator"),
        action,
    });
    plan.applied_seq_after = seq;
    if let Action::Restock(units) = action {
        plan.restocked_units += units.get();
    }
    if action == Action::Close {
        plan.closed_seq = Some(seq);
    }
    plan
}

/// Four sizes of `app`'s drop claimed by "owner" (epochs in order), the
/// third then taken over by "new-owner" (its claim).
async fn four_sizes_the_third_taken_over(
    app: &dropline_suite::TestApp,
) -> (Vec<Sku>, Vec<u64>, dropline_store::PartitionClaim) {
    let store = &app.store;
    dropline_suite::create_sizes(app, 4).await;
    let sizes: Vec<Sku> = (0..4)
        .map(|i| Sku::parse(format!("{}-size-{i}", app.sku)).expect("valid sku"))
        .collect();
    let mut epochs = Vec::new();
    for sku in &sizes {
        let claim = store.claim_partition(sku, "owner", 60_000).await;
        epochs.push(claim.expect("claim").expect("free partition").epoch);
    }
    store
        .release_partition(&sizes[2], "owner", epochs[2])
        .await
        .expect("release");
    let taken_over = store
        .claim_partition(&sizes[2], "new-owner", 60_000)
        .await
        .expect("claim")
        .expect("free partition");
    (sizes, epochs, taken_over)
}

/// Per size: units left, applied place in line, where the close stands,
/// operator actions recorded, and whether the key `zombie-7` was decided.
async fn recorded(store: &Store, sizes: &[Sku]) -> Vec<(u32, u64, Option<u64>, usize, usize)> {
    let mut seen = Vec::new();
    for sku in sizes {
        let state = store.load_ledger_state(sku).await.expect("ledger state");
        let decided = store
            .purchases_of_keys(sku, &["zombie-7"])
            .await
            .expect("recorded decisions");
        seen.push((
            state.remaining,
            state.applied_seq,
            state.closed_seq,
            state.operations.len(),
            decided.len(),
        ));
    }
    seen
}

/// What the processor's fallback rests on: a key decided before aborts a
/// shared commit as a whole (the others' batches are not written either),
/// so its batches are applied again one by one and each gets its own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_decided_before_aborts_a_shared_commit_and_writes_none_of_it() {
    let app = spawn_app_with(AppOptions {
        role: Role::GatewayOnly,
        ..AppOptions::default()
    })
    .await;
    let store = &app.store;
    let (sizes, epochs, _) = four_sizes_the_third_taken_over(&app).await;
    store
        .apply_batch(&sizes[0], epochs[0], &plan_of_one_win(7, 0))
        .await
        .expect("the first batch of size 0");
    // Size 0's key `zombie-7` again, at a later place in line, beside a
    // fresh batch of size 1.
    let mut repeated = plan_of_one_win(9, 7);
    repeated.decided[0].key = IdempotencyKey::parse("zombie-7").expect("valid key");
    let fresh = plan_of_one_win(7, 0);
    let batches = [
        PartitionBatch {
            sku: &sizes[0],
            epoch: epochs[0],
            plan: &repeated,
        },
        PartitionBatch {
            sku: &sizes[1],
            epoch: epochs[1],
            plan: &fresh,
        },
    ];
    let shared = store.apply_batches(&batches).await;
    assert!(
        matches!(shared, Err(StoreError::KeyDecidedBefore)),
        "{shared:?}"
    );
    assert_eq!(
        recorded(store, &sizes[..2]).await,
        [(9, 7, None, 0, 1), (10, 0, None, 0, 0)],
        "size 0 as after its first batch, size 1 untouched"
    );
    // One by one, the fresh batch goes in and the repeat is refused alone.
    let alone = store.apply_batch(&sizes[1], epochs[1], &fresh).await;
    assert_eq!(alone.expect("size 1 alone").remaining, 9);
    let again = store.apply_batch(&sizes[0], epochs[0], &repeated).await;
    assert!(
        matches!(again, Err(StoreError::KeyDecidedBefore)),
        "{again:?}"
    );
}

/// The halt shown by `dropctl status`, as the store has it.
async fn halted(store: &Store, sku: &Sku) -> Option<String> {
    let rows = store.drop_statuses(Some(sku)).await.expect("status");
    rows.into_iter().next().expect("the drop").halted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_is_recorded_at_its_epoch_and_cleared_by_the_owner() {
    let app = spawn_app_with(AppOptions {
        role: Role::GatewayOnly,
        ..AppOptions::default()
    })
    .await;
    let store = &app.store;
    let claim = store
        .claim_partition(&app.sku, "owner", 60_000)
        .await
        .expect("claim")
        .expect("free partition");
    // Clearing a clear halt (every claim does) leaves it clear.
    store
        .record_halt(&app.sku, claim.epoch, None)
        .await
        .expect("clear");
    assert_eq!(halted(store, &app.sku).await, None);
    store
        .record_halt(&app.sku, claim.epoch, Some("an entry of kind refund"))
        .await
        .expect("halt");
    assert_eq!(
        halted(store, &app.sku).await.as_deref(),
        Some("an entry of kind refund")
    );
    // An earlier owner's word does not count.
    store
        .record_halt(&app.sku, claim.epoch - 1, None)
        .await
        .expect("stale clear");
    assert!(
        halted(store, &app.sku).await.is_some(),
        "a stale epoch cleared the halt"
    );
    store
        .record_halt(&app.sku, claim.epoch, None)
        .await
        .expect("clear");
    assert_eq!(halted(store, &app.sku).await, None);
    app.stop().await;
}
