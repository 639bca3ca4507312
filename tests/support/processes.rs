//! `dropline processor` as a real process (see `dropline_testkit`), so
//! tests can kill -9, SIGSTOP and SIGCONT it.

use dropline_testkit::{DroplineProcess, Role};

/// What a test's processor runs against, and its timings.
pub struct ProcessorSpec<'a> {
    pub database_url: &'a str,
    pub nats_url: &'a str,
    pub lease_ms: u64,
    pub ack_wait_ms: u64,
    pub batch_len_max: u32,
}

/// Starts `dropline processor` with `spec`, logging to a file of its own.
pub fn start_processor(spec: &ProcessorSpec<'_>) -> DroplineProcess {
    let name = format!("processor-{}", dropline_testkit::unique_suffix());
    let log = std::env::temp_dir().join(format!("dropline-{name}.log"));
    let env = [
        ("DATABASE_URL", spec.database_url.to_string()),
        ("NATS_URL", spec.nats_url.to_string()),
        ("DROPLINE_LEASE_MS", spec.lease_ms.to_string()),
        ("DROPLINE_ACK_WAIT_MS", spec.ack_wait_ms.to_string()),
        ("DROPLINE_BATCH_LEN_MAX", spec.batch_len_max.to_string()),
        ("DROPLINE_INSTANCE_ID", name.clone()),
        // Its /healthz, /readyz and /metrics on any free port (logged), so
        // a test's processors never collide.
        ("DROPLINE_METRICS_ADDR", "127.0.0.1:0".to_string()),
        ("RUST_LOG", "info,sqlx=warn,async_nats=warn".to_string()),
    ];
    DroplineProcess::start(Role::Processor, &name, &env, &log).expect("start dropline processor")
}
