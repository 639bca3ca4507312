//! Connecting to NATS with every timeout spelled out, and counting lost
//! connections (a PubAck awaited across one never comes).
//!
//! Must not give up on a broker that is down: the client reconnects for
//! ever, and callers see `is_connected` or a failed call instead.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream;
use tokio::sync::watch;

use crate::{BusError, ServerVersion};

/// NATS with JetStream on its default local port.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// How a process proves who it is to NATS and checks the server's identity,
/// beyond what its URL says. A user and password go in the URL
/// (`nats://gateway:secret@host:4222`); a `tls://` URL requires TLS.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NatsAccess {
    /// A NATS credentials file (a user JWT and its NKey seed, as `nsc`
    /// writes them) for servers in operator mode.
    #[arg(long, env = "NATS_CREDS", global = true)]
    pub nats_creds: Option<PathBuf>,
    /// PEM certificates of the authority that signed the server's; TLS is
    /// then required.
    #[arg(long, env = "NATS_TLS_CA", global = true)]
    pub nats_tls_ca: Option<PathBuf>,
    /// This client's certificate (PEM), for servers that verify clients.
    #[arg(long, env = "NATS_TLS_CERT", requires = "nats_tls_key", global = true)]
    pub nats_tls_cert: Option<PathBuf>,
    /// The key of `--nats-tls-cert` (PEM).
    #[arg(long, env = "NATS_TLS_KEY", requires = "nats_tls_cert", global = true)]
    pub nats_tls_key: Option<PathBuf>,
}

impl NatsAccess {
    async fn apply(
        &self,
        mut connect: async_nats::ConnectOptions,
    ) -> Result<async_nats::ConnectOptions, BusError> {
        if let Some(creds) = &self.nats_creds {
            connect = connect
                .credentials_file(creds)
                .await
                .map_err(|e| format!("read the NATS credentials file {}: {e}", creds.display()))?;
        }
        if let Some(ca) = &self.nats_tls_ca {
            connect = connect.require_tls(true).add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.nats_tls_cert, &self.nats_tls_key) {
            connect = connect.add_client_certificate(cert.clone(), key.clone());
        }
        Ok(connect)
    }
}

/// The user and password (or the token) written in the server URLs, given
/// to the client: async-nats parses them but never sends them.
fn with_url_credentials(
    connect: async_nats::ConnectOptions,
    servers: &[&str],
) -> Result<async_nats::ConnectOptions, BusError> {
    for server in servers {
        let address: async_nats::ServerAddr = server.parse().map_err(|e| {
            format!(
                "not a NATS server URL: {}: {e}",
                dropline_core::redact(server)
            )
        })?;
        match (address.username(), address.password()) {
            (Some(user), Some(password)) => {
                return Ok(connect.user_and_password(user.into(), password.into()))
            }
            (Some(token), None) => return Ok(connect.token(token.into())),
            _ => {}
        }
    }
    Ok(connect)
}

#[derive(Debug, Clone)]
pub struct BusOptions {
    /// Shown in the server's connection list.
    pub client_name: String,
    /// Bound on every JetStream API call and on awaiting a PubAck.
    pub request_timeout_ms: u64,
    /// Most publishes awaiting their PubAck at once; beyond it publishers wait
    /// (async-nats deadlocks past its default of 5,000 without backpressure).
    pub acks_inflight_max: usize,
    pub access: NatsAccess,
}

impl Default for BusOptions {
    fn default() -> Self {
        Self {
            client_name: "dropline".into(),
            request_timeout_ms: 5_000,
            acks_inflight_max: 4_096,
            access: NatsAccess::default(),
        }
    }
}

/// A connection to NATS and its JetStream context; cheap to clone.
#[derive(Clone, Debug)]
pub struct Bus {
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    /// How many times the connection was lost so far. A PubAck awaited
    /// across a loss never comes (the server that would send it lost the
    /// connection it would go to), so a publish waits on this too.
    pub(crate) connections_lost: watch::Receiver<u64>,
}

impl Bus {
    /// Connects to `url` (one server, or a comma-separated cluster list);
    /// with `wait_for_server` false the call returns at once and
    /// the client keeps trying in the background (a gateway then answers 503
    /// until NATS is up, instead of refusing to start).
    pub async fn connect(
        url: &str,
        options: &BusOptions,
        wait_for_server: bool,
    ) -> Result<Self, BusError> {
        let timeout = Duration::from_millis(options.request_timeout_ms);
        let (count_loss, connections_lost) = watch::channel(0_u64);
        let count_loss = Arc::new(count_loss);
        let mut connect = async_nats::ConnectOptions::new()
            .name(&options.client_name)
            .connection_timeout(timeout)
            .request_timeout(Some(timeout))
            // Reconnect for ever, at most a second apart: a broker restart
            // must not need a dropline restart.
            .max_reconnects(None)
            .reconnect_delay_callback(|attempt| {
                Duration::from_millis((50 * attempt as u64).min(1_000))
            })
            .event_callback(move |event| {
                if matches!(event, async_nats::Event::Disconnected) {
                    count_loss.send_modify(|lost| *lost += 1);
                }
                std::future::ready(())
            });
        if !wait_for_server {
            connect = connect.retry_on_initial_connect();
        }
        // A cluster is given as a comma-separated list of server URLs.
        let servers: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        connect = with_url_credentials(connect, &servers)?;
        connect = options.access.apply(connect).await?;
        let client = connect.connect(servers).await?;
        let js = jetstream::ContextBuilder::new()
            .timeout(timeout)
            .max_ack_inflight(options.acks_inflight_max)
            .backpressure_on_inflight(true)
            .build(client.clone());
        Ok(Self {
            client,
            js,
            connections_lost,
        })
    }

    /// The version of the server the client is connected to, from its INFO
    /// (`None` before the first connection).
    pub fn server_version(&self) -> Option<ServerVersion> {
        ServerVersion::parse(&self.client.server_info().version).ok()
    }

    /// Whether the server the client is connected to is part of a cluster
    /// (its INFO names one).
    pub fn in_cluster(&self) -> bool {
        self.client.server_info().cluster.is_some()
    }

    /// True while the connection to the server is up.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// One round trip to JetStream: is the stream there and answering?
    pub async fn ping(&self) -> Result<(), BusError> {
        self.js
            .get_stream_no_info(dropline_core::names::INTENTS_STREAM)
            .await?
            .get_info()
            .await?;
        Ok(())
    }

    /// Sends everything buffered (decisions are fire-and-forget publishes).
    pub async fn flush(&self) -> Result<(), BusError> {
        self.client.flush().await?;
        Ok(())
    }
}
