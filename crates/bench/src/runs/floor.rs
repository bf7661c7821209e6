//! `floor_cpu_us_per_post_c{1,10,50}`: what sending one signed webhook costs at the least, to
//! hold the worker's CPU per delivery against in the same run. A bare hyper HTTP/1 client on a
//! one-thread runtime of its own thread sends the sink the body and headers of one delivery,
//! rendered and signed once by the delivery crate, over `c` keep-alive connections (`c` posts in
//! flight); that thread's CPU time per post is the floor. No Redis, no job, no bookkeeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use entraguard_core::ids::EventId;
use entraguard_core::job::DeliveryJob;
use entraguard_core::timestamp::Timestamp;
use entraguard_delivery::channel::{self, Payload};
use entraguard_delivery::delivery::http_headers;
use entraguard_delivery::transport::http::headers;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use crate::sink::{Mode, Sink};

use super::*;

/// One delivery's request, rendered once and sent again and again.
#[derive(Clone)]
struct Post {
    path: Uri,
    headers: HeaderMap,
    body: Bytes,
}

/// `n` posts of one signed webhook to a fresh sink over `c` connections; the client thread's CPU
/// µs per post.
pub(super) async fn floor(n: usize, c: usize) -> anyhow::Result<f64> {
    let sink = Sink::start(Mode::Accept).await?;
    let url: Uri = sink.url.parse()?;
    let authority = url.authority().context("the sink's URL has a host and port")?.clone();
    // What the worker sends for one delivery of a drain run: the same event, an endpoint like
    // the drain's (webhook channel, the same signing secret), rendered and signed by the
    // delivery crate's own functions.
    let endpoint = Env::draft(&sink.url, "finding.new", Default::default())?;
    let mut e = event("drain");
    e.id = EventId::generate();
    let job = DeliveryJob::new(e, endpoint.id.clone());
    let Payload::Json { body, style } = channel::render(&job.event, &endpoint) else {
        anyhow::bail!("the benchmark's endpoint renders no HTTP body");
    };
    let mut map = headers(&http_headers(&job, &endpoint, style, &body, Timestamp::now()));
    // What the worker's transport adds to its requests, so the same bytes go over the wire.
    map.insert(header::HOST, HeaderValue::from_str(authority.as_str())?);
    map.insert(header::USER_AGENT, HeaderValue::from_static(entraguard_core::USER_AGENT));
    map.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    map.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let post = Post { path: Uri::from_static("/hook"), headers: map, body: Bytes::from(body) };

    let (done, result) = oneshot::channel();
    let addr = authority.to_string();
    std::thread::Builder::new().name("bench-floor".into()).spawn(move || {
        let posted = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(post_all(addr, post, n, c)),
            Err(e) => Err(e.into()),
        };
        let _ = done.send(posted);
    })?;
    let cpu = result.await.context("the floor's thread stopped without an answer")??;
    sink.wait_for(n, Duration::from_secs(60)).await?;
    Ok(cpu.as_secs_f64() * 1e6 / n as f64)
}

/// Runs on the floor's thread: `c` connections take turns at `n` posts. Returns the thread's
/// CPU time over them (the sink runs on a thread of its own and is not counted).
async fn post_all(addr: String, post: Post, n: usize, c: usize) -> anyhow::Result<Duration> {
    let before = thread_cpu_time().context("read /proc/thread-self/stat")?;
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..c.max(1) {
        let stream = tokio::net::TcpStream::connect(&addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        clients.spawn(keep_posting(sender, post.clone(), next.clone(), n));
    }
    while let Some(done) = clients.join_next().await {
        done??;
    }
    let after = thread_cpu_time().context("read /proc/thread-self/stat")?;
    Ok(after.saturating_sub(before))
}

/// One keep-alive connection: posts while fewer than `n` were taken, reading each answer whole.
async fn keep_posting(
    mut sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    post: Post,
    next: Arc<AtomicUsize>,
    n: usize,
) -> anyhow::Result<()> {
    while next.fetch_add(1, Ordering::Relaxed) < n {
        sender.ready().await?;
        let mut request = Request::new(Full::new(post.body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = post.path.clone();
        *request.headers_mut() = post.headers.clone();
        let response = sender.send_request(request).await?;
        let status = response.status();
        response.into_body().collect().await?;
        anyhow::ensure!(status.is_success(), "the sink answered {status}");
    }
    Ok(())
}
