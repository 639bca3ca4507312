//! Reads a system-call trace written by `strace -f -yy -tt` into the calls
//! that returned ([`parse`]); `durability` judges from them whether a
//! nats-server had synced each stored message to disk before it sent that
//! message's PubAck ([`analyse`]): the check behind `tests/durability.rs`.
//!
//! Pure functions over text. Starting a server under strace is the caller's
//! business. Must not guess: a write strace cut short (`-s` too small) is
//! counted in [`Findings::truncated_writes`], never taken for the whole.
//!
//! Order is the order of the trace's lines. strace handles one ptrace stop
//! at a time and the stopped thread waits until its line is written, so a
//! call's exit line comes before the entry of any call it caused, on any
//! thread. A call printed on one line had no other thread's event between
//! its entry and exit (strace would have split it into an
//! `<unfinished ...>` and a `<... resumed>` line), so that line stands for
//! both.

use std::collections::HashMap;

mod durability;

pub use durability::{analyse, Expected, Finding, Findings};

/// One system call that returned, as strace printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syscall {
    /// The thread that made it (the first column of `strace -f`).
    pub thread: u32,
    pub name: String,
    /// What `-yy` printed for the first argument when it is a descriptor:
    /// a file's path, or a socket's endpoints (`TCP:[a:1->b:2]`).
    pub fd_path: Option<String>,
    /// The arguments as printed, the halves of an interrupted line joined.
    pub args: String,
    /// The return value; `None` where strace printed `?`.
    pub ret: Option<i64>,
    /// Entry order: the line on which the call started.
    pub entry: usize,
    /// Exit order: the line on which it returned.
    pub exit: usize,
}

/// The bytes a write-family call handed over and the kernel took.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Written {
    pub bytes: Vec<u8>,
    /// strace printed less than the call carried (`"..."...`).
    pub truncated: bool,
}

const UNFINISHED: &str = "<unfinished ...>";

/// The calls in `trace` that returned, by entry order. Lines that are not
/// calls (signals, exits, strace's own notes) and calls that never returned
/// are left out.
pub fn parse(trace: &str) -> Vec<Syscall> {
    let mut calls = Vec::new();
    // A thread has at most one call in flight: the one strace interrupted.
    let mut pending: HashMap<u32, Syscall> = HashMap::new();
    for (line_index, line) in trace.lines().enumerate() {
        let Some((thread, rest)) = split_prefix(line) else {
            continue;
        };
        if let Some((name, tail)) = resumed(rest) {
            let started = pending.remove(&thread).filter(|call| call.name == name);
            if let Some(mut call) = started {
                call.args.push_str(tail);
                calls.extend(finish(call, line_index));
            }
            continue;
        }
        let Some((name, args)) = started(rest) else {
            continue;
        };
        let call = Syscall {
            thread,
            name: name.to_string(),
            fd_path: fd_path(args),
            args: args.to_string(),
            ret: None,
            entry: line_index,
            exit: line_index,
        };
        match args.strip_suffix(UNFINISHED) {
            Some(head) => {
                let args = head.to_string();
                pending.insert(thread, Syscall { args, ..call });
            }
            None => calls.extend(finish(call, line_index)),
        }
    }
    calls.sort_by_key(|call| call.entry);
    calls
}

/// `PID [HH:MM:SS.micros] rest` → (PID, rest).
fn split_prefix(line: &str) -> Option<(u32, &str)> {
    let (pid, rest) = line.split_once(|c: char| c.is_ascii_whitespace())?;
    let thread = pid.parse().ok()?;
    let rest = rest.trim_start();
    let is_time =
        |token: &str| token.contains(':') && token.bytes().all(|b| b"0123456789:.".contains(&b));
    match rest.split_once(' ') {
        Some((time, after)) if is_time(time) => Some((thread, after)),
        _ => Some((thread, rest)),
    }
}

/// `<... NAME resumed>TAIL` → (NAME, TAIL).
fn resumed(rest: &str) -> Option<(&str, &str)> {
    let rest = rest.strip_prefix("<... ")?;
    let (name, tail) = rest.split_once(" resumed>")?;
    Some((name, tail))
}

/// `NAME(ARGS...` → (NAME, ARGS...).
fn started(rest: &str) -> Option<(&str, &str)> {
    let (name, args) = rest.split_once('(')?;
    let is_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    is_name.then_some((name, args))
}

