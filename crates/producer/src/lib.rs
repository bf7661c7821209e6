//! Publish EntraGuard events for delivery to Slack, Teams, email and webhooks.
//!
//! The scanner links this crate and nothing else of the notification system: it validates the
//! event, puts one job in Redis, and returns the event id once Redis holds it. The workers do
//! the rest (fan-out to endpoints, rendering, delivery, retries, the dead-letter queue).
//!
//! ```no_run
//! use entraguard_producer::{Producer, ProducerConfig};
//!
//! # async fn run() -> Result<(), entraguard_producer::PublishError> {
//! let producer = Producer::connect(&ProducerConfig::from_url("redis://127.0.0.1:6379")?).await?;
//! let event = entraguard_producer::Event::from_json(br#"{
//!     "event": "finding.new",
//!     "tenant_id": "8d6310d1-5e4b-4e1c-9d7a-3f0f7a4f2b11",
//!     "tenant_name": "contoso.onmicrosoft.com",
//!     "scan_id": "scan_2026-04-28T07:00Z",
//!     "finding": {
//!         "id": "PIM-002", "title": "Excessive permanent privileged roles",
//!         "severity": "high", "category": "privileged-access",
//!         "affected": ["admin@contoso.com"],
//!         "remediation_url": "https://entraguard.example.com/api/entraguard/findings/PIM-002"
//!     }
//! }"#)?;
//! let id = producer.publish(&event).await?;
//! println!("published {id}");
//! # Ok(()) }
//! ```
//!
//! Durability: `publish` returns after Redis has accepted the job. With `appendonly yes` and
//! `appendfsync always`, Redis has written it to disk by then; with `everysec`, up to about a
//! second of acknowledged jobs can be lost if the Redis host crashes.
//!
//! Retrying is safe: an event whose `id` was accepted within the dedupe window (default one
//! hour, [`ProducerConfig::dedupe_window`]) is acknowledged again without a second job, so a
//! publish that timed out, or a batch refused by a full Redis, can simply be sent again. A
//! batch is all or nothing: either every event in it is enqueued (or was already), or none is.
//! Give events their own `id` (the scanner's finding-event id) for retries across processes;
//! an event without one gets a fresh id when it is parsed.
//!
//! Traces: the event job carries a W3C `traceparent` when the publish is traced, and the
//! workers' spans (fan-out, each attempt, each HTTP request) join that trace. Pass your own
//! span's context with [`Producer::publish_traced`]; or, with the `otel` feature (off by
//! default: it links the `opentelemetry` API), every publish is a `publish` span of the current
//! OpenTelemetry context ([`Producer::with_tracer`]). Without either, jobs carry no trace
//! context and a worker that traces starts a trace at fan-out.

use std::time::Duration;

use entraguard_core::job::{EventJob, Job};
use entraguard_core::keys::KeyPrefixError;
use entraguard_core::queue::{Publishing, QueueError, Shards};
use entraguard_core::redis_conn::{RedisConfig, RedisUrl, RedisUrlError};
use entraguard_core::shards::{LayoutMismatch, LayoutRole, ShardCountError, ShardLayout};

pub use entraguard_core::event::{Event, EventError, EventKind, Severity};
pub use entraguard_core::ids::EventId;
pub use entraguard_core::keys::KeySpace;
pub use entraguard_core::queue::Published;
pub use entraguard_core::trace::{TraceParent, TraceParentError};

#[cfg(feature = "otel")]
pub mod otel;

