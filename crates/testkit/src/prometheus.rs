//! A real `prometheus` server of the test's own (Debian's `prometheus` package): a free
//! 127.0.0.1 port, its own temp dir for the config and the TSDB, the scrape jobs and rule files
//! the test gives, killed on drop. It only ever signals the process it started.

use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::net::free_port;

/// How long a start may take until the server answers as ready (a busy 2-core machine).
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// A fresh port is tried this many times when another process takes the first one first.
const PORT_ATTEMPTS: usize = 5;
/// One HTTP exchange with the server: connect, send, read the whole answer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
const LOG_FILE: &str = "prometheus.log";
const CONFIG_FILE: &str = "prometheus.yml";

/// Options for [`PrometheusServer`]; start from [`PrometheusServer::builder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusServerBuilder {
    interval: Duration,
    jobs: Vec<(String, Vec<String>)>,
    rule_files: Vec<PathBuf>,
}

impl Default for PrometheusServerBuilder {
    fn default() -> Self {
        Self { interval: Duration::from_secs(1), jobs: Vec::new(), rule_files: Vec::new() }
    }
}

impl PrometheusServerBuilder {
    /// Scrape and rule evaluation interval (default 1 s; whole seconds or milliseconds).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Scrape `/metrics` at `target` (`127.0.0.1:9464`) in the job called `job`; a second call
    /// with the same job adds a target to it.
    pub fn scrape(mut self, job: &str, target: &str) -> Self {
        match self.jobs.iter_mut().find(|(j, _)| j == job) {
            Some((_, targets)) => targets.push(target.to_owned()),
            None => self.jobs.push((job.to_owned(), vec![target.to_owned()])),
        }
        self
    }

    /// A rules file (`rule_files:`), evaluated every interval.
    pub fn rule_file(mut self, path: impl AsRef<Path>) -> Self {
        self.rule_files.push(path.as_ref().to_owned());
        self
    }

    /// The `prometheus.yml` these options make.
    fn config(&self) -> String {
        let interval = format!("{}ms", self.interval.as_millis().max(1));
        let quote = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
        let mut out = format!(
            "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n  \
             evaluation_interval: {interval}\n"
        );
        if !self.rule_files.is_empty() {
            out.push_str("rule_files:\n");
            for f in &self.rule_files {
                out.push_str(&format!("  - {}\n", quote(&f.to_string_lossy())));
            }
        }
        out.push_str("scrape_configs:\n");
        for (job, targets) in &self.jobs {
            let targets: Vec<String> = targets.iter().map(|t| quote(t)).collect();
            out.push_str(&format!(
                "  - job_name: {}\n    static_configs:\n      - targets: [{}]\n",
                quote(job),
                targets.join(", ")
            ));
        }
        out
    }

    /// Starts the server and waits until it answers as ready; panics with its log when it can't.
    pub fn start(self) -> PrometheusServer {
        let dir = tempfile::Builder::new()
            .prefix("entraguard-prometheus-")
            .tempdir()
            .expect("create a temp dir for prometheus");
        let config = dir.path().join(CONFIG_FILE);
        std::fs::write(&config, self.config())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
        let mut last_failure = String::new();
        for _ in 0..PORT_ATTEMPTS {
            // The port is free when we pick it, not necessarily when prometheus binds it.
            let port = free_port();
            match spawn_ready(dir.path(), port) {
                Ok(child) => return PrometheusServer { dir, port, child: Some(child) },
                Err(StartFailure::PortTaken(report)) => last_failure = report,
                Err(StartFailure::Fatal(report)) => panic!("{report}"),
            }
        }
        panic!("prometheus found no free port in {PORT_ATTEMPTS} attempts; last:\n{last_failure}");
    }
}

/// A `prometheus` process this test started; killed on drop (its temp dir goes with it).
pub struct PrometheusServer {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl fmt::Debug for PrometheusServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusServer")
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .field("pid", &self.child.as_ref().map(Child::id))
            .finish()
    }
}

