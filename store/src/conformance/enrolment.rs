//! Enrolment: software statements and agent clients with their server bindings.

use std::sync::Arc;

use crate::{AgentClientRecord, Backend, BackendError, SoftwareStatementRecord};

/// Every enrolment check, each against a fresh backend from `make`.
pub(super) async fn run<F, Fut>(make: &F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Backend>>,
{
    software_statements(make().await).await;
    agent_clients(make().await).await;
}

/// An active statement issued at `issued`.
fn statement(id: &str, issued: i64) -> SoftwareStatementRecord {
    SoftwareStatementRecord { id: id.to_owned(), secret_sha256: vec![9; 32], issued_at_unix_ms: issued, active: true }
}

/// An unbound agent client registered with `statement_id`.
fn agent_client(id: &str, statement_id: &str) -> AgentClientRecord {
    AgentClientRecord {
        client_id: id.to_owned(),
        client_name: format!("host {id}"),
        secret_sha256: vec![3; 32],
        created_unix_ms: 7,
        software_statement_id: statement_id.to_owned(),
        server_id: String::new(),
    }
}

async fn software_statements(backend: Arc<dyn Backend>) {
    backend.insert_software_statement(statement("new", 200)).await.unwrap();
    backend.insert_software_statement(statement("old", 100)).await.unwrap();
    let duplicate = backend.insert_software_statement(statement("old", 5)).await;
    assert!(matches!(duplicate, Err(BackendError::AlreadyExists(_))), "duplicate statement: {duplicate:?}");
    assert_eq!(backend.get_software_statement("old").await.unwrap(), Some(statement("old", 100)), "round-trips");
    assert_eq!(backend.get_software_statement("nope").await.unwrap(), None, "unknown statement is None");
    let ids: Vec<String> = backend.list_software_statements().await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(ids, ["old", "new"], "statements listed oldest first");

    assert!(backend.deactivate_software_statement("old").await.unwrap(), "deactivating a statement returns true");
    assert!(backend.deactivate_software_statement("old").await.unwrap(), "deactivation is idempotent");
    assert!(!backend.deactivate_software_statement("nope").await.unwrap(), "deactivating an unknown one is false");
    let old = backend.get_software_statement("old").await.unwrap().unwrap();
    assert!(!old.active, "a deactivated statement reads inactive");
    let listed = backend.list_software_statements().await.unwrap();
    assert_eq!(listed.iter().map(|s| s.active).collect::<Vec<_>>(), [false, true], "list reports the active state");
}

async fn agent_clients(backend: Arc<dyn Backend>) {
    backend.insert_software_statement(statement("st", 1)).await.unwrap();
    backend.insert_software_statement(statement("gone", 2)).await.unwrap();
    backend.deactivate_software_statement("gone").await.unwrap();

    backend.register_agent_client(agent_client("b", "st")).await.unwrap();
    let mut pre_bound = agent_client("a", "st");
    pre_bound.server_id = "smuggled".to_owned();
    backend.register_agent_client(pre_bound).await.unwrap();
    let duplicate = backend.register_agent_client(agent_client("a", "st")).await;
    assert!(matches!(duplicate, Err(BackendError::AlreadyExists(_))), "duplicate agent client: {duplicate:?}");
    let inactive = backend.register_agent_client(agent_client("c", "gone")).await;
    assert!(matches!(inactive, Err(BackendError::NotFound(_))), "inactive statement refuses: {inactive:?}");
    let unknown = backend.register_agent_client(agent_client("d", "nope")).await;
    assert!(matches!(unknown, Err(BackendError::NotFound(_))), "unknown statement refuses: {unknown:?}");
    assert_eq!(backend.get_agent_client("c").await.unwrap(), None, "a refused registration stores nothing");
    assert_eq!(backend.get_agent_client("a").await.unwrap(), Some(agent_client("a", "st")), "clients start unbound");
    let ids: Vec<String> = backend.list_agent_clients().await.unwrap().into_iter().map(|c| c.client_id).collect();
    assert_eq!(ids, ["a", "b"], "agent clients listed in id order");

    backend.bind_agent_server("a", "h1").await.unwrap();
    backend.bind_agent_server("a", "h1").await.unwrap();
    assert_eq!(backend.get_agent_client("a").await.unwrap().unwrap().server_id, "h1", "the binding is read back");
    let listed = backend.list_agent_clients().await.unwrap();
    assert_eq!(listed[0].server_id, "h1", "list reports the binding");
    let other_server = backend.bind_agent_server("a", "h2").await;
    assert!(
        matches!(other_server, Err(BackendError::Conflict(_))),
        "a bound client keeps its server: {other_server:?}"
    );
    let other_client = backend.bind_agent_server("b", "h1").await;
    assert!(
        matches!(other_client, Err(BackendError::Conflict(_))),
        "a bound server keeps its client: {other_client:?}"
    );
    assert_eq!(backend.get_agent_client("b").await.unwrap().unwrap().server_id, "", "a refused bind changes nothing");
    let missing = backend.bind_agent_server("zz", "h3").await;
    assert!(matches!(missing, Err(BackendError::NotFound(_))), "an unknown client cannot bind: {missing:?}");

    assert!(backend.remove_agent_client("a").await.unwrap(), "removing a client returns true");
    assert!(!backend.remove_agent_client("a").await.unwrap(), "removing a missing client returns false");
    assert_eq!(backend.get_agent_client("a").await.unwrap(), None, "a removed client is gone");
    backend.bind_agent_server("b", "h1").await.unwrap();
    assert_eq!(backend.get_agent_client("b").await.unwrap().unwrap().server_id, "h1", "removal frees the server id");
}
