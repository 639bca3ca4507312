//! Which intent stream holds a SKU's line, and the line's subjects there.
//!
//! A stream stores its messages one at a time and, syncing, fsyncs each
//! before the next: a drop of 200 sizes sends 200 lines' messages at once,
//! and with one stream they all queue behind each other. With several
//! streams, SKUs hashed onto them, those writes go in parallel.
//!
//! The place in line is the sequence of the stream that holds the line, so a
//! SKU must never move: the count is fixed when the streams are first made
//! and recorded in the first stream's description, which every role reads
//! (see `dropline_bus`). A deployment whose stream was made before keeps its
//! one stream and the subjects it always had ([`LineStreams::SINGLE`]).

use crate::domain::Sku;
use crate::names::{Lane, INTENTS_STREAM, INTENTS_SUBJECTS};

/// How a deployment's lines are spread over intent streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineStreams {
    count: u16,
}

/// Most streams a deployment may spread its lines over.
pub const LINE_STREAMS_MAX: u16 = 64;

/// What a new deployment's first stream says about the count, e.g.
/// "… line streams: 8".
const COUNT_MARK: &str = "line streams: ";

impl LineStreams {
    /// One stream, `DROPLINE_INTENTS`, subjects `dropline.line.<sku>.<lane>`
    /// and the legacy `dropline.intents.<sku>`: every deployment made before
    /// lines were spread, and any made with a count of 1.
    pub const SINGLE: LineStreams = LineStreams { count: 1 };

    pub fn new(count: u16) -> Result<Self, String> {
        if (1..=LINE_STREAMS_MAX).contains(&count) {
            Ok(Self { count })
        } else {
            Err(format!(
                "line streams must be 1 to {LINE_STREAMS_MAX}, not {count}"
            ))
        }
    }

    pub fn count(self) -> u16 {
        self.count
    }

    /// The stream of `sku`'s line, by a hash of its name that never changes
    /// (FNV-1a: the same in every process, version and platform).
    pub fn index_of(self, sku: &Sku) -> u16 {
        let hash = sku.as_str().bytes().fold(0x811c_9dc5_u32, |hash, byte| {
            (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
        });
        // The remainder is below `count`, itself a u16.
        (hash % u32::from(self.count)) as u16
    }

    /// The name of stream `index`: the first keeps the name it always had.
    pub fn stream_name(index: u16) -> String {
        match index {
            0 => INTENTS_STREAM.into(),
            k => format!("{INTENTS_STREAM}_{k}"),
        }
    }

    /// The stream holding `sku`'s line.
    pub fn stream_of(self, sku: &Sku) -> String {
        Self::stream_name(self.index_of(sku))
    }

    /// What stream `index` captures: on several streams, every line hashed
    /// onto it, `dropline.line.<index>.<sku>.<lane>`.
    pub fn stream_subjects(self, index: u16) -> Vec<String> {
        if self == Self::SINGLE {
            INTENTS_SUBJECTS.map(String::from).to_vec()
        } else {
            vec![format!("dropline.line.{index}.*.*")]
        }
    }

    /// A stream's description, which records the count for every role.
    pub fn description(self, index: u16) -> String {
        format!(
            "dropline's lines, each SKU's entries one subject per lane: stream {} of {}; {COUNT_MARK}{}",
            index + 1,
            self.count,
            self.count
        )
    }

    /// The count the first stream's description records; a stream made
    /// before the count was recorded holds every line alone.
    pub fn from_description(description: Option<&str>) -> Result<Self, String> {
        let Some(count) = description.and_then(|d| d.rsplit_once(COUNT_MARK)) else {
            return Ok(Self::SINGLE);
        };
        let count = count.1.parse().map_err(|_| {
            format!("the intents stream records no count of line streams: {count:?}")
        })?;
        Self::new(count)
    }

    /// Where entries of `lane` join `sku`'s line; one line = one partition =
    /// one SKU, whatever its lanes.
    pub fn subject(self, sku: &Sku, lane: Lane) -> String {
        match lane {
            Lane::Purchases => format!("{}.buy", self.line_prefix(sku)),
            Lane::Control => format!("{}.ctl", self.line_prefix(sku)),
            Lane::Legacy => format!("dropline.intents.{sku}"),
        }
    }

    /// Every lane of `sku`'s line but the legacy one, as one consumer filter.
    pub fn lanes_filter(self, sku: &Sku) -> String {
        format!("{}.*", self.line_prefix(sku))
    }

    /// The lanes a line may have entries on: the legacy one only where the
    /// one stream predates lanes.
    pub fn lanes(self) -> &'static [Lane] {
        if self == Self::SINGLE {
            &Lane::ALL
        } else {
            &[Lane::Purchases, Lane::Control]
        }
    }

