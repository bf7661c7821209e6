//! Transports: how a rendered payload reaches its receiver. `http` for Slack, Teams and
//! webhooks (with the SSRF `guard` deciding which addresses may be connected to); `smtp` for
//! email.

pub mod guard;
pub mod http;
pub mod smtp;
