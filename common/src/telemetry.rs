//! Logging and tracing setup, once per process.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the global subscriber (to standard output). The filter comes from `RUST_LOG` when set,
/// else `default_filter` (e.g. `info`). Calling it twice is harmless (tests).
pub fn init(default_filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        // Colours only on a terminal: redirected logs (files, journald, kubectl logs) stay plain text.
        LogFormat::Pretty => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
            registry.with(fmt::layer().with_target(true).with_ansi(ansi)).try_init()
        }
        LogFormat::Json => registry.with(fmt::layer().json().flatten_event(true)).try_init(),
    };
}

/// For tests: logs to the test writer only when `TEST_LOG` is set.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        let _ = tracing_subscriber::registry().with(filter).with(fmt::layer().with_test_writer()).try_init();
    }
}
