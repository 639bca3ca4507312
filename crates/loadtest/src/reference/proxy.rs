//! Test infrastructure, not product code: a TCP proxy in front of Postgres
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

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
};
use tokio::net::{TcpListener, TcpStream};

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

/// The body length a message's header gives (its int32 counts itself, never
/// the type byte).
fn body_bytes(header: &[u8; HEADER_BYTES]) -> io::Result<usize> {
    let length = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    usize::try_from(length)
        .ok()
        .and_then(|length| length.checked_sub(4))
        .ok_or_else(|| invalid("a message of negative length"))
}

/// What the server's last `ReadyForQuery` said, as the client's direction
/// sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Observed {
    /// The transaction status; `None` until startup is over.
    status: Option<u8>,
    /// `ReadyForQuery` messages after the one that ended startup: one per
    /// `Query`, `Sync` or `FunctionCall` the server has answered.
    answered: u64,
}

/// [`Observed`], written by the server's direction and read by the
/// client's, packed in one atomic (the count above the status byte, which is
/// 0 until startup is over) so a reader never sees half an update.
#[derive(Debug, Default)]
struct SharedStatus(AtomicU64);

impl SharedStatus {
    fn store(&self, observed: Observed) {
        let status = observed.status.map_or(0, u64::from);
        // Release: stored before the `ReadyForQuery` is forwarded, so the
        // client cannot answer it before the client's direction can see it.
        self.0
            .store(observed.answered << 8 | status, Ordering::Release);
    }

    fn load(&self) -> Observed {
        let packed = self.0.load(Ordering::Acquire);
        let status = (packed & 0xff) as u8;
        Observed {
            status: (status != 0).then_some(status),
            answered: packed >> 8,
        }
    }
}

/// [`Delay::EveryTransaction`], the server's direction: every byte forwarded
/// as it comes, chunk by chunk; each chunk's `ReadyForQuery` messages are
/// published to `status` before the chunk goes to the client.
async fn watch_status<R, W>(mut from: R, mut to: W, status: &SharedStatus) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut scanner = ReadyScanner::default();
    let mut buf = vec![0u8; CHUNK_BYTES_MAX];
    let relayed = async {
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            if scanner.feed(&buf[..n])? {
                status.store(scanner.observed);
            }
            to.write_all(&buf[..n]).await?;
        }
    }
    .await;
    let _ = to.shutdown().await;
    relayed
}

/// Follows the server's messages through a byte stream cut anywhere, for
/// its `ReadyForQuery` messages.
#[derive(Debug, Default)]
struct ReadyScanner {
    header: [u8; HEADER_BYTES],
    /// Header bytes of the current message seen so far.
    header_len: usize,
    /// Body bytes of the current message still to come.
    body_left: usize,
    observed: Observed,
}

impl ReadyScanner {
    /// Reads on through `bytes`; true when a `ReadyForQuery` ended in them.
    fn feed(&mut self, mut bytes: &[u8]) -> io::Result<bool> {
        let mut ready = false;
        while !bytes.is_empty() {
            if self.header_len < HEADER_BYTES {
                let take = (HEADER_BYTES - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + take]
                    .copy_from_slice(&bytes[..take]);
                self.header_len += take;
                bytes = &bytes[take..];
                if self.header_len < HEADER_BYTES {
                    break;
                }
                self.body_left = body_bytes(&self.header)?;
                if self.header[0] == b'Z' && self.body_left != 1 {
                    return Err(invalid("a ReadyForQuery of the wrong length"));
                }
            } else {
                let take = self.body_left.min(bytes.len());
                if self.header[0] == b'Z' {
                    // Its body is the one status byte.
                    self.ready(bytes[0]);
                    ready = true;
                }
                self.body_left -= take;
                bytes = &bytes[take..];
            }
            if self.body_left == 0 {
                self.header_len = 0;
            }
        }
        Ok(ready)
    }

    fn ready(&mut self, status: u8) {
        if self.observed.status.is_some() {
            self.observed.answered += 1;
        }
        // The first one ends startup and answers no request.
        self.observed.status = Some(status);
    }
}

