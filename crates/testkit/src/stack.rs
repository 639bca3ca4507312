//! A dropline deployment on one machine for the tools: a fresh database,
//! one `dropline gateway` and some `dropline processor` processes, and,
//! when asked, a private nats-server the tool may stop without touching the
//! machine's shared one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use crate::databases::{create_database, database_name};
use crate::nats::PrivateNats;
use crate::ports::free_port;
use crate::processes::{DroplineProcess, Role};
use crate::tokens::BuyerTokens;

/// How long the gateway may take to answer `/readyz`.
const READY_WAIT_MS_MAX: u64 = 10_000;

/// What to start.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Postgres base URL (no database part); the stack's database is created on it.
    pub postgres: String,
    /// NATS to use, unless `private_nats`.
    pub nats_url: String,
    /// Start a private nats-server (that the tool may stop) instead.
    pub private_nats: bool,
    pub processors: usize,
    /// The processors' partition lease.
    pub lease_ms: u64,
    /// The per-SKU consumers' redelivery delay.
    pub ack_wait_ms: u64,
    /// The gateway takes tokens these mint (a secret made for the stack,
    /// unless a tool shares its own with other designs).
    pub buyer_tokens: BuyerTokens,
}

impl StackOptions {
    /// A gateway and `processors` processors on the given services, with a
    /// short lease so that a fault shows within a burst.
    pub fn new(postgres: &str, nats_url: &str, processors: usize) -> Self {
        Self {
            postgres: postgres.to_string(),
            nats_url: nats_url.to_string(),
            private_nats: false,
            processors,
            lease_ms: 1_000,
            ack_wait_ms: 5_000,
            buyer_tokens: BuyerTokens::random(),
        }
    }
}

pub struct Stack {
    /// The gateway's base URL.
    pub url: String,
    pub database_url: String,
    pub nats_url: String,
    pub options: StackOptions,
    pub processors: Vec<DroplineProcess>,
    gateway: DroplineProcess,
    nats: Option<PrivateNats>,
    dir: PathBuf,
}

impl Stack {
    pub async fn start(options: StackOptions) -> anyhow::Result<Self> {
        let id = crate::unique_suffix();
        let dir = std::env::temp_dir().join(format!("dropline-stack-{id}"));
        std::fs::create_dir_all(&dir).context("create the stack's log directory")?;
        let nats = match options.private_nats {
            true => Some(PrivateNats::start().await?),
            false => None,
        };
        let nats_url = nats
            .as_ref()
            .map_or(options.nats_url.clone(), |n| n.url.clone());
        let database_url =
            create_database(&options.postgres, &format!("dropline_load_{id}")).await?;
        let port = free_port()?;
        // The stack logs what an operator needs; RUST_LOG (e.g.
        // `dropline_processor=debug`, which logs every batch) asks for more.
        // `dropline=info` keeps the line naming each processor's ops address.
        let log_filter = std::env::var("RUST_LOG")
            .unwrap_or_else(|_| "warn,dropline=info,dropline_processor=info".to_string());
        let start = |role: Role, name: &str| {
            let env = [
                (
                    "DROPLINE_JWT_SECRET",
                    options.buyer_tokens.secret().to_string(),
                ),
                ("DATABASE_URL", database_url.clone()),
                ("NATS_URL", nats_url.clone()),
                ("DROPLINE_HTTP_ADDR", format!("127.0.0.1:{port}")),
                ("DROPLINE_LEASE_MS", options.lease_ms.to_string()),
                ("DROPLINE_ACK_WAIT_MS", options.ack_wait_ms.to_string()),
                ("DROPLINE_INSTANCE_ID", name.to_string()),
                // A processor's /healthz, /readyz and /metrics: any free
                // port, so the stack's processors never collide (the
                // gateway answers them on its API address and ignores it).
                ("DROPLINE_METRICS_ADDR", "127.0.0.1:0".to_string()),
                ("RUST_LOG", log_filter.clone()),
            ];
            DroplineProcess::start(role, name, &env, &dir.join(format!("{name}.log")))
        };
        let gateway = start(Role::Gateway, "gateway")?;
        let processors = (0..options.processors)
            .map(|i| start(Role::Processor, &format!("processor-{i}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let stack = Self {
            url: format!("http://127.0.0.1:{port}"),
            database_url,
            nats_url,
            options,
            processors,
            gateway,
            nats,
            dir,
        };
        stack.wait_ready().await?;
        eprintln!(
            "stack up: gateway {} + {} processors on NATS {} (logs in {})",
            stack.url,
            stack.processors.len(),
            stack.nats_url,
            stack.dir.display()
        );
        Ok(stack)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(READY_WAIT_MS_MAX);
        while tokio::time::Instant::now() < deadline {
            if let Ok(r) = client.get(format!("{}/readyz", self.url)).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!(
            "the gateway did not become ready; see {}",
            self.dir.display()
        )
    }

    pub fn log_dir(&self) -> &Path {
        &self.dir
    }

    /// The name of the stack's fresh database.
    pub fn database_name(&self) -> &str {
        database_name(&self.database_url)
    }

    /// The processor named `name` (`processor-<i>`), if it is one of the stack's.
    pub fn processor_named(&mut self, name: &str) -> Option<&mut DroplineProcess> {
        self.processors.iter_mut().find(|p| p.name == name)
    }

    /// The process ids of the gateway and every processor.
    pub fn dropline_pids(&self) -> Vec<u32> {
        std::iter::once(&self.gateway)
            .chain(&self.processors)
            .map(DroplineProcess::pid)
            .collect()
    }

    /// The private nats-server's process id, if the stack runs one.
    pub fn nats_pid(&self) -> Option<u32> {
        self.nats.as_ref().and_then(PrivateNats::pid)
    }

    /// Kills the private nats-server (SIGKILL; its store stays).
    pub fn stop_nats(&mut self) -> anyhow::Result<()> {
        self.nats
            .as_mut()
            .context("no private nats-server to stop")?
            .kill();
        Ok(())
    }

    pub async fn start_nats(&mut self) -> anyhow::Result<()> {
        self.nats
            .as_mut()
            .context("no private nats-server to start")?
            .restart()
            .await
    }

    /// Kills the gateway and the processors and waits until they have
    /// exited, so that nothing reconnects to the database afterwards.
    pub fn stop(&mut self) {
        self.gateway.kill();
        for processor in &mut self.processors {
            processor.kill();
        }
    }
}
