//! The delaying proxy against the machine's real Postgres: what each mode
//! delays, measured on the clock, and (the point of
//! [`Delay::EveryTransaction`]) that a transaction's row locks stay held
//! while it is delayed, seen from a second connection that goes to Postgres
//! directly. Timing tests only read the `postgres` database; the lock tests
//! create a uniquely named schema there with one table and drop it again.

use std::time::{Duration, Instant};

use dropline_testkit::proxy::{upstream_of, Delay, DelayProxy};
use sqlx::{Connection as _, Executor as _, PgConnection, Row as _};

const DELAY: Duration = Duration::from_millis(300);
/// How long after a client sent what ends its transaction the direct
/// connection looks at the row: long enough for the message to have reached
/// Postgres had it not been held, well inside the delay.
const PROBE_AFTER: Duration = Duration::from_millis(60);
/// `lock_not_available`: what `FOR UPDATE NOWAIT` answers on a locked row.
const LOCK_NOT_AVAILABLE: &str = "55P03";

fn postgres() -> String {
    std::env::var("DROPLINE_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A connection to the `postgres` database through a fresh proxy.
async fn connect_through(delay: Delay) -> (DelayProxy, PgConnection) {
    let postgres = postgres();
    let upstream = upstream_of(&postgres).await.expect("resolve Postgres");
    let proxy = DelayProxy::start(upstream, delay)
        .await
        .expect("start the proxy");
    let url = format!("{}/postgres", proxy.base_url(&postgres).expect("proxy URL"));
    let conn = PgConnection::connect(&url)
        .await
        .expect("connect through the proxy");
    (proxy, conn)
}

async fn connect_directly() -> PgConnection {
    PgConnection::connect(&format!("{}/postgres", postgres()))
        .await
        .expect("connect to Postgres directly")
}

/// BEGIN, three statements, COMMIT, in the simple protocol (one round trip
/// each, no prepares); how long each took.
async fn three_statement_transaction(conn: &mut PgConnection) -> Vec<(&'static str, Duration)> {
    let mut took = Vec::new();
    for sql in ["BEGIN", "SELECT 1", "SELECT 2", "SELECT 3", "COMMIT"] {
        let started = Instant::now();
        conn.execute(sql).await.expect(sql);
        took.push((sql, started.elapsed()));
    }
    took
}

fn assert_one_delay(what: &str, took: Duration) {
    assert!(took >= DELAY, "{what} took {took:?}, under {DELAY:?}");
    assert!(took < 2 * DELAY, "{what} took {took:?}: delayed twice");
}

#[tokio::test]
async fn a_single_statement_is_answered_one_delay_late() {
    let (_proxy, mut conn) = connect_through(Delay::EveryTransaction(DELAY)).await;
    let started = Instant::now();
    let row = conn.fetch_one("SELECT 1").await.expect("select");
    let took = started.elapsed();
    assert_eq!(row.get::<i32, _>(0), 1);
    assert_one_delay("a single SELECT", took);
}

#[tokio::test]
async fn a_statement_with_parameters_is_delayed_once_prepare_included() {
    // dropline's batch: one statement outside BEGIN, in the extended
    // protocol, first prepared on the connection (Parse, Describe, Sync),
    // then run (Bind, Execute, Close, Sync).
    let (_proxy, mut conn) = connect_through(Delay::EveryTransaction(DELAY)).await;
    let started = Instant::now();
    let got: i32 = sqlx::query_scalar("SELECT $1::int4 * 2")
        .bind(21)
        .fetch_one(&mut conn)
        .await
        .expect("select");
    let took = started.elapsed();
    assert_eq!(got, 42);
    assert_one_delay("a prepared SELECT", took);
}

#[tokio::test]
async fn an_explicit_transaction_is_delayed_once_at_its_commit() {
    let (_proxy, mut conn) = connect_through(Delay::EveryTransaction(DELAY)).await;
    let started = Instant::now();
    let steps = three_statement_transaction(&mut conn).await;
    let took = started.elapsed();
    assert_one_delay("BEGIN, three statements and COMMIT", took);
    for (sql, took) in &steps[..4] {
        assert!(*took < DELAY, "{sql} inside the block took {took:?}");
    }
    let (_, commit) = steps[4];
    assert!(commit >= DELAY, "COMMIT took {commit:?}, under {DELAY:?}");
}

#[tokio::test]
async fn a_pooled_transaction_of_prepared_statements_is_delayed_once() {
    // The reference designs' path: acquire (a ping), BEGIN, statements with
    // parameters (each prepared, then run), COMMIT.
    let (proxy, conn) = connect_through(Delay::EveryTransaction(DELAY)).await;
    conn.close().await.expect("close");
    let url = format!("{}/postgres", proxy.base_url(&postgres()).expect("URL"));
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("pool through the proxy");
    let started = Instant::now();
    let mut tx = pool.begin().await.expect("begin");
    for i in 0..3 {
        let got: i32 = sqlx::query_scalar("SELECT $1::int4 + 1")
            .bind(i)
            .fetch_one(&mut *tx)
            .await
            .expect("select");
        assert_eq!(got, i + 1);
    }
    tx.commit().await.expect("commit");
    let took = started.elapsed();
    assert_one_delay("a pooled transaction", took);
    pool.close().await;
}

#[tokio::test]
async fn a_rolled_back_transaction_is_delayed_once_too() {
    let (_proxy, mut conn) = connect_through(Delay::EveryTransaction(DELAY)).await;
    let started = Instant::now();
    for sql in ["BEGIN", "SELECT 1", "ROLLBACK"] {
        conn.execute(sql).await.expect(sql);
    }
    assert_one_delay("BEGIN, SELECT, ROLLBACK", started.elapsed());
}

#[tokio::test]
async fn a_dropped_transaction_rolls_back_one_delay_late_with_the_next_begin() {
    // sqlx queues the ROLLBACK of a dropped transaction and sends it in
    // front of the connection's next use, here a BEGIN: the ROLLBACK ends a
    // transaction (one delay), the BEGIN that follows it does not.
    let (_proxy, mut conn) = connect_through(Delay::EveryTransaction(DELAY)).await;
    let mut tx = conn.begin().await.expect("begin");
    tx.execute("SELECT 1").await.expect("select");
    drop(tx);
    let started = Instant::now();
    let tx = conn.begin().await.expect("begin again");
    assert_one_delay("the queued ROLLBACK and the next BEGIN", started.elapsed());
    let started = Instant::now();
    tx.commit().await.expect("commit");
    assert_one_delay("the COMMIT after them", started.elapsed());
}

#[tokio::test]
async fn connecting_and_a_pool_ping_are_not_delayed() {
    let started = Instant::now();
    let (_proxy, mut conn) = connect_through(Delay::EveryTransaction(DELAY)).await;
    let connected = started.elapsed();
    assert!(connected < DELAY, "connecting took {connected:?}");
    // sqlx's ping is a bare Sync: no transaction runs.
    let started = Instant::now();
    conn.ping().await.expect("ping");
    let pinged = started.elapsed();
    assert!(pinged < DELAY, "a ping took {pinged:?}");
}

/// A table `t (id, n)` holding the row (1, 100), in a schema of its own,
/// made and dropped over a direct connection.
struct ScratchRow {
    direct: PgConnection,
    schema: String,
}

impl ScratchRow {
    async fn create() -> Self {
        let mut direct = connect_directly().await;
        let schema = format!("delay_proxy_{}", uuid::Uuid::new_v4().simple());
        for sql in [
            format!("CREATE SCHEMA {schema}"),
            format!("CREATE TABLE {schema}.t (id int PRIMARY KEY, n int NOT NULL)"),
            format!("INSERT INTO {schema}.t VALUES (1, 100)"),
        ] {
            direct.execute(sql.as_str()).await.expect("create the row");
        }
        Self { direct, schema }
    }

    fn table(&self) -> String {
        format!("{}.t", self.schema)
    }

    async fn drop_schema(mut self) {
        let sql = format!("DROP SCHEMA {} CASCADE", self.schema);
        self.direct
            .execute(sql.as_str())
            .await
            .expect("drop the schema");
    }
}

/// What the direct connection saw, starting [`PROBE_AFTER`] after the
/// proxied client sent the message that ends its transaction.
#[derive(Debug)]
struct Probe {
    /// `FOR UPDATE NOWAIT` found the row locked.
    locked: bool,
    /// When a blocking `FOR UPDATE` got the row, counted from the send.
    unlocked_after: Duration,
    /// The row's `n` then.
    n: i32,
}

async fn probe(direct: &mut PgConnection, table: &str, sent: Instant) -> Probe {
    tokio::time::sleep_until((sent + PROBE_AFTER).into()).await;
    let nowait = format!("SELECT n FROM {table} WHERE id = 1 FOR UPDATE NOWAIT");
    let locked = match direct.fetch_one(nowait.as_str()).await {
        Ok(_) => false,
        Err(sqlx::Error::Database(error))
            if error.code().as_deref() == Some(LOCK_NOT_AVAILABLE) =>
        {
            true
        }
        Err(error) => panic!("probe the row: {error}"),
    };
    let wait = format!("SELECT n FROM {table} WHERE id = 1 FOR UPDATE");
    let row = direct.fetch_one(wait.as_str()).await.expect("lock the row");
    Probe {
        locked,
        unlocked_after: sent.elapsed(),
        n: row.get(0),
    }
}

fn assert_held_through_the_delay(probe: &Probe, what: &str) {
    assert!(
        probe.locked,
        "the row was free {PROBE_AFTER:?} after {what} was sent: \
         the delay did not keep the transaction's lock ({probe:?})"
    );
    assert!(
        probe.unlocked_after >= DELAY,
        "the row was released {:?} after {what} was sent, under {DELAY:?}",
        probe.unlocked_after
    );
    assert_eq!(probe.n, 99, "the update was not committed");
}

#[tokio::test]
async fn a_transaction_keeps_its_row_lock_while_its_commit_is_delayed() {
    // The row-lock design's transaction: BEGIN, UPDATE the row (extended
    // protocol), COMMIT (sqlx sends it as a simple query).
    let scratch = ScratchRow::create().await;
    let table = scratch.table();
    let (_proxy, mut conn) = connect_through(Delay::EveryTransaction(DELAY)).await;
    let mut tx = conn.begin().await.expect("begin");
    sqlx::query(&format!("UPDATE {table} SET n = n - 1 WHERE id = 1"))
        .execute(&mut *tx)
        .await
        .expect("update");
    let mut direct = connect_directly().await;
    let sent = Instant::now();
    let (committed, probe) = tokio::join!(
        async {
            tx.commit().await.expect("commit");
            sent.elapsed()
        },
        probe(&mut direct, &table, sent),
    );
    scratch.drop_schema().await;
    assert_held_through_the_delay(&probe, "COMMIT");
    assert_one_delay("COMMIT", committed);
}

#[tokio::test]
async fn a_prepared_commit_keeps_the_row_lock_through_the_delay_too() {
    // COMMIT in the extended protocol: Postgres commits on its Execute.
    let scratch = ScratchRow::create().await;
    let table = scratch.table();
    let (_proxy, mut conn) = connect_through(Delay::EveryTransaction(DELAY)).await;
    conn.execute("BEGIN").await.expect("begin");
    sqlx::query(&format!("UPDATE {table} SET n = n - 1 WHERE id = 1"))
        .execute(&mut conn)
        .await
        .expect("update");
    let mut direct = connect_directly().await;
    let sent = Instant::now();
    let (committed, probe) = tokio::join!(
        async {
            sqlx::query("COMMIT")
                .execute(&mut conn)
                .await
                .expect("commit");
            sent.elapsed()
        },
        probe(&mut direct, &table, sent),
    );
    scratch.drop_schema().await;
    assert_held_through_the_delay(&probe, "a prepared COMMIT");
    assert_one_delay("a prepared COMMIT", committed);
}

#[tokio::test]
async fn a_statement_outside_a_transaction_keeps_its_row_lock_through_the_delay() {
    // dropline's batch: one prepared statement outside BEGIN, its own
    // transaction, which Postgres commits at the Sync.
    let scratch = ScratchRow::create().await;
    let table = scratch.table();
    let (_proxy, mut conn) = connect_through(Delay::EveryTransaction(DELAY)).await;
    let mut direct = connect_directly().await;
    let sent = Instant::now();
    let (updated, probe) = tokio::join!(
        async {
            sqlx::query(&format!("UPDATE {table} SET n = n - $1 WHERE id = 1"))
                .bind(1)
                .execute(&mut conn)
                .await
                .expect("update");
            sent.elapsed()
        },
        probe(&mut direct, &table, sent),
    );
    scratch.drop_schema().await;
    assert_held_through_the_delay(&probe, "the UPDATE");
    assert_one_delay("the UPDATE", updated);
}

#[tokio::test]
async fn every_statement_mode_delays_each_statement() {
    let (_proxy, mut conn) = connect_through(Delay::EveryStatement(DELAY)).await;
    let steps = three_statement_transaction(&mut conn).await;
    for (sql, took) in steps {
        assert!(took >= DELAY, "{sql} took {took:?}, under {DELAY:?}");
    }
}

#[tokio::test]
async fn the_proxy_answers_an_ssl_request_with_no() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let postgres = postgres();
    let upstream = upstream_of(&postgres).await.expect("resolve Postgres");
    let proxy = DelayProxy::start(upstream, Delay::EveryTransaction(DELAY))
        .await
        .expect("start the proxy");
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .expect("connect");
    // Length 8, then the SSLRequest code 80877103.
    socket
        .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .await
        .expect("send SSLRequest");
    let answer = tokio::time::timeout(Duration::from_secs(5), socket.read_u8())
        .await
        .expect("answered in time")
        .expect("read the answer");
    assert_eq!(answer, b'N');
}
