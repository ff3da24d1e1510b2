//! The agent's logs: standard output, or `agent.log` in `[log] directory`.
//!
//! With a directory, logs go to `agent.log`, the name the original agent uses (its guide's verification
//! step reads `/var/log/dcv-session-manager-agent/agent.log`). When the period of `[log] rotation` ends
//! (UTC day, hour or minute), the file is renamed beside itself to `agent.log.<period>` (for example
//! `agent.log.2024-05-01`) and a new `agent.log` is started; the newest `[log] max_files` renamed copies are
//! kept. With `never` the agent keeps one `agent.log` (for logrotate's `copytruncate`). A file left by an
//! earlier run is rotated first if its last write belongs to an earlier period.
//!
//! Writes go through a bounded in-memory queue drained by a background thread (tracing-appender), so a
//! slow disk never blocks the agent; lines beyond the queue are dropped rather than stalling it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::{LogRotation, LogSection, TelemetrySection};
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use tracing_appender::non_blocking::WorkerGuard;

/// Rotated copies kept by default.
pub const DEFAULT_MAX_FILES: usize = 7;
/// Name of the log file, as the original agent names it; rotated copies add `.<period>`.
pub const FILE_NAME: &str = "agent.log";

/// Installs the global logger as `[log]` says, exporting spans as `[telemetry]` says. Keep the returned
/// guard alive until exit: dropping it flushes the file writer (and call
/// `switchboard_common::telemetry::shutdown` to flush the spans).
pub fn init(log: &LogSection, telemetry: &TelemetrySection) -> Result<Option<WorkerGuard>> {
    let level = log.level.as_deref().unwrap_or("info");
    let format = log.format()?;
    let export = telemetry.export();
    let failed = |error: switchboard_common::telemetry::TelemetryError| Error::Config(format!("telemetry.{error}"));
    let Some(directory) = &log.directory else {
        switchboard_common::telemetry::init(level, format, export.as_ref()).map_err(failed)?;
        return Ok(None);
    };
    let (writer, guard) = tracing_appender::non_blocking(RollingFile::open(log, directory)?);
    switchboard_common::telemetry::init_with_writer(level, format, false, writer, export.as_ref()).map_err(failed)?;
    Ok(Some(guard))
}

/// `agent.log` in a directory, renamed to `agent.log.<period>` when its period ends.
pub struct RollingFile {
    directory: PathBuf,
    rotation: LogRotation,
    max_files: usize,
    file: File,
    /// The period the lines in `agent.log` belong to; `None` when the file never rotates.
    period: Option<String>,
}

impl RollingFile {
    /// Opens (appending) `agent.log` in `directory` as `[log]` says, rotating a file an earlier run left
    /// from an earlier period.
    pub fn open(log: &LogSection, directory: &Path) -> Result<Self> {
        let failed = |e: std::io::Error| Error::Config(format!("log directory {}: {e}", directory.display()));
        let rotation = log.rotation()?;
        std::fs::create_dir_all(directory).map_err(failed)?;
        let path = directory.join(FILE_NAME);
        let last_write = std::fs::metadata(&path).and_then(|m| m.modified()).ok().map(DateTime::<Utc>::from);
        let mut rolling = Self {
            directory: directory.to_owned(),
            rotation,
            max_files: log.max_files.unwrap_or(DEFAULT_MAX_FILES).max(1),
            file: append(&path).map_err(failed)?,
            period: last_write.and_then(|time| period(rotation, time)),
        };
        rolling.roll_if_due(Utc::now()).map_err(failed)?;
        Ok(rolling)
    }

    /// Writes `buf` as of `now`, rotating first when `now` is in a later period than the file's lines.
    pub fn write_at(&mut self, buf: &[u8], now: DateTime<Utc>) -> std::io::Result<usize> {
        self.roll_if_due(now)?;
        self.file.write(buf)
    }

    fn roll_if_due(&mut self, now: DateTime<Utc>) -> std::io::Result<()> {
        let current = period(self.rotation, now);
        let Some(previous) = self.period.clone() else {
            self.period = current;
            return Ok(());
        };
        if current.as_ref() == Some(&previous) {
            return Ok(());
        }
        self.file.flush()?;
        if self.file.metadata()?.len() == 0 {
            // Nothing to keep from the previous period: no empty copies.
            self.period = current;
            return Ok(());
        }
        let path = self.directory.join(FILE_NAME);
        let mut rotated = self.directory.join(format!("{FILE_NAME}.{previous}"));
        // Two runs in one period (or a clock set back) must not overwrite a copy.
        let mut copy = 1;
        while rotated.exists() {
            rotated = self.directory.join(format!("{FILE_NAME}.{previous}.{copy}"));
            copy += 1;
        }
        std::fs::rename(&path, &rotated)?;
        self.file = append(&path)?;
        self.period = current;
        self.prune()
    }