impl PrometheusServer {
    pub fn builder() -> PrometheusServerBuilder {
        PrometheusServerBuilder::default()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its working dir: `prometheus.yml`, `prometheus.log` and the TSDB (`data/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The end of its log, for a failure message.
    pub fn log_tail(&self) -> String {
        log_tail(self.dir.path())
    }

    /// `GET path` (with its query string, already encoded): the status and the body; `Err` when
    /// the server could not be reached.
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        http_get(self.port, path).map_err(|e| format!("GET {}{path}: {e}", self.url()))
    }

    /// An instant query (`/api/v1/query`): the `data.result` array, or the error Prometheus gave
    /// (a bad expression) or the transport's.
    pub fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>, String> {
        let (status, body) = self.get(&format!("/api/v1/query?query={}", percent_encode(expr)))?;
        let json: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| format!("query {expr:?}: HTTP {status}, not JSON ({e}): {body}"))?;
        if json["status"] != "success" {
            return Err(format!("query {expr:?}: HTTP {status}: {body}"));
        }
        match &json["data"]["result"] {
            serde_json::Value::Array(result) => Ok(result.clone()),
            // A scalar or string result: one value.
            other => Ok(vec![other.clone()]),
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

enum StartFailure {
    PortTaken(String),
    Fatal(String),
}

fn spawn_ready(dir: &Path, port: u16) -> Result<Child, StartFailure> {
    let log_path = dir.join(LOG_FILE);
    let log = File::create(&log_path).unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
    let log_err = log.try_clone().expect("clone the prometheus log handle");
    let mut child = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join(CONFIG_FILE).display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start prometheus ({e}); it must be on PATH (Debian: apt-get install prometheus)")
        });
    match wait_ready(&mut child, dir, port) {
        Ok(()) => Ok(child),
        Err(why) => {
            let _ = child.kill();
            let _ = child.wait();
            let tail = log_tail(dir);
            let report = format!("prometheus on 127.0.0.1:{port} {why}; its log ends:\n{tail}");
            if tail.contains("address already in use") || matches!(why, NotReady::NotOurs) {
                Err(StartFailure::PortTaken(report))
            } else {
                Err(StartFailure::Fatal(report))
            }
        }
    }
}

enum NotReady {
    Exited(ExitStatus),
    NotOurs,
    TimedOut,
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotReady::Exited(status) => write!(f, "exited during start-up ({status})"),
            NotReady::NotOurs => write!(f, "is another server's port (it names another TSDB dir)"),
            NotReady::TimedOut => write!(f, "was not ready within {READY_DEADLINE:?}"),
        }
    }
}

/// Until `/-/ready` answers 200 and `/api/v1/status/flags` names our TSDB dir (so the server
/// that answers is the one we started, not another process on the port).
fn wait_ready(child: &mut Child, dir: &Path, port: u16) -> Result<(), NotReady> {
    let started = Instant::now();
    let ours = dir.join("data").display().to_string();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(NotReady::Exited(status));
        }
        if matches!(http_get(port, "/-/ready"), Ok((200, _))) {
            return match http_get(port, "/api/v1/status/flags") {
                Ok((200, body)) if body.contains(&ours) => Ok(()),
                _ => Err(NotReady::NotOurs),
            };
        }
        if started.elapsed() > READY_DEADLINE {
            return Err(NotReady::TimedOut);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plain HTTP/1.0 GET on 127.0.0.1 (the server closes the connection after its answer).
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP status line in {head:?}")))?;
    Ok((status, body.to_owned()))
}

/// `s` as a URL query value: everything but RFC 3986's unreserved characters percent-encoded.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join(LOG_FILE)).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_each_job_once_with_all_its_targets() {
        let b = PrometheusServer::builder()
            .interval(Duration::from_millis(500))
            .scrape("w", "127.0.0.1:1")
            .scrape("w", "127.0.0.1:2")
            .rule_file("/x/alerts.yaml");
        assert_eq!(
            b.config(),
            "global:\n  scrape_interval: 500ms\n  scrape_timeout: 500ms\n  evaluation_interval: 500ms\n\
             rule_files:\n  - \"/x/alerts.yaml\"\n\
             scrape_configs:\n  - job_name: \"w\"\n    static_configs:\n      - targets: [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n"
        );
    }

    #[test]
    fn percent_encoding_of_a_query() {
        assert_eq!(
            percent_encode("sum(rate(x{a=\"b\"}[1m]))"),
            "sum%28rate%28x%7Ba%3D%22b%22%7D%5B1m%5D%29%29"
        );
    }

    #[test]
    fn answers_queries_and_leaves_nothing_behind() {
        let prom = PrometheusServer::builder().start();
        let dir = prom.dir().to_owned();
        assert!(dir.join(CONFIG_FILE).is_file());
        let one = prom.query("vector(1)").expect("vector(1)");
        assert_eq!(one.len(), 1, "{one:?}");
        assert_eq!(one[0]["value"][1], "1", "{one:?}");
        let err = prom.query("sum(").expect_err("a bad expression is an error");
        assert!(err.contains("bad_data"), "{err}");
        drop(prom);
        assert!(!dir.exists(), "the temp dir outlived the server");
    }
}