/// The call with its return value split off its arguments; `None` when the
/// line has no `) = …` (a call strace could not finish printing).
fn finish(mut call: Syscall, exit: usize) -> Option<Syscall> {
    let (args_end, ret) = split_return(&call.args)?;
    call.args.truncate(args_end);
    call.ret = ret;
    call.exit = exit;
    Some(call)
}

/// Where the arguments end (the closing paren) and the return value: the
/// first `)`, spaces, `= ` outside quoted strings (strace pads short lines).
fn split_return(text: &str) -> Option<(usize, Option<i64>)> {
    let bytes = text.as_bytes();
    let mut quoted = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b')' if !quoted => {
                let after = text[i + 1..].trim_start_matches(' ');
                if after.len() < text.len() - i - 1 {
                    if let Some(value) = after.strip_prefix("= ") {
                        return Some((i, return_value(value)));
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// `8</path>`, `-1 EAGAIN (…)`, `51`, `?` → the number, if any.
fn return_value(text: &str) -> Option<i64> {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(text.len());
    text[..end].parse().ok()
}

/// The `-yy` annotation of a leading descriptor: `9<TCP:[a->b]>, …` →
/// `TCP:[a->b]`. The annotation ends at the first `>` before `,`, `)`,
/// a space or the end (a socket's `->` is inside it).
fn fd_path(args: &str) -> Option<String> {
    let digits = args.bytes().take_while(u8::is_ascii_digit).count();
    let inner = args[digits..].strip_prefix('<').filter(|_| digits > 0)?;
    let bytes = inner.as_bytes();
    let end = (0..bytes.len()).find(|&i| {
        bytes[i] == b'>' && matches!(bytes.get(i + 1), None | Some(b',' | b')' | b' '))
    })?;
    Some(inner[..end].to_string())
}

impl Syscall {
    /// What a write-family call wrote: every `iov_base` of a vectored call,
    /// else its first string, cut to the bytes the kernel took (nothing for
    /// a failed call).
    pub fn written(&self) -> Written {
        let strings = quoted_strings(&self.args);
        let vectored = matches!(
            self.name.as_str(),
            "writev" | "pwritev" | "pwritev2" | "sendmsg"
        );
        let mut written = Written::default();
        for (start, body, truncated) in strings {
            if vectored && !self.args[..start].ends_with("iov_base=") {
                continue;
            }
            written.bytes.extend(unescape(body));
            written.truncated |= truncated;
            if !vectored {
                break;
            }
        }
        let taken = self.ret.and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
        written.bytes.truncate(taken);
        written
    }
}

/// Each `"…"` in `args`: where it starts, its body (still escaped), and
/// whether strace cut it short (a `...` right after the closing quote).
fn quoted_strings(args: &str) -> Vec<(usize, &str, bool)> {
    let bytes = args.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        while i < bytes.len() && bytes[i] != b'"' {
            i += if bytes[i] == b'\\' { 2 } else { 1 };
        }
        let end = i.min(bytes.len());
        let truncated = args[end..].starts_with("\"...");
        found.push((start, &args[start + 1..end], truncated));
        i = end + 1;
    }
    found
}

/// Decodes strace's C-style escapes: `\n \r \t \v \f \a \b \" \\ \'`,
/// octal `\0`–`\377` (one to three digits) and hexadecimal `\xNN`.
pub fn unescape(body: &str) -> Vec<u8> {
    let bytes = body.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' || i + 1 == bytes.len() {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let next = bytes[i + 1];
        let simple = match next {
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(0x0b),
            b'f' => Some(0x0c),
            b'a' => Some(0x07),
            b'b' => Some(0x08),
            b'"' | b'\\' | b'\'' => Some(next),
            _ => None,
        };
        if let Some(byte) = simple {
            out.push(byte);
            i += 2;
        } else {
            let (byte, used) = numeric_escape(&bytes[i + 1..]);
            out.push(byte);
            i += 1 + used;
        }
    }
    out
}

/// `xNN` or one to three octal digits (after the backslash) → (byte, how
/// many bytes of `text` it took). Anything else stands for itself.
fn numeric_escape(text: &[u8]) -> (u8, usize) {
    let (radix, skip, width_max) = if text[0] == b'x' {
        (16, 1, 2)
    } else {
        (8, 0, 3)
    };
    let digits = text[skip..]
        .iter()
        .take(width_max)
        .take_while(|b| char::from(**b).is_digit(radix))
        .count();
    if digits == 0 {
        return (text[0], 1);
    }
    let number = std::str::from_utf8(&text[skip..skip + digits]).unwrap_or("0");
    // Octal `\377` is the largest strace prints; wider values wrap as in C.
    let value = u32::from_str_radix(number, radix).unwrap_or(0);
    ((value & 0xff) as u8, skip + digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_on_one_line_is_read_whole() {
        let calls = parse(concat!(
            "17  05:23:38.1 fsync(8</s/msgs/1.blk>) = 0\n",
            "17 05:23:38.2 close(3)                 = 0\n",
            "18 05:23:38.3 read(9<TCP:[a:1->b:2]>, 0x68, 512) = -1 EAGAIN (Resource temporarily unavailable)\n",
            "18 05:23:38.4 openat(AT_FDCWD</w>, \"/s/msgs/1.blk\", O_RDWR) = 8</s/msgs/1.blk>\n",
            "18 05:23:38.5 +++ exited with 0 +++\n",
        ));
        assert_eq!(calls.len(), 4);
        assert_eq!(calls[0].name, "fsync");
        assert_eq!(calls[0].fd_path.as_deref(), Some("/s/msgs/1.blk"));
        assert_eq!(
            (calls[0].ret, calls[0].entry, calls[0].exit),
            (Some(0), 0, 0)
        );
        assert_eq!((calls[1].fd_path.clone(), calls[1].ret), (None, Some(0)));
        assert_eq!(calls[2].fd_path.as_deref(), Some("TCP:[a:1->b:2]"));
        assert_eq!((calls[2].thread, calls[2].ret), (18, Some(-1)));
        assert_eq!((calls[3].fd_path.clone(), calls[3].ret), (None, Some(8)));
    }

    #[test]
    fn an_interrupted_call_is_joined_with_its_resumption() {
        let calls = parse(concat!(
            "17 05:23:38.1 pwrite64(8</s/msgs/1.blk>, \"ab\\n\", 3, 0 <unfinished ...>\n",
            "18 05:23:38.2 read(9<TCP:[a->b]>, \"PUB x 1\\r\\n\", 256) = 9\n",
            "17 05:23:38.3 <... pwrite64 resumed>) = 3\n",
        ));
        assert_eq!(calls.len(), 2);
        let write = &calls[0];
        assert_eq!((write.name.as_str(), write.thread), ("pwrite64", 17));
        assert_eq!((write.entry, write.exit, write.ret), (0, 2, Some(3)));
        assert_eq!(write.args, "8</s/msgs/1.blk>, \"ab\\n\", 3, 0 ");
        assert_eq!(write.written().bytes, b"ab\n");
        assert_eq!((calls[1].entry, calls[1].exit), (1, 1));
    }

    #[test]
    fn strace_escapes_decode_to_the_bytes_written() {
        let decoded = unescape(r#"a\"b\\c\r\n\t\0\1\203\x41\0012"#);
        let expected = b"a\"b\\c\r\n\t\x00\x01\x83A\x012";
        assert_eq!(decoded, expected);
    }

    #[test]
    fn a_return_sign_inside_a_string_is_not_the_return_value() {
        let calls = parse("5 write(1</x>, \"f(x) = 3\\\") = 4\", 14) = 14\n");
        assert_eq!(calls[0].ret, Some(14));
        assert_eq!(calls[0].written().bytes, b"f(x) = 3\") = 4");
    }

    #[test]
    fn a_short_failed_or_truncated_write_says_so() {
        let calls = parse(concat!(
            "5 write(3<TCP:[a->b]>, \"abcdef\", 6) = 4\n",
            "5 write(3<TCP:[a->b]>, \"abc\", 3) = -1 EAGAIN (Resource temporarily unavailable)\n",
            "5 write(3<TCP:[a->b]>, \"abc\"..., 100) = 100\n",
        ));
        assert_eq!(calls[0].written().bytes, b"abcd");
        assert_eq!(calls[1].written(), Written::default());
        assert!(calls[2].written().truncated);
    }
}
