//! A silence's matchers: which events it mutes, by tenant, event kind, finding id, category and
//! severity. Written as short expressions (`tenant=B`, `kind=finding.new,finding.severity_changed`,
//! `severity<=medium`), the same text in the CLI, the API and the page, parsed here once.
//!
//! Every matcher given must match (and); within one matcher the values are alternatives (or).
//! `finding`, `category` and `severity` match only finding events (`finding.new`,
//! `finding.severity_changed`): an event without a finding never matches them.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::SilenceError;
use crate::event::{Event, EventKind, Severity};

/// The fields a matcher can name, as written.
pub const FIELDS: [&str; 5] = ["tenant", "kind", "finding", "category", "severity"];

/// Longest value of one matcher, and most values in one matcher.
const MAX_VALUE_CHARS: usize = 256;
const MAX_VALUES: usize = 100;

/// Which severities a silence matches: one of a list, or a ceiling (`severity<=medium`: medium,
/// low and info).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeverityMatch {
    OneOf(BTreeSet<Severity>),
    /// This severity or any less severe.
    AtMost(Severity),
}

impl SeverityMatch {
    pub fn matches(&self, s: Severity) -> bool {
        match self {
            SeverityMatch::OneOf(set) => set.contains(&s),
            // `Severity` orders most severe first: "at most medium" is medium or after it.
            SeverityMatch::AtMost(ceiling) => s >= *ceiling,
        }
    }
}

/// A silence's matchers; `None` is "any". Stored as this JSON, shown as expressions.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matchers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenants: Option<BTreeSet<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinds: Option<BTreeSet<EventKind>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findings: Option<BTreeSet<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<BTreeSet<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<SeverityMatch>,
}

fn bad(reason: impl Into<String>) -> SilenceError {
    SilenceError::Field { field: "matchers", reason: reason.into() }
}

fn cut(s: &str) -> String {
    s.chars().take(64).collect()
}

impl Matchers {
    /// Reads matcher expressions (`field=value[,value…]`, or `severity<=level`). Each field at
    /// most once; errors name the expression and say what was expected.
    pub fn parse<'a>(exprs: impl IntoIterator<Item = &'a str>) -> Result<Self, SilenceError> {
        let mut m = Matchers::default();
        for expr in exprs {
            let expr = expr.trim();
            if expr.is_empty() {
                continue;
            }
            let (name, op, value) = split(expr)?;
            let values = values(expr, value)?;
            let twice = || bad(format!("{name:?} is given twice; put its values in one matcher: {name}=a,b"));
            match name {
                "tenant" => set_once(&mut m.tenants, values.into_iter().map(str::to_owned).collect(), twice)?,
                "finding" => {
                    set_once(&mut m.findings, values.into_iter().map(str::to_owned).collect(), twice)?
                }
                "category" => {
                    set_once(&mut m.categories, values.into_iter().map(str::to_owned).collect(), twice)?;
                }
                "kind" => {
                    let kinds = values
                        .into_iter()
                        .map(|v| {
                            v.parse::<EventKind>().map_err(|_| {
                                bad(format!(
                                    "{:?} is not an event kind: expected one of {}",
                                    cut(v),
                                    EventKind::ALL.map(EventKind::as_str).join(", ")
                                ))
                            })
                        })
                        .collect::<Result<_, _>>()?;
                    set_once(&mut m.kinds, kinds, twice)?;
                }
                "severity" => {
                    let parsed = values.into_iter().map(severity).collect::<Result<BTreeSet<_>, _>>()?;
                    let sm = if op == "<=" {
                        let only = parsed.into_iter().next().filter(|_| !value.contains(','));
                        SeverityMatch::AtMost(only.ok_or_else(|| {
                            bad(format!("{expr:?}: a ceiling takes one severity, e.g. severity<=medium"))
                        })?)
                    } else {
                        SeverityMatch::OneOf(parsed)
                    };
                    set_once(&mut m.severity, sm, twice)?;
                }
                _ => unreachable!("split checks the name"),
            }
        }
        Ok(m)
    }

    /// No matcher at all: it would match every event.
    pub fn is_empty(&self) -> bool {
        *self == Matchers::default()
    }

    /// Whether the kind matcher names `kind` explicitly.
    pub fn names_kind(&self, kind: EventKind) -> bool {
        self.kinds.as_ref().is_some_and(|k| k.contains(&kind))
    }

    /// Whether `event` matches every matcher given.
    pub fn matches(&self, event: &Event) -> bool {
        if let Some(kinds) = &self.kinds
            && !kinds.contains(&event.kind())
        {
            return false;
        }
        if let Some(tenants) = &self.tenants
            && !tenants.contains(&event.tenant_id)
        {
            return false;
        }
        if self.findings.is_none() && self.categories.is_none() && self.severity.is_none() {
            return true;
        }
        let Some(finding) = event.finding() else { return false };
        self.findings.as_ref().is_none_or(|f| f.contains(&finding.id))
            && self.categories.as_ref().is_none_or(|c| c.contains(&finding.category))
            && self.severity.as_ref().is_none_or(|s| s.matches(finding.severity))
    }

    /// The matchers as expressions, in a fixed order (what `parse` reads back).
    pub fn expressions(&self) -> Vec<String> {
        let join = |set: &BTreeSet<String>| set.iter().map(String::as_str).collect::<Vec<_>>().join(",");
        let mut out = Vec::new();
        if let Some(t) = &self.tenants {
            out.push(format!("tenant={}", join(t)));
        }
        if let Some(k) = &self.kinds {
            out.push(format!("kind={}", k.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(",")));
        }
        if let Some(f) = &self.findings {
            out.push(format!("finding={}", join(f)));
        }
        if let Some(c) = &self.categories {
            out.push(format!("category={}", join(c)));
        }
        match &self.severity {
            Some(SeverityMatch::AtMost(s)) => out.push(format!("severity<={s}")),
            Some(SeverityMatch::OneOf(set)) => {
                out.push(format!(
                    "severity={}",
                    set.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
                ));
            }
            None => {}
        }
        out
    }
}