    fn line_prefix(self, sku: &Sku) -> String {
        if self == Self::SINGLE {
            format!("dropline.line.{sku}")
        } else {
            format!("dropline.line.{}.{sku}", self.index_of(sku))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::sku_of_subject;

    fn sku(name: &str) -> Sku {
        Sku::parse(name).expect("a valid SKU")
    }

    #[test]
    fn one_stream_keeps_the_subjects_it_always_had() {
        let lines = LineStreams::SINGLE;
        let s = sku("AJ1-chicago");
        assert_eq!(lines.stream_of(&s), "DROPLINE_INTENTS");
        assert_eq!(
            lines.subject(&s, Lane::Purchases),
            "dropline.line.AJ1-chicago.buy"
        );
        assert_eq!(
            lines.subject(&s, Lane::Control),
            "dropline.line.AJ1-chicago.ctl"
        );
        assert_eq!(
            lines.subject(&s, Lane::Legacy),
            "dropline.intents.AJ1-chicago"
        );
        assert_eq!(lines.lanes_filter(&s), "dropline.line.AJ1-chicago.*");
        assert_eq!(lines.stream_subjects(0), INTENTS_SUBJECTS.to_vec());
        assert_eq!(lines.lanes(), &Lane::ALL);
    }

    #[test]
    fn several_streams_name_the_stream_in_the_subject() {
        let lines = LineStreams::new(8).expect("a valid count");
        let s = sku("AJ1-chicago");
        let index = lines.index_of(&s);
        assert_eq!(lines.stream_of(&s), LineStreams::stream_name(index));
        let purchases = lines.subject(&s, Lane::Purchases);
        assert_eq!(purchases, format!("dropline.line.{index}.AJ1-chicago.buy"));
        assert_eq!(Lane::of_subject(&purchases), Some(Lane::Purchases));
        assert_eq!(sku_of_subject(&purchases), Some(s.clone()));
        let control = lines.subject(&s, Lane::Control);
        assert_eq!(Lane::of_subject(&control), Some(Lane::Control));
        assert_eq!(
            lines.stream_subjects(index),
            vec![format!("dropline.line.{index}.*.*")]
        );
        assert_eq!(lines.lanes(), &[Lane::Purchases, Lane::Control]);
        assert_eq!(LineStreams::stream_name(0), "DROPLINE_INTENTS");
        assert_eq!(LineStreams::stream_name(3), "DROPLINE_INTENTS_3");
    }

    #[test]
    fn the_hash_is_fixed_and_spreads_skus_evenly() {
        // Fixed: a SKU's place in line is its stream's sequence, so these
        // may never change (FNV-1a of the name, modulo the count).
        let lines = LineStreams::new(8).expect("a valid count");
        assert_eq!(lines.index_of(&sku("a")), (0xe40c_292c_u32 % 8) as u16);
        let mut per_stream = [0u32; 8];
        for size in 0..2_000 {
            per_stream[usize::from(lines.index_of(&sku(&format!("AJ1-{size}"))))] += 1;
        }
        // 250 each on average; a fair hash stays well within 20% of it.
        for (index, n) in per_stream.iter().enumerate() {
            assert!(
                (200..=300).contains(n),
                "stream {index} holds {n} of 2,000 SKUs"
            );
        }
    }

    #[test]
    fn the_first_stream_records_the_count() {
        let lines = LineStreams::new(8).expect("a valid count");
        let described = lines.description(0);
        assert_eq!(LineStreams::from_description(Some(&described)), Ok(lines));
        // A stream made before the count was recorded.
        let before = "dropline's lines: each SKU's entries, one subject per lane";
        assert_eq!(
            LineStreams::from_description(Some(before)),
            Ok(LineStreams::SINGLE)
        );
        assert_eq!(LineStreams::from_description(None), Ok(LineStreams::SINGLE));
        assert!(LineStreams::from_description(Some("line streams: 0")).is_err());
        assert!(LineStreams::from_description(Some("line streams: x")).is_err());
        assert!(LineStreams::new(LINE_STREAMS_MAX + 1).is_err());
    }
}
