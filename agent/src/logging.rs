//! The agent's logs: standard output, or rotated files in `[log] directory`.
//!
//! With a directory, logs go to `switchboard-agent.<date>.log` files rotated as `[log] rotation` says
//! (`switchboard-agent.log`, never rotated, for `never`), keeping the newest `[log] max_files`
//! (tracing-appender). Writes go through a bounded in-memory queue drained by a background thread, so a
//! slow disk never blocks the agent; lines beyond the queue are dropped rather than stalling it.

use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{Builder, RollingFileAppender, Rotation};
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
    let (writer, guard) = tracing_appender::non_blocking(appender(log, directory)?);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ =
        tracing_subscriber::registry().with(filter).with(fmt::layer().with_ansi(false).with_writer(writer)).try_init();
    Ok(Some(guard))
}

/// The rotating file writer of `[log]` in `directory`.
fn appender(log: &LogSection, directory: &Path) -> Result<RollingFileAppender> {
    let rotation = match log.rotation()? {
        LogRotation::Daily => Rotation::DAILY,
        LogRotation::Hourly => Rotation::HOURLY,
        LogRotation::Minutely => Rotation::MINUTELY,
        LogRotation::Never => Rotation::NEVER,
    };
    Builder::new()
        .rotation(rotation)
        .filename_prefix(FILE_PREFIX)
        .filename_suffix("log")
        .max_log_files(log.max_files.unwrap_or(DEFAULT_MAX_FILES).max(1))
        .build(directory)
        .map_err(|e| Error::Config(format!("log directory {}: {e}", directory.display())))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn section(rotation: &str, max_files: usize) -> LogSection {
        let text = format!(
            "version = '0.1'\n[agent]\nbroker_host = 'b'\n[log]\nrotation = '{rotation}'\nmax_files = {max_files}\n"
        );
        crate::config::AgentConfig::parse(&text).unwrap().log
    }

    fn files(directory: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(directory)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn lines_go_to_dated_files_and_old_ones_are_pruned() {
        let directory = tempfile::tempdir().unwrap();
        // Older files of the same naming, as earlier days would have left them.
        for day in 1..=5 {
            std::fs::write(directory.path().join(format!("{FILE_PREFIX}.2020-01-0{day}.log")), "old\n").unwrap();
        }
        let mut writer = appender(&section("daily", 3), directory.path()).unwrap();
        writer.write_all(b"a line\n").unwrap();
        writer.flush().unwrap();
        let names = files(directory.path());
        let today = names.iter().find(|name| !name.contains("2020-")).expect("today's file");
        assert!(today.starts_with(&format!("{FILE_PREFIX}.")) && today.ends_with(".log"), "{names:?}");
        assert_eq!(std::fs::read_to_string(directory.path().join(today)).unwrap(), "a line\n");
        // tracing-appender deletes the files created first (by file creation time, which a test cannot set,
        // so which of the old ones go is not checked here).
        assert_eq!(names.len(), 3, "max_files files are kept, today's among them: {names:?}");
    }

    #[test]
    fn never_rotating_writes_one_file() {
        let directory = tempfile::tempdir().unwrap();
        let mut writer = appender(&section("never", 7), directory.path()).unwrap();
        writer.write_all(b"x\n").unwrap();
        writer.flush().unwrap();
        assert_eq!(files(directory.path()), vec![format!("{FILE_PREFIX}.log")]);
    }
}
