//! `dropctl verify`: passes on a healthy drop, names each violation otherwise.

use dropline_suite::{db, dropctl, spawn_app_with, AppOptions, Role};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_on_a_healthy_drop_and_names_every_violation_on_a_tampered_one() {
    // All four in line before any is decided: once the drop is finally sold
    // out, a gateway answers new keys itself and records nothing.
    let app = spawn_app_with(AppOptions {
        stock: 2,
        role: Role::GatewayOnly,
        ..AppOptions::default()
    })
    .await;
    let keys = [("k1", "u1"), ("k2", "u2"), ("k3", "u3"), ("k4", "u4")];
    for (key, user) in keys {
        app.queue(key, user).await;
    }
    let processor = app.start_processor();
    let keys: Vec<String> = keys.iter().map(|(key, _)| key.to_string()).collect();
    app.outcomes_of(&keys).await;
    processor.stop().await;
    let healthy = dropctl(&app, &["verify", app.sku.as_str()]).await;
    assert!(healthy.ok, "healthy drop: {healthy:#?}");
    assert!(
        healthy.stdout.contains("replay matches") && healthy.stdout.contains("all identical"),
        "{}",
        healthy.stdout
    );

    // Tamper: a recorded decision vanishes, another changes its outcome.
    let pool = db(&app.database_url).await;
    sqlx::query("DELETE FROM purchases WHERE sku = $1 AND idempotency_key = 'k4'")
        .bind(app.sku.as_str())
        .execute(&pool)
        .await
        .expect("delete");
    sqlx::query("UPDATE purchases SET outcome = 'won', order_id = gen_random_uuid() WHERE sku = $1 AND idempotency_key = 'k3'")
        .bind(app.sku.as_str())
        .execute(&pool)
        .await
        .expect("flip");
    let tampered = dropctl(&app, &["verify", app.sku.as_str()]).await;
    assert!(!tampered.ok, "a tampered drop must fail: {tampered:#?}");
    for violated in [
        "every accepted intent decided",
        "won units match orders",
        "replay matches",
    ] {
        assert!(
            tampered.stderr.contains(violated),
            "names {violated}: {}",
            tampered.stderr
        );
    }

    let missing = dropctl(&app, &["verify", "no-such-drop"]).await;
    assert!(!missing.ok);
    assert_eq!(missing.stderr.trim(), "dropctl: no drop no-such-drop");
}
