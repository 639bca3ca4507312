//! The real `dropctl` binary run against a test app's services, as an
//! operator would run it, and intents put in a drop's line directly, as a
//! gateway that has not heard of an admission change yet would.

use dropline_bus::{Bus, BusOptions, IntentMessage};
use dropline_core::wire::IntentPayload;
use dropline_core::{IdempotencyKey, Quantity, UserId};

use crate::{binary, TestApp};

/// What a `dropctl` run printed, and how it ended.
#[derive(Debug)]
pub struct CtlRun {
    pub ok: bool,
    /// The exit code (`None`: ended by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CtlRun {
    /// stdout as JSON, failing the test with everything printed otherwise.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

/// Runs `dropctl ARGS` to its end against `app`'s Postgres and NATS, as
/// operator `tester`.
pub async fn dropctl(app: &TestApp, args: &[&str]) -> CtlRun {
    dropctl_at(&app.database_url, &app.nats_url, args).await
}

/// [`dropctl`] against the given services (for a run in a task of its own).
pub async fn dropctl_at(database_url: &str, nats_url: &str, args: &[&str]) -> CtlRun {
    let output = tokio::process::Command::new(binary("dropctl"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("NATS_URL", nats_url)
        .env("DROPLINE_OPERATOR", "tester")
        .kill_on_drop(true)
        .output()
        .await
        .expect("run dropctl");
    CtlRun {
        ok: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Puts purchases `(key, user)` in the app's drop's line as one message,
/// straight to the stream (no gateway's admission check); returns the
/// message's stream sequence.
pub async fn send_directly(app: &TestApp, purchases: &[(&str, &str)]) -> u64 {
    let bus = Bus::connect(&app.nats_url, &BusOptions::default(), true)
        .await
        .expect("connect to NATS");
    let mut message = IntentMessage::default();
    for (key, user) in purchases {
        app.remember_buyer(key, user);
        message.push(&IntentPayload {
            key: IdempotencyKey::parse(*key).expect("key"),
            user_id: UserId::parse(*user).expect("user"),
            quantity: Quantity::ONE,
        });
    }
    bus.send_intents(&app.sku, message)
        .await
        .expect("send")
        .accepted()
        .await
        .expect("PubAck")
}
