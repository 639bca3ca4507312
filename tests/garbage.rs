//! 10,000 requests of garbage against a real gateway process: never a
//! server error, and its resident memory stays within 10 MiB of what it
//! held after a warm-up of the same mix. The mix covers what a client
//! controls: method, path, headers (keys, tokens, `Prefer`), body (bytes,
//! deep JSON, wrong types) and, over raw TCP, the request's very syntax.

use std::time::Duration;

use dropline_suite::{spawn_app, TestApp};
use dropline_testkit::{DroplineProcess, Role};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WARM_UP: usize = 2_000;
const GARBAGE: usize = 10_000;
const CONCURRENCY: usize = 16;
const RSS_GROWTH_MAX_KIB: u64 = 10 * 1024;

/// A gateway process of its own (its memory is what is measured) on the
/// app's database and NATS, taking the app's buyers' tokens.
fn start_gateway(app: &TestApp) -> DroplineProcess {
    let name = format!("gateway-{}", dropline_testkit::unique_suffix());
    let env = [
        ("DATABASE_URL", app.database_url.clone()),
        ("NATS_URL", app.nats_url.clone()),
        ("DROPLINE_JWT_SECRET", app.tokens.secret().to_string()),
        ("DROPLINE_HTTP_ADDR", "127.0.0.1:0".to_string()),
        ("RUST_LOG", "warn,dropline=info".to_string()),
    ];
    let log = std::env::temp_dir().join(format!("dropline-{name}.log"));
    DroplineProcess::start(Role::Gateway, &name, &env, &log).expect("start a gateway")
}

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    line.split_whitespace()
        .nth(1)
        .expect("a number")
        .parse()
        .expect("KiB")
}

fn random_bytes(rng: &mut StdRng, len_max: usize) -> Vec<u8> {
    let len = rng.gen_range(0..=len_max);
    (0..len).map(|_| rng.gen()).collect()
}

/// A printable string of random length from `alphabet`.
fn random_from(rng: &mut StdRng, alphabet: &[u8], len_max: usize) -> String {
    let len = rng.gen_range(0..=len_max);
    (0..len)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

/// Any printable ASCII: valid in a header value, often not in a URI.
fn random_text(rng: &mut StdRng, len_max: usize) -> String {
    let printable: Vec<u8> = (b' '..=b'~').collect();
    random_from(rng, &printable, len_max)
}

/// What a URI path may hold, `%`-escapes (valid or not) included.
fn random_segment(rng: &mut StdRng, len_max: usize) -> String {
    random_from(rng, b"abcXYZ019-_.~%!$&'()*+,;=:@ff2F00", len_max)
}

/// One request of the mix, as raw bytes on a fresh connection.
fn garbage_request(rng: &mut StdRng, app: &TestApp, host: &str) -> Vec<u8> {
    let sku = app.sku.as_str();
    let path = match rng.gen_range(0..7) {
        0 => format!("/v1/drops/{sku}/purchases"),
        1 => format!("/v1/drops/{}/purchases", random_segment(rng, 40)),
        2 => format!("/v1/drops/{sku}/purchases/{}", random_segment(rng, 300)),
        3 => format!("/v1/drops/{}", random_segment(rng, 80)),
        4 => format!("/{}", random_segment(rng, 3_000)),
        5 => format!("/ops/drops/{sku}/stats"),
        // Not a URI at all.
        _ => format!("/v1/drops/{}", random_text(rng, 80).replace(' ', "")),
    };
    let method = [
        "POST", "POST", "POST", "POST", "GET", "GET", "PUT", "BREW", "OPTIONS",
    ][rng.gen_range(0..9)];
    let authorization = match rng.gen_range(0..6) {
        0 => app.tokens.bearer(&random_text(rng, 20)),
        1 => format!("Bearer {}", random_text(rng, 600)),
        2 => "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.".to_string(),
        3 => format!("Basic {}", random_text(rng, 40)),
        4 => String::new(),
        _ => app.tokens.bearer("garbage-buyer"),
    };
    let body: Vec<u8> = match rng.gen_range(0..6) {
        0 => random_bytes(rng, 5_000),
        1 => "[".repeat(rng.gen_range(1..3_000)).into_bytes(),
        2 => br#"{"user_id": 12, "quantity": "x"}"#.to_vec(),
        3 => format!(r#"{{"quantity": {}}}"#, rng.gen::<i64>()).into_bytes(),
        4 => br#"{"user_id":"garbage-buyer"}"#.to_vec(),
        _ => Vec::new(),
    };
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if !authorization.is_empty() {
        head.push_str(&format!("Authorization: {authorization}\r\n"));
    }
    let key = match rng.gen_bool(0.5) {
        true => format!("k-{}", random_from(rng, b"abcdefXYZ0123456789", 30)),
        false => random_text(rng, 300),
    };
    head.push_str(&format!("Idempotency-Key: {key}\r\n"));
    head.push_str(&format!("Prefer: {}\r\n", random_text(rng, 30)));
    let mut request = head.into_bytes();
    // Raw garbage in the head: bytes that are no header at all.
    if rng.gen_ratio(1, 8) {
        request.extend(random_bytes(rng, 200));
        request.extend(b"\r\n");
    }
    // Sometimes a length that is not the body's: the gateway waits for
    // bytes that never come, or reads the rest as the next request.
    let length = match rng.gen_ratio(1, 10) {
        true => rng.gen_range(0..10_000),
        false => body.len(),
    };
    request.extend(
        format!("Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").bytes(),
    );
    request.extend(body);
    request
}

/// Sends `request` on a connection of its own; the status line's code, if
/// the gateway answered one before closing.
async fn send(addr: std::net::SocketAddr, request: Vec<u8>) -> Option<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // The gateway may close early (a 413, a 400 on a broken head).
    let _ = stream.write_all(&request).await;
    // Not a half-close: hyper takes the end of what a client sends for
    // the end of the connection and answers nothing. Only a request whose
    // body falls short of its length is ended so (as a client that gives
    // up would), or the gateway would wait for the rest until its bound.
    if !complete(&request) {
        let _ = stream.shutdown().await;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer));
    let _ = read
        .await
        .expect("the gateway answers or closes within 30 s");
    let line = String::from_utf8_lossy(&answer[..answer.len().min(20)]).into_owned();
    line.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Whether the body after the head is as long as its `Content-Length` says.
fn complete(request: &[u8]) -> bool {
    let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
        return true;
    };
    let head = String::from_utf8_lossy(&request[..end]);
    let length = head
        .rsplit("Content-Length: ")
        .next()
        .and_then(|l| l.parse::<usize>().ok());
    length.is_none_or(|length| request.len() - end - 4 >= length)
}

