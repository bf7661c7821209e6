//! A real `redis-server` of the test's own: a free 127.0.0.1 port, its own temp dir, AOF on,
//! optionally TLS-only and password-protected like a managed Redis. It can be killed, shut down
//! and restarted on the same port and dir (the AOF is reloaded), and it only ever signals the
//! process it started — never port 6379, never a Redis it did not start. Its clock can be set
//! to another day ([`RedisServerBuilder::fake_clock`]), for what Redis's `TIME` decides.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::net::{free_port, lock};
use crate::tls::TestCa;

/// How long a start or restart may take until PING answers and the AOF is loaded.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// A fresh port is tried this many times when another process takes the first one first.
const PORT_ATTEMPTS: usize = 5;
const LOG_FILE: &str = "redis-server.log";

/// Options for [`RedisServer`]; start from [`RedisServer::builder`].
#[derive(Clone, PartialEq, Eq)]
pub struct RedisServerBuilder {
    appendfsync: String,
    extra: Vec<OsString>,
    tls: Option<TlsFiles>,
    password: Option<String>,
    fake_clock: Option<FakeClock>,
}

/// A clock set to `unix_secs` when the server first started, running at the real pace from
/// there, restarts included.
///
/// datefudge's library shifts the real clock by a whole number of seconds (`DATEFUDGE`), so
/// the fake clock keeps the real clock's fraction of a second. That offset is fixed once, at
/// the first start (`offset`), and every restart runs with the same one: the fake clock is
/// then the real clock minus a constant, and can't step back across a restart. Computing a new
/// start time for each restart from the whole seconds elapsed (what this did before) loses up
/// to a second each time: started at real x.9 with the fake clock at `set` + .9, read one
/// second later at `set` + 1, restarted before a whole second had elapsed since the start,
/// the restart's clock began again at `set` + 0.something — one second behind (issue 23).
/// Running the `datefudge` script for each restart has the same flaw in another place: it
/// reads the real clock itself, and a second may tick between our computing its argument
/// and its reading.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct FakeClock {
    unix_secs: i64,
    /// Seconds subtracted from the real clock (datefudge's `DATEFUDGE`): the real clock's
    /// whole seconds at the first start minus `unix_secs`. So the fake clock reads
    /// `unix_secs` plus the real clock's fraction at the first start, and never less.
    offset: Option<i64>,
}

/// The PEM files a TLS server needs, copied out of the [`TestCa`] so the server can restart
/// after the `TestCa` is gone.
#[derive(Clone, PartialEq, Eq)]
struct TlsFiles {
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl fmt::Debug for RedisServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisServerBuilder")
            .field("appendfsync", &self.appendfsync)
            .field("extra", &self.extra)
            .field("tls", &self.tls.is_some())
            .field("password", &self.password.as_ref().map(|_| "****"))
            .field("fake_clock", &self.fake_clock)
            .finish()
    }
}

impl Default for RedisServerBuilder {
    fn default() -> Self {
        Self {
            appendfsync: "always".to_owned(),
            extra: Vec::new(),
            tls: None,
            password: None,
            fake_clock: None,
        }
    }
}

impl RedisServerBuilder {
    /// `always` (the default: no acknowledged write is ever lost), `everysec` or `no`.
    pub fn appendfsync(mut self, policy: &str) -> Self {
        self.appendfsync = policy.to_owned();
        self
    }

