//! The proxy's message rules and relays, byte for byte.

use super::messages::*;
use super::transaction_ends::*;
use super::*;

#[test]
fn the_statements_that_end_a_block_are_recognised() {
    for sql in [
        "COMMIT",
        "commit;",
        "END",
        "end work",
        "ROLLBACK TRANSACTION ;  \n",
        "Abort Work",
        "  /* a /* nested */ comment */ COMMIT -- done\n",
    ] {
        assert_eq!(classify(sql.as_bytes()), Kind::End, "{sql}");
    }
}

#[test]
fn statements_that_only_look_like_an_end_are_not_one() {
    for sql in [
        "ROLLBACK TO SAVEPOINT _sqlx_savepoint_1",
        "RELEASE SAVEPOINT _sqlx_savepoint_1",
        "COMMIT PREPARED 'x'",
        "COMMIT AND CHAIN",
        "COMMIT; SELECT 1",
        "COMMITTED",
        "SELECT 1",
        "/* unterminated COMMIT",
        "END TRANSACTION WORK",
    ] {
        assert_eq!(classify(sql.as_bytes()), Kind::Other, "{sql}");
    }
}

#[test]
fn a_block_start_is_recognised_and_a_query_with_no_statement_is_empty() {
    for sql in [
        "BEGIN",
        "begin;",
        "START TRANSACTION",
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
    ] {
        assert_eq!(classify(sql.as_bytes()), Kind::Begin, "{sql}");
    }
    assert_eq!(classify(b"BEGIN; UPDATE t SET n = 1; COMMIT"), Kind::Other);
    assert_eq!(classify(b"SAVEPOINT _sqlx_savepoint_1"), Kind::Other);
    for sql in ["", " ; ", "/* SQLx ping */", "-- nothing\n"] {
        assert_eq!(classify(sql.as_bytes()), Kind::Empty, "{sql}");
    }
}

const STARTED: Observed = Observed {
    status: Some(IDLE),
    answered: 0,
};

/// The proxy's client side, with the server's answers played by hand.
struct Session {
    frontend: Frontend,
    server: Observed,
}

impl Session {
    fn started() -> Self {
        Self {
            frontend: Frontend::default(),
            server: STARTED,
        }
    }

    fn send(&mut self, message: ClientMessage<'_>) -> Step {
        self.frontend.step(message, self.server)
    }

    /// The server answers one more request, leaving `status`.
    fn ready(&mut self, status: u8) {
        self.server = Observed {
            status: Some(status),
            answered: self.server.answered + 1,
        };
    }

    /// A simple query the server answers before the next message, as
    /// sqlx waits for it.
    fn query(&mut self, sql: &str, status_after: u8) -> Step {
        let step = self.send(query(sql));
        self.ready(status_after);
        step
    }

    /// sqlx's first use of a statement on a connection: Parse, Describe,
    /// Sync, answered.
    fn prepare(&mut self, name: &str, sql: &str) {
        let status = self.server.status.unwrap_or(IDLE);
        for message in [parse(name, sql), ClientMessage::Other, ClientMessage::Sync] {
            assert_eq!(self.send(message), Step::Forward, "prepare {sql}");
        }
        self.ready(status);
    }

    /// sqlx's run of a prepared statement: Bind, Execute, Close, Sync
    /// (not yet answered); the steps of the Execute and of the Sync.
    fn run(&mut self, name: &str) -> (Step, Step) {
        assert_eq!(self.send(bind("", name)), Step::Forward);
        let execute = self.send(ClientMessage::Execute { portal: Some(b"") });
        let close = ClientMessage::Close {
            what: b'P',
            name: Some(b""),
        };
        assert_eq!(self.send(close), Step::Forward);
        (execute, self.send(ClientMessage::Sync))
    }
}

fn query(sql: &str) -> ClientMessage<'_> {
    ClientMessage::Query(classify(sql.as_bytes()))
}

fn parse<'a>(name: &'a str, sql: &str) -> ClientMessage<'a> {
    ClientMessage::Parse {
        statement: Some(name.as_bytes()),
        kind: classify(sql.as_bytes()),
    }
}

fn bind<'a>(portal: &'a str, statement: &'a str) -> ClientMessage<'a> {
    ClientMessage::Bind {
        portal: Some(portal.as_bytes()),
        statement: Some(statement.as_bytes()),
    }
}

#[test]
fn nothing_is_held_before_startup_ends() {
    let mut frontend = Frontend::default();
    let startup = Observed::default();
    for message in [ClientMessage::Other, query("SELECT 1"), ClientMessage::Sync] {
        assert_eq!(frontend.step(message, startup), Step::Forward);
    }
    assert_eq!(frontend.requests, 0);
}

#[test]
fn a_query_outside_a_block_is_held_but_not_a_begin_or_an_empty_one() {
    let mut s = Session::started();
    assert_eq!(s.query("SELECT 1", IDLE), Step::Hold);
    assert_eq!(s.query("/* SQLx ping */", IDLE), Step::Forward);
    assert_eq!(s.query("BEGIN", IN_BLOCK), Step::Forward);
}

