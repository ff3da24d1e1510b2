//! Switchboard's user entry point: the all-in-one cluster and the admin CLI.
//!
//! - [`cluster`]: composes the services' libraries into one process
//!   (`switchboard up`); no behaviour of its own.
//! - [`admin`]: the local admin channel (`admin.json`) used by admin commands.
//! - [`cli`]: the command-line interface.
//! - [`agents_cli`]: the agent enrolment admin commands (software statements, agent clients).
//! - [`dns_cli`]: the server DNS mapping admin commands.

pub mod admin;
pub mod agents_cli;
pub mod cli;
pub mod cluster;
pub mod dns_cli;

pub use cluster::{Cluster, UpConfig};
