//! Putting an operator's entry (a close, a restock) in a drop's line: send
//! it, wait for its PubAck, and try again a few times when the broker does
//! not take it. Sending the same payload again is safe, because the line
//! applies an operation id once; so after a final failure the operator is
//! told the id to retry with.

use std::time::Duration;

use dropline_bus::Bus;
use dropline_core::wire::ControlPayload;
use dropline_core::Sku;

use crate::decided::WaitArgs;
use crate::operator::OperatorArgs;
use crate::services::ServiceArgs;

/// What every command that puts an entry in line takes, beside its own.
#[derive(Debug, clap::Args)]
pub struct EntryArgs {
    #[command(flatten)]
    pub operator: OperatorArgs,
    #[command(flatten)]
    pub wait: WaitArgs,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Attempts at putting one entry in line before giving up.
const ATTEMPTS_MAX: u32 = 4;
/// The pause before the first retry; it doubles after each.
const RETRY_FIRST_MS: u64 = 500;

/// An entry in line: its place, and the connection that put it there
/// (reused to tell the gateways about it).
pub struct Placed {
    pub place: u64,
    pub bus: Bus,
}

/// Sends `payload` to `sku`'s line until one PubAck comes back, at most
/// [`ATTEMPTS_MAX`] times, connecting first if need be. The error says why
/// the last attempt failed; whether an earlier one was stored anyway is
/// unknown, which is what the operation id is for.
pub async fn put_in_line(
    services: &ServiceArgs,
    sku: &Sku,
    payload: &ControlPayload,
) -> anyhow::Result<Placed> {
    let mut bus: Option<Bus> = None;
    let mut delay = Duration::from_millis(RETRY_FIRST_MS);
    let mut attempt = 1;
    loop {
        let err = match send_once(services, &mut bus, sku, payload).await {
            Ok(placed) => return Ok(placed),
            Err(err) => err,
        };
        if attempt >= ATTEMPTS_MAX {
            return Err(err.context(format!("no PubAck after {attempt} attempts")));
        }
        eprintln!("attempt {attempt} failed ({err:#}); trying again in {delay:?}");
        tokio::time::sleep(delay).await;
        delay *= 2;
        attempt += 1;
    }
}

/// One attempt, over the connection of an earlier one if there is one (the
/// client reconnects by itself).
async fn send_once(
    services: &ServiceArgs,
    bus: &mut Option<Bus>,
    sku: &Sku,
    payload: &ControlPayload,
) -> anyhow::Result<Placed> {
    let connected = match bus.take() {
        Some(connected) => connected,
        None => services.bus().await?,
    };
    *bus = Some(connected.clone());
    let place = connected.send_control(sku, payload).await?;
    Ok(Placed {
        place,
        bus: connected,
    })
}
