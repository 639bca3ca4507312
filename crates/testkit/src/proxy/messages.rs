//! The client's messages as far as the proxy needs to know them: which
//! statements start or end a transaction block, and which message of a
//! connection ends a transaction and is therefore held.

use std::collections::HashMap;

use super::{BLOCK_NAMES_MAX, FAILED_BLOCK, IDLE, IN_BLOCK, STATEMENT_WORDS_MAX};

/// What the server's last `ReadyForQuery` said, as the client's direction
/// sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Observed {
    /// The transaction status; `None` until startup is over.
    pub(super) status: Option<u8>,
    /// `ReadyForQuery` messages after the one that ended startup: one per
    /// `Query`, `Sync` or `FunctionCall` the server has answered.
    pub(super) answered: u64,
}

/// What a statement does to the transaction block, as far as the proxy
/// needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
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
    pub(super) fn after(self, status: u8) -> u8 {
        match self {
            Self::Begin => IN_BLOCK,
            Self::End => IDLE,
            Self::Empty | Self::Other => status,
        }
    }
}

/// Reads what one SQL string does. Anything it does not understand is
/// [`Kind::Other`]: quotes, numbers, operators, a second statement.
pub(super) fn classify(sql: &[u8]) -> Kind {
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
pub(super) enum ClientMessage<'a> {
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
    pub(super) fn parse(kind: u8, peek: &'a [u8]) -> Self {
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
pub(super) enum Step {
    /// Send it now, after what came before it.
    Forward,
    /// It ends a transaction: send what came before it, wait the delay,
    /// then send it.
    Hold,
}

impl Step {
    pub(super) fn hold_if(ends: bool) -> Self {
        if ends {
            Self::Hold
        } else {
            Self::Forward
        }
    }
}

/// Where the client's side of one connection stands.
#[derive(Debug, Default)]
pub(super) struct Frontend {
    /// `Query`, `Sync` and `FunctionCall` messages sent since startup: each
    /// is answered by one `ReadyForQuery`.
    pub(super) requests: u64,
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
    pub(super) fn step(&mut self, message: ClientMessage<'_>, server: Observed) -> Step {
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
            ClientMessage::Query(kind) => self.query(kind, in_block),
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
            ClientMessage::Execute { portal } => self.execute(portal, in_block),
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

    /// A simple query: its own transaction outside a block (held), or the
    /// end of the block it is in (held).
    fn query(&mut self, kind: Kind, in_block: bool) -> Step {
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

    /// An `Execute` runs its portal at once.
    fn execute(&mut self, portal: Option<&[u8]>, in_block: bool) -> Step {
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
