//! Time as the broker stores it (Unix milliseconds) and as the API shows it, read through one seam.
//!
//! Every lease, timeout, queue expiry and retention reads the time with [`now_ms`]. In production that is
//! the system clock. A test can call [`follow_tokio_clock`] once: from then on the process's time follows
//! tokio's clock, anchored at the wall-clock time of that call, so `tokio::time::pause()` and
//! `tokio::time::advance()` move it as they move timers (outside a paused runtime it runs with real time).

use std::sync::OnceLock;

use chrono::{DateTime, SecondsFormat, Utc};

/// Where [`now_ms`] reads the time.
enum Clock {
    /// The system clock.
    System,
    /// Tokio's clock (pausable in tests), from the wall-clock time it was anchored at.
    Tokio { anchor_ms: i64, anchor: tokio::time::Instant },
}

static CLOCK: OnceLock<Clock> = OnceLock::new();

/// Milliseconds since the Unix epoch, now, by the process's clock (the system clock unless a test chose
/// [`follow_tokio_clock`]).
pub fn now_ms() -> i64 {
    match CLOCK.get().unwrap_or(&Clock::System) {
        Clock::System => Utc::now().timestamp_millis(),
        Clock::Tokio { anchor_ms, anchor } => {
            let elapsed = tokio::time::Instant::now().saturating_duration_since(*anchor);
            anchor_ms + i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX / 2)
        }
    }
}

/// For tests: from now on [`now_ms`] follows tokio's clock (see the module docs). Idempotent; the first
/// call wins for the life of the process. Production code never calls it.
pub fn follow_tokio_clock() {
    let _ = CLOCK.set(Clock::Tokio { anchor_ms: Utc::now().timestamp_millis(), anchor: tokio::time::Instant::now() });
}

/// RFC 3339 with milliseconds and `Z`, as in the API examples
/// (`2020-10-06T10:15:31.633Z`). `None` for 0 (never).
pub fn rfc3339_ms(unix_ms: i64) -> Option<String> {
    if unix_ms == 0 {
        return None;
    }
    DateTime::<Utc>::from_timestamp_millis(unix_ms).map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_the_api_examples() {
        assert_eq!(rfc3339_ms(1_601_979_331_633).as_deref(), Some("2020-10-06T10:15:31.633Z"));
        assert_eq!(rfc3339_ms(0), None);
    }

    #[tokio::test(start_paused = true)]
    async fn follows_a_paused_tokio_clock() {
        follow_tokio_clock();
        let before = now_ms();
        tokio::time::advance(std::time::Duration::from_secs(3600)).await;
        let after = now_ms();
        assert!((3_600_000..3_600_050).contains(&(after - before)), "{}", after - before);
    }
}
