//! A minimal HTTP receiver on 127.0.0.1 for the benchmark: answers at once (keep-alive), counts
//! requests, and keeps only what the figures need (arrival times, the publish stamp carried in
//! the event, first-attempt times for retried deliveries), so it costs little next to the worker.
//!
//! It is hyper's HTTP/1 server without a router, on a one-thread runtime of its own thread: the
//! benchmark's own runtime (two threads) cost it cross-thread wake-ups on every request, and the
//! sink's CPU counts in `sink_cpu_share`. It stops when the [`Sink`] is dropped.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::{Mutex, oneshot, watch};

/// What the sink does with each delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answer 200.
    Accept,
    /// Answer 500 to a delivery's first attempt and 200 to the next: the retry-precision run.
    FailFirst,
    /// Answer after 30 s: an endpoint that hangs (every attempt times out).
    Hang,
    /// Answer 503 until [`Sink::recover`], then 200: an endpoint that is down, then back.
    Down,
    /// Answer 200 after 2 ms: a slow receiver (a SIEM's ingest, say).
    Slow,
}

pub struct Sink {
    pub url: String,
    pub started: Instant,
    state: Arc<SinkState>,
    /// Dropped with the sink: its thread stops serving.
    _stop: oneshot::Sender<()>,
}

struct SinkState {
    mode: Mode,
    /// For [`Mode::Down`]: back up.
    recovered: std::sync::atomic::AtomicBool,
    /// Requests answered 503 while down.
    refused: AtomicUsize,
    /// Delivery ids answered 200, to spot a delivery made twice.
    delivered_ids: Mutex<std::collections::HashSet<String>>,
    duplicates: AtomicUsize,
    started: Instant,
    count: AtomicUsize,
    counter: watch::Sender<usize>,
    first_ns: AtomicU64,
    last_ns: AtomicU64,
    /// Publish-to-arrival latencies in µs (events stamped by the benchmark).
    latencies_us: Mutex<Vec<u64>>,
    /// Delivery id → first attempt arrival (ns since start).
    first_attempts: Mutex<HashMap<String, u64>>,
    /// Retry arrival minus first arrival, in µs.
    retry_gaps_us: Mutex<Vec<u64>>,
}

impl Sink {
    pub async fn start(mode: Mode) -> anyhow::Result<Sink> {
        let started = Instant::now();
        let state = Arc::new(SinkState {
            mode,
            recovered: std::sync::atomic::AtomicBool::new(false),
            refused: AtomicUsize::new(0),
            delivered_ids: Mutex::new(std::collections::HashSet::new()),
            duplicates: AtomicUsize::new(0),
            started,
            count: AtomicUsize::new(0),
            counter: watch::channel(0).0,
            first_ns: AtomicU64::new(u64::MAX),
            last_ns: AtomicU64::new(0),
            latencies_us: Mutex::new(Vec::new()),
            first_attempts: Mutex::new(HashMap::new()),
            retry_gaps_us: Mutex::new(Vec::new()),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (stop, stopped) = oneshot::channel();
        let serving = state.clone();
        std::thread::Builder::new().name("bench-sink".into()).spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    r = serve(listener, serving) => r,
                    _ = stopped => Ok(()),
                }
            })
        })?;
        Ok(Sink { url, started, state, _stop: stop })
    }

    /// For [`Mode::Down`]: answer 200 from now on.
    pub fn recover(&self) {
        self.state.recovered.store(true, Ordering::SeqCst);
    }

    /// Requests answered 503 while down.
    pub fn refused(&self) -> usize {
        self.state.refused.load(Ordering::Relaxed)
    }

    /// Deliveries answered 200 that had been answered 200 before (same delivery id).
    pub fn duplicates(&self) -> usize {
        self.state.duplicates.load(Ordering::Relaxed)
    }

    pub fn count(&self) -> usize {
        self.state.count.load(Ordering::Relaxed)
    }

    /// Waits until `n` requests arrived (no polling: the handler signals).
    pub async fn wait_for(&self, n: usize, deadline: std::time::Duration) -> anyhow::Result<()> {
        let mut rx = self.state.counter.subscribe();
        tokio::time::timeout(deadline, rx.wait_for(|c| *c >= n)).await.map_err(|_| {
            anyhow::anyhow!("sink got {} of {n} requests within {deadline:?}", self.count())
        })??;
        Ok(())
    }

    /// Seconds between the first and the last request.
    pub fn span_secs(&self) -> f64 {
        let first = self.state.first_ns.load(Ordering::Relaxed);
        let last = self.state.last_ns.load(Ordering::Relaxed);
        last.saturating_sub(first) as f64 / 1e9
    }

    pub async fn latencies_us(&self) -> Vec<u64> {
        self.state.latencies_us.lock().await.clone()
    }

    pub async fn retry_gaps_us(&self) -> Vec<u64> {
        self.state.retry_gaps_us.lock().await.clone()
    }
}

