//! Access tokens: signed JWTs (RFC 7519) naming the API client they were issued to; and DCV connection
//! tokens ([`Signer::issue_connection_token`]), verified by session-store's DCV verifier.

use std::fmt;

use jsonwebtoken::{Algorithm, EncodingKey, Header};

use switchboard_common::claims::{CONNECTION_TOKEN_AUDIENCE, ConnectionTokenClaims, TokenClaims};
use switchboard_proto::SigningKeyRecord;

use crate::{Error, Result};

/// A freshly issued access token.
#[derive(Clone)]
pub struct IssuedToken {
    /// The compact JWT.
    pub access_token: String,
    /// Its claims, for logging the `jti` and expiry.
    pub claims: TokenClaims,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken").field("access_token", &"[redacted]").field("claims", &self.claims).finish()
    }
}

/// Signs access tokens with one stored signing key.
pub struct Signer {
    kid: String,
    key: EncodingKey,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer").field("kid", &self.kid).field("key", &"[redacted]").finish()
    }
}

impl Signer {
    /// Loads the private half of a stored key; only `EdDSA` keys are accepted.
    pub fn from_record(record: &SigningKeyRecord) -> Result<Self> {
        if record.algorithm != crate::keys::ALGORITHM {
            return Err(Error::Key(format!("unsupported algorithm {:?} on key {}", record.algorithm, record.kid)));
        }
        let key = EncodingKey::from_ed_pem(record.private_key_pem.as_bytes())
            .map_err(|error| Error::Key(format!("signing key {} unreadable: {error}", record.kid)))?;
        Ok(Self { kid: record.kid.clone(), key })
    }

    /// The `kid` this signer puts in token headers.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Issues a token for `client_id`, valid from `now_unix_seconds` for `lifetime_seconds`.
    pub fn issue(
        &self,
        issuer: &str,
        audience: &str,
        client_id: &str,
        now_unix_seconds: i64,
        lifetime_seconds: u32,
    ) -> Result<IssuedToken> {
        let claims = TokenClaims {
            iss: issuer.to_owned(),
            aud: audience.to_owned(),
            sub: client_id.to_owned(),
            exp: now_unix_seconds + i64::from(lifetime_seconds),
            iat: now_unix_seconds,
            nbf: now_unix_seconds,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let access_token = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|error| Error::Key(format!("signing with {} failed: {error}", self.kid)))?;
        Ok(IssuedToken { access_token, claims })
    }
}

/// Who a DCV connection token is for.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionTokenSubject<'a> {
    /// The DCV session it opens.
    pub session_id: &'a str,
    /// That session's owner now.
    pub session_owner: &'a str,
    /// The user the DCV server logs in.
    pub user: &'a str,
}

impl Signer {
    /// Issues a DCV connection token (audience [`CONNECTION_TOKEN_AUDIENCE`]) for `subject`, valid from
    /// `now_unix_seconds` for `lifetime_seconds`. Returns the compact JWT and its claims.
    pub fn issue_connection_token(
        &self,
        issuer: &str,
        subject: ConnectionTokenSubject<'_>,
        now_unix_seconds: i64,
        lifetime_seconds: u32,
    ) -> Result<(String, ConnectionTokenClaims)> {
        let claims = ConnectionTokenClaims {
            iss: issuer.to_owned(),
            aud: CONNECTION_TOKEN_AUDIENCE.to_owned(),
            dcv_session_id: subject.session_id.to_owned(),
            dcv_session_owner: subject.session_owner.to_owned(),
            dcv_session_user: subject.user.to_owned(),
            exp: now_unix_seconds + i64::from(lifetime_seconds),
            iat: now_unix_seconds,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|error| Error::Key(format!("signing with {} failed: {error}", self.kid)))?;
        Ok((token, claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_token_carries_kid_and_claims() {
        let record = crate::keys::generate_signing_key(0).unwrap();
        let signer = Signer::from_record(&record).unwrap();
        let issued = signer.issue("iss", "aud", "client-1", 1_000, 60).unwrap();
        let header = jsonwebtoken::decode_header(&issued.access_token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.kid.as_deref(), Some(record.kid.as_str()));
        assert_eq!(issued.claims.exp, 1_060);
        assert_eq!(issued.claims.nbf, 1_000);
        assert_eq!(issued.claims.sub, "client-1");
        assert!(!format!("{issued:?} {signer:?}").contains(&issued.access_token));
    }

    #[test]
    fn connection_tokens_carry_the_dcv_claims() {
        let record = crate::keys::generate_signing_key(0).unwrap();
        let signer = Signer::from_record(&record).unwrap();
        let (token, claims) = signer
            .issue_connection_token(
                "iss",
                ConnectionTokenSubject { session_id: "s-1", session_owner: "alice", user: "bob" },
                1_000,
                3600,
            )
            .unwrap();
        assert_eq!(claims.exp, 4_600);
        let payload = token.split('.').nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap(),
        )
        .unwrap();
        assert_eq!(json["dcvSessionId"], "s-1");
        assert_eq!(json["dcvSessionOwner"], "alice");
        assert_eq!(json["dcvSessionUser"], "bob");
        assert_eq!(json["aud"], "dcv-connection");
        assert_eq!((json["iat"].as_i64(), json["exp"].as_i64()), (Some(1_000), Some(4_600)));
        assert!(json["jti"].as_str().is_some_and(|jti| !jti.is_empty()));
    }

    #[test]
    fn non_eddsa_records_are_refused() {
        let mut record = crate::keys::generate_signing_key(0).unwrap();
        record.algorithm = "HS256".to_owned();
        assert!(Signer::from_record(&record).is_err());
    }
}
