//! W3C Trace Context: the `traceparent` a published event carries from the producer to the
//! workers, and a delivery from its fan-out to every attempt. Parsed and written here, with no
//! OpenTelemetry dependency, so the producer can start or join a trace without linking it.
//!
//! Format (<https://www.w3.org/TR/trace-context/#traceparent-header>):
//! `00-<trace id: 32 lower-case hex>-<parent span id: 16 lower-case hex>-<flags: 2 hex>`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A `traceparent` value that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid traceparent {value:?}: expected `00-<32 lower-case hex trace id>-<16 lower-case hex span id>-<2 hex flags>`, ids not all zero"
)]
pub struct TraceParentError {
    value: String,
}

/// One span's place in a trace, as W3C `traceparent` carries it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TraceParent {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
}

/// The `sampled` bit of the trace flags.
const SAMPLED: u8 = 0x01;

impl TraceParent {
    /// A span of the trace `trace_id`; `None` when either id is all zero (invalid in W3C).
    pub fn new(trace_id: [u8; 16], span_id: [u8; 8], flags: u8) -> Option<Self> {
        (trace_id != [0; 16] && span_id != [0; 8]).then_some(Self { trace_id, span_id, flags })
    }

    /// The first span of a new trace (sampled), ids from the operating system's random source.
    pub fn new_root() -> Self {
        let mut trace_id = [0u8; 16];
        fill_nonzero(&mut trace_id);
        Self { trace_id, span_id: new_span_id(), flags: SAMPLED }
    }

    /// A new span of the same trace (a child of this one), same flags.
    pub fn child(&self) -> Self {
        Self { span_id: new_span_id(), ..*self }
    }

    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    pub fn span_id(&self) -> [u8; 8] {
        self.span_id
    }

    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the caller recorded (sampled) this span.
    pub fn is_sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The trace id as 32 lower-case hex digits.
    pub fn trace_id_hex(&self) -> String {
        let mut out = String::with_capacity(32);
        push_hex(&mut out, &self.trace_id);
        out
    }
}

fn new_span_id() -> [u8; 8] {
    let mut id = [0u8; 8];
    fill_nonzero(&mut id);
    id
}

fn fill_nonzero(buf: &mut [u8]) {
    loop {
        // The OS's random source failing is not something a caller can handle (as for ids).
        getrandom::fill(buf).expect("the operating system's random source is unavailable");
        if buf.iter().any(|b| *b != 0) {
            return;
        }
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

/// Reads lower-case hex into `out`; false on any other character.
fn read_hex(text: &[u8], out: &mut [u8]) -> bool {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    for (i, byte) in out.iter_mut().enumerate() {
        match (digit(text[2 * i]), digit(text[2 * i + 1])) {
            (Some(hi), Some(lo)) => *byte = hi << 4 | lo,
            _ => return false,
        }
    }
    true
}

impl FromStr for TraceParent {
    type Err = TraceParentError;

    fn from_str(s: &str) -> Result<Self, TraceParentError> {
        let invalid = || TraceParentError { value: s.chars().take(80).collect() };
        let b = s.as_bytes();
        // Version 00 only: exactly 55 characters, dashes at their places.
        if b.len() != 55 || &b[..3] != b"00-" || b[35] != b'-' || b[52] != b'-' {
            return Err(invalid());
        }
        let (mut trace_id, mut span_id, mut flags) = ([0u8; 16], [0u8; 8], [0u8; 1]);
        if !(read_hex(&b[3..35], &mut trace_id)
            && read_hex(&b[36..52], &mut span_id)
            && read_hex(&b[53..], &mut flags))
        {
            return Err(invalid());
        }
        Self::new(trace_id, span_id, flags[0]).ok_or_else(invalid)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        push_hex(&mut out, &self.trace_id);
        out.push('-');
        push_hex(&mut out, &self.span_id);
        out.push('-');
        push_hex(&mut out, &[self.flags]);
        f.write_str(&out)
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({self})")
    }
}

impl TryFrom<String> for TraceParent {
    type Error = TraceParentError;
    fn try_from(s: String) -> Result<Self, TraceParentError> {
        s.parse()
    }
}

impl From<TraceParent> for String {
    fn from(t: TraceParent) -> String {
        t.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_w3c_example_reads_and_writes_back() {
        let t: TraceParent = EXAMPLE.parse().expect("the spec's example");
        assert_eq!(t.to_string(), EXAMPLE);
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.span_id(), [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert!(t.is_sampled());
        let unsampled: TraceParent =
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00".parse().expect("flags 00");
        assert!(!unsampled.is_sampled());
        // As JSON: the header's text.
        assert_eq!(serde_json::to_string(&t).expect("json"), format!("\"{EXAMPLE}\""));
        assert_eq!(serde_json::from_str::<TraceParent>(&format!("\"{EXAMPLE}\"")).expect("json"), t);
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "00",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // another version
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper case
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero span id
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  // short trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", // not hex
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0é4736-00f067aa0ba902b7-01", // not ASCII
        ] {
            let err = bad.parse::<TraceParent>().expect_err(bad);
            assert!(err.to_string().contains("invalid traceparent"), "{err}");
        }
        assert!(serde_json::from_str::<TraceParent>("\"00-nope\"").is_err());
    }

    #[test]
    fn roots_and_children() {
        let root = TraceParent::new_root();
        assert!(root.is_sampled());
        let child = root.child();
        assert_eq!(child.trace_id(), root.trace_id());
        assert_ne!(child.span_id(), root.span_id());
        assert_ne!(TraceParent::new_root().trace_id(), root.trace_id());
        assert_eq!(root.to_string().parse::<TraceParent>().expect("reads back"), root);
        assert!(TraceParent::new([0; 16], [1; 8], 1).is_none());
        assert!(TraceParent::new([1; 16], [0; 8], 1).is_none());
    }
}
