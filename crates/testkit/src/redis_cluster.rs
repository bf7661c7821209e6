//! A real local Redis Cluster of the test's own: 3 primaries and 3 replicas, each a
//! [`RedisServer`] (its own free port, cluster-bus port and temp dir, AOF on), joined with
//! `redis-cli --cluster create … --cluster-replicas 1` and a short `cluster-node-timeout`, so a
//! primary killed by a test fails over to its replica within a few seconds. Like the single
//! server, it only ever signals processes it started.

use std::time::{Duration, Instant};

use crate::net::free_port;
use crate::redis_server::RedisServer;
use crate::tls::TestCa;

/// How long the cluster may take to form (every slot served, every replica attached).
const FORM_DEADLINE: Duration = Duration::from_secs(60);
/// `cluster-node-timeout`: how long a silent primary is waited for before its replica takes over.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(1000);
const SLOTS: u16 = 16384;

/// A running 3 + 3 Redis Cluster on 127.0.0.1; every node is killed on drop.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    password: Option<String>,
    tls: bool,
}

impl std::fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCluster").field("ports", &self.ports()).finish()
    }
}

/// One line of `CLUSTER NODES`, as far as tests need it.
#[derive(Debug, Clone)]
struct NodeLine {
    port: u16,
    primary: bool,
    failed: bool,
    slots: Vec<(u16, u16)>,
}

/// Options for [`RedisCluster`]; start from [`RedisCluster::builder`].
#[derive(Default)]
pub struct RedisClusterBuilder {
    appendfsync: Option<String>,
    tls: Option<(Vec<u8>, std::path::PathBuf, std::path::PathBuf)>,
    ca_file: Option<tempfile::NamedTempFile>,
    password: Option<String>,
}

impl RedisClusterBuilder {
    /// Every node's `appendfsync` (default `always`).
    pub fn appendfsync(mut self, policy: &str) -> Self {
        self.appendfsync = Some(policy.to_owned());
        self
    }

    /// TLS only, between clients and nodes, on the cluster bus and for replication, with
    /// certificates signed by `ca`; `url()` becomes `rediss+cluster://…`.
    pub fn tls(mut self, ca: &TestCa) -> Self {
        self.tls = Some((ca.ca_pem.clone(), ca.cert_path(), ca.key_path()));
        let mut f = tempfile::NamedTempFile::new().expect("a temp file for the CA");
        std::io::Write::write_all(&mut f, &ca.ca_pem).expect("write the CA");
        self.ca_file = Some(f);
        self
    }

    /// `requirepass` (and `masterauth`, so replicas can follow) on every node; `url()` carries
    /// `default:<password>@`.
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    /// Starts six `redis-server --cluster-enabled yes` and joins them into a cluster of three
    /// primaries with one replica each; returns once every slot is served and every node says
    /// `cluster_state:ok`.
    pub fn start(self) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..6).map(|_| self.node()).collect();
        let mut cli = std::process::Command::new("redis-cli");
        if let Some(f) = &self.ca_file {
            cli.arg("--tls").arg("--cacert").arg(f.path());
        }
        if let Some(pw) = &self.password {
            cli.arg("-a").arg(pw).arg("--no-auth-warning");
        }
        let cluster = RedisCluster { nodes, password: self.password.clone(), tls: self.tls.is_some() };
        let addrs: Vec<String> = cluster.ports().iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = cli
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}); Debian: apt-get install redis-tools"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_healthy(FORM_DEADLINE);
        cluster
    }

    fn node(&self) -> RedisServer {
        let mut b = RedisServer::builder().appendfsync(self.appendfsync.as_deref().unwrap_or("always"));
        if let Some(pw) = &self.password {
            b = b.password(pw).arg("--masterauth").arg(pw);
        }
        if let Some((ca_pem, cert, key)) = &self.tls {
            b = b
                .tls_files(ca_pem, cert, key)
                .arg("--tls-cluster")
                .arg("yes")
                .arg("--tls-replication")
                .arg("yes");
        }
        b.arg("--cluster-enabled")
            .arg("yes")
            .arg("--cluster-enabled")
            .arg("yes")
            .arg("--cluster-config-file")
            .arg("nodes.conf")
            .arg("--cluster-node-timeout")
            .arg(NODE_TIMEOUT.as_millis().to_string())
            // The bus port is chosen, not derived (port + 10000 may be taken or > 65535).
            .arg("--cluster-port")
            .arg(free_port().to_string())
            // A replica always may take over, however long its link was down.
            .arg("--cluster-replica-validity-factor")
            .arg("0")
            .start()
    }
}

