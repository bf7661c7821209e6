//! Endpoints (spec §2): where events go. One implementation of endpoint validation, shared by
//! the CLI, the admin API and the worker.

mod target;
pub use target::{is_cloud_metadata, literal_ip, validate_email, validate_url};

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::event::EventKind;
use crate::ids::EndpointId;
use crate::rate_limit::RateLimit;
use crate::rules::{Rules, RulesDraft};
use crate::secret::{Secret, mask_url};
use crate::signing_key::SigningKey;
use crate::timestamp::Timestamp;

/// Longest accepted endpoint name.
pub const MAX_NAME: usize = 200;
/// Longest accepted target URL.
pub const MAX_URL: usize = 2048;

/// How an endpoint receives its messages.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Slack,
    Teams,
    Email,
    Webhook,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::Slack, Channel::Teams, Channel::Email, Channel::Webhook];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Slack => "slack",
            Channel::Teams => "teams",
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = EndpointError;
    fn from_str(s: &str) -> Result<Self, EndpointError> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s.trim().to_ascii_lowercase()).ok_or_else(|| {
            EndpointError::Field {
                field: "channel",
                reason: format!("{s:?} is not one of slack, teams, email, webhook"),
            }
        })
    }
}

/// Which card a Teams endpoint gets. Chosen from the URL unless set on the endpoint.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeamsFormat {
    /// The Office 365 connector card (`*.webhook.office.com`).
    MessageCard,
    /// An Adaptive Card message (Teams Workflows: `*.logic.azure.com`, `*.powerplatform.com`).
    AdaptiveCard,
}

impl FromStr for TeamsFormat {
    type Err = EndpointError;
    fn from_str(s: &str) -> Result<Self, EndpointError> {
        match s.trim() {
            "message_card" | "messagecard" => Ok(TeamsFormat::MessageCard),
            "adaptive_card" | "adaptivecard" | "adaptive" => Ok(TeamsFormat::AdaptiveCard),
            other => Err(EndpointError::Field {
                field: "teams_format",
                reason: format!("{other:?} is not one of message_card, adaptive_card"),
            }),
        }
    }
}

/// Where an endpoint's messages go: a URL for HTTP channels, one address for email.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Url(url::Url),
    Email(String),
}

impl Target {
    /// The target as shown to people: URLs with their tokens masked, email addresses as they are.
    pub fn masked(&self) -> String {
        match self {
            Target::Url(u) => mask_url(u.as_str()),
            Target::Email(e) => e.clone(),
        }
    }

    pub fn url(&self) -> Option<&url::Url> {
        match self {
            Target::Url(u) => Some(u),
            Target::Email(_) => None,
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // URLs carry tokens: never print them whole.
        write!(f, "Target({})", self.masked())
    }
}

pub use crate::validation::EndpointError;

fn bad(field: &'static str, reason: impl Into<String>) -> EndpointError {
    EndpointError::Field { field, reason: reason.into() }
}

/// What targets are acceptable. HTTPS only unless plain HTTP is allowed (local tests).
/// Private and loopback addresses are refused at connection time by the worker's transport,
/// after DNS resolution, not here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    pub allow_http: bool,
}