    /// Deletes the oldest rotated copies beyond `max_files` (their names sort by period).
    fn prune(&self) -> std::io::Result<()> {
        let prefix = format!("{FILE_NAME}.");
        let mut copies: Vec<String> = std::fs::read_dir(&self.directory)?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with(&prefix))
            .collect();
        copies.sort();
        let excess = copies.len().saturating_sub(self.max_files);
        for name in &copies[..excess] {
            std::fs::remove_file(self.directory.join(name))?;
        }
        Ok(())
    }
}

impl Write for RollingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_at(buf, Utc::now())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

fn append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The period `time` falls in, as the suffix of the rotated copy; `None` for `never`.
fn period(rotation: LogRotation, time: DateTime<Utc>) -> Option<String> {
    let format = match rotation {
        LogRotation::Daily => "%Y-%m-%d",
        LogRotation::Hourly => "%Y-%m-%d-%H",
        LogRotation::Minutely => "%Y-%m-%d-%H-%M",
        LogRotation::Never => return None,
    };
    Some(time.format(format).to_string())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

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

    fn read(directory: &Path, name: &str) -> String {
        std::fs::read_to_string(directory.join(name)).unwrap()
    }

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, d, 12, 0, 0).unwrap()
    }

    #[test]
    fn lines_go_to_agent_log_and_rotated_copies_sit_beside_it() {
        let directory = tempfile::tempdir().unwrap();
        let mut writer = RollingFile::open(&section("daily", 2), directory.path()).unwrap();
        assert_eq!(files(directory.path()), [FILE_NAME]);
        for d in 1..=4 {
            writer.write_at(format!("day {d}\n").as_bytes(), day(d)).unwrap();
            writer.write_at(format!("day {d} again\n").as_bytes(), day(d)).unwrap();
        }
        writer.flush().unwrap();
        // The copies of days 2 and 3 are kept (max_files = 2); day 1's is deleted.
        assert_eq!(files(directory.path()), ["agent.log", "agent.log.2030-01-02", "agent.log.2030-01-03"]);
        assert_eq!(read(directory.path(), "agent.log"), "day 4\nday 4 again\n");
        assert_eq!(read(directory.path(), "agent.log.2030-01-03"), "day 3\nday 3 again\n");
    }

    #[test]
    fn a_file_left_by_an_earlier_run_is_rotated_by_its_last_write() {
        let directory = tempfile::tempdir().unwrap();
        let old = directory.path().join(FILE_NAME);
        std::fs::write(&old, "yesterday\n").unwrap();
        let yesterday = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 24 * 3600);
        File::options().write(true).open(&old).unwrap().set_modified(yesterday).unwrap();
        let mut writer = RollingFile::open(&section("daily", 7), directory.path()).unwrap();
        writer.write_all(b"today\n").unwrap();
        let suffix = DateTime::<Utc>::from(yesterday).format("%Y-%m-%d").to_string();
        let copy = format!("{FILE_NAME}.{suffix}");
        assert_eq!(files(directory.path()), [FILE_NAME.to_owned(), copy.clone()]);
        assert_eq!(read(directory.path(), &copy), "yesterday\n");
        assert_eq!(read(directory.path(), FILE_NAME), "today\n");

        // A restart in the same period appends to the same file.
        drop(writer);
        let mut writer = RollingFile::open(&section("daily", 7), directory.path()).unwrap();
        writer.write_all(b"restarted\n").unwrap();
        assert_eq!(read(directory.path(), FILE_NAME), "today\nrestarted\n");
    }

    #[test]
    fn never_rotating_writes_one_file() {
        let directory = tempfile::tempdir().unwrap();
        let mut writer = RollingFile::open(&section("never", 7), directory.path()).unwrap();
        writer.write_at(b"x\n", day(1)).unwrap();
        writer.write_at(b"y\n", day(9)).unwrap();
        assert_eq!(files(directory.path()), [FILE_NAME]);
        assert_eq!(read(directory.path(), FILE_NAME), "x\ny\n");
    }

    #[test]
    fn periods_name_the_copies() {
        let time = Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(period(LogRotation::Daily, time).as_deref(), Some("2030-01-02"));
        assert_eq!(period(LogRotation::Hourly, time).as_deref(), Some("2030-01-02-03"));
        assert_eq!(period(LogRotation::Minutely, time).as_deref(), Some("2030-01-02-03-04"));
        assert_eq!(period(LogRotation::Never, time), None);
    }
}
