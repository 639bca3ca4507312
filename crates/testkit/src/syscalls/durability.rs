//! The judgement on a parsed trace: for each message a client published
//! and had acknowledged, whether the server's block-file write of it was
//! followed by a completed fsync of that file before the PubAck's first
//! byte left ([`analyse`]). Reads [`Syscall`]s only; knows nats-server's
//! layout (`…/msgs/N.blk`) and PubAck JSON, nothing of how the trace was
//! made.

use std::collections::HashMap;

use super::Syscall;

/// What a trace is judged against: messages `1..=count` of `stream`, each
/// payload carrying `marker` followed by its sequence number zero-padded to
/// `seq_digits` digits (`MARK-000042`: marker `MARK-`, 6 digits, seq 42).
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub stream: &'a str,
    pub marker: &'a str,
    /// A fixed width: in a block write the marker is followed by the
    /// record's checksum, whose first byte may be a digit too.
    pub seq_digits: usize,
    pub count: u64,
}

/// What the trace shows for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    pub seq: u64,
    /// Its PubAck went out on a client connection.
    pub acked: bool,
    /// A write to a stream block file (`…/msgs/N.blk`) carried its marker.
    pub block_written: bool,
    /// That write returned before the call that sent the ack's first byte
    /// began.
    pub written_before_ack: bool,
    /// An fsync or fdatasync of that same block file began after the write
    /// returned, returned 0, and returned before the ack's call began.
    pub synced_before_ack: bool,
}

impl Finding {
    /// Why the message is not shown durable before its ack, if it is not.
    pub fn gap(&self) -> Option<&'static str> {
        if !self.acked {
            Some("no PubAck in the trace")
        } else if !self.block_written {
            Some("no block-file write carries its marker")
        } else if !self.written_before_ack {
            Some("the PubAck began before the block write returned")
        } else if !self.synced_before_ack {
            Some("no completed fsync of its block file between the write and the PubAck")
        } else {
            None
        }
    }
}

/// The verdict on a whole trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Findings {
    /// One per expected message, by sequence.
    pub messages: Vec<Finding>,
    /// fsync/fdatasync calls on block files, anywhere in the trace.
    pub block_syncs: usize,
    /// Block and socket writes strace printed only in part.
    pub truncated_writes: usize,
}

impl Findings {
    fn count(&self, what: impl Fn(&Finding) -> bool) -> u64 {
        self.messages.iter().filter(|f| what(f)).count() as u64
    }

    pub fn acks(&self) -> u64 {
        self.count(|f| f.acked)
    }

    pub fn block_writes(&self) -> u64 {
        self.count(|f| f.block_written)
    }

    pub fn written_before_ack(&self) -> u64 {
        self.count(|f| f.written_before_ack)
    }

    pub fn synced(&self) -> u64 {
        self.count(|f| f.synced_before_ack)
    }

    /// The counts, then the first few messages not shown durable and why.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{} messages: {} PubAcks seen, {} block writes found, {} written before their \
             PubAck, {} PubAcks preceded by a completed fsync of their block \
             ({} fsync/fdatasync of block files in all, {} writes truncated by strace)",
            self.messages.len(),
            self.acks(),
            self.block_writes(),
            self.written_before_ack(),
            self.synced(),
            self.block_syncs,
            self.truncated_writes,
        );
        let gaps: Vec<String> = self
            .messages
            .iter()
            .filter_map(|f| f.gap().map(|why| format!("\n  seq {}: {why}", f.seq)))
            .collect();
        for line in gaps.iter().take(5) {
            text.push_str(line);
        }
        if gaps.len() > 5 {
            text.push_str(&format!("\n  … and {} more", gaps.len() - 5));
        }
        text
    }
}

const FILE_WRITES: [&str; 5] = ["write", "pwrite64", "pwritev", "pwritev2", "writev"];
const SOCKET_WRITES: [&str; 4] = ["write", "writev", "sendto", "sendmsg"];
/// Only these make written data durable; `sync_file_range` does not flush
/// the drive's cache or the file's metadata, so it does not count.
const SYNCS: [&str; 2] = ["fsync", "fdatasync"];

