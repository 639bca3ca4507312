//! Domain types, built only through `parse` and carrying their limits.
//!
//! Once a value of one of these types exists, no other code re-checks it: the
//! gateway parses at its edge, the processor parses what it reads off the bus,
//! and everything in between trusts the type.
//!
//! Must not offer a way around `parse`: no public constructor, and
//! deserializing goes through `parse` too.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a piece of input was refused. The message is safe to show a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidInput {
    pub field: &'static str,
    pub reason: String,
}

impl InvalidInput {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// Checks length (in bytes) and that every character passes `allowed`.
fn check_text(
    field: &'static str,
    value: &str,
    len_max: usize,
    allowed: impl Fn(char) -> bool,
    alphabet: &str,
) -> Result<(), InvalidInput> {
    if value.is_empty() {
        return Err(InvalidInput::new(field, "must not be empty"));
    }
    if value.len() > len_max {
        return Err(InvalidInput::new(
            field,
            format!("must be at most {len_max} bytes, got {}", value.len()),
        ));
    }
    if let Some(bad) = value.chars().find(|c| !allowed(*c)) {
        return Err(InvalidInput::new(
            field,
            format!("character {bad:?} is not allowed ({alphabet})"),
        ));
    }
    Ok(())
}

macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidInput;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(value)
            }
        }

        // Deserializing goes through `parse`, so a value read off the bus or the
        // database is held to the same limits as one typed at the HTTP edge.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

text_newtype!(
    /// A stock-keeping unit: one drop, one partition, one NATS subject token.
    ///
    /// Restricted to `[A-Za-z0-9_-]`, at most [`Sku::LEN_MAX`] bytes, so that it
    /// is safe as a subject token, a consumer name and a URL path segment.
    Sku
);

impl Sku {
    pub const LEN_MAX: usize = 64;

    pub fn parse(value: impl Into<String>) -> Result<Self, InvalidInput> {
        let value = value.into();
        check_text(
            "sku",
            &value,
            Self::LEN_MAX,
            |c| c.is_ascii_alphanumeric() || c == '-' || c == '_',
            "letters, digits, '-' and '_'",
        )?;
        Ok(Self(value))
    }
}

text_newtype!(
    /// The client's Idempotency-Key: one decision per (SKU, key), ever.
    ///
    /// Visible ASCII only (it travels in a NATS header and a URL path), at most
    /// [`IdempotencyKey::LEN_MAX`] bytes.
    IdempotencyKey
);

impl IdempotencyKey {
    pub const LEN_MAX: usize = 255;

    pub fn parse(value: impl Into<String>) -> Result<Self, InvalidInput> {
        let value = value.into();
        check_text(
            "Idempotency-Key",
            &value,
            Self::LEN_MAX,
            |c| c.is_ascii_graphic(),
            "visible ASCII",
        )?;
        Ok(Self(value))
    }

    /// Parses the header value, bare (`abc`) or in the IETF draft's
    /// structured-field string form (`"abc"`, with `\"` and `\\` escapes).
    pub fn from_header(raw: &str) -> Result<Self, InvalidInput> {
        let raw = raw.trim();
        let Some(inner) = raw.strip_prefix('"') else {
            return Self::parse(raw);
        };
        let Some(inner) = inner.strip_suffix('"') else {
            return Err(InvalidInput::new(
                "Idempotency-Key",
                "quoted value has no closing '\"'",
            ));
        };
        let mut unescaped = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e @ ('"' | '\\')) => unescaped.push(e),
                    _ => {
                        return Err(InvalidInput::new(
                            "Idempotency-Key",
                            "only \\\" and \\\\ may be escaped",
                        ))
                    }
                },
                '"' => {
                    return Err(InvalidInput::new(
                        "Idempotency-Key",
                        "unescaped '\"' inside a quoted value",
                    ))
                }
                other => unescaped.push(other),
            }
        }
        Self::parse(unescaped)
    }
}

text_newtype!(
    /// Who is buying. Any text without control characters, at most
    /// [`UserId::LEN_MAX`] bytes.
    UserId
);

impl UserId {
    pub const LEN_MAX: usize = 128;

