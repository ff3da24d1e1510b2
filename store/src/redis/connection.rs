//! The connection to Redis, by topology: one server, a primary found through Sentinel, or a Redis Cluster.
//!
//! The URL's scheme chooses ([`Topology::parse`]):
//!
//! | scheme | topology |
//! | --- | --- |
//! | `redis://`, `rediss://` | one server (optionally with replicas failed over by hand or by DNS) |
//! | `redis+sentinel://`, `rediss+sentinel://` | the primary the sentinels name; followed on failover |
//! | `redis+cluster://`, `rediss+cluster://` | a Redis Cluster; every key shares one slot (a hash tag) |
//!
//! Every topology is a [`Connection`], which the backend uses as one `ConnectionLike`: scripts, commands
//! and pipelines do not know which it is.

use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, ServerErrorKind, TlsMode, Value};

/// Longest wait for a TCP (and TLS) connection to Redis.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for any one reply; a stuck Redis counts as unavailable.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnect attempts per outage detection before a call gives up.
const RECONNECT_RETRIES: usize = 3;
/// Longest pause between reconnect attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// How often the sentinels are asked which server is the primary, besides right after a failed call.
const SENTINEL_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Least time between two lookups caused by failed calls.
const MIN_LOOKUP_INTERVAL: Duration = Duration::from_millis(200);
/// The sentinels' port when a URL gives none.
const SENTINEL_PORT: u16 = 26379;

/// Where the data lives, from the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Topology {
    /// One server: the URL as given.
    Standalone(String),
    /// The primary the sentinels know as `master`.
    Sentinel {
        /// `redis://host:port` (or `rediss://`) of every sentinel.
        sentinels: Vec<String>,
        /// The name the sentinels monitor the primary under.
        master: String,
        /// Database, user and password of the data servers (not of the sentinels).
        db: i64,
        username: Option<String>,
        password: Option<String>,
        tls: bool,
    },
    /// A Redis Cluster: `redis://[user:password@]host:port` (or `rediss://`) of its seed nodes.
    Cluster(Vec<String>),
}

impl Topology {
    /// The topology a `redis_url` names (see the module doc); the error says what is wrong with it.
    pub(super) fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) =
            url.split_once("://").ok_or("no scheme (redis://, redis+sentinel://, redis+cluster://)")?;
        let (base, kind) = match scheme {
            "redis" | "rediss" => return Ok(Self::Standalone(url.to_owned())),
            "redis+sentinel" => ("redis", "sentinel"),
            "rediss+sentinel" => ("rediss", "sentinel"),
            "redis+cluster" => ("redis", "cluster"),
            "rediss+cluster" => ("rediss", "cluster"),
            other => return Err(format!("unknown scheme {other}://")),
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (credentials, hosts) = match authority.rsplit_once('@') {
            Some((credentials, hosts)) => (Some(credentials), hosts),
            None => (None, authority),
        };
        let hosts: Vec<&str> = hosts.split(',').map(str::trim).filter(|host| !host.is_empty()).collect();
        if hosts.is_empty() {
            return Err("no host".into());
        }
        let (username, password) = match credentials {
            None => (None, None),
            Some(credentials) => match credentials.split_once(':') {
                Some((user, password)) => ((!user.is_empty()).then(|| user.to_owned()), Some(password.to_owned())),
                None => (Some(credentials.to_owned()), None),
            },
        };
        if kind == "cluster" {
            if !path.is_empty() {
                return Err("a Redis Cluster has one database: no path after the hosts".into());
            }
            let prefix = credentials.map(|credentials| format!("{credentials}@")).unwrap_or_default();
            return Ok(Self::Cluster(hosts.iter().map(|host| format!("{base}://{prefix}{host}")).collect()));
        }
        let mut parts = path.split('/').filter(|part| !part.is_empty());
        let master = parts.next().ok_or("no primary name: redis+sentinel://host:26379,…/<name>[/<db>]")?.to_owned();
        let db = match parts.next() {
            Some(db) => db.parse().map_err(|_| format!("database {db:?} is not a number"))?,
            None => 0,
        };
        if parts.next().is_some() {
            return Err("too many path segments: redis+sentinel://host:26379,…/<name>[/<db>]".into());
        }
        let sentinels = hosts
            .iter()
            .map(|host| {
                if host.contains(':') { format!("{base}://{host}") } else { format!("{base}://{host}:{SENTINEL_PORT}") }
            })
            .collect();
        Ok(Self::Sentinel { sentinels, master, db, username, password, tls: base == "rediss" })
    }

    /// Whether every key must carry a hash tag (one slot for every script's keys).
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// Opens two connections (the backend's shared one, and one for must-not-lose writes, whose `WAIT`
    /// blocks the connection it is sent on), waiting for them so a wrong address fails here. With Sentinel
    /// both follow the primary together.
    pub(super) async fn connect(&self) -> RedisResult<[Connection; 2]> {
        match self {
            Self::Standalone(url) => {
                let client = redis::Client::open(url.as_str())?;
                Ok([Connection::Direct(manager(client.clone()).await?), Connection::Direct(manager(client).await?)])
            }
            Self::Sentinel { sentinels, master, db, username, password, tls } => {
                let mut info = redis::RedisConnectionInfo::default().set_db(*db);
                if let Some(username) = username {
                    info = info.set_username(username);
                }
                if let Some(password) = password {
                    info = info.set_password(password);
                }
                let mut node = SentinelNodeConnectionInfo::default().set_redis_connection_info(info);
                if *tls {
                    node = node.set_tls_mode(TlsMode::Secure);
                }
                let client =
                    SentinelClient::build(sentinels.clone(), master.clone(), Some(node), SentinelServerType::Master)?;
                let link = SentinelLink::connect(client).await?;
                Ok([0, 1].map(|index| Connection::Sentinel(link.clone(), index)))
            }
            Self::Cluster(nodes) => {
                let client = redis::cluster::ClusterClient::builder(nodes.clone())
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .retries(RECONNECT_RETRIES as u32)
                    .build()?;
                Ok([
                    Connection::Cluster(client.get_async_connection().await?),
                    Connection::Cluster(client.get_async_connection().await?),
                ])
            }
        }
    }
}

