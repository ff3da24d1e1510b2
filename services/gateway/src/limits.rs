//! Request limits: rate limits (token endpoint per peer address and overall, API per client) and
//! the header size limit. Body size, batch size and expression size limits live with the
//! handlers (`DefaultBodyLimit`, `GatewayConfig::max_batch`, placement's validation).
//!
//! Rate limits use `governor` (GCRA): each limit is a sustained rate per minute plus a burst. They
//! are **per gateway replica**: with N replicas behind a load balancer a client can get up to N
//! times the configured rate. Refusals are `429 Too Many Requests` with `Retry-After` (seconds).
//! Behind a proxy the peer address is the proxy's, so the per-address token limit then acts as
//! one shared limit; the overall token limit applies either way.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::{
    extract::{ConnectInfo, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use governor::{
    DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::{AppState, error::ApiError};

/// Keys kept per keyed limiter before idle ones are dropped.
const MAX_TRACKED_KEYS: usize = 100_000;

/// One rate limit: `per_minute` sustained, up to `burst` at once. `per_minute = 0` disables it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Sustained requests per minute.
    pub per_minute: u32,
    /// Requests allowed at once (bucket size).
    pub burst: u32,
}

impl RateLimit {
    /// No limit.
    pub const OFF: Self = Self { per_minute: 0, burst: 0 };

    fn quota(self) -> Option<Quota> {
        let per_minute = NonZeroU32::new(self.per_minute)?;
        let period = Duration::from_secs(60) / per_minute.get();
        let burst = NonZeroU32::new(self.burst.max(1))?;
        Some(Quota::with_period(period.max(Duration::from_nanos(1)))?.allow_burst(burst))
    }
}

/// The configured limits: settings of the gateway (see [`crate::GatewayConfig`]). A rate of 0 per minute
/// disables that limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct LimitsConfig {
    /// `/oauth2/token` requests per minute per peer IP address (IPv6: per /64); 0: off.
    #[arg(long)]
    pub token_rate_per_minute: u32,
    /// Burst of `/oauth2/token` requests per peer address.
    #[arg(long)]
    pub token_rate_burst: u32,
    /// `/oauth2/token` requests per minute over all callers of this replica; 0: off.
    #[arg(long)]
    pub token_rate_overall_per_minute: u32,
    /// Burst of `/oauth2/token` requests over all callers.
    #[arg(long)]
    pub token_rate_overall_burst: u32,
    /// Authenticated API calls per minute per client id; 0: off.
    #[arg(long)]
    pub api_rate_per_minute: u32,
    /// Burst of API calls per client id.
    #[arg(long)]
    pub api_rate_burst: u32,
    /// Largest total size of the request headers (names + values), bytes; larger: 431.
    #[arg(long)]
    pub max_header_bytes: usize,
    /// Most `GET /events` Server-Sent Events streams this replica keeps open at once; beyond: 503.
    #[arg(long)]
    pub max_event_streams: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            token_rate_per_minute: 600,
            token_rate_burst: 20,
            token_rate_overall_per_minute: 12_000,
            token_rate_overall_burst: 200,
            api_rate_per_minute: 3_000,
            api_rate_burst: 100,
            max_header_bytes: 16 * 1024,
            max_event_streams: 1000,
        }
    }
}

impl LimitsConfig {
    /// `/oauth2/token` per peer address.
    pub fn token_per_address(&self) -> RateLimit {
        RateLimit { per_minute: self.token_rate_per_minute, burst: self.token_rate_burst }
    }

    /// `/oauth2/token` over all callers.
    pub fn token_overall(&self) -> RateLimit {
        RateLimit { per_minute: self.token_rate_overall_per_minute, burst: self.token_rate_overall_burst }
    }

    /// API calls per client id.
    pub fn api_per_client(&self) -> RateLimit {
        RateLimit { per_minute: self.api_rate_per_minute, burst: self.api_rate_burst }
    }
}

/// The limiters of one gateway replica.
pub struct Limits {
    token_per_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    token_overall: Option<DefaultDirectRateLimiter>,
    api_per_client: Option<DefaultKeyedRateLimiter<String>>,
    /// Largest total header size.
    pub max_header_bytes: usize,
    /// One permit per open event stream.
    pub event_streams: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits").field("max_header_bytes", &self.max_header_bytes).finish_non_exhaustive()
    }
}

