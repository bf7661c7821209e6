//! A claimed job: one a worker took onto its own processing list. Every way of finishing it
//! (delivered, retried, parked, dead-lettered, routed, a digest's step) is a script that takes
//! it off that list by its exact bytes, and does nothing when it is no longer there (the lease
//! ran out and another worker runs it): a job is finished once, by the worker that holds it.
//!
//! [`Claimed`] is the job as the step that runs it owns it: not `Clone`, ended by
//! [`Claimed::finish`] once its outcome is in Redis. One dropped unfinished is said out loud (a
//! `warn` and [`dropped_unfinished`]) and goes back the way a dead worker's jobs do: the
//! worker's reconciler or, if the process dies, another worker's lease check hands it back.
//! [`Claim`] is what a finishing script needs of it (its bytes and its processing list), lent to
//! the queue's methods and to the batchers that share one round trip among many.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::job::Job;

/// Claimed jobs dropped without [`Claimed::finish`] in this process.
static DROPPED_UNFINISHED: AtomicU64 = AtomicU64::new(0);

/// How many claimed jobs this process dropped unfinished (0 in a healthy run).
pub fn dropped_unfinished() -> u64 {
    DROPPED_UNFINISHED.load(Ordering::Relaxed)
}

/// A claimed job's exact bytes and the processing list that holds it. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Claim {
    bytes: Arc<[u8]>,
    list: Arc<str>,
}

impl Claim {
    /// The job's exact bytes, as Redis holds them (a poison job need not even be UTF-8).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes, shared (the worker's set of running jobs holds them, not a copy).
    pub fn shared_bytes(&self) -> Arc<[u8]> {
        self.bytes.clone()
    }

    /// The processing list that holds it.
    pub(crate) fn list(&self) -> &str {
        &self.list
    }

    /// The processing list, shared (jobs taken onto the same list are claimed with it).
    pub(crate) fn shared_list(&self) -> &Arc<str> {
        &self.list
    }

    /// Decodes the job. An error marks a poison job.
    pub fn decode(&self) -> Result<Job, serde_json::Error> {
        Job::decode(&self.bytes)
    }

    /// Owns this job again after the [`Claimed`] that held it was lost on the way (the step
    /// running it panicked): to dead-letter it rather than run it again.
    pub fn reclaim(self) -> Claimed {
        Claimed { claim: self, open: true }
    }
}

impl fmt::Debug for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claim").field("bytes", &self.bytes.len()).field("list", &self.list).finish()
    }
}

/// A job this worker holds on its processing list, owned by the step that runs it (see the
/// module's text).
#[derive(Debug)]
pub struct Claimed {
    claim: Claim,
    open: bool,
}

impl Claimed {
    pub(crate) fn new(bytes: Vec<u8>, list: Arc<str>) -> Self {
        Self { claim: Claim { bytes: bytes.into(), list }, open: true }
    }

    /// Its outcome is in Redis (or the lease was lost and another worker has it): it ends here.
    pub fn finish(mut self) {
        self.open = false;
    }

    /// What a finishing script needs of it, to lend.
    pub fn claim(&self) -> Claim {
        self.claim.clone()
    }
}

impl Deref for Claimed {
    type Target = Claim;

    fn deref(&self) -> &Claim {
        &self.claim
    }
}

impl Drop for Claimed {
    fn drop(&mut self) {
        if self.open {
            DROPPED_UNFINISHED.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                list = %self.claim.list,
                bytes = self.claim.bytes.len(),
                "a claimed job was dropped unfinished: it stays on the processing list until it is handed back"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_job_ends_quietly_and_one_dropped_open_is_counted() {
        let list: Arc<str> = Arc::from("{p}:processing:w");
        let before = dropped_unfinished();
        Claimed::new(b"job".to_vec(), list.clone()).finish();
        assert_eq!(dropped_unfinished(), before);
        let open = Claimed::new(b"job".to_vec(), list);
        let claim = open.claim();
        drop(open);
        assert_eq!(dropped_unfinished(), before + 1);
        let again = claim.reclaim();
        assert_eq!(again.bytes(), b"job");
        again.finish();
        assert_eq!(dropped_unfinished(), before + 1);
    }
}
