//! A real HTTP server on 127.0.0.1 standing in for Slack, Teams or a SOAR: its answers are
//! scripted (a queue of replies, then a default), every request is recorded with its arrival
//! time, and tests wait for requests without polling.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self { status, body: String::new(), headers: Vec::new(), delay: Duration::ZERO }
    }

    pub fn body(mut self, body: &str) -> Self {
        self.body = body.to_owned();
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Answer only after this long (a slow or hanging receiver).
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub received_at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("request body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body))
        })
    }
}

struct Shared {
    replies: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    requests: Mutex<Vec<Recorded>>,
    count: watch::Sender<usize>,
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// A scriptable HTTP receiver.
pub struct HttpReceiver {
    shared: Arc<Shared>,
    port: u16,
    running: Mutex<Option<Running>>,
}

impl HttpReceiver {
    /// Answers `200 ok` unless scripted otherwise.
    pub fn start() -> Self {
        Self::with_default(Reply::status(200).body("ok"))
    }

    pub fn with_default(default: Reply) -> Self {
        let shared = Arc::new(Shared {
            replies: Mutex::new(VecDeque::new()),
            default: Mutex::new(default),
            requests: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
        });
        let listener = bind(0);
        let port = listener.local_addr().expect("local addr").port();
        let r = Self { shared, port, running: Mutex::new(None) };
        r.serve(listener);
        r
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let app = Router::new().fallback(handle).with_state(self.shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        *self.running.lock().expect("lock") = Some(Running { stop, task });
    }

    /// Replies used in order for the next requests, before the default.
    pub fn push_replies(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.replies.lock().expect("lock").extend(replies);
    }

    pub fn set_default(&self, reply: Reply) {
        *self.shared.default.lock().expect("lock") = reply;
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn url_for(&self, path: &str) -> String {
        format!("{}{path}", self.url())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().expect("lock").clone()
    }

    /// Waits until at least `n` requests have arrived; returns them all.
    pub async fn wait_for_requests(&self, n: usize, deadline: Duration) -> Vec<Recorded> {
        let mut rx = self.shared.count.subscribe();
        if tokio::time::timeout(deadline, rx.wait_for(|c| *c >= n)).await.is_err() {
            let got = self.requests();
            let summary: Vec<String> =
                got.iter().take(5).map(|r| format!("{} {}", r.method, r.path)).collect();
            panic!("expected {n} requests within {deadline:?}, got {}: {summary:?}", got.len());
        }
        self.requests()
    }

    /// Stops listening: new connections are refused until `restart`.
    pub fn stop(&self) {
        if let Some(r) = self.running.lock().expect("lock").take() {
            let _ = r.stop.send(());
            r.task.abort();
        }
    }

    /// Listens again on the same port.
    pub fn restart(&self) {
        self.stop();
        let listener = bind(self.port);
        self.serve(listener);
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn bind(port: u16) -> tokio::net::TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("reuseaddr");
    socket.bind(([127, 0, 0, 1], port).into()).unwrap_or_else(|e| panic!("bind 127.0.0.1:{port}: {e}"));
    socket.listen(1024).expect("listen")
}

async fn handle(
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
            .map(|(k, v)| {
                (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned())
            })
            .collect(),
        body: body.to_vec(),
        received_at: Instant::now(),
    };
    let reply = {
        let mut requests = shared.requests.lock().expect("lock");
        requests.push(recorded);
        let n = requests.len();
        shared.count.send_replace(n);
        let scripted = shared.replies.lock().expect("lock").pop_front();
        scripted.unwrap_or_else(|| shared.default.lock().expect("lock").clone())
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, reply.body).into_response();
    for (k, v) in reply.headers {
        if let (Ok(name), Ok(value)) =
            (axum::http::HeaderName::try_from(k.as_str()), axum::http::HeaderValue::try_from(v.as_str()))
        {
            resp.headers_mut().insert(name, value);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scripted_replies_then_default_and_recording() {
        let r = HttpReceiver::start();
        r.push_replies([Reply::status(500), Reply::status(503).header("retry-after", "1")]);
        let client = reqwest_free_post(r.port()).await;
        assert_eq!(client, vec![500, 503, 200]);
        let got = r.wait_for_requests(3, Duration::from_secs(2)).await;
        assert_eq!(got[0].method, "POST");
        assert_eq!(got[0].path, "/p");
        assert_eq!(got[0].body, b"{\"a\":1}");
        assert_eq!(got[0].json()["a"], 1);
        assert_eq!(got[0].header("X-Test"), Some("yes"));
    }

    #[tokio::test]
    async fn stopped_receiver_refuses_then_restarts_on_the_same_port() {
        let r = HttpReceiver::start();
        r.stop();
        tokio::task::yield_now().await;
        assert!(tokio::net::TcpStream::connect(("127.0.0.1", r.port())).await.is_err());
        r.restart();
        assert_eq!(reqwest_free_post(r.port()).await[0], 200);
    }

    /// Three POSTs over raw TCP (the testkit has no HTTP client of its own).
    async fn reqwest_free_post(port: u16) -> Vec<u16> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                break;
            };
            let body = "{\"a\":1}";
            let req = format!(
                "POST /p HTTP/1.1\r\nHost: x\r\nX-Test: yes\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(req.as_bytes()).await.expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("read");
            statuses.push(out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0));
            if statuses.len() == 1 && statuses[0] == 200 {
                break;
            }
        }
        statuses
    }
}
