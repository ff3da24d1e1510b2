//! The gRPC contracts of Switchboard, generated from `proto/switchboard/v1/*.proto`.
//!
//! - `types.proto`: domain records (sessions, servers, host telemetry), also the storage format.
//! - `agent.proto`: the `AgentLink` stream between agents and session-store.
//! - `store.proto`: the `SessionStore` service (sessions, servers, capacity, host commands).
//! - `placement.proto`: the `Placement` service (CreateSessions).
//! - `auth.proto`: the `Auth` service (tokens, key set, client registry).

#![allow(clippy::large_enum_variant, missing_docs)]

/// Version 1 of every contract.
pub mod v1 {
    tonic::include_proto!("switchboard.v1");
}

pub use v1::*;

/// Version of the agent link protocol this build speaks.
pub const AGENT_PROTOCOL_VERSION: u32 = 1;
