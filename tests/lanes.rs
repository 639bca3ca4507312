//! Who may write what into a drop's line. A gateway's NATS user can put
//! purchases on a SKU's purchases lane and nothing else (deploy/nats/
//! roles.conf, enforced by a real nats-server); a processor decides from
//! each lane only what that lane may carry, so a close or a restock sent on
//! the purchases lane is refused even where NATS enforces nothing; and
//! entries written before lanes existed are still decided, in line order.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use dropline_core::names::{line_subject, Lane, INTENTS_STREAM};
use dropline_core::wire::{control_message, ControlPayload, IntentMessage, IntentPayload};
use dropline_core::{Action, IdempotencyKey, OperationId, OperatorId, Outcome, Quantity, UserId};
use dropline_suite::{dropctl_at, spawn_app_with, AppOptions, PrivateNats, Role, TestApp};

const PATIENCE: Duration = Duration::from_secs(30);

async fn outcome(app: &TestApp, key: &str) -> Option<Outcome> {
    let key = IdempotencyKey::parse(key).expect("key");
    let decision = app.store.purchase(&app.sku, &key).await.expect("read");
    decision.map(|d| d.outcome)
}

/// Waits until `key` is decided, failing the test after [`PATIENCE`].
async fn decided(app: &TestApp, key: &str) -> Outcome {
    let started = Instant::now();
    loop {
        if let Some(outcome) = outcome(app, key).await {
            return outcome;
        }
        assert!(started.elapsed() < PATIENCE, "{key} not decided in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn close_payload(op: &str) -> Vec<u8> {
    let op = OperationId::parse(op).expect("op");
    let by = OperatorId::parse("intruder").expect("operator");
    control_message(&ControlPayload::new(&op, &by, Action::Close))
}

fn purchase_message(key: &str, user: &str) -> Vec<u8> {
    let mut message = IntentMessage::default();
    message.push(&IntentPayload {
        key: IdempotencyKey::parse(key).expect("key"),
        user_id: UserId::parse(user).expect("user"),
        quantity: Quantity::ONE,
    });
    message.into_body()
}

/// Publishes `body` on `subject` and waits for its PubAck.
async fn publish(
    client: async_nats::Client,
    subject: String,
    body: Vec<u8>,
) -> Result<u64, String> {
    let js = jetstream::new(client);
    let ack = js
        .publish(subject, body.into())
        .await
        .map_err(|e| e.to_string())?;
    let ack = tokio::time::timeout(Duration::from_secs(5), ack)
        .await
        .map_err(|_| "no PubAck within 5 s".to_string())?;
    ack.map(|a| a.sequence).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_or_restock_on_the_purchases_lane_is_refused() {
    let app = spawn_app_with(AppOptions {
        stock: 1,
        ..AppOptions::default()
    })
    .await;
    // What a gateway (or anyone able to publish purchases) could send: a
    // close and a restock of 50 units, on the purchases lane.
    let purchases = line_subject(&app.sku, Lane::Purchases);
    let client = async_nats::connect(&app.nats_url).await.expect("connect");
    publish(
        client.clone(),
        purchases.clone(),
        close_payload("forged-close"),
    )
    .await
    .expect("NATS itself takes it (no permissions on this server)");
    let restock = ControlPayload::new(
        &OperationId::parse("forged-restock").expect("op"),
        &OperatorId::parse("intruder").expect("operator"),
        Action::Restock(dropline_core::Stock::parse(50).expect("units")),
    );
    publish(client, purchases, control_message(&restock))
        .await
        .expect("published");
    // A purchase after them is decided after them, on an open drop of one.
    let answer = app.buy("after-forgery", "alice", 10).await;
    assert_eq!(answer.status, 201, "{answer:#?}");
    assert_eq!(decided(&app, "after-forgery").await, Outcome::Won);
    let drop = app.store.drop(&app.sku).await.expect("read").expect("drop");
    assert_eq!(drop.restocked, 0, "the forged restock added nothing");
    assert!(app
        .store
        .operations(&app.sku)
        .await
        .expect("ops")
        .is_empty());
    assert!(drop.closed_seq.is_none(), "the forged close closed nothing");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_written_before_lanes_are_decided_in_line_order() {
    let app = spawn_app_with(AppOptions {
        role: Role::GatewayOnly,
        stock: 1,
        ..AppOptions::default()
    })
    .await;
    // An older gateway's purchase on the line's one subject of old, then a
    // purchase through today's gateway: the old one is first in line.
    let legacy = line_subject(&app.sku, Lane::Legacy);
    let client = async_nats::connect(&app.nats_url).await.expect("connect");
    publish(client, legacy, purchase_message("before-upgrade", "old"))
        .await
        .expect("published");
    app.remember_buyer("before-upgrade", "old");
    let queued = app.queue("after-upgrade", "new").await;
    assert_eq!(queued.status, 202, "{queued:#?}");
    let processor = app.start_processor();
    assert_eq!(decided(&app, "before-upgrade").await, Outcome::Won);
    assert_eq!(decided(&app, "after-upgrade").await, Outcome::SoldOut);
    processor.stop().await;
    app.assert_invariants().await;
    app.stop().await;
}

/// The roles of deploy/nats/roles.conf, each with a password of its own.
struct Roles {
    nats: PrivateNats,
}

impl Roles {
    async fn start() -> Self {
        let roles = include_str!("../deploy/nats/roles.conf");
        let passwords: String = ["GATEWAY", "PROCESSOR", "SERVE", "OPERATOR"]
            .iter()
            .map(|role| {
                format!(
                    "DROPLINE_NATS_{role}_PASSWORD: \"{}\"\n",
                    Self::password(role)
                )
            })
            .collect();
        // A connection without credentials (the test kit's version check)
        // is the operator.
        let config = format!("{passwords}{roles}\nno_auth_user: operator\n");
        let nats = PrivateNats::start_with_config(config)
            .await
            .expect("nats-server with dropline's roles");
        Self { nats }
    }

    fn password(role: &str) -> String {
        format!("pw-{}", role.to_lowercase())
    }

    fn url(&self, user: &str) -> String {
        let password = Self::password(&user.to_uppercase());
        format!("nats://{user}:{password}@127.0.0.1:{}", self.nats.port)
    }

    async fn connect(&self, user: &str) -> async_nats::Client {
        let password = Self::password(&user.to_uppercase());
        async_nats::ConnectOptions::with_user_and_password(user.into(), password)
            .connect(&self.nats.url)
            .await
            .expect("connect")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateways_nats_user_can_buy_but_not_close_restock_or_touch_the_stream() {
    let roles = Roles::start().await;
    let app = spawn_app_with(AppOptions {
        role: Role::GatewayOnly,
        nats_url: Some(roles.url("gateway")),
        stock: 2,
        ..AppOptions::default()
    })
    .await;
    let processor = app.start_processor_at(&roles.url("processor"));
    let answer = app.buy("by-the-book", "alice", 10).await;
    assert_eq!(answer.status, 201, "the gateway's user buys: {answer:#?}");

    // With the gateway's credentials: no control entry gets into the line.
    let gateway = roles.connect("gateway").await;
    let control = line_subject(&app.sku, Lane::Control);
    let refused = publish(gateway.clone(), control, close_payload("gw-close")).await;
    assert!(refused.is_err(), "a gateway closed a drop: {refused:?}");
    let js = jetstream::new(gateway);
    let deleted = tokio::time::timeout(Duration::from_secs(6), js.delete_stream(INTENTS_STREAM));
    assert!(
        !matches!(deleted.await, Ok(Ok(_))),
        "a gateway deleted the stream"
    );

    // The operator's user closes it with dropctl.
    let closed = dropctl_at(
        &app.database_url,
        &roles.url("operator"),
        &["drop", "close", app.sku.as_str()],
    )
    .await;
    assert!(closed.ok, "{closed:#?}");
    let drop = app.store.drop(&app.sku).await.expect("read").expect("drop");
    assert!(drop.closed_seq.is_some(), "closed by the operator");
    let operations = app.store.operations(&app.sku).await.expect("ops");
    assert_eq!(
        operations.len(),
        1,
        "only the operator's close: {operations:#?}"
    );
    // And the operator's user cannot buy.
    let purchases = line_subject(&app.sku, Lane::Purchases);
    let operator = roles.connect("operator").await;
    let bought = publish(operator, purchases, purchase_message("k", "u")).await;
    assert!(bought.is_err(), "an operator's user bought: {bought:?}");
    processor.stop().await;
    app.stop().await;
}
