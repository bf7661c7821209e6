//! Authentication: `Authorization: Bearer <NOTIFY_ADMIN_TOKEN>` on API calls, or a server-side
//! session the sign-in sets up. A session id is 256 random bits, sent only in the cookie
//! (HttpOnly, SameSite=Strict, Secure behind HTTPS); Redis keeps it under the SHA-256 of the id
//! with an idle expiry (pushed back on use) and an absolute one, and sign-out deletes it.
//! Failed sign-ins and wrong bearer tokens are rate limited in memory, per client address (each
//! in its own count), never overall: an attacker slows only the addresses it sends from.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

use crate::{ApiError, AppState};

pub const COOKIE: &str = "eg_admin";
/// A session unused this long is gone (Redis TTL, pushed back on each use).
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after sign-in, however busy.
pub const SESSION_MAX: Duration = Duration::from_secs(12 * 60 * 60);

/// Why a token is refused at start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("NOTIFY_ADMIN_TOKEN is blank: set a token of 16+ characters")]
    Blank,
    #[error("NOTIFY_ADMIN_TOKEN starts or ends with whitespace (a trailing newline from a file?): remove it")]
    Whitespace,
    #[error("NOTIFY_ADMIN_TOKEN has {0} characters: use at least 16")]
    TooShort(usize),
}

/// Checks an admin token before the server starts.
pub fn check_token(token: &str) -> Result<(), TokenError> {
    if token.trim().is_empty() {
        return Err(TokenError::Blank);
    }
    if token.trim() != token {
        return Err(TokenError::Whitespace);
    }
    let n = token.chars().count();
    if n < 16 {
        return Err(TokenError::TooShort(n));
    }
    Ok(())
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two secrets in constant time, their lengths included (it compares their hashes).
fn same_secret(a: &str, b: &str) -> bool {
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    std::hint::black_box(x.iter().zip(y.iter()).fold(0u8, |acc, (p, q)| acc | (p ^ q))) == 0
}

/// Whether the request carries the bearer token (false when the server has none).
pub fn bearer_ok(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.token else { return false };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|bearer| same_secret(bearer.trim(), token.expose()))
}

/// The session id in the request's cookie, if any.
pub fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, v)| *k == COOKIE && !v.is_empty())
        .map(|(_, v)| v)
}

/// Whether the request carries the bearer token or a live session (always, without a token).
pub async fn authorized(state: &AppState, headers: &HeaderMap) -> Result<bool, ApiError> {
    if state.token.is_none() || bearer_ok(state, headers) {
        return Ok(true);
    }
    match session_id(headers) {
        Some(id) => touch_session(state, id).await,
        None => Ok(false),
    }
}

