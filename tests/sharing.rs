//! How partitions are shared among processors: spread evenly, kept where
//! they are, and claimed as soon as the sharing changes (a new drop, a
//! processor leaving), not at the next periodic look.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use dropline_store::Store;
use dropline_suite::{
    create_sizes, db, eventually, spawn_app_with, start_processor, AppOptions, ProcessorSpec, Role,
    Signal, TestApp,
};

/// Drops created together are spread evenly over the processors alive,
/// each claimed once, and stay where they are while both processors live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_spread_evenly_over_the_processors_and_stay_put() {
    const NEW_DROPS: usize = 40;
    let app = gateway_only().await;
    let spec = spec(&app, 1_000);
    let _processors = [start_processor(&spec), start_processor(&spec)];
    both_alive(&app).await;

    create_sizes(&app, NEW_DROPS).await;
    let partitions = NEW_DROPS + 1;
    eventually("every drop is owned", || all_owned(&app.store, partitions)).await;

    let owned = owned(&app.store).await;
    assert_spread_evenly(&owned, 2);
    let acquisitions: u64 = owned.values().map(|(_, epoch)| epoch).sum();
    assert_eq!(
        acquisitions, partitions as u64,
        "each partition was claimed exactly once"
    );

    // Three leases later nothing moved: no hand-over between live processors.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        owners(&app.store).await,
        Some(owned),
        "every partition stayed put"
    );
}

/// With a lease of a minute, a processor looks on its own only every 20 s;
/// what it hears from Postgres makes it look at once: new drops are owned,
/// and a processor's partitions handed back on shutdown are taken by the
/// other, each within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_drops_and_partitions_handed_back_are_claimed_at_once() {
    const NEW_DROPS: usize = 20;
    const AT_ONCE: Duration = Duration::from_secs(5);
    let app = gateway_only().await;
    let spec = spec(&app, 60_000);
    let staying = start_processor(&spec);
    let leaving = start_processor(&spec);
    both_alive(&app).await;
    // Both have made their first look since the other's first heartbeat.
    eventually("the app's drop is owned", || all_owned(&app.store, 1)).await;

    create_sizes(&app, NEW_DROPS).await;
    let partitions = NEW_DROPS + 1;
    within(AT_ONCE, "every new drop is owned", || {
        all_owned(&app.store, partitions)
    })
    .await;
    assert_spread_evenly(&owned(&app.store).await, 2);

    leaving
        .signal(Signal::Term)
        .expect("stop a processor gracefully");
    within(AT_ONCE, "the staying processor owns every drop", || async {
        // A partition handed back has no owner until claimed again.
        let Some(owned) = owners(&app.store).await else {
            return false;
        };
        let mut by: Vec<&String> = owned.values().map(|(owner, _)| owner).collect();
        by.sort();
        by.dedup();
        owned.len() == partitions && by.len() == 1
    })
    .await;
    drop(staying);
}

async fn gateway_only() -> TestApp {
    spawn_app_with(AppOptions {
        role: Role::GatewayOnly,
        ..AppOptions::default()
    })
    .await
}

fn spec(app: &TestApp, lease_ms: u64) -> ProcessorSpec<'_> {
    ProcessorSpec {
        database_url: &app.database_url,
        nats_url: &app.nats_url,
        lease_ms,
        ack_wait_ms: 5_000,
        batch_len_max: 100,
    }
}

async fn both_alive(app: &TestApp) {
    let pool = db(&app.database_url).await;
    eventually("both processors are alive", || async {
        let alive: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM processors WHERE heartbeat_at > now() - interval '1 minute'",
        )
        .fetch_one(&pool)
        .await
        .expect("count processors");
        alive == 2
    })
    .await;
}

/// Whether there are `partitions` drops, each with a live lease.
async fn all_owned(store: &Store, partitions: usize) -> bool {
    owners(store)
        .await
        .is_some_and(|owned| owned.len() == partitions)
}

/// Waits for `check` to hold, failing the test after `limit`.
async fn within<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `owners` owners, whose partition counts differ by at most one.
fn assert_spread_evenly(owned: &HashMap<String, (String, u64)>, owners: usize) {
    let mut per_owner: HashMap<&str, usize> = HashMap::new();
    for (owner, _) in owned.values() {
        *per_owner.entry(owner.as_str()).or_default() += 1;
    }
    let counts: Vec<usize> = per_owner.values().copied().collect();
    assert_eq!(counts.len(), owners, "who owns what: {per_owner:?}");
    assert!(
        counts.iter().max().expect("an owner") - counts.iter().min().expect("an owner") <= 1,
        "owners differ by at most one partition: {per_owner:?}"
    );
}

/// Each drop's owner and epoch, from one read; `None` while a drop has no
/// live lease (not claimed yet, or handed back).
async fn owners(store: &Store) -> Option<HashMap<String, (String, u64)>> {
    let statuses = store.drop_statuses(None).await.expect("statuses");
    statuses
        .into_iter()
        .map(|s| {
            let owner = s.owner.filter(|_| s.lease_live)?;
            Some((s.drop.sku.to_string(), (owner, s.epoch)))
        })
        .collect()
}

/// Each drop's owner and epoch, when every drop is owned.
async fn owned(store: &Store) -> HashMap<String, (String, u64)> {
    owners(store).await.expect("every drop owned")
}
