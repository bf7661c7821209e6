//! Between fetches, the worker's processing list is compared with what it runs; what it does
//! not run is handed back.

use std::time::Duration;

use tracing::warn;

use crate::config::WorkerConfig;
use crate::context::Ctx;

/// Reconciles the worker's processing list against what it runs, so a job whose fetch answer
/// was lost (Redis killed mid-reply, a reply that timed out, a pipeline cut short) is handed
/// back instead of sitting on a live worker's list, where no reaper looks.
pub(crate) struct Reconciler {
    every: Duration,
    pub(crate) next_at: tokio::time::Instant,
    /// After a failed fetch, answers may still land late (a paused Redis runs the command when
    /// it resumes): for this long, the whole list is compared at every pass.
    suspect_for: Duration,
    last_failure: Option<tokio::time::Instant>,
    /// Jobs were fetched since the last pass: compare the list's length at least.
    pub(crate) busy: bool,
    /// Even an idle worker compares the list's length once per lease: a stranded job from a
    /// cause nobody foresaw is still handed back.
    idle_every: Duration,
    last_check: tokio::time::Instant,
}

impl Reconciler {
    pub(crate) fn new(config: &WorkerConfig) -> Self {
        let every = config.heartbeat_interval();
        Self {
            every,
            next_at: tokio::time::Instant::now() + every,
            suspect_for: config.lease + 2 * (config.fetch_block + config.redis_timeout),
            last_failure: None,
            busy: false,
            idle_every: config.lease,
            last_check: tokio::time::Instant::now(),
        }
    }

    pub(crate) fn due(&self) -> bool {
        tokio::time::Instant::now() >= self.next_at
    }

    pub(crate) fn fetch_failed(&mut self) {
        self.last_failure = Some(tokio::time::Instant::now());
    }

    pub(crate) async fn run(&mut self, ctx: &Ctx) {
        self.next_at = tokio::time::Instant::now() + self.every;
        let (took, lost) = ctx.running.take_notes();
        if lost {
            self.fetch_failed();
        }
        let suspect = self.last_failure.is_some_and(|t| t.elapsed() < self.suspect_for);
        let busy = std::mem::take(&mut self.busy) || took;
        if !suspect && !busy && self.last_check.elapsed() < self.idle_every {
            return;
        }
        self.last_check = tokio::time::Instant::now();
        // No acknowledgement's jobs are between the list and `running` while this compares.
        let _comparing = ctx.running.comparing().await;
        let mut running = ctx.running.snapshot();
        if !suspect {
            let expected: usize = running.values().sum();
            match ctx.queue.processing_len(&ctx.worker).await {
                Ok(n) if n <= expected => return,
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %e, "reading the processing list failed");
                    return;
                }
            }
        }
        let listed = match ctx.queue.processing_jobs(&ctx.worker).await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "reading the processing list failed");
                return;
            }
        };
        let mut stranded = Vec::new();
        for job in listed {
            match running.get_mut(job.as_slice()) {
                Some(n) if *n > 0 => *n -= 1,
                _ => stranded.push(job),
            }
        }
        if stranded.is_empty() {
            return;
        }
        match ctx.queue.hand_back(&ctx.worker, &stranded).await {
            Ok(n) => {
                crate::metrics::handed_back(n);
                warn!(jobs = n, "handed back jobs whose fetch answer never arrived");
            }
            Err(e) => warn!(error = %e, "handing back stranded jobs failed; next pass retries"),
        }
    }
}
