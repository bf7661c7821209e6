//! A real HTTP/1.1 server on 127.0.0.1 standing in for Slack, Teams or a SOAR webhook: its
//! answers are scripted (a queue of replies, then a default), every request is recorded with its
//! arrival time, and tests wait for requests without polling. It can be stopped (connections
//! refused) and restarted on the same port.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use crate::net::{PortHold, ServerThread, bind_localhost, lock};

/// One scripted answer: `Reply::status(503).header("retry-after", "1").body("busy")`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
    /// How long to wait before answering; other requests are served meanwhile.
    pub delay: Duration,
}

impl Reply {
    /// An empty reply with this status; panics on a code HTTP can't carry (outside 100..=999).
    pub fn status(status: u16) -> Self {
        assert!(StatusCode::from_u16(status).is_ok(), "{status} is not an HTTP status code");
        Self { status, body: String::new(), headers: Vec::new(), delay: Duration::ZERO }
    }

    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    /// Adds a header (repeat the call for several values); it replaces a default header of the
    /// same name such as `content-type`. Panics on a name or value HTTP can't carry.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        assert!(HeaderName::try_from(name.as_str()).is_ok(), "{name:?} is not a valid header name");
        assert!(
            HeaderValue::try_from(value.as_str()).is_ok(),
            "{value:?} is not a valid value for header {name}"
        );
        self.headers.push((name, value));
        self
    }

    /// Answer only after `delay`: a slow or hanging receiver.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, self.body).into_response();
        let mut replaced: Vec<HeaderName> = Vec::new();
        for (name, value) in &self.headers {
            let (Ok(name), Ok(value)) =
                (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value.as_str()))
            else {
                continue; // only reachable for a Reply built field by field
            };
            if !replaced.contains(&name) {
                response.headers_mut().remove(&name);
                replaced.push(name.clone());
            }
            response.headers_mut().append(name, value);
        }
        response
    }
}

/// One request as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// In arrival order, names lower-case; a repeated header appears once per value.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub received_at: Instant,
}

impl Recorded {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics showing the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {} body is not JSON ({e}): {}",
                self.method,
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn summary(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        let cut: String = body.chars().take(80).collect();
        let more = if cut.len() < body.len() { "…" } else { "" };
        format!("{} {} {cut}{more}", self.method, self.path)
    }
}

/// The script and the record, behind one lock so the n-th request always gets the n-th reply.
struct Log {
    queued: VecDeque<Reply>,
    default: Reply,
    requests: Vec<Recorded>,
}

struct Shared {
    log: Mutex<Log>,
    /// The number of requests recorded so far; waiters subscribe to it.
    count: watch::Sender<usize>,
}

/// A scriptable HTTP receiver on `http://127.0.0.1:<port>`; stops on drop.
pub struct HttpReceiver {
    shared: Arc<Shared>,
    port: u16,
    /// `None` while stopped.
    server: Mutex<Option<ServerThread>>,
    /// The port stays ours while stopped, so `restart` finds it free (see [`PortHold`]).
    _hold: PortHold,
}

impl fmt::Debug for HttpReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpReceiver")
            .field("url", &self.url())
            .field("running", &self.is_running())
            .field("requests", &lock(&self.shared.log).requests.len())
            .finish()
    }
}

impl HttpReceiver {
    /// Answers `200 ok` unless scripted otherwise.
    pub fn start() -> Self {
        Self::with_default(Reply::status(200).body("ok"))
    }

    /// Answers `default` to every request no queued reply is left for.
    pub fn with_default(default: Reply) -> Self {
        Self::serve_on(bind_localhost(0, "http receiver"), default)
    }

    /// Answers `200 ok`, on a given port: a new receiver where an old one was.
    pub fn start_on(port: u16) -> Self {
        Self::serve_on(bind_localhost(port, "http receiver"), Reply::status(200).body("ok"))
    }

    fn serve_on(listener: std::net::TcpListener, default: Reply) -> Self {
        let port = listener.local_addr().expect("local address of a bound listener").port();
        let receiver = Self {
            shared: Arc::new(Shared {
                log: Mutex::new(Log { queued: VecDeque::new(), default, requests: Vec::new() }),
                count: watch::Sender::new(0),
            }),
            port,
            server: Mutex::new(None),
            _hold: PortHold::new(port, "http receiver"),
        };
        receiver.serve(listener);
        receiver
    }

