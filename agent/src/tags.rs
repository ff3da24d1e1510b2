//! Host tags from the agent's tags folder.
//!
//! Every `*.toml` file of the folder is read in alphabetical order; each holds `key = "value"` lines. When a
//! key appears in several files the last file wins, as with the original agent. A missing folder means no
//! tags. Non-string scalars (`gpus = 4`) are accepted as their TOML text; tables and arrays are an error.
//!
//! The agent holds its tags in [`SharedTags`] and reads them for every message to the broker;
//! [`reload_on_sighup`] re-reads the folder on each SIGHUP (a file that fails to parse keeps the previous
//! tags and logs why), so new tags reach the broker with the next update, without a reconnect.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use switchboard_common::Shutdown;

use switchboard_proto::KeyValue;

use crate::error::{Error, Result};

/// The host's current tags, shared between the link (which reads them) and the reloader (which replaces
/// them).
#[derive(Debug, Clone, Default)]
pub struct SharedTags(Arc<RwLock<Vec<KeyValue>>>);

impl SharedTags {
    /// Tags starting as `tags`.
    pub fn new(tags: Vec<KeyValue>) -> Self {
        Self(Arc::new(RwLock::new(tags)))
    }

    /// The current tags.
    pub fn get(&self) -> Vec<KeyValue> {
        self.0.read().expect("tags lock poisoned").clone()
    }

    /// Replaces the tags.
    pub fn set(&self, tags: Vec<KeyValue>) {
        *self.0.write().expect("tags lock poisoned") = tags;
    }
}

impl From<Vec<KeyValue>> for SharedTags {
    fn from(tags: Vec<KeyValue>) -> Self {
        Self::new(tags)
    }
}

/// Re-reads `folder` into `tags` on every SIGHUP until `shutdown`. The signal handler is installed before
/// this returns (so a SIGHUP sent afterwards never kills the process); fails only when it cannot be.
pub fn reload_on_sighup(
    folder: PathBuf,
    tags: SharedTags,
    shutdown: Shutdown,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                received = hangups.recv() => if received.is_none() { return },
            }
            let read = tokio::task::spawn_blocking({
                let folder = folder.clone();
                move || read_tags(&folder)
            })
            .await;
            match read {
                Ok(Ok(new_tags)) => {
                    tracing::info!(tags = new_tags.len(), folder = %folder.display(), "tags reloaded on SIGHUP");
                    tags.set(new_tags);
                }
                Ok(Err(error)) => tracing::warn!(%error, "tags not reloaded; keeping the previous ones"),
                Err(error) => tracing::warn!(%error, "tags reload task failed"),
            }
        }
    }))
}

/// Reads the tags of `folder`, sorted by key.
pub fn read_tags(folder: &Path) -> Result<Vec<KeyValue>> {
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(Error::io(folder, error)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(folder, e))?.path();
        if path.is_file() && path.extension().is_some_and(|ext| ext == "toml") {
            files.push(path);
        }
    }
    files.sort();
    let mut tags = BTreeMap::new();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        parse_tags_into(&text, &mut tags).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    }
    Ok(tags.into_iter().map(|(key, value)| KeyValue { key, value }).collect())
}

/// Parses one tag file into `tags`, overwriting keys already present.
fn parse_tags_into(text: &str, tags: &mut BTreeMap<String, String>) -> Result<(), String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    for (key, value) in table {
        let value = match value {
            toml::Value::String(text) => text,
            toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) | toml::Value::Datetime(_) => {
                value.to_string()
            }
            toml::Value::Array(_) | toml::Value::Table(_) => {
                return Err(format!("tag `{key}` must be a string, not a table or an array"));
            }
        };
        tags.insert(key, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(tags: &[KeyValue]) -> Vec<(&str, &str)> {
        tags.iter().map(|t| (t.key.as_str(), t.value.as_str())).collect()
    }

    #[test]
    fn a_missing_folder_means_no_tags() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_tags(&dir.path().join("absent")).unwrap().is_empty());
    }

    #[test]
    fn files_are_read_alphabetically_and_the_last_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.toml"), "gpu = \"a100\"\nzone = \"b\"\n").unwrap();
        std::fs::write(dir.path().join("a.toml"), "gpu = \"t4\"\nrack = \"r1\"\n").unwrap();
        std::fs::write(dir.path().join("c.txt"), "gpu = \"ignored\"\n").unwrap();
        let tags = read_tags(dir.path()).unwrap();
        assert_eq!(pairs(&tags), [("gpu", "a100"), ("rack", "r1"), ("zone", "b")]);
    }

    #[test]
    fn scalars_become_text_and_tables_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), "gpus = 4\nssd = true\n").unwrap();
        assert_eq!(pairs(&read_tags(dir.path()).unwrap()), [("gpus", "4"), ("ssd", "true")]);
        std::fs::write(dir.path().join("b.toml"), "[nested]\nx = \"y\"\n").unwrap();
        let error = read_tags(dir.path()).unwrap_err();
        assert!(error.to_string().contains("b.toml"), "{error}");
    }

    #[test]
    fn malformed_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.toml"), "key = \n").unwrap();
        let error = read_tags(dir.path()).unwrap_err();
        assert!(error.to_string().contains("bad.toml"), "{error}");
    }
}