/// [`Delay::EveryTransaction`], the client's direction: message by message,
/// each transaction's end held for `delay` (which: [`Frontend::step`]).
/// Bytes are buffered for the server only while more of the client's are
/// already at hand; before any wait (for the client, or a hold) they go out.
async fn hold_transaction_ends<R, W>(
    from: R,
    to: W,
    status: &SharedStatus,
    delay: Duration,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut from = BufReader::with_capacity(CHUNK_BYTES_MAX, from);
    let mut to = BufWriter::with_capacity(CHUNK_BYTES_MAX, to);
    let relayed = relay_client(&mut from, &mut to, status, delay).await;
    // Whatever the client sent goes through (the BufWriter flushes first),
    // then the server hears the close.
    let _ = to.shutdown().await;
    relayed
}

async fn relay_client<R, W>(
    from: &mut BufReader<R>,
    to: &mut BufWriter<W>,
    status: &SharedStatus,
    delay: Duration,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut frontend = Frontend::default();
    let mut peek = Vec::with_capacity(PEEK_BYTES_MAX);
    loop {
        let mut header = [0u8; HEADER_BYTES];
        if fill(from, to).await?.is_empty() {
            // The client closed between two messages.
            return Ok(());
        }
        read_exact(from, to, &mut header).await?;
        let body_bytes = body_bytes(&header)?;
        let peek_bytes = if matches!(header[0], b'Q' | b'P' | b'B' | b'E' | b'C') {
            body_bytes.min(PEEK_BYTES_MAX)
        } else {
            0
        };
        peek.resize(peek_bytes, 0);
        read_exact(from, to, &mut peek).await?;
        let message = ClientMessage::parse(header[0], &peek);
        if frontend.step(message, status.load()) == Step::Hold {
            to.flush().await?;
            tokio::time::sleep(delay).await;
        }
        to.write_all(&header).await?;
        to.write_all(&peek).await?;
        copy_exact(from, to, body_bytes - peek_bytes).await?;
    }
}

/// The client's next bytes; what is buffered for the server goes out first
/// when they are not at hand yet. Empty: the client closed.
async fn fill<'a, R, W>(from: &'a mut BufReader<R>, to: &mut BufWriter<W>) -> io::Result<&'a [u8]>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if from.buffer().is_empty() {
        to.flush().await?;
    }
    from.fill_buf().await
}

async fn read_exact<R, W>(
    from: &mut BufReader<R>,
    to: &mut BufWriter<W>,
    buf: &mut [u8],
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut filled = 0;
    while filled < buf.len() {
        let available = fill(from, to).await?;
        if available.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let n = available.len().min(buf.len() - filled);
        buf[filled..filled + n].copy_from_slice(&available[..n]);
        from.consume(n);
        filled += n;
    }
    Ok(())
}

/// Streams `bytes` of a body through without holding them (it may be large).
async fn copy_exact<R, W>(
    from: &mut BufReader<R>,
    to: &mut BufWriter<W>,
    mut bytes: usize,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    while bytes > 0 {
        let available = fill(from, to).await?;
        if available.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let n = available.len().min(bytes);
        to.write_all(&available[..n]).await?;
        from.consume(n);
        bytes -= n;
    }
    Ok(())
}

/// What a statement does to the transaction block, as far as the proxy
/// needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `BEGIN` or `START TRANSACTION` (with its modes), alone: opens a block.
    Begin,
    /// `COMMIT`, `END`, `ROLLBACK` or `ABORT`, optionally with `TRANSACTION`
    /// or `WORK`, alone: ends a block.
    End,
    /// Nothing but whitespace, comments and `;`: no statement runs.
    Empty,
    /// Anything else, several statements in one string included.
    Other,
}

impl Kind {
    /// The block status after a statement of this kind ran in `status`.
    /// (A statement failing in a block makes it `'E'`, which the proxy
    /// treats as `'T'`.)
    fn after(self, status: u8) -> u8 {
        match self {
            Self::Begin => IN_BLOCK,
            Self::End => IDLE,
            Self::Empty | Self::Other => status,
        }
    }
}

