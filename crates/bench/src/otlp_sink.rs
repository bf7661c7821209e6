//! `--traces`: an OTLP/HTTP receiver on 127.0.0.1 that accepts every export and discards it
//! (counting requests and bytes), so the workers' traces are measured on (spans made, batched,
//! encoded and sent) without a collector. Like [`crate::sink`], hyper's HTTP/1 server on a
//! one-thread runtime of its own thread; it stops when dropped.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::sync::oneshot;

pub struct OtlpSink {
    /// The base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`: the exporter adds `/v1/traces`).
    pub url: String,
    counts: Arc<Counts>,
    _stop: oneshot::Sender<()>,
}

#[derive(Default)]
struct Counts {
    requests: AtomicUsize,
    bytes: AtomicUsize,
}

impl OtlpSink {
    pub fn start() -> anyhow::Result<OtlpSink> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (stop, stopped) = oneshot::channel();
        let counts = Arc::new(Counts::default());
        let serving = counts.clone();
        std::thread::Builder::new().name("bench-otlp-sink".into()).spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    r = crate::sink::serve_http1(listener, serving, answer) => r,
                    _ = stopped => Ok(()),
                }
            })
        })?;
        Ok(OtlpSink { url, counts, _stop: stop })
    }

    /// OTLP export requests and their bytes so far.
    pub fn received(&self) -> (usize, usize) {
        (self.counts.requests.load(Ordering::Relaxed), self.counts.bytes.load(Ordering::Relaxed))
    }
}

async fn answer(counts: Arc<Counts>, req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, Infallible> {
    let n = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
    counts.requests.fetch_add(1, Ordering::Relaxed);
    counts.bytes.fetch_add(n, Ordering::Relaxed);
    Ok(Response::new(Empty::new()))
}
