//! How `dropctl drain` shows its progress: a bar on a terminal (indicatif,
//! drawn on stderr), else a plain line on stderr at most once a second, so
//! a log or a pipe gets a readable record instead of redraw codes. The
//! figures come from the drain; this module only formats and draws them.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Least time between two plain progress lines.
const LINE_INTERVAL: Duration = Duration::from_secs(1);

/// One look at a draining line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Intents decided so far.
    pub decided: u64,
    /// Intents waiting (`None`: unknown, no live owner has said).
    pub waiting: Option<u64>,
    pub decisions_per_s: f64,
    /// Why nothing moves, once nothing has for a while.
    pub stalled: Option<String>,
    /// Something the operator should know (e.g. NATS unreachable).
    pub note: Option<String>,
}

impl Snapshot {
    /// Time left at the current pace, if it can be told.
    pub fn eta(&self) -> Option<Duration> {
        let waiting = self.waiting?;
        (self.decisions_per_s > 0.0)
            .then(|| Duration::from_secs_f64(waiting as f64 / self.decisions_per_s))
    }

    /// Everything but the decided count, in words.
    pub fn describe(&self) -> String {
        let waiting = self
            .waiting
            .map_or("? waiting".to_string(), |n| format!("{n} waiting"));
        let eta = match (self.waiting, self.eta()) {
            (Some(0), _) => "ETA -".to_string(),
            (_, Some(eta)) => format!("ETA {}s", eta.as_secs()),
            (_, None) => "ETA ?".to_string(),
        };
        let mut text = format!("{waiting} · {:.0}/s · {eta}", self.decisions_per_s);
        for extra in [&self.stalled, &self.note].into_iter().flatten() {
            text.push_str(" · ");
            text.push_str(extra);
        }
        text
    }
}

/// Where progress goes.
pub enum Progress {
    Bar(ProgressBar),
    Lines { sku: String, last: Option<Instant> },
}

impl Progress {
    /// A bar when stdout is a terminal, plain lines otherwise.
    pub fn new(sku: &str) -> Self {
        if !std::io::stdout().is_terminal() {
            return Progress::Lines {
                sku: sku.to_string(),
                last: None,
            };
        }
        let bar = ProgressBar::new(0).with_prefix(sku.to_string());
        match ProgressStyle::with_template("{prefix} [{bar:32}] {pos} decided · {msg}") {
            Ok(style) => bar.set_style(style.progress_chars("=> ")),
            // The template is a constant: a bad one only loses the layout.
            Err(err) => eprintln!("warning: progress bar style: {err}"),
        }
        Progress::Bar(bar)
    }

    pub fn show(&mut self, snapshot: &Snapshot) {
        match self {
            Progress::Bar(bar) => {
                // An unknown length draws an empty bar, not a full one.
                match snapshot.waiting {
                    Some(waiting) => bar.set_length(snapshot.decided + waiting),
                    None => bar.unset_length(),
                }
                bar.set_position(snapshot.decided);
                bar.set_message(snapshot.describe());
            }
            Progress::Lines { sku, last } => {
                if last.is_some_and(|at| at.elapsed() < LINE_INTERVAL) {
                    return;
                }
                *last = Some(Instant::now());
                eprintln!(
                    "{sku}: {} decided · {}",
                    snapshot.decided,
                    snapshot.describe()
                );
            }
        }
    }

    /// Ends the display with `message`.
    pub fn finish(&self, message: &str) {
        match self {
            Progress::Bar(bar) => {
                bar.finish_with_message(message.to_string());
                // The bar stays, with the cursor at its end: what follows
                // starts on a line of its own.
                eprintln!();
            }
            Progress::Lines { sku, .. } => eprintln!("{sku}: {message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_tells_waiting_pace_eta_and_why_it_stalls() {
        let moving = Snapshot {
            decided: 100,
            waiting: Some(500),
            decisions_per_s: 250.0,
            ..Snapshot::default()
        };
        assert_eq!(moving.describe(), "500 waiting · 250/s · ETA 2s");
        let unknown = Snapshot {
            stalled: Some("stalled 5 s: no processor owns the line".into()),
            ..Snapshot::default()
        };
        assert_eq!(
            unknown.describe(),
            "? waiting · 0/s · ETA ? · stalled 5 s: no processor owns the line"
        );
        let done = Snapshot {
            waiting: Some(0),
            ..Snapshot::default()
        };
        assert_eq!(done.describe(), "0 waiting · 0/s · ETA -");
    }
}