/// A configured endpoint, as stored in Redis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: EndpointId,
    pub name: String,
    pub channel: Channel,
    pub target: Target,
    pub events: BTreeSet<EventKind>,
    pub enabled: bool,
    /// HMAC signing secret (webhook channel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// The secret before the last rotation, still used to sign (beside the new one) until
    /// `previous_secret_until`, so receivers can switch without dropping deliveries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_until: Option<Timestamp>,
    /// Ed25519 signing key (webhook channel, Standard Webhooks `v1a`), generated by us; sealed
    /// at rest like the secret, shown only as its public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<SigningKey>,
    /// The key before the last rotation, still signing beside the new one until
    /// `previous_signing_key_until`, as for secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_signing_key: Option<SigningKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_signing_key_until: Option<Timestamp>,
    /// Card format for Teams; `None` chooses from the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams_format: Option<TeamsFormat>,
    /// Deliveries per second or minute, evenly spaced, across every worker; `None`: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Alert-fatigue rules (tenants, severity floor, dedupe, digest, quiet hours); routing data,
    /// never sealed. Absent in records stored before rules existed: the defaults.
    #[serde(default, skip_serializing_if = "Rules::is_default")]
    pub rules: Rules,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Endpoint {
    /// Replaces the signing secret; the old one keeps signing beside it for `grace`.
    pub fn rotate_secret(&mut self, new: Secret, grace: std::time::Duration) {
        let until = time::OffsetDateTime::now_utc() + grace;
        self.previous_secret = self.secret.replace(new);
        self.previous_secret_until = self.previous_secret.as_ref().map(|_| Timestamp::from_datetime(until));
        self.updated_at = Timestamp::now();
    }

    /// The secrets that sign now: the current one, then the previous one during its grace.
    pub fn signing_secrets(&self, now: Timestamp) -> Vec<&Secret> {
        let mut out: Vec<&Secret> = self.secret.iter().collect();
        if let (Some(prev), Some(until)) = (&self.previous_secret, self.previous_secret_until)
            && now < until
        {
            out.push(prev);
        }
        out
    }

    /// Gives the endpoint a new Ed25519 key; the old one (if any) keeps signing beside it for
    /// `grace`, as [`Endpoint::rotate_secret`] does for secrets.
    pub fn rotate_signing_key(&mut self, grace: std::time::Duration) -> Result<(), EndpointError> {
        let until = time::OffsetDateTime::now_utc() + grace;
        self.previous_signing_key = self.signing_key.replace(generate_key()?);
        self.previous_signing_key_until =
            self.previous_signing_key.as_ref().map(|_| Timestamp::from_datetime(until));
        self.updated_at = Timestamp::now();
        Ok(())
    }

    /// The Ed25519 keys that sign now: the current one, then the previous one during its grace.
    pub fn signing_keys(&self, now: Timestamp) -> Vec<&SigningKey> {
        let mut out: Vec<&SigningKey> = self.signing_key.iter().collect();
        if let (Some(prev), Some(until)) = (&self.previous_signing_key, self.previous_signing_key_until)
            && now < until
        {
            out.push(prev);
        }
        out
    }

    /// Carries over from `current`, the stored endpoint an update of `draft` replaces, what a
    /// draft does not hold: the secret's rotation while the secret is unchanged, and the Ed25519
    /// key with its rotation unless the draft removes it (`ed25519: false`) or the endpoint is
    /// no longer a webhook. The CLI's `update` and the API's `PUT` both call this.
    pub fn keep_from(&mut self, current: &Endpoint, draft: &EndpointDraft) {
        if self.secret == current.secret {
            self.previous_secret = current.previous_secret.clone();
            self.previous_secret_until = current.previous_secret_until;
        }
        if draft.ed25519 != Some(false) && self.channel == Channel::Webhook && current.signing_key.is_some() {
            self.signing_key = current.signing_key.clone();
            self.previous_signing_key = current.previous_signing_key.clone();
            self.previous_signing_key_until = current.previous_signing_key_until;
        }
    }

    /// The spacing between two sends to this endpoint, across every worker: its rate limit's, else
    /// a Slack webhook's `slack_pace` (zero: off); `None` for an endpoint with no limit.
    pub fn send_interval(&self, slack_pace: std::time::Duration) -> Option<std::time::Duration> {
        match (self.rate_limit, self.channel) {
            (Some(limit), _) => Some(limit.interval()),
            (None, Channel::Slack) if !slack_pace.is_zero() => Some(slack_pace),
            (None, _) => None,
        }
    }

    pub fn subscribes_to(&self, kind: EventKind) -> bool {
        self.enabled && self.events.contains(&kind)
    }

    /// Warnings that do not refuse the endpoint (a Slack URL not on Slack's host, say).
    pub fn warnings(&self) -> Vec<String> {
        let host = self.target.url().and_then(|u| u.host_str()).unwrap_or("").to_ascii_lowercase();
        let on = |suffixes: &[&str]| suffixes.iter().any(|s| host == *s || host.ends_with(&format!(".{s}")));
        match self.channel {
            Channel::Slack if !on(&["hooks.slack.com", "slack.com"]) => {
                vec![format!(
                    "host {host:?} is not Slack's (hooks.slack.com): fine for a proxy or a local fake"
                )]
            }
            Channel::Teams
                if !on(&["webhook.office.com", "logic.azure.com", "powerplatform.com", "office.com"]) =>
            {
                vec![format!(
                    "host {host:?} is not a Microsoft Teams webhook host: fine for a proxy or a local fake"
                )]
            }
            _ => Vec::new(),
        }
    }
}

