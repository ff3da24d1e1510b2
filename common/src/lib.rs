//! Plumbing shared by every Switchboard crate.
//!
//! - [`error`]: the one error-code enum, mapped once to gRPC codes and HTTP statuses.
//! - [`config`]: layered settings of the service binaries (defaults → file → env → flags), `--dump-config`.
//! - [`telemetry`]: `RUST_LOG`-style logging (pretty or JSON, with trace ids), OTLP trace export when configured.
//! - [`trace_context`]: the W3C trace context across gRPC calls, the agent stream and API requests.
//! - [`shutdown`]: the cancellation token every service's `serve` takes, and OS signals.
//! - [`process`]: process limits raised at start (the open-files soft limit to the hard one).
//! - [`tls`]: the development CA written into the data dir, and rustls configs.
//! - [`tls_reload`]: certificates, keys and CA bundles that follow their files; the rustls server config
//!   that asks them at every handshake.
//! - [`listen`]: accepting connections on every port (`TCP_NODELAY`).
//! - [`grpc`]: serving tonic services with health on a bound listener, and dialing them.
//! - [`health`]: honest gRPC health (not serving while draining or while the backend is unreachable) and
//!   the hysteresis that keeps one failed check from flipping a state.
//! - [`internal_tls`]: optional TLS / mTLS of the internal gRPC ports, configured once per process.
//! - [`time`]: wall-clock milliseconds and RFC 3339 formatting as the API uses it.
//! - [`secret`]: a wrapper that never prints its contents; generating, hashing and checking secrets.
//! - [`claims`]: the claims of the JWTs Switchboard signs (access and connection tokens).

pub mod claims;
pub mod config;
pub mod error;
pub mod grpc;
pub mod health;
pub mod internal_tls;
pub mod listen;
pub mod metrics;
pub mod process;
pub mod secret;
pub mod shutdown;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod tls_reload;
pub mod trace_context;

pub use error::{ErrorCode, ServiceError};
pub use secret::Secret;
pub use shutdown::Shutdown;
