//! The stream-ownership role: which session-store replica owns each agent's stream (a lease and an
//! epoch), and the [`Fence`] every write on behalf of a stream carries.

use async_trait::async_trait;

use crate::{BackendError, BackendResult};

/// A precondition on the agent-stream ownership of a server, checked in the
/// same atomic step as the write it guards.
///
/// Writes made on behalf of an agent stream carry [`Fence::Owner`], so a
/// replica that lost the stream to a newer claim (the agent reconnected
/// elsewhere) cannot overwrite what the new owner wrote. Writes made on
/// behalf of nobody (the liveness sweep declaring a host gone) carry
/// [`Fence::Unowned`], so they cannot undo a reconnect that just happened.
/// A refused write fails with [`BackendError::Fenced`] and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    /// Passes while `epoch` is the server's current ownership epoch (the
    /// lease may have lapsed: nobody has claimed since).
    Owner {
        /// The server whose stream the writer owns.
        server_id: String,
        /// The epoch of the writer's claim.
        epoch: u64,
    },
    /// Passes while no live ownership lease exists for the server.
    Unowned {
        /// The server declared gone.
        server_id: String,
    },
}

impl Fence {
    /// The fence of a stream owner.
    pub fn owner(server_id: &str, epoch: u64) -> Self {
        Self::Owner { server_id: server_id.to_owned(), epoch }
    }

    /// The fence of a write that needs the host to be gone.
    pub fn unowned(server_id: &str) -> Self {
        Self::Unowned { server_id: server_id.to_owned() }
    }

    /// The server whose ownership is checked.
    pub fn server_id(&self) -> &str {
        match self {
            Self::Owner { server_id, .. } | Self::Unowned { server_id } => server_id,
        }
    }

    /// Whether the fence passes given the current ownership (`None`: never
    /// claimed or released) at `now_ms`.
    pub fn admits(&self, current: Option<&AgentOwnership>, now_ms: i64) -> bool {
        match self {
            Self::Owner { epoch, .. } => current.is_some_and(|o| o.epoch == *epoch),
            Self::Unowned { .. } => current.is_none_or(|o| o.lease_until_ms <= now_ms),
        }
    }

    /// The error of a refused write.
    pub fn refused(&self) -> BackendError {
        match self {
            Self::Owner { server_id, epoch } => {
                BackendError::Fenced(format!("agent {server_id} epoch {epoch} is no longer the owner"))
            }
            Self::Unowned { server_id } => BackendError::Fenced(format!("agent {server_id} has a live owner")),
        }
    }
}

/// Which session-store replica owns an agent's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentOwnership {
    /// Replica id of the owner.
    pub owner_id: String,
    /// Address other replicas use to reach the owner (`http://host:port`).
    pub owner_address: String,
    /// Ownership epoch; every new claim gets a larger one. Writes carrying an
    /// older epoch are stale and refused.
    pub epoch: u64,
    /// Lease expiry, ms since epoch; the owner renews it while the stream lives.
    pub lease_until_ms: i64,
}

/// Agent-stream ownership. All methods are atomic.
#[async_trait]
pub trait StreamOwnership: Send + Sync + 'static {
    /// Claims an agent's stream for a replica: always succeeds, with an epoch
    /// larger than any before for this server.
    async fn claim_agent(
        &self,
        server_id: &str,
        owner_id: &str,
        owner_address: &str,
        lease_ms: i64,
    ) -> BackendResult<AgentOwnership>;

    /// Extends the lease if `epoch` is still current; `Conflict` if another
    /// claim superseded it (the caller must drop the stream).
    async fn renew_agent(&self, server_id: &str, epoch: u64, lease_ms: i64) -> BackendResult<AgentOwnership>;

    /// The current owner of an agent's stream, if any lease is live.
    async fn agent_owner(&self, server_id: &str) -> BackendResult<Option<AgentOwnership>>;

    /// Drops ownership if `epoch` is still current (stream closed cleanly).
    async fn release_agent(&self, server_id: &str, epoch: u64) -> BackendResult<()>;
}
