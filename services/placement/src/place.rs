//! Host choice: which servers could take a session, in which order, and why
//! none could.
//!
//! # Rules
//!
//! A server is a candidate when, in this order of judgement:
//! 1. it is open, its agent is reachable and its DCV server healthy;
//! 2. it satisfies the `Requirements` expression (the first unmet clause of a
//!    top-level `and` is what the explanation names);
//! 3. the session type fits the host: virtual sessions (and so `DcvGlEnabled`,
//!    which validation only accepts for virtual sessions) need a Linux host,
//!    and a console session with an `AutorunFile` needs a Windows host (the
//!    guide: autorun files are supported with console sessions on Windows and
//!    virtual sessions on Linux, not with console sessions on Linux);
//! 4. it has room: no console session yet for a console session,
//!    `max_virtual_sessions` not reached for a virtual one.
//!
//! `max_concurrent_sessions_per_user` needs the owner's sessions per host,
//! which the view does not hold; the store's `AssignSession` checks it (with
//! every other limit, atomically), and a refusal moves on to the next
//! candidate. The store is the authority: two replicas placing at once never
//! oversubscribe a host. (The service's synchronous pre-check reads the
//! owner's per-host session counters from the store and passes hosts where
//! the owner is at the limit in as [`Exclusion::OwnerLimit`], so that the
//! census can name them.)
//!
//! # Strategy
//!
//! Among candidates, [`Strategy::Spread`] (the default) prefers the host with
//! the fewest sessions, then the lowest one-minute CPU load, then the smallest
//! id; [`Strategy::Pack`] prefers the host with the most sessions (filling
//! hosts before starting new ones). With `keep_scarce_hosts_free` (default on)
//! both first prefer hosts that are not scarce: a host with a GPU (reported
//! GPUs, or a `gpu` tag) or whose OS family is rare (below
//! `rare_os_percent` of the fleet) is used only when no ordinary host fits,
//! so it stays free for requests only it can serve. A request that needs a
//! GPU or the rare OS only has scarce candidates, so it is not penalised.
//!
//! Only the best [`CANDIDATES`] are ordered per round (a partial selection,
//! not a sort of the fleet).
//!
//! # Explanations
//!
//! When nothing fits, [`Census`] says why in numbers, e.g.
//! `no server matches: 12 servers; 7 rejected by tag:gpu = 'a100', 3 closed, 2 full`.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use switchboard_common::grpc::GrpcChannel;
use switchboard_proto::{
    AssignSessionRequest, CreateSessionSpec, ServerRecord, SessionRecord, SessionType, assign_session_response,
    session_store_client::SessionStoreClient,
};

use crate::{
    Error, Result,
    fleet::{Fleet, FleetView},
    requirements::Requirements,
};

/// Candidates ordered per round of assignment attempts.
pub const CANDIDATES: usize = 8;
/// Most `AssignSession` calls one decision makes before giving up.
pub const MAX_ASSIGN_ATTEMPTS: usize = 32;

/// How placement orders the hosts that fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Fewest sessions first (then lowest CPU load): spread the load.
    #[default]
    Spread,
    /// Most sessions first: fill hosts before using new ones.
    Pack,
}

/// The strategy with its scarcity settings (settings of placement, see [`crate::PlacementConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct StrategyConfig {
    /// How hosts that fit are ordered: `spread` (fewest sessions first) or `pack`.
    #[arg(long)]
    pub strategy: Strategy,
    /// Use scarce hosts (GPU, rare OS) only when no ordinary host fits.
    #[arg(long)]
    pub keep_scarce_hosts_free: bool,
    /// An OS family below this share of the fleet, in percent, is rare (at most 100).
    #[arg(long)]
    pub rare_os_percent: u8,
}

impl Default for StrategyConfig {
    fn default() -> Self {
        Self { strategy: Strategy::Spread, keep_scarce_hosts_free: true, rare_os_percent: 20 }
    }
}

/// Why a server is skipped before judging it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclusion {
    /// Creating this session there failed already.
    CreationFailed,
    /// The store refused the assignment (the reason code).
    Rejected(String),
    /// The owner already has `max_concurrent_sessions_per_user` live sessions
    /// there (seen in the store's per-host counters, before any assignment).
    OwnerLimit,
}

