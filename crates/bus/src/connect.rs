//! Connecting to NATS with every timeout spelled out, and counting lost
//! connections (a PubAck awaited across one never comes).
//!
//! Must not give up on a broker that is down: the client reconnects for
//! ever, and callers see `is_connected` or a failed call instead.

use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream;
use tokio::sync::watch;

use crate::{BusError, ServerVersion};

/// NATS with JetStream on its default local port.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

#[derive(Debug, Clone)]
pub struct BusOptions {
    /// Shown in the server's connection list.
    pub client_name: String,
    /// Bound on every JetStream API call and on awaiting a PubAck.
    pub request_timeout_ms: u64,
    /// Most publishes awaiting their PubAck at once; beyond it publishers wait
    /// (async-nats deadlocks past its default of 5,000 without backpressure).
    pub acks_inflight_max: usize,
}

impl Default for BusOptions {
    fn default() -> Self {
        Self {
            client_name: "dropline".into(),
            request_timeout_ms: 5_000,
            acks_inflight_max: 4_096,
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
