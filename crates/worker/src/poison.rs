//! Dead letters of jobs that no step can take: undecodable, too long to read, an invalid event,
//! or one whose handler panicked. Each gets an id of its own (it may have none that can be read)
//! and its reason, and the worker goes on.

use tracing::error;

use entraguard_core::queue::{Claimed, DeadLetterDraft};

use crate::context::Ctx;
use crate::persist::{persist, record};

/// A fresh dead-letter id for a job whose own id cannot be trusted or read.
fn id() -> String {
    format!("job_{}", entraguard_core::ids::new_ulid())
}

/// Dead-letters a claimed job with `reason`, counted as poison.
pub(crate) async fn dead_letter(ctx: &Ctx, claimed: Claimed, reason: String) {
    crate::metrics::poison();
    let draft = DeadLetterDraft { id: id(), reason, delivery: None };
    error!(dead_letter_id = %draft.id, reason = %draft.reason, "poison job dead-lettered");
    record(ctx, "dead-letter", || ctx.queue.dead_letter(&claimed, &draft)).await;
    claimed.finish();
}

/// Dead-letters a job too long to read, straight from the processing list.
pub(crate) async fn oversized(ctx: &Ctx) {
    crate::metrics::poison();
    let id = id();
    let len =
        persist("dead-letter oversized job", || ctx.queue.dead_letter_oversized(&ctx.worker, &id)).await;
    error!(dead_letter_id = %id, bytes = len, "oversized job dead-lettered unread");
}
