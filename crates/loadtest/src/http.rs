//! The load generator's HTTP client: a fixed pool of HTTP/1.1 keep-alive
//! connections to one gateway or spread evenly over several, each request
//! written and its answer read directly on the socket.
//!
//! Why not a general client: the generator shares two cores with everything
//! it measures, and every microsecond it spends per request is taken from the
//! server under test. reqwest (still used for the few requests around the
//! burst) parses the URL, looks up its pool and arms a timeout per request;
//! hyper's client hands each request to a connection task and back. Here a
//! request is one `write` of bytes laid out in a reused buffer and its answer
//! usually one `read`, parsed by `httparse`. It speaks exactly what the
//! burst needs of HTTP/1.1: requests with a `Content-Length` body, answers
//! framed by `Content-Length`; anything else is refused loudly (no answer),
//! never guessed. Plain HTTP only: in production TLS ends in front of the
//! gateway.

use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// A request that got no HTTP answer (refused, reset, timed out).
pub const NO_ANSWER: u16 = 0;

/// How long one exchange may take before it counts as no answer; longer
/// than any `Prefer: wait` the tool sends.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Most header lines an answer may have.
const ANSWER_HEADERS_MAX: usize = 32;

/// Status and body of one answer; status [`NO_ANSWER`] if there was none.
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Answer {
    /// No answer at all (status [`NO_ANSWER`]).
    pub fn none() -> Self {
        Self {
            status: NO_ANSWER,
            body: Bytes::new(),
        }
    }
}

pub struct Pool {
    /// `host:port` of each gateway.
    authorities: Vec<String>,
    /// The gateway the next new connection goes to (round robin).
    next_authority: AtomicUsize,
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection: at most that many requests in flight.
    slots: Semaphore,
}

impl Pool {
    /// A pool of `connections` to the gateway at `base_url` (`http://host:port`).
    pub fn new(base_url: &str, connections: usize) -> anyhow::Result<Self> {
        Self::over(&[base_url.to_string()], connections)
    }

    /// A pool of `connections` spread evenly over the gateways at
    /// `base_urls`: a crowd that a load balancer in front of them would
    /// send round robin. Any gateway answers any buyer (gateways share
    /// nothing but NATS and the database).
    pub fn over(base_urls: &[String], connections: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(!base_urls.is_empty(), "no gateway to load");
        let authorities = base_urls
            .iter()
            .map(|url| authority_of(url))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            authorities,
            next_authority: AtomicUsize::new(0),
            idle: Mutex::new(Vec::with_capacity(connections)),
            slots: Semaphore::new(connections),
        })
    }

    /// Opens every connection now, so that the burst does not measure TCP
    /// handshakes (a real buyer's browser is already connected).
    pub async fn warm_up(&self) -> anyhow::Result<()> {
        let wanted = self.slots.available_permits();
        let opened = futures::future::join_all((0..wanted).map(|_| self.connect())).await;
        let mut idle = Vec::with_capacity(wanted);
        for connection in opened {
            idle.push(connection.context("connect to the gateway")?);
        }
        *self.lock_idle() = idle;
        Ok(())
    }

    pub async fn post_json(&self, path: &str, headers: &[(&str, &str)], body: Bytes) -> Answer {
        self.send("POST", path, headers, &body).await
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.send("GET", path, headers, &[]).await
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let Ok(_slot) = self.slots.acquire().await else {
            return Answer::none();
        };
        let mut connection = match self.take_idle() {
            Some(connection) => connection,
            None => match self.connect().await {
                Ok(connection) => connection,
                Err(_) => return Answer::none(),
            },
        };
        let request = Request {
            method,
            path,
            headers,
            body,
        };
        match tokio::time::timeout(EXCHANGE_TIMEOUT, connection.exchange(&request)).await {
            Ok(Ok((answer, keep_alive))) => {
                if keep_alive {
                    self.lock_idle().push(connection);
                }
                answer
            }
            // The connection is in an unknown state: drop it, the next
            // request on this slot opens a fresh one.
            _ => Answer::none(),
        }
    }

    /// An idle connection the server has not closed, if any.
    fn take_idle(&self) -> Option<Connection> {
        let mut idle = self.lock_idle();
        while let Some(connection) = idle.pop() {
            if connection.is_idle() {
                return Some(connection);
            }
        }
        None
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // Every change under the lock is one push or pop: a panic elsewhere
        // cannot leave the list inconsistent.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn connect(&self) -> anyhow::Result<Connection> {
        let turn = self.next_authority.fetch_add(1, Ordering::Relaxed);
        let authority = &self.authorities[turn % self.authorities.len()];
        let stream = TcpStream::connect(authority)
            .await
            .with_context(|| format!("connect to {authority}"))?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            authority: authority.clone(),
            stream,
            written: Vec::with_capacity(512),
            read: Vec::with_capacity(4096),
        })
    }
}

