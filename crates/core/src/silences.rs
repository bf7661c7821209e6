//! Silences in Redis ([`entraguard_model::silence`] is what they are): one hash in shard 0, an
//! audit list beside it, and in each queue shard what they kept from that shard's endpoints
//! (written by fan-out, `route.lua`). The CLI and the admin API create, list, show and expire
//! through [`SilenceStore`]; workers read [`SilenceStore::current`] when the endpoints' revision
//! moves, which every write here raises in the same step (so fan-out never reads silences per
//! event, and a new silence applies to every event fetched after it was written).
//!
//! Times are Redis's clock (`TIME`): a silence starts, ends and is expired by the same clock the
//! workers decide by, whatever the clocks of the machines that run the CLI or the admin server.

use std::collections::HashMap;
use std::time::Duration;

use redis::AsyncCommands;

pub use crate::ids::SilenceId;
use crate::keys::KeySpace;
use crate::queue::Shards;
use crate::redis_conn::RedisConn;
pub use entraguard_model::silence::*;

/// Most entries the audit list keeps (the oldest are dropped).
pub const AUDIT_MAX_ENTRIES: usize = 1000;
/// How long an expired silence stays listed (with its counts) before a create deletes it.
pub const EXPIRED_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum SilenceStoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Invalid(#[from] SilenceError),
    #[error("silence {0} not found")]
    NotFound(String),
    #[error("silence {id} is already over (it ended at {ended})")]
    AlreadyOver { id: SilenceId, ended: String },
    // Never serde's text: a stored value is the operator's, but keep the shape of store.rs.
    #[error("silence {id} in Redis is unreadable: {reason}")]
    Corrupt { id: String, reason: String },
}

/// Reads and writes silences. Cheap to clone.
#[derive(Clone)]
pub struct SilenceStore {
    conn: RedisConn,
    home: KeySpace,
    /// Every shard whose counts are summed (the counted shards: placed, draining, earlier).
    counted: Vec<KeySpace>,
}

impl SilenceStore {
    /// The silences of `shards`' deployment (stored in shard 0, counted in every shard).
    pub fn new(shards: &Shards) -> Self {
        Self {
            conn: shards.connection(),
            home: shards.home().keys().clone(),
            counted: shards.counted().iter().map(|q| q.keys().clone()).collect(),
        }
    }

    /// Redis's clock, Unix ms.
    pub async fn now_ms(&self) -> Result<i64, SilenceStoreError> {
        let mut conn = self.conn.clone();
        let (s, us): (i64, i64) = conn.query_at(&redis::cmd("TIME"), &self.home.silences()).await?;
        Ok(s * 1000 + us / 1000)
    }

    fn decode(id: &str, json: &str) -> Result<Silence, SilenceStoreError> {
        serde_json::from_str(json).map_err(|e| SilenceStoreError::Corrupt {
            id: id.chars().take(80).collect(),
            reason: crate::store::describe_json_error(&e),
        })
    }

