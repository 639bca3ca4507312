//! Clients that hold the gateway's connections without finishing a request
//! (slowloris) are cut off, and a refused body ends its connection in the
//! open: after a `413` the answer says `Connection: close`.

use std::time::{Duration, Instant};

use dropline_suite::{spawn_app_with, AppOptions};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const SLOW_CLIENTS: usize = 900;
const HEADER_READ_TIMEOUT_MS: u64 = 2_000;

/// Reads until the gateway closes the connection; how long that took after
/// `since`, or `None` if it stayed open past `give_up`.
async fn closed_after(
    mut stream: TcpStream,
    since: Instant,
    give_up: Duration,
) -> Option<Duration> {
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((since + give_up).into(), stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(since.elapsed()),
            Ok(Ok(_)) => continue, // an answer (a 408, say) before the close
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_cut_off_while_buyers_are_served() {
    let app = spawn_app_with(AppOptions {
        tune: Box::new(|settings| settings.gateway.header_read_timeout_ms = HEADER_READ_TIMEOUT_MS),
        ..AppOptions::default()
    })
    .await;
    let addr = app.base_url.trim_start_matches("http://").to_string();
    let mut watchers = Vec::with_capacity(SLOW_CLIENTS);
    for _ in 0..SLOW_CLIENTS {
        let mut stream = TcpStream::connect(&addr).await.expect("connect");
        stream
            .write_all(b"POST /v1/drops/x/purch")
            .await
            .expect("half a request line");
        let sent = Instant::now();
        watchers.push(tokio::spawn(closed_after(
            stream,
            sent,
            Duration::from_secs(30),
        )));
    }
    // Meanwhile a buyer is served as usual.
    let bought = app.buy("while-held", "ana", 5).await;
    assert_eq!(bought.status, 201, "{bought:?}");
    let bound = Duration::from_millis(HEADER_READ_TIMEOUT_MS + 1_000);
    let mut slowest = Duration::ZERO;
    for watcher in watchers {
        let closed = watcher
            .await
            .expect("watcher")
            .expect("the gateway closed the connection");
        slowest = slowest.max(closed);
    }
    assert!(
        slowest <= bound,
        "a half-sent request held its connection {slowest:?} (bound {bound:?})"
    );
    // And the gateway still serves.
    assert_eq!(app.buy("after", "bob", 5).await.status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_body_closes_its_connection_and_says_so() {
    let app = spawn_app_with(AppOptions::default()).await;
    let addr = app.base_url.trim_start_matches("http://").to_string();
    let body = format!(r#"{{"user_id":"{}"}}"#, "a".repeat(10_000));
    let request = format!(
        "POST /v1/drops/{}/purchases HTTP/1.1\r\nhost: {addr}\r\nauthorization: {}\r\n\
         idempotency-key: big-1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        app.sku,
        app.tokens.bearer("ana"),
        body.len()
    );
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the gateway closes the connection")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 413"), "{answer}");
    let head = answer.split("\r\n\r\n").next().unwrap_or_default();
    assert!(
        head.lines().any(|line| line.trim() == "connection: close"),
        "{head}"
    );
    assert_eq!(app.intents_in_stream().await, 0);
}
