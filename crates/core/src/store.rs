//! Endpoint configuration in Redis: one hash, endpoint id → endpoint JSON. Writes replace an
//! endpoint whole, so a reader never sees one half-updated.

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::endpoint::Endpoint;
use crate::ids::EndpointId;
use crate::keys::KeySpace;
use crate::timestamp::Timestamp;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("endpoint {0} not found")]
    NotFound(EndpointId),
    #[error("endpoint {id} in Redis is unreadable: {source}")]
    Corrupt {
        id: String,
        source: serde_json::Error,
    },
}

/// Reads and writes endpoints.
#[derive(Clone)]
pub struct EndpointStore {
    conn: ConnectionManager,
    keys: KeySpace,
}

impl EndpointStore {
    pub fn new(conn: ConnectionManager, keys: KeySpace) -> Self {
        Self { conn, keys }
    }

    /// Stores a new endpoint or replaces one with the same id.
    pub async fn put(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        let json = serde_json::to_string(endpoint).map_err(|source| StoreError::Corrupt {
            id: endpoint.id.to_string(),
            source,
        })?;
        let mut conn = self.conn.clone();
        let _: () = conn
            .hset(self.keys.endpoints(), endpoint.id.as_str(), json)
            .await?;
        Ok(())
    }

    /// One endpoint, or `None` if there is no such id.
    pub async fn get(&self, id: &EndpointId) -> Result<Option<Endpoint>, StoreError> {
        let mut conn = self.conn.clone();
        let json: Option<String> = conn.hget(self.keys.endpoints(), id.as_str()).await?;
        json.map(|j| {
            serde_json::from_str(&j).map_err(|source| StoreError::Corrupt {
                id: id.to_string(),
                source,
            })
        })
        .transpose()
    }

    /// Every endpoint, oldest first. Unreadable entries are skipped with a warning.
    pub async fn list(&self) -> Result<Vec<Endpoint>, StoreError> {
        let mut conn = self.conn.clone();
        let all: Vec<(String, String)> = conn.hgetall(self.keys.endpoints()).await?;
        let mut endpoints: Vec<Endpoint> = all
            .into_iter()
            .filter_map(|(id, json)| match serde_json::from_str(&json) {
                Ok(e) => Some(e),
                Err(e) => {
                    tracing::warn!(endpoint_id = %id, error = %e, "skipping unreadable endpoint");
                    None
                }
            })
            .collect();
        endpoints.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(endpoints)
    }

    /// Enables or disables an endpoint; returns it as stored.
    pub async fn set_enabled(
        &self,
        id: &EndpointId,
        enabled: bool,
    ) -> Result<Endpoint, StoreError> {
        let mut ep = self
            .get(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.clone()))?;
        ep.enabled = enabled;
        ep.updated_at = Timestamp::now();
        self.put(&ep).await?;
        Ok(ep)
    }

    /// Deletes an endpoint. `false` if there was none.
    pub async fn delete(&self, id: &EndpointId) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let n: i64 = conn.hdel(self.keys.endpoints(), id.as_str()).await?;
        Ok(n > 0)
    }
}
