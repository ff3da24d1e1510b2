//! Choosing and opening a backend from a binary's storage settings.

use std::path::PathBuf;
use std::sync::Arc;

use crate::{Backend, BackendResult, Observed, embedded, redis};

/// Which storage a process uses; see [`open_backend`].
#[derive(Debug, Clone)]
pub enum BackendConfig {
    /// The embedded backend, durable in `<data_dir>/switchboard.redb`. One
    /// process only: the all-in-one mode.
    Embedded {
        /// Directory of the durable file.
        data_dir: PathBuf,
    },
    /// A shared Redis: any number of processes and replicas.
    Redis(redis::RedisConfig),
}

impl From<switchboard_common::config::StorageChoice> for BackendConfig {
    /// The backend a binary's storage settings chose.
    fn from(choice: switchboard_common::config::StorageChoice) -> Self {
        match choice {
            switchboard_common::config::StorageChoice::Redis { url, key_prefix, wait_replicas, wait_timeout_ms } => {
                Self::Redis(redis::RedisConfig {
                    url,
                    key_prefix,
                    wait_replicas,
                    wait_timeout: std::time::Duration::from_millis(wait_timeout_ms),
                })
            }
            switchboard_common::config::StorageChoice::Embedded(data_dir) => Self::Embedded { data_dir },
        }
    }
}

/// Opens the configured backend (connecting to Redis, or opening the redb
/// file) for a service binary, [`Observed`]: every call traced and measured.
pub async fn open_backend(config: &BackendConfig) -> BackendResult<Arc<dyn Backend>> {
    Ok(match config {
        BackendConfig::Embedded { data_dir } => {
            Observed::wrap(Arc::new(embedded::EmbeddedBackend::open(data_dir)?), "embedded")
        }
        BackendConfig::Redis(redis) => {
            Observed::wrap(Arc::new(redis::RedisBackend::connect(redis.clone()).await?), "redis")
        }
    })
}
