//! The Redis Cluster client's warnings, one outage per node collapsed.
//!
//! While a cluster node is down (a failover, a killed primary) the `redis` crate's cluster
//! client warns on every failed reconnect: `Failed to connect to node: "127.0.0.1:7003", due
//! to: …` hundreds of times a second, per client. One test run printed 2 582 of them among
//! 3 939 lines (issue 23), burying the line that mattered. This layer lets the first warning
//! about a node through, counts the ones that follow, and once the node has been quiet for
//! [`QUIET`] (the outage is over, or the client gave the node up) says in one line how many
//! there were, over how long, and the last one. Warnings that name no node (`beginning slot
//! refresh`) are collapsed together under the cluster as a whole, the same way.
//!
//! It decides in [`Layer::event_enabled`], so a suppressed warning reaches no layer (neither
//! the text nor the JSON output). The closing line comes from a short-lived thread that
//! watches the open outages; [`ClusterWarnings::flush`] closes them all at once (at a clean
//! shutdown).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// An outage is over when its node has not been warned about for this long.
pub const QUIET: Duration = Duration::from_secs(5);

/// The targets collapsed: the cluster client's (`redis::cluster_handling::async_connection`
/// and its siblings).
const TARGET_PREFIX: &str = "redis::cluster";

/// One node's outage, as the closing line reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    /// `host:port`, or `cluster` for warnings that name no node.
    pub node: String,
    /// Warnings after the first (which was logged): how many were not.
    pub suppressed: u64,
    /// From the first warning to the last.
    pub lasted: Duration,
    /// The last warning's message.
    pub last: String,
}

impl fmt::Display for Outage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "redis cluster node {}: {} more warning(s) after the first, over {:.1} s; the last: {}",
            self.node,
            self.suppressed,
            self.lasted.as_secs_f64(),
            self.last
        )
    }
}

type Emit = dyn Fn(Outage) + Send + Sync;

/// The layer; cheap to clone (clones share their state), so [`crate::logging::init`] keeps one
/// to flush at shutdown.
#[derive(Clone)]
pub struct ClusterWarnings {
    shared: Arc<Shared>,
}

struct Shared {
    quiet: Duration,
    emit: Box<Emit>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    open: HashMap<String, Open>,
    /// Whether a watcher thread is running (it ends when no outage is open).
    watching: bool,
}

struct Open {
    first: Instant,
    last_at: Instant,
    suppressed: u64,
    last: String,
}

impl ClusterWarnings {
    /// The production layer: closing lines are `WARN` events of this module's target.
    pub fn new() -> Self {
        Self::with(QUIET, |outage| tracing::warn!("{outage}"))
    }

    /// A layer with its own quiet period and its own output for the closing lines (tests).
    pub fn with(quiet: Duration, emit: impl Fn(Outage) + Send + Sync + 'static) -> Self {
        Self { shared: Arc::new(Shared { quiet, emit: Box::new(emit), state: Mutex::default() }) }
    }

    /// Closes every open outage now (the process is stopping): their closing lines are emitted.
    pub fn flush(&self) {
        let closed: Vec<Outage> =
            lock(&self.shared.state).open.drain().map(|(node, o)| o.close(node)).collect();
        emit_closed(&self.shared, closed);
    }

    /// Whether `event` goes on: `false` for a repeat within an outage.
    fn admit(&self, message: String) -> bool {
        let node = node_of(&message).unwrap_or("cluster").to_owned();
        let now = Instant::now();
        let mut state = lock(&self.shared.state);
        let expired = match state.open.get(&node) {
            Some(open) => now.duration_since(open.last_at) >= self.shared.quiet,
            None => false,
        };
        // An outage the watcher has not closed yet but that is over: close it before this new one.
        let closed = if expired { state.open.remove(&node).map(|o| o.close(node.clone())) } else { None };
        let admitted = match state.open.get_mut(&node) {
            Some(open) => {
                open.suppressed += 1;
                open.last_at = now;
                open.last = message;
                false
            }
            None => {
                state.open.insert(node, Open { first: now, last_at: now, suppressed: 0, last: message });
                true
            }
        };
        let spawn_watcher = !state.watching;
        state.watching = true;
        drop(state);
        if let Some(outage) = closed {
            // Emitted from this thread, inside the dispatch of the current event: tracing drops
            // events dispatched re-entrantly, so it goes through the watcher path instead.
            self.defer(outage);
        }
        if spawn_watcher {
            self.spawn_watcher();
        }
        admitted
    }