    /// One more command-line argument, after the defaults (so it can override them):
    /// `.arg("--maxmemory").arg("10mb")`.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.extra.push(arg.as_ref().to_owned());
        self
    }

    /// TLS only (no plaintext port), with a server certificate for 127.0.0.1 signed by `ca`;
    /// `url()` becomes `rediss://…` and the testkit's own connections trust `ca`. Clients are
    /// not asked for a certificate.
    pub fn tls(mut self, ca: &TestCa) -> Self {
        let read = |path: PathBuf| {
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        };
        self.tls = Some(TlsFiles {
            ca_pem: ca.ca_pem.clone(),
            cert_pem: read(ca.cert_path()),
            key_pem: read(ca.key_path()),
        });
        self
    }

    /// [`RedisServerBuilder::tls`] from the PEM of the CA and the paths of the server's
    /// certificate and key (for a caller that keeps them past the `TestCa`).
    pub fn tls_files(mut self, ca_pem: &[u8], cert: &Path, key: &Path) -> Self {
        let read = |path: &Path| {
            std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        };
        self.tls = Some(TlsFiles { ca_pem: ca_pem.to_vec(), cert_pem: read(cert), key_pem: read(key) });
        self
    }

    /// `requirepass`: clients must authenticate; `url()` carries `default:<password>@`.
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    /// The server's wall clock (what `TIME`, key expiry and scripts read) starts at `unix_secs`
    /// (Unix seconds) and runs at the real pace from there; a restart keeps it running. For
    /// what depends on the calendar, e.g. quiet hours on a daylight-saving day.
    ///
    /// It runs redis-server with Debian's `datefudge` library preloaded (`apt-get install
    /// datefudge`), which shifts `time`, `gettimeofday` and `clock_gettime(CLOCK_REALTIME)` by
    /// a fixed number of seconds; the offset is set once and kept for restarts (see
    /// `FakeClock`). (`faketime`, which could also speed the clock up, hangs at start-up with
    /// Redis's jemalloc: libfaketime's `clock_gettime` recurses into itself while jemalloc
    /// initialises.)
    pub fn fake_clock(mut self, unix_secs: i64) -> Self {
        self.fake_clock = Some(FakeClock { unix_secs, offset: None });
        self
    }

    /// Starts the server and waits until it answers PING; panics with its log when it can't.
    pub fn start(mut self) -> RedisServer {
        if let Some(clock) = &mut self.fake_clock {
            let real_secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            clock.offset = Some(real_secs - clock.unix_secs);
        }
        let dir = tempfile::Builder::new()
            .prefix("entraguard-redis-")
            .tempdir()
            .expect("create a temp dir for redis-server");
        let mut last_failure = String::new();
        for _ in 0..PORT_ATTEMPTS {
            // A race we can't close: the port is free when we pick it, not necessarily when
            // redis-server binds it. Another port is tried when that happens.
            let port = free_port();
            match spawn_ready(&self, dir.path(), port, false) {
                Ok(child) => {
                    return RedisServer { dir, port, options: self, child: Mutex::new(Some(child)) };
                }
                Err(StartFailure::PortTaken(report)) => last_failure = report,
                Err(StartFailure::Fatal(report)) => panic!("{report}"),
            }
        }
        panic!("redis-server found no free port in {PORT_ATTEMPTS} attempts; last:\n{last_failure}");
    }
}

/// A `redis-server` process this test started; killed on drop.
pub struct RedisServer {
    dir: tempfile::TempDir,
    port: u16,
    options: RedisServerBuilder,
    /// `None` after `kill` or `shutdown_nosave`. Behind a mutex so `is_running` and `pid` can
    /// take `&self` (reaping a child needs `&mut Child`).
    child: Mutex<Option<Child>>,
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .field("tls", &self.options.tls.is_some())
            .field("dir", &self.dir())
            .field("pid", &self.pid())
            .finish()
    }
}