    /// Stores `silence` and its audit entry, raising the endpoints' revision, in one step.
    async fn write(&self, silence: &Silence, entry: &AuditEntry) -> Result<(), SilenceStoreError> {
        let json = serde_json::to_string(silence)
            .map_err(|e| SilenceStoreError::Corrupt { id: silence.id.to_string(), reason: e.to_string() })?;
        let audit = serde_json::to_string(entry).unwrap_or_default();
        let max = isize::try_from(AUDIT_MAX_ENTRIES).unwrap_or(isize::MAX) - 1;
        let mut conn = self.conn.clone();
        let _: () = redis::pipe()
            .atomic()
            .hset(self.home.silences(), silence.id.as_str(), json)
            .ignore()
            .incr(self.home.endpoints_rev(), 1)
            .ignore()
            .lpush(self.home.silences_audit(), audit)
            .ignore()
            .ltrim(self.home.silences_audit(), 0, max)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Validates `draft` against Redis's clock and stores the new silence (audited as created
    /// by its author). Silences that ended more than [`EXPIRED_KEPT`] ago go first.
    pub async fn create(&self, draft: &SilenceDraft) -> Result<Silence, SilenceStoreError> {
        let now = self.now_ms().await?;
        let silence = draft.validate(now)?;
        if let Some(ep) = &silence.endpoint_id {
            let mut conn = self.conn.clone();
            let known: bool = conn.hexists(self.home.endpoints(), ep.as_str()).await?;
            if !known {
                return Err(SilenceError::Field {
                    field: "endpoint_id",
                    reason: format!("no endpoint {ep}"),
                }
                .into());
            }
        }
        self.forget_old(now).await?;
        self.write(&silence, &AuditEntry::new(now, &silence.created_by, AuditAction::Created, &silence))
            .await?;
        Ok(silence)
    }

    /// Ends a silence now (Redis's clock), recording who did; refused when it is already over.
    pub async fn expire(&self, id: &str, by: &str) -> Result<Silence, SilenceStoreError> {
        let by = person("by", by)?;
        let now = self.now_ms().await?;
        let mut silence = self.get(id).await?.ok_or_else(|| SilenceStoreError::NotFound(id.to_owned()))?;
        if silence.state(now) == SilenceState::Expired {
            return Err(SilenceStoreError::AlreadyOver {
                ended: rfc3339_ms(silence.ends_at_ms),
                id: silence.id,
            });
        }
        silence.ends_at_ms = now;
        // A pending silence expired before its start keeps an empty window.
        silence.starts_at_ms = silence.starts_at_ms.min(now);
        silence.expired_by = Some(by.clone());
        self.write(&silence, &AuditEntry::new(now, &by, AuditAction::Expired, &silence)).await?;
        Ok(silence)
    }

    /// One silence, `None` if there is no such id.
    pub async fn get(&self, id: &str) -> Result<Option<Silence>, SilenceStoreError> {
        if id.parse::<SilenceId>().is_err() {
            return Ok(None);
        }
        let mut conn = self.conn.clone();
        let json: Option<String> = conn.hget(self.home.silences(), id).await?;
        json.map(|j| Self::decode(id, &j)).transpose()
    }

    /// Every silence (active, pending, expired), newest first. Unreadable ones are logged and
    /// left out.
    pub async fn list(&self) -> Result<Vec<Silence>, SilenceStoreError> {
        let mut conn = self.conn.clone();
        let all: Vec<(String, String)> = conn.hgetall(self.home.silences()).await?;
        let mut out: Vec<Silence> = all
            .into_iter()
            .filter_map(|(id, json)| match Self::decode(&id, &json) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping unreadable silence");
                    None
                }
            })
            .collect();
        out.sort_by(|a, b| b.id.cmp(&a.id));
        Ok(out)
    }

    /// What fan-out needs: the silences not over by Redis's clock now (those over never match
    /// again: an end only ever moves earlier).
    pub async fn current(&self) -> Result<SilenceSet, SilenceStoreError> {
        let now = self.now_ms().await?;
        Ok(SilenceSet::new(self.list().await?.into_iter().filter(|s| s.ends_at_ms > now).collect()))
    }

    /// The audit list, newest first (at most `limit`).
    pub async fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, SilenceStoreError> {
        let mut conn = self.conn.clone();
        let end = isize::try_from(limit.min(AUDIT_MAX_ENTRIES)).unwrap_or(isize::MAX) - 1;
        if end < 0 {
            return Ok(Vec::new());
        }
        let raw: Vec<String> = conn.lrange(self.home.silences_audit(), 0, end).await?;
        Ok(raw.iter().filter_map(|j| serde_json::from_str(j).ok()).collect())
    }

    /// What each silence kept back, summed over every counted shard: deliveries not made and
    /// the last events, newest first.
    pub async fn counts(
        &self,
        ids: &[SilenceId],
    ) -> Result<HashMap<SilenceId, (u64, Vec<String>)>, SilenceStoreError> {
        let mut out: HashMap<SilenceId, (u64, Vec<String>)> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let fields: Vec<String> =
            ids.iter().flat_map(|id| [id.to_string(), format!("{id}:recent")]).collect();
        let mut conn = self.conn.clone();
        for keys in &self.counted {
            let vals: Vec<Option<String>> =
                redis::cmd("HMGET").arg(keys.silenced()).arg(&fields).query_async(&mut conn).await?;
            for (id, pair) in ids.iter().zip(vals.chunks(2)) {
                let entry = out.entry(id.clone()).or_default();
                entry.0 += pair.first().cloned().flatten().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
                if let Some(Some(recent)) = pair.get(1) {
                    entry.1.extend(recent.split_whitespace().map(str::to_owned));
                }
            }
        }
        if self.counted.len() > 1 {
            // Event ids are ULIDs: newest first across shards is by id.
            for (_, recent) in out.values_mut() {
                recent.sort_by(|a, b| b.cmp(a));
                recent.dedup();
                recent.truncate(RECENT_EVENTS);
            }
        }
        Ok(out)
    }

    /// Every silence as shown, newest first, with what it silenced.
    pub async fn views(&self) -> Result<Vec<SilenceView>, SilenceStoreError> {
        let now = self.now_ms().await?;
        let list = self.list().await?;
        let ids: Vec<SilenceId> = list.iter().map(|s| s.id.clone()).collect();
        let mut counts = self.counts(&ids).await?;
        Ok(list
            .iter()
            .map(|s| {
                let (n, recent) = counts.remove(&s.id).unwrap_or_default();
                s.view(now, n, recent)
            })
            .collect())
    }

    /// One silence as shown, `None` if there is no such id.
    pub async fn view(&self, id: &str) -> Result<Option<SilenceView>, SilenceStoreError> {
        let Some(s) = self.get(id).await? else { return Ok(None) };
        self.shown(&s).await.map(Some)
    }

    /// `silence` as shown now, with what it silenced.
    pub async fn shown(&self, silence: &Silence) -> Result<SilenceView, SilenceStoreError> {
        let now = self.now_ms().await?;
        let (n, recent) =
            self.counts(std::slice::from_ref(&silence.id)).await?.remove(&silence.id).unwrap_or_default();
        Ok(silence.view(now, n, recent))
    }

    /// Deletes silences that ended more than [`EXPIRED_KEPT`] before `now`, and their counts.
    async fn forget_old(&self, now: i64) -> Result<(), SilenceStoreError> {
        let kept = i64::try_from(EXPIRED_KEPT.as_millis()).unwrap_or(i64::MAX);
        let old: Vec<String> = self
            .list()
            .await?
            .into_iter()
            .filter(|s| s.ends_at_ms < now.saturating_sub(kept))
            .map(|s| s.id.to_string())
            .collect();
        if old.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let _: () = conn.hdel(self.home.silences(), &old).await?;
        let fields: Vec<String> = old.iter().flat_map(|id| [id.clone(), format!("{id}:recent")]).collect();
        for keys in &self.counted {
            let _: () = conn.hdel(keys.silenced(), &fields).await?;
        }
        Ok(())
    }
}