    fn serve(&self, listener: std::net::TcpListener) {
        let shared = self.shared.clone();
        let thread = ServerThread::spawn("http-receiver", listener, move |listener| async move {
            let app = Router::new()
                .fallback(record_and_reply)
                .layer(DefaultBodyLimit::disable())
                .with_state(shared);
            // Only fails when accepting fails for good; the test then sees refused requests.
            let _ = axum::serve(listener, app).await;
        });
        *lock(&self.server) = Some(thread);
    }

    /// Replies for the next requests, in order; then the default again.
    pub fn push_replies(&self, replies: impl IntoIterator<Item = Reply>) {
        lock(&self.shared.log).queued.extend(replies);
    }

    /// Drops the replies still queued (the default answers from now on); returns how many.
    pub fn clear_replies(&self) -> usize {
        let mut log = lock(&self.shared.log);
        let n = log.queued.len();
        log.queued.clear();
        n
    }

    /// Replaces the answer given when no queued reply is left.
    pub fn set_default(&self, reply: Reply) {
        lock(&self.shared.log).default = reply;
    }

    /// [`HttpReceiver::set_default`], returning how many requests arrived before the switch (in
    /// the same step: every later request gets the new answer, every earlier one the old).
    pub fn switch_default(&self, reply: Reply) -> usize {
        let mut log = lock(&self.shared.log);
        log.default = reply;
        log.requests.len()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `url()` followed by `path` (which should start with `/`).
    pub fn url_for(&self, path: &str) -> String {
        format!("{}{path}", self.url())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.log).requests.clone()
    }

    /// Waits until at least `n` requests have arrived and returns all of them; panics with
    /// `expected N requests within D, got M: <summary>` when `deadline` passes first.
    pub async fn wait_for_requests(&self, n: usize, deadline: Duration) -> Vec<Recorded> {
        let mut count = self.shared.count.subscribe();
        // `wait_for` answers with a guard on the counter: drop it before taking the log, or a
        // request arriving now (which takes the log, then updates the counter) deadlocks.
        let arrived = tokio::time::timeout(deadline, count.wait_for(|c| *c >= n)).await.map(|r| r.is_ok());
        let got = self.requests();
        if arrived.is_err() {
            let summary: Vec<String> = got.iter().take(10).map(Recorded::summary).collect();
            panic!("expected {n} requests within {deadline:?}, got {}: {summary:?}", got.len());
        }
        got
    }

    /// Stops listening and closes every open connection; until `restart`, connections are
    /// refused. Scripted replies and recorded requests are kept.
    pub fn stop(&self) {
        let server = lock(&self.server).take();
        if let Some(mut server) = server {
            server.stop();
        }
    }

    /// Serves again on the same port (stopping first if needed).
    pub fn restart(&self) {
        self.stop();
        self.serve(bind_localhost(self.port, "http receiver restart"));
    }