impl RedisServer {
    /// Starts one with the defaults: `--appendonly yes --appendfsync always --save ""
    /// --maxmemory-policy noeviction`, bound to 127.0.0.1 only.
    pub fn start() -> RedisServer {
        Self::builder().start()
    }

    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// `redis://127.0.0.1:<port>`; `rediss://` with [`RedisServerBuilder::tls`], and
    /// `default:<password>@` before the host with [`RedisServerBuilder::password`].
    pub fn url(&self) -> String {
        server_url(&self.options, self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working dir: the AOF and `redis-server.log` live here.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id, `None` while it is stopped.
    pub fn pid(&self) -> Option<u32> {
        lock(&self.child).as_ref().map(Child::id)
    }

    /// Whether the process is still alive (it may have exited on its own, e.g. after
    /// `SHUTDOWN` sent by the code under test).
    pub fn is_running(&self) -> bool {
        lock(&self.child).as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL and wait for the exit: no shutdown, no final fsync beyond what `appendfsync`
    /// already did. A no-op when it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = lock(&self.child).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the server freezes with every connection open, as a stalled host or a long
    /// fork would freeze it; commands sent meanwhile wait in its sockets. Undo with `resume`.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`RedisServer::pause`]: the server runs the commands that waited.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.pid().unwrap_or_else(|| panic!("redis-server on port {} is not running", self.port));
        // `kill` the command: the workspace forbids unsafe code, and this is our own child.
        let ok = Command::new("kill").arg(sig).arg(pid.to_string()).status().is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid} failed");
    }

    /// `SHUTDOWN NOSAVE` and wait for the exit (SIGKILL if it has not exited within 10 s).
    pub fn shutdown_nosave(&mut self) {
        if let Ok(mut conn) = sync_connection(&self.client()) {
            // The server closes the connection instead of answering; the error is expected.
            let _ = redis::cmd("SHUTDOWN").arg("NOSAVE").exec(&mut conn);
        }
        let Some(mut child) = lock(&self.child).take() else {
            return;
        };
        let started = Instant::now();
        while matches!(child.try_wait(), Ok(None)) {
            if started.elapsed() > READY_DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "redis-server on port {} ignored SHUTDOWN NOSAVE for {READY_DEADLINE:?}; \
                     killed it:\n{}",
                    self.port,
                    log_tail(self.dir.path())
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts it again on the same port and dir, so it reloads its AOF; returns once PING
    /// answers and loading is done. Kills it first (SIGKILL) if it is still running.
    pub fn restart(&mut self) {
        self.kill();
        match spawn_ready(&self.options, self.dir.path(), self.port, true) {
            Ok(child) => *lock(&self.child) = Some(child),
            Err(StartFailure::PortTaken(report)) => panic!(
                "cannot restart redis-server: another process took port {} while it was \
                 down\n{report}",
                self.port
            ),
            Err(StartFailure::Fatal(report)) => panic!("cannot restart redis-server\n{report}"),
        }
    }

    /// A client for this server (trusting its CA when it serves TLS).
    pub fn client(&self) -> redis::Client {
        client_for(&self.options, self.port)
    }

    /// A new multiplexed connection, for assertions and set-up in tests.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        self.client()
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test redis at {}: {e}", self.url()))
    }

    /// `used_memory` from `INFO memory`, in bytes.
    pub async fn info_used_memory(&self) -> u64 {
        let info = self.info("memory").await;
        info_field(&info, "used_memory")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no used_memory in INFO memory:\n{info}"))
    }

    /// `used_memory_dataset` of `INFO memory`: the keys' data, without the server's own
    /// overhead (cached scripts, client buffers, the replication and AOF buffers).
    pub async fn info_used_memory_dataset(&self) -> u64 {
        let info = self.info("memory").await;
        info_field(&info, "used_memory_dataset")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no used_memory_dataset in INFO memory:\n{info}"))
    }

    /// Commands the server has executed so far: the sum of `calls` over `INFO commandstats`.
    /// Commands run inside Lua scripts count; so do the testkit's own (PING and INFO at start,
    /// this INFO, the handshake of each `connection()`), so compare differences, not totals.
    pub async fn command_count(&self) -> u64 {
        sum_calls(&self.info("commandstats").await)
    }

    /// `MEMORY USAGE key SAMPLES 0`: what one key costs, counted exactly (the default estimates
    /// an aggregate from 5 of its entries); 0 for a key that does not exist.
    pub async fn memory_usage(&self, key: &str) -> u64 {
        let mut conn = self.connection().await;
        let n: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .arg("SAMPLES")
            .arg(0)
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("MEMORY USAGE {key} on {}: {e}", self.url()));
        n.unwrap_or(0)
    }

    async fn info(&self, section: &str) -> String {
        let mut conn = self.connection().await;
        redis::cmd("INFO")
            .arg(section)
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("INFO {section} on {}: {e}", self.url()))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Why a start failed: the port can be retried with another one, anything else can't.
enum StartFailure {
    PortTaken(String),
    Fatal(String),
}

/// Spawns redis-server on `port` in `dir` and waits until it is ready. `append_log` keeps the
/// log of earlier runs (a restart) instead of starting a fresh one.
fn spawn_ready(
    options: &RedisServerBuilder,
    dir: &Path,
    port: u16,
    append_log: bool,
) -> Result<Child, StartFailure> {
    let log_path = dir.join(LOG_FILE);
    let log = File::options()
        .create(true)
        .append(append_log)
        .write(true)
        .truncate(!append_log)
        .open(&log_path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", log_path.display()));
    let log_err = log.try_clone().expect("clone the redis-server log handle");
    let mut cmd = Command::new("redis-server");
    if let Some(clock) = &options.fake_clock {
        // What the `datefudge` script does, minus its reading of the clock: preload the
        // library with our fixed offset (`FakeClock`).
        cmd.env("LD_PRELOAD", datefudge_library())
            .env("DATEFUDGE", clock.offset.unwrap_or_default().to_string())
            .env_remove("DATEFUDGE_DOSTATIC");
    }
    cmd.args(["--bind", "127.0.0.1"]);
    match &options.tls {
        None => {
            cmd.arg("--port").arg(port.to_string());
        }
        Some(tls) => {
            let write = |name: &str, pem: &[u8]| {
                let path = dir.join(name);
                std::fs::write(&path, pem).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
                path
            };
            cmd.args(["--port", "0", "--tls-port"])
                .arg(port.to_string())
                .arg("--tls-cert-file")
                .arg(write("tls-server.pem", &tls.cert_pem))
                .arg("--tls-key-file")
                .arg(write("tls-server.key", &tls.key_pem))
                .arg("--tls-ca-cert-file")
                .arg(write("tls-ca.pem", &tls.ca_pem))
                .args(["--tls-auth-clients", "no"]);
        }
    }
    if let Some(password) = &options.password {
        cmd.arg("--requirepass").arg(password);
    }
    cmd.arg("--dir")
        .arg(dir)
        .args(["--appendonly", "yes", "--appendfsync"])
        .arg(&options.appendfsync)
        .args(["--save", "", "--daemonize", "no", "--protected-mode", "no"])
        .args(["--maxmemory-policy", "noeviction"])
        .args(&options.extra)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot start redis-server ({e}); it must be on PATH (Debian: apt-get install \
             redis-server)"
        )
    });
    match wait_ready(&mut child, &client_for(options, port)) {
        Ok(()) => Ok(child),
        Err(why) => {
            let _ = child.kill();
            let _ = child.wait();
            let tail = log_tail(dir);
            let report = format!("redis-server on 127.0.0.1:{port} {why}; its log ends:\n{tail}");
            if tail.contains("Address already in use") || matches!(why, NotReady::NotOurs(_)) {
                Err(StartFailure::PortTaken(report))
            } else {
                Err(StartFailure::Fatal(report))
            }
        }
    }
}

