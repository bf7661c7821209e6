//! The fuzz targets' properties (`fuzz/`), run on the stable test suite with generated inputs:
//! mutations of valid events and endpoint drafts (byte flips, cuts, inserted bytes) never make
//! parsing or validation panic, and whatever is accepted round-trips.

use crate::endpoint::{EndpointDraft, TargetPolicy};
use crate::event::Event;

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap_or(1)).unwrap_or(0)
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\\u0000",
    b"\xff",
    b"null",
    b"1e999",
    b"-1",
    b"\"evt_\"",
    b"\"finding.new\"",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(4) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = u8::try_from(rng.below(256)).unwrap_or(0);
            }
            1 if !v.is_empty() => v.truncate(rng.below(v.len())),
            2 => {
                let i = rng.below(v.len() + 1);
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(i..i, piece.iter().copied());
            }
            _ if v.len() > 2 => {
                let i = rng.below(v.len() - 1);
                let j = i + 1 + rng.below(v.len() - i - 1);
                v.drain(i..j);
            }
            _ => {}
        }
    }
    v
}

#[test]
fn mutated_events_never_panic_and_accepted_ones_round_trip() {
    let seeds: [&[u8]; 3] = [
        br#"{"event":"finding.severity_changed","tenant_id":"t","finding":{"id":"A-1","title":"x","severity":"high","previous_severity":"low","category":"c","affected":["a","b"],"remediation_url":"https://x.example/f"}}"#,
        br#"{"event":"scan.completed","tenant_id":"t","scan":{"run_id":"r","kind":"full","environment":"e","score":82,"grade":"B","new_findings":{"high":1}}}"#,
        br#"{"event":"compliance.report_ready","tenant_id":"t","report":{"framework":"SOC2","id":"r","score":91,"url":"https://x.example/r"}}"#,
    ];
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut accepted = 0;
    for i in 0..30_000 {
        let input = mutate(&mut rng, seeds[i % seeds.len()]);
        if let Ok(event) = Event::from_json(&input) {
            accepted += 1;
            let json = serde_json::to_vec(&event).expect("serializes");
            assert_eq!(Event::from_json(&json).expect("parses back"), event);
        }
    }
    assert!(accepted > 0, "some mutations stay valid");
}

#[test]
fn mutated_endpoint_drafts_never_panic() {
    let seed = br#"{"name":"SOC","channel":"slack","target":"https://hooks.slack.com/services/T0AAA/B0BBB/tok","events":["finding.new","scan.failed"],"enabled":true,"secret":null,"teams_format":null}"#;
    let mut rng = Rng(0x5eed_1234_abcd_0002);
    for _ in 0..30_000 {
        let input = mutate(&mut rng, seed);
        if let Ok(draft) = serde_json::from_slice::<EndpointDraft>(&input) {
            for allow_http in [false, true] {
                if let Ok(ep) = draft.validate(TargetPolicy { allow_http }) {
                    // The last path segment is where Slack keeps its token: never shown.
                    let view = ep.view();
                    if let Some(url) = ep.target.url()
                        && let Some(last) = url.path_segments().and_then(|mut s| s.next_back())
                        && url.path_segments().is_some_and(|s| s.count() > 1)
                        && !last.is_empty()
                    {
                        assert!(
                            view.target.ends_with("/****") || view.target.contains("?****"),
                            "{}",
                            view.target
                        );
                    }
                    let _ = ep.warnings();
                }
            }
        }
    }
}
