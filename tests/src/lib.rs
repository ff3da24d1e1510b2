//! Cross-service tests live in `tests/tests/`; this library holds their shared helpers.
//!
//! - [`cluster`]: [`cluster::ProcessCluster`], every service as real processes (two replicas each), Redis
//!   and simulated agents on loopback, with `kill -9` and restarts;
//! - [`client`]: [`client::ApiClient`], a retrying REST client over every gateway that counts the errors a
//!   user would see;
//! - [`load`]: a steady mixed load through the gateways and the ledger of what it saw;
//! - [`fleet`]: correctness checks over the fleet (limits, duplicates, lost sessions).

pub mod client;
pub mod cluster;
pub mod fleet;
pub mod load;
