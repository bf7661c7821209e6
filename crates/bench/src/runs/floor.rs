//! `floor_cpu_us_per_post_c{1,10,50}`: what sending one signed webhook costs at the least, to
//! hold the worker's CPU per delivery against in the same run. A bare hyper HTTP/1 client on a
//! one-thread runtime of its own thread sends the sink the body and headers of one delivery,
//! rendered and signed once by the delivery crate, over `c` keep-alive connections (`c` posts in
//! flight); that thread's CPU time per post is the floor. No Redis, no job, no bookkeeping.
//!
//! `floor_work_cpu_us_per_post_c{1,10,50}` (and `floor_work_over_floor_c{N}`): the same client
//! doing, for each post, what any worker must do for a delivery besides the queue: decode the
//! job's bytes, render the body, sign it (both signatures), and encode the attempt's Recent
//! Deliveries entry, with the delivery crate's and the core crate's own functions. No Redis
//! either: what a delivery costs with a queue that cost nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use entraguard_core::history::{AttemptResult, encode_attempt};
use entraguard_core::ids::EventId;
use entraguard_core::job::{AttemptRecord, DeliveryJob, Job};
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
    /// With the delivery's own work: the job's bytes and its endpoint, decoded, rendered, signed
    /// and recorded again for every post.
    work: Option<Arc<(Vec<u8>, entraguard_core::endpoint::Endpoint)>>,
}

/// `n` posts of one signed webhook to a fresh sink over `c` connections; the client thread's CPU
/// µs per post. With `work`, each post also does the delivery's own work (the module's doc).
pub(super) async fn floor(n: usize, c: usize, work: bool) -> anyhow::Result<f64> {
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
    let work = work.then(|| Arc::new((Job::Delivery(job.clone()).encode().into_bytes(), endpoint.clone())));
    let post = Post { path: Uri::from_static("/hook"), headers: map, body: Bytes::from(body), work };

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
        let Some(work) = &post.work else {
            let mut request = Request::new(Full::new(post.body.clone()));
            *request.method_mut() = Method::POST;
            *request.uri_mut() = post.path.clone();
            *request.headers_mut() = post.headers.clone();
            send(&mut sender, request).await?;
            continue;
        };
        // The delivery's own work, as the worker does it.
        let (raw, endpoint) = &**work;
        let Ok(Job::Delivery(job)) = Job::decode(raw) else { anyhow::bail!("the floor's job decodes") };
        let Payload::Json { body, style } = channel::render(&job.event, endpoint) else {
            anyhow::bail!("the benchmark's endpoint renders no HTTP body");
        };
        let at = Timestamp::now();
        let sent = http_headers(&job, endpoint, style, &body, at);
        let mut map = headers(&sent);
        for (name, value) in &post.headers {
            if !map.contains_key(name) {
                map.insert(name.clone(), value.clone());
            }
        }
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = post.path.clone();
        *request.headers_mut() = map;
        send(&mut sender, request).await?;
        let attempt =
            AttemptRecord { attempt: job.next_attempt(), at, duration_ms: 1, status: Some(200), error: None };
        let entry = encode_attempt(raw, &job, &attempt, AttemptResult::Delivered, &sent, Some(""));
        std::hint::black_box(entry);
    }
    Ok(())
}

/// Sends `request` and reads its answer whole; an error unless it is a success.
async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<()> {
    let response = sender.send_request(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    anyhow::ensure!(status.is_success(), "the sink answered {status}");
    Ok(())
}