    /// Whether it is serving (not stopped).
    pub fn is_running(&self) -> bool {
        lock(&self.server).is_some()
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn record_and_reply(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let recorded = Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .map(|(name, value)| {
                (name.as_str().to_ascii_lowercase(), String::from_utf8_lossy(value.as_bytes()).into_owned())
            })
            .collect(),
        body: body.to_vec(),
        received_at: Instant::now(),
    };
    let (reply, count) = {
        let mut log = lock(&shared.log);
        log.requests.push(recorded);
        let reply = match log.queued.pop_front() {
            Some(reply) => reply,
            None => log.default.clone(),
        };
        (reply, log.requests.len())
    };
    // Outside the log's lock: a waiter may hold the counter while it reads the log.
    shared.count.send_if_modified(|c| {
        let grew = count > *c;
        if grew {
            *c = count;
        }
        grew
    });
    // Each connection is its own task, so a delayed reply holds up only its own request.
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    reply.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// A minimal HTTP/1.1 client over raw TCP (the testkit has no HTTP client of its own):
    /// returns the status line's code and the whole response.
    async fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect to the receiver");
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).await.expect("write request");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read response");
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {response:?}"));
        (status, response)
    }

    #[tokio::test]
    async fn scripted_500_500_200_and_every_request_recorded() {
        let receiver = HttpReceiver::start();
        receiver
            .push_replies([Reply::status(500).body("boom"), Reply::status(500).header("retry-after", "1")]);
        let mut statuses = Vec::new();
        for i in 0..3 {
            let body = format!("{{\"attempt\":{i}}}");
            let (status, response) = post(
                receiver.port(),
                "/hook?x=1",
                &[("X-Signature", "sig"), ("Content-Type", "application/json")],
                &body,
            )
            .await;
            if i == 1 {
                assert!(response.to_ascii_lowercase().contains("retry-after: 1"), "{response}");
            }
            if i == 2 {
                assert!(response.ends_with("ok"), "{response}");
            }
            statuses.push(status);
        }
        assert_eq!(statuses, [500, 500, 200]);
        let got = receiver.wait_for_requests(3, Duration::from_secs(30)).await;
        assert_eq!(got.len(), 3);
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.method, "POST");
            assert_eq!(r.path, "/hook");
            assert_eq!(r.header("x-signature"), Some("sig"));
            assert_eq!(r.header("Content-Type"), Some("application/json"));
            assert!(r.headers.iter().all(|(k, _)| *k == k.to_ascii_lowercase()));
            assert_eq!(r.json()["attempt"], i);
        }
        assert!(got[0].received_at <= got[2].received_at);
    }

    #[tokio::test]
    async fn set_default_and_header_replacing_content_type() {
        let receiver = HttpReceiver::with_default(Reply::status(502));
        assert_eq!(post(receiver.port(), "/", &[], "").await.0, 502);
        receiver.set_default(Reply::status(201).header("content-type", "application/json").body("{}"));
        let (status, response) = post(receiver.port(), "/", &[], "").await;
        assert_eq!(status, 201);
        let lower = response.to_ascii_lowercase();
        assert_eq!(lower.matches("content-type").count(), 1, "{response}");
        assert!(lower.contains("content-type: application/json"), "{response}");
    }

    #[tokio::test]
    async fn a_slow_reply_does_not_block_other_requests() {
        let receiver = HttpReceiver::start();
        receiver.push_replies([Reply::status(200).delay(Duration::from_secs(3))]);
        let port = receiver.port();
        let slow = tokio::spawn(async move { post(port, "/slow", &[], "").await.0 });
        receiver.wait_for_requests(1, Duration::from_secs(30)).await;
        let started = Instant::now();
        assert_eq!(post(port, "/fast", &[], "").await.0, 200);
        assert!(started.elapsed() < Duration::from_secs(2), "the fast request waited for the slow one");
        assert!(!slow.is_finished());
        slow.abort();
    }

    #[tokio::test]
    async fn a_stopped_receiver_refuses_then_restarts_on_the_same_port() {
        let receiver = HttpReceiver::start();
        let port = receiver.port();
        receiver.stop();
        assert!(!receiver.is_running());
        assert!(crate::net::nothing_listens(port), "a stopped receiver refuses connections");
        receiver.restart();
        assert!(receiver.is_running());
        assert_eq!(post(port, "/", &[], "").await.0, 200);
        drop(receiver);
        let again = HttpReceiver::start_on(port);
        assert_eq!(again.url(), format!("http://127.0.0.1:{port}"));
        assert_eq!(post(port, "/", &[], "").await.0, 200);
        assert_eq!(again.requests().len(), 1);
    }

    #[tokio::test]
    async fn stop_closes_keep_alive_connections() {
        let receiver = HttpReceiver::start();
        let mut stream = TcpStream::connect(("127.0.0.1", receiver.port())).await.expect("connect");
        stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
        receiver.wait_for_requests(1, Duration::from_secs(30)).await;
        receiver.stop();
        let mut rest = Vec::new();
        // The first response may still be buffered; after it the server must have hung up.
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the connection stayed open after stop()");
    }

    #[tokio::test]
    #[should_panic(expected = "expected 2 requests within 50ms, got 1: [\"POST /only ")]
    async fn waiting_too_long_names_what_came() {
        let receiver = HttpReceiver::start();
        post(receiver.port(), "/only", &[], "x").await;
        receiver.wait_for_requests(2, Duration::from_millis(50)).await;
    }

    #[test]
    fn works_without_a_runtime() {
        let receiver = HttpReceiver::start();
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", receiver.port())).expect("connect");
        std::io::Write::write_all(&mut stream, b"GET /sync HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("write");
        let mut response = String::new();
        std::io::Read::read_to_string(&mut stream, &mut response).expect("read");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert_eq!(receiver.requests()[0].path, "/sync");
    }
}