/// What a session asks of a host besides its `Requirements`: the rules of
/// judgement that depend on the request (not on the expression) read only
/// this, so it is also part of every cache and queue class key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKind {
    /// Console or virtual.
    pub session_type: SessionType,
    /// A console session with a non-empty `AutorunFile`: needs a Windows host.
    pub console_autorun: bool,
}

impl SessionKind {
    /// The kind of a session of `session_type` with `autorun_file` (empty: none).
    pub fn new(session_type: SessionType, autorun_file: &str) -> Self {
        Self { session_type, console_autorun: session_type == SessionType::Console && !autorun_file.is_empty() }
    }

    /// The kind of the session `spec` asks for.
    pub fn of(spec: &CreateSessionSpec) -> Self {
        Self::new(spec.r#type(), &spec.autorun_file)
    }
}

impl From<SessionType> for SessionKind {
    /// A session of this type without an `AutorunFile`.
    fn from(session_type: SessionType) -> Self {
        Self::new(session_type, "")
    }
}

/// What is being placed.
#[derive(Debug, Clone, Copy)]
pub struct PlacementRequest<'a> {
    /// Console or virtual, and whether a console session has an `AutorunFile`.
    pub kind: SessionKind,
    /// The compiled `Requirements`.
    pub requirements: &'a Requirements,
    /// Servers to skip, with why.
    pub excluded: &'a HashMap<String, Exclusion>,
}

/// The judgement of one server for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It could take the session.
    Fits,
    /// Closed for placement.
    Closed,
    /// Agent not connected.
    Unreachable,
    /// DCV server unhealthy.
    Unhealthy,
    /// Fails the requirements clause with this index.
    Clause(usize),
    /// Virtual sessions need a Linux host.
    NotLinux,
    /// Console sessions with an `AutorunFile` need a Windows host.
    NotWindows,
    /// A console session exists already.
    ConsoleTaken,
    /// `max_virtual_sessions` reached.
    Full,
}

fn os_family_is(server: &ServerRecord, family: &str) -> bool {
    server.host.as_ref().and_then(|host| host.os.as_ref()).is_some_and(|os| os.family.eq_ignore_ascii_case(family))
}

/// Whether `server` passes every rule but room (what the fleet view caches
/// per requirement class and [`SessionKind`]).
pub fn eligible(server: &ServerRecord, kind: SessionKind, requirements: &Requirements) -> bool {
    matches!(judge(server, kind, requirements), Verdict::Fits | Verdict::ConsoleTaken | Verdict::Full)
}

/// Whether an eligible `server` has room for a session of `session_type`.
fn has_room(server: &ServerRecord, session_type: SessionType) -> bool {
    match session_type {
        SessionType::Console => server.console_session_count == 0,
        _ => server.max_virtual_sessions == 0 || server.virtual_session_count < server.max_virtual_sessions,
    }
}

/// Judges `server` for a session of `kind` with `requirements`.
pub fn judge(server: &ServerRecord, kind: SessionKind, requirements: &Requirements) -> Verdict {
    if !server.open {
        return Verdict::Closed;
    }
    if !server.reachable {
        return Verdict::Unreachable;
    }
    if !server.dcv_healthy {
        return Verdict::Unhealthy;
    }
    if let Some(clause) = requirements.failing_clause(server) {
        return Verdict::Clause(clause);
    }
    match kind.session_type {
        SessionType::Console if kind.console_autorun && !os_family_is(server, "windows") => Verdict::NotWindows,
        SessionType::Console if server.console_session_count > 0 => Verdict::ConsoleTaken,
        SessionType::Console => Verdict::Fits,
        _ if !os_family_is(server, "linux") => Verdict::NotLinux,
        _ if server.max_virtual_sessions > 0 && server.virtual_session_count >= server.max_virtual_sessions => {
            Verdict::Full
        }
        _ => Verdict::Fits,
    }
}

