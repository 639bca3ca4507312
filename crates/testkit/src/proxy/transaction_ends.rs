//! [`Delay::EveryTransaction`]: the server's `ReadyForQuery` messages are
//! watched as they pass, and the client's message that ends a transaction
//! is held for the delay before the server gets it.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
};

use super::messages::{ClientMessage, Frontend, Observed, Step};
use super::{invalid, CHUNK_BYTES_MAX, HEADER_BYTES, PEEK_BYTES_MAX};

/// The body length a message's header gives (its int32 counts itself, never
/// the type byte).
pub(super) fn body_bytes(header: &[u8; HEADER_BYTES]) -> io::Result<usize> {
    let length = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    usize::try_from(length)
        .ok()
        .and_then(|length| length.checked_sub(4))
        .ok_or_else(|| invalid("a message of negative length"))
}

/// [`Observed`], written by the server's direction and read by the
/// client's, packed in one atomic (the count above the status byte, which is
/// 0 until startup is over) so a reader never sees half an update.
#[derive(Debug, Default)]
pub(super) struct SharedStatus(AtomicU64);

impl SharedStatus {
    pub(super) fn store(&self, observed: Observed) {
        let status = observed.status.map_or(0, u64::from);
        // Release: stored before the `ReadyForQuery` is forwarded, so the
        // client cannot answer it before the client's direction can see it.
        self.0
            .store(observed.answered << 8 | status, Ordering::Release);
    }

    pub(super) fn load(&self) -> Observed {
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
pub(super) async fn watch_status<R, W>(
    mut from: R,
    mut to: W,
    status: &SharedStatus,
) -> io::Result<()>
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
pub(super) struct ReadyScanner {
    header: [u8; HEADER_BYTES],
    /// Header bytes of the current message seen so far.
    header_len: usize,
    /// Body bytes of the current message still to come.
    body_left: usize,
    pub(super) observed: Observed,
}

impl ReadyScanner {
    /// Reads on through `bytes`; true when a `ReadyForQuery` ended in them.
    pub(super) fn feed(&mut self, mut bytes: &[u8]) -> io::Result<bool> {
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

    pub(super) fn ready(&mut self, status: u8) {
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
pub(super) async fn hold_transaction_ends<R, W>(
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

pub(super) async fn relay_client<R, W>(
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
