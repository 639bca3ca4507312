//! The life of a drop at the gateways: scheduled, open, paused, closed, and
//! finally sold out. Admission refuses new keys with the drop's state and
//! records nothing; a recorded answer is the same in every state; once the
//! drop is finally sold out, new keys are answered at once without the line.

use std::time::{Duration, Instant};

use dropline_core::Action;
use dropline_store::AdmissionChange;
use dropline_suite::{spawn_app_with, Answer, AppOptions, InProcessProcessor, Role, TestApp};
use serde_json::Value;

/// What must never change about a recorded answer.
fn recorded(answer: &Answer) -> (u16, Value, Value, Value) {
    let field = |name: &str| answer.body[name].clone();
    (
        answer.status,
        field("outcome"),
        field("order_id"),
        field("seq"),
    )
}

/// A `409` problem naming the drop's `state`.
fn assert_refused(answer: &Answer, state: &str) {
    assert_eq!(answer.status, 409, "{answer:?}");
    assert_eq!(answer.content_type, "application/problem+json");
    assert_eq!(answer.body["type"], "urn:dropline:problem:drop-not-open");
    assert_eq!(answer.body["state"], state, "{answer:?}");
    let detail = answer.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(state),
        "the detail names the state: {detail}"
    );
}

/// Keys, users and the answers decided for them.
type Decided = Vec<(&'static str, &'static str, Answer)>;