/// An endpoint as shown to people (CLI, admin API, page): the target masked, the secret only as
/// whether there is one. The one place that decides what of an endpoint may be shown.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointView {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: EndpointId,
    pub name: String,
    pub channel: Channel,
    /// Masked: tokens in URL paths and queries become `****`.
    pub target: String,
    pub events: Vec<EventKind>,
    pub enabled: bool,
    pub has_secret: bool,
    /// Until when the previous secret still signs, during a rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub previous_secret_until: Option<Timestamp>,
    /// The Ed25519 public key (`whpk_…`) receivers verify `v1a` signatures with; absent when
    /// the endpoint has no signing key. The private key is never shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The previous key's public key, during a rotation (it signs until
    /// `previous_public_key_until`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_public_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub previous_public_key_until: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teams_format: Option<TeamsFormat>,
    /// `10/s`, `600/min`; absent: none (a Slack webhook is paced at `NOTIFY_SLACK_PACE`, 1/s).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "10/s"))]
    pub rate_limit: Option<RateLimit>,
    /// Alert-fatigue rules; absent when there are none.
    #[serde(skip_serializing_if = "Rules::is_default")]
    pub rules: Rules,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub updated_at: Timestamp,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Endpoint {
    pub fn view(&self) -> EndpointView {
        EndpointView {
            id: self.id.clone(),
            name: self.name.clone(),
            channel: self.channel,
            target: self.target.masked(),
            events: self.events.iter().copied().collect(),
            enabled: self.enabled,
            has_secret: self.secret.is_some(),
            previous_secret_until: self.previous_secret.as_ref().and(self.previous_secret_until),
            public_key: self.signing_key.as_ref().map(SigningKey::public_key),
            previous_public_key: self.previous_signing_key.as_ref().map(SigningKey::public_key),
            previous_public_key_until: self
                .previous_signing_key
                .as_ref()
                .and(self.previous_signing_key_until),
            teams_format: self.teams_format,
            rate_limit: self.rate_limit,
            rules: self.rules.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            warnings: self.warnings(),
        }
    }

    /// The draft that recreates this endpoint, for partial updates.
    pub fn to_draft(&self) -> EndpointDraft {
        EndpointDraft {
            name: self.name.clone(),
            channel: self.channel.to_string(),
            target: match &self.target {
                Target::Url(u) => u.to_string(),
                Target::Email(e) => e.clone(),
            },
            events: self.events.iter().map(|e| e.to_string()).collect(),
            enabled: self.enabled,
            secret: self.secret.clone(),
            // Keep the key as it is (see `Endpoint::keep_from`).
            ed25519: None,
            teams_format: self.teams_format.map(|f| match f {
                TeamsFormat::MessageCard => "message_card".to_owned(),
                TeamsFormat::AdaptiveCard => "adaptive_card".to_owned(),
            }),
            rate_limit: self.rate_limit.map(|r| r.to_string()),
            rules: self.rules.to_draft(),
        }
    }
}

/// The fields a person supplies to create or replace an endpoint. Validated into an
/// [`Endpoint`] by [`EndpointDraft::validate`], the one validation the CLI and the API share.
/// Unknown fields are refused, so a typo is never dropped without a word.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointDraft {
    pub name: String,
    pub channel: String,
    /// A URL (slack, teams, webhook) or one email address (email).
    pub target: String,
    pub events: Vec<String>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub secret: Option<Secret>,
    /// An Ed25519 signing key (webhook channel): `true` gives the endpoint one, generated here
    /// (an update keeps the one it has), `false` removes it, absent keeps what there is.
    #[serde(default)]
    pub ed25519: Option<bool>,
    #[serde(default)]
    pub teams_format: Option<String>,
    /// Deliveries per second or minute (`10/s`, `600/min`); absent, empty or `none`: no limit.
    #[serde(default)]
    pub rate_limit: Option<String>,
    /// Alert-fatigue rules; absent: none.
    #[serde(default)]
    pub rules: RulesDraft,
}

