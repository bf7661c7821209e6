//! The worker's lease, and the reaper that hands dead workers' jobs back.

use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use crate::context::Ctx;

/// How often a worker sweeps each shard's outboxes: entries are swept once older than
/// `OUTBOX_SWEEP_AGE`, so one left behind moves within about 40 s.
const OUTBOX_SWEEP_EVERY: Duration = Duration::from_secs(30);
use crate::shutdown::Shutdown;

/// Renews the lease every third of it, and hands back the jobs of workers whose lease ran out:
/// each renewal says when the next other worker's lease runs out, and this task wakes right
/// then, so a dead worker's jobs are back within about `NOTIFY_LEASE` of its last renewal.
pub(crate) async fn maintenance(ctx: Arc<Ctx>, mut shutdown: Shutdown) {
    use tokio::time::Instant;
    let every = ctx.config.heartbeat_interval();
    // Dead workers stay listed this long, so a fetch Redis serves after one died is found.
    let forget_after = ctx.config.lease * 10;
    let mut next_beat = Instant::now() + every;
    let mut next_expiry: Option<Instant> = None;
    // Queue shards: this shard's outboxes are swept for entries whose worker died before
    // moving them (none with one shard), first at start-up, like the reap.
    let sweeping = ctx.shards.served().len() > 1;
    let mut next_sweep = Instant::now();
    // Look once at start-up: workers may have died while none was running.
    let mut reap = true;
    loop {
        if reap {
            match ctx.queue.reap_dead_workers(&ctx.worker, forget_after).await {
                Ok((moved, still_listed)) => {
                    if moved > 0 {
                        // Its scheduled retries are now ours to promote.
                        ctx.promoter_wake.notify_one();
                    }
                    reap = still_listed;
                }
                Err(e) => warn!(error = %e, "handing back dead workers' jobs failed"),
            }
        }
        let mut wake = next_expiry.map_or(next_beat, |e| e.min(next_beat));
        if sweeping {
            wake = wake.min(next_sweep);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = shutdown.wait() => return,
        }
        if sweeping && Instant::now() >= next_sweep {
            next_sweep = Instant::now() + OUTBOX_SWEEP_EVERY;
            match ctx.shards.sweep_outbox(ctx.shard).await {
                Ok(f) if f.moved + f.duplicates > 0 => {
                    crate::metrics::forwarded(f.moved);
                    tracing::info!(
                        moved = f.moved,
                        duplicates = f.duplicates,
                        "outbox entries left behind moved to their shards"
                    );
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "sweeping the outbox failed"),
            }
            if Instant::now() < next_beat {
                continue;
            }
        }
        match ctx.queue.heartbeat(&ctx.worker, ctx.config.lease).await {
            Ok(hb) => {
                let now = Instant::now();
                next_beat = now + every;
                // A few ms after the other lease runs out, so Redis's clock has passed it too.
                next_expiry = hb.next_expiry_in.map(|d| now + d + Duration::from_millis(5));
                reap |= hb.expired_others;
            }
            Err(e) => {
                warn!(error = %e, "lease renewal failed");
                next_beat = Instant::now() + every.min(Duration::from_secs(1));
                next_expiry = None;
            }
        }
    }
}