/// Benchmark events carry their publish time (µs since the sink started) in `scan_id`.
pub fn stamp(started: Instant) -> String {
    format!("bench-{}", started.elapsed().as_micros())
}

/// Accepts connections and serves each with hyper's HTTP/1 (keep-alive) until stopped.
async fn serve(listener: std::net::TcpListener, state: Arc<SinkState>) -> std::io::Result<()> {
    serve_http1(listener, state, answer).await
}

/// Accepts connections on `listener` and serves each with hyper's HTTP/1 (keep-alive, no
/// Nagle delay), every request answered by `answer` with `state`: the sink's loop, and the OTLP
/// sink's ([`crate::otlp_sink`]).
pub(crate) async fn serve_http1<S, F, Fut>(
    listener: std::net::TcpListener,
    state: Arc<S>,
    answer: F,
) -> std::io::Result<()>
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, Request<Incoming>) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = Result<Response<Empty<Bytes>>, Infallible>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::from_std(listener)?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(state.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(s: Arc<SinkState>, req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let delivery =
        || parts.headers.get("x-coderaft-delivery").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let status = handle(&s, delivery, &body).await;
    let mut response = Response::new(Empty::new());
    *response.status_mut() = status;
    Ok(response)
}

async fn handle(s: &SinkState, delivery: impl Fn() -> String, body: &[u8]) -> StatusCode {
    let now_ns = u64::try_from(s.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    s.first_ns.fetch_min(now_ns, Ordering::Relaxed);
    s.last_ns.fetch_max(now_ns, Ordering::Relaxed);
    if s.mode == Mode::Down {
        if !s.recovered.load(Ordering::SeqCst) {
            s.refused.fetch_add(1, Ordering::Relaxed);
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        if !s.delivered_ids.lock().await.insert(delivery()) {
            s.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }
    if s.mode == Mode::Hang {
        let n = s.count.fetch_add(1, Ordering::Relaxed) + 1;
        s.counter.send_replace(n);
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        return StatusCode::OK;
    }
    if s.mode == Mode::Slow {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    if s.mode == Mode::FailFirst {
        let id = delivery();
        let mut firsts = s.first_attempts.lock().await;
        match firsts.get(&id) {
            None => {
                firsts.insert(id, now_ns);
                // The first attempt fails and is not counted as a delivery.
                return StatusCode::INTERNAL_SERVER_ERROR;
            }
            Some(first) => {
                let gap = now_ns.saturating_sub(*first) / 1000;
                s.retry_gaps_us.lock().await.push(gap);
            }
        }
    }
    // Only events stamped by the benchmark carry a publish time: the drain runs skip this.
    const STAMP: &[u8] = b"\"scan_id\":\"bench-";
    if let Some(pos) = find(body, STAMP) {
        let rest = &body[pos + STAMP.len()..];
        let end = rest.iter().position(|b| *b == b'"').unwrap_or(0);
        if let Some(published) = std::str::from_utf8(&rest[..end]).ok().and_then(|t| t.parse::<u64>().ok()) {
            let now_us = now_ns / 1000;
            s.latencies_us.lock().await.push(now_us.saturating_sub(published));
        }
    }
    let n = s.count.fetch_add(1, Ordering::Relaxed) + 1;
    s.counter.send_replace(n);
    StatusCode::OK
}

/// Where `needle` (non-empty) first occurs in `hay`: jumps from one occurrence of its first byte
/// to the next instead of comparing at every position.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    let mut from = 0;
    while let Some(i) = hay.get(from..)?.iter().position(|b| *b == first) {
        let at = from + i;
        if hay.get(at..at + needle.len())? == needle {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::find;

    #[test]
    fn finds_the_stamp() {
        assert_eq!(find(b"xx\"scan_id\":\"bench-12\"", b"\"scan_id\":\"bench-"), Some(2));
        assert_eq!(find(b"\"scan_id\":\"drain\"", b"\"scan_id\":\"bench-"), None);
        assert_eq!(find(b"ab", b"abc"), None);
    }
}
