//! The gRPC contracts of Switchboard, generated from `proto/switchboard/v1/*.proto`.
//!
//! - `types.proto`: domain records (sessions, servers, host telemetry), also the storage format.
//! - `records.proto`: the durable records of the auth and enrolment roles (API clients, signing keys,
//!   authorization servers, software statements, agent clients), also the storage format.
//! - `agent.proto`: the `AgentLink` stream between agents and session-store.
//! - `store.proto`: the `SessionStore` service (sessions, servers, capacity, host commands).
//! - `placement.proto`: the `Placement` service (CreateSessions).
//! - `auth.proto`: the `Auth` service (tokens, key set, client registry).
//!
//! [`contract`] holds the constants both sides of a call agree on (failure texts, substates, bounds).

#![allow(clippy::large_enum_variant, missing_docs)]

/// Version 1 of every contract.
pub mod v1 {
    tonic::include_proto!("switchboard.v1");
}

pub use v1::*;

pub mod contract;
pub mod event_json;

/// Version of the agent link protocol this build speaks.
pub const AGENT_PROTOCOL_VERSION: u32 = 1;

mod redacted {
    //! `Debug` for messages that carry secrets: every field but the secret.
    use std::fmt;

    use super::v1::{
        IssueTokenRequest, IssueTokenResponse, RegisterApiClientResponse, RegisterWebhookResponse, WebhookRecord,
    };

    impl fmt::Debug for WebhookRecord {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("WebhookRecord")
                .field("id", &self.id)
                .field("url", &self.url)
                .field("event_types", &self.event_types)
                .field("secret", &"[redacted]")
                .field("created_unix_ms", &self.created_unix_ms)
                .field("cursor", &self.cursor)
                .field("attempts", &self.attempts)
                .field("last_error", &self.last_error)
                .field("last_attempt_unix_ms", &self.last_attempt_unix_ms)
                .field("next_attempt_unix_ms", &self.next_attempt_unix_ms)
                .field("delivered", &self.delivered)
                .finish()
        }
    }

    impl fmt::Debug for RegisterWebhookResponse {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("RegisterWebhookResponse").field("id", &self.id).field("secret", &"[redacted]").finish()
        }
    }

    impl fmt::Debug for IssueTokenRequest {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("IssueTokenRequest")
                .field("client_id", &self.client_id)
                .field("client_secret", &"[redacted]")
                .finish()
        }
    }

    impl fmt::Debug for IssueTokenResponse {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("IssueTokenResponse")
                .field("access_token", &"[redacted]")
                .field("token_type", &self.token_type)
                .field("expires_in_seconds", &self.expires_in_seconds)
                .finish()
        }
    }

    impl fmt::Debug for RegisterApiClientResponse {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("RegisterApiClientResponse")
                .field("client_id", &self.client_id)
                .field("client_secret", &"[redacted]")
                .finish()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn secrets_never_reach_debug_output() {
            let request = IssueTokenRequest { client_id: "id".into(), client_secret: "s3cr3t".into() };
            let response = RegisterApiClientResponse { client_id: "id".into(), client_secret: "s3cr3t".into() };
            let token = IssueTokenResponse { access_token: "eyJ.s3cr3t".into(), ..Default::default() };
            for text in [format!("{request:?}"), format!("{response:?}"), format!("{token:?}")] {
                assert!(!text.contains("s3cr3t") && text.contains("[redacted]"), "{text}");
            }
        }
    }
}

mod redacted_agent {
    //! `Debug` for the agent enrolment messages: software statements and agent secrets are never printed.
    use std::fmt;

    use super::v1::{
        DeactivateSoftwareStatementRequest, GenerateSoftwareStatementResponse, RegisterAgentRequest,
        RegisterAgentResponse,
    };

    impl fmt::Debug for RegisterAgentRequest {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("RegisterAgentRequest")
                .field("software_statement", &"[redacted]")
                .field("client_name", &self.client_name)
                .finish()
        }
    }

    impl fmt::Debug for RegisterAgentResponse {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("RegisterAgentResponse")
                .field("client_id", &self.client_id)
                .field("client_secret", &"[redacted]")
                .field("client_id_issued_at_unix_ms", &self.client_id_issued_at_unix_ms)
                .finish()
        }
    }

    impl fmt::Debug for GenerateSoftwareStatementResponse {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("GenerateSoftwareStatementResponse")
                .field("software_statement", &"[redacted]")
                .field("software_statement_id", &self.software_statement_id)
                .finish()
        }
    }

    impl fmt::Debug for DeactivateSoftwareStatementRequest {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("DeactivateSoftwareStatementRequest").field("software_statement", &"[redacted]").finish()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn enrolment_secrets_never_reach_debug_output() {
            let texts = [
                format!("{:?}", RegisterAgentRequest { software_statement: "s3cr3t".into(), client_name: "h".into() }),
                format!("{:?}", RegisterAgentResponse { client_secret: "s3cr3t".into(), ..Default::default() }),
                format!(
                    "{:?}",
                    GenerateSoftwareStatementResponse { software_statement: "s3cr3t".into(), ..Default::default() }
                ),
                format!("{:?}", DeactivateSoftwareStatementRequest { software_statement: "s3cr3t".into() }),
            ];
            for text in texts {
                assert!(!text.contains("s3cr3t") && text.contains("[redacted]"), "{text}");
            }
        }
    }
}

mod redacted_records {
    //! `Debug` for stored records that carry a secret: a signing key's private half is never printed.
    use std::fmt;

    use super::v1::SigningKeyRecord;

    impl fmt::Debug for SigningKeyRecord {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("SigningKeyRecord")
                .field("kid", &self.kid)
                .field("algorithm", &self.algorithm)
                .field("private_key_pem", &"[redacted]")
                .field("created_unix_ms", &self.created_unix_ms)
                .field("active_from_unix_ms", &self.active_from_unix_ms)
                .field("retired_unix_ms", &self.retired_unix_ms)
                .finish_non_exhaustive()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_private_key_never_reaches_debug_output() {
            let key = SigningKeyRecord { kid: "k1".into(), private_key_pem: "s3cr3t".into(), ..Default::default() };
            let text = format!("{key:?}");
            assert!(!text.contains("s3cr3t") && text.contains("[redacted]") && text.contains("k1"), "{text}");
        }
    }
}
