//! A SKU with a long history claimed: how long the claim takes, how much
//! the processor grows for it, and whether old keys still get their
//! recorded answers.
//!
//! A gateway and one processor with the service's lease run on a private
//! nats-server and a fresh database, with nothing to own. The history (see
//! `dropline_testkit::history`: a million decided intents by default, the
//! first thousand winners, then a restock) is written in one transaction;
//! the processor finds the drop and claims it. Measured: the claim (the
//! processor's own `dropline_processor_claim_duration_seconds`, from its
//! lease granted to its ledger loaded and consumer made), the time from the
//! commit until a new buyer's purchase is answered (discovery included),
//! and the processor's resident memory before the drop existed and after
//! the repeats. Through the gateway, as a buyer would: a winner's key and
//! the last sold-out key again, each answered with its recorded decision
//! and place in line, and a new key, which wins a restocked unit.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use dropline_bus::IntentMessage;
use dropline_core::ledger::order_id;
use dropline_core::wire::IntentPayload;
use dropline_core::{IdempotencyKey, Quantity, Sku, UserId};
use dropline_testkit::history::LongHistory;
use dropline_testkit::stack::Stack;
use serde_json::{json, Map, Value};

use super::{intent_publisher, object, on_service_stack};

/// What to measure.
#[derive(Debug, Clone)]
pub struct HistoryBench {
    /// Intents decided in the SKU's history.
    pub decided: u32,
    /// Postgres base URL (the stack's fresh database is created under it).
    pub postgres: String,
}

/// The history's winners (its initial stock) and its restock.
const WINNERS: u32 = 1_000;
const RESTOCKED: u32 = 100;
/// How long the processor may take to find, claim and answer for the SKU.
const READY_WAIT: Duration = Duration::from_secs(60);
/// How long the processor idles before its memory is read.
const SETTLE: Duration = Duration::from_secs(2);

pub async fn run(bench: &HistoryBench) -> anyhow::Result<Map<String, Value>> {
    on_service_stack(&bench.postgres, 1, async |stack| {
        measure(bench, stack).await
    })
    .await
}

async fn measure(bench: &HistoryBench, stack: &Stack) -> anyhow::Result<Map<String, Value>> {
    let run_id = dropline_testkit::unique_suffix();
    let history = LongHistory {
        sku: Sku::parse(format!("history-{run_id}"))?,
        decided: bench.decided.max(WINNERS),
        winners: WINNERS,
        restocked: RESTOCKED,
    };
    let processor = stack.processors.first().context("the stack's processor")?;
    let metrics_url = format!(
        "http://{}/metrics",
        processor
            .logged_addr("metrics_addr", READY_WAIT)
            .await
            .context("the processor's ops address")?
    );
    move_stream_past(stack, &history, &run_id).await?;
    tokio::time::sleep(SETTLE).await;
    let rss_before = resident_bytes(processor.pid())?;

    let writing = Instant::now();
    history.write(&stack.database_url).await?;
    let written = Instant::now();
    eprintln!(
        "wrote a history of {} decisions in {:.1} s",
        history.decided,
        writing.elapsed().as_secs_f64()
    );
    let buyer = Buyer::new(stack, &history.sku);
    let fresh = buyer.buy_until_known("fresh-1", "fresh-buyer").await?;
    let answered_s = written.elapsed().as_secs_f64();
    check(&fresh, 201, "won", None)?;
    anyhow::ensure!(
        seq_of(&fresh)? > history.restock_place(),
        "a new purchase stands after the history: {fresh}"
    );
    check_repeats(&buyer, &history).await?;
    let rss_after = resident_bytes(processor.pid())?;
    let claim_s = claim_seconds(&metrics_url).await?;
    let growth_mib = (rss_after as f64 - rss_before as f64) / (1024.0 * 1024.0);
    let claim = claim_s.map_or("not reported".into(), |s| format!("{s:.3} s"));
    println!(
        "a SKU with {} decided intents: claimed in {claim} (lease to ready); a new purchase \
         answered {answered_s:.2} s after the history was committed; the processor grew by \
         {growth_mib:.1} MiB; old repeats answered as recorded",
        history.decided
    );
    Ok(object(json!({
        "history_decided": history.decided, "history_claim_s": claim_s,
        "history_answered_after_commit_s": answered_s,
        "history_processor_growth_mib": growth_mib,
    })))
}

