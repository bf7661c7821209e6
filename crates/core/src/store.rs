//! Endpoint configuration in Redis: one hash, endpoint id → endpoint JSON. Writes replace an
//! endpoint whole, so a reader never sees one half-updated. With a [`Cipher`], target URLs and
//! signing secrets are sealed in the stored JSON (`target: {"sealed_url": "enc:v1:…"}`,
//! `secret: "enc:v1:…"`) and opened on read.
//!
//! The deployment records which key seals it ([`KeySpace::sealing`]); every write checks it, so a
//! writer without the workers' key (or with another) is refused instead of storing secrets in
//! clear or under a key the workers cannot open.

use std::sync::Arc;

use crate::redis_conn::RedisConn;
use redis::AsyncCommands;
use serde_json::Value;

use crate::crypto::{Cipher, CryptoError, open_with};
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
    // Never serde's own text: it can quote a stored value (a URL with its token, a secret).
    #[error("endpoint {id} in Redis is unreadable: {}", describe_json_error(.source))]
    Corrupt { id: String, source: serde_json::Error },
    #[error("endpoint {id}: {source}")]
    Crypto { id: String, source: CryptoError },
    /// The deployment's endpoints are sealed with another key than ours (or stored in clear
    /// while we have a key, or sealed while we have none): a write would store secrets in clear
    /// or under a key the workers cannot open. `recorded` is a key id or `none`; `ours` is
    /// `None` without `NOTIFY_ENCRYPTION_KEY`.
    #[error("{}", sealing_mismatch(recorded, ours.as_deref()))]
    SealingKeyMismatch { recorded: String, ours: Option<String> },
}

/// What [`KeySpace::sealing`] holds for a deployment that stores endpoints in clear.
const NO_SEALING_KEY: &str = "none";

fn sealing_mismatch(recorded: &str, ours: Option<&str>) -> String {
    match ours {
        None => format!(
            "this deployment's endpoints are sealed with key {recorded} but NOTIFY_ENCRYPTION_KEY is not set: \
             refusing to store secrets in clear (set NOTIFY_ENCRYPTION_KEY to the workers' key)"
        ),
        Some(ours) if recorded == NO_SEALING_KEY => format!(
            "this deployment's endpoints are stored in clear but NOTIFY_ENCRYPTION_KEY is key {ours}: refusing \
             to seal with a key the workers may not have (to start sealing, give the workers this key, then \
             run `entraguard-notify endpoint reseal` with it)"
        ),
        Some(ours) => format!(
            "this deployment's endpoints are sealed with key {recorded} but NOTIFY_ENCRYPTION_KEY is key {ours}: \
             refusing to seal with a key the workers cannot open (use the workers' key, or during a rotation \
             put key {recorded} in NOTIFY_ENCRYPTION_OLD_KEYS)"
        ),
    }
}

/// What is wrong with a stored record, without quoting any of it: serde's messages can echo a
/// value ("invalid type: string \"https://hooks…/TOKEN\""), and these reasons reach logs, dead
/// letters and API answers.
pub fn describe_json_error(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "an I/O error",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => {
            "JSON of the wrong shape (a field missing, or of the wrong type)"
        }
        serde_json::error::Category::Eof => "JSON cut short",
    };
    if e.line() == 0 { kind.to_owned() } else { format!("{kind} at line {} column {}", e.line(), e.column()) }
}

/// Fields of the stored JSON that hold secrets: HMAC secrets and Ed25519 private keys
/// (`whsk_…`), sealed and opened alike.
const SECRET_FIELDS: [&str; 4] = ["secret", "previous_secret", "signing_key", "previous_signing_key"];

/// Reads and writes endpoints.
#[derive(Clone)]
pub struct EndpointStore {
    conn: RedisConn,
    keys: KeySpace,
    cipher: Option<Arc<Cipher>>,
}

impl EndpointStore {
    pub fn new(conn: RedisConn, keys: KeySpace) -> Self {
        Self { conn, keys, cipher: None }
    }

    /// Seals URLs and secrets with `cipher`, and opens them with it.
    pub fn with_cipher(mut self, cipher: Option<Arc<Cipher>>) -> Self {
        self.cipher = cipher;
        self
    }