/// Why a publish failed. Nothing was enqueued unless the error says Redis may hold it.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    InvalidEvent(#[from] EventError),
    #[error(transparent)]
    InvalidRedisUrl(#[from] RedisUrlError),
    #[error(transparent)]
    InvalidKeyPrefix(#[from] KeyPrefixError),
    #[error(transparent)]
    InvalidShardCount(#[from] ShardCountError),
    /// `NOTIFY_QUEUE_SHARDS` is not the count the deployment records in Redis: nothing was
    /// enqueued (it would wait in shards no worker serves).
    #[error(transparent)]
    ShardLayout(#[from] LayoutMismatch),
    #[error("cannot reach Redis at {url}: {source}")]
    Connect { url: String, source: QueueError },
    #[error(
        "Redis did not acknowledge the job within {0:?}; it may or may not have been enqueued (publishing it again is safe: the event id is deduplicated)"
    )]
    Timeout(Duration),
    #[error(
        "Redis is full (maxmemory reached, noeviction): nothing was enqueued; workers keep delivering and freeing memory, publish again later"
    )]
    RedisFull,
    #[error("a batch holds at most {max} events; this one has {got}: publish it in parts")]
    BatchTooLarge { got: usize, max: usize },
    #[error(
        "Redis holds the job, but only {got} of {wanted} replicas confirmed it within {timeout:?} (NOTIFY_PUBLISH_REPLICAS): a failover now could lose it; publishing it again is safe (the event id is deduplicated)"
    )]
    NotReplicated { wanted: u32, got: u32, timeout: Duration },
    #[error("Redis refused the job: {0}")]
    Redis(#[from] QueueError),
}

/// How long accepted event ids are remembered by default (`NOTIFY_PUBLISH_DEDUPE_WINDOW`).
pub const DEFAULT_DEDUPE_WINDOW: Duration = Duration::from_secs(3600);

/// How often a producer checks again that its shard count is still the one the deployment
/// records (a worker may have changed it on purpose since; see "Scaling past one Redis" in
/// docs/deploy-and-scaling.md): one small read at most this often, before a publish.
pub const LAYOUT_RECHECK: Duration = Duration::from_secs(10);

/// Most events one [`Producer::publish_batch`] takes (one atomic step in Redis).
pub const MAX_BATCH_EVENTS: usize = 10_000;

/// Where to publish.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub redis: RedisConfig,
    pub keys: KeySpace,
    /// Longest a publish may wait for Redis before returning [`PublishError::Timeout`].
    pub timeout: Duration,
    /// How long an accepted event id is remembered: publishing the same id again within it is
    /// acknowledged without a second job. Redis keeps one small entry per event for this long
    /// (about 100 bytes: some 36 MB for a steady 100 events/s over the default hour).
    pub dedupe_window: Duration,
    /// `NOTIFY_PUBLISH_REPLICAS`: a publish answers only once this many replicas hold the job
    /// (`WAIT`), so a failover to one of them cannot lose it. 0 (the default): once the primary
    /// holds it (replication is asynchronous; see docs/deploy-and-scaling.md).
    pub publish_replicas: u32,
    /// Queue shards (`NOTIFY_QUEUE_SHARDS`, the workers' count): each event goes into the shard
    /// its id names. A batch is then one atomic step per shard. It must be the count the
    /// deployment records in Redis (the first producer or worker records its own):
    /// [`Producer::connect`] and publishing refuse another with [`PublishError::ShardLayout`].
    pub queue_shards: u16,
}

impl ProducerConfig {
    /// Default settings for a Redis URL: key prefix `entraguard`, 5 s timeouts.
    pub fn from_url(url: &str) -> Result<Self, PublishError> {
        let mut redis = RedisConfig::new(RedisUrl::parse(url)?);
        redis.connect_timeout = Duration::from_secs(5);
        Ok(Self {
            redis,
            keys: KeySpace::default(),
            timeout: Duration::from_secs(5),
            dedupe_window: DEFAULT_DEDUPE_WINDOW,
            publish_replicas: 0,
            queue_shards: 1,
        })
    }

    /// Publishes into `n` queue shards (`NOTIFY_QUEUE_SHARDS`; the workers' count).
    pub fn with_queue_shards(mut self, n: u16) -> Result<Self, PublishError> {
        ShardLayout::new(&self.keys, n, None)?;
        self.queue_shards = n;
        Ok(self)
    }

    /// Waits for `n` replicas to hold every publish (`NOTIFY_PUBLISH_REPLICAS`); see
    /// [`ProducerConfig::publish_replicas`].
    pub fn with_publish_replicas(mut self, n: u32) -> Self {
        self.publish_replicas = n;
        self
    }

