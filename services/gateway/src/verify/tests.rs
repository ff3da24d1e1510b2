//! Token verification against a fixed key set: what passes and every way a token must fail.
//!
//! The tokens are signed here by a signer of this test's own (Ed25519 keys as the auth service makes
//! them), so the verifier is checked against the token format, not against auth's code; the end-to-end
//! tests in `tests/` check the two together.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};
use switchboard_proto::{KeySet, SigningKeyRecord};

use super::*;

/// Key making and signing as the auth service does it (EdDSA keys, JWKS of the public halves).
mod keys {
    use super::*;

    /// A fresh Ed25519 signing key with a random `kid`, active from `now_ms`.
    pub fn generate_signing_key(now_ms: i64) -> Result<SigningKeyRecord, rcgen::Error> {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        let kid = uuid::Uuid::new_v4().simple().to_string();
        let jwk = serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(key_pair.public_key_raw()),
            "kid": kid, "alg": "EdDSA", "use": "sig",
        });
        Ok(SigningKeyRecord {
            kid,
            algorithm: "EdDSA".to_owned(),
            private_key_pem: key_pair.serialize_pem(),
            public_jwk_json: jwk.to_string(),
            created_unix_ms: now_ms,
            active_from_unix_ms: now_ms,
            retired_unix_ms: 0,
        })
    }

    /// The JWKS document of `keys`.
    pub fn jwks_json(keys: &[SigningKeyRecord], _now_ms: i64, _lifetime_seconds: u32) -> String {
        let keys: Vec<serde_json::Value> =
            keys.iter().map(|key| serde_json::from_str(&key.public_jwk_json).unwrap()).collect();
        serde_json::json!({ "keys": keys }).to_string()
    }
}

/// A token just signed, with its claims.
struct IssuedToken {
    access_token: String,
    claims: TokenClaims,
}

/// Signs access tokens with one key, as the auth service does.
struct Signer {
    kid: String,
    key: EncodingKey,
}

impl Signer {
    fn from_record(record: &SigningKeyRecord) -> Result<Self, jsonwebtoken::errors::Error> {
        Ok(Self { kid: record.kid.clone(), key: EncodingKey::from_ed_pem(record.private_key_pem.as_bytes())? })
    }

    fn issue(
        &self,
        issuer: &str,
        audience: &str,
        client_id: &str,
        now: i64,
        lifetime_seconds: u32,
    ) -> Result<IssuedToken, jsonwebtoken::errors::Error> {
        let claims = TokenClaims {
            iss: issuer.to_owned(),
            aud: audience.to_owned(),
            sub: client_id.to_owned(),
            exp: now + i64::from(lifetime_seconds),
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        Ok(IssuedToken { access_token: jsonwebtoken::encode(&header, &claims, &self.key)?, claims })
    }
}

const ISSUER: &str = "switchboard";
const AUDIENCE: &str = "switchboard-api";

fn now_seconds() -> i64 {
    switchboard_common::time::now_ms() / 1000
}

fn key_set(records: &[SigningKeyRecord]) -> KeySet {
    KeySet {
        jwks_json: keys::jwks_json(records, switchboard_common::time::now_ms(), 3600),
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        ..Default::default()
    }
}

struct Fixture {
    record: SigningKeyRecord,
    signer: Signer,
    verifier: TokenVerifier,
}

fn fixture() -> Fixture {
    let record = keys::generate_signing_key(0).unwrap();
    let signer = Signer::from_record(&record).unwrap();
    let verifier = TokenVerifier::from_key_set(&key_set(std::slice::from_ref(&record))).unwrap();
    Fixture { record, signer, verifier }
}

fn token(signer: &Signer, now: i64) -> String {
    signer.issue(ISSUER, AUDIENCE, "client-7", now, 3600).unwrap().access_token
}

fn unauthenticated(result: Result<Claims, VerifyError>) -> &'static str {
    match result {
        Err(VerifyError::Unauthenticated(reason)) => reason,
        other => panic!("expected Unauthenticated, got {other:?}"),
    }
}

