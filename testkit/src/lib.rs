//! Test-only helpers shared by Switchboard's test suites (never shipped).
//!
//! Module map:
//! - [`redis`]: [`RedisServer`], a real `redis-server` per test on a free
//!   loopback port, with kill/restart for outage and persistence tests;
//! - [`idp`]: [`FakeIdp`], an external identity provider (JWKS endpoint and RS256/ES256 keys).

pub mod idp;
pub mod redis;

pub use idp::FakeIdp;
pub use redis::RedisServer;