fn is_block_file(call: &Syscall) -> bool {
    call.fd_path.as_deref().is_some_and(|p| p.ends_with(".blk"))
}

fn is_socket(call: &Syscall) -> bool {
    call.fd_path.as_deref().is_some_and(|p| {
        ["TCP", "UDP", "UNIX", "socket:"]
            .iter()
            .any(|s| p.starts_with(s))
    })
}

/// Judges, for each expected message, whether its block write was synced
/// before its PubAck left (see [`Finding`]).
pub fn analyse(calls: &[Syscall], expected: &Expected<'_>) -> Findings {
    let mut truncated_writes = 0;
    let writes = block_writes(calls, expected, &mut truncated_writes);
    let acks = ack_calls(calls, expected.stream, &mut truncated_writes);
    let syncs: Vec<&Syscall> = calls
        .iter()
        .filter(|c| SYNCS.contains(&c.name.as_str()) && is_block_file(c))
        .collect();
    let messages = (1..=expected.count)
        .map(|seq| {
            judge(
                seq,
                acks.get(&seq).copied(),
                writes.get(&seq).copied(),
                &syncs,
            )
        })
        .collect();
    Findings {
        messages,
        block_syncs: syncs.len(),
        truncated_writes,
    }
}

fn judge(seq: u64, ack: Option<&Syscall>, write: Option<&Syscall>, syncs: &[&Syscall]) -> Finding {
    let mut finding = Finding {
        seq,
        acked: ack.is_some(),
        block_written: write.is_some(),
        written_before_ack: false,
        synced_before_ack: false,
    };
    let (Some(ack), Some(write)) = (ack, write) else {
        return finding;
    };
    finding.written_before_ack = write.exit < ack.entry;
    finding.synced_before_ack = finding.written_before_ack
        && syncs.iter().any(|sync| {
            sync.fd_path == write.fd_path
                && sync.ret == Some(0)
                && sync.entry > write.exit
                && sync.exit < ack.entry
        });
    finding
}

/// The first block-file write carrying each message's marker, by sequence.
fn block_writes<'a>(
    calls: &'a [Syscall],
    expected: &Expected<'_>,
    truncated: &mut usize,
) -> HashMap<u64, &'a Syscall> {
    let marker = expected.marker.as_bytes();
    let mut found = HashMap::new();
    for call in calls {
        if !(FILE_WRITES.contains(&call.name.as_str()) && is_block_file(call)) {
            continue;
        }
        let written = call.written();
        *truncated += usize::from(written.truncated);
        for at in find_all(&written.bytes, marker) {
            let after = &written.bytes[at + marker.len()..];
            if let Some(seq) = fixed_width_number(after, expected.seq_digits) {
                found.entry(seq).or_insert(call);
            }
        }
    }
    found
}

/// Everything the server sent on one connection, in order, and which call
/// sent each part.
#[derive(Default)]
struct Outbound<'a> {
    bytes: Vec<u8>,
    starts: Vec<usize>,
    calls: Vec<&'a Syscall>,
}

/// For each PubAck of `stream`, the call that sent its first byte: an ack
/// split over two writes leaves with the first, two acks in one write
/// leave together.
fn ack_calls<'a>(
    calls: &'a [Syscall],
    stream: &str,
    truncated: &mut usize,
) -> HashMap<u64, &'a Syscall> {
    let mut connections: HashMap<&str, Outbound<'a>> = HashMap::new();
    for call in calls {
        if !(SOCKET_WRITES.contains(&call.name.as_str()) && is_socket(call)) {
            continue;
        }
        let written = call.written();
        *truncated += usize::from(written.truncated);
        let (Some(path), false) = (call.fd_path.as_deref(), written.bytes.is_empty()) else {
            continue;
        };
        let out = connections.entry(path).or_default();
        out.starts.push(out.bytes.len());
        out.calls.push(call);
        out.bytes.extend(written.bytes);
    }
    let mut found = HashMap::new();
    for out in connections.values() {
        for at in find_all(&out.bytes, b"{\"stream\"") {
            if let Some(seq) = ack_seq(&out.bytes[at..], stream) {
                let part = out.starts.partition_point(|&start| start <= at) - 1;
                found.entry(seq).or_insert(out.calls[part]);
            }
        }
    }
    found
}