/// Debian's `datefudge.so` (`/usr/lib/<triplet>/datefudge/`, where the `datefudge` script
/// looks for it); panics saying what to install when it is missing.
fn datefudge_library() -> PathBuf {
    static FOUND: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains('-'))
            .map(|e| e.path().join("datefudge/datefudge.so"))
            .filter(|p| p.is_file())
            .collect();
        candidates.sort();
        candidates.into_iter().next()
    });
    found.clone().unwrap_or_else(|| {
        panic!(
            "a fake clock needs datefudge's library (/usr/lib/<triplet>/datefudge/datefudge.so); \
             Debian: apt-get install datefudge"
        )
    })
}

enum NotReady {
    Exited(ExitStatus),
    NotOurs(u32),
    TimedOut,
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotReady::Exited(status) => write!(f, "exited during start-up ({status})"),
            NotReady::NotOurs(pid) => write!(f, "is another process (pid {pid}), not ours"),
            NotReady::TimedOut => {
                write!(f, "did not answer PING with its AOF loaded within {READY_DEADLINE:?}")
            }
        }
    }
}

/// Ready means: PING answers (it does not while the AOF loads), INFO says loading is done, and
/// the process answering is the one we spawned (not whoever else holds the port).
fn wait_ready(child: &mut Child, client: &redis::Client) -> Result<(), NotReady> {
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(NotReady::Exited(status));
        }
        if let Ok(mut conn) = sync_connection(client)
            && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            && let Ok(info) = redis::cmd("INFO").query::<String>(&mut conn)
        {
            let pid = info_field(&info, "process_id").and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| p != child.id()) {
                return Err(NotReady::NotOurs(pid.unwrap_or_default()));
            }
            let loading =
                ["loading", "async_loading"].iter().any(|k| info_field(&info, k).is_some_and(|v| v != "0"));
            if !loading {
                return Ok(());
            }
        }
        if started.elapsed() > READY_DEADLINE {
            return Err(NotReady::TimedOut);
        }
        // A child process sends no readiness notification; polling is the only way.
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn server_url(options: &RedisServerBuilder, port: u16) -> String {
    let scheme = if options.tls.is_some() { "rediss" } else { "redis" };
    let user = match &options.password {
        Some(password) => format!("default:{}@", percent_encode(password)),
        None => String::new(),
    };
    format!("{scheme}://{user}127.0.0.1:{port}")
}