/// Why servers were passed over, for the "nothing fits" explanation.
#[derive(Debug, Clone, Default)]
pub struct Census {
    /// Servers looked at.
    pub total: usize,
    /// Servers that could take the session (not tried, or not yet).
    pub fitting: usize,
    /// Closed for placement.
    pub closed: usize,
    /// Agent not connected.
    pub unreachable: usize,
    /// DCV server unhealthy.
    pub unhealthy: usize,
    /// Per requirements clause (index into `requirements.clauses()`), the
    /// servers it rejected.
    pub by_clause: Vec<usize>,
    /// The requirements the clauses belong to.
    pub requirements: Requirements,
    /// Not Linux, for a virtual session.
    pub not_linux: usize,
    /// Not Windows, for a console session with an `AutorunFile`.
    pub not_windows: usize,
    /// Console session exists, for a console session.
    pub console_taken: usize,
    /// `max_virtual_sessions` reached.
    pub full: usize,
    /// Skipped because creation already failed there for this session.
    pub already_failed: usize,
    /// Skipped because the owner is at the host's `max_concurrent_sessions_per_user`.
    pub owner_limit: usize,
    /// Candidates whose `AssignSession` was refused, by store reason.
    pub rejected: BTreeMap<String, usize>,
}

impl Census {
    fn count(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Fits => self.fitting += 1,
            Verdict::Closed => self.closed += 1,
            Verdict::Unreachable => self.unreachable += 1,
            Verdict::Unhealthy => self.unhealthy += 1,
            Verdict::Clause(index) => {
                if self.by_clause.len() <= index {
                    self.by_clause.resize(index + 1, 0);
                }
                self.by_clause[index] += 1;
            }
            Verdict::NotLinux => self.not_linux += 1,
            Verdict::NotWindows => self.not_windows += 1,
            Verdict::ConsoleTaken => self.console_taken += 1,
            Verdict::Full => self.full += 1,
        }
    }

    /// Every reason a server was passed over: label, count, and whether the
    /// label is a requirements clause.
    fn reasons(&self) -> Vec<(String, usize, bool)> {
        let mut reasons = Vec::new();
        let clauses = self.requirements.clauses();
        for (index, &count) in self.by_clause.iter().enumerate() {
            if count > 0 {
                let clause = clauses.get(index).map(ToString::to_string).unwrap_or_else(|| "requirements".into());
                reasons.push((clause, count, true));
            }
        }
        let fixed = [
            (self.closed, "closed"),
            (self.unreachable, "unreachable"),
            (self.unhealthy, "DCV server unhealthy"),
            (self.not_linux, "not Linux (virtual sessions need Linux)"),
            (self.not_windows, "not Windows (console sessions with an AutorunFile need Windows)"),
            (self.console_taken, "console session exists"),
            (self.full, "full"),
            (self.already_failed, "creation failed there"),
            (self.owner_limit, "at the owner's session limit"),
        ];
        let fixed = fixed.into_iter().filter(|(count, _)| *count > 0);
        reasons.extend(fixed.map(|(count, what)| (what.to_owned(), count, false)));
        let refused =
            self.rejected.iter().map(|(reason, count)| (format!("refused by the store ({reason})"), *count, false));
        reasons.extend(refused);
        if self.fitting > 0 {
            reasons.push(("not tried (attempt limit)".to_owned(), self.fitting, false));
        }
        reasons
    }

    /// Every reason a server was passed over, with its count, in the order
    /// the explanation gives them (requirements clauses by their text).
    pub fn rejections(&self) -> Vec<(String, usize)> {
        self.reasons().into_iter().map(|(reason, count, _)| (reason, count)).collect()
    }

    /// The FailureReason / StateReason when no server could take the session.
    pub fn explanation(&self) -> String {
        if self.total == 0 {
            return "no server matches: no servers are registered".into();
        }
        let noun = if self.total == 1 { "server" } else { "servers" };
        let parts: Vec<String> = self
            .reasons()
            .into_iter()
            .map(
                |(reason, count, clause)| {
                    if clause { format!("{count} rejected by {reason}") } else { format!("{count} {reason}") }
                },
            )
            .collect();
        format!("no server matches: {} {noun}; {}", self.total, parts.join(", "))
    }
}

/// Servers that may take a session, best first, and why the others may not.
#[derive(Debug, Clone, Default)]
pub struct Ranking {
    /// Ids of the best candidates, best first (at most the asked number).
    pub candidates: Vec<String>,
    /// Counts of all servers, candidates included (`census.fitting`).
    pub census: Census,
}

/// Sort key: smaller is better.
type Key = (bool, u64, u32);