    /// Uses another key prefix (`NOTIFY_KEY_PREFIX`).
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self, PublishError> {
        self.keys = KeySpace::new(prefix)?;
        Ok(self)
    }
}

/// A connection to the notification queue. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct Producer {
    shards: Shards,
    /// When the recorded shard layout was last found to agree ([`LAYOUT_RECHECK`]).
    layout_checked: std::sync::Arc<std::sync::Mutex<tokio::time::Instant>>,
    timeout: Duration,
    dedupe_window: Duration,
    publish_replicas: u32,
    /// The tracer of the publish spans (`otel`; the global one when `None`).
    #[cfg(feature = "otel")]
    tracer: Option<std::sync::Arc<otel::Tracer>>,
}

impl Producer {
    /// Connects to Redis; fails with a clear error when it is unreachable, and with
    /// [`PublishError::ShardLayout`] when the deployment records another queue shard count
    /// (on a deployment's first start, records this one).
    pub async fn connect(config: &ProducerConfig) -> Result<Self, PublishError> {
        let mut redis = config.redis.clone();
        redis.response_timeout = Some(config.timeout);
        let layout = ShardLayout::new(&config.keys, config.queue_shards, None)?;
        let connect_error = |source| PublishError::Connect { url: config.redis.url.to_string(), source };
        let shards = Shards::connect(&redis, layout).await.map_err(connect_error)?;
        match shards.checked(LayoutRole::Producer).await {
            Ok(_) => {}
            Err(QueueError::Layout(e)) => return Err(e.into()),
            Err(e) => return Err(connect_error(e)),
        }
        Ok(Self {
            shards,
            layout_checked: std::sync::Arc::new(std::sync::Mutex::new(tokio::time::Instant::now())),
            timeout: config.timeout,
            dedupe_window: config.dedupe_window,
            publish_replicas: config.publish_replicas,
            #[cfg(feature = "otel")]
            tracer: None,
        })
    }

    /// Makes the publish spans with `tracer` instead of the global tracer (`otel` feature).
    #[cfg(feature = "otel")]
    pub fn with_tracer(mut self, tracer: otel::Tracer) -> Self {
        self.tracer = Some(std::sync::Arc::new(tracer));
        self
    }

    /// Validates and enqueues one event; returns its id once Redis holds the job (or held it
    /// already: an id accepted within the dedupe window is not enqueued twice).
    pub async fn publish(&self, event: &Event) -> Result<EventId, PublishError> {
        event.validate()?;
        self.enqueue(std::slice::from_ref(event), None).await?;
        Ok(event.id.clone())
    }

    /// Like [`Producer::publish`], in the caller's trace: `parent` is the caller's span (its
    /// W3C `traceparent`), and the workers' fan-out span becomes its child (with the `otel`
    /// feature, the producer's own `publish` span sits between them).
    pub async fn publish_traced(&self, event: &Event, parent: TraceParent) -> Result<EventId, PublishError> {
        event.validate()?;
        self.enqueue(std::slice::from_ref(event), Some(parent)).await?;
        Ok(event.id.clone())
    }

    /// Validates every event first, then enqueues them all in one atomic step: either every
    /// event is enqueued (or was already, by id), or none is. With queue shards it is one atomic
    /// step per shard: on an error some shards may hold their part, and publishing the batch
    /// again is safe (dedupe by id).
    pub async fn publish_batch(&self, events: &[Event]) -> Result<Vec<EventId>, PublishError> {
        if events.len() > MAX_BATCH_EVENTS {
            return Err(PublishError::BatchTooLarge { got: events.len(), max: MAX_BATCH_EVENTS });
        }
        for e in events {
            e.validate()?;
        }
        self.enqueue(events, None).await?;
        Ok(events.iter().map(|e| e.id.clone()).collect())
    }

    /// Like [`Producer::publish_batch`], saying for each event whether it was enqueued now or
    /// had been accepted before (within the dedupe window).
    pub async fn publish_batch_report(
        &self,
        events: &[Event],
    ) -> Result<Vec<(EventId, Published)>, PublishError> {
        if events.len() > MAX_BATCH_EVENTS {
            return Err(PublishError::BatchTooLarge { got: events.len(), max: MAX_BATCH_EVENTS });
        }
        for e in events {
            e.validate()?;
        }
        let flags = self.enqueue(events, None).await?;
        Ok(events.iter().map(|e| e.id.clone()).zip(flags).collect())
    }

