//! The agent's logs: standard output, or rotated files in `[log] directory`.
//!
//! With a directory, logs go to `switchboard-agent.<date>.log` files rotated as `[log] rotation` says
//! (`switchboard-agent.log`, never rotated, for `never`), keeping the newest `[log] max_files`
//! (tracing-appender). Writes go through a bounded in-memory queue drained by a background thread, so a
//! slow disk never blocks the agent; lines beyond the queue are dropped rather than stalling it.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{Builder, Rotation};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogRotation, LogSection};
use crate::error::{Error, Result};

/// Rotated files kept by default.
pub const DEFAULT_MAX_FILES: usize = 7;
/// Name of the log files (before the date and the `.log` suffix).
pub const FILE_PREFIX: &str = "switchboard-agent";

/// Installs the global logger as `[log]` says. Keep the returned guard alive until exit: dropping it
/// flushes the file writer.
pub fn init(log: &LogSection) -> Result<Option<WorkerGuard>> {
    let level = log.level.as_deref().unwrap_or("info");
    let Some(directory) = &log.directory else {
        switchboard_common::telemetry::init(level, switchboard_common::telemetry::LogFormat::Pretty);
        return Ok(None);
    };
    let rotation = match log.rotation()? {
        LogRotation::Daily => Rotation::DAILY,
        LogRotation::Hourly => Rotation::HOURLY,
        LogRotation::Minutely => Rotation::MINUTELY,
        LogRotation::Never => Rotation::NEVER,
    };
    let appender = Builder::new()
        .rotation(rotation)
        .filename_prefix(FILE_PREFIX)
        .filename_suffix("log")
        .max_log_files(log.max_files.unwrap_or(DEFAULT_MAX_FILES).max(1))
        .build(directory)
        .map_err(|e| Error::Config(format!("log directory {}: {e}", directory.display())))?;
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ =
        tracing_subscriber::registry().with(filter).with(fmt::layer().with_ansi(false).with_writer(writer)).try_init();
    Ok(Some(guard))
}