/// Reads what one SQL string does. Anything it does not understand is
/// [`Kind::Other`]: quotes, numbers, operators, a second statement.
fn classify(sql: &[u8]) -> Kind {
    let mut words: Vec<&[u8]> = Vec::new();
    let mut commas = false;
    let mut ended = false;
    let mut i = 0;
    while i < sql.len() {
        let rest = &sql[i..];
        let c = sql[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if rest.starts_with(b"--") {
            i += rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        } else if rest.starts_with(b"/*") {
            match block_comment_bytes(rest) {
                Some(n) => i += n,
                None => return Kind::Other,
            }
        } else if c == b';' {
            ended = true;
            i += 1;
        } else if ended {
            // A second statement.
            return Kind::Other;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let n = rest
                .iter()
                .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'$'))
                .unwrap_or(rest.len());
            if words.len() == STATEMENT_WORDS_MAX {
                return Kind::Other;
            }
            words.push(&rest[..n]);
            i += n;
        } else if c == b',' {
            commas = true;
            i += 1;
        } else {
            return Kind::Other;
        }
    }
    let is = |word: &[u8], keyword: &str| word.eq_ignore_ascii_case(keyword.as_bytes());
    match words.as_slice() {
        [] if !commas => Kind::Empty,
        [first, rest @ ..]
            if !commas
                && ["COMMIT", "END", "ROLLBACK", "ABORT"]
                    .iter()
                    .any(|k| is(first, k))
                && match rest {
                    [] => true,
                    [second] => is(second, "TRANSACTION") || is(second, "WORK"),
                    _ => false,
                } =>
        {
            Kind::End
        }
        [first, ..] if is(first, "BEGIN") => Kind::Begin,
        [first, second, ..] if is(first, "START") && is(second, "TRANSACTION") => Kind::Begin,
        _ => Kind::Other,
    }
}

