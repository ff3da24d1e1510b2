//! Host choice: which servers could take a session, in which order, and why
//! none could.
//!
//! Candidates are servers that are open, reachable, DCV-healthy, match the
//! requirements and are not visibly full, ordered by load (console + virtual
//! sessions, ascending; then id, so the order is stable). The store's
//! `AssignSession` is the authority: it re-checks every limit atomically, so
//! two replicas placing at once never oversubscribe a host; a rejection just
//! moves on to the next candidate. When nothing fits, [`Census`] explains why
//! with honest counts, e.g. `no server can host the session: 3 servers; 1
//! closed, 2 full`.

use std::collections::{BTreeMap, HashSet};

use switchboard_proto::{
    AssignSessionRequest, ListServersRequest, ServerRecord, SessionRecord, SessionType, assign_session_response,
    session_store_client::SessionStoreClient,
};
use tonic::transport::Channel;

use crate::{Error, Result, requirements::Requirements};

/// Page size used when listing servers.
const SERVER_PAGE_SIZE: u32 = 1000;

/// Every server the store knows, read page by page.
pub async fn list_all_servers(store: &mut SessionStoreClient<Channel>) -> Result<Vec<ServerRecord>> {
    let mut servers = Vec::new();
    let mut after_id = String::new();
    loop {
        let page = store
            .list_servers(ListServersRequest { page_size: SERVER_PAGE_SIZE, after_id, ..Default::default() })
            .await
            .map_err(Error::Store)?
            .into_inner();
        servers.extend(page.servers);
        if page.last_id.is_empty() {
            return Ok(servers);
        }
        after_id = page.last_id;
    }
}

/// Why servers were passed over, for the "nothing fits" explanation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    /// Servers looked at.
    pub total: usize,
    /// Closed for placement.
    pub closed: usize,
    /// Agent not connected.
    pub unreachable: usize,
    /// DCV server unhealthy.
    pub unhealthy: usize,
    /// Tags do not match the requirements.
    pub not_matching: usize,
    /// Visibly at a limit (console taken, virtual limit reached).
    pub full: usize,
    /// Skipped because creation already failed there for this session.
    pub already_failed: usize,
    /// Candidates whose `AssignSession` was rejected, by store reason.
    pub rejected: BTreeMap<String, usize>,
}

impl Census {
    /// The FailureReason when no server could take the session.
    pub fn explanation(&self) -> String {
        if self.total == 0 {
            return "no server can host the session: no servers are registered".into();
        }
        let mut parts = Vec::new();
        let mut push = |count: usize, what: &str| {
            if count > 0 {
                parts.push(format!("{count} {what}"));
            }
        };
        push(self.closed, "closed");
        push(self.unreachable, "unreachable");
        push(self.unhealthy, "with an unhealthy DCV server");
        push(self.not_matching, "not matching the requirements");
        push(self.full, "full");
        push(self.already_failed, "already failed to create it");
        for (reason, count) in &self.rejected {
            parts.push(format!("{count} rejected it ({reason})"));
        }
        let noun = if self.total == 1 { "server" } else { "servers" };
        format!("no server can host the session: {} {noun}; {}", self.total, parts.join(", "))
    }
}

/// Servers that may take a session, best first, and why the others may not.
#[derive(Debug, Clone, Default)]
pub struct Ranking {
    /// Candidates, least loaded first.
    pub candidates: Vec<ServerRecord>,
    /// Counts of the servers passed over.
    pub census: Census,
}

/// Ranks `servers` for a session of `session_type` with `requirements`,
/// skipping the servers in `excluded` (where creation already failed).
pub fn rank(
    servers: &[ServerRecord],
    session_type: SessionType,
    requirements: &Requirements,
    excluded: &HashSet<String>,
) -> Ranking {
    let mut ranking = Ranking::default();
    let census = &mut ranking.census;
    census.total = servers.len();
    for server in servers {
        if excluded.contains(&server.id) {
            census.already_failed += 1;
        } else if !server.open {
            census.closed += 1;
        } else if !server.reachable {
            census.unreachable += 1;
        } else if !server.dcv_healthy {
            census.unhealthy += 1;
        } else if !requirements.matches(server) {
            census.not_matching += 1;
        } else if visibly_full(server, session_type) {
            census.full += 1;
        } else {
            ranking.candidates.push(server.clone());
        }
    }
    ranking.candidates.sort_by(|a, b| load(a).cmp(&load(b)).then_with(|| a.id.cmp(&b.id)));
    ranking
}

fn load(server: &ServerRecord) -> u64 {
    u64::from(server.console_session_count) + u64::from(server.virtual_session_count)
}