fn scarce(server: &ServerRecord, rare_os: &[&str]) -> bool {
    let host = server.host.as_ref();
    let gpu = host.is_some_and(|host| !host.gpus.is_empty())
        || server.tags.iter().any(|tag| tag.key.eq_ignore_ascii_case("gpu"));
    let rare = !rare_os.is_empty()
        && host
            .and_then(|host| host.os.as_ref())
            .is_some_and(|os| rare_os.iter().any(|family| os.family.eq_ignore_ascii_case(family)));
    gpu || rare
}

fn key(server: &ServerRecord, rare_os: &[&str], config: &StrategyConfig) -> Key {
    let sessions = u64::from(server.console_session_count) + u64::from(server.virtual_session_count);
    let scarce = config.keep_scarce_hosts_free && scarce(server, rare_os);
    match config.strategy {
        Strategy::Spread => {
            let load =
                server.host.as_ref().and_then(|host| host.cpu_load_average.as_ref()).map_or(0.0, |l| l.one_minute);
            // Milli-load as an integer: NaN and negatives count as 0.
            (scarce, sessions, (load.max(0.0) * 1000.0).min(u32::MAX as f32) as u32)
        }
        Strategy::Pack => (scarce, u64::MAX - sessions, 0),
    }
}

/// Ranks the fleet for `request`: the best `limit` candidates and a census of
/// every server.
pub fn rank(fleet: &Fleet, request: &PlacementRequest<'_>, config: &StrategyConfig, limit: usize) -> Ranking {
    let servers = fleet.servers();
    let rare_os = fleet.rare_os_families(config.rare_os_percent);
    let mut census = Census { total: servers.len(), requirements: request.requirements.clone(), ..Census::default() };
    let mut fitting: Vec<(Key, u32)> = Vec::new();
    for (slot, server) in servers.iter().enumerate() {
        if let Some(exclusion) = request.excluded.get(&server.id) {
            match exclusion {
                Exclusion::CreationFailed => census.already_failed += 1,
                Exclusion::Rejected(reason) => *census.rejected.entry(reason.clone()).or_default() += 1,
                Exclusion::OwnerLimit => census.owner_limit += 1,
            }
            continue;
        }
        let verdict = judge(server, request.kind, request.requirements);
        census.count(verdict);
        if verdict == Verdict::Fits {
            fitting.push((key(server, &rare_os, config), slot as u32));
        }
    }
    Ranking { candidates: best(servers, fitting, limit), census }
}

/// The ids of the best `limit` of `fitting`, best first (a partial selection).
fn best(servers: &[ServerRecord], mut fitting: Vec<(Key, u32)>, limit: usize) -> Vec<String> {
    let order = |a: &(Key, u32), b: &(Key, u32)| {
        a.0.cmp(&b.0).then_with(|| servers[a.1 as usize].id.cmp(&servers[b.1 as usize].id))
    };
    let limit = limit.max(1);
    if fitting.len() > limit {
        fitting.select_nth_unstable_by(limit - 1, order);
        fitting.truncate(limit);
    }
    fitting.sort_unstable_by(order);
    fitting.into_iter().map(|(_, slot)| servers[slot as usize].id.clone()).collect()
}

/// The fast path of a decision: the best `limit` candidates among the servers
/// the view caches as eligible for this class (only room and exclusions are
/// checked per decision). Empty when none has room: the caller then ranks the
/// whole fleet for the census.
pub fn candidates(
    fleet: &Fleet,
    eligible: &[u32],
    request: &PlacementRequest<'_>,
    config: &StrategyConfig,
    limit: usize,
) -> Vec<String> {
    let servers = fleet.servers();
    let rare_os = fleet.rare_os_families(config.rare_os_percent);
    let fitting = eligible
        .iter()
        .filter_map(|&slot| {
            let server = servers.get(slot as usize)?;
            let fits = has_room(server, request.kind.session_type)
                && (request.excluded.is_empty() || !request.excluded.contains_key(&server.id));
            fits.then(|| (key(server, &rare_os, config), slot))
        })
        .collect();
    best(servers, fitting, limit)
}

/// Every server among `eligible` (the view's cached slots for `kind`) with
/// room for a session of `kind` now: the candidates of a request without
/// exclusions, unordered.
pub fn fitting<'a>(fleet: &'a Fleet, eligible: &'a [u32], kind: SessionKind) -> impl Iterator<Item = &'a ServerRecord> {
    let servers = fleet.servers();
    eligible
        .iter()
        .filter_map(|&slot| servers.get(slot as usize))
        .filter(move |server| has_room(server, kind.session_type))
}