/// A reconnecting connection to one server.
async fn manager(client: redis::Client) -> RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(RECONNECT_RETRIES)
        .set_max_delay(MAX_RECONNECT_DELAY);
    ConnectionManager::new_with_config(client, config).await
}

/// A connection of any topology; clones share it.
#[derive(Clone)]
pub(super) enum Connection {
    /// One server, reconnected on loss.
    Direct(ConnectionManager),
    /// One of the link's connections to the current primary, replaced when the sentinels name another.
    Sentinel(Arc<SentinelLink>, usize),
    /// A cluster, following its slot map and failovers itself.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Direct(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
            Self::Sentinel(link, index) => {
                let (link, index) = (link.clone(), *index);
                Box::pin(async move {
                    link.call(index, |mut connection| async move { connection.req_packed_command(cmd).await }).await
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Direct(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Sentinel(link, index) => {
                let (link, index) = (link.clone(), *index);
                Box::pin(async move {
                    link.call(index, |mut connection| async move {
                        connection.req_packed_commands(pipeline, offset, count).await
                    })
                    .await
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Direct(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
            Self::Sentinel(link, index) => link.connection(*index).1.get_db(),
        }
    }
}

impl Connection {
    /// `WAIT replicas millis` where the writes went: on a Cluster, the primary of `slot_key`'s slot.
    pub(super) async fn wait(&mut self, replicas: u32, millis: u64, slot_key: &str) -> RedisResult<i64> {
        let mut command = redis::cmd("WAIT");
        command.arg(replicas).arg(millis);
        match self {
            Self::Cluster(connection) => {
                use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
                let route = Route::with_key(slot_key, SlotAddr::Master);
                let value = connection
                    .route_command(command, RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)))
                    .await?;
                Ok(redis::from_redis_value(value)?)
            }
            _ => command.query_async(self).await,
        }
    }
}

/// The primary the sentinels name, followed: asked every [`SENTINEL_CHECK_INTERVAL`] and right after a call
/// fails in a way a failover explains (a lost connection, a `READONLY` demoted primary).
pub(super) struct SentinelLink {
    sentinel: tokio::sync::Mutex<(SentinelClient, Option<Instant>)>,
    /// The primary's address and the link's connections to it.
    current: RwLock<(String, [ConnectionManager; 2])>,
}

impl SentinelLink {
    async fn connect(mut sentinel: SentinelClient) -> RedisResult<Arc<Self>> {
        let client = sentinel.async_get_client().await?;
        let address = client.get_connection_info().addr().to_string();
        let connections = [manager(client.clone()).await?, manager(client).await?];
        tracing::info!(primary = %address, "redis: connected to the primary the sentinels name");
        let link = Arc::new(Self {
            sentinel: tokio::sync::Mutex::new((sentinel, Some(Instant::now()))),
            current: RwLock::new((address, connections)),
        });
        tokio::spawn(watch(Arc::downgrade(&link)));
        Ok(link)
    }

    /// The primary's address and connection `index` to it.
    fn connection(&self, index: usize) -> (String, ConnectionManager) {
        let current = self.current.read().expect("not poisoned");
        (current.0.clone(), current.1[index].clone())
    }

    fn address(&self) -> String {
        self.current.read().expect("not poisoned").0.clone()
    }

    /// Runs `call` on the current primary. After a failure a failover explains, asks the sentinels again;
    /// a `READONLY` refusal (nothing was written) is tried once more on the primary they name.
    async fn call<T, F, Fut>(&self, index: usize, call: F) -> RedisResult<T>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let (address, connection) = self.connection(index);
        let error = match call(connection).await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if !failover_sign(&error) {
            return Err(error);
        }
        let moved = self.follow(false).await.is_some_and(|now| now != address);
        if moved && error.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly) {
            return call(self.connection(index).1).await;
        }
        Err(error)
    }

    /// Asks the sentinels for the primary and switches to it when it moved; returns its address, or `None`
    /// when the sentinels did not answer (or were asked a moment ago and `always` is false).
    async fn follow(&self, always: bool) -> Option<String> {
        let mut guard = self.sentinel.lock().await;
        let (sentinel, last) = &mut *guard;
        if !always && last.is_some_and(|at| at.elapsed() < MIN_LOOKUP_INTERVAL) {
            return Some(self.address());
        }
        *last = Some(Instant::now());
        let client = match sentinel.async_get_client().await {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(%error, "redis: no sentinel named a primary");
                return None;
            }
        };
        let address = client.get_connection_info().addr().to_string();
        if address == self.address() {
            return Some(address);
        }
        let connections = match manager(client.clone()).await {
            Ok(first) => manager(client).await.map(|second| [first, second]),
            Err(error) => Err(error),
        };
        match connections {
            Ok(connections) => {
                let previous = std::mem::replace(
                    &mut *self.current.write().expect("not poisoned"),
                    (address.clone(), connections),
                );
                tracing::warn!(from = %previous.0, to = %address, "redis: the sentinels named a new primary");
                Some(address)
            }
            Err(error) => {
                tracing::warn!(primary = %address, %error, "redis: the new primary does not answer yet");
                None
            }
        }
    }
}

/// Asks the sentinels every [`SENTINEL_CHECK_INTERVAL`] while the link is in use.
async fn watch(link: Weak<SentinelLink>) {
    loop {
        tokio::time::sleep(SENTINEL_CHECK_INTERVAL).await;
        let Some(link) = link.upgrade() else { return };
        link.follow(true).await;
    }
}

/// Whether `error` is what a failover looks like from a client: the primary gone, or demoted.
fn failover_sign(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_refusal()
        || error.is_connection_dropped()
        || error.is_timeout()
        || matches!(error.kind(), ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_chooses_the_topology() {
        assert_eq!(
            Topology::parse("redis://:pw@r:6379/2").unwrap(),
            Topology::Standalone("redis://:pw@r:6379/2".into())
        );
        assert_eq!(
            Topology::parse("rediss+sentinel://user:pw@s1,s2:26380/mymaster/3").unwrap(),
            Topology::Sentinel {
                sentinels: vec!["rediss://s1:26379".into(), "rediss://s2:26380".into()],
                master: "mymaster".into(),
                db: 3,
                username: Some("user".into()),
                password: Some("pw".into()),
                tls: true,
            }
        );
        assert_eq!(
            Topology::parse("redis+cluster://:pw@n1:7000,n2:7001").unwrap(),
            Topology::Cluster(vec!["redis://:pw@n1:7000".into(), "redis://:pw@n2:7001".into()])
        );
        for bad in [
            "r:6379",
            "memcached://x",
            "redis+sentinel://s1",
            "redis+sentinel://s1/m/x",
            "redis+sentinel:///m",
            "redis+cluster://n1/0",
            "redis+sentinel://s1/m/1/2",
        ] {
            assert!(Topology::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