/// Four keys decided in line on a drop of 2: won, limit_reached, won,
/// sold_out; the processor that decided them is left running.
async fn decide_four(app: &TestApp) -> (Decided, InProcessProcessor) {
    let keys = [
        ("won-a", "ana"),
        ("limit-a", "ana"),
        ("won-b", "bob"),
        ("sold-c", "carl"),
    ];
    for (key, user) in keys {
        app.queue(key, user).await;
    }
    let processor = app.start_processor();
    let mut decided = Vec::new();
    for (key, user) in keys {
        // Read, not bought again: the drop may be known sold out already.
        let mut read = app.read_purchase(key, 20).await;
        assert_eq!(read.status, 200, "{key} decided: {read:?}");
        read.status = if read.body["outcome"] == "won" {
            201
        } else {
            409
        };
        decided.push((key, user, read));
    }
    let outcomes: Vec<_> = decided
        .iter()
        .map(|(_, _, a)| a.body["outcome"].clone())
        .collect();
    assert_eq!(outcomes, ["won", "limit_reached", "won", "sold_out"]);
    (decided, processor)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_answer_is_the_same_in_every_state() {
    let app = spawn_app_with(AppOptions {
        stock: 2,
        role: Role::GatewayOnly,
        ..AppOptions::default()
    })
    .await;
    let (decided, processor) = decide_four(&app).await;

    // Finally sold out: answered from the sell-out, without the line. Its
    // owner decided the whole line, so the announcement carries every
    // decision: the key refused `sold_out` in line gets it, `seq` and all.
    app.wait_for_fast_path("probe").await;
    let in_line = app.intents_in_stream().await;
    for (key, user, first) in &decided {
        let again = app.buy(key, user, 5).await;
        assert_eq!(recorded(&again), recorded(first), "{key} when sold out");
    }
    assert!(app.buy("new-1", "dan", 5).await.is_fast_sold_out());
    assert_eq!(
        app.intents_in_stream().await,
        in_line,
        "nothing went to the line"
    );

    for (change, state) in [
        (AdmissionChange::Pause, "paused"),
        (AdmissionChange::Close, "closed"),
    ] {
        app.change_admission(change).await;
        for (key, user, first) in &decided {
            let again = app.buy(key, user, 5).await;
            assert_eq!(recorded(&again), recorded(first), "{key} when {state}");
        }
        assert_refused(&app.buy(&format!("new-{state}"), "dan", 5).await, state);
        let reused = app.buy("won-a", "mallory", 5).await;
        assert_eq!(
            reused.status, 422,
            "a recorded key with another body: {reused:?}"
        );
    }
    assert_eq!(
        app.intents_in_stream().await,
        in_line,
        "nothing went to the line"
    );
    processor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_are_admission_only() {
    let app = spawn_app_with(AppOptions {
        role: Role::GatewayOnly,
        ..AppOptions::default()
    })
    .await;
    app.queue("queued-1", "ana").await;
    app.queue("queued-2", "bob").await;
    app.change_admission(AdmissionChange::Pause).await;
    assert_refused(&app.buy("while-paused", "carl", 5).await, "paused");
    assert_eq!(app.drop_view().await["status"], "paused");

    let processor = app.start_processor();
    for key in ["queued-1", "queued-2"] {
        let read = app.read_purchase(key, 20).await;
        assert_eq!(
            (read.status, read.body["outcome"].as_str()),
            (200, Some("won")),
            "intents in line before the pause are decided: {read:?}"
        );
    }
    assert_eq!(app.read_purchase("while-paused", 0).await.status, 404);
    assert_eq!(
        app.intents_in_stream().await,
        2,
        "the refused key is not in line"
    );

    app.change_admission(AdmissionChange::Resume).await;
    let after = app.buy("while-paused", "carl", 10).await;
    assert_eq!(
        (after.status, after.body["outcome"].as_str()),
        (201, Some("won"))
    );
    assert_eq!(app.drop_view().await["status"], "open");
    processor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_drop_refuses_with_retry_after_until_it_opens_then_takes_purchases() {
    let opens_at = chrono::Utc::now() + chrono::Duration::seconds(3);
    let app = spawn_app_with(AppOptions {
        opens_at: Some(opens_at),
        ..AppOptions::default()
    })
    .await;
    let early = app.buy("early", "ana", 5).await;
    assert_refused(&early, "scheduled");
    let retry_after: u64 = early.headers["retry-after"]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("whole seconds");
    assert!((1..=3).contains(&retry_after), "Retry-After {retry_after}");
    let told: chrono::DateTime<chrono::Utc> = early.body["opens_at"]
        .as_str()
        .expect("opens_at")
        .parse()
        .expect("a time");
    assert_eq!(told.timestamp_millis(), opens_at.timestamp_millis());
    let view = app.drop_view().await;
    assert_eq!(view["status"], "scheduled");
    assert!(view["opens_at"].is_string(), "{view}");
    assert_eq!(app.intents_in_stream().await, 0, "nothing accepted");

    let wait = (opens_at - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
    let on_time = app.buy("early", "ana", 10).await;
    assert_eq!(
        (on_time.status, on_time.body["outcome"].as_str()),
        (201, Some("won"))
    );
    assert_eq!(
        app.drop_view().await["status"],
        "open",
        "no admin action needed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchases_after_a_close_in_line_are_decided_closed() {
    let app = spawn_app_with(AppOptions {
        role: Role::GatewayOnly,
        ..AppOptions::default()
    })
    .await;
    app.queue("before", "ana").await;
    app.send_control(Action::Close).await;
    app.queue("after", "bob").await;
    let processor = app.start_processor();
    let before = app.buy("before", "ana", 20).await;
    assert_eq!(
        (before.status, before.body["outcome"].as_str()),
        (201, Some("won"))
    );
    let after = app.buy("after", "bob", 20).await;
    assert_eq!(
        (after.status, after.body["outcome"].as_str()),
        (409, Some("closed"))
    );
    assert!(after.body["seq"].is_u64(), "it stood in line: {after:?}");
    // The close decided in line closes admission too.
    let deadline = Instant::now() + Duration::from_secs(5);
    for i in 0.. {
        let late = app.buy(&format!("late-{i}"), "carl", 5).await;
        if late.content_type == "application/problem+json" {
            assert_refused(&late, "closed");
            break;
        }
        // Admitted before the gateway learned it: the line says closed.
        assert_eq!(late.body["outcome"], "closed", "{late:?}");
        assert!(Instant::now() < deadline, "admission closed: {late:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    processor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_learns_an_admission_change_within_a_second_without_an_event() {
    let app = spawn_app_with(AppOptions::default()).await;
    let refresh = Duration::from_millis(app.settings.gateway.admission_refresh_ms);
    assert_eq!(app.buy("before", "ana", 10).await.status, 201);
    let changed = Instant::now();
    app.change_admission_silently(AdmissionChange::Pause).await;
    for i in 0.. {
        let answer = app.buy(&format!("k{i}"), &format!("u{i}"), 10).await;
        if answer.status == 409 {
            assert_refused(&answer, "paused");
            break;
        }
        assert_eq!(answer.status, 201, "{answer:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let learned = changed.elapsed();
    assert!(
        learned <= refresh + Duration::from_secs(1),
        "refused {learned:?} after the change"
    );
}
