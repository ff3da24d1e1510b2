//! Time as the broker stores it (Unix milliseconds) and as the API shows it.

use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
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
}
