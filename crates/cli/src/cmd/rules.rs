//! The alert-fatigue rule flags shared by `endpoint add` and `endpoint update`. They only fill
//! core's `RulesDraft`; its validation (the admin API's too) decides what is acceptable.

use entraguard_core::rules::{QuietHoursDraft, RulesDraft};

#[derive(Debug, Default, clap::Args)]
pub struct RulesArgs {
    /// Only these tenants' events, comma-separated tenant ids, or `all` (the default).
    #[arg(long, value_delimiter = ',', help_heading = "Rules")]
    tenants: Option<Vec<String>>,
    /// Finding events below this severity are not sent: info (default, everything), low,
    /// medium, high, critical. A severity change is sent when its old or new severity reaches it.
    #[arg(long, help_heading = "Rules")]
    min_severity: Option<String>,
    /// Do not send a finding event again whose tenant, finding, kind and severity were sent
    /// within this window, e.g. 24h; `off` (the default) to send every one.
    #[arg(long, help_heading = "Rules")]
    dedupe_window: Option<String>,
    /// Collect findings of these severities per scan and send them as one digest when the scan
    /// ends, e.g. low,medium; `off` (the default) to send each one.
    #[arg(long, value_delimiter = ',', help_heading = "Rules")]
    digest: Option<Vec<String>>,
    /// Send a digest after this long even if its scan never ends (default 1h).
    #[arg(long, help_heading = "Rules")]
    digest_max_wait: Option<String>,
    /// Hold deliveries inside this daily window until it ends, e.g. 20:00-07:00 (with
    /// --quiet-tz); `off` to remove quiet hours.
    #[arg(long, help_heading = "Rules")]
    quiet_hours: Option<String>,
    /// IANA time zone of the quiet hours, e.g. Europe/Berlin.
    #[arg(long, help_heading = "Rules")]
    quiet_tz: Option<String>,
    /// Days the quiet window starts on, e.g. mon,tue,wed,thu,fri (default every day).
    #[arg(long, value_delimiter = ',', help_heading = "Rules")]
    quiet_days: Option<Vec<String>>,
    /// This severity and above go at once even in quiet hours (default critical).
    #[arg(long, help_heading = "Rules")]
    quiet_at_once: Option<String>,
}

impl RulesArgs {
    /// Applies the flags given to `draft`; flags not given leave it as it is.
    pub fn apply(&self, draft: &mut RulesDraft) -> Result<(), String> {
        if let Some(t) = &self.tenants {
            draft.tenants = t.clone();
        }
        if let Some(s) = &self.min_severity {
            draft.min_severity = Some(s.clone());
        }
        if let Some(w) = &self.dedupe_window {
            draft.dedupe_window = Some(w.clone());
        }
        if let Some(d) = &self.digest {
            draft.digest.get_or_insert_with(Default::default).severities = d.clone();
        }
        if let Some(w) = &self.digest_max_wait {
            draft.digest.get_or_insert_with(Default::default).max_wait = Some(w.clone());
        }
        match self.quiet_hours.as_deref().map(str::trim) {
            Some(off) if off.eq_ignore_ascii_case("off") || off.is_empty() => draft.quiet_hours = None,
            Some(window) => {
                let (from, to) = window
                    .split_once('-')
                    .ok_or_else(|| format!("--quiet-hours {window:?}: expected a window like 20:00-07:00"))?;
                let q = draft.quiet_hours.get_or_insert_with(QuietHoursDraft::default);
                q.from = from.trim().to_owned();
                q.to = to.trim().to_owned();
            }
            None => {}
        }
        let quiet_extras =
            self.quiet_tz.is_some() || self.quiet_days.is_some() || self.quiet_at_once.is_some();
        if quiet_extras {
            let Some(q) = draft.quiet_hours.as_mut() else {
                return Err("--quiet-tz, --quiet-days and --quiet-at-once need --quiet-hours".to_owned());
            };
            if let Some(tz) = &self.quiet_tz {
                q.time_zone = tz.clone();
            }
            if let Some(d) = &self.quiet_days {
                q.days = d.clone();
            }
            if let Some(s) = &self.quiet_at_once {
                q.at_once = Some(s.clone());
            }
        }
        Ok(())
    }
}

/// The rules as `endpoint show` prints them, one line each; nothing for the defaults.
pub fn print(rules: &entraguard_core::rules::Rules) {
    if let Some(t) = &rules.tenants {
        entraguard_core::outln!("tenants:   {}", t.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    if rules.min_severity != entraguard_core::event::Severity::Info {
        entraguard_core::outln!("floor:     {} and above", rules.min_severity);
    }
    if let Some(w) = rules.dedupe_window {
        entraguard_core::outln!("dedupe:    {}", humantime::format_duration(w));
    }
    if let Some(d) = &rules.digest {
        let sev: Vec<String> = d.severities.iter().map(|s| s.to_string()).collect();
        entraguard_core::outln!(
            "digest:    {} per scan (sent at the latest after {})",
            sev.join(","),
            humantime::format_duration(d.max_wait)
        );
    }
    if let Some(q) = &rules.quiet_hours {
        let days: Vec<String> = q
            .days
            .iter()
            .map(|d| {
                serde_json::to_value(d).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
            })
            .collect();
        entraguard_core::outln!(
            "quiet:     {}-{} {} ({}); {} and above at once",
            q.from,
            q.to,
            q.time_zone,
            days.join(","),
            q.at_once
        );
    }
}
