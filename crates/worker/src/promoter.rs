//! The promoter: moves due retries (and due lanes' deliveries) to the ready lists, waking exactly
//! when the next one is due.

use std::sync::Arc;
use std::time::Duration;

use entraguard_core::queue::PROMOTE_CHUNK;
use tracing::{info, warn};

use crate::context::Ctx;
use crate::gate::LANE_SAFETY_LOOK;
use crate::shutdown::Shutdown;

/// Longest the promoter sleeps when no retry is due sooner. Retries scheduled by another
/// worker are that worker's to promote; if it dies, the reap that hands its jobs back wakes
/// this promoter too, so this is only a safety net.
const IDLE_PROMOTE: Duration = Duration::from_secs(60);

/// How often the promoter reports what it moved, at most (it may move jobs thousands of times
/// a minute while a backlog drains).
const PROMOTE_REPORT_EVERY: Duration = Duration::from_secs(60);

/// Moves due retries to ready. Sleeps until the earliest scheduled job is due, or until this
/// worker schedules one or hands back a dead worker's jobs; looks again at least every
/// `IDLE_PROMOTE`.
pub(crate) async fn promoter(ctx: Arc<Ctx>, mut shutdown: Shutdown) {
    let idle = IDLE_PROMOTE;
    let mut moved_since_report = 0usize;
    let mut last_report = tokio::time::Instant::now();
    loop {
        let wait = match ctx.queue.promote_due().await {
            Ok(p) => {
                moved_since_report += p.moved;
                for endpoint in &p.due_lanes {
                    // One at a time: a paced endpoint takes one per send slot, an open
                    // breaker's due probe is one, and a lane waiting for the in-flight cap is
                    // released by finishing deliveries, whichever worker's; this look is the
                    // safety net when none finishes (every worker replaced): the one it
                    // releases finds the lane holding work when it finishes, and releases as
                    // many as its worker has free slots. A cap's worth here would be parked
                    // again every second while the endpoint hangs.
                    // A rate-limited lane releases its turns: as many as have a send slot within
                    // PACE_AHEAD, at most the endpoint's cap.
                    let most = ctx.config.endpoint_concurrency as usize;
                    if let Err(e) = ctx.queue.release_lane(endpoint, 1, LANE_SAFETY_LOOK, most).await {
                        warn!(error = %e, endpoint, "releasing a lane failed");
                    }
                }
                if p.moved >= PROMOTE_CHUNK || !p.due_lanes.is_empty() {
                    // More due, or lanes whose next look was just set: look again at once.
                    Duration::ZERO
                } else {
                    let next = match (p.next_due_in, p.next_lane_in) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    next.map_or(idle, |d| (d + Duration::from_millis(1)).min(idle))
                }
            }
            Err(e) => {
                warn!(error = %e, "promoting due retries failed");
                Duration::from_secs(1)
            }
        };
        if moved_since_report > 0 && last_report.elapsed() >= PROMOTE_REPORT_EVERY {
            info!(moved = moved_since_report, over = ?last_report.elapsed(), "scheduled jobs moved to ready (retries, deliveries held by quiet hours, digest timers)");
            moved_since_report = 0;
            last_report = tokio::time::Instant::now();
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.promoter_wake.notified() => {}
            _ = shutdown.wait() => return,
        }
    }
}