    /// The JSON stored for `endpoint`: URL and secrets sealed when there is a cipher.
    fn encode(&self, endpoint: &Endpoint) -> Result<String, StoreError> {
        let id = endpoint.id.to_string();
        let mut v = serde_json::to_value(endpoint)
            .map_err(|source| StoreError::Corrupt { id: id.clone(), source })?;
        if let Some(c) = &self.cipher {
            if let Some(url) = v.pointer("/target/url").and_then(Value::as_str).map(str::to_owned) {
                v["target"] = serde_json::json!({ "sealed_url": c.seal(&url) });
            }
            for field in SECRET_FIELDS {
                if let Some(s) = v.get(field).and_then(Value::as_str).map(str::to_owned) {
                    v[field] = Value::String(c.seal(&s));
                }
            }
        }
        serde_json::to_string(&v).map_err(|source| StoreError::Corrupt { id, source })
    }

    fn decode(&self, id: &str, json: &str) -> Result<Endpoint, StoreError> {
        let corrupt = |source| StoreError::Corrupt { id: id.to_owned(), source };
        let crypto = |source| StoreError::Crypto { id: id.to_owned(), source };
        let mut v: Value = serde_json::from_str(json).map_err(corrupt)?;
        let cipher = self.cipher.as_deref();
        if let Some(sealed) = v.pointer("/target/sealed_url").and_then(Value::as_str).map(str::to_owned) {
            v["target"] = serde_json::json!({ "url": open_with(cipher, &sealed).map_err(crypto)? });
        }
        for field in SECRET_FIELDS {
            if let Some(s) = v.get(field).and_then(Value::as_str).map(str::to_owned) {
                v[field] = Value::String(open_with(cipher, &s).map_err(crypto)?);
            }
        }
        serde_json::from_value(v).map_err(corrupt)
    }

    /// Stores a new endpoint or replaces one with the same id. Refused with
    /// [`StoreError::SealingKeyMismatch`] when the deployment is sealed with another key.
    pub async fn put(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        self.check_sealing().await?;
        self.write(endpoint).await
    }

