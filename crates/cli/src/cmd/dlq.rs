//! `dlq …`: the dead-letter queue. Replay re-enqueues with the same delivery id and a fresh
//! attempt count. With queue shards, every served shard's dead letters (a dead letter stays in
//! the shard of its endpoint, and is replayed there).

use entraguard_core::ids::EndpointId;
use entraguard_core::queue::{ReplayFilter, ReplayOutcome};
use entraguard_core::timestamp::Timestamp;

use crate::config::Global;
use crate::{Failure, output, usage};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List dead letters, newest first: a summary of each, without the job.
    List {
        /// How many to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// How many of the newest to skip.
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Only dead letters of this endpoint (`ep_…`), like `dlq replay --all --endpoint`.
        #[arg(long, value_parser = parse_endpoint)]
        endpoint: Option<EndpointId>,
        /// Only dead letters that failed at or after this time (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        since: Option<Timestamp>,
    },
    /// Show one dead letter: reason, every attempt, the job (its first 64 KiB).
    Show { id: String },
    /// Re-enqueue one dead letter, or all with --all (same delivery id, fresh attempt count).
    #[command(group(clap::ArgGroup::new("which").required(true).args(["id", "all"])))]
    Replay {
        /// The dead letter's id, as `dlq list` shows it.
        id: Option<String>,
        /// Every replayable dead letter (or those --endpoint and --since pick), each once;
        /// undecodable (poison) jobs are skipped and counted.
        #[arg(long)]
        all: bool,
        /// With --all: only dead letters of this endpoint (`ep_…`).
        #[arg(long, conflicts_with = "id", value_parser = parse_endpoint)]
        endpoint: Option<EndpointId>,
        /// With --all: only dead letters that failed at or after this time (RFC 3339, e.g.
        /// 2025-06-01T00:00:00Z).
        #[arg(long, conflicts_with = "id", value_parser = parse_time)]
        since: Option<Timestamp>,
    },
    /// Delete one dead letter, or all with --all --yes.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["id", "all"])))]
    Purge {
        /// The dead letter's id, as `dlq list` shows it.
        id: Option<String>,
        /// Every dead letter (needs --yes).
        #[arg(long)]
        all: bool,
        /// Confirm --all.
        #[arg(long)]
        yes: bool,
    },
}

pub async fn run(global: &Global, command: Command) -> Result<(), Failure> {
    // Every served shard's dead letters: listed merged newest first, found by id wherever they are.
    let shards = global.shards().await?;
    match command {
        Command::List { limit, offset, endpoint, since } => {
            let filter = ReplayFilter { endpoint_id: endpoint, since };
            let dead = shards.dead_letter_summaries_matching(&filter, offset, limit).await?;
            if global.json {
                output::json(&dead);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = dead
                .iter()
                .map(|d| {
                    vec![
                        d.id.clone(),
                        d.failed_at.clone(),
                        d.event_kind.clone().unwrap_or_else(|| "-".into()),
                        d.endpoint_id.clone().unwrap_or_else(|| "-".into()),
                        d.attempt_count.to_string(),
                        output::cut(&d.reason, 70),
                    ]
                })
                .collect();
            output::table(&["ID", "FAILED AT", "EVENT", "ENDPOINT", "ATTEMPTS", "REASON"], &rows);
        }
        Command::Show { id } => {
            let d = shards
                .dead_letter_by_id(&id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("dead letter {id} not found"))?;
            if global.json {
                output::json(&d);
                return Ok(());
            }
            entraguard_core::outln!("id:        {}", d.id);
            entraguard_core::outln!("failed at: {}", d.failed_at);
            entraguard_core::outln!("reason:    {}", d.reason);
            entraguard_core::outln!(
                "event:     {} {}",
                d.event_kind.as_deref().unwrap_or("-"),
                d.event_id.as_deref().unwrap_or("-")
            );
            entraguard_core::outln!("endpoint:  {}", d.endpoint_id.as_deref().unwrap_or("-"));
            entraguard_core::outln!(
                "replay:    {}",
                if d.replayable { "possible" } else { "not possible (the job could not be decoded)" }
            );
            entraguard_core::outln!("attempts:");
            for a in &d.attempts {
                entraguard_core::outln!(
                    "  #{} {} {:>6} ms  {}  {}",
                    a.attempt,
                    a.at,
                    a.duration_ms,
                    a.status.map_or("-".to_owned(), |s| s.to_string()),
                    a.error.as_deref().unwrap_or("")
                );
            }
            if d.job_truncated {
                entraguard_core::outln!("job (the first {} of {} bytes):", d.job.len(), d.job_bytes);
                entraguard_core::outln!("{}", d.job);
                return Ok(());
            }
            entraguard_core::outln!("job:");
            match serde_json::from_str::<serde_json::Value>(&d.job) {
                Ok(v) => {
                    entraguard_core::outln!("{}", serde_json::to_string_pretty(&v).unwrap_or(d.job.clone()))
                }
                Err(_) => entraguard_core::outln!("{}", d.job),
            }
        }
        Command::Replay { all: true, endpoint, since, .. } => {
            let summary = shards.replay_matching(&ReplayFilter { endpoint_id: endpoint, since }).await?;
            if global.json {
                output::json(&summary);
            } else {
                entraguard_core::outln!(
                    "replayed {}; {} not replayable (undecodable jobs: inspect with `dlq show`, then `dlq purge`)",
                    summary.replayed,
                    summary.not_replayable
                );
            }
        }
        Command::Replay { id: Some(id), .. } => match shards.replay(&id).await? {
            ReplayOutcome::Replayed => {
                if global.json {
                    output::json(&serde_json::json!({ "replayed": 1 }));
                } else {
                    entraguard_core::outln!("replayed {id}");
                }
            }
            ReplayOutcome::NotFound => {
                return Err(anyhow::anyhow!("dead letter {id} not found").into());
            }
            ReplayOutcome::NotReplayable => {
                return Err(usage(anyhow::anyhow!(
                    "dead letter {id} holds a job that could not be decoded; it cannot be replayed"
                )));
            }
        },
        Command::Purge { all: true, yes, .. } => {
            if !yes {
                return Err(usage(anyhow::anyhow!(
                    "`dlq purge --all` deletes every dead letter: add --yes to confirm"
                )));
            }
            let n = shards.purge_all().await?;
            if global.json {
                output::json(&serde_json::json!({ "purged": n }));
            } else {
                entraguard_core::outln!("purged {n}");
            }
        }
        Command::Purge { id: Some(id), .. } => {
            if !shards.purge(&id).await? {
                return Err(anyhow::anyhow!("dead letter {id} not found").into());
            }
            if global.json {
                output::json(&serde_json::json!({ "purged": 1 }));
            } else {
                entraguard_core::outln!("purged {id}");
            }
        }
        Command::Replay { id: None, all: false, .. } | Command::Purge { id: None, all: false, .. } => {
            return Err(usage(anyhow::anyhow!("name a dead-letter id, or --all")));
        }
    }
    Ok(())
}

fn parse_endpoint(s: &str) -> Result<EndpointId, String> {
    s.parse().map_err(|e: entraguard_core::ids::IdError| e.to_string())
}

fn parse_time(s: &str) -> Result<Timestamp, String> {
    s.parse().map_err(|e: entraguard_core::timestamp::TimestampError| e.to_string())
}