fn default_true() -> bool {
    true
}

/// The event kinds an endpoint subscribes to, as the CLI (`--events a,b` or `--events all`) and
/// the API (`["a","b"]` or `["all"]`) give them: `all` (anywhere in the list) means every
/// subscribable kind ([`EventKind::SUBSCRIBABLE`]); names are trimmed, empty ones ignored; at
/// least one is needed. `finding.digest` is refused: an endpoint's digest rule sends it.
pub fn parse_events(events: &[String]) -> Result<BTreeSet<EventKind>, EndpointError> {
    let names: Vec<&str> = events.iter().map(|e| e.trim()).filter(|e| !e.is_empty()).collect();
    if names.is_empty() {
        return Err(bad("events", "must name at least one event kind, or all"));
    }
    if names.contains(&"all") {
        return Ok(EventKind::SUBSCRIBABLE.into_iter().collect());
    }
    let events = names
        .iter()
        .map(|e| e.parse::<EventKind>().map_err(|err| bad("events", err.to_string())))
        .collect::<Result<BTreeSet<_>, _>>()?;
    if events.contains(&EventKind::FindingDigest) {
        return Err(bad(
            "events",
            "finding.digest is not subscribed to: set the endpoint's digest rule (rules.digest) instead",
        ));
    }
    Ok(events)
}

impl EndpointDraft {
    /// Validates the draft into a new endpoint with a fresh id.
    pub fn validate(&self, policy: TargetPolicy) -> Result<Endpoint, EndpointError> {
        self.validate_as(EndpointId::generate(), Timestamp::now(), policy)
    }

    /// Validates the draft as the new state of endpoint `id`, created at `created_at`.
    pub fn validate_as(
        &self,
        id: EndpointId,
        created_at: Timestamp,
        policy: TargetPolicy,
    ) -> Result<Endpoint, EndpointError> {
        let name = self.name.trim();
        if name.is_empty() {
            return Err(bad("name", "must not be empty"));
        }
        // Counted in characters, as the message says (60 emoji are 60, not 240 bytes).
        if name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
            return Err(bad("name", format!("must be at most {MAX_NAME} printable characters")));
        }
        let channel: Channel = self.channel.parse()?;
        let target = match channel {
            Channel::Email => Target::Email(validate_email(&self.target)?),
            _ => Target::Url(validate_url(&self.target, policy)?),
        };
        let events = parse_events(&self.events)?;
        let secret = match &self.secret {
            Some(s) if s.expose().is_empty() => None,
            Some(s) if !(16..=512).contains(&s.expose().chars().count()) => {
                return Err(bad("secret", "must be 16 to 512 characters"));
            }
            Some(s) if channel != Channel::Webhook => {
                let _ = s;
                return Err(bad("secret", "applies to the webhook channel only"));
            }
            other => other.clone(),
        };
        let signing_key = match self.ed25519 {
            Some(true) if channel != Channel::Webhook => {
                return Err(bad("ed25519", "applies to the webhook channel only"));
            }
            Some(true) => Some(generate_key()?),
            _ => None,
        };
        let teams_format = match (&self.teams_format, channel) {
            (None, _) => None,
            (Some(f), _) if f.trim().is_empty() => None,
            (Some(f), Channel::Teams | Channel::Webhook) => Some(f.parse()?),
            (Some(_), _) => {
                return Err(bad("teams_format", "applies to teams and webhook endpoints only"));
            }
        };
        let rate_limit = match self.rate_limit.as_deref().map(str::trim) {
            None | Some("" | "none") => None,
            Some(text) => Some(text.parse::<RateLimit>().map_err(|e| bad("rate_limit", e.to_string()))?),
        };
        Ok(Endpoint {
            id,
            name: name.to_owned(),
            channel,
            target,
            events,
            enabled: self.enabled,
            secret,
            previous_secret: None,
            previous_secret_until: None,
            signing_key,
            previous_signing_key: None,
            previous_signing_key_until: None,
            teams_format,
            rate_limit,
            rules: self.rules.validate()?,
            created_at,
            updated_at: Timestamp::now(),
        })
    }
}