/// `host:port` of a gateway's base URL (`http://host:port`).
fn authority_of(base_url: &str) -> anyhow::Result<String> {
    let authority = base_url
        .strip_prefix("http://")
        .with_context(|| format!("the load generator speaks plain HTTP; got {base_url}"))?
        .trim_end_matches('/');
    anyhow::ensure!(
        !authority.is_empty() && !authority.contains('/'),
        "gateway URL {base_url}: expected http://host:port"
    );
    Ok(authority.to_string())
}

struct Request<'a> {
    method: &'a str,
    path: &'a str,
    headers: &'a [(&'a str, &'a str)],
    body: &'a [u8],
}

/// One keep-alive connection and its reused buffers.
struct Connection {
    /// `host:port` of the gateway it is connected to.
    authority: String,
    stream: TcpStream,
    written: Vec<u8>,
    read: Vec<u8>,
}

impl Connection {
    /// Nothing to read between exchanges. A connection with something to
    /// read was closed by the server (end of stream) or sent what nobody
    /// asked for; either way it cannot carry the next request. Asks the
    /// socket (the reactor's readiness is still set from the last answer).
    fn is_idle(&self) -> bool {
        matches!(
            self.stream.try_read(&mut [0u8; 1]),
            Err(ref err) if err.kind() == std::io::ErrorKind::WouldBlock
        )
    }

    /// Sends `request` and reads its answer; `false` when the connection
    /// cannot carry another request (the server said `Connection: close`).
    async fn exchange(&mut self, request: &Request<'_>) -> anyhow::Result<(Answer, bool)> {
        self.written.clear();
        request.write_to(&self.authority, &mut self.written);
        self.stream.write_all(&self.written).await?;

        self.read.clear();
        loop {
            if self.read.capacity() - self.read.len() < 1024 {
                self.read.reserve(4096);
            }
            let n = self.stream.read_buf(&mut self.read).await?;
            anyhow::ensure!(n > 0, "connection closed before a whole answer");
            if let Some(framed) = frame_answer(&self.read)? {
                let body_end = framed.head_len + framed.body_len;
                if self.read.len() >= body_end {
                    anyhow::ensure!(
                        self.read.len() == body_end,
                        "bytes after the answer on a connection without pipelining"
                    );
                    let answer = Answer {
                        status: framed.status,
                        body: Bytes::copy_from_slice(&self.read[framed.head_len..body_end]),
                    };
                    return Ok((answer, framed.keep_alive));
                }
            }
        }
    }
}

impl Request<'_> {
    fn write_to(&self, authority: &str, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "{} {} HTTP/1.1\r\nhost: {authority}\r\n",
            self.method, self.path
        );
        for (name, value) in self.headers {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        if !self.body.is_empty() {
            let _ = write!(
                out,
                "content-type: application/json\r\ncontent-length: {}\r\n",
                self.body.len()
            );
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.body);
    }
}

/// Where an answer's head ends and how long its body is.
#[derive(Debug, PartialEq, Eq)]
struct Framed {
    status: u16,
    head_len: usize,
    body_len: usize,
    keep_alive: bool,
}