fn public_key_x(record: &SigningKeyRecord) -> String {
    let jwk: serde_json::Value = serde_json::from_str(&record.public_jwk_json).unwrap();
    jwk["x"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn issued_token_round_trips() {
    let fixture = fixture();
    let issued = fixture.signer.issue(ISSUER, AUDIENCE, "client-7", now_seconds(), 3600).unwrap();
    let claims = fixture.verifier.verify(&issued.access_token).await.unwrap();
    assert_eq!(claims.client_id, "client-7");
    assert_eq!(claims.expires_at, issued.claims.exp);
    assert_eq!(claims.jti, issued.claims.jti);
    assert_eq!(fixture.verifier.key_set_fetches(), 0);
}

#[tokio::test]
async fn tampered_tokens_are_rejected() {
    let fixture = fixture();
    let good = token(&fixture.signer, now_seconds());
    let parts: Vec<&str> = good.split('.').collect();

    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[10] ^= 0x01;
    let forged_signature = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(signature));
    assert_eq!(unauthenticated(fixture.verifier.verify(&forged_signature).await), "access token signature invalid");

    let mut claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = "someone-else".into();
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let forged_claims = format!("{}.{payload}.{}", parts[0], parts[2]);
    assert_eq!(unauthenticated(fixture.verifier.verify(&forged_claims).await), "access token signature invalid");

    unauthenticated(fixture.verifier.verify("not-a-jwt").await);
    unauthenticated(fixture.verifier.verify("").await);
}

#[tokio::test]
async fn alg_none_is_rejected() {
    let fixture = fixture();
    let good = token(&fixture.signer, now_seconds());
    let claims = good.split('.').nth(1).unwrap();
    let header = serde_json::json!({ "alg": "none", "typ": "JWT", "kid": fixture.record.kid });
    let unsigned = format!("{}.{claims}.", URL_SAFE_NO_PAD.encode(header.to_string()));
    unauthenticated(fixture.verifier.verify(&unsigned).await);
}

#[tokio::test]
async fn hmac_keyed_with_the_public_key_is_rejected() {
    let fixture = fixture();
    let now = now_seconds();
    let claims = TokenClaims {
        iss: ISSUER.to_owned(),
        aud: AUDIENCE.to_owned(),
        sub: "attacker".to_owned(),
        exp: now + 600,
        iat: now,
        nbf: now,
        jti: "j".to_owned(),
    };
    let x = public_key_x(&fixture.record);
    let raw = URL_SAFE_NO_PAD.decode(&x).unwrap();
    for secret in [raw.as_slice(), x.as_bytes(), fixture.record.public_jwk_json.as_bytes()] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(fixture.record.kid.clone());
        let forged = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap();
        assert_eq!(
            unauthenticated(fixture.verifier.verify(&forged).await),
            "access token algorithm does not match its key"
        );
    }
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_rejected() {
    let fixture = fixture();
    let long_ago = now_seconds() - 2 * 3600;
    assert_eq!(
        unauthenticated(fixture.verifier.verify(&token(&fixture.signer, long_ago)).await),
        "access token expired"
    );
    let later = now_seconds() + 600;
    assert_eq!(
        unauthenticated(fixture.verifier.verify(&token(&fixture.signer, later)).await),
        "access token not yet valid"
    );
}

#[tokio::test]
async fn wrong_issuer_or_audience_is_rejected() {
    let fixture = fixture();
    let now = now_seconds();
    let token = fixture.signer.issue(ISSUER, "other-api", "client-7", now, 3600).unwrap().access_token;
    assert_eq!(unauthenticated(fixture.verifier.verify(&token).await), "access token not issued for this service");
    // Another issuer is routed to external servers only, and none is registered for it.
    let token = fixture.signer.issue("someone-else", AUDIENCE, "client-7", now, 3600).unwrap().access_token;
    assert_eq!(unauthenticated(fixture.verifier.verify(&token).await), "access token issuer is not trusted");
}

#[tokio::test]
async fn tokens_without_kid_or_with_an_unknown_kid_are_rejected() {
    let fixture = fixture();
    let stranger = Signer::from_record(&keys::generate_signing_key(0).unwrap()).unwrap();
    assert_eq!(
        unauthenticated(fixture.verifier.verify(&token(&stranger, now_seconds())).await),
        "access token signed by an unknown key"
    );
    // A fixed key set never fetches.
    assert_eq!(fixture.verifier.key_set_fetches(), 0);

    let now = now_seconds();
    let claims = serde_json::json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "c", "exp": now + 60, "nbf": now, "iat": now, "jti": "j" });
    let key = EncodingKey::from_ed_pem(fixture.record.private_key_pem.as_bytes()).unwrap();
    let no_kid = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &key).unwrap();
    assert_eq!(unauthenticated(fixture.verifier.verify(&no_kid).await), "access token has no key id");
}

