//! Software statements: what an operator gives agents so they can register themselves.
//!
//! Like the original broker's, a statement is standard base64 of a small JSON object (`id`, `issuedAt`,
//! `brokerVersion`); Switchboard adds `secret`, 256 random bits, so a statement cannot be forged from its id.
//! Only the SHA-256 of the secret is stored: the statement is shown once, by `generate-software-statement`.
//! Deactivating a statement stops new registrations with it; agents already registered keep their own
//! credentials (unregister those with `unregister-agent-client`).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use switchboard_common::Secret;

use switchboard_common::secret::{random_secret, secret_hash, secret_matches};

use super::EnrolmentError;
use crate::{Enrolment, SoftwareStatementRecord};

/// Longest statement text accepted (a real one is about 200 characters).
pub const MAX_STATEMENT_CHARS: usize = 1024;

/// The JSON inside a statement.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatementBody {
    id: String,
    secret: String,
    /// Seconds since epoch, as the original broker writes it.
    issued_at: f64,
    broker_version: String,
}

/// A statement just generated: the only moment its text is known.
#[derive(Clone)]
pub struct NewStatement {
    /// The stored record (id, hash of the secret, issue time).
    pub record: SoftwareStatementRecord,
    /// The statement text to hand to agents.
    pub text: Secret,
}

impl fmt::Debug for NewStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewStatement").field("id", &self.record.id).field("text", &self.text).finish()
    }
}

/// A new statement issued at `now_ms`, not yet stored.
pub fn new_statement(now_ms: i64) -> NewStatement {
    let id = uuid::Uuid::new_v4().to_string();
    let secret = random_secret();
    let body = StatementBody {
        id: id.clone(),
        secret: secret.clone(),
        issued_at: now_ms as f64 / 1000.0,
        broker_version: format!("switchboard {}", env!("CARGO_PKG_VERSION")),
    };
    let json = serde_json::to_string(&body).expect("a statement body always serialises");
    let record =
        SoftwareStatementRecord { id, secret_sha256: secret_hash(&secret), issued_at_unix_ms: now_ms, active: true };
    NewStatement { record, text: Secret::new(STANDARD.encode(json)) }
}

/// The id and secret of a statement text; `None` when it is not one.
fn parse(text: &str) -> Option<(String, String)> {
    let text = text.trim();
    if text.is_empty() || text.len() > MAX_STATEMENT_CHARS {
        return None;
    }
    let json = STANDARD.decode(text).ok()?;
    let body: StatementBody = serde_json::from_slice(&json).ok()?;
    Some((body.id, body.secret))
}

/// The statement id named by `text`: a statement's own id, or `text` itself when it is not a statement
/// (operators may name a statement by the id `describe-software-statements` prints).
pub fn statement_id(text: &str) -> String {
    parse(text).map_or_else(|| text.trim().to_owned(), |(id, _)| id)
}

/// Generates and stores a statement.
pub async fn generate(backend: &dyn Enrolment) -> Result<NewStatement, EnrolmentError> {
    let statement = new_statement(switchboard_common::time::now_ms());
    backend.insert_software_statement(statement.record.clone()).await?;
    tracing::info!(statement_id = %statement.record.id, "generated software statement");
    Ok(statement)
}

/// The stored, active statement `text` is; every failure (malformed, unknown, wrong secret, inactive) is
/// the same [`EnrolmentError::Unauthenticated`], so callers cannot probe for ids.
pub async fn check(backend: &dyn Enrolment, text: &str) -> Result<SoftwareStatementRecord, EnrolmentError> {
    const REFUSED: EnrolmentError = EnrolmentError::Unauthenticated("software statement invalid or deactivated");
    let Some((id, secret)) = parse(text) else {
        return Err(REFUSED);
    };
    let stored = backend.get_software_statement(&id).await?;
    let record = stored.unwrap_or_default();
    // Hash and compare even for unknown ids so both failures take the same time.
    let matches = secret_matches(&record.secret_sha256, &secret);
    if matches && record.active && !record.id.is_empty() { Ok(record) } else { Err(REFUSED) }
}

/// Deactivates the statement `text_or_id` names; returns its id.
pub async fn deactivate(backend: &dyn Enrolment, text_or_id: &str) -> Result<String, EnrolmentError> {
    let id = statement_id(text_or_id);
    if id.is_empty() || id.len() > MAX_STATEMENT_CHARS {
        return Err(EnrolmentError::InvalidArgument("software_statement must name a statement".to_owned()));
    }
    if !backend.deactivate_software_statement(&id).await? {
        return Err(EnrolmentError::NotFound("software statement not found".to_owned()));
    }
    tracing::info!(statement_id = %id, "deactivated software statement");
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::EmbeddedBackend;

    #[test]
    fn a_statement_carries_its_id_and_only_a_hash_is_stored() {
        let statement = new_statement(1_596_795_881_061);
        let (id, secret) = parse(statement.text.expose()).unwrap();
        assert_eq!(id, statement.record.id);
        assert_eq!(statement.record.secret_sha256, secret_hash(&secret));
        let encoded = prost::Message::encode_to_vec(&statement.record);
        assert!(!encoded.windows(secret.len()).any(|w| w == secret.as_bytes()));
        assert!(!format!("{statement:?}").contains(statement.text.expose()));
        assert_eq!(statement_id(statement.text.expose()), id);
        assert_eq!(statement_id(" some-id "), "some-id");
    }

    #[tokio::test]
    async fn only_a_stored_active_statement_passes() {
        let backend = EmbeddedBackend::in_memory().unwrap();
        let statement = generate(&backend).await.unwrap();
        assert_eq!(check(&backend, statement.text.expose()).await.unwrap().id, statement.record.id);

        let stranger = new_statement(0);
        let mut forged =
            serde_json::from_slice::<serde_json::Value>(&STANDARD.decode(stranger.text.expose()).unwrap()).unwrap();
        forged["id"] = statement.record.id.clone().into();
        let forged = STANDARD.encode(forged.to_string());
        for bad in [stranger.text.expose(), forged.as_str(), "", "not base64 !", &"A".repeat(MAX_STATEMENT_CHARS + 4)] {
            assert!(matches!(check(&backend, bad).await, Err(EnrolmentError::Unauthenticated(_))), "{bad:.20}");
        }

        assert_eq!(deactivate(&backend, statement.text.expose()).await.unwrap(), statement.record.id);
        assert!(matches!(check(&backend, statement.text.expose()).await, Err(EnrolmentError::Unauthenticated(_))));
        assert!(matches!(deactivate(&backend, "unknown").await, Err(EnrolmentError::NotFound(_))));
    }
}
