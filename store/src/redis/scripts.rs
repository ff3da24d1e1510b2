//! The Lua scripts of the Redis backend, each prefixed with the shared
//! `prelude.lua` (key names, counts, fencing, the Redis clock).
//!
//! `redis::Script` runs them with EVALSHA and loads them on a `NOSCRIPT`
//! miss, so a restarted (empty) Redis needs no special handling.

use redis::Script;

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(include_str!("scripts/prelude.lua"), "\n", include_str!(concat!("scripts/", $file))))
    };
}

/// Every script, compiled (hashed) once per backend.
pub(super) struct Scripts {
    pub(super) session_insert: Script,
    pub(super) session_update: Script,
    pub(super) session_assign: Script,
    pub(super) session_remove: Script,
    pub(super) sessions_expire: Script,
    pub(super) sessions_read: Script,
    pub(super) events_append: Script,
    pub(super) events_read: Script,
    pub(super) webhook_update: Script,
    pub(super) servers_read: Script,
    pub(super) server_upsert: Script,
    pub(super) server_set_open: Script,
    pub(super) server_remove: Script,
    pub(super) agent_claim: Script,
    pub(super) agent_renew: Script,
    pub(super) agent_get: Script,
    pub(super) agent_release: Script,
    pub(super) server_changes: Script,
    pub(super) queue: Script,
    pub(super) agent_client_register: Script,
    pub(super) agent_client_bind: Script,
    pub(super) agent_client_remove: Script,
    pub(super) statement_deactivate: Script,
    pub(super) idempotency_claim: Script,
    pub(super) idempotency_complete: Script,
    pub(super) idempotency_release: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            session_insert: script!("session_insert.lua"),
            session_update: script!("session_update.lua"),
            session_assign: script!("session_assign.lua"),
            session_remove: script!("session_remove.lua"),
            sessions_expire: script!("sessions_expire.lua"),
            sessions_read: script!("sessions_read.lua"),
            events_append: script!("events_append.lua"),
            events_read: script!("events_read.lua"),
            webhook_update: script!("webhook_update.lua"),
            servers_read: script!("servers_read.lua"),
            server_upsert: script!("server_upsert.lua"),
            server_set_open: script!("server_set_open.lua"),
            server_remove: script!("server_remove.lua"),
            agent_claim: script!("agent_claim.lua"),
            agent_renew: script!("agent_renew.lua"),
            agent_get: script!("agent_get.lua"),
            agent_release: script!("agent_release.lua"),
            server_changes: script!("server_changes.lua"),
            queue: script!("queue.lua"),
            agent_client_register: script!("agent_client_register.lua"),
            agent_client_bind: script!("agent_client_bind.lua"),
            agent_client_remove: script!("agent_client_remove.lua"),
            statement_deactivate: script!("statement_deactivate.lua"),
            idempotency_claim: script!("idempotency_claim.lua"),
            idempotency_complete: script!("idempotency_complete.lua"),
            idempotency_release: script!("idempotency_release.lua"),
        }
    }
}
