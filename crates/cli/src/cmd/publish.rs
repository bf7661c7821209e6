//! `publish`: validate event JSON (one object or an array) and enqueue it; print the ids.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::Context;
use entraguard_core::event::{Event, MAX_EVENT_BYTES};
use entraguard_producer::{MAX_BATCH_EVENTS, Producer, ProducerConfig, PublishError};

use crate::config::Global;
use crate::{Failure, output, usage};

pub const LONG_ABOUT: &str = "Publish events (JSON from a file or stdin); prints each event's id.

The input is one event object or a JSON array of them. Every event is validated first; if any is
invalid nothing is enqueued. `id` and `timestamp` are filled in when absent.

Example:
  entraguard-notify publish <<'JSON'
  {\"event\": \"scan.failed\", \"tenant_id\": \"8d6310d1-5e4b-4e1c-9d7a-3f0f7a4f2b11\",
   \"tenant_name\": \"contoso.onmicrosoft.com\",
   \"scan\": {\"run_id\": \"scan_2026-04-28T07:00Z\", \"kind\": \"full\", \"environment\": \"Contoso production\",
            \"error\": {\"kind\": \"token_expired\", \"message\": \"Graph token expired\"}}}
  JSON";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// JSON file to read; `-` or nothing reads stdin.
    pub file: Option<PathBuf>,

    /// Answer only once this many replicas hold the events (`WAIT`), so a failover cannot lose
    /// them; 0: once the primary holds them.
    #[arg(long, env = "NOTIFY_PUBLISH_REPLICAS", default_value_t = 0)]
    pub publish_replicas: u32,
}

pub async fn run(global: &Global, args: Args) -> Result<(), Failure> {
    let raw = read_input(args.file.as_ref())?;
    let events = parse(&raw).map_err(usage)?;
    if events.len() > MAX_BATCH_EVENTS {
        // Before connecting: a batch this large is refused whatever Redis says.
        return Err(usage(PublishError::BatchTooLarge { got: events.len(), max: MAX_BATCH_EVENTS }));
    }
    let mut config = ProducerConfig::from_url(global.redis.redis_url.expose()).map_err(usage)?;
    config.keys = global.redis.key_prefix.clone();
    config.publish_replicas = args.publish_replicas;
    config.queue_shards = global.redis.queue_shards;
    let producer = Producer::connect(&config).await?;
    let ids = producer.publish_batch(&events).await.map_err(|e| match e {
        // What the input itself got wrong is bad input (exit 2), as the help says.
        PublishError::BatchTooLarge { .. } | PublishError::InvalidEvent(_) => usage(e),
        e => Failure::from(e),
    })?;
    if global.json {
        output::json(&ids.iter().map(|i| i.to_string()).collect::<Vec<_>>());
    } else {
        for id in ids {
            entraguard_core::outln!("{id}");
        }
    }
    Ok(())
}

fn read_input(file: Option<&PathBuf>) -> Result<Vec<u8>, Failure> {
    let mut raw = Vec::new();
    match file.filter(|f| f.as_os_str() != "-") {
        Some(path) => {
            raw = std::fs::read(path)
                .with_context(|| format!("cannot read {}", path.display()))
                .map_err(usage)?
        }
        None => {
            if std::io::stdin().is_terminal() {
                eprintln!("reading event JSON from stdin; end with Ctrl-D (or pass a file)");
            }
            std::io::stdin().read_to_end(&mut raw).context("cannot read stdin")?;
        }
    }
    Ok(raw)
}

/// One event or an array of events, each validated. An error names the event's position.
fn parse(raw: &[u8]) -> anyhow::Result<Vec<Event>> {
    let trimmed = raw.iter().position(|b| !b.is_ascii_whitespace()).map_or(&raw[..0], |i| &raw[i..]);
    if trimmed.is_empty() {
        anyhow::bail!("no input: pass a JSON file or pipe an event on stdin");
    }
    if trimmed[0] != b'[' {
        return Ok(vec![Event::from_json(trimmed)?]);
    }
    if raw.len() > MAX_EVENT_BYTES * 1000 {
        anyhow::bail!("input is {} bytes; publish large batches in parts", raw.len());
    }
    let items: Vec<Box<serde_json::value::RawValue>> =
        serde_json::from_slice(trimmed).context("invalid event JSON array")?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            Event::from_json(item.get().as_bytes()).with_context(|| format!("event #{i} of the array"))
        })
        .collect()
}
