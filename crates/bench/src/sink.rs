//! A minimal HTTP receiver on 127.0.0.1 for the benchmark: answers at once (keep-alive), counts
//! requests, and keeps only what the figures need (arrival times, the publish stamp carried in
//! the event, first-attempt times for retried deliveries), so it costs little next to the worker.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use tokio::sync::{Mutex, watch};

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
}

pub struct Sink {
    pub url: String,
    pub started: Instant,
    state: Arc<SinkState>,
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let app = Router::new().fallback(handle).with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Sink { url, started, state })
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

async fn handle(State(s): State<Arc<SinkState>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let now_ns = u64::try_from(s.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    s.first_ns.fetch_min(now_ns, Ordering::Relaxed);
    s.last_ns.fetch_max(now_ns, Ordering::Relaxed);
    if s.mode == Mode::Down {
        if !s.recovered.load(Ordering::SeqCst) {
            s.refused.fetch_add(1, Ordering::Relaxed);
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        let id = headers.get("x-coderaft-delivery").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        if !s.delivered_ids.lock().await.insert(id) {
            s.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }
    if s.mode == Mode::Hang {
        let n = s.count.fetch_add(1, Ordering::Relaxed) + 1;
        s.counter.send_replace(n);
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        return StatusCode::OK;
    }
    if s.mode == Mode::FailFirst {
        let id = headers.get("x-coderaft-delivery").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
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
    // Only parse the body when latency is measured: the drain runs skip it.
    if let Some(pos) = memchr(&body, b"\"scan_id\":\"bench-") {
        let rest = &body[pos + 17..];
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

fn memchr(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