    pub fn parse(value: impl Into<String>) -> Result<Self, InvalidInput> {
        let value = value.into();
        check_text(
            "user_id",
            &value,
            Self::LEN_MAX,
            |c| !c.is_control(),
            "no control characters",
        )?;
        if value.trim().is_empty() {
            return Err(InvalidInput::new("user_id", "must not be blank"));
        }
        Ok(Self(value))
    }
}

text_newtype!(
    /// Names one operator action (a close, a restock) so that a retry after
    /// a lost answer has its effect once. Visible ASCII, at most
    /// [`OperationId::LEN_MAX`] bytes.
    OperationId
);

impl OperationId {
    pub const LEN_MAX: usize = 64;

    pub fn parse(value: impl Into<String>) -> Result<Self, InvalidInput> {
        let value = value.into();
        check_text(
            "operation_id",
            &value,
            Self::LEN_MAX,
            |c| c.is_ascii_graphic(),
            "visible ASCII",
        )?;
        Ok(Self(value))
    }
}

text_newtype!(
    /// Who issued an operator action, as recorded with it. Any text without
    /// control characters, at most [`OperatorId::LEN_MAX`] bytes.
    OperatorId
);

impl OperatorId {
    pub const LEN_MAX: usize = 128;

    pub fn parse(value: impl Into<String>) -> Result<Self, InvalidInput> {
        let value = value.into();
        check_text(
            "operator",
            &value,
            Self::LEN_MAX,
            |c| !c.is_control(),
            "no control characters",
        )?;
        Ok(Self(value))
    }
}

/// Units asked for in one purchase: `1..=Quantity::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Quantity(u32);

impl Quantity {
    pub const MAX: u32 = 100;
    pub const ONE: Quantity = Quantity(1);

    pub fn parse(value: i64) -> Result<Self, InvalidInput> {
        if !(1..=i64::from(Self::MAX)).contains(&value) {
            return Err(InvalidInput::new(
                "quantity",
                format!("must be between 1 and {}, got {value}", Self::MAX),
            ));
        }
        // In range 1..=MAX, so the conversion cannot fail.
        Ok(Self(value as u32))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// Units of stock: `0..=Stock::MAX` (fits a Postgres `int4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Stock(u32);

impl Stock {
    pub const MAX: u32 = 100_000_000;

    pub fn parse(value: i64) -> Result<Self, InvalidInput> {
        if !(0..=i64::from(Self::MAX)).contains(&value) {
            return Err(InvalidInput::new(
                "stock",
                format!("must be between 0 and {}, got {value}", Self::MAX),
            ));
        }
        Ok(Self(value as u32))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// Most units one user may win in one drop: `1..=Quantity::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PerUserLimit(u32);

impl PerUserLimit {
    pub const DEFAULT: PerUserLimit = PerUserLimit(1);

    pub fn parse(value: i64) -> Result<Self, InvalidInput> {
        if !(1..=i64::from(Quantity::MAX)).contains(&value) {
            return Err(InvalidInput::new(
                "per_user_limit",
                format!("must be between 1 and {}, got {value}", Quantity::MAX),
            ));
        }
        Ok(Self(value as u32))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// Like the text types, a bounded count deserializes through its `parse`, so
/// a count read off the bus or from a file is held to the same limits as one
/// typed at the edge.
macro_rules! deserialize_through_parse {
    ($($name:ident),+) => {$(
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Self::parse(i64::deserialize(d)?).map_err(serde::de::Error::custom)
            }
        }
    )+};
}

deserialize_through_parse!(Quantity, Stock, PerUserLimit);

/// What was decided for one intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Won,
    SoldOut,
    LimitReached,
    /// Stood in line after the drop's close: decided, never sold.
    Closed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Won => "won",
            Outcome::SoldOut => "sold_out",
            Outcome::LimitReached => "limit_reached",
            Outcome::Closed => "closed",
        }
    }

    pub fn parse(value: &str) -> Result<Self, InvalidInput> {
        match value {
            "won" => Ok(Outcome::Won),
            "sold_out" => Ok(Outcome::SoldOut),
            "limit_reached" => Ok(Outcome::LimitReached),
            "closed" => Ok(Outcome::Closed),
            other => Err(InvalidInput::new(
                "outcome",
                format!("unknown outcome {other:?}"),
            )),
        }
    }
}

/// Whether a drop takes new intents (its admission, decided by the
/// gateways; the line itself only knows the close).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropStatus {
    /// Opens at a set time: refuses new intents until then.
    Scheduled,
    /// Takes new intents.
    Open,
    /// Refuses new intents for now; queued ones are still decided.
    Paused,
    /// Refuses new intents for good.
    Closed,
}

