//! Private `nats-server`s, for tests and tools that must change a server's
//! settings, stop it, freeze it or lose a node of a cluster without touching
//! the machine's shared one. Which binary runs is decided here and only
//! here ([`server_binary`]).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use crate::ports::free_port;
use crate::processes::{send_signal, Signal};

/// How long a started server may take to accept connections.
const START_WAIT_MS_MAX: u64 = 5_000;
/// How long a cluster may take to place a replicated stream.
const CLUSTER_READY_MS_MAX: u64 = 60_000;

/// The `nats-server` binary private servers run: `DROPLINE_NATS_SERVER`
/// when set, else the one on the PATH.
pub fn server_binary() -> PathBuf {
    std::env::var_os("DROPLINE_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

/// One `nats-server -js` on a free port with its own store directory,
/// removed when dropped.
pub struct PrivateNats {
    pub url: String,
    pub port: u16,
    store_dir: PathBuf,
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl PrivateNats {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(Vec::new()).await
    }

    /// A server with `extra_args` after the standard ones.
    pub async fn start_with(extra_args: Vec<String>) -> anyhow::Result<Self> {
        let port = free_port()?;
        let store_dir =
            std::env::temp_dir().join(format!("dropline-nats-{}", crate::unique_suffix()));
        let mut nats = Self {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            store_dir,
            extra_args,
            child: None,
        };
        nats.spawn().await?;
        Ok(nats)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let binary = server_binary();
        let child = Command::new(&binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store_dir)
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(START_WAIT_MS_MAX);
        while tokio::time::Instant::now() < deadline {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!(
            "private nats-server did not start on port {} within {START_WAIT_MS_MAX} ms",
            self.port
        )
    }

    /// Kills the server (SIGKILL), keeping its store.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the server keeps its connections open and answers nothing.
    pub fn freeze(&self) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("the server is not running")?;
        send_signal(child.id(), Signal::Stop)
    }

    /// Starts it again on the same port and store.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn().await
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store_dir);
    }
}

/// A 3-node JetStream cluster on loopback.
pub struct PrivateCluster {
    pub nodes: Vec<PrivateNats>,
}

impl PrivateCluster {
    pub async fn start() -> anyhow::Result<Self> {
        let cluster_ports = (0..3)
            .map(|_| free_port())
            .collect::<anyhow::Result<Vec<_>>>()?;
        let routes = cluster_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let name = format!("dropline-test-{}", &crate::unique_suffix()[..8]);
        let mut nodes = Vec::new();
        for (i, port) in cluster_ports.iter().enumerate() {
            let args = vec![
                "--server_name".into(),
                format!("{name}-n{i}"),
                "--cluster_name".into(),
                name.clone(),
                "--cluster".into(),
                format!("nats://127.0.0.1:{port}"),
                "--routes".into(),
                routes.clone(),
            ];
            nodes.push(PrivateNats::start_with(args).await?);
        }
        let cluster = Self { nodes };
        cluster.wait_for_jetstream().await?;
        Ok(cluster)
    }

    /// Every node's URL, comma-separated, as clients take it.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.url.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until the cluster can place a 3-replica stream.
    async fn wait_for_jetstream(&self) -> anyhow::Result<()> {
        let servers: Vec<String> = self.nodes.iter().map(|n| n.url.clone()).collect();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(CLUSTER_READY_MS_MAX);
        while tokio::time::Instant::now() < deadline {
            if let Ok(client) = async_nats::connect(servers.clone()).await {
                let js = async_nats::jetstream::new(client);
                let probe = async_nats::jetstream::stream::Config {
                    name: "CLUSTER_READY".into(),
                    subjects: vec!["cluster.ready".into()],
                    num_replicas: 3,
                    ..Default::default()
                };
                if js.get_or_create_stream(probe).await.is_ok() {
                    let _ = js.delete_stream("CLUSTER_READY").await;
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        anyhow::bail!("the 3-node cluster never became ready for replicated streams")
    }
}
