//! The load generator's HTTP client: a fixed pool of HTTP/1.1 keep-alive
//! connections to one gateway, driven by hyper directly.
//!
//! Why not reqwest (still used for the few requests around the burst): the
//! generator shares two cores with everything it measures, and every
//! microsecond it spends per request is taken from the gateway. Per request
//! reqwest parses the URL, looks up its pool by host and arms a timeout; this
//! pool hands out a ready connection and sends prebuilt bytes. Plain HTTP
//! only: in production TLS ends in front of the gateway.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

type Connection = SendRequest<Full<Bytes>>;

/// A request that got no HTTP answer (refused, reset, timed out).
pub const NO_ANSWER: u16 = 0;

/// How long one exchange may take before it counts as no answer; longer
/// than any `Prefer: wait` the tool sends.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// `host:port` of the gateway.
    authority: String,
    host: HeaderValue,
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection: at most that many requests in flight.
    slots: Semaphore,
}

impl Pool {
    /// A pool of `connections` to the gateway at `base_url` (`http://host:port`).
    pub fn new(base_url: &str, connections: usize) -> anyhow::Result<Self> {
        let uri: hyper::Uri = base_url
            .parse()
            .with_context(|| format!("gateway URL {base_url}"))?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http"),
            "the load generator speaks plain HTTP; got {base_url}"
        );
        let authority = uri
            .authority()
            .with_context(|| format!("no host in {base_url}"))?
            .to_string();
        Ok(Self {
            host: HeaderValue::from_str(&authority)?,
            authority,
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
            idle.push(connection.with_context(|| format!("connect to {}", self.authority))?);
        }
        *self.lock_idle() = idle;
        Ok(())
    }

    pub async fn post_json(&self, path: &str, headers: &[(&str, &str)], body: Bytes) -> Answer {
        let mut request = Request::builder().method(Method::POST).uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.header(CONTENT_TYPE, "application/json");
        self.send(request, body).await
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = Request::builder().method(Method::GET).uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request, Bytes::new()).await
    }

    async fn send(&self, request: hyper::http::request::Builder, body: Bytes) -> Answer {
        let Ok(request) = request
            .header(HOST, self.host.clone())
            .body(Full::new(body))
        else {
            return Answer::none();
        };
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
        match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(&mut connection, request)).await {
            Ok(Ok(answer)) => {
                self.lock_idle().push(connection);
                answer
            }
            // The connection is in an unknown state: drop it, the next
            // request on this slot opens a fresh one.
            _ => Answer::none(),
        }
    }

    /// An idle connection still open, if any.
    fn take_idle(&self) -> Option<Connection> {
        let mut idle = self.lock_idle();
        while let Some(connection) = idle.pop() {
            if !connection.is_closed() {
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
        let stream = TcpStream::connect(&self.authority).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes.
            let _ = connection.await;
        });
        Ok(sender)
    }
}

async fn exchange(
    connection: &mut Connection,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<Answer> {
    connection.ready().await?;
    let response = connection.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Answer { status, body })
}
