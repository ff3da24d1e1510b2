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
//! The URL's scheme chooses the topology ([`connection`]): one server, the
//! primary Sentinel names (followed on failover), or a Redis Cluster. Each
//! reconnects on its own: during an outage calls fail with
//! [`BackendError::Unavailable`] and work again once Redis is back, without
//! rebuilding the backend. The scripts build their keys from the prefix; on a
//! Cluster the prefix carries a hash tag, so every key lives in one slot.
//! Writes that must survive a failover (clients, keys, enrolment, operators'
//! flags) wait for replicas (`WAIT`, [`RedisConfig::wait_replicas`]). See
//! `docs/redis.md` for the topologies, what each guarantees and the
//! recommended server settings.

mod connection;
mod enrolment;
mod idempotency;
mod reply;
mod scripts;
mod store;

use std::time::Duration;

use redis::{Script, ScriptInvocation, Value};

use crate::{BackendError, BackendResult, Fence};
use connection::{Connection, Topology};
use scripts::Scripts;

/// How long a must-not-lose write waits for replicas by default.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(1);

/// Where the shared state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS
    /// (verified against the system roots; rustls with ring).
    pub url: String,
    /// `redis+sentinel://[user:password@]host[:port],…/<primary name>[/db]`
    /// follows the primary the sentinels name; `redis+cluster://host:port,…`
    /// uses a Redis Cluster (`rediss+…` for TLS). See [`connection`].
    /// Prefix of every key, so several deployments (or tests) can share one
    /// Redis database. On a Cluster a prefix without a hash tag is wrapped in
    /// one (`switchboard:` becomes `{switchboard:}`).
    pub key_prefix: String,
    /// How many replicas must acknowledge a must-not-lose write (`WAIT`)
    /// before it is reported done: `None` means 1 with Sentinel or Cluster, 0
    /// (no wait) for one server.
    pub wait_replicas: Option<u32>,
    /// How long such a write waits for them; fewer acknowledgements within it
    /// fail the call with `Unavailable` (the write stays on the primary).
    pub wait_timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".to_owned(),
            key_prefix: switchboard_common::config::DEFAULT_REDIS_KEY_PREFIX.to_owned(),
            wait_replicas: None,
            wait_timeout: DEFAULT_WAIT_TIMEOUT,
        }
    }
}

/// The shared-state backend over one Redis (see the module doc).
pub struct RedisBackend {
    connection: Connection,
    /// A second connection for must-not-lose writes and their `WAIT`, which
    /// blocks the connection it is sent on.
    durable: Connection,
    /// Replicas a must-not-lose write waits for (0: none), and for how long.
    wait: (u32, Duration),
    prefix: String,
    /// The key every script call names, so a Cluster routes it to the slot
    /// of every key (the prefix's hash tag).
    slot_key: String,
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
        if config.url.contains("rediss") {
            switchboard_common::tls::install_crypto_provider();
        }
        let topology =
            Topology::parse(&config.url).map_err(|e| BackendError::Unavailable(format!("invalid redis url: {e}")))?;
        let [connection, durable] = topology.connect().await.map_err(unavailable)?;
        let prefix = if topology.is_cluster() { hash_tagged(&config.key_prefix) } else { config.key_prefix };
        let replicas = config.wait_replicas.unwrap_or(if matches!(topology, Topology::Standalone(_)) { 0 } else { 1 });
        tracing::info!(key_prefix = %prefix, wait_replicas = replicas, "connected to redis");
        Ok(Self {
            connection,
            durable,
            wait: (replicas, config.wait_timeout),
            slot_key: format!("{prefix}slot"),
            prefix,
            scripts: Scripts::new(),
        })
    }

    /// A call of `script` with its routing key and the prefix as its first argument.
    fn invoke<'a>(&self, script: &'a Script) -> ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        invocation.key(&self.slot_key).arg(&self.prefix);
        invocation
    }

    /// Runs a prepared script invocation (see [`invoke`](Self::invoke)).
    async fn run(&self, invocation: &ScriptInvocation<'_>) -> BackendResult<Value> {
        let mut connection = self.connection.clone();
        invocation.invoke_async(&mut connection).await.map_err(unavailable)
    }

    /// [`run`](Self::run) for a write that must survive a failover: done once
    /// [`RedisConfig::wait_replicas`] replicas have it.
    async fn run_durable(&self, invocation: &ScriptInvocation<'_>) -> BackendResult<Value> {
        let mut connection = self.durable.clone();
        let value = invocation.invoke_async(&mut connection).await.map_err(unavailable)?;
        self.wait_for_replicas(connection).await?;
        Ok(value)
    }

    /// [`query`](Self::query) for a write that must survive a failover.
    async fn query_durable<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> BackendResult<T> {
        let mut connection = self.durable.clone();
        let value = command.query_async(&mut connection).await.map_err(unavailable)?;
        self.wait_for_replicas(connection).await?;
        Ok(value)
    }

    /// `WAIT` on the connection that made the write: every write it sent so far reached the replicas.
    async fn wait_for_replicas(&self, mut connection: Connection) -> BackendResult<()> {
        let (replicas, timeout) = self.wait;
        if replicas == 0 {
            return Ok(());
        }
        let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1);
        let acknowledged = connection.wait(replicas, millis, &self.slot_key).await.map_err(unavailable)?;
        if acknowledged < i64::from(replicas) {
            return Err(BackendError::Unavailable(format!(
                "redis: the write reached {acknowledged} of {replicas} replicas within {millis} ms; it is on the \
                 primary but a failover now could lose it"
            )));
        }
        Ok(())
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

/// `prefix` with a hash tag: itself when it has one (`{…}` with something inside), else wrapped in one.
fn hash_tagged(prefix: &str) -> String {
    let tagged = prefix.find('{').and_then(|open| prefix[open + 1..].find('}')).is_some_and(|len| len > 0);
    if tagged { prefix.to_owned() } else { format!("{{{prefix}}}") }
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
