//! The largest part of docs/SCALING.md's deployment this machine holds: one
//! model in many sizes released together, on three processors, two
//! gateways behind one crowd, and a 3-node JetStream cluster with the
//! stream replicated on every node, all real processes.

use std::collections::HashMap;

use dropline_store::{PoolOptions, Store};
use dropline_suite::postgres_base;
use dropline_testkit::stack::{Stack, StackOptions};
use loadtest::burst::{self, BurstOptions, BurstResults};
use loadtest::credentials::Credentials;
use loadtest::crowd::Crowd;
use loadtest::setup::{self, DropSource, DropUnderTest};
use loadtest::verify::{self, VerifyOptions};

const SIZES: u32 = 30;
const STOCK_PER_SIZE: u32 = 10;
/// 100 buyers a size for 10 pairs: every size sells out.
const BUYERS: u32 = 3_000;
const CONNECTIONS: u32 = 128;
const PROCESSORS: usize = 3;
/// How long the processors may take to own every size.
const OWNED_WAIT_MS: u64 = 30_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sizes_on_three_processors_two_gateways_and_a_three_node_cluster_each_sell_exactly_their_stock(
) {
    let mut options = StackOptions::new(&postgres_base(), "", PROCESSORS);
    options.gateways = 2;
    options.nats_cluster = true;
    let mut stack = Stack::start(options).await.expect("the stack starts");
    let client = burst::client(CONNECTIONS).expect("client");
    let source = DropSource::New {
        database_url: stack.database_url.clone(),
        skus: SIZES,
        stock: STOCK_PER_SIZE,
        per_user_limit: 1,
    };
    let drops = setup::prepare_drops(&source, &client)
        .await
        .expect("create the sizes");
    let unowned = setup::wait_until_owned(&stack.database_url, &drops, OWNED_WAIT_MS)
        .await
        .expect("read the owners");
    assert_eq!(unowned, 0, "every size is owned");
    let store = Store::connect_lazy(&stack.database_url, &PoolOptions::default()).expect("pool");
    assert_spread_over_every_processor_and_claimed_once(&store, &drops).await;

    let credentials = Credentials::Minted(stack.options.buyer_tokens.clone());
    let crowd = Crowd {
        retry_share: 0.02,
        twice_share: 0.02,
        seed: Some(15),
    };
    let burst = BurstOptions {
        gateways: stack.gateway_urls.clone(),
        buyers: BUYERS,
        crowd,
        connections: CONNECTIONS,
        wait_s: 10,
        credentials: credentials.clone(),
    };
    let results = burst::fire(&burst, &drops).await.expect("the burst runs");
    let verify = VerifyOptions {
        url: stack.url().to_string(),
        database_url: stack.database_url.clone(),
        per_user_limit: 1,
        faults_injected: false,
        credentials,
    };
    let verdict = verify::verify(&client, &verify, &drops, &results)
        .await
        .expect("the verification runs");
    assert!(
        verdict.passed(),
        "promises broken: {:#?}",
        verdict.violations
    );

    assert_each_size_sold_exactly_its_stock(&store, &drops).await;
    // Still each claimed once: nothing failed and was claimed again meanwhile.
    assert_spread_over_every_processor_and_claimed_once(&store, &drops).await;
    assert_every_gateway_answers_every_decision(&stack, &client, &results).await;
    store.close().await;
    stack.stop();
    dropline_testkit::drop_database(&postgres_base(), stack.database_name())
        .await
        .expect("drop the stack's database");
}

/// Every processor owns sizes, the owners differ by at most one, and each
/// partition was claimed exactly once (its epoch is 1).
async fn assert_spread_over_every_processor_and_claimed_once(
    store: &Store,
    drops: &[DropUnderTest],
) {
    let statuses = store.drop_statuses(None).await.expect("statuses");
    let mut per_owner: HashMap<String, usize> = HashMap::new();
    for status in statuses
        .iter()
        .filter(|s| drops.iter().any(|d| d.sku == s.drop.sku))
    {
        assert_eq!(status.epoch, 1, "{} was claimed once", status.drop.sku);
        *per_owner
            .entry(status.owner.clone().expect("an owner"))
            .or_default() += 1;
    }
    let counts: Vec<usize> = per_owner.values().copied().collect();
    assert_eq!(
        counts.len(),
        PROCESSORS,
        "every processor owns sizes: {per_owner:?}"
    );
    let (most, least) = (counts.iter().max(), counts.iter().min());
    assert!(
        most.zip(least)
            .is_some_and(|(most, least)| most - least <= 1),
        "owners differ by at most one size: {per_owner:?}"
    );
}

async fn assert_each_size_sold_exactly_its_stock(store: &Store, drops: &[DropUnderTest]) {
    let statuses = store.drop_statuses(None).await.expect("statuses");
    for drop in drops {
        let status = statuses
            .iter()
            .find(|s| s.drop.sku == drop.sku)
            .expect("the size's status");
        assert_eq!(
            status.drop.won_units, STOCK_PER_SIZE,
            "{} sold its stock",
            drop.sku
        );
        assert_eq!(status.drop.remaining, 0, "{} has nothing left", drop.sku);
    }
}

/// A buyer asking either gateway about a decided purchase gets the same
/// answer: decisions reach every gateway, whichever one took the purchase.
async fn assert_every_gateway_answers_every_decision(
    stack: &Stack,
    client: &reqwest::Client,
    results: &BurstResults,
) {
    let tokens = &stack.options.buyer_tokens;
    let winners = results
        .buyers
        .iter()
        .filter(|b| b.outcome.as_deref() == Some("won"))
        .take(20);
    for buyer in winners {
        for gateway in &stack.gateway_urls {
            let answer: serde_json::Value = client
                .get(format!(
                    "{gateway}/v1/drops/{}/purchases/{}",
                    buyer.sku, buyer.key
                ))
                .header("Authorization", tokens.bearer(&buyer.user))
                .send()
                .await
                .expect("ask the gateway")
                .json()
                .await
                .expect("a JSON answer");
            assert_eq!(answer["outcome"], "won", "{gateway}: {answer}");
            assert_eq!(
                answer["order_id"].as_str(),
                buyer.order_id.as_deref(),
                "{gateway} tells the same order"
            );
        }
    }
}