#[test]
fn in_a_block_only_the_commit_is_held() {
    let mut s = Session::started();
    assert_eq!(s.query("BEGIN", IN_BLOCK), Step::Forward);
    for sql in [
        "SELECT 1",
        "UPDATE t SET n = n - 1",
        "SAVEPOINT a",
        "RELEASE a",
    ] {
        assert_eq!(s.query(sql, IN_BLOCK), Step::Forward, "{sql}");
    }
    assert_eq!(s.query("COMMIT", IDLE), Step::Hold);
    assert_eq!(s.query("SELECT 1", IDLE), Step::Hold);
}

#[test]
fn a_failed_block_is_held_at_its_rollback_and_not_at_a_savepoint_s() {
    let mut s = Session::started();
    assert_eq!(s.query("BEGIN", IN_BLOCK), Step::Forward);
    assert_eq!(s.query("SAVEPOINT a", IN_BLOCK), Step::Forward);
    assert_eq!(s.query("SELECT 1/0", FAILED_BLOCK), Step::Forward);
    assert_eq!(s.query("ROLLBACK TO SAVEPOINT a", IN_BLOCK), Step::Forward);
    assert_eq!(s.query("SELECT 1/0", FAILED_BLOCK), Step::Forward);
    assert_eq!(s.query("ROLLBACK", IDLE), Step::Hold);
}

#[test]
fn a_prepared_statement_outside_a_block_holds_the_sync_that_commits_it() {
    let mut s = Session::started();
    s.prepare("sqlx_s_1", "UPDATE t SET n = n - $1");
    assert_eq!(s.run("sqlx_s_1"), (Step::Forward, Step::Hold));
    s.ready(IDLE);
    // A bare Sync, sqlx's ping, runs nothing.
    assert_eq!(s.send(ClientMessage::Sync), Step::Forward);
    s.ready(IDLE);
    // Inside a block the statement's Sync ends nothing.
    assert_eq!(s.query("BEGIN", IN_BLOCK), Step::Forward);
    assert_eq!(s.run("sqlx_s_1"), (Step::Forward, Step::Forward));
}

#[test]
fn a_prepared_commit_is_held_at_its_execute_and_a_prepared_begin_not_at_all() {
    let mut s = Session::started();
    s.prepare("sqlx_s_1", "BEGIN");
    s.prepare("sqlx_s_2", "COMMIT");
    s.prepare("sqlx_s_3", "SELECT 1");
    assert_eq!(s.run("sqlx_s_1"), (Step::Forward, Step::Forward));
    s.ready(IN_BLOCK);
    assert_eq!(s.run("sqlx_s_3"), (Step::Forward, Step::Forward));
    s.ready(IN_BLOCK);
    assert_eq!(s.run("sqlx_s_2"), (Step::Hold, Step::Forward));
    s.ready(IDLE);
    assert_eq!(s.run("sqlx_s_3"), (Step::Forward, Step::Hold));
}

#[test]
fn a_closed_or_replaced_statement_no_longer_counts_as_a_commit() {
    let mut s = Session::started();
    assert_eq!(s.query("BEGIN", IN_BLOCK), Step::Forward);
    s.prepare("sqlx_s_1", "COMMIT");
    let close = ClientMessage::Close {
        what: b'S',
        name: Some(b"sqlx_s_1"),
    };
    assert_eq!(s.send(close), Step::Forward);
    assert_eq!(s.run("sqlx_s_1"), (Step::Forward, Step::Forward));
    s.ready(IN_BLOCK);
    // The unnamed statement, replaced by the next Parse.
    assert_eq!(s.send(parse("", "COMMIT")), Step::Forward);
    assert_eq!(s.send(parse("", "SELECT 1")), Step::Forward);
    assert_eq!(s.run(""), (Step::Forward, Step::Forward));
}

#[test]
fn a_pipelined_client_is_judged_by_what_it_sent_since_the_last_answer() {
    let mut s = Session::started();
    assert_eq!(s.query("BEGIN", IN_BLOCK), Step::Forward);
    // sqlx's queued ROLLBACK of a dropped transaction, then BEGIN, a
    // statement, COMMIT and a statement, all before any answer.
    assert_eq!(s.send(query("ROLLBACK")), Step::Hold);
    assert_eq!(s.send(query("BEGIN")), Step::Forward);
    assert_eq!(s.send(query("SELECT 1")), Step::Forward);
    assert_eq!(s.send(query("COMMIT")), Step::Hold);
    assert_eq!(s.send(query("SELECT 2")), Step::Hold);
    // The answers come; then the server's word counts again, also
    // where it differs from what the proxy made of the SQL.
    for status in [IDLE, IN_BLOCK, IN_BLOCK, IDLE, IDLE] {
        s.ready(status);
    }
    assert_eq!(s.send(query("BEGIN; SELECT 3")), Step::Hold);
    s.ready(IN_BLOCK);
    assert_eq!(s.send(query("SELECT 4")), Step::Forward);
}

#[test]
fn a_function_call_outside_a_block_is_held() {
    let mut s = Session::started();
    assert_eq!(s.send(ClientMessage::FunctionCall), Step::Hold);
}

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![kind];
    let length = i32::try_from(body.len() + 4).expect("a test message fits");
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes.extend_from_slice(body);
    bytes
}

