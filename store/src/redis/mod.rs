//! The Redis backend: shared state for any number of processes and replicas.
//!
//! Every invariant that spans several keys (insert-if-absent, compare-and-set
//! on a revision, capacity checks plus assignment, fencing on the agent
//! ownership epoch) runs in one Lua script (`scripts/*.lua`), which Redis
//! executes atomically. Rust encodes the records (protobuf) and passes the
//! few fields the scripts need alongside.
//!
//! Data model (`P` is [`RedisConfig::key_prefix`]):
//!
//! | key | type | content |
//! | --- | --- | --- |
//! | `P session:{id}` | hash | `data` (protobuf), `rev`, and `server`, `state`, `type`, `owner` for the scripts |
//! | `P sessions` | zset | every session id, score 0 (ids in lexicographic order for paging) |
//! | `P deleted` | zset | DELETED session ids scored by end time (retention expiry) |
//! | `P server:{id}` | hash | `data` (the agent's report), `rev`, `open`, `reachable`, `healthy`, `max_virtual`, `max_per_user` |
//! | `P server:{id}:sessions` | set | ids of every session assigned to the server |
//! | `P server:{id}:counts` | hash | live (non-DELETED) `console`, `virtual` and per-owner `u:{owner}` counts |
//! | `P servers` | zset | every server id, score 0 |
//! | `P server-open` | hash | open flags set by operators: they outlive a forgotten server |
//! | `P agent:{id}` | hash | stream ownership: `owner`, `address`, `epoch`, `lease_until` (Redis clock) |
//! | `P agent-epoch:{id}` | string | the last epoch handed out (INCR; never reset) |
//! | `P api-clients` | hash | client id → protobuf record |
//! | `P signing-keys` | hash | kid → protobuf record |
//! | `P software-statements` | hash | statement id → protobuf record |
//! | `P software-statements-inactive` | set | ids of deactivated statements |
//! | `P agent-clients` | hash | agent client id → protobuf record (without `server_id`) |
//! | `P agent-client-servers` | hash | agent client id → the server id it is bound to |
//! | `P agent-servers` | hash | server id → the agent client bound to it |
//! | `P token-used:{jti}` | string | a used single-use token id, expiring with the token |
//! | `P auth-servers` | hash | JWKS URL → protobuf record (trusted external authorization servers) |
//! | `P idempotency:{scope key}` | hash | a CreateSessions `Idempotency-Key` record: `body` (SHA-256), `done` (`0`/`1`), `answer`; expiring |
//!
//! Leases are measured on the Redis server's clock (`TIME` inside the
//! scripts), so replicas with skewed clocks agree on who owns a stream.
//! Counts returned in [`ServerRecord`]s come from the counts hash, which the
//! scripts update in the same step as every session write.
//!
//! Connections go through a `ConnectionManager`, which reconnects on its own:
//! during an outage calls fail with [`BackendError::Unavailable`] and work
//! again once Redis is back, without rebuilding the backend. The scripts
//! build their keys from the prefix, so a standalone Redis (optionally with
//! replicas and Sentinel-style failover) is required, not Redis Cluster. See
//! `docs/redis.md` for the recommended server settings.

mod enrolment;
mod idempotency;
mod reply;
mod scripts;
mod store;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ScriptInvocation, Value};

use crate::{BackendError, BackendResult, Fence};
use scripts::Scripts;

/// Longest wait for a TCP (and TLS) connection to Redis.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for any one reply; a stuck Redis counts as unavailable.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnect attempts per outage detection before a call gives up.
const RECONNECT_RETRIES: usize = 3;
/// Longest pause between reconnect attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Where the shared state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS
    /// (verified against the system roots; rustls with ring).
    pub url: String,
    /// Prefix of every key, so several deployments (or tests) can share one
    /// Redis database.
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".to_owned(),
            key_prefix: switchboard_common::config::DEFAULT_REDIS_KEY_PREFIX.to_owned(),
        }
    }
}

/// The shared-state backend over one Redis (see the module doc).
pub struct RedisBackend {
    connection: ConnectionManager,
    prefix: String,
    scripts: Scripts,
}

/// Maps a client or server failure to `Unavailable`: connection loss,
/// timeouts, and server refusals (loading, out of memory, read-only replica)
/// are all "try again later" for the caller.
pub(super) fn unavailable(error: redis::RedisError) -> BackendError {
    BackendError::Unavailable(format!("redis: {error}"))
}

impl RedisBackend {
    /// Connects (waiting for the first connection, so a wrong URL fails
    /// here) and returns the backend. Reconnects on its own afterwards.
    pub async fn connect(config: RedisConfig) -> BackendResult<Self> {
        if config.url.starts_with("rediss://") {
            switchboard_common::tls::install_crypto_provider();
        }
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| BackendError::Unavailable(format!("invalid redis url: {e}")))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(RECONNECT_RETRIES)
            .set_max_delay(MAX_RECONNECT_DELAY);
        let connection = ConnectionManager::new_with_config(client, manager_config).await.map_err(unavailable)?;
        tracing::info!(key_prefix = %config.key_prefix, "connected to redis");
        Ok(Self { connection, prefix: config.key_prefix, scripts: Scripts::new() })
    }

    /// Runs a prepared script invocation (the prefix is its first argument).
    async fn run(&self, invocation: &ScriptInvocation<'_>) -> BackendResult<Value> {
        let mut connection = self.connection.clone();
        invocation.invoke_async(&mut connection).await.map_err(unavailable)
    }

    /// A full key name.
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A plain command (no script) on the shared connection.
    async fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> BackendResult<T> {
        let mut connection = self.connection.clone();
        command.query_async(&mut connection).await.map_err(unavailable)
    }
}

/// Appends the three fence arguments every fenced script takes: mode
/// (`""`, `owner`, `unowned`), server id and epoch.
fn fence_args(invocation: &mut ScriptInvocation<'_>, fence: Option<&Fence>) {
    match fence {
        None => invocation.arg("").arg("").arg(""),
        Some(Fence::Owner { server_id, epoch }) => invocation.arg("owner").arg(server_id).arg(epoch.to_string()),
        Some(Fence::Unowned { server_id }) => invocation.arg("unowned").arg(server_id).arg(""),
    };
}