    fn defer(&self, outage: Outage) {
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("log-cluster-warnings".to_owned())
            .spawn(move || emit_closed(&shared, vec![outage]));
        drop(spawned);
    }

    /// A thread that closes outages once they have been quiet long enough, and ends when none
    /// is open.
    fn spawn_watcher(&self) {
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new().name("log-cluster-warnings".to_owned()).spawn(move || {
            loop {
                std::thread::sleep((shared.quiet / 4).max(Duration::from_millis(10)));
                let now = Instant::now();
                let mut state = lock(&shared.state);
                let over: Vec<String> = state
                    .open
                    .iter()
                    .filter(|(_, o)| now.duration_since(o.last_at) >= shared.quiet)
                    .map(|(node, _)| node.clone())
                    .collect();
                let closed: Vec<Outage> =
                    over.into_iter().filter_map(|n| state.open.remove(&n).map(|o| o.close(n))).collect();
                let done = state.open.is_empty();
                if done {
                    state.watching = false;
                }
                drop(state);
                emit_closed(&shared, closed);
                if done {
                    return;
                }
            }
        });
        if spawned.is_err() {
            // No thread (resource exhaustion): let the next warning try again.
            lock(&self.shared.state).watching = false;
        }
    }
}

impl Default for ClusterWarnings {
    fn default() -> Self {
        Self::new()
    }
}

impl Open {
    fn close(self, node: String) -> Outage {
        Outage {
            node,
            suppressed: self.suppressed,
            lasted: self.last_at.duration_since(self.first),
            last: self.last,
        }
    }
}

/// Outages with nothing suppressed need no closing line: their one warning said it all.
fn emit_closed(shared: &Shared, closed: Vec<Outage>) {
    for outage in closed.into_iter().filter(|o| o.suppressed > 0) {
        (shared.emit)(outage);
    }
}

impl<S: Subscriber> Layer<S> for ClusterWarnings {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if *meta.level() != Level::WARN {
            return true;
        }
        // The `redis` crate logs through the `log` crate: `tracing-log` (installed by
        // `init()`) hands those on as events of target `log`, with the real target in the
        // `log.target` field.
        let from_log = meta.target() == "log";
        if !from_log && !meta.target().starts_with(TARGET_PREFIX) {
            return true;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if from_log && !fields.log_target.starts_with(TARGET_PREFIX) {
            return true;
        }
        self.admit(fields.message)
    }
}

/// The message of an event, and `log.target` for one that came from the `log` crate.
#[derive(Default)]
struct Fields {
    message: String,
    log_target: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "log.target" => self.log_target = format!("{value:?}"),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => value.clone_into(&mut self.message),
            "log.target" => value.clone_into(&mut self.log_target),
            _ => {}
        }
    }
}

