//! The bench's ceiling measures what it says: every row inserted into a
//! copy of `purchases` (and the copy gone after), every message of a SKU's
//! line pulled and acked. Rates are the bench's business, not a test's.

use dropline_bus::{Bus, BusOptions, IntentMessage, StreamSettings};
use dropline_core::wire::IntentPayload;
use dropline_core::{IdempotencyKey, Quantity, Sku, UserId};
use dropline_suite::{db, fresh_database, nats_url};
use dropline_testkit::ceiling::{jetstream_pulled_per_s, postgres_rows_per_s, CeilingRows};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ceiling_inserts_every_row_and_leaves_no_table_behind() {
    let database_url = fresh_database().await;
    let rows = CeilingRows {
        sku: unique_sku(),
        rows: 2_500,
        won: 100,
        batch_len: 1_000,
    };

    let rate = postgres_rows_per_s(&database_url, &rows)
        .await
        .expect("every row inserted");

    assert!(rate.is_finite() && rate > 0.0, "{rate}");
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE tablename = 'dropline_ceiling_purchases'",
    )
    .fetch_one(&db(&database_url).await)
    .await
    .expect("count tables");
    assert_eq!(left, 0, "the copy is dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ceiling_pulls_and_acks_every_message_of_the_line() {
    let sku = unique_sku();
    let bus = Bus::connect(&nats_url(), &BusOptions::default(), true)
        .await
        .expect("connect");
    bus.ensure_stream(&StreamSettings::default())
        .await
        .expect("stream");
    const MESSAGES: u64 = 300;
    for i in 0..MESSAGES {
        let mut message = IntentMessage::default();
        message.push(&IntentPayload {
            key: IdempotencyKey::parse(format!("k{i}")).expect("key"),
            user_id: UserId::parse(format!("u{i}")).expect("user"),
            quantity: Quantity::ONE,
        });
        bus.send_intents(&sku, message)
            .await
            .expect("send")
            .accepted()
            .await
            .expect("accepted");
    }

    let rate = jetstream_pulled_per_s(&nats_url(), &sku, MESSAGES, 100)
        .await
        .expect("every message pulled and the last ack confirmed");

    assert!(rate.is_finite() && rate > 0.0, "{rate}");
}

fn unique_sku() -> Sku {
    Sku::parse(format!(
        "ceiling-{}",
        &dropline_testkit::unique_suffix()[..12]
    ))
    .expect("sku")
}
