//! Highly available Redis for tests: a primary with replicas watched by real `redis-sentinel` processes
//! ([`SentinelGroup`]), and a real Redis Cluster ([`RedisCluster`]). Every process is a child of the test,
//! on free loopback ports, killed on drop; `redis-cli` (from the same Debian package as the server) asks
//! them questions.

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::redis::{RedisServer, free_port, ping};

/// The name the sentinels monitor the primary under.
pub const PRIMARY_NAME: &str = "switchboard";
/// How long a group or cluster may take to form.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);
/// Sentinel's `down-after-milliseconds`: how long the primary must be silent before a failover starts.
pub const DOWN_AFTER_MS: u64 = 1000;

/// `redis-cli -p <port> <args>`: its output, trimmed (empty when it fails).
pub fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).stderr(Stdio::null()).output();
    match output {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        Ok(_) => String::new(),
        Err(error) => panic!("redis-cli does not run ({error}): run ./scripts/test, which installs it"),
    }
}

/// A primary, its replicas and the sentinels watching them.
pub struct SentinelGroup {
    /// The data servers; the first started as the primary.
    pub servers: Vec<RedisServer>,
    sentinels: Vec<(u16, Child)>,
    dir: TempDir,
}

impl SentinelGroup {
    /// Starts a primary, `replicas` replicas of it and `sentinels` sentinels (quorum: a majority), and
    /// returns once every sentinel sees every replica and the other sentinels.
    pub fn start(replicas: usize, sentinels: usize) -> Self {
        // Replicas sync at once (no diskless-sync delay), so a restarted server catches up quickly.
        let quick_sync = || vec!["--repl-diskless-sync-delay".to_owned(), "0".to_owned()];
        let primary = RedisServer::start_with(false, quick_sync());
        let primary_port = primary.port();
        let mut servers = vec![primary];
        for _ in 0..replicas {
            let replica_of = vec!["--replicaof".into(), "127.0.0.1".into(), primary_port.to_string()];
            servers.push(RedisServer::start_with(false, [quick_sync(), replica_of].concat()));
        }
        let dir = tempfile::tempdir().expect("a temp dir for the sentinels");
        let quorum = sentinels / 2 + 1;
        let mut group = Self { servers, sentinels: Vec::new(), dir };
        for index in 0..sentinels {
            let port = free_port();
            let config = group.dir.path().join(format!("sentinel-{index}.conf"));
            fs::write(
                &config,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\nsentinel monitor {PRIMARY_NAME} 127.0.0.1 {primary_port} \
                     {quorum}\nsentinel down-after-milliseconds {PRIMARY_NAME} {DOWN_AFTER_MS}\nsentinel \
                     failover-timeout {PRIMARY_NAME} 10000\nsentinel parallel-syncs {PRIMARY_NAME} 1\n",
                    dir = group.dir.path().display()
                ),
            )
            .expect("writing a sentinel config");
            let child = match Command::new("redis-sentinel")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                Ok(child) => child,
                Err(error) => panic!("redis-sentinel does not start ({error}): run ./scripts/test, which installs it"),
            };
            group.sentinels.push((port, child));
        }
        group.wait_formed(replicas, sentinels - 1);
        group
    }

    /// `redis+sentinel://127.0.0.1:<port>,…/<PRIMARY_NAME>`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|(port, _)| format!("127.0.0.1:{port}")).collect();
        format!("redis+sentinel://{}/{PRIMARY_NAME}", hosts.join(","))
    }

    /// The primary's port as the first answering sentinel names it.
    pub fn primary_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|(port, _)| {
            let answer = cli(*port, &["SENTINEL", "get-master-addr-by-name", PRIMARY_NAME]);
            answer.lines().nth(1)?.trim().parse().ok()
        })
    }

    /// The data server listening on `port`.
    pub fn server(&mut self, port: u16) -> &mut RedisServer {
        self.servers.iter_mut().find(|server| server.port() == port).expect("a server of the group")
    }

    /// Kills the current primary with SIGKILL; returns its port.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self.primary_port().expect("the sentinels name a primary");
        self.server(port).kill();
        port
    }

    /// Waits until the sentinels name a primary other than `old` that answers as one; its port.
    pub fn wait_promoted(&self, old: u16, timeout: Duration) -> Option<u16> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(port) = self.primary_port()
                && port != old
                && cli(port, &["ROLE"]).starts_with("master")
            {
                return Some(port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Waits until the sentinels see `replicas` replicas, all synced with the primary they name (after a
    /// killed server was restarted and made a replica again).
    pub fn wait_replicas(&self, replicas: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(port) = self.primary_port()
                && cli(port, &["INFO", "replication"]).matches("state=online").count() >= replicas
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn wait_formed(&self, replicas: usize, other_sentinels: usize) {
        let deadline = Instant::now() + FORM_TIMEOUT;
        loop {
            let formed = self.sentinels.iter().all(|(port, _)| {
                let info = cli(*port, &["SENTINEL", "master", PRIMARY_NAME]);
                let field = |name: &str| {
                    let lines: Vec<&str> = info.lines().collect();
                    lines.iter().position(|line| *line == name).and_then(|at| lines.get(at + 1)?.parse::<usize>().ok())
                };
                field("num-slaves") == Some(replicas) && field("num-other-sentinels") == Some(other_sentinels)
            });
            let synced = self.servers[1..]
                .iter()
                .all(|replica| cli(replica.port(), &["INFO", "replication"]).contains("master_link_status:up"));
            if formed && synced {
                return;
            }
            assert!(Instant::now() < deadline, "the sentinel group did not form within {FORM_TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for SentinelGroup {
    fn drop(&mut self) {
        for (_, child) in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A Redis Cluster, its slots split between its primaries by `redis-cli --cluster create`.
pub struct RedisCluster {
    /// The nodes.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `nodes` cluster nodes (at least 3 primaries, each with `replicas` replicas) and returns once
    /// the cluster state is ok on every one.
    pub fn start(nodes: usize, replicas: usize) -> Self {
        let nodes: Vec<RedisServer> = (0..nodes)
            .map(|_| {
                RedisServer::start_with(
                    false,
                    vec![
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-node-timeout".into(),
                        "2000".into(),
                        "--repl-diskless-sync-delay".into(),
                        "0".into(),
                    ],
                )
            })
            .collect();
        let addresses: Vec<String> = nodes.iter().map(|node| format!("127.0.0.1:{}", node.port())).collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli --cluster create runs");
        assert!(status.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + FORM_TIMEOUT;
        let ready = |node: &RedisServer| {
            let info = cli(node.port(), &["CLUSTER", "INFO"]);
            ping(node.port())
                && info.contains("cluster_state:ok")
                && info.contains(&format!("cluster_known_nodes:{}", nodes.len()))
        };
        // A primary counts once each of its replicas is online (synced), so `WAIT` can count them.
        let synced = |node: &RedisServer| {
            let replication = cli(node.port(), &["INFO", "replication"]);
            !replication.contains("role:master") || replication.matches("state=online").count() >= replicas
        };
        while !nodes.iter().all(|node| ready(node) && synced(node)) {
            assert!(Instant::now() < deadline, "the cluster did not form within {FORM_TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { nodes }
    }

    /// The port of the primary serving `key`'s slot, as the first answering node sees it.
    pub fn primary_for(&self, key: &str) -> Option<u16> {
        self.nodes.iter().filter(|node| node.is_running()).find_map(|node| {
            let slot: u16 = cli(node.port(), &["CLUSTER", "KEYSLOT", key]).parse().ok()?;
            cli(node.port(), &["CLUSTER", "NODES"]).lines().find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let primary = fields.get(2)?.contains("master") && !fields.get(2)?.contains("fail");
                let serves = fields.iter().skip(8).any(|range| match range.split_once('-') {
                    Some((from, to)) => {
                        from.parse().is_ok_and(|from: u16| from <= slot) && to.parse().is_ok_and(|to: u16| slot <= to)
                    }
                    None => range.parse::<u16>().ok() == Some(slot),
                });
                let port = fields.get(1)?.split('@').next()?.rsplit_once(':')?.1.parse().ok()?;
                (primary && serves).then_some(port)
            })
        })
    }

    /// The node listening on `port`.
    pub fn node(&mut self, port: u16) -> &mut RedisServer {
        self.nodes.iter_mut().find(|node| node.port() == port).expect("a node of the cluster")
    }

    /// `redis+cluster://127.0.0.1:<port>,…`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|node| format!("127.0.0.1:{}", node.port())).collect();
        format!("redis+cluster://{}", hosts.join(","))
    }
}