/// Outcome of a placement decision.
#[derive(Debug)]
pub enum Assignment {
    /// The store assigned the session to `server_id`.
    Assigned {
        /// The chosen host.
        server_id: String,
        /// The record after assignment (substate `PENDING_PREPARATION`; boxed: records are large).
        session: Box<SessionRecord>,
    },
    /// Nothing could take it; the census says why.
    NoHost(Census),
    /// The session is no longer waiting for placement (deleted meanwhile).
    NotPlaceable,
}

/// Store rejection meaning the session itself cannot be placed any more.
const SESSION_NOT_PLACEABLE: &str = "SESSION_NOT_PLACEABLE";

/// One placement decision: ranks the in-memory fleet, reserves on the best
/// candidate that the store accepts. The view is synced (incrementally) once
/// before concluding that nothing fits, and once after a round whose
/// candidates were all refused (the view was stale).
pub async fn place(
    store: &mut SessionStoreClient<GrpcChannel>,
    fleet: &FleetView,
    session_id: &str,
    request: &PlacementRequest<'_>,
    config: &StrategyConfig,
) -> Result<Assignment> {
    let mut excluded = request.excluded.clone();
    let mut synced = false;
    let mut attempts = 0;
    loop {
        let round = PlacementRequest { excluded: &excluded, ..*request };
        let fast = fleet.read(|view| {
            let eligible = fleet.eligible(view, request.kind, request.requirements);
            candidates(view, &eligible, &round, config, CANDIDATES)
        });
        let ranking = match fast.is_empty() || attempts >= MAX_ASSIGN_ATTEMPTS {
            // The slow path: the whole fleet, for the census.
            true => fleet.read(|view| rank(view, &round, config, CANDIDATES)),
            false => Ranking { candidates: fast, census: Census::default() },
        };
        if ranking.candidates.is_empty() || attempts >= MAX_ASSIGN_ATTEMPTS {
            if !synced && attempts < MAX_ASSIGN_ATTEMPTS {
                synced = true;
                fleet.sync().await?;
                continue;
            }
            return Ok(Assignment::NoHost(ranking.census));
        }
        for server_id in ranking.candidates {
            if attempts >= MAX_ASSIGN_ATTEMPTS {
                break;
            }
            attempts += 1;
            let assign = AssignSessionRequest { session_id: session_id.to_owned(), server_id: server_id.clone() };
            let response = store.assign_session(assign).await.map_err(Error::Store)?.into_inner();
            match response.outcome {
                Some(assign_session_response::Outcome::Session(session)) => {
                    fleet.note_assigned(&server_id, request.kind.session_type);
                    return Ok(Assignment::Assigned { server_id, session: Box::new(session) });
                }
                Some(assign_session_response::Outcome::Rejected(reason)) if reason == SESSION_NOT_PLACEABLE => {
                    return Ok(Assignment::NotPlaceable);
                }
                Some(assign_session_response::Outcome::Rejected(reason)) => {
                    tracing::debug!(session_id, %server_id, %reason, "assignment refused");
                    excluded.insert(server_id, Exclusion::Rejected(reason));
                }
                None => return Err(Error::Protocol("AssignSession answered without an outcome".into())),
            }
        }
        if !synced {
            synced = true;
            fleet.sync().await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use switchboard_proto::{CpuLoadAverage, Gpu, HostInfo, KeyValue, Os};

    use super::*;

    fn host(family: &str) -> Option<HostInfo> {
        Some(HostInfo { os: Some(Os { family: family.into(), ..Default::default() }), ..Default::default() })
    }

    fn server(id: &str, load: u32) -> ServerRecord {
        ServerRecord {
            id: id.into(),
            open: true,
            reachable: true,
            dcv_healthy: true,
            virtual_session_count: load,
            host: host("linux"),
            tags: vec![KeyValue { key: "os".into(), value: "linux".into() }],
            ..Default::default()
        }
    }

    fn ranked(
        servers: Vec<ServerRecord>,
        kind: impl Into<SessionKind>,
        text: &str,
        config: &StrategyConfig,
    ) -> Ranking {
        let requirements = Requirements::parse(text).unwrap();
        let excluded = HashMap::new();
        let request = PlacementRequest { kind: kind.into(), requirements: &requirements, excluded: &excluded };
        rank(&Fleet::from_servers(servers), &request, config, 100)
    }

    fn spread() -> StrategyConfig {
        StrategyConfig::default()
    }

    #[test]
    fn spread_orders_by_sessions_then_cpu_load_then_id_and_counts_the_rest() {
        let mut busy_cpu = server("b2", 1);
        busy_cpu.host.as_mut().unwrap().cpu_load_average =
            Some(CpuLoadAverage { one_minute: 3.0, ..Default::default() });
        let servers = vec![
            server("c", 2),
            busy_cpu,
            server("b", 1),
            server("a", 1),
            ServerRecord { open: false, ..server("closed", 0) },
            ServerRecord { reachable: false, ..server("gone", 0) },
            ServerRecord { dcv_healthy: false, ..server("sick", 0) },
            ServerRecord { tags: vec![], ..server("untagged", 0) },
            ServerRecord { max_virtual_sessions: 3, ..server("full", 3) },
            ServerRecord { host: host("windows"), ..server("win", 0) },
        ];
        let ranking = ranked(
            servers,
            SessionType::Virtual,
            "tag:os = 'linux'",
            &StrategyConfig { keep_scarce_hosts_free: false, ..spread() },
        );
        assert_eq!(ranking.candidates, ["a", "b", "b2", "c"]);
        let census = &ranking.census;
        assert_eq!(
            (census.total, census.fitting, census.closed, census.unreachable, census.unhealthy, census.full),
            (10, 4, 1, 1, 1, 1)
        );
        assert_eq!((census.by_clause.as_slice(), census.not_linux), ([1].as_slice(), 1));
    }

    #[test]
    fn pack_fills_the_busiest_host_that_has_room() {
        let servers = vec![server("a", 0), server("b", 2), ServerRecord { max_virtual_sessions: 3, ..server("c", 3) }];
        let pack = StrategyConfig { strategy: Strategy::Pack, ..spread() };
        assert_eq!(ranked(servers, SessionType::Virtual, "", &pack).candidates, ["b", "a"]);
    }

    #[test]
    fn one_console_session_per_host_and_virtual_sessions_on_linux_only() {
        let servers = vec![
            ServerRecord { console_session_count: 1, ..server("linux-console-taken", 0) },
            ServerRecord { host: host("windows"), ..server("windows", 0) },
            ServerRecord { host: None, ..server("unknown-os", 0) },
        ];
        let console = ranked(servers.clone(), SessionType::Console, "", &spread());
        assert_eq!(console.candidates, ["unknown-os", "windows"], "consoles run anywhere, one per host");
        assert_eq!(console.census.console_taken, 1);
        let virtual_ = ranked(servers, SessionType::Virtual, "", &spread());
        assert_eq!(virtual_.candidates, ["linux-console-taken"], "virtual sessions need Linux");
        assert_eq!(virtual_.census.not_linux, 2);
        assert!(virtual_.census.explanation().contains("2 not Linux"));
    }

    #[test]
    fn a_console_session_with_an_autorun_file_needs_windows() {
        let servers = vec![
            server("linux", 0),
            ServerRecord { host: host("Windows"), ..server("windows", 0) },
            ServerRecord { host: host("windows"), console_session_count: 1, ..server("windows-taken", 0) },
            ServerRecord { host: None, ..server("unknown-os", 0) },
        ];
        let autorun = SessionKind::new(SessionType::Console, "app.exe");
        assert!(autorun.console_autorun);
        let ranking = ranked(servers.clone(), autorun, "", &spread());
        assert_eq!(ranking.candidates, ["windows"], "only a Windows host with its console free");
        assert_eq!((ranking.census.not_windows, ranking.census.console_taken), (2, 1));
        let plain = ranked(servers.clone(), SessionType::Console, "", &spread());
        assert_eq!(plain.candidates.len(), 3, "without an AutorunFile any OS will do: {:?}", plain.candidates);
        assert_eq!(plain.census.not_windows, 0);
        let refused = ranked(servers[..1].to_vec(), autorun, "", &spread());
        assert_eq!(
            refused.census.explanation(),
            "no server matches: 1 server; 1 not Windows (console sessions with an AutorunFile need Windows)"
        );
        // The rule is about console sessions: a virtual session's AutorunFile
        // still needs Linux, not Windows.
        let virtual_autorun = SessionKind::new(SessionType::Virtual, "app.sh");
        assert!(!virtual_autorun.console_autorun);
        assert_eq!(ranked(servers, virtual_autorun, "", &spread()).candidates, ["linux"]);
    }

    #[tokio::test]
    async fn the_eligibility_cache_keeps_console_autorun_apart_from_plain_console() {
        let view = FleetView::new(switchboard_proto::session_store_client::SessionStoreClient::new(
            switchboard_common::grpc::lazy_channel("http://127.0.0.1:1").unwrap(),
        ));
        let fleet =
            Fleet::from_servers([server("linux", 0), ServerRecord { host: host("windows"), ..server("win", 0) }]);
        let all = Requirements::default();
        let plain = view.eligible(&fleet, SessionType::Console.into(), &all);
        assert_eq!(plain.len(), 2);
        let autorun = view.eligible(&fleet, SessionKind::new(SessionType::Console, "app.exe"), &all);
        let ids: Vec<&str> = autorun.iter().map(|&slot| fleet.servers()[slot as usize].id.as_str()).collect();
        assert_eq!(ids, ["win"], "a cached plain-console answer must not serve an autorun request");
        assert_eq!(view.eligible(&fleet, SessionType::Console.into(), &all).len(), 2, "and the other way round");
    }

    #[test]
    fn scarce_hosts_are_used_last_unless_only_they_fit() {
        let mut gpu = server("gpu", 0);
        gpu.host.as_mut().unwrap().gpus.push(Gpu { vendor: "NVIDIA".into(), model_name: "A100".into() });
        gpu.tags.push(KeyValue { key: "accel".into(), value: "a100".into() });
        let mut windows: Vec<ServerRecord> = (0..9).map(|i| server(&format!("l{i}"), 5)).collect();
        windows.push(ServerRecord { host: host("windows"), ..server("win", 0) });
        windows.push(gpu);
        let ranking = ranked(windows.clone(), SessionType::Console, "", &spread());
        assert_eq!(ranking.candidates.last().map(String::as_str), Some("win"), "rare OS (1 of 11) after busy hosts");
        assert_eq!(ranking.candidates[ranking.candidates.len() - 2], "gpu", "GPU host after busy hosts");
        let only_gpu = ranked(windows.clone(), SessionType::Virtual, "tag:accel = 'a100'", &spread());
        assert_eq!(only_gpu.candidates, ["gpu"], "a GPU request still gets the GPU host");
        let plain = StrategyConfig { keep_scarce_hosts_free: false, ..spread() };
        assert_eq!(ranked(windows, SessionType::Console, "", &plain).candidates[..2], ["gpu", "win"]);
    }

    #[test]
    fn ranking_returns_only_the_best_few() {
        let servers: Vec<ServerRecord> = (0..50).map(|i| server(&format!("s{i:02}"), 50 - i)).collect();
        let requirements = Requirements::default();
        let excluded = HashMap::from([("s49".to_owned(), Exclusion::CreationFailed)]);
        let request =
            PlacementRequest { kind: SessionType::Virtual.into(), requirements: &requirements, excluded: &excluded };
        let ranking = rank(&Fleet::from_servers(servers), &request, &spread(), 3);
        assert_eq!(ranking.candidates, ["s48", "s47", "s46"]);
        assert_eq!((ranking.census.fitting, ranking.census.already_failed), (49, 1));
    }

    #[tokio::test]
    async fn the_cached_fast_path_agrees_with_the_full_ranking() {
        let mut servers = Vec::new();
        for i in 0..60u32 {
            let mut s = server(&format!("s{i:02}"), i % 5);
            s.max_virtual_sessions = 4;
            s.open = i % 7 != 0;
            s.console_session_count = u32::from(i % 3 == 0);
            if i % 4 == 0 {
                s.tags = vec![KeyValue { key: "os".into(), value: "windows".into() }];
            }
            if i % 11 == 0 {
                s.host = host("windows");
            }
            servers.push(s);
        }
        let view = FleetView::new(switchboard_proto::session_store_client::SessionStoreClient::new(
            switchboard_common::grpc::lazy_channel("http://127.0.0.1:1").unwrap(),
        ));
        let fleet = Fleet::from_servers(servers);
        let excluded = HashMap::from([("s01".to_owned(), Exclusion::CreationFailed)]);
        for text in ["", "tag:os = 'linux'", "not tag:os = 'linux'"] {
            let requirements = Requirements::parse(text).unwrap();
            let kinds = [
                SessionKind::from(SessionType::Virtual),
                SessionKind::from(SessionType::Console),
                SessionKind::new(SessionType::Console, "app.exe"),
            ];
            for kind in kinds {
                let request = PlacementRequest { kind, requirements: &requirements, excluded: &excluded };
                let eligible = view.eligible(&fleet, kind, &requirements);
                let fast = candidates(&fleet, &eligible, &request, &spread(), 5);
                assert_eq!(fast, rank(&fleet, &request, &spread(), 5).candidates, "{text:?} {kind:?}");
                let mut all: Vec<&str> = fitting(&fleet, &eligible, kind).map(|s| s.id.as_str()).collect();
                all.sort_unstable();
                let none = HashMap::new();
                let unexcluded = PlacementRequest { excluded: &none, ..request };
                let mut ranked = rank(&fleet, &unexcluded, &spread(), usize::MAX).candidates;
                ranked.sort_unstable();
                assert_eq!(all, ranked, "fitting is every candidate: {text:?} {kind:?}");
            }
        }
    }

    #[tokio::test]
    async fn eligibility_is_recomputed_when_a_server_changes_but_not_for_counts() {
        let view = FleetView::new(switchboard_proto::session_store_client::SessionStoreClient::new(
            switchboard_common::grpc::lazy_channel("http://127.0.0.1:1").unwrap(),
        ));
        let mut fleet = Fleet::from_servers([server("a", 0), server("b", 0)]);
        let all = Requirements::default();
        assert_eq!(view.eligible(&fleet, SessionType::Virtual.into(), &all).len(), 2);
        let epoch = fleet.static_epoch();
        fleet.upsert(server("a", 3));
        assert_eq!(fleet.static_epoch(), epoch, "a count change keeps the cache");
        fleet.upsert(ServerRecord { open: false, ..server("a", 3) });
        assert_ne!(fleet.static_epoch(), epoch);
        assert_eq!(*view.eligible(&fleet, SessionType::Virtual.into(), &all), [1], "closing a server is seen");
    }

    #[test]
    fn explanations_keep_numbers_honest() {
        assert_eq!(Census::default().explanation(), "no server matches: no servers are registered");
        let mut servers: Vec<ServerRecord> = (0..7).map(|i| server(&format!("t{i}"), 0)).collect();
        servers.extend((0..3).map(|i| ServerRecord { open: false, ..server(&format!("c{i}"), 0) }));
        servers.extend((0..2).map(|i| ServerRecord { max_virtual_sessions: 1, ..server(&format!("f{i}"), 1) }));
        for server in servers.iter_mut().skip(7) {
            server.tags.push(KeyValue { key: "gpu".into(), value: "a100".into() });
        }
        let ranking = ranked(servers, SessionType::Virtual, "tag:os = 'linux' and tag:gpu = 'a100'", &spread());
        assert_eq!(
            ranking.census.explanation(),
            "no server matches: 12 servers; 7 rejected by tag:gpu = 'a100', 3 closed, 2 full"
        );
        let census = Census {
            total: 3,
            closed: 1,
            full: 1,
            rejected: BTreeMap::from([("USER_SESSION_LIMIT".to_owned(), 1)]),
            ..Default::default()
        };
        assert_eq!(
            census.explanation(),
            "no server matches: 3 servers; 1 closed, 1 full, 1 refused by the store (USER_SESSION_LIMIT)"
        );
        let servers = vec![server("a", 0), server("b", 0), ServerRecord { open: false, ..server("c", 0) }];
        let requirements = Requirements::default();
        let excluded =
            HashMap::from([("a".to_owned(), Exclusion::OwnerLimit), ("b".to_owned(), Exclusion::OwnerLimit)]);
        let request =
            PlacementRequest { kind: SessionType::Virtual.into(), requirements: &requirements, excluded: &excluded };
        let ranking = rank(&Fleet::from_servers(servers), &request, &spread(), 1);
        assert!(ranking.candidates.is_empty());
        assert_eq!(
            ranking.census.explanation(),
            "no server matches: 3 servers; 1 closed, 2 at the owner's session limit"
        );
    }
}
