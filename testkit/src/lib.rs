//! Test-only helpers shared by Switchboard's test suites (never shipped).
//!
//! Module map:
//! - [`redis`]: [`RedisServer`], a real `redis-server` per test on a free
//!   loopback port, with kill/restart for outage and persistence tests;
//! - [`redis_ha`]: [`SentinelGroup`] (a primary, replicas and real `redis-sentinel`s) and
//!   [`RedisCluster`], for failover and cluster tests;
//! - [`idp`]: [`FakeIdp`], an external identity provider (JWKS endpoint and RS256/ES256 keys);
//! - [`otlp`]: [`OtlpSink`], an OTLP trace receiver that counts spans (benchmarks).

pub mod idp;
pub mod otlp;
pub mod redis;
pub mod redis_ha;

pub use idp::FakeIdp;
pub use otlp::OtlpSink;
pub use redis::RedisServer;
pub use redis_ha::{RedisCluster, SentinelGroup};