/// Whether `candidate` is the token (the sign-in form).
pub fn token_matches(state: &AppState, candidate: &str) -> bool {
    match &state.token {
        Some(t) => same_secret(candidate.trim(), t.expose()),
        None => true,
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn session_key(state: &AppState, id: &str) -> String {
    state.home().keys().session(&sha256_hex(id))
}

/// Starts a session; answers its id (the cookie's value, never stored).
pub async fn new_session(state: &AppState) -> Result<String, ApiError> {
    let bytes: [u8; 32] = rand::random();
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let ends = now_ms() + SESSION_MAX.as_millis() as u64;
    redis::cmd("SET")
        .arg(session_key(state, &id))
        .arg(ends)
        .arg("PX")
        .arg(SESSION_IDLE.as_millis() as u64)
        .exec_async(&mut state.home().connection())
        .await
        .map_err(ApiError::internal)?;
    Ok(id)
}

/// Whether session `id` is live; pushes its idle expiry back (never past its absolute end).
async fn touch_session(state: &AppState, id: &str) -> Result<bool, ApiError> {
    let key = session_key(state, id);
    let mut conn = state.home().connection();
    let ends: Option<u64> =
        redis::cmd("GET").arg(&key).query_async(&mut conn).await.map_err(ApiError::internal)?;
    let Some(ends) = ends else { return Ok(false) };
    let now = now_ms();
    if now >= ends {
        redis::cmd("DEL").arg(&key).exec_async(&mut conn).await.map_err(ApiError::internal)?;
        return Ok(false);
    }
    let idle = (SESSION_IDLE.as_millis() as u64).min(ends - now);
    redis::cmd("PEXPIRE").arg(&key).arg(idle).exec_async(&mut conn).await.map_err(ApiError::internal)?;
    Ok(true)
}

/// Ends session `id` on the server.
pub async fn revoke_session(state: &AppState, id: &str) -> Result<(), ApiError> {
    redis::cmd("DEL")
        .arg(session_key(state, id))
        .exec_async(&mut state.home().connection())
        .await
        .map_err(ApiError::internal)
}

/// The client's address (the TCP peer; `0.0.0.0` when the server runs without connect info).
pub fn client_ip(ext: &axum::http::Extensions) -> IpAddr {
    ext.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// `TooManySignIns` when `ip` must wait before trying `door` again; rounds the wait up to whole
/// seconds.
pub fn rate_limited(state: &AppState, door: Door, ip: IpAddr, now: Instant) -> Result<(), ApiError> {
    match state.login_limiter.check(door, ip, now) {
        Some(wait) => {
            tracing::warn!(client = %ip, door = door.as_str(), "token refused unchecked: too many failed tries");
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            Err(ApiError::TooManySignIns { retry_after_secs: secs.max(1) })
        }
        None => Ok(()),
    }
}

/// Where a token was tried: the sign-in form, or a bearer token on the API. Each keeps its own
/// count, so failed sign-ins never limit the bearer-token API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Door {
    SignIn,
    Bearer,
}

impl Door {
    fn as_str(self) -> &'static str {
        match self {
            Door::SignIn => "sign-in",
            Door::Bearer => "bearer",
        }
    }
}

/// The address a limit applies to: an IPv4 address (IPv4-mapped IPv6 included), or an IPv6
/// address's /64 (one host usually holds a whole /64, so its addresses share one count).
fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
        v4 => v4,
    }
}

/// Failed tries in the last minute, per client address (an IPv6 /64) and door, in memory (one
/// admin process; a restart forgets them). Only an address's own failures limit it: there is no
/// overall limit, so no number of failures from other addresses can lock the token's holder out.
/// At most [`LoginLimiter::MAX_TRACKED`] (address, door) pairs are kept; when full, the one whose
/// last failure is oldest is forgotten first, so memory stays bounded whatever an attacker sends.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<(Door, IpAddr), VecDeque<Instant>>>,
}

impl LoginLimiter {
    pub const WINDOW: Duration = Duration::from_secs(60);
    pub const PER_IP: usize = 5;
    /// Most (address, door) pairs tracked: some 10 000 × 5 instants, under 2 MB.
    pub const MAX_TRACKED: usize = 10_000;

    fn prune(q: &mut VecDeque<Instant>, now: Instant) {
        while q.front().is_some_and(|t| now.duration_since(*t) >= Self::WINDOW) {
            q.pop_front();
        }
    }

    /// `Some(wait)` when `ip` may not try a token at `door` now.
    pub fn check(&self, door: Door, ip: IpAddr, now: Instant) -> Option<Duration> {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let q = f.get_mut(&(door, client_of(ip)))?;
        Self::prune(q, now);
        if q.len() < Self::PER_IP {
            return None;
        }
        q.front().map(|t| Self::WINDOW.saturating_sub(now.duration_since(*t)))
    }