/// The first `host:port` in a message (`Failed to connect to node: 127.0.0.1:7003, due to: …`,
/// quoted or not), or `None`.
fn node_of(message: &str) -> Option<&str> {
    let is_host = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']');
    message.split(|c: char| !(is_host(c) || c == ':')).map(|token| token.trim_end_matches(':')).find(
        |token| {
            token.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty()
                    && host.chars().all(|c| is_host(c) || c == ':')
                    && !port.is_empty()
                    && port.len() <= 5
                    && port.chars().all(|c| c.is_ascii_digit())
            })
        },
    )
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tracing_subscriber::layer::SubscriberExt;

    /// Counts the events that reach the output.
    #[derive(Clone, Default)]
    struct Count(Arc<AtomicUsize>);

    impl<S: Subscriber> Layer<S> for Count {
        fn on_event(&self, _event: &Event<'_>, _ctx: Context<'_, S>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// What the cluster client logs, as it logs it: through the `log` crate, forwarded by
    /// `tracing-log` (as `init()` sets it up) to the thread's subscriber.
    fn client_warns(node: &str) {
        static FORWARD: std::sync::Once = std::sync::Once::new();
        FORWARD.call_once(|| {
            let _ = tracing_log::LogTracer::init();
        });
        log::warn!(
            target: "redis::cluster_handling::async_connection",
            "Failed to connect to node: {node}, due to: Connection refused (os error 111)"
        );
    }

    #[test]
    fn a_tracing_event_of_the_cluster_target_is_collapsed_too() {
        let layer = ClusterWarnings::with(Duration::from_secs(60), |_| {});
        let shown = Count::default();
        let subscriber = tracing_subscriber::registry().with(layer.clone()).with(shown.clone());
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..10 {
                tracing::warn!(target: "redis::cluster_handling::async_connection", "beginning slot refresh");
                // The `log` crate's records of other targets go through untouched.
                client_warns("127.0.0.1:1"); // installs the forwarding, once
                log::warn!(target: "hyper::proto", "something");
            }
        });
        assert_eq!(shown.0.load(Ordering::SeqCst), 1 + 1 + 10, "one per node, and every other line");
    }

    #[test]
    fn the_node_is_the_address_quoted_or_not() {
        let msg = r#"Failed to connect to node: "127.0.0.1:7003", due to: Connection refused (os error 111)"#;
        assert_eq!(node_of(msg), Some("127.0.0.1:7003"));
        let msg = "Failed to connect to node: 127.0.0.1:39073, due to: Connection refused (os error 111)";
        assert_eq!(node_of(msg), Some("127.0.0.1:39073"));
        assert_eq!(
            node_of("ClusterConnInner: connection to \"redis-0.redis:6379\" lost; repairing in background"),
            Some("redis-0.redis:6379")
        );
        assert_eq!(node_of("async cluster client recovery: beginning slot refresh"), None);
    }

    #[test]
    fn an_outage_is_its_first_warning_and_one_line_with_the_count() {
        let closed = Arc::new(Mutex::new(Vec::<Outage>::new()));
        let sink = Arc::clone(&closed);
        let layer =
            ClusterWarnings::with(Duration::from_millis(300), move |o| sink.lock().expect("lock").push(o));
        let shown = Count::default();
        let subscriber = tracing_subscriber::registry().with(layer.clone()).with(shown.clone());
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..500 {
                client_warns("127.0.0.1:7003");
            }
            for _ in 0..40 {
                client_warns("127.0.0.1:7004");
            }
            // Not the cluster client's: untouched.
            for _ in 0..3 {
                tracing::warn!(target: "entraguard_worker::runner", "redis unavailable");
            }
        });
        assert_eq!(shown.0.load(Ordering::SeqCst), 2 + 3, "the first warning per node, and every other line");

        let deadline = Instant::now() + Duration::from_secs(30);
        while closed.lock().expect("lock").len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut closed = closed.lock().expect("lock").clone();
        closed.sort_by(|a, b| a.node.cmp(&b.node));
        let counts: Vec<(&str, u64)> = closed.iter().map(|o| (o.node.as_str(), o.suppressed)).collect();
        assert_eq!(counts, [("127.0.0.1:7003", 499), ("127.0.0.1:7004", 39)]);
        assert!(closed[0].last.contains("Connection refused"), "{}", closed[0]);
        assert!(closed[0].to_string().contains("499 more warning(s) after the first"), "{}", closed[0]);
    }

    #[test]
    fn a_node_down_again_after_a_quiet_spell_is_a_new_outage() {
        let closed = Arc::new(Mutex::new(Vec::<Outage>::new()));
        let sink = Arc::clone(&closed);
        // Closed by the watcher during the quiet spell, or by the next warning if it comes first.
        let layer =
            ClusterWarnings::with(Duration::from_millis(200), move |o| sink.lock().expect("lock").push(o));
        let shown = Count::default();
        let subscriber = tracing_subscriber::registry().with(layer.clone()).with(shown.clone());
        tracing::subscriber::with_default(subscriber, || {
            client_warns("127.0.0.1:7003");
            client_warns("127.0.0.1:7003");
            std::thread::sleep(Duration::from_millis(400));
            client_warns("127.0.0.1:7003");
            client_warns("127.0.0.1:7003");
            client_warns("127.0.0.1:7003");
        });
        assert_eq!(shown.0.load(Ordering::SeqCst), 2, "the first warning of each outage");
        layer.flush();
        let deadline = Instant::now() + Duration::from_secs(30);
        while closed.lock().expect("lock").len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut counts: Vec<u64> = closed.lock().expect("lock").iter().map(|o| o.suppressed).collect();
        counts.sort_unstable();
        assert_eq!(counts, [1, 2], "one closing line per outage, each with its own count");
    }
}
