//! `dropline processor` as a real process, so tests can kill -9, SIGSTOP
//! and SIGCONT it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::binary;

pub struct ProcessorProcess {
    child: Child,
    pub log: PathBuf,
}

pub struct ProcessorSpec<'a> {
    pub database_url: &'a str,
    pub nats_url: &'a str,
    pub lease_ms: u64,
    pub ack_wait_ms: u64,
    pub batch_len_max: u32,
}

impl ProcessorProcess {
    pub fn start(spec: &ProcessorSpec<'_>) -> Self {
        let log = std::env::temp_dir().join(format!(
            "dropline-processor-{}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let file = std::fs::File::create(&log).expect("processor log file");
        let child = Command::new(binary("dropline"))
            .arg("processor")
            .env("DATABASE_URL", spec.database_url)
            .env("NATS_URL", spec.nats_url)
            .env("DROPLINE_LEASE_MS", spec.lease_ms.to_string())
            .env("DROPLINE_ACK_WAIT_MS", spec.ack_wait_ms.to_string())
            .env("DROPLINE_BATCH_LEN_MAX", spec.batch_len_max.to_string())
            .env("RUST_LOG", "info,sqlx=warn,async_nats=warn")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start dropline processor");
        Self { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: &str) {
        send_signal(self.pid(), signal);
    }

    /// SIGKILL: the process dies at once, mid-whatever.
    pub fn kill9(&mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }

    /// SIGSTOP: the process freezes (a zombie-to-be), holding what it held.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT: the frozen process wakes up, believing nothing happened.
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ProcessorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `signal` (as `kill` spells it, e.g. `-STOP`) to process `pid`.
pub(crate) fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}");
}