    /// Records a failed try from `ip` at `door`.
    pub fn failed(&self, door: Door, ip: IpAddr, now: Instant) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let key = (door, client_of(ip));
        if !f.contains_key(&key) && f.len() >= Self::MAX_TRACKED {
            f.retain(|_, q| {
                Self::prune(q, now);
                !q.is_empty()
            });
            if f.len() >= Self::MAX_TRACKED {
                let stalest = f.iter().min_by_key(|(_, q)| q.back().copied()).map(|(k, _)| *k);
                if let Some(k) = stalest {
                    f.remove(&k);
                }
            }
        }
        let q = f.entry(key).or_default();
        Self::prune(q, now);
        q.push_back(now);
        // Only the last PER_IP matter for the limit.
        while q.len() > Self::PER_IP {
            q.pop_front();
        }
    }

    /// How many (address, door) pairs are tracked.
    pub fn tracked(&self) -> usize {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_blank_short_or_padded_are_refused() {
        assert_eq!(check_token("                "), Err(TokenError::Blank));
        assert_eq!(check_token(""), Err(TokenError::Blank));
        assert_eq!(check_token("0123456789abcdef\n"), Err(TokenError::Whitespace));
        assert_eq!(check_token(" 0123456789abcdef"), Err(TokenError::Whitespace));
        assert_eq!(check_token("short"), Err(TokenError::TooShort(5)));
        assert_eq!(check_token("0123456789abcdef"), Ok(()));
    }

    #[test]
    fn five_failures_per_address_and_door_per_minute_and_no_overall_limit() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        let a: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..5 {
            assert_eq!(l.check(Door::SignIn, a, t0), None);
            l.failed(Door::SignIn, a, t0);
        }
        let later = t0 + Duration::from_secs(20);
        assert_eq!(l.check(Door::SignIn, a, later), Some(Duration::from_secs(40)));
        assert_eq!(l.check(Door::Bearer, a, later), None, "failed sign-ins never limit the API");
        assert_eq!(l.check(Door::SignIn, a, t0 + Duration::from_secs(60)), None, "the window has passed");
        // Many addresses failing many times lock out only themselves.
        let l = LoginLimiter::default();
        for i in 0..200u8 {
            for _ in 0..21 {
                l.failed(Door::SignIn, [10, 0, 1, i].into(), t0);
                l.failed(Door::Bearer, [10, 0, 1, i].into(), t0);
            }
        }
        assert!(l.check(Door::SignIn, [10, 0, 1, 7].into(), t0).is_some());
        for door in [Door::SignIn, Door::Bearer] {
            assert_eq!(l.check(door, [10, 0, 2, 1].into(), t0 + Duration::from_secs(1)), None);
        }
    }

    #[test]
    fn an_ipv6_slash_64_is_one_address_and_mapped_ipv4_is_ipv4() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..5u16 {
            l.failed(Door::SignIn, IpAddr::V6([0x2001, 0xdb8, 0, 1, 0, 0, 0, i].into()), t0);
        }
        assert!(l.check(Door::SignIn, IpAddr::V6([0x2001, 0xdb8, 0, 1, 9, 9, 9, 9].into()), t0).is_some());
        assert_eq!(l.check(Door::SignIn, IpAddr::V6([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1].into()), t0), None);
        for _ in 0..5 {
            l.failed(Door::SignIn, IpAddr::V6(std::net::Ipv4Addr::new(10, 9, 9, 9).to_ipv6_mapped()), t0);
        }
        assert!(l.check(Door::SignIn, [10, 9, 9, 9].into(), t0).is_some());
    }

    #[test]
    fn the_tracked_addresses_are_capped_forgetting_the_stalest_first() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        let admin_typo: IpAddr = [192, 168, 0, 1].into();
        for _ in 0..5 {
            l.failed(Door::SignIn, admin_typo, t0);
        }
        let t1 = t0 + Duration::from_secs(1);
        for i in 0..(LoginLimiter::MAX_TRACKED as u32 + 50) {
            l.failed(Door::SignIn, IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)), t1);
        }
        assert_eq!(l.tracked(), LoginLimiter::MAX_TRACKED);
        assert_eq!(l.check(Door::SignIn, admin_typo, t1), None, "the stalest entry went first");
    }
}
