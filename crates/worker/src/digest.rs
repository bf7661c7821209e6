//! The two steps of a scan digest after fan-out collected its findings: a timer that came due
//! flushes a digest whose scan never ended (`digest_due.v1`), and a flushed digest becomes one
//! `finding.digest` delivery (`digest.v1`), held through the endpoint's quiet hours. Each is one
//! Redis step with its job's acknowledgement, so a worker killed in between loses nothing: its
//! job is handed back and the step runs again on the same findings.

use entraguard_core::digest::{self, DigestItem, DigestReason};
use entraguard_core::job::{DeliveryJob, DigestDueJob, DigestJob, Job};
use entraguard_core::queue::Claimed;
use tracing::{info, warn};

use crate::context::Ctx;
use crate::persist::{persist, record};

/// A digest's longest wait ran out: flush it, unless its scan's end flushed it already.
pub(crate) async fn due(ctx: &Ctx, claimed: Claimed, job: DigestDueJob) {
    let build = Job::Digest(DigestJob { digest: job.digest.clone(), reason: job.reason }).encode();
    record(ctx, "flush digest", || async {
        Ok(ctx.queue.digest_due(&claimed, &job.digest, &build).await?.is_some())
    })
    .await;
    claimed.finish();
}

/// A flushed digest: build its `finding.digest` event and enqueue its one delivery.
pub(crate) async fn send(ctx: &Ctx, claimed: Claimed, job: DigestJob) {
    let stored = persist("read digest", || ctx.queue.digest_items(&job.digest)).await;
    let mut unreadable = 0usize;
    let items: Vec<DigestItem> = stored
        .iter()
        .filter_map(|b| {
            let item = serde_json::from_slice(b).ok();
            unreadable += usize::from(item.is_none());
            item
        })
        .collect();
    if unreadable > 0 {
        warn!(unreadable, "digest entries that do not decode were left out");
    }
    let delivery = (!items.is_empty()).then(|| {
        let n = items.len();
        let event = digest::build(&job.digest, job.reason, items);
        (n, DeliveryJob::new(event, job.digest.endpoint_id.clone()))
    });
    let mut hold_until = None;
    if let Some((_, d)) = &delivery {
        let route = persist("read endpoint route", || ctx.store.route(&job.digest.endpoint_id)).await;
        if let Some(rules) = route.as_ref().and_then(|r| r.rules()).filter(|r| r.quiet_hours.is_some()) {
            let now = persist("read redis time", || ctx.queue.redis_time_ms()).await;
            hold_until = rules.hold_until(&d.event, now);
        }
    }
    let encoded = delivery.as_ref().map(|(_, d)| Job::Delivery(d.clone()).encode());
    let done = record(ctx, "send digest", || {
        ctx.queue.digest_send(&claimed, &job.digest, encoded.as_deref(), hold_until)
    })
    .await;
    claimed.finish();
    if done && let Some((findings, d)) = &delivery {
        let reason = match job.reason {
            DigestReason::ScanCompleted => "scan.completed",
            DigestReason::ScanFailed => "scan.failed",
            DigestReason::MaxWait => "max_wait",
        };
        crate::metrics::digest_sent(reason, hold_until.is_some());
        info!(findings, delivery_id = %d.delivery_id, reason, held = hold_until.is_some(), "digest enqueued");
        if hold_until.is_some() {
            ctx.promoter_wake.notify_one();
        }
    }
}
