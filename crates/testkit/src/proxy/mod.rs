//! A TCP proxy in front of Postgres
//! that makes the database slow by a fixed delay D, in one of two ways
//! ([`Delay`]). Clients connect to it instead of Postgres and run their
//! code unchanged.
//!
//! [`Delay::EveryTransaction`] is `just compare`'s slow-database day, the
//! same for every design: every transaction takes D longer inside the
//! database. The proxy holds the client's message that ends a transaction
//! for D before Postgres receives it, so the transaction stays open that much
//! longer with its row locks held and its writes unseen, as in the seed's
//! incident (a write that took 12 s while its transaction held its locks).
//! Holding the server's reply instead would be a slow network: Postgres
//! would have committed and let the waiting transactions go.
//!
//! Held, for D, before the server gets it:
//! - in a transaction block (the server's last `ReadyForQuery` said `'T'`
//!   or `'E'`), the message that ends it: a simple `Query` that is exactly
//!   `COMMIT`, `END`, `ROLLBACK` or `ABORT` (any case, optionally followed by
//!   `TRANSACTION` or `WORK`, a `;`, whitespace and comments), which is how
//!   sqlx's `Transaction::commit` and `rollback` end a block, and the
//!   `ROLLBACK` it queues for a dropped transaction; or, in the extended
//!   protocol, the `Execute` of such a statement (`sqlx::query("COMMIT")`),
//!   because Postgres commits a transaction-control statement at its
//!   `Execute`, not at the `Sync` after it;
//! - outside a block (`'I'`), where each statement is its own implicit
//!   transaction: a simple `Query`, so its whole delay comes before the
//!   statement runs (an implicit transaction of the simple protocol ends
//!   inside the server's handling of one message, where no proxy can hold
//!   it open); and in the extended protocol the `Sync` that closes a group
//!   with an `Execute` in it (sqlx's `query(..).fetch_*`, dropline's batch):
//!   the statement has run, and its implicit transaction, locks and all,
//!   commits only at that `Sync`.
//!
//! So a transaction of any number of statements costs one D. Not held:
//! everything before the server's first `ReadyForQuery` (startup and
//! authentication, where the server waits for the client; connecting stays
//! quick, since reconnecting is not what the comparison measures); `BEGIN`
//! and `START TRANSACTION`; statements inside a block; groups with no
//! `Execute` (a bare `Sync`, sqlx's ping before it hands out a pooled
//! connection; a prepare, `Parse`, `Describe`, `Sync`); a query with no
//! statement in it; `ROLLBACK TO SAVEPOINT` and `RELEASE SAVEPOINT` (a nested
//! sqlx transaction), which end no transaction.
//!
//! The block status comes from the server's `ReadyForQuery` messages, read
//! off its byte stream as it is forwarded, unchanged and unheld, and shared
//! with the client's direction. When the client has sent more since the last
//! one (sqlx's queued `ROLLBACK` goes out just ahead of the next `BEGIN`), the
//! status is carried forward from what it sent: an end leaves the block, a
//! `BEGIN` enters it. A prepared statement is known by name: its `Parse`
//! says whether it ends or starts a block, a `Bind` carries that to the
//! portal, the portal's `Execute` acts on it. Both directions keep their
//! messages in order and byte for byte: a held message waits with everything
//! the client sent after it, and whatever came before it goes to the server
//! first.
//!
//! [`Delay::EveryStatement`] is the fault tests' slow database: every chunk a
//! client sends after its startup message waits D before it is forwarded, so
//! each statement (a processor's whole batch is one) reaches Postgres that
//! much later and can outlast a lease.
//!
//! Both modes answer an `SSLRequest` or `GSSENCRequest` themselves with `'N'`
//! (no encryption), so the messages stay readable and the URLs need no
//! `sslmode`; a client that requires TLS fails to connect instead of being
//! measured unslowed.

mod messages;
#[cfg(test)]
mod tests;
mod transaction_ends;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use transaction_ends::{hold_transaction_ends, watch_status, SharedStatus};

