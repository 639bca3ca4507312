//! Assembles dropline's parts into running services.
//!
//! `serve` (gateway and processor in one process), `gateway`, `processor` and
//! `migrate` are built here from [`Settings`], so the binary and the tests
//! start exactly the same thing. Owns wiring, lifecycle, the process's
//! metrics recorder and a processor's ops listener; must not hold any part's
//! logic (parsing, deciding, storing, carrying), which lives in the crate of
//! that part.

mod auth;
mod ops;
mod settings;
mod shutdown;
mod telemetry;

pub use auth::{AuthArgs, AuthMode};
pub use dropline_core::redact;
pub use settings::{Settings, SettingsArgs};
pub use shutdown::{shutdown_signal, Shutdown};
pub use telemetry::exported_metrics;

use std::time::Duration;

use anyhow::Context as _;
use dropline_bus::{Bus, BusOptions};
use dropline_gateway::{AppState, Probes};
use dropline_store::Store;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::telemetry::install_metrics_recorder;

/// Creates the database if needed and applies migrations.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    Store::migrate(&settings.database_url)
        .await
        .with_context(|| format!("migrate {}", redact(&settings.database_url)))
}

async fn connect(settings: &Settings, role: &str) -> anyhow::Result<(Store, Bus)> {
    let store = open_store(settings)?;
    let bus = connect_bus(settings, role).await?;
    Ok((store, bus))
}

/// The Postgres pool; connects lazily, so this does no I/O.
fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    Store::connect_lazy(&settings.database_url, &settings.pool)
        .with_context(|| format!("configure Postgres {}", redact(&settings.database_url)))
}

async fn connect_bus(settings: &Settings, role: &str) -> anyhow::Result<Bus> {
    let options = BusOptions {
        client_name: format!("dropline-{role}"),
        ..settings.bus.clone()
    };
    let bus = Bus::connect(&settings.nats_url, &options, true)
        .await
        .map_err(|e| anyhow::anyhow!("connect to NATS at {}: {e}", redact(&settings.nats_url)))?;
    warn_if_acks_are_not_durable(&bus);
    // The stream's settings are the processors' to keep: a gateway's NATS
    // user may create the stream but not change it (deploy/nats/roles.conf).
    let may_update = role != "gateway";
    ensure_stream(&bus, settings, may_update).await?;
    Ok(bus)
}

/// dropline runs on nats-server 2.9, but says once, loudly, what that
/// costs: the server acks before its disk has the intent.
fn warn_if_acks_are_not_durable(bus: &Bus) {
    match bus.server_version() {
        Some(version) if !version.can_sync_always() => tracing::warn!(
            %version,
            "nats-server {version} acks a publish before it is on disk (it has no \
             `sync_interval: always`, which came in 2.10): an accepted purchase survives a \
             crash of the server process, not a power loss of its machine, unless the \
             stream has 3 replicas on 3 machines; it also lacks several filter subjects \
             per consumer. Run nats-server 2.10 or later with deploy/nats/single-node.conf \
             or cluster-node.conf"
        ),
        Some(version) => tracing::info!(%version, "connected to nats-server"),
        None => {}
    }
}

/// Creates the stream, retrying for a while: a JetStream cluster that is
/// still electing its leaders refuses stream requests for a few seconds.
async fn ensure_stream(bus: &Bus, settings: &Settings, may_update: bool) -> anyhow::Result<()> {
    const ATTEMPTS_MAX: u32 = 30;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let ensured = match may_update {
            true => bus.ensure_stream(&settings.stream).await,
            false => bus.ensure_stream_exists(&settings.stream).await,
        };
        match ensured {
            Ok(()) => return Ok(()),
            Err(err) if attempt < ATTEMPTS_MAX => {
                tracing::warn!(attempt, %err, "create stream; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(err) => anyhow::bail!("create stream after {attempt} attempts: {err}"),
        }
    }
}

/// Runs the HTTP gateway on `listener` until `shutdown` fires.
pub async fn run_gateway(
    settings: &Settings,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let metrics = install_metrics_recorder();
    let (store, bus) = connect(settings, "gateway").await?;
    gateway_task(store, bus, settings, metrics, listener, shutdown).await
}

/// Runs the processor until `shutdown` fires, with its ops listener
/// (`/healthz`, `/readyz`, `/metrics` on `metrics_addr`) up from the start:
/// alive while it connects, ready once NATS and Postgres answer.
pub async fn run_processor(settings: &Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    let metrics = install_metrics_recorder();
    let store = open_store(settings)?;
    // One bound for every role's readiness probe: the gateway's.
    let ready_timeout = Duration::from_millis(settings.gateway.ready_timeout_ms);
    let probes = Probes::new(store.clone(), metrics.clone(), ready_timeout);
    let ops = ops::start(&settings.metrics_addr, &probes, &settings.gateway.operators).await?;
    let bus = connect_bus(settings, "processor").await?;
    probes.connected(bus.clone());
    let processed =
        dropline_processor::run(store, bus, settings.processor.clone(), shutdown.wait()).await;
    // Probes answer until the partitions are handed back.
    ops.stop().await;
    processed
}

/// Runs gateway and processor in one process: the single-machine default.
/// Migrates first, so a fresh database just works.
pub async fn run_serve(
    settings: &Settings,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let metrics = install_metrics_recorder();
    migrate(settings).await?;
    let (store, bus) = connect(settings, "serve").await?;
    let processor = dropline_processor::run(
        store.clone(),
        bus.clone(),
        settings.processor.clone(),
        shutdown.clone().wait(),
    );
    let gateway = gateway_task(store, bus, settings, metrics, listener, shutdown);
    let (processed, served) = tokio::join!(processor, gateway);
    processed.and(served)
}

async fn gateway_task(
    store: Store,
    bus: Bus,
    settings: &Settings,
    metrics: &PrometheusHandle,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let state = AppState::new(
        store,
        bus.clone(),
        settings.gateway.clone(),
        metrics.clone(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("subscribe to decisions: {e}"))?;
    tracing::info!(addr = %listener.local_addr()?, "gateway listening");
    dropline_gateway::serve(listener, state, shutdown.wait())
        .await
        .context("serve HTTP")?;
    let _ = bus.flush().await;
    Ok(())
}
