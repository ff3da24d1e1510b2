//! Token verification against a fixed key set: what passes and every way a token must fail.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};
use switchboard_proto::KeySet;
use switchboard_session_store::backend::SigningKeyRecord;

use super::*;
use crate::keys;
use crate::tokens::Signer;

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
    let claims = crate::tokens::TokenClaims {
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
    for (issuer, audience) in [("someone-else", AUDIENCE), (ISSUER, "other-api")] {
        let token = fixture.signer.issue(issuer, audience, "client-7", now, 3600).unwrap().access_token;
        assert_eq!(unauthenticated(fixture.verifier.verify(&token).await), "access token not issued for this service");
    }
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