/// Sends `count` requests of the mix, `CONCURRENCY` at a time; the server
/// errors among the answers. Prints how many got which status.
async fn barrage(
    app: &TestApp,
    addr: std::net::SocketAddr,
    seed: u64,
    count: usize,
) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let host = addr.to_string();
    let requests: Vec<Vec<u8>> = (0..count)
        .map(|_| garbage_request(&mut rng, app, &host))
        .collect();
    let mut errors = Vec::new();
    let mut statuses = std::collections::BTreeMap::<Option<u16>, usize>::new();
    for chunk in requests.chunks(CONCURRENCY) {
        let answers = futures::future::join_all(chunk.iter().map(|r| send(addr, r.clone()))).await;
        for (request, status) in chunk.iter().zip(answers) {
            *statuses.entry(status).or_default() += 1;
            if status.is_some_and(|s| s >= 500) {
                let head = String::from_utf8_lossy(&request[..request.len().min(300)]).into_owned();
                errors.push(format!("{status:?} for {head:?}"));
            }
        }
    }
    eprintln!("{count} requests, answers by status (None: closed unanswered): {statuses:?}");
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_garbage_requests_yield_no_server_error_and_no_lasting_memory() {
    let app = spawn_app().await;
    let mut gateway = start_gateway(&app);
    let addr = gateway
        .logged_addr("addr", Duration::from_secs(30))
        .await
        .expect("the gateway logs its address");
    let warm_errors = barrage(&app, addr, 1, WARM_UP).await;
    assert!(warm_errors.is_empty(), "server errors: {warm_errors:#?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let warm_kib = resident_kib(gateway.pid());

    let errors = barrage(&app, addr, 2, GARBAGE).await;
    assert!(
        errors.is_empty(),
        "{} server errors: {:#?}",
        errors.len(),
        &errors[..errors.len().min(10)]
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_kib = resident_kib(gateway.pid());
    eprintln!("gateway resident memory: {warm_kib} KiB warmed up, {after_kib} KiB after {GARBAGE} garbage requests");
    assert!(
        after_kib <= warm_kib + RSS_GROWTH_MAX_KIB,
        "resident memory grew from {warm_kib} KiB to {after_kib} KiB"
    );
    assert!(gateway.is_running(), "the gateway is still up");
    // And it still serves a buyer.
    let healthy = app.http.get(format!("http://{addr}/healthz")).send().await;
    assert_eq!(healthy.expect("answers").status(), 200);
    gateway.kill();
    app.stop().await;
}
