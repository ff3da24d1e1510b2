//! What each API client may do: the one table of operations and the access each needs.
//!
//! Every authenticated request passes [`authorize`] (in the bearer middleware, [`crate::auth`])
//! with the route it matched, before its handler runs. The rules:
//!
//! - A **read-only** client may call only operations marked [`Access::Read`] (describe operations
//!   and connection data).
//! - An **owner-restricted** client may call only operations on sessions ([`Target::Sessions`]),
//!   and only those whose handler enforces the owner restriction (`owner_checked`): the handler
//!   then calls [`crate::auth::Caller::require_owner`] / [`crate::auth::Caller::may_act_for`] on
//!   every owner it touches. Server operations are refused outright.
//! - A route missing from [`OPERATIONS`] counts as a full-access server operation, so a route
//!   added without a row here is refused to every restricted client (fail closed) rather than
//!   left open.
//!
//! Adding an API operation = adding one row; set `owner_checked: true` only once its handler
//! checks owners.

use axum::extract::MatchedPath;

use crate::{auth::Caller, error::ApiError};

/// The access an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Describe operations and connection data: allowed to read-only clients.
    Read,
    /// Anything that changes state (or reveals screen content): full clients only.
    Full,
}

/// What an operation acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Sessions, each with an owner.
    Sessions {
        /// Whether the handler enforces an owner restriction on every session it touches.
        owner_checked: bool,
    },
    /// The fleet (servers): never allowed to owner-restricted clients.
    Servers,
}

/// One API operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    /// The route as registered in the router (axum path syntax).
    pub path: &'static str,
    /// Operation name as in the API reference.
    pub name: &'static str,
    /// Access needed.
    pub access: Access,
    /// What it acts on.
    pub target: Target,
}

const fn op(path: &'static str, name: &'static str, access: Access, target: Target) -> Operation {
    Operation { path, name, access, target }
}

const CHECKED: Target = Target::Sessions { owner_checked: true };
// For a route whose handler does not check owners yet: owner-restricted clients are refused (fail closed).
#[allow(dead_code)]
const UNCHECKED: Target = Target::Sessions { owner_checked: false };

/// Every API operation and the access it needs.
pub const OPERATIONS: &[Operation] = &[
    op("/createSessions", "CreateSessions", Access::Full, CHECKED),
    op("/describeSessions", "DescribeSessions", Access::Read, CHECKED),
    op("/deleteSessions", "DeleteSessions", Access::Full, CHECKED),
    op("/sessionConnectionData/{session_id}/{user}", "GetSessionConnectionData", Access::Read, CHECKED),
    op("/sessionPermissions", "UpdateSessionPermissions", Access::Full, CHECKED),
    op("/getSessionScreenshots", "GetSessionScreenshots", Access::Full, CHECKED),
    op("/describeServers", "DescribeServers", Access::Read, Target::Servers),
    op("/openServers", "OpenServers", Access::Full, Target::Servers),
    op("/closeServers", "CloseServers", Access::Full, Target::Servers),
    // Beyond the original API: a dry run of placement over the fleet (reveals servers, changes nothing).
    op("/explainPlacement", "ExplainPlacement", Access::Read, Target::Servers),
    // Beyond the original API: the event stream; the handler shows an owner-restricted client only its
    // owners' session events.
    op("/events", "GetEvents", Access::Read, CHECKED),
    // Beyond the original API: webhook subscriptions see every event of the fleet, so only unrestricted
    // full-access clients manage them.
    op("/registerWebhook", "RegisterWebhook", Access::Full, Target::Servers),
    op("/describeWebhooks", "DescribeWebhooks", Access::Full, Target::Servers),
    op("/unregisterWebhook", "UnregisterWebhook", Access::Full, Target::Servers),
];

/// Treatment of a route missing from [`OPERATIONS`]: the most restrictive.
const UNLISTED: Operation = op("", "unlisted operation", Access::Full, Target::Servers);

