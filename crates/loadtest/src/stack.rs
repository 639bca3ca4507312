//! The stack under test when no `--url` is given: a fresh database, one
//! `dropline gateway` and two `dropline processor` processes (so a fault can
//! take one away), and, for `--chaos nats-restart`, a private nats-server the
//! tool may stop without touching the machine's shared one.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::{Connection as _, Executor as _};
use tokio::process::{Child, Command};

pub struct Stack {
    pub url: String,
    pub database_url: String,
    pub nats_url: String,
    pub processors: Vec<(String, Child)>,
    gateway: Child,
    nats: Option<PrivateNats>,
    dir: PathBuf,
}

struct PrivateNats {
    port: u16,
    store: PathBuf,
    child: Child,
}

/// Lease of the tool's processors: short, so a fault shows within the burst.
pub const LEASE_MS: u64 = 1_000;

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `dropline`, next to this tool's own executable.
fn dropline_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .context("executable directory")?
        .join("dropline");
    anyhow::ensure!(
        path.exists(),
        "{} is missing: build it (`cargo build --release -p dropline`)",
        path.display()
    );
    Ok(path)
}

impl Stack {
    pub async fn start(
        postgres: &str,
        nats_url: &str,
        private_nats: bool,
        processors: usize,
    ) -> anyhow::Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let dir = std::env::temp_dir().join(format!("dropline-loadtest-{id}"));
        std::fs::create_dir_all(&dir)?;
        let nats = if private_nats {
            Some(PrivateNats::start(&dir).await?)
        } else {
            None
        };
        let nats_url = nats.as_ref().map_or(nats_url.to_string(), |n| {
            format!("nats://127.0.0.1:{}", n.port)
        });
        let database_url = format!("{postgres}/dropline_load_{id}");
        let binary = dropline_binary()?;
        let status = Command::new(&binary)
            .arg("migrate")
            .env("DATABASE_URL", &database_url)
            .stderr(Stdio::null())
            .status()
            .await?;
        anyhow::ensure!(
            status.success(),
            "dropline migrate failed for {database_url}"
        );

        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        // The stack logs what an operator needs; RUST_LOG (e.g.
        // `dropline_processor=debug`, which logs every batch) asks for more.
        let log_filter = std::env::var("RUST_LOG")
            .unwrap_or_else(|_| "warn,dropline_processor=info".to_string());
        let spawn = |role: &str, name: &str| -> anyhow::Result<Child> {
            let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
            Ok(Command::new(&binary)
                .arg(role)
                .env("DATABASE_URL", &database_url)
                .env("NATS_URL", &nats_url)
                .env("DROPLINE_HTTP_ADDR", format!("127.0.0.1:{port}"))
                .env("DROPLINE_LEASE_MS", LEASE_MS.to_string())
                .env("DROPLINE_ACK_WAIT_MS", "5000")
                .env("DROPLINE_INSTANCE_ID", name)
                .env("RUST_LOG", &log_filter)
                .stdout(Stdio::null())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()?)
        };
        let gateway = spawn("gateway", "gateway")?;
        let mut processor_children = Vec::new();
        for i in 0..processors {
            let name = format!("processor-{i}");
            processor_children.push((name.clone(), spawn("processor", &name)?));
        }
        let stack = Self {
            url,
            database_url,
            nats_url,
            processors: processor_children,
            gateway,
            nats,
            dir,
        };
        stack.wait_ready().await?;
        eprintln!(
            "stack up: gateway {} + {processors} processors on NATS {} (logs in {})",
            stack.url,
            stack.nats_url,
            stack.dir.display()
        );
        Ok(stack)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        for _ in 0..200 {
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

    /// Stops the private nats-server (SIGKILL; its store stays).
    pub async fn stop_nats(&mut self) -> anyhow::Result<()> {
        let nats = self
            .nats
            .as_mut()
            .context("no private nats-server to stop")?;
        nats.child.kill().await?;
        Ok(())
    }

    pub async fn start_nats(&mut self) -> anyhow::Result<()> {
        let nats = self
            .nats
            .as_mut()
            .context("no private nats-server to start")?;
        nats.child = PrivateNats::spawn(nats.port, &nats.store)?;
        Ok(())
    }
}

impl Stack {
    /// The name of the stack's fresh database.
    pub fn database_name(&self) -> &str {
        self.database_url
            .rsplit_once('/')
            .map_or(self.database_url.as_str(), |(_, name)| name)
    }

    /// Kills the gateway and the processors and waits until they have
    /// exited (dropping the stack only starts killing them), so that nothing
    /// reconnects to its database afterwards.
    pub async fn stop(&mut self) {
        let _ = self.gateway.kill().await;
        for (_, child) in &mut self.processors {
            let _ = child.kill().await;
        }
    }
}

/// Drops `name`, one of the fresh databases this tool creates (a stack's, a
/// reference design's, a bench's), on the server at `postgres` (a base URL
/// without database). `WITH (FORCE)` ends any session still connected.
pub async fn drop_database(postgres: &str, name: &str) -> anyhow::Result<()> {
    // The tool makes its names from [a-z0-9_]; anything else is not one of them.
    anyhow::ensure!(
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "{name:?} is not a database this tool created"
    );
    let admin_url = format!("{postgres}/postgres");
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .with_context(|| format!("connect to {admin_url}"))?;
    admin
        .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
        .await
        .with_context(|| format!("drop database {name}"))?;
    admin.close().await?;
    Ok(())
}

impl PrivateNats {
    async fn start(dir: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let store = dir.join("nats");
        let child = Self::spawn(port, &store)?;
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(Self { port, store, child });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("private nats-server did not start")
    }

    fn spawn(port: u16, store: &Path) -> anyhow::Result<Child> {
        Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start nats-server (is it on the PATH?)")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.gateway.start_kill();
        for (_, child) in &mut self.processors {
            let _ = child.start_kill();
        }
        if let Some(nats) = &mut self.nats {
            let _ = nats.child.start_kill();
        }
    }
}