#[tokio::test]
async fn a_kid_naming_another_published_key_does_not_verify() {
    let first = keys::generate_signing_key(0).unwrap();
    let second = keys::generate_signing_key(0).unwrap();
    let verifier = TokenVerifier::from_key_set(&key_set(&[first.clone(), second.clone()])).unwrap();
    let mut swapped = second.clone();
    swapped.private_key_pem = first.private_key_pem.clone();
    let liar = Signer::from_record(&swapped).unwrap();
    assert_eq!(unauthenticated(verifier.verify(&token(&liar, now_seconds())).await), "access token signature invalid");
    let honest = Signer::from_record(&second).unwrap();
    assert!(verifier.verify(&token(&honest, now_seconds())).await.is_ok());
}

#[test]
fn unsupported_keys_in_the_set_are_ignored() {
    let record = keys::generate_signing_key(0).unwrap();
    let x = public_key_x(&record);
    let jwks = serde_json::json!({ "keys": [
        { "kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256" },
        { "kty": "OKP", "crv": "Ed25519", "x": x, "kid": "no-alg" },
        { "kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "short", "alg": "EdDSA" },
        serde_json::from_str::<serde_json::Value>(&record.public_jwk_json).unwrap(),
    ]});
    let set = KeySet {
        jwks_json: jwks.to_string(),
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        ..Default::default()
    };
    let state = parse_key_set(&set).unwrap();
    let kids: Vec<&String> = state.keys.keys().collect();
    assert_eq!(kids, [&record.kid]);
    assert!(TokenVerifier::from_key_set(&KeySet { jwks_json: "nope".to_owned(), ..set }).is_err());
}

// ----- external authorization servers -----

use switchboard_proto::AuthServerInfo;
use switchboard_testkit::FakeIdp;
use switchboard_testkit::idp::{EC_KID, RSA_KID};

const IDP_AUDIENCE: &str = "api://switchboard";

fn with_idp(idp: &FakeIdp, algorithm: &str, check_issuer: bool) -> TokenVerifier {
    let mut set = key_set(&[keys::generate_signing_key(0).unwrap()]);
    set.external_servers = vec![AuthServerInfo {
        url: idp.jwks_url.clone(),
        algorithm: algorithm.to_owned(),
        issuer: if check_issuer { idp.issuer.clone() } else { String::new() },
        audience: IDP_AUDIENCE.to_owned(),
        created_unix_ms: 0,
    }];
    TokenVerifier::from_key_set(&set).unwrap().with_min_refresh_interval(Duration::from_secs(3600))
}

#[tokio::test]
async fn rs256_and_es256_tokens_of_a_registered_idp_verify() {
    let idp = FakeIdp::start().await;
    let verifier = with_idp(&idp, "", true);
    let claims = idp.claims("portal-app", IDP_AUDIENCE, 0, 600);
    for token in [idp.sign_rs256(&claims, None), idp.sign_es256(&claims)] {
        let verified = verifier.verify(&token).await.unwrap();
        assert_eq!(verified.client_id, "portal-app");
        assert_eq!(verified.source, TokenSource::External { url: idp.jwks_url.clone() });
    }
    assert_eq!(verifier.jwks_fetches(), 1, "the JWKS is cached");
}

#[tokio::test]
async fn idp_tokens_with_bad_claims_are_rejected() {
    let idp = FakeIdp::start().await;
    let verifier = with_idp(&idp, "", true);
    let expired = idp.claims("a", IDP_AUDIENCE, -7200, 600);
    assert_eq!(unauthenticated(verifier.verify(&idp.sign_rs256(&expired, None)).await), "access token expired");
    let early = idp.claims("a", IDP_AUDIENCE, 3600, 600);
    assert_eq!(unauthenticated(verifier.verify(&idp.sign_es256(&early)).await), "access token not yet valid");
    let wrong_audience = idp.claims("a", "someone-else", 0, 600);
    assert_eq!(
        unauthenticated(verifier.verify(&idp.sign_rs256(&wrong_audience, None)).await),
        "access token not issued for this service"
    );
    let mut no_client = idp.claims("a", IDP_AUDIENCE, 0, 600);
    no_client.as_object_mut().unwrap().remove("sub");
    assert_eq!(
        unauthenticated(verifier.verify(&idp.sign_rs256(&no_client, None)).await),
        "access token names no client"
    );
    // An issuer nobody registered is not routed anywhere.
    let mut stranger = idp.claims("a", IDP_AUDIENCE, 0, 600);
    stranger["iss"] = "https://evil.example/".into();
    assert_eq!(
        unauthenticated(verifier.verify(&idp.sign_rs256(&stranger, None)).await),
        "access token issuer is not trusted"
    );
}

#[tokio::test]
async fn idp_algorithm_confusion_and_symmetric_keys_are_refused() {
    let idp = FakeIdp::start().await;
    let verifier = with_idp(&idp, "", true);
    let claims = idp.claims("attacker", IDP_AUDIENCE, 0, 600);
    // HS256 keyed with the RSA public modulus, naming the RSA key.
    let confused = FakeIdp::sign_hs256(&claims, RSA_KID, idp.rsa_public_n.as_bytes());
    assert_eq!(unauthenticated(verifier.verify(&confused).await), "access token algorithm does not match its key");
    // The `oct` key in the JWKS is never loaded, so its secret forges nothing.
    let symmetric = FakeIdp::sign_hs256(&claims, "idp-hmac", b"shared");
    assert_eq!(unauthenticated(verifier.verify(&symmetric).await), "access token signed by an unknown key");
    // alg none naming the EC key.
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let header = URL_SAFE_NO_PAD.encode(serde_json::json!({ "alg": "none", "kid": EC_KID }).to_string());
    unauthenticated(verifier.verify(&format!("{header}.{payload}.")).await);
    // A forged signature.
    let good = idp.sign_es256(&claims);
    let (head, _) = good.rsplit_once('.').unwrap();
    let forged = format!("{head}.{}", URL_SAFE_NO_PAD.encode([7u8; 64]));
    assert_eq!(unauthenticated(verifier.verify(&forged).await), "access token signature invalid");
}

#[tokio::test]
async fn a_pinned_algorithm_excludes_keys_of_other_types() {
    let idp = FakeIdp::start().await;
    let verifier = with_idp(&idp, "ES256", false);
    let claims = idp.claims("a", IDP_AUDIENCE, 0, 600);
    assert!(verifier.verify(&idp.sign_es256(&claims)).await.is_ok());
    assert_eq!(
        unauthenticated(verifier.verify(&idp.sign_rs256(&claims, None)).await),
        "access token signed by an unknown key"
    );
}

#[tokio::test]
async fn an_unknown_idp_kid_refreshes_the_jwks_once() {
    let idp = FakeIdp::start().await;
    let verifier = with_idp(&idp, "", true).with_min_refresh_interval(Duration::ZERO);
    let claims = idp.claims("a", IDP_AUDIENCE, 0, 600);
    assert!(verifier.verify(&idp.sign_rs256(&claims, None)).await.is_ok());
    assert_eq!(idp.jwks_fetches(), 1);
    let unknown = idp.sign_rs256(&claims, Some("rotated-in"));
    assert_eq!(unauthenticated(verifier.verify(&unknown).await), "access token signed by an unknown key");
    assert_eq!(idp.jwks_fetches(), 2, "exactly one refresh for the unknown kid");
}

#[tokio::test]
async fn unknown_idp_kids_cannot_hammer_the_idp() {
    let idp = FakeIdp::start().await;
    let verifier = with_idp(&idp, "", true);
    let claims = idp.claims("a", IDP_AUDIENCE, 0, 600);
    assert!(verifier.verify(&idp.sign_rs256(&claims, None)).await.is_ok());
    for attempt in 0..20 {
        let unknown = idp.sign_rs256(&claims, Some(&format!("garbage-{attempt}")));
        assert_eq!(unauthenticated(verifier.verify(&unknown).await), "access token signed by an unknown key");
    }
    assert_eq!(idp.jwks_fetches(), 1, "no refresh within the minimum refresh interval");
    assert!(verifier.verify(&idp.sign_es256(&claims)).await.is_ok(), "known keys still verify");
}

#[tokio::test]
async fn oversized_tokens_are_rejected_before_parsing() {
    let fixture = fixture();
    let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(unauthenticated(fixture.verifier.verify(&huge).await), "access token too large");
}
