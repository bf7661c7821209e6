//! The jobs this worker process is running, by their exact bytes: what its processing list in
//! Redis should hold. The fetch loop compares the two (see `runner::Reconciler`) and hands back
//! anything on the list that nothing runs. The bytes are shared with the task running the job,
//! not copied.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// A multiset of running jobs.
#[derive(Debug, Default)]
pub struct Running {
    jobs: Mutex<HashMap<Arc<[u8]>, usize>>,
}

impl Running {
    /// A job was fetched and is about to run.
    pub fn start(&self, job: &Arc<[u8]>) {
        *self.lock().entry(job.clone()).or_insert(0) += 1;
    }

    /// A job's outcome is recorded (or it was handed back): it no longer runs.
    pub fn finish(&self, job: &Arc<[u8]>) {
        let mut jobs = self.lock();
        if let Some(n) = jobs.get_mut(job) {
            *n -= 1;
            if *n == 0 {
                jobs.remove(job);
            }
        }
    }

    /// What runs now, with how many copies of each.
    pub fn snapshot(&self) -> HashMap<Arc<[u8]>, usize> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<[u8]>, usize>> {
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
