//! Test infrastructure, not product code: a TCP proxy that delays every
//! chunk a client sends after its first (the startup message, so connecting
//! stays quick) by `delay_ms`. Put between dropline's processes and Postgres
//! it makes each of their statements (a processor's whole batch is one) that
//! much slower: the slow-database day for the one design whose code the
//! comparison may not change. The same idea as `tests/support/proxy.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bytes read from a client at a time.
const CHUNK_BYTES_MAX: usize = 64 * 1024;

pub struct DelayProxy {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl DelayProxy {
    /// Listens on 127.0.0.1 and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr, delay_ms: u64) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the delay proxy")?;
        let port = listener.local_addr()?.port();
        let delay = Duration::from_millis(delay_ms);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let _ = server.set_nodelay(true);
                        let _ = client.set_nodelay(true);
                        relay(client, server, delay).await;
                    }
                });
            }
        });
        Ok(Self { port, task })
    }

    /// `postgres` (a base URL without database) with its host and port
    /// replaced by this proxy.
    pub fn base_url(&self, postgres: &str) -> anyhow::Result<String> {
        let (scheme, rest) = postgres.split_once("://").context("no scheme in the URL")?;
        let (user, host) = rest.rsplit_once('@').map_or(("", rest), |(u, h)| (u, h));
        let path = host.find('/').map_or("", |i| &host[i..]);
        let at = if user.is_empty() { "" } else { "@" };
        Ok(format!(
            "{scheme}://{user}{at}127.0.0.1:{}{path}",
            self.port
        ))
    }
}

/// Where `postgres` (a base URL) listens.
pub async fn upstream_of(postgres: &str) -> anyhow::Result<SocketAddr> {
    let rest = postgres
        .split_once("://")
        .map_or(postgres, |(_, rest)| rest);
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host = host.split(['/', '?']).next().unwrap_or(host);
    let host = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:5432")
    };
    let mut addresses = tokio::net::lookup_host(host.as_str())
        .await
        .with_context(|| format!("resolve {host}"))?;
    addresses
        .next()
        .with_context(|| format!("no address for {host}"))
}

async fn relay(client: TcpStream, server: TcpStream, delay: Duration) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async move {
        let mut buf = vec![0u8; CHUNK_BYTES_MAX];
        let mut first = true;
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if !std::mem::take(&mut first) {
                tokio::time::sleep(delay).await;
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let downstream = async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::join!(upstream, downstream);
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
