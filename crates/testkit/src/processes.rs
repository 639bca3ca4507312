//! dropline's own processes, started as real processes so that they can be
//! killed, frozen and thawed the way a machine does it to them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use crate::binaries::binary;

/// A signal, as `kill` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The process dies at once, mid-whatever.
    Kill,
    /// The process freezes, holding what it held: a zombie-to-be.
    Stop,
    /// A frozen process wakes up, believing nothing happened.
    Cont,
    /// A graceful stop.
    Term,
}

impl Signal {
    fn flag(self) -> &'static str {
        match self {
            Self::Kill => "-KILL",
            Self::Stop => "-STOP",
            Self::Cont => "-CONT",
            Self::Term => "-TERM",
        }
    }
}

/// Sends `signal` to process `pid` (through `kill(1)`: the workspace
/// forbids `unsafe`, which a direct `kill(2)` would need).
pub fn send_signal(pid: u32, signal: Signal) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args([signal.flag(), &pid.to_string()])
        .status()
        .context("run kill")?;
    anyhow::ensure!(status.success(), "kill {} {pid} failed", signal.flag());
    Ok(())
}

/// Which `dropline` subcommand a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Serve,
    Gateway,
    Processor,
}

impl Role {
    fn subcommand(self) -> &'static str {
        match self {
            Self::Serve => "serve",
            Self::Gateway => "gateway",
            Self::Processor => "processor",
        }
    }
}

/// A running `dropline <role>`; killed when dropped.
pub struct DroplineProcess {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl DroplineProcess {
    /// Starts `dropline <role>` (the binary beside the running executable)
    /// with `env` on top of this process's environment, its stderr (the log)
    /// into `log`.
    pub fn start(
        role: Role,
        name: &str,
        env: &[(&str, String)],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let file = std::fs::File::create(log)
            .with_context(|| format!("create the log {}", log.display()))?;
        let child = Command::new(binary("dropline")?)
            .arg(role.subcommand())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .with_context(|| format!("start dropline {}", role.subcommand()))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        send_signal(self.pid(), signal)
    }

    /// SIGKILL, then reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// What it has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The address it logged as `field` (`addr` for the gateway's API,
    /// `metrics_addr` for a processor's ops listener, both bound to port 0
    /// in tests), waiting up to `wait` for the line.
    pub async fn logged_addr(&self, field: &str, wait: Duration) -> anyhow::Result<SocketAddr> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(addr) = logged_addr(&self.log_text(), field) {
                return Ok(addr);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{} logged no {field}= within {wait:?}; its log ({}):\n{}",
                self.name,
                self.log.display(),
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The first `field=<address>` of a text log, its colours taken out.
fn logged_addr(log: &str, field: &str) -> Option<SocketAddr> {
    let plain = without_ansi_escapes(log);
    let prefix = format!("{field}=");
    plain
        .split_whitespace()
        .filter_map(|word| word.strip_prefix(&prefix))
        .find_map(|value| value.parse().ok())
}

/// tracing's text format colours field names (`ESC[3m`...`ESC[0m`) even
/// into a file.
fn without_ansi_escapes(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // A CSI sequence ends with its first letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

impl Drop for DroplineProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::logged_addr;

    #[test]
    fn a_logged_address_is_found_by_its_field_with_or_without_colours() {
        let coloured = "INFO dropline: serving \u{1b}[3mmetrics_addr\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:4321\n";
        assert_eq!(
            logged_addr(coloured, "metrics_addr"),
            Some("127.0.0.1:4321".parse().unwrap())
        );
        let plain = "INFO gateway listening addr=127.0.0.1:80\nINFO x metrics_addr=127.0.0.1:81\n";
        assert_eq!(
            logged_addr(plain, "addr"),
            Some("127.0.0.1:80".parse().unwrap())
        );
        assert_eq!(logged_addr(plain, "nothing"), None);
    }
}
