//! Where a SKU's line lives on this deployment: which intent stream, and
//! its subjects there, as the first stream records it (see
//! `dropline_core::names::LineStreams`).
//!
//! Read once per connection and kept: the count never changes for the
//! life of the streams. Must not create or change a stream (provisioning
//! does).

use async_nats::jetstream::stream::Stream;
use dropline_core::names::{Lane, LineStreams, INTENTS_STREAM};
use dropline_core::Sku;

use crate::{Bus, BusError};

impl Bus {
    /// How this deployment spreads its lines over intent streams.
    pub async fn line_streams(&self) -> Result<LineStreams, BusError> {
        self.line_streams
            .get_or_try_init(|| self.read_line_streams())
            .await
            .copied()
    }

    pub(crate) async fn read_line_streams(&self) -> Result<LineStreams, BusError> {
        let mut first = self.js.get_stream(INTENTS_STREAM).await.map_err(|e| {
            format!("read the intents stream {INTENTS_STREAM} (a processor makes it): {e}")
        })?;
        let description = first.info().await?.config.description.clone();
        Ok(LineStreams::from_description(description.as_deref())?)
    }

    /// Keeps what provisioning found or made, so that no reader asks again.
    pub(crate) fn remember_line_streams(&self, lines: LineStreams) {
        // Already set means already read from the same stream: the same.
        let _ = self.line_streams.set(lines);
    }

    /// The subject of `lane` in `sku`'s line.
    pub async fn line_subject(&self, sku: &Sku, lane: Lane) -> Result<String, BusError> {
        Ok(self.line_streams().await?.subject(sku, lane))
    }

    /// The name of the stream holding `sku`'s line.
    pub async fn line_stream_name(&self, sku: &Sku) -> Result<String, BusError> {
        Ok(self.line_streams().await?.stream_of(sku))
    }

    /// The stream holding `sku`'s line, without asking the server for its
    /// info.
    pub(crate) async fn line_stream(&self, sku: &Sku) -> Result<Stream<()>, BusError> {
        let name = self.line_stream_name(sku).await?;
        Ok(self.js.get_stream_no_info(name).await?)
    }
}
