//! `endpoint …`: manage where events go. Validation is core's `EndpointDraft::validate`, the
//! same the admin API uses. Targets are shown masked and secrets only as set or not.

use anyhow::Context;
use entraguard_core::endpoint::{Endpoint, EndpointDraft};
use entraguard_core::ids::EndpointId;
use entraguard_core::queue::Redelivery;
use entraguard_core::secret::Secret;

use crate::config::Global;
use crate::{Failure, output, usage};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add an endpoint.
    #[command(after_help = "Examples:
  entraguard-notify endpoint add --name \"SOC Slack\" --channel slack \\
      --target https://hooks.slack.com/services/T0…/B0…/… --events all
  entraguard-notify endpoint add --name SOAR --channel webhook --target https://soar.contoso.com/hooks/entraguard \\
      --events finding.new,finding.severity_changed --secret-env SOAR_SECRET
  entraguard-notify endpoint add --name SOAR --channel webhook --target https://soar.contoso.com/hooks/entraguard \
      --events all --ed25519
  entraguard-notify endpoint add --name On-call --channel email --target oncall@contoso.com --events scan.failed")]
    Add(AddArgs),
    /// List endpoints.
    List,
    /// Show one endpoint (the target masked, the secret only as set or none, the Ed25519 key as
    /// its public key `whpk_…`).
    Show {
        /// The endpoint's id (`ep_…`), as `endpoint list` shows it.
        id: String,
    },
    /// Change some fields of an endpoint; the result is validated whole, as `add` validates.
    #[command(after_help = "Examples:
  entraguard-notify endpoint update ep_01J… --events all
  entraguard-notify endpoint update ep_01J… --target https://soar.contoso.com/hooks/v2 --secret-env SOAR_SECRET")]
    Update(UpdateArgs),
    /// Close an endpoint's circuit breaker by hand and release the deliveries parked in its lane.
    Reset {
        /// The endpoint's id (`ep_…`).
        id: String,
    },
    /// Enable an endpoint (also resets its circuit breaker and releases its parked deliveries).
    Enable {
        /// The endpoint's id (`ep_…`).
        id: String,
    },
    /// Disable an endpoint: events fanned out from now on skip it.
    Disable {
        /// The endpoint's id (`ep_…`).
        id: String,
    },
    /// Remove an endpoint. Its pending deliveries go to the dead-letter queue.
    Remove {
        /// The endpoint's id (`ep_…`).
        id: String,
    },
    /// Recent Deliveries: the endpoint's last attempts, newest first (the last 200 within 7
    /// days): time, event, delivery id, attempt, result, status or error, duration. `--json`
    /// adds the request headers sent (signature values masked) and the answer's first KiB.
    Deliveries {
        /// The endpoint's id (`ep_…`).
        id: String,
        /// How many of the newest to show (at most 200).
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Redeliver: send a recorded delivery (see `deliveries`) again, with the same delivery id
    /// and a fresh attempt count, through the workers like any delivery (lanes, breaker,
    /// pacing). Not for Send tests, nor for events over 16 KiB (their event is not kept).
    Redeliver {
        /// The endpoint's id (`ep_…`).
        id: String,
        /// The delivery's id (`dlv_…`), as `deliveries` lists it.
        delivery_id: String,
    },
    /// Give a webhook endpoint a new signing secret; the old one keeps signing beside it
    /// (`webhook-signature` carries both) for the grace period.
    RotateSecret {
        id: String,
        #[command(flatten)]
        secret: SecretArgs,
        /// How long the previous secret keeps signing, e.g. 24h.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
    },
    /// Give a webhook endpoint a new Ed25519 signing key (one if it has none); the old one keeps
    /// signing beside it (`webhook-signature` carries two `v1a,` entries) for the grace period.
    /// Prints the new public key (`whpk_…`) for the receiver.
    RotateSigningKey {
        id: String,
        /// How long the previous key keeps signing, e.g. 24h.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
    },
    /// Seal every endpoint's URL and secret with the current NOTIFY_ENCRYPTION_KEY (after
    /// setting a key for the first time, or rotating it).
    Reseal,
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// A name people recognise, e.g. "SOC Slack".
    #[arg(long)]
    name: String,
    /// slack, teams, email or webhook.
    #[arg(long)]
    channel: String,
    /// The incoming-webhook URL (slack, teams), your HTTPS URL (webhook) or one address (email).
    #[arg(long)]
    target: String,
    /// Event kinds, comma-separated, or `all`: scan.completed, scan.failed, finding.new,
    /// finding.severity_changed, compliance.report_ready.
    #[arg(long, value_delimiter = ',', required = true)]
    events: Vec<String>,
    #[command(flatten)]
    secret: SecretArgs,
    /// Give the webhook endpoint an Ed25519 signing key, generated here (Standard Webhooks
    /// `v1a`, which receivers verify with the public key `whpk_…` shown but cannot forge).
    #[arg(long)]
    ed25519: bool,
    /// Teams card: message_card (Office 365 connector) or adaptive_card (Workflows). Default: from the URL.
    #[arg(long)]
    teams_format: Option<String>,
    /// At most this many deliveries per second or minute, evenly spaced across every worker:
    /// `10/s`, `600/min`. Default: none (a Slack webhook: one per NOTIFY_SLACK_PACE, 1/s).
    #[arg(long, value_name = "N/s|N/min")]
    rate_limit: Option<String>,
    /// Create it disabled.
    #[arg(long)]
    disabled: bool,
    #[command(flatten)]
    rules: Box<super::rules::RulesArgs>,
}