fn server_stream() -> Vec<u8> {
    let mut stream = Vec::new();
    for (kind, body) in [
        (b'R', vec![0u8; 4]),
        (b'S', b"TimeZone\0UTC\0".to_vec()),
        (b'K', vec![7u8; 8]),
        (b'Z', b"I".to_vec()),
        (b'T', vec![1u8; 30]),
        (b'D', vec![b'Z'; CHUNK_BYTES_MAX + 10]),
        (b'n', Vec::new()),
        (b'C', b"SELECT 2\0".to_vec()),
        (b'Z', b"T".to_vec()),
        (b'Z', b"E".to_vec()),
        (b'E', vec![4u8; 20]),
    ] {
        stream.extend(message(kind, &body));
    }
    stream
}

#[test]
fn ready_for_query_is_found_wherever_the_stream_is_cut() {
    let stream = server_stream();
    let mut scanner = ReadyScanner::default();
    let mut ready = 0;
    for byte in &stream {
        ready += usize::from(scanner.feed(std::slice::from_ref(byte)).expect("scan"));
    }
    assert_eq!(ready, 3);
    let expected = Observed {
        status: Some(FAILED_BLOCK),
        answered: 2,
    };
    assert_eq!(scanner.observed, expected);
}

#[tokio::test]
async fn the_server_stream_comes_out_byte_for_byte_and_its_status_is_shared() {
    let stream = server_stream();
    let status = SharedStatus::default();
    let mut out = Vec::new();
    watch_status(stream.as_slice(), &mut out, &status)
        .await
        .expect("relay");
    assert!(out == stream, "the proxy changed the server's bytes");
    let expected = Observed {
        status: Some(FAILED_BLOCK),
        answered: 2,
    };
    assert_eq!(status.load(), expected);
}

fn cstr(s: &str) -> Vec<u8> {
    [s.as_bytes(), b"\0"].concat()
}

#[tokio::test]
async fn the_client_stream_comes_out_byte_for_byte() {
    let long_sql = format!("SELECT '{}'", "x".repeat(PEEK_BYTES_MAX * 3));
    let mut stream = Vec::new();
    for (kind, body) in [
        (b'p', cstr("password")),
        (b'Q', cstr("BEGIN")),
        (
            b'P',
            [cstr("sqlx_s_1"), cstr("COMMIT"), vec![0, 0]].concat(),
        ),
        (b'D', [b"S".to_vec(), cstr("sqlx_s_1")].concat()),
        (b'S', Vec::new()),
        (
            b'B',
            [cstr(""), cstr("sqlx_s_1"), vec![9u8; CHUNK_BYTES_MAX * 2]].concat(),
        ),
        (b'E', [cstr(""), vec![0, 0, 0, 0]].concat()),
        (b'C', [b"P".to_vec(), cstr("")].concat()),
        (b'S', Vec::new()),
        (b'Q', cstr(&long_sql)),
        (b'd', vec![3u8; 100]),
        (b'X', Vec::new()),
    ] {
        stream.extend(message(kind, &body));
    }
    let status = SharedStatus::default();
    status.store(STARTED);
    let mut out = Vec::new();
    hold_transaction_ends(stream.as_slice(), &mut out, &status, Duration::ZERO)
        .await
        .expect("relay");
    assert!(out == stream, "the proxy changed the client's bytes");
}

#[tokio::test]
async fn what_comes_before_a_held_message_goes_at_once_and_the_held_one_a_delay_later() {
    use std::time::Instant;
    let delay = Duration::from_millis(200);
    // A prepared statement outside a block: Bind, Execute, Sync.
    let before = [
        message(b'B', &[cstr(""), cstr("sqlx_s_1"), vec![0u8; 6]].concat()),
        message(b'E', &[cstr(""), vec![0, 0, 0, 0]].concat()),
    ]
    .concat();
    let sync = message(b'S', &[]);
    let status = SharedStatus::default();
    status.store(STARTED);
    let (mut client, proxy_in) = tokio::io::duplex(CHUNK_BYTES_MAX);
    let (proxy_out, mut server) = tokio::io::duplex(CHUNK_BYTES_MAX);
    let (relayed, (before_took, sync_took, received)) = tokio::join!(
        hold_transaction_ends(proxy_in, proxy_out, &status, delay),
        async {
            let started = Instant::now();
            client
                .write_all(&[before.as_slice(), &sync].concat())
                .await
                .expect("send");
            let mut received = vec![0u8; before.len()];
            server.read_exact(&mut received).await.expect("receive");
            let before_took = started.elapsed();
            drop(client);
            server.read_to_end(&mut received).await.expect("receive");
            (before_took, started.elapsed(), received)
        }
    );
    relayed.expect("relay");
    assert!(
        before_took < delay / 2,
        "Bind and Execute took {before_took:?}"
    );
    assert!(sync_took >= delay, "the Sync came after {sync_took:?}");
    assert!(
        received == [before.as_slice(), &sync].concat(),
        "the proxy changed the client's bytes"
    );
}
