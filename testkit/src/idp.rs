//! [`FakeIdp`]: an external identity provider as the tests need one — a JWKS endpoint on a
//! loopback port (axum), and signing keys to mint its access tokens: RS256 (a fixed 2048-bit test
//! key, since `ring` cannot generate RSA keys) and ES256 (generated per run). The RSA key's JWK
//! declares `alg`; the EC key's does not, as with IdPs that leave it out.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::{Json, Router, extract::State, routing::get};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The fixed RSA test key (never used outside tests).
const RSA_KEY_PEM: &str = include_str!("../fixtures/idp-rsa-test-key.pem");
/// Its public JWK (`kty`, `n`, `e`).
const RSA_JWK: &str = include_str!("../fixtures/idp-rsa-test-key.jwk.json");

/// `kid` of the RS256 key.
pub const RSA_KID: &str = "idp-rsa-1";
/// `kid` of the ES256 key.
pub const EC_KID: &str = "idp-ec-1";

struct Shared {
    jwks: Value,
    fetches: AtomicU64,
}

/// A running fake identity provider; its server stops when this is dropped.
pub struct FakeIdp {
    /// The JWKS URL (`http://127.0.0.1:<port>/jwks`).
    pub jwks_url: String,
    /// The `iss` of its tokens.
    pub issuer: String,
    rsa: EncodingKey,
    ec: EncodingKey,
    /// The RSA public key's `n` (for tests that misuse it as an HMAC secret).
    pub rsa_public_n: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Json<Value> {
    shared.fetches.fetch_add(1, Ordering::Relaxed);
    Json(shared.jwks.clone())
}

impl FakeIdp {
    /// Starts the JWKS server on an ephemeral loopback port.
    pub async fn start() -> Self {
        let ec_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("ec key");
        let point = ec_pair.public_key_raw();
        assert_eq!(point.len(), 65, "uncompressed P-256 point");
        let ec_jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "kid": EC_KID,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        });
        let mut rsa_jwk: Value = serde_json::from_str(RSA_JWK).expect("rsa jwk fixture");
        rsa_jwk["kid"] = RSA_KID.into();
        rsa_jwk["alg"] = "RS256".into();
        rsa_jwk["use"] = "sig".into();
        let rsa_public_n = rsa_jwk["n"].as_str().expect("n").to_owned();
        // A symmetric key in the set must never be used, whatever a token claims.
        let oct = json!({ "kty": "oct", "kid": "idp-hmac", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(b"shared") });
        let shared = Arc::new(Shared { jwks: json!({ "keys": [rsa_jwk, ec_jwk, oct] }), fetches: AtomicU64::new(0) });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind idp");
        let port = listener.local_addr().expect("addr").port();
        let app = Router::new().route("/jwks", get(jwks)).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            jwks_url: format!("http://127.0.0.1:{port}/jwks"),
            issuer: format!("http://127.0.0.1:{port}/"),
            rsa: EncodingKey::from_rsa_pem(RSA_KEY_PEM.as_bytes()).expect("rsa pem"),
            ec: EncodingKey::from_ec_pem(ec_pair.serialize_pem().as_bytes()).expect("ec pem"),
            rsa_public_n,
            shared,
            server,
        }
    }

    /// How many times the JWKS was downloaded.
    pub fn jwks_fetches(&self) -> u64 {
        self.shared.fetches.load(Ordering::Relaxed)
    }

    /// Claims of a token for `sub`, audience `audience`, valid from `now + starts_in` for
    /// `lifetime` seconds (negative values for tokens in the past).
    pub fn claims(&self, sub: &str, audience: &str, starts_in: i64, lifetime: i64) -> Value {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
        let start = now + starts_in;
        json!({ "iss": self.issuer, "sub": sub, "aud": audience, "iat": start, "nbf": start, "exp": start + lifetime, "jti": format!("idp-{start}") })
    }

    /// Signs `claims` with the RS256 key (`kid` [`RSA_KID`] unless `kid` is given).
    pub fn sign_rs256(&self, claims: &Value, kid: Option<&str>) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.unwrap_or(RSA_KID).to_owned());
        jsonwebtoken::encode(&header, claims, &self.rsa).expect("sign rs256")
    }

    /// Signs `claims` with the ES256 key (`kid` [`EC_KID`]).
    pub fn sign_es256(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(EC_KID.to_owned());
        jsonwebtoken::encode(&header, claims, &self.ec).expect("sign es256")
    }

    /// An HS256 token keyed with `secret` and naming `kid` (algorithm-confusion attacks).
    pub fn sign_hs256(claims: &Value, kid: &str, secret: &[u8]) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).expect("sign hs256")
    }
}
