//! A dropline deployment on one machine for the tools: a fresh database,
//! one or more `dropline gateway` processes and some `dropline processor`
//! processes, and, when asked, a private nats-server the tool may stop
//! without touching the machine's shared one, or a private 3-node JetStream
//! cluster with the stream replicated on all three.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use sqlx::Connection as _;

use crate::databases::{create_database, database_name};
use crate::nats::{PrivateCluster, PrivateNats};
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
    /// Start a private 3-node JetStream cluster instead, and replicate the
    /// stream on all three nodes.
    pub nats_cluster: bool,
    pub gateways: usize,
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
            nats_cluster: false,
            gateways: 1,
            processors,
            lease_ms: 1_000,
            ack_wait_ms: 5_000,
            buyer_tokens: BuyerTokens::random(),
        }
    }
}

pub struct Stack {
    /// Every gateway's base URL, the first one first.
    pub gateway_urls: Vec<String>,
    pub database_url: String,
    pub nats_url: String,
    pub options: StackOptions,
    pub processors: Vec<DroplineProcess>,
    gateways: Vec<DroplineProcess>,
    nats: Option<PrivateNats>,
    cluster: Option<PrivateCluster>,
    dir: PathBuf,
}

impl Stack {
    pub async fn start(options: StackOptions) -> anyhow::Result<Self> {
        let id = crate::unique_suffix();
        let dir = std::env::temp_dir().join(format!("dropline-stack-{id}"));
        std::fs::create_dir_all(&dir).context("create the stack's log directory")?;
        anyhow::ensure!(options.gateways >= 1, "a stack needs a gateway");
        let (nats, cluster, nats_url) = start_nats(&options).await?;
        let stream_replicas = stream_replicas(&options);
        let database_url =
            create_database(&options.postgres, &format!("dropline_load_{id}")).await?;
        let ports = free_ports(options.gateways)?;
        let log_filter = log_filter();
        let start = |role: Role, name: &str, port: u16| {
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
                ("DROPLINE_STREAM_REPLICAS", stream_replicas.to_string()),
                // A processor's /healthz, /readyz and /metrics: any free
                // port, so the stack's processors never collide (the
                // gateway answers them on its API address and ignores it).
                ("DROPLINE_METRICS_ADDR", "127.0.0.1:0".to_string()),
                ("RUST_LOG", log_filter.clone()),
            ];
            DroplineProcess::start(role, name, &env, &dir.join(format!("{name}.log")))
        };
        let gateways = ports
            .iter()
            .enumerate()
            // The first keeps its old name: one-gateway logs read as before.
            .map(|(i, &port)| match i {
                0 => start(Role::Gateway, "gateway", port),
                _ => start(Role::Gateway, &format!("gateway-{i}"), port),
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let processors = (0..options.processors)
            .map(|i| start(Role::Processor, &format!("processor-{i}"), ports[0]))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let gateway_urls: Vec<String> = ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
        let stack = Self {
            gateway_urls,
            database_url,
            nats_url,
            options,
            processors,
            gateways,
            nats,
            cluster,
            dir,
        };
        stack.wait_ready().await?;
        stack.announce();
        Ok(stack)
    }

    fn announce(&self) {
        eprintln!(
            "stack up: gateway {} + {} processors on NATS {} (logs in {})",
            self.gateway_urls.join(", "),
            self.processors.len(),
            self.nats_url,
            self.dir.display()
        );
    }

    /// The first gateway's base URL (any gateway answers any request).
    pub fn url(&self) -> &str {
        &self.gateway_urls[0]
    }

    /// Waits until every gateway answers `/readyz` and every processor has
    /// said it is alive: a processor that looks before the others do takes
    /// every drop created meanwhile and hands most back one lease later, in
    /// the middle of whatever the tool measures.
    async fn wait_ready(&self) -> anyhow::Result<()> {
        self.wait_gateways_ready().await?;
        self.wait_processors_alive().await
    }

    async fn wait_processors_alive(&self) -> anyhow::Result<()> {
        let mut db = sqlx::PgConnection::connect(&self.database_url).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(READY_WAIT_MS_MAX);
        let names: Vec<&str> = self.processors.iter().map(|p| p.name.as_str()).collect();
        loop {
            let alive: i64 =
                sqlx::query_scalar("SELECT count(*) FROM processors WHERE instance_id = ANY($1)")
                    .bind(&names)
                    .fetch_one(&mut db)
                    .await?;
            if alive == names.len() as i64 {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{alive} of {} processors said they are alive; see {}",
                names.len(),
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_gateways_ready(&self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(READY_WAIT_MS_MAX);
        for url in &self.gateway_urls {
            loop {
                if let Ok(r) = client.get(format!("{url}/readyz")).send().await {
                    if r.status().is_success() {
                        break;
                    }
                }
                anyhow::ensure!(
                    tokio::time::Instant::now() < deadline,
                    "the gateway at {url} did not become ready; see {}",
                    self.dir.display()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
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

    /// The gateways' process ids.
    pub fn gateway_pids(&self) -> Vec<u32> {
        self.gateways.iter().map(DroplineProcess::pid).collect()
    }

    /// The processors' process ids.
    pub fn processor_pids(&self) -> Vec<u32> {
        self.processors.iter().map(DroplineProcess::pid).collect()
    }

    /// The private nats-server's or the private cluster's process ids; none
    /// on a NATS the stack did not start.
    pub fn nats_pids(&self) -> Vec<u32> {
        let private = self.nats.iter();
        let cluster = self.cluster.iter().flat_map(|cluster| &cluster.nodes);
        private
            .chain(cluster)
            .filter_map(PrivateNats::pid)
            .collect()
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
        for gateway in &mut self.gateways {
            gateway.kill();
        }
        for processor in &mut self.processors {
            processor.kill();
        }
    }
}

/// The private nats-server or cluster the options ask for, and the URL the
/// stack's processes use (the given NATS when neither is asked for).
async fn start_nats(
    options: &StackOptions,
) -> anyhow::Result<(Option<PrivateNats>, Option<PrivateCluster>, String)> {
    anyhow::ensure!(
        !(options.private_nats && options.nats_cluster),
        "a stack runs on a private nats-server or on a private cluster, not both"
    );
    if options.private_nats {
        let nats = PrivateNats::start().await?;
        let url = nats.url.clone();
        return Ok((Some(nats), None, url));
    }
    if options.nats_cluster {
        let cluster = PrivateCluster::start().await?;
        let url = cluster.url();
        return Ok((None, Some(cluster), url));
    }
    Ok((None, None, options.nats_url.clone()))
}

/// The stack logs what an operator needs; RUST_LOG (e.g.
/// `dropline_processor=debug`, which logs every batch) asks for more.
/// `dropline=info` keeps the line naming each processor's ops address.
fn log_filter() -> String {
    std::env::var("RUST_LOG")
        .unwrap_or_else(|_| "warn,dropline=info,dropline_processor=info".to_string())
}

fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    (0..count).map(|_| free_port()).collect()
}

/// A stack on a cluster replicates its stream on every node.
fn stream_replicas(options: &StackOptions) -> &'static str {
    if options.nats_cluster {
        "3"
    } else {
        "1"
    }
}
