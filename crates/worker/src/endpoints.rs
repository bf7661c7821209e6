//! The endpoints this process delivers to, cached, and the routes fan-out reads, kept current
//! by the endpoints' revision ([`KeySpace::endpoints_rev`]): every write to the endpoints hash
//! raises it in the same step, and every batch fetch reads it in the same step as the jobs. So
//! a change (new URL, new secret, disabled, deleted) applies to every delivery fetched after it
//! was written, with no read of the endpoint per delivery: a delivery costs no endpoint `HGET`,
//! JSON parse or unsealing while nothing changes.
//!
//! A job taken by the blocking fetch (an idle worker's first job) carries no revision: the
//! cache is then not trusted, and reads go to Redis until a batch fetch reports one. Entries
//! older than [`MAX_AGE`] are read again, a safety net for a hand edit of the hash that forgot
//! to raise the revision (the recipe in docs/redis-layout.md raises it).
//!
//! Secrets stay as current as the stored record: a rotated secret's grace is computed from the
//! endpoint at send time ([`Endpoint::signing_secrets`]), so a cached endpoint never signs
//! with a secret past its grace.
//!
//! The deployment's silences are kept the same way: every silence write raises the same
//! revision, so fan-out reads them from Redis only when it moves (or after [`MAX_AGE`]).
//!
//! [`KeySpace::endpoints_rev`]: entraguard_core::keys::KeySpace::endpoints_rev

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use entraguard_core::endpoint::Endpoint;
use entraguard_core::ids::EndpointId;
use entraguard_core::queue::Shards;
use entraguard_core::silences::{SilenceSet, SilenceStore, SilenceStoreError};
use entraguard_core::store::{EndpointStore, Route, StoreError};

/// Longest an entry is trusted, whatever the revision says.
pub const MAX_AGE: Duration = Duration::from_secs(30);

/// Cached endpoints and routes. Cheap to share behind the worker's context.
#[derive(Debug, Default)]
pub struct EndpointCache {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The revision the entries belong to; `None`: unknown, nothing is kept.
    rev: Option<u64>,
    endpoints: HashMap<EndpointId, (Arc<Endpoint>, Instant)>,
    routes: Option<(Arc<Vec<Route>>, Instant)>,
    silences: Option<(Arc<SilenceSet>, Instant)>,
}

impl State {
    fn clear(&mut self, rev: Option<u64>) {
        self.rev = rev;
        self.endpoints.clear();
        self.routes = None;
        self.silences = None;
    }
}

impl EndpointCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A batch fetch read revision `rev`: entries of another revision are dropped.
    pub fn observe(&self, rev: u64) -> bool {
        let mut state = self.lock();
        let moved = state.rev != Some(rev);
        if moved {
            state.clear(Some(rev));
        }
        moved
    }

    /// Jobs were taken without reading the revision: trust nothing until the next observation.
    pub fn forget(&self) {
        self.lock().clear(None);
    }

    /// The revision the cache holds entries for, if known.
    pub fn revision(&self) -> Option<u64> {
        self.lock().rev
    }

    /// One endpoint, from the cache or from Redis (`None`: deleted). Unreadable records are
    /// never cached: each delivery reads them again (someone may fix them).
    pub async fn get(
        &self,
        store: &EndpointStore,
        id: &EndpointId,
    ) -> Result<Option<Arc<Endpoint>>, StoreError> {
        let rev = {
            let state = self.lock();
            if let Some((ep, at)) = state.endpoints.get(id)
                && at.elapsed() < MAX_AGE
            {
                return Ok(Some(ep.clone()));
            }
            state.rev
        };
        let Some(ep) = store.get(id).await? else { return Ok(None) };
        let ep = Arc::new(ep);
        let mut state = self.lock();
        // Kept only if no newer revision was seen while it was read (it may predate it).
        if rev.is_some() && state.rev == rev {
            state.endpoints.insert(id.clone(), (ep.clone(), Instant::now()));
        }
        Ok(Some(ep))
    }

    /// Every endpoint's route, for fan-out, from the cache or from Redis.
    pub async fn routes(&self, store: &EndpointStore) -> Result<Arc<Vec<Route>>, StoreError> {
        let rev = {
            let state = self.lock();
            if let Some((routes, at)) = &state.routes
                && at.elapsed() < MAX_AGE
            {
                return Ok(routes.clone());
            }
            state.rev
        };
        let routes = Arc::new(store.routes().await?);
        let mut state = self.lock();
        if rev.is_some() && state.rev == rev {
            state.routes = Some((routes.clone(), Instant::now()));
        }
        Ok(routes)
    }

    /// The silences not over, for fan-out, from the cache or from Redis (the store of `shards`).
    pub async fn silences(&self, shards: &Shards) -> Result<Arc<SilenceSet>, SilenceStoreError> {
        let rev = {
            let state = self.lock();
            if let Some((set, at)) = &state.silences
                && at.elapsed() < MAX_AGE
            {
                return Ok(set.clone());
            }
            state.rev
        };
        let set = Arc::new(SilenceStore::new(shards).current().await?);
        let mut state = self.lock();
        if rev.is_some() && state.rev == rev {
            state.silences = Some((set.clone(), Instant::now()));
        }
        Ok(set)
    }
}