impl DropStatus {
    /// The state buyers meet: a scheduled drop whose opening time has come
    /// is open, without waiting for anyone to say so (the store keeps
    /// `scheduled` until an operator changes it; every gateway's clock
    /// opens it).
    pub fn as_met(self, opening_time_passed: bool) -> DropStatus {
        match self {
            DropStatus::Scheduled if opening_time_passed => DropStatus::Open,
            status => status,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DropStatus::Scheduled => "scheduled",
            DropStatus::Open => "open",
            DropStatus::Paused => "paused",
            DropStatus::Closed => "closed",
        }
    }

    pub fn parse(value: &str) -> Result<Self, InvalidInput> {
        match value {
            "scheduled" => Ok(DropStatus::Scheduled),
            "open" => Ok(DropStatus::Open),
            "paused" => Ok(DropStatus::Paused),
            "closed" => Ok(DropStatus::Closed),
            other => Err(InvalidInput::new(
                "status",
                format!("unknown drop status {other:?}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sku_accepts_safe_alphabet_only() {
        assert!(Sku::parse("AJ1-chicago_42").is_ok());
        for bad in ["", "a.b", "a*", "a>", "a b", "ä", &"x".repeat(65)] {
            assert!(Sku::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn idempotency_key_accepts_bare_and_quoted_forms() {
        let bare = IdempotencyKey::from_header("8e03978e-40d5").unwrap();
        let quoted = IdempotencyKey::from_header("\"8e03978e-40d5\"").unwrap();
        assert_eq!(bare, quoted);
        let escaped = IdempotencyKey::from_header(r#""a\"b\\c""#).unwrap();
        assert_eq!(escaped.as_str(), r#"a"b\c"#);
        for bad in ["", "\"\"", "\"abc", "a b", "\"a\"b\"", "\"a\\nb\"", "é"] {
            assert!(
                IdempotencyKey::from_header(bad).is_err(),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn user_id_refuses_control_characters_and_blank() {
        assert!(UserId::parse("ana@example.com").is_ok());
        assert!(UserId::parse("zoë").is_ok());
        for bad in ["", "   ", "a\nb", "a\u{0}"] {
            assert!(UserId::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn quantity_and_limits_are_bounded() {
        assert!(Quantity::parse(0).is_err());
        assert!(Quantity::parse(101).is_err());
        assert_eq!(Quantity::parse(3).unwrap().get(), 3);
        assert!(Stock::parse(-1).is_err());
        assert!(PerUserLimit::parse(0).is_err());
    }

    #[test]
    fn deserializing_applies_the_same_limits() {
        assert!(serde_json::from_str::<Sku>("\"a.b\"").is_err());
        assert!(serde_json::from_str::<Quantity>("0").is_err());
        assert_eq!(serde_json::from_str::<Quantity>("2").unwrap().get(), 2);
    }

    /// Each of `bad` fails to deserialize as `T`; each of `good` comes back
    /// as itself and serializes to the same JSON.
    fn assert_deserializes_only_within_limits<T>(bad: &[&str], good: &[u32], get: fn(&T) -> u32)
    where
        T: serde::de::DeserializeOwned + Serialize,
    {
        for bad in bad {
            assert!(
                serde_json::from_str::<T>(bad).is_err(),
                "{bad} must be refused"
            );
        }
        for &good in good {
            let value: T = serde_json::from_str(&good.to_string()).unwrap();
            assert_eq!(get(&value), good);
            assert_eq!(serde_json::to_string(&value).unwrap(), good.to_string());
        }
    }

    #[test]
    fn deserializing_stock_refuses_what_parse_refuses() {
        assert_deserializes_only_within_limits::<Stock>(
            &["-1", "100000001", "1.5", "\"3\""],
            &[0, 7, Stock::MAX],
            |stock| stock.get(),
        );
    }

    #[test]
    fn deserializing_a_per_user_limit_refuses_what_parse_refuses() {
        assert_deserializes_only_within_limits::<PerUserLimit>(
            &["0", "101", "-1"],
            &[1, 3, Quantity::MAX],
            |limit| limit.get(),
        );
    }
}
