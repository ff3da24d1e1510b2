//! Switchboard agent: runs on each DCV host, keeps a stream open to the broker and drives the host's sessions.
//!
//! - [`config`]: `agent.conf`, compatible with the original DCV Session Manager agent.
//! - [`logging`]: standard output or rotated log files, as `[log]` says.
//! - [`tags`]: host tags from the tags folder, re-read on SIGHUP.
//! - [`driver`]: the [`DcvDriver`] trait, the real `dcv` CLI driver and the [`SimulatedDriver`].
//! - [`telemetry`]: host information (real or simulated) reported to the broker.
//! - [`identity`]: the stable server id.
//! - [`options`]: [`AgentOptions`], from `agent.conf` or for the all-in-one's simulated hosts.
//! - [`enrol`]: registration with a software statement and the credentials every stream carries.
//! - `link`: the `AgentLink.Connect` session: hello, welcome, updates, commands, reconnects.
//! - `commands`: one broker command run on the driver, answered by one result.
//! - [`error`]: the crate's error enum.

pub mod config;
pub mod driver;
pub mod enrol;
pub mod error;
pub mod identity;
pub mod logging;
pub mod options;
pub mod permissions;
pub mod tags;
pub mod telemetry;

mod commands;
mod link;

use std::sync::Arc;

use switchboard_common::Shutdown;
use switchboard_proto::HostInfo;

pub use config::AgentConfig;
pub use driver::simulated::SimulatedDriver;
pub use driver::{DcvDriver, DriverError};
pub use error::{Error, Result};
pub use options::{AgentOptions, options_from_config, simulated_host_options};

/// Reads the host's telemetry; called for the hello and every update.
pub type HostProbe = Arc<dyn Fn() -> HostInfo + Send + Sync>;

/// Runs the agent: keeps a session with the broker open (reconnecting with backoff) and serves its commands
/// on `driver`, reporting `host()` telemetry, until `shutdown` is cancelled. Fails only when the options
/// cannot work (invalid broker URL or CA).
pub async fn run(
    options: AgentOptions,
    driver: Arc<dyn DcvDriver>,
    host: impl Fn() -> HostInfo + Send + Sync + 'static,
    shutdown: Shutdown,
) -> Result<()> {
    link::Link::new(options, driver, Arc::new(host)).run(shutdown).await
}
