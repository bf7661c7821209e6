//! `silence …`: mute matching deliveries for a time, for the deployment or one endpoint: create,
//! list, show (with what it silenced), expire early, and the audit list of creates and expiries.
//! The same store and validation as the admin API and page (`entraguard_core::silences`).

use entraguard_core::silences::{SilenceDraft, SilenceStore, SilenceStoreError, SilenceView};

use crate::config::Global;
use crate::{Failure, output, usage};

pub const CREATE_ABOUT: &str = "\
Create a silence: deliveries of matching events are not made (counted instead) from its start
(default now, by Redis's clock) to its end.

Matchers (every one must match; values after = are alternatives):
  tenant=<id>[,<id>…]   kind=<event kind>[,…]   finding=<finding id>[,…]
  category=<category>[,…]   severity=<level>[,…]   severity<=<level> (that level and every lesser one)
A silence never mutes scan.failed unless it says kind=scan.failed.

Examples:
  entraguard-notify silence create tenant=8d6310d1-… 'severity<=medium' --duration 48h \\
      --author alice --comment 'tenant being migrated'
  entraguard-notify silence create finding=PIM-002 --end 2026-06-30T23:59:59Z \\
      --author bob --comment 'risk accepted until the quarter ends' --endpoint ep_01J…";

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a silence; prints its id.
    #[command(long_about = CREATE_ABOUT)]
    Create {
        /// Matcher expressions: tenant=…, kind=…, finding=…, category=…, severity=…, severity<=….
        matchers: Vec<String>,
        /// No matcher, on purpose: mute every event (but scan.failed) of the deployment or of --endpoint.
        #[arg(long)]
        match_all: bool,
        /// Only this endpoint's deliveries (`ep_…`).
        #[arg(long)]
        endpoint: Option<String>,
        /// When it starts (RFC 3339); default now.
        #[arg(long)]
        start: Option<String>,
        /// When it ends (RFC 3339); or --duration.
        #[arg(long, conflicts_with = "duration")]
        end: Option<String>,
        /// How long from its start: 3s, 48h, 90d.
        #[arg(long)]
        duration: Option<String>,
        /// Who creates it (kept in the audit list); default $USER.
        #[arg(long, env = "NOTIFY_SILENCE_AUTHOR")]
        author: Option<String>,
        /// Why.
        #[arg(long)]
        comment: String,
    },
    /// List silences, newest first: active and pending ones, and with --all expired ones too.
    List {
        /// Expired silences too (kept 7 days after their end).
        #[arg(long)]
        all: bool,
    },
    /// One silence: matchers, window, author, comment, and what it silenced (count, last events).
    Show { id: String },
    /// End a silence now (by Redis's clock).
    Expire {
        id: String,
        /// Who expires it (kept in the audit list); default $USER.
        #[arg(long, env = "NOTIFY_SILENCE_AUTHOR")]
        by: Option<String>,
    },
    /// The audit list: every create and expiry (who, when, what), newest first.
    Audit {
        /// How many entries.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

/// Bad input is exit 2; an unknown silence, or one already over, exit 1.
fn failure(e: SilenceStoreError) -> Failure {
    match e {
        SilenceStoreError::Invalid(_) => usage(e),
        other => other.into(),
    }
}

fn who(given: Option<String>) -> String {
    given.or_else(|| std::env::var("USER").ok()).unwrap_or_default()
}

pub async fn run(global: &Global, command: Command) -> Result<(), Failure> {
    let shards = global.shards().await?;
    let store = SilenceStore::new(&shards);
    match command {
        Command::Create { matchers, match_all, endpoint, start, end, duration, author, comment } => {
            let draft = SilenceDraft {
                matchers,
                match_all,
                endpoint_id: endpoint,
                starts_at: start,
                ends_at: end,
                duration,
                author: who(author),
                comment,
            };
            let silence = store.create(&draft).await.map_err(failure)?;
            if global.json {
                output::json(&store.shown(&silence).await.map_err(failure)?);
            } else {
                entraguard_core::outln!("{}", silence.id);
            }
        }
        Command::List { all } => {
            let views: Vec<SilenceView> = store
                .views()
                .await
                .map_err(failure)?
                .into_iter()
                .filter(|v| all || v.state != entraguard_core::silences::SilenceState::Expired)
                .collect();
            if global.json {
                output::json(&views);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = views
                .iter()
                .map(|v| {
                    vec![
                        v.id.to_string(),
                        v.state.as_str().to_owned(),
                        output::cut(&matchers(v), 48),
                        v.endpoint_id.as_ref().map_or_else(|| "all".to_owned(), ToString::to_string),
                        v.starts_at.clone(),
                        v.ends_at.clone(),
                        v.created_by.clone(),
                        v.silenced.to_string(),
                    ]
                })
                .collect();
            output::table(
                &["id", "state", "matchers", "endpoint", "starts", "ends", "by", "silenced"],
                &rows,
            );
        }
        Command::Show { id } => {
            let v =
                store.view(&id).await.map_err(failure)?.ok_or_else(|| {
                    Failure::from(SilenceStoreError::NotFound(id.chars().take(80).collect()))
                })?;
            if global.json {
                output::json(&v);
                return Ok(());
            }
            print_view(&v);
        }
        Command::Expire { id, by } => {
            let silence = store.expire(&id, &who(by)).await.map_err(failure)?;
            if global.json {
                output::json(&store.shown(&silence).await.map_err(failure)?);
            } else {
                entraguard_core::outln!(
                    "expired {} at {}",
                    silence.id,
                    entraguard_core::silences::rfc3339_ms(silence.ends_at_ms)
                );
            }
        }
        Command::Audit { limit } => {
            let entries = store.audit(limit).await.map_err(failure)?;
            if global.json {
                output::json(&entries);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|e| {
                    vec![
                        e.at.clone(),
                        e.who.clone(),
                        format!("{:?}", e.action).to_lowercase(),
                        e.silence_id.to_string(),
                        output::cut(&e.what, 100),
                    ]
                })
                .collect();
            output::table(&["at", "who", "action", "silence", "what"], &rows);
        }
    }
    Ok(())
}

fn matchers(v: &SilenceView) -> String {
    if v.matchers.is_empty() { "(every event but scan.failed)".to_owned() } else { v.matchers.join(" ") }
}

fn print_view(v: &SilenceView) {
    use entraguard_core::outln;
    outln!("id:        {}", v.id);
    outln!("state:     {}", v.state.as_str());
    outln!("matchers:  {}", matchers(v));
    outln!(
        "endpoint:  {}",
        v.endpoint_id.as_ref().map_or_else(|| "every endpoint".to_owned(), ToString::to_string)
    );
    outln!("starts:    {}", v.starts_at);
    outln!("ends:      {}", v.ends_at);
    outln!("created:   {} by {}", v.created_at, v.created_by);
    if let Some(by) = &v.expired_by {
        outln!("expired:   by {by}");
    }
    outln!("comment:   {}", v.comment);
    outln!("silenced:  {} deliveries", v.silenced);
    if !v.recent_events.is_empty() {
        outln!("last events: {}", v.recent_events.join(" "));
    }
}