/// `{"stream":"S","seq":N` → N, with any whitespace between the tokens
/// (nats-server 2.9 writes `"S", "seq"`).
fn ack_seq(bytes: &[u8], stream: &str) -> Option<u64> {
    let quoted = format!("\"{stream}\"");
    let tokens = [
        b"{".as_slice(),
        b"\"stream\"",
        b":",
        quoted.as_bytes(),
        b",",
        b"\"seq\"",
        b":",
    ];
    let mut rest = bytes;
    for token in tokens {
        rest = rest.trim_ascii_start().strip_prefix(token)?;
    }
    leading_number(rest.trim_ascii_start())
}

/// The first `width` bytes as a decimal number, if they are all digits.
fn fixed_width_number(bytes: &[u8], width: usize) -> Option<u64> {
    let digits = bytes.get(..width)?;
    if width == 0 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn leading_number(bytes: &[u8]) -> Option<u64> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&bytes[..digits]).ok()?.parse().ok()
}

fn find_all<'h>(haystack: &'h [u8], needle: &'h [u8]) -> impl Iterator<Item = usize> + 'h {
    // An empty needle finds nothing (a window never equals it).
    haystack
        .windows(needle.len().max(1))
        .enumerate()
        .filter(move |(_, window)| *window == needle)
        .map(|(at, _)| at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscalls::{parse, unescape};

    const BLOCK: &str = "8</s/jetstream/$G/streams/S/msgs/1.blk>";
    const OTHER_BLOCK: &str = "7</s/jetstream/$G/streams/S/msgs/2.blk>";
    const CLIENT: &str = "9<TCP:[127.0.0.1:4222->127.0.0.1:50000]>";
    const EXPECT_TWO: Expected<'static> = Expected {
        stream: "S",
        marker: "MARK-",
        seq_digits: 6,
        count: 2,
    };

    /// `thread call` lines with a timestamp, as `strace -f -tt` writes them.
    fn trace(lines: &[String]) -> String {
        lines
            .iter()
            .map(|line| {
                let (thread, call) = line.split_once(' ').expect("thread, call");
                format!("{thread} 05:23:38.116938 {call}\n")
            })
            .collect()
    }

    /// A vectored write of `parts` (strace-escaped) that wrote them all.
    fn writev(thread: u32, fd: &str, parts: &[&str]) -> String {
        let len: usize = parts.iter().map(|p| unescape(p).len()).sum();
        let iovs: Vec<String> = parts
            .iter()
            .map(|p| format!(r#"{{iov_base="{p}", iov_len={}}}"#, unescape(p).len()))
            .collect();
        let count = parts.len();
        format!(
            "{thread} writev({fd}, [{}], {count}) = {len}",
            iovs.join(", ")
        )
    }

    fn block_write(thread: u32, fd: &str, seq: u64) -> String {
        let data = format!(r"3\0\0\0\1\0prove.syncMARK-{seq:06}\254i.l");
        let len = unescape(&data).len();
        format!(r#"{thread} pwrite64({fd}, "{data}", {len}, 0) = {len}"#)
    }

    fn fsync(thread: u32, fd: &str) -> String {
        format!("{thread} fsync({fd}) = 0")
    }

    fn ack(seq: u64) -> String {
        format!(r#"MSG _INBOX.a 1 22\r\n{{\"stream\":\"S\",\"seq\":{seq}}}\r\n"#)
    }

    fn judged(lines: &[String]) -> Findings {
        analyse(&parse(&trace(lines)), &EXPECT_TWO)
    }

    #[test]
    fn an_ack_after_a_completed_fsync_of_its_block_is_synced() {
        let found = judged(&[
            block_write(1, BLOCK, 1),
            fsync(1, BLOCK),
            writev(1, CLIENT, &[&ack(1)]),
        ]);
        assert_eq!(
            (found.acks(), found.block_writes(), found.synced()),
            (1, 1, 1)
        );
        assert_eq!(found.messages[0].gap(), None);
        assert_eq!(found.messages[1].gap(), Some("no PubAck in the trace"));
    }

    #[test]
    fn an_ack_before_the_fsync_is_not_synced() {
        let found = judged(&[
            block_write(1, BLOCK, 1),
            writev(1, CLIENT, &[&ack(1)]),
            fsync(1, BLOCK),
        ]);
        assert_eq!(
            (found.acks(), found.written_before_ack(), found.synced()),
            (1, 1, 0)
        );
        assert_eq!(found.block_syncs, 1);
        assert!(found.summary().contains("seq 1: no completed fsync"));
    }

    #[test]
    fn a_failed_or_foreign_fsync_does_not_count() {
        let found = judged(&[
            block_write(1, BLOCK, 1),
            format!("1 fsync({BLOCK}) = -1 EIO (Input/output error)"),
            fsync(1, OTHER_BLOCK),
            format!("1 fdatasync({BLOCK}) = ?"),
            writev(1, CLIENT, &[&ack(1)]),
        ]);
        assert_eq!((found.written_before_ack(), found.synced()), (1, 0));
    }

    #[test]
    fn an_fsync_still_running_when_the_ack_starts_does_not_count() {
        let ack = writev(2, CLIENT, &[&ack(1)]);
        let found = judged(&[
            block_write(1, BLOCK, 1),
            format!("1 fsync({BLOCK} <unfinished ...>"),
            ack,
            "1 <... fsync resumed>) = 0".to_string(),
        ]);
        assert_eq!((found.block_syncs, found.synced()), (1, 0));
    }

    #[test]
    fn an_ack_split_over_two_writes_leaves_with_its_first_byte() {
        let head = r#"MSG _INBOX.a 1 22\r\n{\"stream\":\"S\","#;
        let tail = r#"\"seq\":1}\r\n"#;
        let synced_between = judged(&[
            block_write(1, BLOCK, 1),
            writev(1, CLIENT, &[head]),
            fsync(1, BLOCK),
            writev(1, CLIENT, &[tail]),
        ]);
        assert_eq!((synced_between.acks(), synced_between.synced()), (1, 0));
        let synced_first = judged(&[
            block_write(1, BLOCK, 1),
            fsync(1, BLOCK),
            writev(1, CLIENT, &[head]),
            writev(1, CLIENT, &[tail]),
        ]);
        assert_eq!((synced_first.acks(), synced_first.synced()), (1, 1));
    }

    #[test]
    fn two_acks_in_one_write_are_judged_each() {
        let found = judged(&[
            block_write(1, BLOCK, 1),
            fsync(1, BLOCK),
            block_write(1, BLOCK, 2),
            writev(1, CLIENT, &[&ack(1), &ack(2)]),
        ]);
        assert_eq!(
            (found.acks(), found.block_writes(), found.synced()),
            (2, 2, 1)
        );
        assert!(found.messages[0].synced_before_ack);
        assert!(!found.messages[1].synced_before_ack);
    }

    #[test]
    fn a_digit_after_the_marked_number_is_not_part_of_it() {
        let write = format!(r#"1 pwrite64({BLOCK}, "proof.MARK-0000016\3Qe", 21, 0) = 21"#);
        let found = judged(&[write, fsync(1, BLOCK), writev(1, CLIENT, &[&ack(1)])]);
        assert_eq!((found.block_writes(), found.synced()), (1, 1));
    }

    #[test]
    fn a_nats_2_9_ack_is_read_and_another_streams_is_not() {
        let spaced = r#"MSG _INBOX.a 1  23\r\n{\"stream\":\"S\", \"seq\":1}\r\n"#;
        let other = r#"MSG _INBOX.b 1 23\r\n{\"stream\":\"ST\",\"seq\":2}\r\n"#;
        let found = judged(&[
            block_write(1, BLOCK, 1),
            fsync(1, BLOCK),
            writev(1, CLIENT, &[spaced, other]),
        ]);
        assert_eq!((found.acks(), found.synced()), (1, 1));
        assert!(!found.messages[1].acked);
    }
}