#[derive(Debug, clap::Args)]
pub struct SecretArgs {
    /// HMAC signing secret for the webhook channel (16+ characters). Prefer --secret-env:
    /// command lines end up in shell history.
    #[arg(long, conflicts_with = "secret_env")]
    secret: Option<String>,
    /// Read the signing secret from this environment variable.
    #[arg(long)]
    secret_env: Option<String>,
}

impl SecretArgs {
    fn resolve(&self) -> Result<Option<Secret>, Failure> {
        match (&self.secret, &self.secret_env) {
            (Some(s), _) => Ok(Some(Secret::new(s.clone()))),
            (None, Some(var)) => std::env::var(var)
                .map(|v| Some(Secret::new(v)))
                .with_context(|| format!("environment variable {var} is not set"))
                .map_err(usage),
            (None, None) => Ok(None),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// The endpoint's id (`ep_…`).
    id: String,
    /// A new name.
    #[arg(long)]
    name: Option<String>,
    /// A new target: URL (slack, teams, webhook) or one address (email).
    #[arg(long)]
    target: Option<String>,
    /// Event kinds, comma-separated, or `all`.
    #[arg(long, value_delimiter = ',')]
    events: Option<Vec<String>>,
    #[command(flatten)]
    secret: SecretArgs,
    /// Remove the signing secret.
    #[arg(long, conflicts_with_all = ["secret", "secret_env"])]
    clear_secret: bool,
    /// Give the webhook endpoint an Ed25519 signing key if it has none (to replace one, use
    /// `rotate-signing-key`).
    #[arg(long)]
    ed25519: bool,
    /// Remove the Ed25519 signing key (and a previous one still signing).
    #[arg(long, conflicts_with = "ed25519")]
    clear_ed25519: bool,
    /// Teams card: message_card or adaptive_card.
    #[arg(long)]
    teams_format: Option<String>,
    /// A new rate limit (`10/s`, `600/min`), or `none` to remove it.
    #[arg(long, value_name = "N/s|N/min|none")]
    rate_limit: Option<String>,
    #[command(flatten)]
    rules: Box<super::rules::RulesArgs>,
}

fn parse_id(id: &str) -> Result<EndpointId, Failure> {
    id.parse().map_err(usage)
}

pub async fn run(global: &Global, command: Command) -> Result<(), Failure> {
    // The endpoint records are in shard 0; each endpoint's breaker, lane, history and dedupe
    // counters in its own shard (`shards.for_endpoint`).
    let (shards, store) = global.store().await?;
    match command {
        Command::Add(a) => {
            let mut draft = EndpointDraft {
                name: a.name,
                channel: a.channel,
                target: a.target,
                // `all` and the names are read by the validation the API shares
                // (`entraguard_core::endpoint::parse_events`).
                events: a.events,
                enabled: !a.disabled,
                secret: a.secret.resolve()?,
                ed25519: a.ed25519.then_some(true),
                teams_format: a.teams_format,
                rate_limit: a.rate_limit,
                rules: Default::default(),
            };
            a.rules.apply(&mut draft.rules).map_err(|e| usage(anyhow::anyhow!(e)))?;
            let ep = draft.validate(global.policy()).map_err(usage)?;
            store.put(&ep).await?;
            print_one(global, &ep, true);
        }
        Command::List => {
            let eps = store.list().await?;
            if global.json {
                output::json(&eps.iter().map(Endpoint::view).collect::<Vec<_>>());
            } else {
                let rows: Vec<Vec<String>> = eps
                    .iter()
                    .map(|e| {
                        let v = e.view();
                        vec![
                            v.id.to_string(),
                            output::cut(&v.name, 30),
                            v.channel.to_string(),
                            output::cut(&v.target, 60),
                            v.events.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(","),
                            if v.enabled { "yes".into() } else { "no".into() },
                        ]
                    })
                    .collect();
                output::table(&["ID", "NAME", "CHANNEL", "TARGET", "EVENTS", "ENABLED"], &rows);
            }
        }
        Command::Show { id } => {
            let id = parse_id(&id)?;
            let ep = store.get(&id).await?.ok_or_else(|| anyhow::anyhow!("endpoint {id} not found"))?;
            let queue = shards.for_endpoint(&id);
            let breaker = queue.breaker_status(&id).await?;
            let suppressed = queue.suppressed_count(&id).await?;
            if global.json {
                let mut v = serde_json::to_value(ep.view()).map_err(anyhow::Error::from)?;
                v["breaker"] = serde_json::to_value(&breaker).map_err(anyhow::Error::from)?;
                v["suppressed"] = suppressed.into();
                // Deliveries waiting in the endpoint's lane: for their turn under the rate
                // limit, for a slot under the in-flight cap, or behind an open breaker.
                v["waiting"] = breaker.parked.into();
                output::json(&v);
            } else {
                print_one(global, &ep, false);
                print_breaker(&breaker);
                if ep.send_interval(std::time::Duration::from_secs(1)).is_some() {
                    entraguard_core::outln!("waiting:   {} for their turn (rate limit)", breaker.parked);
                }
                if ep.rules.dedupe_window.is_some() || suppressed > 0 {
                    entraguard_core::outln!(
                        "suppressed: {suppressed} finding event(s) kept back by the dedupe window"
                    );
                }
            }
        }
        Command::Reset { id } => {
            let id = parse_id(&id)?;
            let Some(ep) = store.get(&id).await? else {
                return Err(anyhow::anyhow!("endpoint {id} not found").into());
            };
            let reset = entraguard_core::operator::reset_now(&store, shards.for_endpoint(&ep.id), &ep)
                .await
                .map_err(anyhow::Error::from)?;
            if global.json {
                output::json(&serde_json::json!({
                    "reset": id,
                    "closed_now": reset.closed_now,
                    "waiting": reset.waiting,
                }));
            } else {
                entraguard_core::outln!("{id}: {}", reset.summary());
            }
        }
        Command::Update(u) => {
            let id = parse_id(&u.id)?;
            let current = store.get(&id).await?.ok_or_else(|| anyhow::anyhow!("endpoint {id} not found"))?;
            let mut draft = current.to_draft();
            if let Some(n) = u.name {
                draft.name = n;
            }
            if let Some(t) = u.target {
                draft.target = t;
            }
            if let Some(e) = u.events {
                draft.events = e;
            }
            if let Some(s) = u.secret.resolve()? {
                draft.secret = Some(s);
            }
            if u.clear_secret {
                draft.secret = None;
            }
            if u.ed25519 {
                draft.ed25519 = Some(true);
            }
            if u.clear_ed25519 {
                draft.ed25519 = Some(false);
            }
            if let Some(f) = u.teams_format {
                draft.teams_format = Some(f);
            }
            if let Some(r) = u.rate_limit {
                draft.rate_limit = Some(r);
            }
            u.rules.apply(&mut draft.rules).map_err(|e| usage(anyhow::anyhow!(e)))?;
            let mut ep =
                draft.validate_as(current.id.clone(), current.created_at, global.policy()).map_err(usage)?;
            // An update that keeps the secret keeps its rotation too; the Ed25519 key stays.
            ep.keep_from(&current, &draft);
            store.put(&ep).await?;
            // A new URL: the breaker's verdict was about the old one; its waiting work goes to
            // the new URL at once.
            let reset = if ep.target != current.target {
                Some(
                    entraguard_core::operator::reset_now(&store, shards.for_endpoint(&ep.id), &ep)
                        .await
                        .map_err(anyhow::Error::from)?,
                )
            } else {
                None
            };
            print_one(global, &ep, true);
            if let Some(reset) = reset
                && !global.json
            {
                entraguard_core::outln!("new URL: {}", reset.summary());
            }
        }
        Command::Enable { id } => {
            let id = parse_id(&id)?;
            let (ep, reset) =
                match entraguard_core::operator::enable_endpoint(&store, shards.for_endpoint(&id), &id).await
                {
                    Ok(r) => r,
                    Err(entraguard_core::operator::BreakerError::Store(
                        entraguard_core::store::StoreError::NotFound(id),
                    )) => {
                        return Err(anyhow::anyhow!("endpoint {id} not found").into());
                    }
                    Err(e) => return Err(anyhow::Error::from(e).into()),
                };
            if global.json {
                output::json(&ep.view());
            } else {
                entraguard_core::outln!("enabled {}; {}", ep.id, reset.summary());
            }
        }
        Command::Disable { id } => set_enabled(global, &store, &id, false).await?,
        Command::Deliveries { id, limit } => {
            let id = parse_id(&id)?;
            if store.get(&id).await?.is_none() {
                return Err(anyhow::anyhow!("endpoint {id} not found").into());
            }
            let records = shards.for_endpoint(&id).recent_deliveries(&id, limit).await?;
            if global.json {
                output::json(&records);
            } else {
                let rows: Vec<Vec<String>> = records
                    .iter()
                    .map(|r| {
                        vec![
                            r.at.to_string(),
                            r.event_kind.to_string(),
                            r.delivery_id.to_string(),
                            r.attempt.to_string(),
                            r.result.to_string(),
                            r.status.map_or("-".to_owned(), |s| s.to_string()),
                            format!("{} ms", r.duration_ms),
                            output::cut(r.error.as_deref().unwrap_or(""), 60),
                        ]
                    })
                    .collect();
                output::table(
                    &["AT", "EVENT", "DELIVERY", "ATTEMPT", "RESULT", "STATUS", "DURATION", "ERROR"],
                    &rows,
                );
            }
        }
        Command::Redeliver { id, delivery_id } => {
            let id = parse_id(&id)?;
            if store.get(&id).await?.is_none() {
                return Err(anyhow::anyhow!("endpoint {id} not found").into());
            }
            let not_found = || {
                Failure::from(anyhow::anyhow!(
                    "delivery {delivery_id} of endpoint {id} not found in its Recent Deliveries"
                ))
            };
            let delivery: entraguard_core::ids::DeliveryId = delivery_id.parse().map_err(|_| not_found())?;
            match shards.for_endpoint(&id).redeliver_recorded(&id, &delivery).await? {
                Redelivery::Enqueued if global.json => {
                    output::json(
                        &serde_json::json!({ "delivery_id": delivery.to_string(), "enqueued": true }),
                    );
                }
                Redelivery::Enqueued => entraguard_core::outln!("redelivering {delivery}"),
                Redelivery::NotFound => return Err(not_found()),
                Redelivery::NotRedeliverable => {
                    return Err(usage(anyhow::anyhow!(
                        "delivery {delivery} cannot be redelivered: it was a Send test, or its event was larger than 16 KiB and not kept"
                    )));
                }
            }
        }
        Command::RotateSecret { id, secret, grace } => {
            let id = parse_id(&id)?;
            let mut ep = store.get(&id).await?.ok_or_else(|| anyhow::anyhow!("endpoint {id} not found"))?;
            let new = secret
                .resolve()?
                .ok_or_else(|| usage(anyhow::anyhow!("give the new secret with --secret or --secret-env")))?;
            let mut draft = ep.to_draft();
            draft.secret = Some(new.clone());
            // The new secret passes the same validation as any other.
            draft.validate_as(ep.id.clone(), ep.created_at, global.policy()).map_err(usage)?;
            ep.rotate_secret(new, grace);
            store.put(&ep).await?;
            print_one(global, &ep, false);
        }
        Command::RotateSigningKey { id, grace } => {
            let id = parse_id(&id)?;
            let mut ep = store.get(&id).await?.ok_or_else(|| anyhow::anyhow!("endpoint {id} not found"))?;
            if ep.channel != entraguard_core::endpoint::Channel::Webhook {
                return Err(usage(anyhow::anyhow!(
                    "endpoint {id} is a {} endpoint: Ed25519 signing keys are for webhook endpoints",
                    ep.channel
                )));
            }
            ep.rotate_signing_key(grace).map_err(anyhow::Error::from)?;
            store.put(&ep).await?;
            print_one(global, &ep, false);
        }
        Command::Reseal => {
            if global.sealing.encryption_key.is_none() {
                return Err(usage(anyhow::anyhow!(
                    "set NOTIFY_ENCRYPTION_KEY (32 bytes, base64) to seal endpoints"
                )));
            }
            let n = store.reseal_all().await?;
            if global.json {
                output::json(&serde_json::json!({ "resealed": n }));
            } else {
                entraguard_core::outln!("resealed {n} endpoint(s) with the current key");
            }
        }
        Command::Remove { id } => {
            let id = parse_id(&id)?;
            if !store.delete(&id).await? {
                return Err(anyhow::anyhow!("endpoint {id} not found").into());
            }
            if global.json {
                output::json(&serde_json::json!({ "removed": id }));
            } else {
                entraguard_core::outln!("removed {id}");
            }
        }
    }
    Ok(())
}

async fn set_enabled(
    global: &Global,
    store: &entraguard_core::store::EndpointStore,
    id: &str,
    on: bool,
) -> Result<(), Failure> {
    let id = parse_id(id)?;
    let ep = match store.set_enabled(&id, on).await {
        Ok(ep) => ep,
        Err(entraguard_core::store::StoreError::NotFound(id)) => {
            return Err(anyhow::anyhow!("endpoint {id} not found").into());
        }
        Err(e) => return Err(e.into()),
    };
    if global.json {
        output::json(&ep.view());
    } else {
        entraguard_core::outln!("{} {}", if on { "enabled" } else { "disabled" }, ep.id);
    }
    Ok(())
}

fn print_breaker(b: &entraguard_core::breaker::BreakerStatus) {
    entraguard_core::outln!(
        "breaker:   {} ({} consecutive failure{})",
        b.state,
        b.consecutive_failures,
        if b.consecutive_failures == 1 { "" } else { "s" }
    );
    if let Some(e) = &b.last_error {
        entraguard_core::outln!("last error: {e}");
    }
    if let Some(since) = b.since {
        entraguard_core::outln!("since:     {since}");
    }
    if let Some(p) = b.next_probe {
        entraguard_core::outln!("next probe: {p}");
    }
    entraguard_core::outln!("parked:    {}", b.parked);
}

fn print_one(global: &Global, ep: &Endpoint, show_warnings: bool) {
    let v = ep.view();
    if global.json {
        output::json(&v);
        return;
    }
    entraguard_core::outln!("id:        {}", v.id);
    entraguard_core::outln!("name:      {}", v.name);
    entraguard_core::outln!("channel:   {}", v.channel);
    entraguard_core::outln!("target:    {}", v.target);
    entraguard_core::outln!(
        "events:    {}",
        v.events.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", ")
    );
    entraguard_core::outln!("enabled:   {}", if v.enabled { "yes" } else { "no" });
    entraguard_core::outln!("secret:    {}", if v.has_secret { "set" } else { "none" });
    if let Some(until) = v.previous_secret_until {
        entraguard_core::outln!("rotation:  the previous secret also signs until {until}");
    }
    if let Some(pk) = &v.public_key {
        entraguard_core::outln!("ed25519:   {pk}");
    }
    if let (Some(pk), Some(until)) = (&v.previous_public_key, v.previous_public_key_until) {
        entraguard_core::outln!("rotation:  the previous key {pk} also signs until {until}");
    }
    if let Some(f) = v.teams_format {
        entraguard_core::outln!("teams:     {f:?}");
    }
    match (v.rate_limit, v.channel) {
        (Some(r), _) => entraguard_core::outln!("rate limit: {r} (one every {:?})", r.interval()),
        (None, entraguard_core::Channel::Slack) => {
            entraguard_core::outln!("rate limit: Slack's pace (NOTIFY_SLACK_PACE, 1/s by default)")
        }
        (None, _) => entraguard_core::outln!("rate limit: none"),
    }
    super::rules::print(&v.rules);
    entraguard_core::outln!("created:   {}", v.created_at);
    entraguard_core::outln!("updated:   {}", v.updated_at);
    if show_warnings {
        for w in &v.warnings {
            eprintln!("warning: {w}");
        }
    }
}
