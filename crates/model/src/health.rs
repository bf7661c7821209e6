//! An endpoint's health as its circuit breaker sees it: the state shown by `endpoint show`, the
//! admin API and `/metrics`, and carried by `endpoint.health_changed` events. The breaker itself
//! (its settings, reports and answers) is in `entraguard_core::breaker`.

/// A breaker state, as shown and as carried by `endpoint.health_changed`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
    Disabled,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Disabled => "disabled",
        }
    }

    /// Reads a state as the breaker's scripts store it; anything unknown is `Closed`.
    pub fn parse(s: &str) -> Self {
        match s {
            "open" => BreakerState::Open,
            "half_open" => BreakerState::HalfOpen,
            "disabled" => BreakerState::Disabled,
            _ => BreakerState::Closed,
        }
    }
}

impl std::fmt::Display for BreakerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
