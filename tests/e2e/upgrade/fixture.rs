//! A fixture file (`tests/fixtures/layout-v<N>/<name>.json`): every key a release left in Redis,
//! verbatim (jobs, records and bodies as the bytes it wrote), with what a drain by today's
//! worker must deliver. `dump` reads a Redis into one, `load` writes one into a test's Redis.

use std::collections::BTreeMap;
use std::path::PathBuf;

use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};

/// One captured deployment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fixture {
    /// The commit whose binaries wrote the keys.
    pub written_by: String,
    /// What the capture did, in a sentence or two.
    pub scenario: String,
    /// When the keys were dumped (Unix ms, Redis clock).
    pub captured_at_ms: i64,
    /// Endpoint id → the role its receiver plays in the capture and the drain (`ok`, `slow`…).
    pub endpoints: BTreeMap<String, String>,
    pub expect: Expect,
    /// Every key, sorted by name.
    pub keys: Vec<KeyDump>,
}

/// What draining the fixture must deliver (receivers all answering 2xx, dead letters replayed).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Expect {
    /// `[role, event id]`: the event must reach the role's receiver (at least once).
    pub deliveries: Vec<(String, String)>,
    /// `[role, finding id]`: the finding must reach the role's receiver inside a
    /// `finding.digest`.
    pub digested: Vec<(String, String)>,
    /// The dead letters' ids (`dlv_…`) waiting in the dead-letter queue.
    pub dead_letters: Vec<String>,
}

/// One key: its type and contents as Redis returns them, its time to live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyDump {
    pub key: String,
    #[serde(flatten)]
    pub value: KeyValue,
    /// Milliseconds left to live when dumped; `None`: no expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pttl_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum KeyValue {
    String(String),
    List(Vec<String>),
    Set(Vec<String>),
    Hash(BTreeMap<String, String>),
    /// Members with their scores, lowest score first.
    Zset(Vec<(String, f64)>),
}

/// The fixtures' directory: `tests/fixtures`.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

impl Fixture {
    pub fn read(path: &std::path::Path) -> Fixture {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
    }

    pub fn write(&self, path: &std::path::Path) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("fixture dir");
        }
        let mut text = serde_json::to_string_pretty(self).expect("fixture serialises");
        text.push('\n');
        std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// The id of the endpoint playing `role`.
    pub fn endpoint(&self, role: &str) -> &str {
        self.endpoints
            .iter()
            .find(|(_, r)| *r == role)
            .map(|(id, _)| id.as_str())
            .unwrap_or_else(|| panic!("no endpoint plays {role} in the fixture"))
    }
}

/// Every key of the Redis behind `conn`, sorted by name.
pub async fn dump(conn: &mut (impl ConnectionLike + Send)) -> Vec<KeyDump> {
    let mut names: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(1000).query_async(conn).await.expect("scan");
        names.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for key in names {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(conn).await.expect("type");
        let value = match kind.as_str() {
            "string" => KeyValue::String(redis::cmd("GET").arg(&key).query_async(conn).await.expect("get")),
            "list" => KeyValue::List(
                redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query_async(conn).await.expect("lrange"),
            ),
            "set" => {
                let mut members: Vec<String> =
                    redis::cmd("SMEMBERS").arg(&key).query_async(conn).await.expect("smembers");
                members.sort();
                KeyValue::Set(members)
            }
            "hash" => {
                KeyValue::Hash(redis::cmd("HGETALL").arg(&key).query_async(conn).await.expect("hgetall"))
            }
            "zset" => KeyValue::Zset(
                redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(conn)
                    .await
                    .expect("zrange"),
            ),
            other => panic!("key {key} has type {other}, which fixtures do not hold"),
        };
        let pttl: i64 = redis::cmd("PTTL").arg(&key).query_async(conn).await.expect("pttl");
        out.push(KeyDump { key, value, pttl_ms: (pttl >= 0).then_some(pttl) });
    }
    out
}

/// Numbers above this are Unix ms (2001 on), not counts.
const UNIX_MS_FLOOR: f64 = 1e12;

/// Writes `keys` into the Redis behind `conn`, as they were, except:
/// - times (ZSET scores and hash fields that are Unix ms) later than `now_ms` become `now_ms`:
///   the fixture stands for a Redis found after its workers had been stopped for longer than
///   any delay they scheduled (retries, digest timers, lane looks, breaker probes), whenever
///   the test runs;
/// - `targets` (endpoint id → URL) replace the endpoints' `target`, so deliveries reach this
///   test's receivers (every other field of the record stays as the release wrote it).
pub async fn load(
    conn: &mut (impl ConnectionLike + Send),
    keys: &[KeyDump],
    now_ms: i64,
    targets: &BTreeMap<String, String>,
) {
    for k in keys {
        let _: () = redis::cmd("DEL").arg(&k.key).query_async(conn).await.expect("del");
        match &k.value {
            KeyValue::String(v) => {
                let _: () = redis::cmd("SET").arg(&k.key).arg(v).query_async(conn).await.expect("set");
            }
            KeyValue::List(items) if !items.is_empty() => {
                let _: () =
                    redis::cmd("RPUSH").arg(&k.key).arg(items).query_async(conn).await.expect("rpush");
            }
            KeyValue::Set(items) if !items.is_empty() => {
                let _: () = redis::cmd("SADD").arg(&k.key).arg(items).query_async(conn).await.expect("sadd");
            }
            KeyValue::Hash(fields) if !fields.is_empty() => {
                let mut cmd = redis::cmd("HSET");
                cmd.arg(&k.key);
                for (f, v) in fields {
                    let v = match targets.get(f) {
                        Some(url) if k.key.ends_with(":endpoints") => retarget(v, url),
                        _ => match v.parse::<i64>() {
                            Ok(t) if t > UNIX_MS_FLOOR as i64 && t > now_ms => now_ms.to_string(),
                            _ => v.clone(),
                        },
                    };
                    cmd.arg(f).arg(v);
                }
                let _: () = cmd.query_async(conn).await.expect("hset");
            }
            KeyValue::Zset(members) if !members.is_empty() => {
                let mut cmd = redis::cmd("ZADD");
                cmd.arg(&k.key);
                for (m, score) in members {
                    let is_time = *score > UNIX_MS_FLOOR;
                    let score = if is_time && *score > now_ms as f64 { now_ms as f64 } else { *score };
                    cmd.arg(score).arg(m);
                }
                let _: () = cmd.query_async(conn).await.expect("zadd");
            }
            _ => {}
        }
        if let Some(ttl) = k.pttl_ms {
            let _: () =
                redis::cmd("PEXPIRE").arg(&k.key).arg(ttl.max(1)).query_async(conn).await.expect("pexpire");
        }
    }
}

/// An endpoint record (JSON) with its target's URL replaced by `url`, in the record's own shape
/// (`"target":{"url":…}` today).
fn retarget(record: &str, url: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(record).expect("an endpoint record is JSON");
    let url = serde_json::Value::String(url.to_owned());
    match v.get_mut("target") {
        Some(serde_json::Value::Object(target)) if target.contains_key("url") => {
            target.insert("url".into(), url);
        }
        Some(target @ serde_json::Value::String(_)) => *target = url,
        other => panic!("an endpoint record whose target has no URL: {other:?}"),
    }
    v.to_string()
}
