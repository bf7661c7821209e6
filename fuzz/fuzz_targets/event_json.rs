#![no_main]
//! Event parsing and validation never panics, and what it accepts serializes and parses back.

use entraguard_core::event::Event;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = Event::from_json(data) {
        let json = serde_json::to_vec(&event).expect("an accepted event serializes");
        let back = Event::from_json(&json).expect("an accepted event parses back");
        assert_eq!(back, event);
    }
});