fn refused(not_until: governor::NotUntil<<DefaultClock as Clock>::Instant>, what: &str) -> ApiError {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError::TooManyRequests { message: format!("Too many {what}; retry later"), retry_after_seconds: seconds.max(1) }
}

/// IPv6 addresses are limited per /64 (one subscriber's usual allocation).
fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
        v4 => v4,
    }
}

impl Limits {
    /// Limiters for `config`.
    pub fn new(config: LimitsConfig) -> Self {
        Self {
            token_per_address: config.token_per_address().quota().map(RateLimiter::keyed),
            token_overall: config.token_overall().quota().map(RateLimiter::direct),
            api_per_client: config.api_per_client().quota().map(RateLimiter::keyed),
            max_header_bytes: config.max_header_bytes,
            event_streams: Arc::new(tokio::sync::Semaphore::new(config.max_event_streams)),
        }
    }

    /// Admits one token request from `peer` (unknown peer: only the overall limit).
    pub fn check_token(&self, peer: Option<IpAddr>) -> Result<(), ApiError> {
        if let (Some(limiter), Some(peer)) = (&self.token_per_address, peer) {
            if limiter.len() > MAX_TRACKED_KEYS {
                limiter.retain_recent();
            }
            limiter.check_key(&address_key(peer)).map_err(|n| refused(n, "token requests from this address"))?;
        }
        if let Some(limiter) = &self.token_overall {
            limiter.check().map_err(|n| refused(n, "token requests"))?;
        }
        Ok(())
    }

    /// Admits one API call of `client_id`.
    pub fn check_client(&self, client_id: &str) -> Result<(), ApiError> {
        let Some(limiter) = &self.api_per_client else { return Ok(()) };
        if limiter.len() > MAX_TRACKED_KEYS {
            limiter.retain_recent();
        }
        let key = client_id.to_owned();
        limiter.check_key(&key).map_err(|n| refused(n, "requests from this API client"))
    }
}

/// The peer address of a request, when the server recorded it.
pub fn peer_address(request: &Request) -> Option<IpAddr> {
    request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(address)| address.ip())
}

/// Middleware: refuses requests whose headers exceed [`Limits::max_header_bytes`] (431).
pub async fn limit_headers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let size: usize = request.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if size > state.limits.max_header_bytes {
        tracing::info!(size, limit = state.limits.max_header_bytes, "request headers too large");
        return crate::error::error_body(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "Request headers are too large")
            .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_limit_answers_with_retry_after() {
        let limits = Limits::new(LimitsConfig { api_rate_per_minute: 1, api_rate_burst: 3, ..LimitsConfig::default() });
        for _ in 0..3 {
            limits.check_client("a").unwrap();
        }
        match limits.check_client("a") {
            Err(ApiError::TooManyRequests { retry_after_seconds, .. }) => {
                assert!((1..=60).contains(&retry_after_seconds), "{retry_after_seconds}")
            }
            other => panic!("expected 429, got {other:?}"),
        }
        // Other clients have their own bucket.
        limits.check_client("b").unwrap();
    }

    #[test]
    fn token_limits_per_address_and_overall() {
        let limits = Limits::new(LimitsConfig {
            token_rate_per_minute: 1,
            token_rate_burst: 2,
            token_rate_overall_per_minute: 1,
            token_rate_overall_burst: 5,
            ..LimitsConfig::default()
        });
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let two: IpAddr = "10.0.0.2".parse().unwrap();
        limits.check_token(Some(one)).unwrap();
        limits.check_token(Some(one)).unwrap();
        assert!(limits.check_token(Some(one)).is_err(), "per-address burst spent");
        limits.check_token(Some(two)).unwrap();
        limits.check_token(None).unwrap();
        limits.check_token(None).unwrap();
        assert!(limits.check_token(Some("10.0.0.3".parse().unwrap())).is_err(), "overall burst spent");
    }

    #[test]
    fn ipv6_peers_share_a_bucket_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key("2001:db8:1:3::1".parse().unwrap()));
    }

    #[test]
    fn zero_disables_a_limit() {
        let limits = Limits::new(LimitsConfig { api_rate_per_minute: 0, api_rate_burst: 0, ..LimitsConfig::default() });
        for _ in 0..10_000 {
            limits.check_client("a").unwrap();
        }
    }
}
