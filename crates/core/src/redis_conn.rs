//! Connecting to Redis: `redis://` or `rediss://` (TLS via rustls) for one server, or
//! `redis+cluster://` / `rediss+cluster://` with one or more seed nodes for a Redis Cluster, with
//! timeouts that suit a queue (the redis crate's 500 ms default response timeout fails healthy
//! commands under load) and reconnection with back-off that never gives up.
//!
//! Both kinds of connection are one type, [`RedisConn`], so the queue, the endpoint store and
//! every binary speak to either without knowing which; one server costs nothing extra.
//!
//! TLS is this crate's `tls` feature and a Cluster its `cluster` feature (the binaries turn both
//! on; a producer opts in): without one, [`connect`] refuses such a URL, saying which feature.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
#[cfg(feature = "cluster")]
use redis::cluster::ClusterClientBuilder;
#[cfg(feature = "cluster")]
use redis::cluster_async::ClusterConnection;
#[cfg(feature = "cluster")]
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Value};

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: RedisUrl,
    pub connect_timeout: Duration,
    /// `None` waits for ever.
    pub response_timeout: Option<Duration>,
    /// PEM of the CA that signed the server's certificate, for `rediss://` to a Redis whose
    /// certificate the system roots do not cover (a private CA, a test). `None`: system roots.
    pub ca_cert: Option<Vec<u8>>,
}

impl RedisConfig {
    pub fn new(url: RedisUrl) -> Self {
        Self {
            url,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Some(Duration::from_secs(10)),
            ca_cert: None,
        }
    }

    /// Trusts the CA in this PEM file (`REDIS_CA_CERT`).
    pub fn with_ca_file(mut self, path: Option<&std::path::Path>) -> std::io::Result<Self> {
        if let Some(p) = path {
            self.ca_cert = Some(std::fs::read(p)?);
        }
        Ok(self)
    }
}

/// Where Redis is, from `REDIS_URL`, whose password is never printed:
/// - `redis://[user:password@]host:port[/db]` (or `rediss://` for TLS): one server;
/// - `redis+cluster://[user:password@]host:port[,host:port…]` (or `rediss+cluster://`): a Redis
///   Cluster, reached through any of the seed nodes listed (the client learns the rest).
#[derive(Clone)]
pub struct RedisUrl(String);

/// The schemes that name a Redis Cluster, and the scheme of each of their seed nodes.
const CLUSTER_SCHEMES: [(&str, &str); 2] =
    [("redis+cluster://", "redis://"), ("rediss+cluster://", "rediss://")];

#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid Redis URL {masked}: {reason}")]
pub struct RedisUrlError {
    masked: String,
    reason: String,
}

impl RedisUrl {
    pub fn parse(raw: &str) -> Result<Self, RedisUrlError> {
        let raw = raw.trim();
        let masked = crate::secret::mask_url(raw);
        if let Some((_, node_scheme)) = CLUSTER_SCHEMES.iter().find(|(c, _)| raw.starts_with(c)) {
            let url = Self(raw.to_owned());
            // A seed list is no URL the generic masking reads: show it as Display does (hosts
            // kept, credentials hidden).
            let masked = url.to_string();
            let nodes = url.cluster_nodes().unwrap_or_default();
            if nodes.is_empty() {
                return Err(RedisUrlError { masked, reason: "no seed node (host:port) listed".into() });
            }
            for node in &nodes {
                let u = url::Url::parse(node)
                    .map_err(|e| RedisUrlError { masked: masked.clone(), reason: e.to_string() })?;
                if u.host_str().is_none_or(str::is_empty) || !node.starts_with(node_scheme) {
                    return Err(RedisUrlError { masked, reason: "a seed node has no host".into() });
                }
                if u.path().len() > 1 {
                    return Err(RedisUrlError {
                        masked,
                        reason: "a Redis Cluster has only database 0: drop the /db".into(),
                    });
                }
            }
            return Ok(url);
        }
        let url = url::Url::parse(raw)
            .map_err(|e| RedisUrlError { masked: masked.clone(), reason: e.to_string() })?;
        match url.scheme() {
            "redis" | "rediss" | "unix" | "redis+unix" => Ok(Self(raw.to_owned())),
            other => Err(RedisUrlError {
                masked,
                reason: format!(
                    "scheme {other:?}; expected redis://, rediss://, redis+cluster:// or rediss+cluster://"
                ),
            }),
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A Redis Cluster's seed nodes, each as a `redis://` (or `rediss://`) URL carrying the
    /// credentials; `None` for one server.
    pub fn cluster_nodes(&self) -> Option<Vec<String>> {
        let (scheme, node_scheme) = CLUSTER_SCHEMES.iter().find(|(c, _)| self.0.starts_with(c))?;
        let rest = &self.0[scheme.len()..];
        let (userinfo, hosts) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let hosts = hosts.trim_end_matches('/');
        Some(
            hosts
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(|h| match userinfo {
                    Some(u) => format!("{node_scheme}{u}@{h}"),
                    None => format!("{node_scheme}{h}"),
                })
                .collect(),
        )
    }

    /// Whether this names a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        CLUSTER_SCHEMES.iter().any(|(c, _)| self.0.starts_with(c))
    }

    /// Whether this asks for TLS (`rediss://`, `rediss+cluster://`).
    pub fn is_tls(&self) -> bool {
        self.0.starts_with("rediss://") || self.0.starts_with("rediss+cluster://")
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_string())
    }
}

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keep scheme, host and port; hide credentials.
        if let Some(nodes) = self.cluster_nodes() {
            let (scheme, _) =
                CLUSTER_SCHEMES.iter().find(|(c, _)| self.0.starts_with(c)).copied().unwrap_or_default();
            let hosts: Vec<String> = nodes
                .iter()
                .filter_map(|n| url::Url::parse(n).ok())
                .map(|u| {
                    format!(
                        "{}{}",
                        u.host_str().unwrap_or(""),
                        u.port().map(|p| format!(":{p}")).unwrap_or_default()
                    )
                })
                .collect();
            let creds = self.0[scheme.len()..].contains('@');
            return write!(f, "{scheme}{}{}", if creds { "****@" } else { "" }, hosts.join(","));
        }
        match url::Url::parse(&self.0) {
            Ok(u) => write!(
                f,
                "{}://{}{}{}",
                u.scheme(),
                if u.password().is_some() || !u.username().is_empty() { "****@" } else { "" },
                u.host_str().unwrap_or(""),
                u.port().map(|p| format!(":{p}")).unwrap_or_default()
            ),
            Err(_) => f.write_str("****"),
        }
    }
}