    /// Writes an endpoint, sealed with our key; callers have checked the sealing record.
    async fn write(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        let json = self.encode(endpoint)?;
        let mut conn = self.conn.clone();
        let _: () = redis::pipe()
            .atomic()
            .hset(self.keys.endpoints(), endpoint.id.as_str(), json)
            .ignore()
            .incr(self.keys.endpoints_rev(), 1)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Our sealing key id, or `none` without a cipher.
    fn our_sealing(&self) -> &str {
        self.cipher.as_deref().map_or(NO_SEALING_KEY, Cipher::key_id)
    }

    /// The deployment's sealing record ([`KeySpace::sealing`]), recording ours first if there is
    /// none yet (`SET NX`: of two first writers, one record wins and the other is checked
    /// against it).
    async fn sealing_record(&self) -> Result<String, StoreError> {
        let mut conn = self.conn.clone();
        let key = self.keys.sealing();
        let (_, recorded): (bool, String) =
            redis::pipe().atomic().set_nx(&key, self.our_sealing()).get(&key).query_async(&mut conn).await?;
        Ok(recorded)
    }

    /// May we write? Yes when the record is our key, or one of our old keys (a rotation in
    /// progress: the workers hold both).
    async fn check_sealing(&self) -> Result<(), StoreError> {
        let recorded = self.sealing_record().await?;
        self.accept_sealing(recorded)
    }

    fn accept_sealing(&self, recorded: String) -> Result<(), StoreError> {
        if recorded == self.our_sealing() || self.cipher.as_deref().is_some_and(|c| c.has_old_key(&recorded))
        {
            return Ok(());
        }
        Err(StoreError::SealingKeyMismatch {
            recorded,
            ours: self.cipher.as_ref().map(|c| c.key_id().to_owned()),
        })
    }

    /// The endpoints' revision ([`KeySpace::endpoints_rev`]): it changes whenever any endpoint
    /// does.
    pub async fn revision(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let rev: Option<u64> = conn.get(self.keys.endpoints_rev()).await?;
        Ok(rev.unwrap_or(0))
    }

    /// Moves the endpoints' revision without changing an endpoint: every worker drops what it
    /// cached of endpoints and their breakers at its next fetch (after an operator's reset).
    pub async fn touch(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let rev: u64 = conn.incr(self.keys.endpoints_rev(), 1).await?;
        Ok(rev)
    }

    /// One endpoint, or `None` if there is no such id.
    pub async fn get(&self, id: &EndpointId) -> Result<Option<Endpoint>, StoreError> {
        let mut conn = self.conn.clone();
        let json: Option<String> = conn.hget(self.keys.endpoints(), id.as_str()).await?;
        json.map(|j| self.decode(id.as_str(), &j)).transpose()
    }

    /// Every endpoint, oldest first. Unreadable entries are skipped with a warning.
    pub async fn list(&self) -> Result<Vec<Endpoint>, StoreError> {
        let mut conn = self.conn.clone();
        let all: Vec<(String, String)> = conn.hgetall(self.keys.endpoints()).await?;
        let mut endpoints: Vec<Endpoint> = all
            .into_iter()
            .filter_map(|(id, json)| match self.decode(&id, &json) {
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

    /// Rewrites every endpoint sealed with the current key (after a key rotation, or to seal
    /// endpoints stored before a key was set). Returns how many were rewritten.
    /// The sealing record moves to the current key: from one of our old keys, or from `none`
    /// (a deployment that starts sealing); from any other key it is refused.
    pub async fn reseal_all(&self) -> Result<usize, StoreError> {
        let Some(c) = &self.cipher else { return Ok(0) };
        let recorded = self.sealing_record().await?;
        if recorded != NO_SEALING_KEY {
            self.accept_sealing(recorded)?;
        }
        let mut conn = self.conn.clone();
        let all: Vec<(String, String)> = conn.hgetall(self.keys.endpoints()).await?;
        let mut n = 0;
        for (id, json) in all {
            let v: Value = serde_json::from_str(&json)
                .map_err(|source| StoreError::Corrupt { id: id.clone(), source })?;
            let plain_url = v.pointer("/target/url").is_some();
            let stale = std::iter::once(v.pointer("/target/sealed_url"))
                .chain(SECRET_FIELDS.map(|f| v.get(f)))
                .flatten()
                .filter_map(Value::as_str)
                .any(|s| c.needs_reseal(s));
            if plain_url || stale {
                let ep = self.decode(&id, &json)?;
                self.write(&ep).await?;
                n += 1;
            }
        }
        let _: () = conn.set(self.keys.sealing(), c.key_id()).await?;
        Ok(n)
    }

    /// Enables or disables an endpoint; returns it as stored.
    pub async fn set_enabled(&self, id: &EndpointId, enabled: bool) -> Result<Endpoint, StoreError> {
        let mut ep = self.get(id).await?.ok_or_else(|| StoreError::NotFound(id.clone()))?;
        ep.enabled = enabled;
        ep.updated_at = Timestamp::now();
        self.put(&ep).await?;
        Ok(ep)
    }

    /// Deletes an endpoint. `false` if there was none.
    pub async fn delete(&self, id: &EndpointId) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let (n, _): (i64, i64) = redis::pipe()
            .atomic()
            .hdel(self.keys.endpoints(), id.as_str())
            .incr(self.keys.endpoints_rev(), 1)
            .query_async(&mut conn)
            .await?;
        Ok(n > 0)
    }
}

/// What fan-out needs of one stored endpoint. Read without opening sealed fields, so an
/// endpoint sealed with a key this process lacks is still routed: its delivery then fails with
/// the reason and ends in the dead-letter queue, instead of the event skipping it silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The routing fields parse.
    Known {
        id: EndpointId,
        enabled: bool,
        events: std::collections::BTreeSet<crate::event::EventKind>,
        /// Tenants, severity floor, dedupe, digest, quiet hours (defaults when not stored).
        rules: Box<crate::rules::Rules>,
    },
    /// Not even the routing fields parse (a corrupt record): every event is routed to it, so
    /// each delivery records why it cannot be made.
    Unreadable { id: EndpointId, reason: String },
}

impl Route {
    pub fn id(&self) -> &EndpointId {
        match self {
            Route::Known { id, .. } | Route::Unreadable { id, .. } => id,
        }
    }

    /// Whether an event of `kind` goes to this endpoint.
    pub fn wants(&self, kind: crate::event::EventKind) -> bool {
        match self {
            Route::Known { enabled, events, .. } => *enabled && events.contains(&kind),
            Route::Unreadable { .. } => true,
        }
    }

    /// The endpoint's rules; an unreadable record has none (everything goes to it).
    pub fn rules(&self) -> Option<&crate::rules::Rules> {
        match self {
            Route::Known { rules, .. } => Some(rules),
            Route::Unreadable { .. } => None,
        }
    }
}

/// The fields of the stored JSON that routing reads (never sealed).
#[derive(Debug, serde::Deserialize)]
struct RoutingFields {
    enabled: bool,
    events: std::collections::BTreeSet<crate::event::EventKind>,
    #[serde(default)]
    rules: crate::rules::Rules,
}

impl EndpointStore {
    /// The route of every stored endpoint, oldest first. A hash field that is not even an
    /// endpoint id (no tool of ours writes one) is logged and left out.
    pub async fn routes(&self) -> Result<Vec<Route>, StoreError> {
        let mut conn = self.conn.clone();
        let all: Vec<(String, Vec<u8>)> = conn.hgetall(self.keys.endpoints()).await?;
        let mut routes: Vec<Route> = all
            .into_iter()
            .filter_map(|(field, json)| {
                let Ok(id) = field.parse::<EndpointId>() else {
                    tracing::error!(field = %field.chars().take(80).collect::<String>(), "a field of the endpoints hash is not an endpoint id; ignored");
                    return None;
                };
                Some(route_of(id, &json))
            })
            .collect();
        routes.sort_by(|a, b| a.id().cmp(b.id()));
        Ok(routes)
    }

    /// The route of one endpoint, `None` if there is no such id.
    pub async fn route(&self, id: &EndpointId) -> Result<Option<Route>, StoreError> {
        let mut conn = self.conn.clone();
        let json: Option<Vec<u8>> = conn.hget(self.keys.endpoints(), id.as_str()).await?;
        Ok(json.map(|j| route_of(id.clone(), &j)))
    }
}

fn route_of(id: EndpointId, json: &[u8]) -> Route {
    match serde_json::from_slice::<RoutingFields>(json) {
        Ok(f) => Route::Known { id, enabled: f.enabled, events: f.events, rules: Box::new(f.rules) },
        Err(e) => Route::Unreadable {
            reason: format!("endpoint {id} in Redis is unreadable: {}", describe_json_error(&e)),
            id,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_records_are_described_without_quoting_them() {
        let e = serde_json::from_str::<RoutingFields>(
            r#"{"enabled":"https://hooks.slack.com/services/T0/B0/SECRETTOKEN","events":[]}"#,
        )
        .expect_err("wrong type");
        assert!(e.to_string().contains("SECRETTOKEN"), "serde itself quotes the value: {e}");
        let described = StoreError::Corrupt { id: "ep_x".into(), source: e }.to_string();
        assert!(!described.contains("SECRETTOKEN"), "{described}");
        assert!(described.contains("wrong shape"), "{described}");
    }

    #[test]
    fn a_record_stored_before_rules_existed_routes_with_the_defaults() {
        let old = br#"{"id":"ep_01JSAMPLE0000000000000000","name":"x","channel":"webhook","target":{"url":"https://a.example/x"},
            "events":["finding.new"],"enabled":true,"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}"#;
        let id: EndpointId = "ep_01JSAMPLE0000000000000000".parse().expect("id");
        let Route::Known { rules, .. } = route_of(id, old) else { panic!("routable") };
        assert!(rules.is_default());
        let ep: Endpoint = serde_json::from_slice(old).expect("the endpoint reads too");
        assert!(ep.rules.is_default());
        assert!(!serde_json::to_string(&ep).expect("json").contains("rules"), "defaults are not written");
    }
}
