//! Private `nats-server`s for tests that must change settings, stop, restart
//! or lose a node, without touching the machine's shared one.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One `nats-server -js` on a free port with its own store directory.
pub struct PrivateNats {
    pub url: String,
    pub port: u16,
    store_dir: PathBuf,
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl PrivateNats {
    pub async fn start() -> Self {
        Self::start_with(Vec::new()).await
    }

    async fn start_with(extra_args: Vec<String>) -> Self {
        let port = free_port();
        let store_dir =
            std::env::temp_dir().join(format!("dropline-nats-{}", uuid::Uuid::new_v4().simple()));
        let mut nats = Self {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            store_dir,
            extra_args,
            child: None,
        };
        nats.spawn().await;
        nats
    }

    async fn spawn(&mut self) {
        let child = Command::new("nats-server")
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
            .expect("start nats-server (is it on the PATH?)");
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("private nats-server did not start on port {}", self.port);
    }

    /// Kills the server (SIGKILL), keeping its store.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the server keeps its connections open and answers nothing.
    pub fn freeze(&self) {
        let pid = self.child.as_ref().expect("the server is running").id();
        crate::processes::send_signal(pid, "-STOP");
    }

    /// Starts it again on the same port and store.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
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
    pub async fn start() -> Self {
        let cluster_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes = cluster_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let name = format!(
            "dropline-test-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
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
            nodes.push(PrivateNats::start_with(args).await);
        }
        let cluster = Self { nodes };
        cluster.wait_for_jetstream().await;
        cluster
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
    async fn wait_for_jetstream(&self) {
        let servers: Vec<String> = self.nodes.iter().map(|n| n.url.clone()).collect();
        for _ in 0..120 {
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
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("the 3-node cluster never became ready for replicated streams");
    }
}