/// What to do about an error that says the server is a Redis Cluster node reached as one server
/// (`MOVED`): name the URL scheme that fixes it. Empty for any other error.
pub fn cluster_hint(e: &redis::RedisError) -> &'static str {
    let moved = e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::Moved)
        || e.to_string().contains("Moved:");
    if moved {
        " (this Redis is a Redis Cluster node: set REDIS_URL to redis+cluster://host:port[,host:port…], or rediss+cluster:// for TLS)"
    } else {
        ""
    }
}

/// Installs rustls' ring crypto provider once per process (rustls 0.23 panics at the first TLS
/// handshake without one).
#[cfg(feature = "tls")]
pub fn ensure_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A multiplexed, self-reconnecting connection to one Redis server or to a Redis Cluster.
/// Cheap to clone; clones share the connection(s).
///
/// On a cluster every command goes to the primary owning its key's slot, and follows `MOVED`
/// and `ASK` answers and failovers on its own. A pipeline or transaction goes to the node of its
/// first key, so all its keys must share a hash tag (ours do: one tag per key space). Commands
/// without a key (`TIME`, `INFO`, `CONFIG`, `PING`) go through [`RedisConn::query_at`] to the
/// node owning a named key.
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    #[cfg(feature = "cluster")]
    Cluster(ClusterConnection),
}