/// Frames the answer at the start of `bytes`: `None` while its head is
/// incomplete; an error for what this client does not speak.
fn frame_answer(bytes: &[u8]) -> anyhow::Result<Option<Framed>> {
    let mut headers = [httparse::EMPTY_HEADER; ANSWER_HEADERS_MAX];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_len) = response.parse(bytes)? else {
        return Ok(None);
    };
    let status = response.code.context("answer without a status")?;
    let mut body_len = None;
    let mut keep_alive = true;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(header.value).context("Content-Length")?;
            body_len = Some(text.trim().parse::<usize>().context("Content-Length")?);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            anyhow::bail!("a Transfer-Encoding answer (only Content-Length is spoken here)");
        } else if header.name.eq_ignore_ascii_case("connection") {
            keep_alive = !header.value.eq_ignore_ascii_case(b"close");
        }
    }
    let body_len = match (body_len, status) {
        (Some(len), _) => len,
        // These never have a body.
        (None, 100..=199 | 204 | 304) => 0,
        (None, _) => anyhow::bail!("an answer without Content-Length"),
    };
    Ok(Some(Framed {
        status,
        head_len,
        body_len,
        keep_alive,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A server that answers `201 {}` to `per_connection` requests on each
    /// connection, then closes it; counts the connections it accepted.
    async fn tiny_server(per_connection: usize) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 4096];
                    for _ in 0..per_connection {
                        let mut read = 0;
                        // Requests here are small: one head and body, ending
                        // with the body `{}`.
                        while !buffer[..read].ends_with(b"{}") {
                            match socket.read(&mut buffer[read..]).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => read += n,
                            }
                        }
                        let answer = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}";
                        if socket.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (url, accepted)
    }

    #[tokio::test]
    async fn a_connection_carries_request_after_request_and_a_closed_one_is_replaced() {
        let (url, accepted) = tiny_server(2).await;
        let pool = Pool::new(&url, 1).unwrap();
        pool.warm_up().await.unwrap();
        for _ in 0..2 {
            let answer = pool.post_json("/p", &[], Bytes::from_static(b"{}")).await;
            assert_eq!((answer.status, &answer.body[..]), (201, &b"{}"[..]));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection, reused");
        // The server closed it after two answers: the next request must not
        // be lost on it, but go over a fresh connection.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let answer = pool.post_json("/p", &[], Bytes::from_static(b"{}")).await;
        assert_eq!(answer.status, 201);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_pool_over_several_gateways_spreads_its_connections_evenly() {
        let (first, first_accepted) = tiny_server(100).await;
        let (second, second_accepted) = tiny_server(100).await;
        let pool = Pool::over(&[first, second], 4).unwrap();
        pool.warm_up().await.unwrap();
        for _ in 0..8 {
            let answer = pool.post_json("/p", &[], Bytes::from_static(b"{}")).await;
            assert_eq!(answer.status, 201);
        }
        assert_eq!(first_accepted.load(Ordering::SeqCst), 2);
        assert_eq!(second_accepted.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_request_is_laid_out_as_http_1_1_with_its_body_length() {
        let mut out = Vec::new();
        Request {
            method: "POST",
            path: "/v1/drops/a/purchases",
            headers: &[("idempotency-key", "k-1"), ("prefer", "wait=3")],
            body: br#"{"user_id":"u"}"#,
        }
        .write_to("127.0.0.1:8080", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /v1/drops/a/purchases HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n\
             idempotency-key: k-1\r\nprefer: wait=3\r\n\
             content-type: application/json\r\ncontent-length: 15\r\n\r\n{\"user_id\":\"u\"}"
        );
    }

    #[test]
    fn answers_are_framed_by_content_length() {
        let answer = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(
            frame_answer(answer).unwrap(),
            Some(Framed {
                status: 201,
                head_len: answer.len() - 2,
                body_len: 2,
                keep_alive: true
            })
        );
        assert_eq!(
            frame_answer(b"HTTP/1.1 201 Created\r\ncontent-le").unwrap(),
            None
        );
        let closing =
            b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        assert!(!frame_answer(closing).unwrap().unwrap().keep_alive);
    }

    #[test]
    fn what_this_client_does_not_speak_is_an_error_not_a_guess() {
        assert!(frame_answer(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(frame_answer(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(frame_answer(b"garbage\r\n\r\n").is_err());
        assert_eq!(
            frame_answer(b"HTTP/1.1 204 No Content\r\n\r\n")
                .unwrap()
                .unwrap()
                .body_len,
            0
        );
    }
}