/// Publishes messages for another SKU until the stream's last message is
/// past the history's, so that the history's places in line are behind
/// every new intent of its SKU.
async fn move_stream_past(
    stack: &Stack,
    history: &LongHistory,
    run_id: &str,
) -> anyhow::Result<()> {
    let bus = intent_publisher(&stack.nats_url).await?;
    // No drop of this name exists: nothing decides these.
    let filler = Sku::parse(format!("filler-{run_id}"))?;
    let mut last = 0;
    while last <= history.last_message_seq() {
        let mut message = IntentMessage::default();
        message.push(&IntentPayload {
            key: IdempotencyKey::parse(format!("f{last}"))?,
            user_id: UserId::parse("filler")?,
            quantity: Quantity::ONE,
        });
        last = bus.send_intents(&filler, message).await?.accepted().await?;
    }
    Ok(())
}

/// Old keys again: a winner's and the last sold-out one, each answered
/// with its recorded decision and place in line.
async fn check_repeats(buyer: &Buyer<'_>, history: &LongHistory) -> anyhow::Result<()> {
    let winner = buyer
        .buy(&LongHistory::key(0), &LongHistory::user(0))
        .await?;
    let order = order_id(&history.sku, LongHistory::place(0)).to_string();
    check(&winner, 201, "won", Some(LongHistory::place(0)))?;
    anyhow::ensure!(
        winner["order_id"] == json!(order),
        "the first winner's repeat names its order {order}: {winner}"
    );
    let last = history.decided - 1;
    let sold_out = buyer
        .buy(&LongHistory::key(last), &LongHistory::user(last))
        .await?;
    check(&sold_out, 409, "sold_out", Some(LongHistory::place(last)))
}

/// A purchase's answer: status and outcome, and its place in line if given.
fn check(answer: &Value, status: u16, outcome: &str, seq: Option<u64>) -> anyhow::Result<()> {
    let place_ok = seq.is_none_or(|seq| answer["seq"] == json!(seq));
    anyhow::ensure!(
        answer["status"] == json!(status) && answer["outcome"] == json!(outcome) && place_ok,
        "expected {status} {outcome} at place {seq:?}, got {answer}"
    );
    Ok(())
}

fn seq_of(answer: &Value) -> anyhow::Result<u64> {
    answer["seq"]
        .as_u64()
        .with_context(|| format!("no place in line in {answer}"))
}

/// Purchases through the stack's gateway, each waiting for its decision.
struct Buyer<'a> {
    stack: &'a Stack,
    sku: &'a Sku,
    http: reqwest::Client,
}

impl<'a> Buyer<'a> {
    fn new(stack: &'a Stack, sku: &'a Sku) -> Self {
        Self {
            stack,
            sku,
            http: reqwest::Client::new(),
        }
    }

    /// Buys once the gateway knows the drop (it learns new drops from the
    /// store within moments, answering `404` until then).
    async fn buy_until_known(&self, key: &str, user: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + READY_WAIT;
        loop {
            let answer = self.buy(key, user).await?;
            if answer["status"] != json!(404) || Instant::now() > deadline {
                return Ok(answer);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The answer's body with its status added as `status`.
    async fn buy(&self, key: &str, user: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!(
                "{}/v1/drops/{}/purchases",
                self.stack.url(),
                self.sku
            ))
            .header(
                "Authorization",
                self.stack.options.buyer_tokens.bearer(user),
            )
            .header("Idempotency-Key", key)
            .header("Prefer", format!("wait={}", READY_WAIT.as_secs()))
            .json(&json!({ "user_id": user, "quantity": 1 }))
            .send()
            .await
            .context("purchase")?;
        let status = response.status().as_u16();
        let mut body: Value = response.json().await.context("purchase answer")?;
        body["status"] = json!(status);
        Ok(body)
    }
}

/// The processor's claim time, if it reports one (builds before the
/// histogram did not): the mean of its claims, of which there is one here.
async fn claim_seconds(metrics_url: &str) -> anyhow::Result<Option<f64>> {
    let text = reqwest::get(metrics_url)
        .await
        .context("the processor's metrics")?
        .text()
        .await?;
    let sample = |name: &str| -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    };
    let sum = sample("dropline_processor_claim_duration_seconds_sum");
    let count = sample("dropline_processor_claim_duration_seconds_count");
    Ok(sum.zip(count).filter(|(_, n)| *n > 0.0).map(|(s, n)| s / n))
}

/// A process's resident memory (`VmRSS` of `/proc/<pid>/status`).
fn resident_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read the status of process {pid}"))?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS for process {pid}"))?;
    Ok(kib * 1024)
}
