//! The claims of the JWTs Switchboard signs, as the signer (auth) writes them and the verifiers (the
//! gateway for access tokens, session-store's DCV verifier for connection tokens) read them. One
//! definition, so the two sides cannot drift.

use serde::{Deserialize, Serialize};

/// `aud` of every connection token: distinct from the API audience, so a connection token is never
/// accepted as an access token (nor the reverse).
pub const CONNECTION_TOKEN_AUDIENCE: &str = "dcv-connection";

/// The claims of an access token, as signed and as verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// Issuer: the auth service's configured issuer.
    pub iss: String,
    /// Audience: the auth service's configured API audience.
    pub aud: String,
    /// Subject: the API client id.
    pub sub: String,
    /// Expiry, seconds since epoch.
    pub exp: i64,
    /// Issue time, seconds since epoch.
    pub iat: i64,
    /// Not valid before, seconds since epoch.
    pub nbf: i64,
    /// Unique token id (UUID v4), for audit logs and revocation lists.
    pub jti: String,
}

/// The claims of a connection token, as signed (auth) and verified (session-store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionTokenClaims {
    /// Issuer: the auth service's issuer.
    pub iss: String,
    /// Audience: always [`CONNECTION_TOKEN_AUDIENCE`].
    pub aud: String,
    /// The DCV session the token opens.
    #[serde(rename = "dcvSessionId")]
    pub dcv_session_id: String,
    /// That session's owner when the token was issued.
    #[serde(rename = "dcvSessionOwner")]
    pub dcv_session_owner: String,
    /// The user the DCV server logs in (returned as `<username>`).
    #[serde(rename = "dcvSessionUser")]
    pub dcv_session_user: String,
    /// Expiry, seconds since epoch.
    pub exp: i64,
    /// Issue time, seconds since epoch.
    pub iat: i64,
    /// Unique token id (single use is recorded by it).
    pub jti: String,
}