/// The operation registered at `path`.
pub fn operation(path: &str) -> Option<&'static Operation> {
    OPERATIONS.iter().find(|operation| operation.path == path)
}

/// Refuses the request when the caller's scope does not cover the operation at `path`
/// (403, `{"error": ...}`).
pub fn authorize(caller: &Caller, path: Option<&MatchedPath>) -> Result<(), ApiError> {
    let operation = path.and_then(|path| operation(path.as_str())).unwrap_or(&UNLISTED);
    authorize_operation(caller, operation)
}

/// [`authorize`] for a known operation.
pub fn authorize_operation(caller: &Caller, operation: &Operation) -> Result<(), ApiError> {
    let scope = &caller.scope;
    if scope.read_only && operation.access != Access::Read {
        return Err(ApiError::Forbidden(format!("The API client is read-only and may not call {}", operation.name)));
    }
    if scope.allowed_owners.is_some() {
        match operation.target {
            Target::Sessions { owner_checked: true } => {}
            Target::Sessions { owner_checked: false } | Target::Servers => {
                return Err(ApiError::Forbidden(format!(
                    "The API client is restricted to sessions of given owners and may not call {}",
                    operation.name
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::auth::Scope;

    fn caller(read_only: bool, owners: Option<&[&str]>) -> Caller {
        let allowed_owners = owners.map(|owners| owners.iter().map(|o| o.to_string()).collect::<BTreeSet<_>>());
        Caller::with_scope("c", Scope { read_only, allowed_owners })
    }

    fn allowed(caller: &Caller, name: &str) -> bool {
        let operation = OPERATIONS.iter().find(|op| op.name == name).unwrap();
        authorize_operation(caller, operation).is_ok()
    }

    #[test]
    fn full_clients_may_call_everything() {
        let full = caller(false, None);
        assert!(OPERATIONS.iter().all(|op| authorize_operation(&full, op).is_ok()));
        assert!(authorize_operation(&full, &UNLISTED).is_ok());
    }

    #[test]
    fn read_only_clients_may_only_describe_and_get_connection_data() {
        let reader = caller(true, None);
        let permitted: Vec<&str> =
            OPERATIONS.iter().filter(|op| authorize_operation(&reader, op).is_ok()).map(|op| op.name).collect();
        assert_eq!(
            permitted,
            ["DescribeSessions", "GetSessionConnectionData", "DescribeServers", "ExplainPlacement", "GetEvents"]
        );
        assert!(authorize_operation(&reader, &UNLISTED).is_err());
    }

    #[test]
    fn owner_restricted_clients_get_only_owner_checked_session_operations() {
        let tenant = caller(false, Some(&["alice"]));
        assert!(allowed(&tenant, "CreateSessions"));
        assert!(allowed(&tenant, "DescribeSessions"));
        assert!(allowed(&tenant, "DeleteSessions"));
        assert!(allowed(&tenant, "GetEvents"), "the handler filters the events by owner");
        for refused in [
            "DescribeServers",
            "OpenServers",
            "CloseServers",
            "ExplainPlacement",
            "RegisterWebhook",
            "DescribeWebhooks",
            "UnregisterWebhook",
        ] {
            assert!(!allowed(&tenant, refused), "{refused}");
        }
        // Routes whose handlers do not check owners yet, and unlisted routes, fail closed.
        for op in OPERATIONS.iter().filter(|op| op.target == UNCHECKED) {
            assert!(authorize_operation(&tenant, op).is_err(), "{}", op.name);
        }
        assert!(authorize_operation(&tenant, &UNLISTED).is_err());
        let read_only_tenant = caller(true, Some(&["alice"]));
        assert!(allowed(&read_only_tenant, "DescribeSessions"));
        assert!(!allowed(&read_only_tenant, "CreateSessions"));
    }

    #[test]
    fn every_route_of_the_router_has_a_row() {
        for path in crate::routes::API_PATHS {
            assert!(operation(path).is_some(), "{path} has no row in OPERATIONS");
        }
    }
}