/// Limits readable from the record itself; the per-owner limit needs the
/// session list and is left to `AssignSession`.
fn visibly_full(server: &ServerRecord, session_type: SessionType) -> bool {
    match session_type {
        SessionType::Console => server.console_session_count > 0,
        _ => server.max_virtual_sessions > 0 && server.virtual_session_count >= server.max_virtual_sessions,
    }
}

/// Outcome of trying the candidates in order.
#[derive(Debug)]
pub enum Assignment {
    /// The store assigned the session to `server`; `session` is the updated record.
    Assigned {
        /// The chosen host (boxed: records are large).
        server: Box<ServerRecord>,
        /// The record after assignment (substate `PENDING_PREPARATION`).
        session: Box<SessionRecord>,
    },
    /// Every candidate refused; the census says why.
    NoHost(Census),
    /// The session is no longer waiting for placement (deleted meanwhile).
    NotPlaceable,
}

/// Store rejection meaning the session itself cannot be placed any more.
const SESSION_NOT_PLACEABLE: &str = "SESSION_NOT_PLACEABLE";

/// Tries `AssignSession` on each candidate in order until one accepts.
pub async fn assign(store: &mut SessionStoreClient<Channel>, session_id: &str, ranking: Ranking) -> Result<Assignment> {
    let Ranking { candidates, mut census } = ranking;
    for server in candidates {
        let request = AssignSessionRequest { session_id: session_id.to_owned(), server_id: server.id.clone() };
        let response = store.assign_session(request).await.map_err(Error::Store)?.into_inner();
        match response.outcome {
            Some(assign_session_response::Outcome::Session(session)) => {
                return Ok(Assignment::Assigned { server: Box::new(server), session: Box::new(session) });
            }
            Some(assign_session_response::Outcome::Rejected(reason)) if reason == SESSION_NOT_PLACEABLE => {
                return Ok(Assignment::NotPlaceable);
            }
            Some(assign_session_response::Outcome::Rejected(reason)) => {
                tracing::debug!(session_id, server_id = %server.id, %reason, "assignment rejected");
                *census.rejected.entry(reason).or_default() += 1;
            }
            None => return Err(Error::Protocol("AssignSession answered without an outcome".into())),
        }
    }
    Ok(Assignment::NoHost(census))
}

#[cfg(test)]
mod tests {
    use switchboard_proto::KeyValue;

    use super::*;

    fn server(id: &str, load: u32) -> ServerRecord {
        ServerRecord {
            id: id.into(),
            open: true,
            reachable: true,
            dcv_healthy: true,
            virtual_session_count: load,
            tags: vec![KeyValue { key: "os".into(), value: "linux".into() }],
            ..Default::default()
        }
    }

    #[test]
    fn orders_by_load_then_id_and_counts_the_rest() {
        let servers = vec![
            server("c", 2),
            server("b", 1),
            server("a", 1),
            ServerRecord { open: false, ..server("closed", 0) },
            ServerRecord { reachable: false, ..server("gone", 0) },
            ServerRecord { dcv_healthy: false, ..server("sick", 0) },
            ServerRecord { tags: vec![], ..server("untagged", 0) },
            ServerRecord { max_virtual_sessions: 3, ..server("full", 3) },
            server("failed-before", 0),
        ];
        let requirements = Requirements::parse("os = 'linux'").unwrap();
        let excluded = HashSet::from(["failed-before".to_owned()]);
        let ranking = rank(&servers, SessionType::Virtual, &requirements, &excluded);
        let ids: Vec<_> = ranking.candidates.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        let census = ranking.census;
        assert_eq!(
            (census.total, census.closed, census.unreachable, census.unhealthy, census.not_matching, census.full),
            (9, 1, 1, 1, 1, 1)
        );
        assert_eq!(census.already_failed, 1);
    }

    #[test]
    fn a_console_session_makes_a_host_full_for_consoles_only() {
        let servers = vec![ServerRecord { console_session_count: 1, ..server("a", 0) }];
        let none = HashSet::new();
        let all = Requirements::default();
        assert!(rank(&servers, SessionType::Console, &all, &none).candidates.is_empty());
        assert_eq!(rank(&servers, SessionType::Virtual, &all, &none).candidates.len(), 1);
    }

    #[test]
    fn explanations_keep_numbers_honest() {
        assert_eq!(Census::default().explanation(), "no server can host the session: no servers are registered");
        let census = Census {
            total: 3,
            closed: 1,
            full: 1,
            rejected: BTreeMap::from([("USER_SESSION_LIMIT".to_owned(), 1)]),
            ..Default::default()
        };
        assert_eq!(
            census.explanation(),
            "no server can host the session: 3 servers; 1 closed, 1 full, 1 rejected it (USER_SESSION_LIMIT)"
        );
    }
}
