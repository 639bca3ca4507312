//! Private `nats-server`s, for tests and tools that must change a server's
//! settings, stop it, freeze it or lose a node of a cluster without touching
//! the machine's shared one. Which binary runs, and with which durability
//! configuration, is decided here and only here ([`server_binary`],
//! [`ServerVersion::can_sync_always`]); which version a test leg talks to is
//! checked here too ([`check_expected_version`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use dropline_bus::ServerVersion;

use crate::ports::free_port;
use crate::processes::{send_signal, Signal};

/// How long a started server may take to accept connections.
const START_WAIT_MS_MAX: u64 = 5_000;
/// How long a cluster may take to place a replicated stream.
const CLUSTER_READY_MS_MAX: u64 = 60_000;

/// The nats-server version the project's scripts install and its tests run.
const PINNED_VERSION: &str = include_str!("../../../deploy/local/nats-server.version");

/// The durability setting of every private server that supports it: fsync
/// before each PubAck. The same file the local scripts use.
const SYNC_ALWAYS_CONFIG: &str = include_str!("../../../deploy/local/nats-sync-always.conf");

/// The version the project pins (`deploy/local/nats-server.version`).
pub fn pinned_version() -> &'static str {
    PINNED_VERSION.trim()
}

/// The sync-always configuration private servers start with
/// (`deploy/local/nats-sync-always.conf`), for tests that start a server
/// their own way and must prove what this very text does.
pub fn sync_always_config() -> &'static str {
    SYNC_ALWAYS_CONFIG
}

/// The `nats-server` binary private servers run: `DROPLINE_NATS_SERVER`,
/// else the pinned one in the project's cache (where
/// `deploy/local/install-nats-server.sh` puts it). Never whatever comes
/// first on the PATH: a test must know which server it tests.
pub fn server_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("DROPLINE_NATS_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let cached = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.cache/nats-server")
        .join(pinned_version())
        .join("nats-server");
    anyhow::ensure!(
        cached.is_file(),
        "no nats-server: set DROPLINE_NATS_SERVER, or run deploy/local/install-nats-server.sh \
         (`just test` does both)"
    );
    Ok(cached)
}

/// The version of `binary`, from its `--version`.
pub fn binary_version(binary: &Path) -> anyhow::Result<ServerVersion> {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| format!("run {} --version", binary.display()))?;
    Ok(ServerVersion::parse(&String::from_utf8_lossy(&out.stdout))?)
}

/// True when `expected` (`2.9`, `2.15.1`) names `version`.
pub fn version_matches(version: ServerVersion, expected: &str) -> bool {
    let mut wanted = expected.trim().trim_start_matches('v').split('.');
    [version.major, version.minor, version.patch]
        .into_iter()
        .zip(&mut wanted)
        .all(|(have, want)| want.parse() == Ok(have))
        && wanted.next().is_none()
}

/// Fails unless the server at `url` (its INFO, as a client sees it) is the
/// version `DROPLINE_NATS_VERSION` names, when that is set: each test leg
/// sets it, so a leg can never pass against the wrong server.
pub async fn check_expected_version(url: &str) -> anyhow::Result<()> {
    let Ok(expected) = std::env::var("DROPLINE_NATS_VERSION") else {
        return Ok(());
    };
    let servers: Vec<&str> = url.split(',').map(str::trim).collect();
    let client = async_nats::connect(servers)
        .await
        .with_context(|| format!("connect to {url} to read its version"))?;
    let reported = client.server_info().version;
    let version = ServerVersion::parse(&reported)?;
    anyhow::ensure!(
        version_matches(version, &expected),
        "the NATS at {url} is nats-server {version}, but this test leg is for {expected} \
         (DROPLINE_NATS_VERSION)"
    );
    Ok(())
}

/// One `nats-server -js` on a free port with its own store directory,
/// removed when dropped.
pub struct PrivateNats {
    pub url: String,
    pub port: u16,
    store_dir: PathBuf,
    extra_args: Vec<String>,
    /// Written to its configuration file, after the durability setting.
    config: String,
    child: Option<Child>,
}

impl PrivateNats {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(Vec::new()).await
    }

    /// A server with `extra_args` after the standard ones.
    pub async fn start_with(extra_args: Vec<String>) -> anyhow::Result<Self> {
        Self::start_configured(extra_args, String::new()).await
    }

    /// A server whose configuration file also holds `config` (e.g. an
    /// `authorization` block).
    pub async fn start_with_config(config: String) -> anyhow::Result<Self> {
        Self::start_configured(Vec::new(), config).await
    }

    async fn start_configured(extra_args: Vec<String>, config: String) -> anyhow::Result<Self> {
        let port = free_port()?;
        let store_dir =
            std::env::temp_dir().join(format!("dropline-nats-{}", crate::unique_suffix()));
        let mut nats = Self {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            store_dir,
            extra_args,
            config,
            child: None,
        };
        nats.spawn().await?;
        Ok(nats)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let binary = server_binary()?;
        let durable = self.durability_args(&binary)?;
        let child = Command::new(&binary)
            .args(&durable)
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
                return check_expected_version(&self.url).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!(
            "private nats-server did not start on port {} within {START_WAIT_MS_MAX} ms",
            self.port
        )
    }

    /// `-c <file>` with the sync-always setting, on servers that have it (a
    /// 2.9 server runs without: it would refuse the setting), and the
    /// server's own `config`.
    fn durability_args(&self, binary: &Path) -> anyhow::Result<Vec<String>> {
        let durability = match binary_version(binary)?.can_sync_always() {
            true => SYNC_ALWAYS_CONFIG,
            false => "",
        };
        if durability.is_empty() && self.config.is_empty() {
            return Ok(Vec::new());
        }
        std::fs::create_dir_all(&self.store_dir).context("create the store directory")?;
        let path = self.store_dir.join("server.conf");
        std::fs::write(&path, format!("{durability}\n{}\n", self.config))
            .context("write the server's configuration")?;
        Ok(vec!["-c".into(), path.display().to_string()])
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (SIGKILL), keeping its store.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the server keeps its connections open and answers nothing.
    /// Returns once every thread of it is stopped: `kill` only queues the
    /// signal, and a thread still running could store and ack one more
    /// message (the lost-PubAck fault test saw a PubAck come back from a
    /// server it had just frozen).
    pub fn freeze(&self) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("the server is not running")?;
        send_signal(child.id(), Signal::Stop)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !all_threads_stopped(child.id()) {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "nats-server {} did not stop within 5 s of SIGSTOP",
                child.id()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
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

/// Whether every thread of `pid` is stopped (state `T` in its
/// `/proc/<pid>/task/<tid>/stat`, the field after the parenthesised name).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|stat| {
                let state = stat.rsplit_once(") ")?.1.chars().next()?;
                Some(state == 'T' || state == 't')
            })
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expected_version_matches_by_its_leading_parts() {
        let v = ServerVersion::parse("2.15.1").expect("a version");
        assert!(version_matches(v, "2.15.1") && version_matches(v, "2.15"));
        assert!(!version_matches(v, "2.9") && !version_matches(v, "2.15.2"));
        assert!(!version_matches(v, "2.15.1.4"));
        assert_eq!(pinned_version().split('.').count(), 3);
    }
}