/// Bytes read from a socket at a time.
const CHUNK_BYTES_MAX: usize = 64 * 1024;
/// Longest startup packet Postgres accepts (`MAX_STARTUP_PACKET_LENGTH`).
const STARTUP_BYTES_MAX: usize = 10_000;
/// `SSLRequest`s and `GSSENCRequest`s refused before the startup message.
const ENCRYPTION_REQUESTS_MAX: usize = 2;
/// The request codes of `SSLRequest` and `GSSENCRequest`.
const SSL_REQUEST_CODE: u32 = 80_877_103;
const GSSENC_REQUEST_CODE: u32 = 80_877_104;
/// A message's type byte and int32 length.
const HEADER_BYTES: usize = 5;
/// Bytes of a `Query`, `Parse`, `Bind`, `Execute` or `Close` read before
/// deciding what to do with it (the rest streams through): names and the
/// start of the SQL. A statement that ends or starts a block fits many times
/// over; a longer one is taken for some other statement.
const PEEK_BYTES_MAX: usize = 4096;
/// Words in a statement that can still be a `BEGIN` with its modes
/// (`BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY, NOT DEFERRABLE`).
const STATEMENT_WORDS_MAX: usize = 16;
/// Prepared statements and portals remembered per connection as ending or
/// starting a block (all others are not remembered). sqlx prepares each SQL
/// text once per connection, so a connection has one or two.
const BLOCK_NAMES_MAX: usize = 1024;

/// The server's transaction status in a `ReadyForQuery`: idle, in a block,
/// in a failed block.
const IDLE: u8 = b'I';
const IN_BLOCK: u8 = b'T';
const FAILED_BLOCK: u8 = b'E';

/// How the proxy slows Postgres down (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delay {
    /// Each transaction takes this much longer inside the database: the
    /// client's message that ends it reaches the server this much later.
    EveryTransaction(Duration),
    /// Each chunk a client sends after its startup message reaches the
    /// server this much later.
    EveryStatement(Duration),
}

pub struct DelayProxy {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl DelayProxy {
    /// Listens on 127.0.0.1 and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr, delay: Delay) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the delay proxy")?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(accept(listener, upstream, delay));
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

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
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

async fn accept(listener: TcpListener, upstream: SocketAddr, delay: Delay) {
    while let Ok((client, _)) = listener.accept().await {
        tokio::spawn(async move {
            // A failed connection closes on the client, whose own error says
            // more than the proxy could.
            let _ = serve(client, upstream, delay).await;
        });
    }
}

/// One client connection, from its startup to its close.
async fn serve(mut client: TcpStream, upstream: SocketAddr, delay: Delay) -> io::Result<()> {
    client.set_nodelay(true)?;
    let startup = startup_packet(&mut client).await?;
    let mut server = TcpStream::connect(upstream).await?;
    server.set_nodelay(true)?;
    server.write_all(&startup).await?;
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Each direction ends on its own; the connection is done when both are.
    match delay {
        Delay::EveryTransaction(delay) => {
            let status = SharedStatus::default();
            let _ = tokio::join!(
                hold_transaction_ends(client_read, server_write, &status, delay),
                watch_status(server_read, client_write, &status)
            );
        }
        Delay::EveryStatement(delay) => {
            let _ = tokio::join!(
                delay_chunks(client_read, server_write, delay),
                pass(server_read, client_write)
            );
        }
    }
    Ok(())
}

/// Reads the client's packets up to its startup message and returns that
/// message, answering `SSLRequest` and `GSSENCRequest` with `'N'` on the
/// server's behalf (the proxy must read the messages in clear).
async fn startup_packet(client: &mut TcpStream) -> io::Result<Vec<u8>> {
    for _ in 0..=ENCRYPTION_REQUESTS_MAX {
        let mut length = [0u8; 4];
        client.read_exact(&mut length).await?;
        let length_bytes = u32::from_be_bytes(length) as usize;
        if !(8..=STARTUP_BYTES_MAX).contains(&length_bytes) {
            return Err(invalid("a startup packet of impossible length"));
        }
        let mut packet = vec![0u8; length_bytes];
        packet[..4].copy_from_slice(&length);
        client.read_exact(&mut packet[4..]).await?;
        let code = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        if length_bytes == 8 && matches!(code, SSL_REQUEST_CODE | GSSENC_REQUEST_CODE) {
            client.write_all(b"N").await?;
            continue;
        }
        return Ok(packet);
    }
    Err(invalid("too many encryption requests"))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Forwards bytes as they come, then closes the writing side.
async fn pass<R, W>(mut from: R, mut to: W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let copied = tokio::io::copy(&mut from, &mut to).await;
    let _ = to.shutdown().await;
    copied.map(|_| ())
}

/// [`Delay::EveryStatement`]: each chunk read waits `delay`, then goes on.
async fn delay_chunks<R, W>(mut from: R, mut to: W, delay: Duration) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK_BYTES_MAX];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        tokio::time::sleep(delay).await;
        to.write_all(&buf[..n]).await?;
    }
    to.shutdown().await
}