impl fmt::Display for Matchers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.expressions();
        if e.is_empty() { f.write_str("(every event)") } else { f.write_str(&e.join(" ")) }
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, twice: impl Fn() -> SilenceError) -> Result<(), SilenceError> {
    if slot.is_some() {
        return Err(twice());
    }
    *slot = Some(value);
    Ok(())
}

/// `name`, operator, value of one expression; the name checked.
fn split(expr: &str) -> Result<(&'static str, &'static str, &str), SilenceError> {
    let (name, op, value) = if let Some((n, v)) = expr.split_once("<=") {
        (n, "<=", v)
    } else if let Some((n, v)) = expr.split_once('=') {
        (n, "=", v)
    } else {
        return Err(bad(format!(
            "{:?} is not a matcher: expected field=value (or severity<=level), the field one of {}",
            cut(expr),
            FIELDS.join(", ")
        )));
    };
    let name = name.trim();
    if value.starts_with('=') || value.starts_with('~') || name.ends_with(['!', '>', '<']) {
        return Err(bad(format!("{:?}: only = and severity<= are supported", cut(expr))));
    }
    let known = FIELDS.into_iter().find(|f| *f == name).ok_or_else(|| {
        bad(format!(
            "unknown field {:?} in {:?}: expected one of {}",
            cut(name),
            cut(expr),
            FIELDS.join(", ")
        ))
    })?;
    if op == "<=" && known != "severity" {
        return Err(bad(format!("{:?}: only severity takes <= (e.g. severity<=medium)", cut(expr))));
    }
    Ok((known, op, value))
}

fn values<'a>(expr: &str, value: &'a str) -> Result<Vec<&'a str>, SilenceError> {
    let vals: Vec<&str> = value.split(',').map(str::trim).collect();
    if vals.iter().any(|v| v.is_empty()) {
        return Err(bad(format!("{:?}: a value is empty", cut(expr))));
    }
    if vals.len() > MAX_VALUES {
        return Err(bad(format!("{:?}: at most {MAX_VALUES} values in one matcher", cut(expr))));
    }
    if let Some(v) =
        vals.iter().find(|v| v.chars().count() > MAX_VALUE_CHARS || v.chars().any(char::is_control))
    {
        return Err(bad(format!(
            "{:?}: a value is over {MAX_VALUE_CHARS} characters or holds control characters",
            cut(v)
        )));
    }
    Ok(vals)
}

fn severity(s: &str) -> Result<Severity, SilenceError> {
    match s {
        "critical" => Ok(Severity::Critical),
        "high" => Ok(Severity::High),
        "medium" => Ok(Severity::Medium),
        "low" => Ok(Severity::Low),
        "info" => Ok(Severity::Info),
        other => Err(bad(format!(
            "{:?} is not a severity: expected critical, high, medium, low or info",
            cut(other)
        ))),
    }
}
