//! Identifiers: a type each, a readable prefix each (`evt_`, `ep_`, `dlv_`, `sil_`) over a ULID, so an
//! id pasted into a log search or `redis-cli` says what it names and sorts by creation time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An id string that did not have the expected prefix or characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid {kind} id {value:?}: expected `{prefix}` followed by letters, digits, `-` or `_` (at most 64 characters)"
)]
pub struct IdError {
    kind: &'static str,
    prefix: &'static str,
    value: String,
}

/// A new ULID: the milliseconds since the Unix epoch and 80 bits from the operating system's
/// random source (what `Ulid::new` does, without pulling `rand` into the producer's build).
pub fn new_ulid() -> ulid::Ulid {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut random = [0u8; 16];
    // The OS's random source failing is not something a caller can handle; ids must not repeat.
    getrandom::fill(&mut random[6..]).expect("the operating system's random source is unavailable");
    ulid::Ulid::from_parts(ms, u128::from_be_bytes(random))
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id: the prefix and a new ULID.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, new_ulid()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                let rest = s.strip_prefix($prefix).unwrap_or("");
                let ok = !rest.is_empty()
                    && s.len() <= 64
                    && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if ok {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(IdError { kind: $kind, prefix: $prefix, value: s.chars().take(80).collect() })
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(
    /// Names one event; the same on every retry and replay of its deliveries.
    EventId, "evt_", "event"
);
prefixed_id!(
    /// Names one configured endpoint.
    EndpointId, "ep_", "endpoint"
);
prefixed_id!(
    /// Names one (event, endpoint) delivery; stable across retries and replays, so a receiver
    /// can drop duplicates by it (`X-Coderaft-Delivery`).
    DeliveryId, "dlv_", "delivery"
);
prefixed_id!(
    /// Names one silence (a mute of matching deliveries for a time).
    SilenceId, "sil_", "silence"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back() {
        let id = EventId::generate();
        assert!(id.as_str().starts_with("evt_"));
        assert_eq!(id.as_str().parse::<EventId>(), Ok(id.clone()));
    }

    #[test]
    fn wrong_prefix_and_bad_characters_are_refused() {
        assert!("ep_01H".parse::<EventId>().is_err());
        assert!("evt_".parse::<EventId>().is_err());
        assert!("evt_a b".parse::<EventId>().is_err());
        assert!("evt_PIM-002".parse::<EventId>().is_ok());
    }
}