    /// Checks again, at most every [`LAYOUT_RECHECK`], that the deployment still records this
    /// producer's shard count.
    async fn recheck_layout(&self) -> Result<(), PublishError> {
        let due = self.layout_checked.lock().map(|t| t.elapsed() >= LAYOUT_RECHECK).unwrap_or(true);
        if !due {
            return Ok(());
        }
        match tokio::time::timeout(self.timeout, self.shards.checked(LayoutRole::Producer)).await {
            Ok(Ok(_)) => {}
            Ok(Err(QueueError::Layout(e))) => return Err(e.into()),
            Ok(Err(e)) if e.is_out_of_memory() => return Err(PublishError::RedisFull),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(PublishError::Timeout(self.timeout)),
        }
        if let Ok(mut t) = self.layout_checked.lock() {
            *t = tokio::time::Instant::now();
        }
        Ok(())
    }

    /// Enqueues `events` in the trace of `parent` (the caller's span) if given: with the `otel`
    /// feature, in a `publish` span of it (or of the current context).
    async fn enqueue(
        &self,
        events: &[Event],
        parent: Option<TraceParent>,
    ) -> Result<Vec<Published>, PublishError> {
        #[cfg(feature = "otel")]
        {
            let span = otel::start(self.tracer.as_deref(), parent, events.len());
            let result = self.enqueue_in(events, span.traceparent()).await;
            span.end(result.as_ref().err().map(|e| e as &dyn std::fmt::Display));
            result
        }
        #[cfg(not(feature = "otel"))]
        self.enqueue_in(events, parent).await
    }

    async fn enqueue_in(
        &self,
        events: &[Event],
        traceparent: Option<TraceParent>,
    ) -> Result<Vec<Published>, PublishError> {
        self.recheck_layout().await?;
        let jobs: Vec<Publishing> = events
            .iter()
            .map(|e| Publishing {
                id: e.id.to_string(),
                urgent: e.is_urgent(),
                tenant: Some(e.tenant_id.clone()),
                job: Job::Event(EventJob::traced(e.clone(), traceparent)).encode(),
            })
            .collect();
        // The WAIT gets half the publish timeout, so a missing replica is reported as such
        // rather than as a timeout.
        let replicated = (self.publish_replicas > 0).then(|| (self.publish_replicas, self.timeout / 2));
        match tokio::time::timeout(self.timeout, self.publish_sharded(&jobs, replicated)).await {
            Ok(Ok(flags)) => Ok(flags),
            Ok(Err(e)) if e.is_out_of_memory() => Err(PublishError::RedisFull),
            Ok(Err(QueueError::NotReplicated { wanted, got, timeout })) => {
                Err(PublishError::NotReplicated { wanted, got, timeout })
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(PublishError::Timeout(self.timeout)),
        }
    }

    /// Publishes each job into its event's shard: one step per shard, in shard order; the
    /// answers in the jobs' order.
    async fn publish_sharded(
        &self,
        jobs: &[Publishing],
        replicated: Option<(u32, Duration)>,
    ) -> Result<Vec<Published>, QueueError> {
        if self.shards.count() == 1 {
            return self.shards.home().publish_replicated(jobs, self.dedupe_window, replicated).await;
        }
        let mut flags = vec![Published::Duplicate; jobs.len()];
        for (i, queue) in self.shards.served().iter().enumerate() {
            let mine: Vec<usize> =
                (0..jobs.len()).filter(|j| self.shards.layout().of_event(&jobs[*j].id) == i).collect();
            if mine.is_empty() {
                continue;
            }
            let part: Vec<Publishing> = mine.iter().map(|j| jobs[*j].clone()).collect();
            let answers = queue.publish_replicated(&part, self.dedupe_window, replicated).await?;
            for (j, f) in mine.into_iter().zip(answers) {
                flags[j] = f;
            }
        }
        Ok(flags)
    }
}
