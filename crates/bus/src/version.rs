//! The nats-server version dropline talks to, and what follows from it.
//! Reads versions only; never changes how anything is sent.

use std::fmt;

/// A nats-server's version, as `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("not a nats-server version: {0:?}")]
pub struct NotAVersion(String);

impl ServerVersion {
    /// Reads `2.15.1`, `v2.15.1`, `nats-server: v2.15.1` or `2.11.0-beta.1`.
    pub fn parse(text: &str) -> Result<Self, NotAVersion> {
        let version = text.trim().rsplit(' ').next().unwrap_or_default();
        let mut parts = version
            .trim_start_matches('v')
            .split(['.', '-'])
            .map(str::parse::<u32>);
        let mut next = || {
            parts
                .next()
                .and_then(Result::ok)
                .ok_or_else(|| NotAVersion(text.to_string()))
        };
        Ok(Self {
            major: next()?,
            minor: next()?,
            patch: next()?,
        })
    }

    /// nats-server 2.10 brought `sync_interval: always`, the setting that
    /// makes a PubAck mean "on disk" (2.9 refuses it).
    pub fn can_sync_always(self) -> bool {
        (self.major, self.minor) >= (2, 10)
    }
}

impl ServerVersion {
    /// nats-server 2.10 brought consumers filtering on a list of subjects;
    /// 2.9 accepts the list and ignores it (the consumer then gets every
    /// subject of the stream), so it must never be sent one.
    pub fn has_filter_lists(self) -> bool {
        (self.major, self.minor) >= (2, 10)
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_what_servers_print() {
        let v = ServerVersion::parse("nats-server: v2.15.1").expect("a version");
        assert_eq!((v.major, v.minor, v.patch), (2, 15, 1));
        assert_eq!(
            ServerVersion::parse("2.9.10")
                .expect("a version")
                .to_string(),
            "2.9.10"
        );
        assert!(ServerVersion::parse("2.11.0-beta.1").is_ok());
        assert!(ServerVersion::parse("nats-server").is_err());
    }

    #[test]
    fn only_servers_from_two_ten_on_can_sync_before_every_ack() {
        let can = |v: &str| {
            ServerVersion::parse(v)
                .expect("a version")
                .can_sync_always()
        };
        assert!(!can("2.9.10"));
        assert!(can("2.10.0") && can("2.15.1") && can("3.0.0"));
    }
}
