//! A real `redis-server` on a free 127.0.0.1 port with its own temp dir and AOF on. It kills
//! only the process it started, on `kill()` or on drop; it never touches another Redis.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bins::free_port;

/// Options for [`RedisServer`].
#[derive(Debug, Clone)]
pub struct RedisServerBuilder {
    appendfsync: String,
    extra: Vec<String>,
}

impl RedisServerBuilder {
    /// `always` (default), `everysec` or `no`.
    pub fn appendfsync(mut self, policy: &str) -> Self {
        self.appendfsync = policy.to_owned();
        self
    }

    /// An extra command-line argument for redis-server.
    pub fn arg(mut self, a: &str) -> Self {
        self.extra.push(a.to_owned());
        self
    }

    pub fn start(self) -> RedisServer {
        let dir = tempfile::Builder::new().prefix("entraguard-redis-").tempdir().expect("temp dir");
        let port = free_port();
        let mut server = RedisServer { dir, port, child: None, builder: self };
        server.spawn();
        server
    }
}

/// A redis-server this test started.
pub struct RedisServer {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    builder: RedisServerBuilder,
}

impl RedisServer {
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder { appendfsync: "always".to_owned(), extra: Vec::new() }
    }

    /// Starts one with the defaults: AOF on, `appendfsync always`, `noeviction`.
    pub fn start() -> RedisServer {
        Self::builder().start()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let dir = self.dir.path().to_string_lossy().into_owned();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("redis log file");
        let log_err = log.try_clone().expect("log handle");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &port, "--dir", &dir])
            .args(["--appendonly", "yes", "--appendfsync", &self.builder.appendfsync])
            .args(["--save", "", "--daemonize", "no", "--protected-mode", "no"])
            .args(["--maxmemory-policy", "noeviction"])
            .args(&self.builder.extra)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start redis-server (is it installed? `apt-get install redis-server`): {e}")
        });
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits until PING answers (and any AOF is loaded).
    fn wait_ready(&mut self) {
        let started = Instant::now();
        let client = redis::Client::open(self.url()).expect("redis url");
        loop {
            if let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200))
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("redis-server exited with {status} during start-up:\n{}", self.log_tail());
            }
            if started.elapsed() > Duration::from_secs(10) {
                panic!(
                    "redis-server on port {} did not answer PING within 10 s:\n{}",
                    self.port,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL: no shutdown, no final AOF rewrite.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `SHUTDOWN NOSAVE`, then waits for the process to exit.
    pub fn shutdown_nosave(&mut self) {
        if let Ok(client) = redis::Client::open(self.url())
            && let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(1))
        {
            let _ = redis::cmd("SHUTDOWN").arg("NOSAVE").query::<()>(&mut conn);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// Starts redis-server again on the same port and directory, so it reloads its AOF.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// A connection for test assertions.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to test redis")
    }

    async fn info(&self, section: &str) -> String {
        let mut conn = self.connection().await;
        redis::cmd("INFO").arg(section).query_async(&mut conn).await.expect("INFO")
    }

    /// `used_memory` from INFO memory, in bytes.
    pub async fn info_used_memory(&self) -> u64 {
        let info = self.info("memory").await;
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("used_memory in INFO")
    }

    /// Commands Redis has executed, summed over INFO commandstats (commands run inside Lua
    /// scripts included).
    pub async fn command_count(&self) -> u64 {
        let info = self.info("commandstats").await;
        info.lines()
            .filter_map(|l| l.split("calls=").nth(1))
            .filter_map(|rest| rest.split(',').next())
            .filter_map(|n| n.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn aof_survives_kill_and_restart_on_the_same_port() {
        let mut r = RedisServer::start();
        let port = r.port();
        let mut c = r.connection().await;
        let _: () = redis::cmd("SET").arg("k").arg("v").query_async(&mut c).await.expect("set");
        r.kill();
        assert!(!r.is_running());
        r.restart();
        assert_eq!(r.port(), port);
        let mut c = r.connection().await;
        let v: String = redis::cmd("GET").arg("k").query_async(&mut c).await.expect("get");
        assert_eq!(v, "v");
        assert!(r.command_count().await >= 1);
        assert!(r.info_used_memory().await > 0);
    }
}
