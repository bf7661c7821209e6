//! The jobs this worker process is running, by their exact bytes: what its processing list in
//! Redis should hold. The fetch loop compares the two (see `runner::Reconciler`) and hands back
//! anything on the list that nothing runs. The bytes are shared with the task running the job,
//! not copied.
//!
//! Jobs reach the list two ways: the fetch loop's fetches, and the acknowledgements of
//! delivered jobs, which take the next jobs in the same step ([`crate::acker`]). The fetch loop
//! never compares during its own fetch; an acknowledgement that takes jobs holds
//! [`Running::taking`] from before its call until the jobs it got are started here, and the
//! comparison holds [`Running::comparing`], so it never sees a job that is on the list but not
//! yet here.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Running jobs by their bytes, with how many copies of each. Hashed with foldhash, not std's
/// SipHash: every job's whole bytes (about a kilobyte) are hashed as it starts and as it ends,
/// and SipHash was 1.8 % of the worker's CPU at c50 (perf). foldhash's `RandomState` is seeded
/// per map, so crafted job bytes cannot aim at its buckets from outside the process.
pub type RunningJobs = HashMap<Arc<[u8]>, usize, foldhash::fast::RandomState>;

/// A multiset of running jobs, and what the reconciler must know of the jobs taken by
/// acknowledgements.
#[derive(Debug)]
pub struct Running {
    jobs: Mutex<RunningJobs>,
    /// Shared by acknowledgements that take jobs, exclusive for the comparison.
    claims: RwLock<()>,
    /// Whether acknowledgements may take the next jobs (not once shutdown began).
    open: AtomicBool,
    /// An acknowledgement took jobs since the last comparison.
    took: AtomicBool,
    /// An acknowledgement that was taking jobs failed: its answer may be lost with jobs in it.
    lost: AtomicBool,
}

impl Default for Running {
    fn default() -> Self {
        Self {
            jobs: Mutex::default(),
            claims: RwLock::new(()),
            open: AtomicBool::new(true),
            took: AtomicBool::new(false),
            lost: AtomicBool::new(false),
        }
    }
}

impl Running {
    /// Held by an acknowledgement that takes jobs, until they are started here.
    pub async fn taking(&self) -> RwLockReadGuard<'_, ()> {
        self.claims.read().await
    }

    /// Held by the comparison of the processing list with what runs.
    pub async fn comparing(&self) -> RwLockWriteGuard<'_, ()> {
        self.claims.write().await
    }

    /// Whether acknowledgements may take the next jobs.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// Shutdown began: acknowledgements take no more jobs.
    pub fn close(&self) {
        self.open.store(false, Ordering::Relaxed);
    }

    /// An acknowledgement took jobs (`lost`: or may have, its answer lost).
    pub fn note_taken(&self, lost: bool) {
        self.took.store(true, Ordering::Relaxed);
        if lost {
            self.lost.store(true, Ordering::Relaxed);
        }
    }

    /// Whether acknowledgements took jobs, and whether one may have lost its answer, since the
    /// last call.
    pub fn take_notes(&self) -> (bool, bool) {
        (self.took.swap(false, Ordering::Relaxed), self.lost.swap(false, Ordering::Relaxed))
    }

    /// A job was fetched and is about to run.
    pub fn start(&self, job: &Arc<[u8]>) {
        *self.lock().entry(job.clone()).or_insert(0) += 1;
    }

    /// A job's outcome is recorded (or it was handed back): it no longer runs.
    pub fn finish(&self, job: &Arc<[u8]>) {
        // One lookup (an entry) rather than a lookup and a removal: the bytes are hashed once.
        if let Entry::Occupied(mut copies) = self.lock().entry(job.clone()) {
            *copies.get_mut() -= 1;
            if *copies.get() == 0 {
                copies.remove();
            }
        }
    }

    /// What runs now, with how many copies of each.
    pub fn snapshot(&self) -> RunningJobs {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RunningJobs> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_copies_and_forgets_finished_jobs() {
        let running = Running::default();
        let a: Arc<[u8]> = Arc::from(&b"job a"[..]);
        let b: Arc<[u8]> = Arc::from(&b"job b"[..]);
        running.start(&a);
        running.start(&a);
        running.start(&b);
        running.finish(&a);
        let snap = running.snapshot();
        assert_eq!(snap.get(&b"job a"[..]), Some(&1));
        assert_eq!(snap.get(&b"job b"[..]), Some(&1));
        running.finish(&a);
        running.finish(&b);
        running.finish(&b);
        assert!(running.snapshot().is_empty());
    }
}