fn generate_key() -> Result<SigningKey, EndpointError> {
    SigningKey::generate().map_err(|e| bad("ed25519", format!("could not be generated: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(channel: &str, target: &str) -> EndpointDraft {
        EndpointDraft {
            name: "SOAR".into(),
            channel: channel.into(),
            target: target.into(),
            events: vec!["finding.new".into()],
            enabled: true,
            ..Default::default()
        }
    }

    #[test]
    fn a_unicode_host_name_is_refused_with_its_ascii_form_named() {
        let e =
            validate_url("https://b\u{fc}cher.example/hook", TargetPolicy::default()).expect_err("refused");
        assert!(e.to_string().contains("xn--"), "{e}");
        let e = validate_email("oncall@b\u{fc}cher.example").expect_err("refused");
        assert!(e.to_string().contains("xn--"), "{e}");
        assert!(validate_email("oncall@xn--bcher-kva.example").is_ok());
        let ok =
            validate_url("https://xn--bcher-kva.example/hook", TargetPolicy::default()).expect("ASCII form");
        assert_eq!(ok.host_str(), Some("xn--bcher-kva.example"));
    }

    #[test]
    fn a_rate_limit_is_validated_and_slack_is_paced_without_one() {
        let mut d = draft("webhook", "https://soar.example.com/hook");
        d.rate_limit = Some("50/s".into());
        let ep = d.validate(TargetPolicy::default()).expect("valid");
        assert_eq!(ep.rate_limit.map(|r| r.to_string()).as_deref(), Some("50/s"));
        let pace = std::time::Duration::from_secs(1);
        assert_eq!(ep.send_interval(pace), Some(std::time::Duration::from_millis(20)));
        assert_eq!(ep.to_draft().rate_limit.as_deref(), Some("50/s"), "an update keeps it");
        d.rate_limit = Some("fast".into());
        let err = d.validate(TargetPolicy::default()).expect_err("refused").to_string();
        assert!(err.contains("rate_limit") && err.contains("e.g. 10/s"), "{err}");
        d.rate_limit = Some("none".into());
        assert_eq!(d.validate(TargetPolicy::default()).expect("valid").send_interval(pace), None);
        let slack =
            draft("slack", "https://hooks.slack.com/services/T/B/x").validate(TargetPolicy::default());
        let slack = slack.expect("valid");
        assert_eq!(slack.send_interval(pace), Some(pace), "Slack's pace is its default limit");
        assert_eq!(slack.send_interval(std::time::Duration::ZERO), None, "pacing off");
    }

    #[test]
    fn https_webhook_is_accepted() {
        let ep = draft("webhook", "https://soar.example.com/hook")
            .validate(TargetPolicy::default())
            .expect("valid");
        assert_eq!(ep.channel, Channel::Webhook);
        assert!(ep.subscribes_to(EventKind::FindingNew));
        assert!(!ep.subscribes_to(EventKind::ScanFailed));
    }

    #[test]
    fn plain_http_needs_the_setting() {
        let d = draft("webhook", "http://127.0.0.1:9000/hook");
        let err = d.validate(TargetPolicy::default()).expect_err("refused");
        assert_eq!(err.field(), "target");
        assert!(d.validate(TargetPolicy { allow_http: true }).is_ok());
    }

    #[test]
    fn bad_urls_emails_and_events_name_the_field() {
        let p = TargetPolicy::default();
        assert_eq!(draft("webhook", "not a url").validate(p).expect_err("x").field(), "target");
        assert_eq!(draft("webhook", "ftp://x.example/").validate(p).expect_err("x").field(), "target");
        assert_eq!(draft("webhook", "https://u:p@x.example/").validate(p).expect_err("x").field(), "target");
        assert_eq!(draft("email", "a@b").validate(p).expect_err("x").field(), "target");
        assert_eq!(draft("email", "a@b.com, c@d.com").validate(p).expect_err("x").field(), "target");
        assert!(draft("email", "oncall@contoso.com").validate(p).is_ok());
        assert_eq!(draft("pager", "https://x.example/").validate(p).expect_err("x").field(), "channel");
        let mut d = draft("webhook", "https://x.example/");
        d.events = vec!["all".into()];
        let every = d.validate(p).expect("all is every subscribable kind").events;
        assert_eq!(every.len(), EventKind::SUBSCRIBABLE.len());
        assert!(!every.contains(&EventKind::FindingDigest), "a digest rule sends finding.digest");
        d.events = vec!["finding.new".into(), "finding.digest".into()];
        assert_eq!(d.validate(p).expect_err("x").field(), "events");
        d.events = vec!["scan.exploded".into()];
        assert_eq!(d.validate(p).expect_err("x").field(), "events");
        d.events.clear();
        assert_eq!(d.validate(p).expect_err("x").field(), "events");
    }

    #[test]
    fn placeholders_and_cloud_metadata_are_refused_at_creation_naming_the_rule() {
        let p = TargetPolicy::default();
        let e = draft("teams", "https://contoso.webhook.office.com/webhookb2/\u{2026}")
            .validate(p)
            .expect_err("x");
        assert!(e.to_string().contains("placeholder"), "{e}");
        for target in
            ["https://169.254.169.254/x", "https://[::ffff:169.254.169.254]/x", "https://[fd00:ec2::254]/x"]
        {
            let e = draft("webhook", target).validate(p).expect_err(target);
            assert!(e.to_string().contains("cloud metadata"), "{target}: {e}");
        }
        assert!(draft("webhook", "https://169.254.169.253/x").validate(p).is_ok(), "the allow list decides");
    }

    #[test]
    fn slack_on_a_foreign_host_is_a_warning_not_a_refusal() {
        let ep =
            draft("slack", "https://proxy.example.com/slack").validate(TargetPolicy::default()).expect("ok");
        assert_eq!(ep.warnings().len(), 1);
        let ep = draft("slack", "https://hooks.slack.com/services/T0/B0/x")
            .validate(TargetPolicy::default())
            .expect("ok");
        assert!(ep.warnings().is_empty());
    }

    #[test]
    fn debug_never_prints_the_url_token() {
        let ep = draft("slack", "https://hooks.slack.com/services/T0AAA/B0BBB/SECRETTOKEN")
            .validate(TargetPolicy::default())
            .expect("ok");
        assert!(!format!("{ep:?}").contains("SECRETTOKEN"));
    }

    #[test]
    fn ed25519_keys_are_generated_kept_rotated_and_shown_only_as_public_keys() {
        let p = TargetPolicy::default();
        let mut d = draft("slack", "https://hooks.slack.com/services/T0/B0/x");
        d.ed25519 = Some(true);
        assert_eq!(d.validate(p).expect_err("webhook only").field(), "ed25519");
        let mut d = draft("webhook", "https://soar.example.com/hook");
        d.ed25519 = Some(true);
        let mut ep = d.validate(p).expect("valid");
        let key = ep.signing_key.clone().expect("generated");
        let view = serde_json::to_string(&ep.view()).expect("json");
        let private = key.to_secret();
        assert!(view.contains(&key.public_key()) && !view.contains(&private.expose()[5..]), "{view}");
        assert!(!format!("{ep:?}").contains(&private.expose()[5..]));

        // An update keeps the key (the draft as the endpoint gives it, and `ed25519: true`);
        // `false` removes it.
        for want in [None, Some(true)] {
            let mut u = ep.to_draft();
            u.ed25519 = want;
            let mut next = u.validate_as(ep.id.clone(), ep.created_at, p).expect("valid");
            next.keep_from(&ep, &u);
            assert_eq!(next.signing_key.as_ref(), Some(&key), "{want:?}");
        }
        let mut u = ep.to_draft();
        u.ed25519 = Some(false);
        let mut next = u.validate_as(ep.id.clone(), ep.created_at, p).expect("valid");
        next.keep_from(&ep, &u);
        assert!(next.signing_key.is_none());

        // Rotation: both sign during the grace period, then only the new one.
        ep.rotate_signing_key(std::time::Duration::from_secs(3600)).expect("rotated");
        let now = Timestamp::now();
        let keys = ep.signing_keys(now);
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[1], &key);
        assert_ne!(keys[0], &key);
        assert_eq!(ep.view().previous_public_key, Some(key.public_key()));
        let later =
            Timestamp::from_datetime(time::OffsetDateTime::now_utc() + std::time::Duration::from_secs(7200));
        assert_eq!(ep.signing_keys(later).len(), 1);
    }
}