/// Length of the (nested, as Postgres nests them) comment `sql` starts with;
/// `None` when it does not end.
fn block_comment_bytes(sql: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = 0;
    while i + 1 < sql.len() {
        match &sql[i..i + 2] {
            b"/*" => {
                depth += 1;
                i += 2;
            }
            b"*/" => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// A client message as far as the proxy needs to know it. A name is `None`
/// when it did not fit in the bytes read ([`PEEK_BYTES_MAX`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientMessage<'a> {
    /// `'Q'`, a simple query.
    Query(Kind),
    /// `'P'`: prepares a named (or the unnamed, `""`) statement.
    Parse {
        statement: Option<&'a [u8]>,
        kind: Kind,
    },
    /// `'B'`: makes a portal of a prepared statement.
    Bind {
        portal: Option<&'a [u8]>,
        statement: Option<&'a [u8]>,
    },
    /// `'E'`: runs a portal, at once.
    Execute { portal: Option<&'a [u8]> },
    /// `'C'`: forgets a statement (`b'S'`) or a portal (`b'P'`).
    Close { what: u8, name: Option<&'a [u8]> },
    /// `'S'`: ends a group of extended-protocol messages; commits its
    /// implicit transaction, if any, and is answered by a `ReadyForQuery`.
    Sync,
    /// `'F'`: calls a function, in its own transaction outside a block.
    FunctionCall,
    /// Anything else: `Describe`, `Flush`, COPY data, passwords, `Terminate`.
    Other,
}

impl<'a> ClientMessage<'a> {
    /// `peek` is the start of the body (all of it, if it is short).
    fn parse(kind: u8, peek: &'a [u8]) -> Self {
        let mut strings = Strings(peek);
        match kind {
            b'Q' => Self::Query(strings.next().map_or(Kind::Other, classify)),
            b'P' => {
                let statement = strings.next();
                let kind = match statement.and(strings.next()) {
                    Some(sql) => classify(sql),
                    None => Kind::Other,
                };
                Self::Parse { statement, kind }
            }
            b'B' => {
                let portal = strings.next();
                let statement = portal.and(strings.next());
                Self::Bind { portal, statement }
            }
            b'E' => Self::Execute {
                portal: strings.next(),
            },
            b'C' => match peek.split_first() {
                Some((&what, rest)) => Self::Close {
                    what,
                    name: Strings(rest).next(),
                },
                None => Self::Other,
            },
            b'S' => Self::Sync,
            b'F' => Self::FunctionCall,
            _ => Self::Other,
        }
    }
}

/// Reads NUL-terminated strings off the start of a body.
struct Strings<'a>(&'a [u8]);

impl<'a> Strings<'a> {
    /// The next string; `None` when its end is not in the bytes read.
    fn next(&mut self) -> Option<&'a [u8]> {
        let end = self.0.iter().position(|&b| b == 0)?;
        let string = &self.0[..end];
        self.0 = &self.0[end + 1..];
        Some(string)
    }
}

/// What to do with one client message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Send it now, after what came before it.
    Forward,
    /// It ends a transaction: send what came before it, wait the delay,
    /// then send it.
    Hold,
}

impl Step {
    fn hold_if(ends: bool) -> Self {
        if ends {
            Self::Hold
        } else {
            Self::Forward
        }
    }
}

/// Where the client's side of one connection stands.
#[derive(Debug, Default)]
struct Frontend {
    /// `Query`, `Sync` and `FunctionCall` messages sent since startup: each
    /// is answered by one `ReadyForQuery`.
    requests: u64,
    /// The block status once the server has handled everything sent so far:
    /// the server's own word when it has answered all of it, else carried
    /// forward from that by what was sent since.
    status: u8,
    /// An `Execute` was sent since the last `Sync` (it runs at once, with no
    /// `ReadyForQuery` until the `Sync`): the server's word predates it.
    executed: bool,
    /// A statement ran outside a block since the last `Sync`: its implicit
    /// transaction ends at that `Sync`.
    implicit: bool,
    /// Prepared statements that end or start a block, by name.
    statements: HashMap<Vec<u8>, Kind>,
    /// Portals made of those statements, by name.
    portals: HashMap<Vec<u8>, Kind>,
}

impl Frontend {
    fn step(&mut self, message: ClientMessage<'_>, server: Observed) -> Step {
        // Until startup is over nothing is held (during authentication the
        // server waits for the client) and no request is counted.
        let Some(status) = server.status else {
            return Step::Forward;
        };
        if server.answered >= self.requests && !self.executed {
            self.status = status;
        }
        let in_block = matches!(self.status, IN_BLOCK | FAILED_BLOCK);
        match message {
            ClientMessage::Query(kind) => {
                self.requests += 1;
                // A simple query destroys the unnamed statement and portal.
                self.statements.remove(&b""[..]);
                self.portals.remove(&b""[..]);
                self.status = kind.after(self.status);
                Step::hold_if(if in_block {
                    kind == Kind::End
                } else {
                    kind == Kind::Other
                })
            }
            ClientMessage::Parse { statement, kind } => {
                if let Some(name) = statement {
                    remember(&mut self.statements, name, kind);
                }
                Step::Forward
            }
            ClientMessage::Bind { portal, statement } => {
                if let Some(name) = portal {
                    let kind = statement
                        .and_then(|statement| self.statements.get(statement))
                        .copied()
                        .unwrap_or(Kind::Other);
                    remember(&mut self.portals, name, kind);
                }
                Step::Forward
            }
            ClientMessage::Execute { portal } => {
                let kind = portal
                    .and_then(|portal| self.portals.get(portal))
                    .copied()
                    .unwrap_or(Kind::Other);
                self.executed = true;
                self.status = kind.after(self.status);
                self.implicit |= !in_block && kind == Kind::Other;
                // Postgres commits a transaction-control statement at its
                // Execute (finish_xact_command in exec_execute_message).
                Step::hold_if(in_block && kind == Kind::End)
            }
            ClientMessage::Close {
                what,
                name: Some(name),
            } => {
                match what {
                    b'S' => self.statements.remove(name),
                    b'P' => self.portals.remove(name),
                    _ => None,
                };
                Step::Forward
            }
            ClientMessage::Close { name: None, .. } | ClientMessage::Other => Step::Forward,
            ClientMessage::Sync => {
                self.requests += 1;
                let ends = self.implicit && !in_block;
                self.implicit = false;
                self.executed = false;
                Step::hold_if(ends)
            }
            ClientMessage::FunctionCall => {
                self.requests += 1;
                Step::hold_if(!in_block)
            }
        }
    }
}

/// Records whether the statement or portal `name` ends or starts a block;
/// only those are kept, at most [`BLOCK_NAMES_MAX`] of them.
fn remember(names: &mut HashMap<Vec<u8>, Kind>, name: &[u8], kind: Kind) {
    if !matches!(kind, Kind::Begin | Kind::End) {
        names.remove(name);
    } else if names.len() < BLOCK_NAMES_MAX || names.contains_key(name) {
        names.insert(name.to_vec(), kind);
    }
}

#[cfg(test)]
mod tests {
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
}