fn client_for(options: &RedisServerBuilder, port: u16) -> redis::Client {
    let url = server_url(options, port);
    let client = match &options.tls {
        None => redis::Client::open(url),
        Some(tls) => {
            ensure_crypto_provider();
            let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(tls.ca_pem.clone()) };
            redis::Client::build_with_tls(url, certs)
        }
    };
    client.unwrap_or_else(|e| panic!("a client for the test redis on port {port}: {e}"))
}

/// rustls 0.23 needs a process-wide crypto provider before the first TLS connection; the
/// workspace uses ring. Installing fails harmlessly when the code under test already did.
pub(crate) fn ensure_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for the URL's password).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A blocking connection with short timeouts, so a half-started server can't hang the test.
fn sync_connection(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
    let conn = client.get_connection_with_timeout(Duration::from_millis(500))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.set_write_timeout(Some(Duration::from_secs(2)))?;
    Ok(conn)
}

fn log_tail(dir: &Path) -> String {
    let path: PathBuf = dir.join(LOG_FILE);
    let log = std::fs::read_to_string(&path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

/// `name:value` from INFO output.
fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(':')).map(str::trim))
}

/// Sums `calls=N` over `cmdstat_<name>:calls=N,usec=...` lines.
fn sum_calls(commandstats: &str) -> u64 {
    commandstats
        .lines()
        .filter(|l| l.starts_with("cmdstat_"))
        .filter_map(|l| l.split_once("calls=").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split(',').next())
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn set(conn: &mut redis::aio::MultiplexedConnection, k: &str, v: &str) {
        redis::cmd("SET").arg(k).arg(v).exec_async(conn).await.expect("SET");
    }

    async fn get(conn: &mut redis::aio::MultiplexedConnection, k: &str) -> Option<String> {
        redis::cmd("GET").arg(k).query_async(conn).await.expect("GET")
    }

    #[tokio::test]
    async fn set_get_and_the_defaults_are_applied() {
        let redis = RedisServer::start();
        assert!(redis.is_running());
        assert!(redis.url().ends_with(&format!(":{}", redis.port())));
        let mut conn = redis.connection().await;
        set(&mut conn, "k", "v").await;
        assert_eq!(get(&mut conn, "k").await.as_deref(), Some("v"));
        let config: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendfsync")
            .query_async(&mut conn)
            .await
            .expect("CONFIG GET");
        assert_eq!(config, ["appendfsync", "always"]);
        let policy: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async(&mut conn)
            .await
            .expect("CONFIG GET");
        assert_eq!(policy, ["maxmemory-policy", "noeviction"]);
        assert!(redis.dir().join(LOG_FILE).is_file());
        assert!(redis.info_used_memory().await > 0);
        let before = redis.command_count().await;
        set(&mut conn, "k2", "v").await;
        assert!(redis.command_count().await > before);
    }

    #[tokio::test]
    async fn a_key_written_before_sigkill_is_back_after_restart_on_the_same_port() {
        let mut redis = RedisServer::start();
        let (port, pid) = (redis.port(), redis.pid());
        set(&mut redis.connection().await, "survives", "yes").await;
        redis.kill();
        assert!(!redis.is_running());
        assert_eq!(redis.pid(), None);
        assert!(crate::net::nothing_listens(port), "a killed server refuses connections");
        redis.restart();
        assert!(redis.is_running());
        assert_eq!(redis.port(), port);
        assert_ne!(redis.pid(), pid);
        let mut conn = redis.connection().await;
        assert_eq!(get(&mut conn, "survives").await.as_deref(), Some("yes"));
    }

    #[tokio::test]
    async fn builder_options_and_shutdown_nosave() {
        let mut redis = RedisServer::builder().appendfsync("everysec").arg("--maxmemory").arg("10mb").start();
        let mut conn = redis.connection().await;
        let fsync: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendfsync")
            .query_async(&mut conn)
            .await
            .expect("CONFIG GET");
        assert_eq!(fsync, ["appendfsync", "everysec"]);
        let maxmemory: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory")
            .query_async(&mut conn)
            .await
            .expect("CONFIG GET");
        assert_eq!(maxmemory, ["maxmemory", "10485760"]);
        redis.shutdown_nosave();
        assert!(!redis.is_running());
        redis.restart();
        assert!(redis.is_running());
    }

    #[test]
    #[should_panic(expected = "exited during start-up")]
    fn a_bad_argument_panics_with_the_log() {
        let _ = RedisServer::builder().arg("--no-such-option").arg("x").start();
    }

    #[tokio::test]
    async fn tls_only_with_a_password() {
        let ca = TestCa::new();
        let mut redis = RedisServer::builder().tls(&ca).password("p@ss word").start();
        drop(ca); // the server keeps its own copies of the PEM files
        assert_eq!(redis.url(), format!("rediss://default:p%40ss%20word@127.0.0.1:{}", redis.port()));
        let mut conn = redis.connection().await;
        set(&mut conn, "k", "over tls").await;
        assert_eq!(get(&mut conn, "k").await.as_deref(), Some("over tls"));

        let tls_client = |root: Vec<u8>| {
            redis::Client::build_with_tls(
                format!("rediss://127.0.0.1:{}", redis.port()),
                redis::TlsCertificates { client_tls: None, root_cert: Some(root) },
            )
            .expect("client")
        };
        let other_ca = tls_client(TestCa::new().ca_pem).get_connection_with_timeout(Duration::from_secs(2));
        assert!(other_ca.is_err(), "a certificate from another CA was trusted");
        let server_ca = std::fs::read(redis.dir().join("tls-ca.pem")).expect("the server's CA copy");
        let without_password = tls_client(server_ca)
            .get_connection_with_timeout(Duration::from_secs(2))
            .and_then(|mut c| redis::cmd("GET").arg("k").query::<Option<String>>(&mut c));
        assert!(without_password.is_err(), "read without the password");
        let plaintext = redis::Client::open(format!("redis://127.0.0.1:{}", redis.port()))
            .expect("url")
            .get_connection_with_timeout(Duration::from_secs(2))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
        assert!(plaintext.is_err(), "the TLS port answered plaintext");

        redis.kill();
        redis.restart();
        let mut conn = redis.connection().await;
        assert_eq!(get(&mut conn, "k").await.as_deref(), Some("over tls"));
    }

    #[tokio::test]
    async fn a_fake_clock_starts_where_it_was_set_and_keeps_running_across_a_restart() {
        let set = 1_774_745_940; // 2026-03-29T00:59:00Z
        let mut redis = RedisServer::builder().fake_clock(set).start();
        let time = |conn: &mut redis::Connection| -> i64 {
            let (s, _us): (i64, i64) = redis::cmd("TIME").query(conn).expect("TIME");
            s
        };
        let mut conn = sync_connection(&redis.client()).expect("connect");
        let first = time(&mut conn);
        assert!((set..set + 60).contains(&first), "TIME says {first}, set to {set}");
        redis.restart();
        let mut conn = sync_connection(&redis.client()).expect("connect");
        let again = time(&mut conn);
        assert!((first..set + 60).contains(&again), "after a restart TIME says {again}, first {first}");
    }

    #[test]
    fn info_parsing() {
        let info = "# Memory\r\nused_memory:1234\r\nused_memory_human:1.2K\r\n";
        assert_eq!(info_field(info, "used_memory"), Some("1234"));
        let stats = "# Commandstats\r\ncmdstat_set:calls=3,usec=5,usec_per_call=1.6\r\n\
                     cmdstat_get:calls=2,usec=1,usec_per_call=0.5\r\n";
        assert_eq!(sum_calls(stats), 5);
    }
}
