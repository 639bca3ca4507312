//! dropline's own processes, started as real processes so that they can be
//! killed, frozen and thawed the way a machine does it to them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

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
}

impl Drop for DroplineProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