impl RedisCluster {
    /// A plain 3 + 3 cluster with `appendfsync always`.
    pub fn start() -> RedisCluster {
        Self::builder().start()
    }

    pub fn builder() -> RedisClusterBuilder {
        RedisClusterBuilder::default()
    }

    /// [`RedisCluster::start`] with every node's `appendfsync` set to `policy`.
    pub fn start_with(policy: &str) -> RedisCluster {
        Self::builder().appendfsync(policy).start()
    }

    /// `redis+cluster://127.0.0.1:<p1>,…` listing every node started (any of them is a seed).
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.ports().iter().map(|p| format!("127.0.0.1:{p}")).collect();
        self.url_for(&hosts.join(","))
    }

    /// `redis+cluster://` with one seed node only: the client must learn the rest from it.
    pub fn url_via(&self, node: usize) -> String {
        self.url_for(&format!("127.0.0.1:{}", self.nodes[node].port()))
    }

    fn url_for(&self, hosts: &str) -> String {
        let scheme = if self.tls { "rediss+cluster" } else { "redis+cluster" };
        match &self.password {
            Some(pw) => format!("{scheme}://default:{pw}@{hosts}"),
            None => format!("{scheme}://{hosts}"),
        }
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    pub fn node(&self, i: usize) -> &RedisServer {
        &self.nodes[i]
    }

    pub fn node_mut(&mut self, i: usize) -> &mut RedisServer {
        &mut self.nodes[i]
    }

    /// The slot of `key` (CRC16 of its hash tag, as every cluster client computes it), asked of
    /// a running node.
    pub fn slot_of(&self, key: &str) -> u16 {
        let mut conn = self.any_connection();
        redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query(&mut conn).expect("CLUSTER KEYSLOT")
    }

    /// The node (index) that is now the primary serving `key`'s slot.
    pub fn primary_for(&self, key: &str) -> usize {
        self.try_primary_for(key)
            .unwrap_or_else(|(slot, lines)| panic!("no primary serves slot {slot}: {lines:?}"))
    }

    /// [`RedisCluster::primary_for`], or the slot and the node's view when the node asked knows
    /// no live primary for it (yet: right after a failover a replica may not have heard).
    fn try_primary_for(&self, key: &str) -> Result<usize, (u16, Vec<NodeLine>)> {
        let slot = self.slot_of(key);
        let lines = self.cluster_nodes();
        let port = lines
            .iter()
            .find(|n| n.primary && !n.failed && n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .map(|n| n.port);
        match port {
            Some(port) => Ok(self.index_of(port)),
            None => Err((slot, lines)),
        }
    }

    /// A running node that is not the primary of `key`'s slot (a client pointed at it alone gets
    /// `MOVED` for that key unless it speaks the cluster protocol).
    pub fn node_not_owning(&self, key: &str) -> usize {
        let owner = self.primary_for(key);
        (0..self.nodes.len()).find(|i| *i != owner && self.nodes[*i].is_running()).expect("another node")
    }

    /// Waits until every running node reports `cluster_state:ok`, every slot has a live primary,
    /// and each live primary's view agrees. Panics with the nodes' view after `deadline`.
    pub fn wait_healthy(&self, deadline: Duration) {
        let started = Instant::now();
        loop {
            if self.healthy() {
                return;
            }
            if started.elapsed() > deadline {
                panic!(
                    "the test Redis Cluster is not healthy after {deadline:?}: {:?}",
                    self.cluster_nodes()
                );
            }
            // Cluster state changes send no notification to a test; polling is the only way.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn healthy(&self) -> bool {
        let running: Vec<&RedisServer> = self.nodes.iter().filter(|n| n.is_running()).collect();
        let ok = running.iter().all(|n| {
            sync_conn(n)
                .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
                .is_ok_and(|info| info.contains("cluster_state:ok"))
        });
        if !ok {
            return false;
        }
        let lines = self.cluster_nodes();
        let mut covered = 0u32;
        for n in lines.iter().filter(|n| n.primary && !n.failed) {
            covered += n.slots.iter().map(|(a, b)| u32::from(b - a) + 1).sum::<u32>();
        }
        covered == u32::from(SLOTS)
    }

    /// Waits until the slot of `key` is served by a primary other than `old` (after `old` was
    /// killed, its replica is promoted) and the cluster is healthy again.
    pub fn wait_failover(&self, key: &str, old: usize, deadline: Duration) -> usize {
        let started = Instant::now();
        loop {
            // `healthy` asked the primaries; `try_primary_for` asks whichever node answers first,
            // which may not have heard of the promotion yet: then keep waiting (a panic here
            // failed a stress run, issue 23).
            if self.healthy()
                && let Ok(now) = self.try_primary_for(key)
                && now != old
            {
                return now;
            }
            if started.elapsed() > deadline {
                panic!(
                    "no failover of {key:?}'s slot away from node {old} within {deadline:?}: {:?}",
                    self.cluster_nodes()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn index_of(&self, port: u16) -> usize {
        self.nodes.iter().position(|n| n.port() == port).unwrap_or_else(|| panic!("no node on port {port}"))
    }

    fn any_connection(&self) -> redis::Connection {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .find_map(|n| sync_conn(n).ok())
            .expect("a running cluster node")
    }

    fn cluster_nodes(&self) -> Vec<NodeLine> {
        let mut conn = self.any_connection();
        let text: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn).unwrap_or_default();
        text.lines().filter_map(parse_node_line).collect()
    }
}

fn sync_conn(node: &RedisServer) -> redis::RedisResult<redis::Connection> {
    let conn = node.client().get_connection_with_timeout(Duration::from_millis(500))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.set_write_timeout(Some(Duration::from_secs(2)))?;
    Ok(conn)
}

/// `<id> <ip:port@bus> <flags> <primary> <ping> <pong> <epoch> <link> <slot> <slot-slot> …`
fn parse_node_line(line: &str) -> Option<NodeLine> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let addr = f.get(1)?;
    let port = addr.split('@').next()?.rsplit(':').next()?.parse().ok()?;
    let flags = f.get(2)?;
    let slots = f
        .iter()
        .skip(8)
        .filter(|s| !s.starts_with('['))
        .filter_map(|s| match s.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => s.parse().ok().map(|a| (a, a)),
        })
        .collect();
    Some(NodeLine {
        port,
        primary: flags.contains("master"),
        failed: flags.contains("fail") && !flags.contains("fail?"),
        slots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nodes_line_gives_port_role_and_slots() {
        let n = parse_node_line(
            "07c3 127.0.0.1:30004@31004,hostname myself,master - 0 1 4 connected 0-5460 6000 [5461->-e7d1]",
        )
        .expect("parsed");
        assert_eq!(n.port, 30004);
        assert!(n.primary && !n.failed);
        assert_eq!(n.slots, vec![(0, 5460), (6000, 6000)]);
        let r =
            parse_node_line("e7d1 127.0.0.1:30005@31005 slave,fail 07c3 0 1 4 disconnected").expect("parsed");
        assert!(!r.primary && r.failed && r.slots.is_empty());
    }
}
