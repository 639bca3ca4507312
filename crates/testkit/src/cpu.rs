//! CPU used by processes, read from `/proc/<pid>/stat`: what the idle bench
//! and the load test report for each part of a stack.

use anyhow::Context as _;

/// User and system CPU of `pids` so far, in clock ticks (a process gone
/// counts nothing).
pub fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&pid| process_ticks(pid)).sum()
}

fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it do not.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are the stat file's fields 14 and 15 (1-based), the
    // 12th and 13th after the name.
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

/// Clock ticks per second, the unit of [`cpu_ticks`].
pub fn clock_ticks_per_s() -> anyhow::Result<f64> {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("run getconf CLK_TCK")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("getconf CLK_TCK said {text:?}"))
}

/// Every running process whose program is named `name` (its `comm`).
pub fn pids_named(name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .collect()
}

/// The CPU of named parts (each a set of processes) between a start and
/// a reading.
pub struct CpuWatch {
    parts: Vec<(&'static str, Vec<u32>)>,
    started: Vec<u64>,
}

impl CpuWatch {
    pub fn start(parts: Vec<(&'static str, Vec<u32>)>) -> Self {
        let started = parts.iter().map(|(_, pids)| cpu_ticks(pids)).collect();
        Self { parts, started }
    }

    /// Seconds of CPU each part used since the start, in the start's order.
    pub fn seconds(&self) -> anyhow::Result<Vec<(&'static str, f64)>> {
        let tick_s = 1.0 / clock_ticks_per_s()?;
        Ok(self
            .parts
            .iter()
            .zip(&self.started)
            .map(|((name, pids), started)| {
                let used = cpu_ticks(pids).saturating_sub(*started);
                (*name, used as f64 * tick_s)
            })
            .collect())
    }
}