impl RedisConn {
    /// Runs a command that names no key on the primary that owns `key`'s slot (on one server,
    /// on that server): the clock, memory and settings that matter to a key are its node's.
    #[cfg_attr(not(feature = "cluster"), allow(unused_variables))]
    pub async fn query_at<T: FromRedisValue>(&mut self, cmd: &Cmd, key: &str) -> RedisResult<T> {
        match self {
            RedisConn::Single(c) => cmd.query_async(c).await,
            #[cfg(feature = "cluster")]
            RedisConn::Cluster(c) => {
                let route = Route::with_key(key.as_bytes(), SlotAddr::Master);
                let value = c
                    .route_command(
                        cmd.clone(),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await?;
                T::from_redis_value(value).map_err(Into::into)
            }
        }
    }

    pub fn is_cluster(&self) -> bool {
        match self {
            RedisConn::Single(_) => false,
            #[cfg(feature = "cluster")]
            RedisConn::Cluster(_) => true,
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(cmd, offset, count),
            #[cfg(feature = "cluster")]
            RedisConn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            #[cfg(feature = "cluster")]
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

/// Opens a self-reconnecting multiplexed connection (to a cluster when the URL names one). The
/// first connection must succeed within the connect timeout; afterwards it reconnects on its
/// own, with exponential back-off.
pub async fn connect(config: &RedisConfig, response_timeout: Option<Duration>) -> RedisResult<RedisConn> {
    supported(&config.url)?;
    #[cfg(feature = "tls")]
    ensure_crypto_provider();
    #[cfg(feature = "cluster")]
    if let Some(nodes) = config.url.cluster_nodes() {
        return connect_cluster(config, nodes, response_timeout).await.map(RedisConn::Cluster);
    }
    #[cfg(feature = "tls")]
    let client = match &config.ca_cert {
        Some(pem) => redis::Client::build_with_tls(
            config.url.expose(),
            redis::TlsCertificates { client_tls: None, root_cert: Some(pem.clone()) },
        )?,
        None => redis::Client::open(config.url.expose())?,
    };
    #[cfg(not(feature = "tls"))]
    let client = redis::Client::open(config.url.expose())?;
    let mgr_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(response_timeout)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(2))
        .set_number_of_retries(3);
    ConnectionManager::new_with_config(client, mgr_config).await.map(RedisConn::Single)
}

/// Refuses a URL this build cannot serve, naming the feature that would (rather than the redis
/// crate's own less helpful words, or a cluster URL read as one server).
fn supported(url: &RedisUrl) -> RedisResult<()> {
    if url.is_tls() && !cfg!(feature = "tls") {
        return Err((
            redis::ErrorKind::InvalidClientConfig,
            "TLS to Redis is not built in",
            "turn on the `tls` feature (of entraguard-producer or entraguard-core)".to_owned(),
        )
            .into());
    }
    if url.is_cluster() && !cfg!(feature = "cluster") {
        return Err((
            redis::ErrorKind::InvalidClientConfig,
            "Redis Cluster support is not built in",
            "turn on the `cluster` feature (of entraguard-producer or entraguard-core)".to_owned(),
        )
            .into());
    }
    Ok(())
}

#[cfg(feature = "cluster")]
async fn connect_cluster(
    config: &RedisConfig,
    nodes: Vec<String>,
    response_timeout: Option<Duration>,
) -> RedisResult<ClusterConnection> {
    let mut builder = ClusterClientBuilder::new(nodes)
        .connection_timeout(config.connect_timeout)
        // A failover takes the cluster-node-timeout plus an election: retry the command (the
        // client refreshes its slot map between tries) for up to about 30 s rather than fail it.
        .retries(12)
        .min_retry_wait(50)
        .max_retry_wait(2_000);
    if let Some(t) = response_timeout {
        builder = builder.response_timeout(t);
    }
    #[cfg(feature = "tls")]
    if let Some(pem) = &config.ca_cert {
        builder = builder.certs(redis::TlsCertificates { client_tls: None, root_cert: Some(pem.clone()) });
    }
    // Each seed is tried within the connect timeout; the first that answers gives the slot map.
    builder.build()?.get_async_connection().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_never_displayed() {
        let u = RedisUrl::parse("rediss://default:s3cret@cache.example.net:6380/0").expect("valid");
        assert_eq!(u.to_string(), "rediss://****@cache.example.net:6380");
        assert!(!format!("{u:?}").contains("s3cret"));
        assert!(RedisUrl::parse("http://x").is_err());
    }

    #[test]
    fn a_cluster_url_lists_its_seed_nodes_with_their_credentials() {
        let u = RedisUrl::parse("rediss+cluster://app:s3cret@10.0.0.1:7000,10.0.0.2:7001").expect("valid");
        assert!(u.is_cluster());
        assert_eq!(
            u.cluster_nodes().expect("cluster"),
            vec![
                "rediss://app:s3cret@10.0.0.1:7000".to_owned(),
                "rediss://app:s3cret@10.0.0.2:7001".to_owned()
            ]
        );
        assert_eq!(u.to_string(), "rediss+cluster://****@10.0.0.1:7000,10.0.0.2:7001");
        assert!(!format!("{u:?}").contains("s3cret"));
        let plain = RedisUrl::parse("redis+cluster://127.0.0.1:7000").expect("valid");
        assert_eq!(plain.cluster_nodes().expect("cluster"), vec!["redis://127.0.0.1:7000".to_owned()]);
        assert!(!RedisUrl::parse("redis://127.0.0.1:6379").expect("valid").is_cluster());
        for bad in ["redis+cluster://", "redis+cluster://:7000", "redis+cluster://127.0.0.1:7000/3"] {
            assert!(RedisUrl::parse(bad).is_err(), "{bad} accepted");
        }
        let err = RedisUrl::parse("rediss+cluster://app:s3cret@10.0.0.1:7000,:7001").expect_err("refused");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(err.to_string().contains("10.0.0.1:7000"), "says which URL: {err}");
    }
}
