//! The negative security suite, against the in-process all-in-one cluster over HTTPS: every
//! attack on the API's authentication and authorization, and what the system answers.
//!
//! Each attack prints one `ATTACK <name>: <status> <body>` line (run with `--nocapture` to see
//! them); the assertions pin status and body. Tokens with valid signatures but bad claims are
//! minted with the cluster's real signing key (read from its store), so the claim checks
//! themselves are exercised, not just the signature check. External-IdP attacks use a local
//! JWKS server (`switchboard_testkit::FakeIdp`) signing RS256 and ES256 tokens.
//!
//! The cluster runs with a client-cache time and key-set refresh of zero, so revocation and
//! unregistration take effect on the next request (the production bound is the configured
//! `client_cache_seconds` / `key_set_refresh_seconds`, see docs/security.md).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchboard::{Cluster, UpConfig};
use switchboard_gateway::GatewayConfig;
use switchboard_gateway::limits::LimitsConfig;
use switchboard_proto::{AuthServerInfo, RegisterApiClientRequest, RegisterAuthServerRequest};
use switchboard_store::SigningKeyRecord;
use switchboard_testkit::FakeIdp;
use switchboard_testkit::idp::RSA_KID;

struct Suite {
    cluster: Cluster,
    http: reqwest::Client,
    _data_dir: tempfile::TempDir,
}

/// One answer of the API.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    body: Value,
    retry_after: Option<String>,
}

fn report(attack: &str, answer: &Answer) {
    let body = answer.body.to_string();
    let shown: String = body.chars().take(300).collect();
    let more = if shown.len() < body.len() { "…" } else { "" };
    println!("ATTACK {attack}: {} {shown}{more}", answer.status.as_u16());
}

fn now() -> i64 {
    switchboard_common::time::now_ms() / 1000
}

impl Suite {
    async fn start(tune: impl FnOnce(&mut UpConfig)) -> Suite {
        switchboard_common::telemetry::init_for_tests();
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = UpConfig {
            gateway: GatewayConfig {
                client_cache_seconds: 0,
                key_set_refresh_seconds: 0,
                key_set_min_refresh_interval: Duration::ZERO,
                ..GatewayConfig::default()
            },
            ..UpConfig::ephemeral(data_dir.path(), 1)
        };
        config.auth.key_publish_delay_seconds = 0;
        tune(&mut config);
        let cluster = Cluster::start(config).await.expect("cluster starts");
        cluster.wait_ready(1, Duration::from_secs(20)).await.expect("host connects");
        let ca = reqwest::Certificate::from_pem(cluster.ca_pem.as_bytes()).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(ca)
            .tls_built_in_root_certs(false)
            .https_only(true)
            .build()
            .unwrap();
        Suite { cluster, http, _data_dir: data_dir }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.cluster.api_url)
    }

    async fn register(&self, name: &str, read_only: bool, owners: &[&str]) -> (String, String) {
        let request = RegisterApiClientRequest {
            client_name: name.into(),
            read_only,
            allowed_owners: owners.iter().map(|o| o.to_string()).collect(),
        };
        let response = self.cluster.admin.client().unwrap().register_api_client(request).await.unwrap().into_inner();
        (response.client_id, response.client_secret)
    }

    async fn token_answer(&self, id: &str, secret: &str) -> Answer {
        let response = self
            .http
            .post(self.url("/oauth2/token?grant_type=client_credentials"))
            .basic_auth(id, Some(secret))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send()
            .await
            .unwrap();
        answer(response).await
    }

    async fn token(&self, id: &str, secret: &str) -> String {
        let answer = self.token_answer(id, secret).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        answer.body["access_token"].as_str().unwrap().to_owned()
    }

    async fn call(&self, token: &str, path: &str, body: Value) -> Answer {
        answer(self.http.post(self.url(path)).bearer_auth(token).json(&body).send().await.unwrap()).await
    }

    async fn signing_key(&self) -> SigningKeyRecord {
        let keys = self.cluster.backend().list_signing_keys().await.unwrap();
        switchboard_auth::keys::current_key(&keys, switchboard_common::time::now_ms()).unwrap().clone()
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    Answer { status, body, retry_after }
}

/// A token with `claims`, signed with the cluster's real key.
fn sign_with(key: &SigningKeyRecord, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_pem(key.private_key_pem.as_bytes()).unwrap()).unwrap()
}

fn claims(sub: &str, iss: &str, aud: &str, start: i64, lifetime: i64) -> Value {
    json!({ "iss": iss, "aud": aud, "sub": sub, "iat": start, "nbf": start, "exp": start + lifetime, "jti": "attack" })
}

fn assert_unauthenticated(attack: &str, answer: &Answer, message: &str) {
    report(attack, answer);
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{attack}: {answer:?}");
    assert_eq!(answer.body, json!({ "error": message }), "{attack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_misissued_tokens_are_refused() {
    let suite = Suite::start(|_| {}).await;
    let (id, secret) = suite.register("victim", false, &[]).await;
    let good = suite.token(&id, &secret).await;
    assert_eq!(suite.call(&good, "/describeSessions", json!({})).await.status, StatusCode::OK);
    let key = suite.signing_key().await;
    let (iss, aud) = ("switchboard", "switchboard-api");
    let parts: Vec<&str> = good.split('.').collect();

    // Forged signature: the good token with one signature byte flipped.
    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[0] ^= 1;
    let forged = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&signature));
    let answer = suite.call(&forged, "/describeSessions", json!({})).await;
    assert_unauthenticated("forged signature", &answer, "Access token signature invalid");

    // Forged claims: another subject under the original signature.
    let mut payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["sub"] = "someone-else".into();
    let swapped = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(payload.to_string()), parts[2]);
    let answer = suite.call(&swapped, "/describeSessions", json!({})).await;
    assert_unauthenticated("forged claims (sub swapped)", &answer, "Access token signature invalid");

    // alg none, naming our key.
    let header = URL_SAFE_NO_PAD.encode(json!({ "alg": "none", "typ": "JWT", "kid": key.kid }).to_string());
    let unsigned = format!("{header}.{}.", parts[1]);
    let answer = suite.call(&unsigned, "/describeSessions", json!({})).await;
    report("alg none", &answer);
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    // HS256 keyed with our public key (raw bytes and the JWK's base64 text).
    let jwk: Value = serde_json::from_str(&key.public_jwk_json).unwrap();
    let x = jwk["x"].as_str().unwrap();
    for (what, secret) in
        [("raw public key", URL_SAFE_NO_PAD.decode(x).unwrap()), ("public key text", x.as_bytes().to_vec())]
    {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        let claims = claims(&id, iss, aud, now(), 600);
        let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret)).unwrap();
        let answer = suite.call(&token, "/describeSessions", json!({})).await;
        assert_unauthenticated(
            &format!("HS256 signed with the {what}"),
            &answer,
            "Access token algorithm does not match its key",
        );
    }

    // Valid signatures, bad claims.
    let cases = [
        ("expired", claims(&id, iss, aud, now() - 7200, 3600), "Access token expired"),
        ("not yet valid", claims(&id, iss, aud, now() + 3600, 3600), "Access token not yet valid"),
        ("wrong audience", claims(&id, iss, "another-api", now(), 600), "Access token not issued for this service"),
    ];
    for (attack, claims, message) in cases {
        let answer = suite.call(&sign_with(&key, &claims), "/describeSessions", json!({})).await;
        assert_unauthenticated(attack, &answer, message);
    }
    // A foreign issuer is not one of ours and no external server is registered for it.
    let answer =
        suite.call(&sign_with(&key, &claims(&id, "evil", aud, now(), 600)), "/describeSessions", json!({})).await;
    assert_unauthenticated("wrong issuer", &answer, "Access token issuer is not trusted");

    // Unknown kid: a key that is not in the key set (refreshed once, still unknown).
    let stranger = switchboard_auth::keys::generate_signing_key(0).unwrap();
    let answer =
        suite.call(&sign_with(&stranger, &claims(&id, iss, aud, now(), 600)), "/describeSessions", json!({})).await;
    assert_unauthenticated("unknown kid", &answer, "Access token signed by an unknown key");
    // Our kid in the header, the stranger's signature.
    let liar = SigningKeyRecord { kid: key.kid.clone(), ..stranger };
    let answer =
        suite.call(&sign_with(&liar, &claims(&id, iss, aud, now(), 600)), "/describeSessions", json!({})).await;
    assert_unauthenticated("known kid, other key's signature", &answer, "Access token signature invalid");

    // Garbage and oversized bearer values.
    let answer = suite.call("not-a-jwt", "/describeSessions", json!({})).await;
    assert_unauthenticated("garbage bearer token", &answer, "Malformed access token");
    let answer = suite.call(&"a".repeat(20_000), "/describeSessions", json!({})).await;
    report("20 kB bearer token", &answer);
    assert!(
        matches!(answer.status, StatusCode::UNAUTHORIZED | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        "{answer:?}"
    );

    // The legitimate token still works after all that.
    assert_eq!(suite.call(&good, "/describeSessions", json!({})).await.status, StatusCode::OK);
    suite.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_clients_lose_access_and_wrong_secrets_get_nothing() {
    let suite = Suite::start(|_| {}).await;
    let (id, secret) = suite.register("leaver", false, &[]).await;
    let token = suite.token(&id, &secret).await;
    assert_eq!(suite.call(&token, "/describeSessions", json!({})).await.status, StatusCode::OK);

    let answer = suite.token_answer(&id, "wrong-secret").await;
    report("token request with a wrong secret", &answer);
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.body["error"], "invalid_client");
    let answer = suite.token_answer("no-such-client", &secret).await;
    report("token request for an unknown client", &answer);
    assert_eq!(answer.body["error"], "invalid_client");

    let request = switchboard_proto::UnregisterApiClientRequest { client_id: id.clone() };
    suite.cluster.admin.client().unwrap().unregister_api_client(request).await.unwrap();
    let answer = suite.call(&token, "/describeSessions", json!({})).await;
    assert_unauthenticated(
        "revoked client's unexpired token",
        &answer,
        "The API client of this access token is no longer registered",
    );
    let answer = suite.token_answer(&id, &secret).await;
    report("revoked client asks for a new token", &answer);
    assert_eq!((answer.status, answer.body["error"].clone()), (StatusCode::UNAUTHORIZED, json!("invalid_client")));
    suite.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_clients_stay_in_scope() {
    let suite = Suite::start(|_| {}).await;
    let (full_id, full_secret) = suite.register("operator", false, &[]).await;
    let operator = suite.token(&full_id, &full_secret).await;
    let created =
        suite.call(&operator, "/createSessions", json!([{ "Name": "b", "Owner": "bob", "Type": "VIRTUAL" }])).await;
    assert_eq!(created.status, StatusCode::OK, "{created:?}");
    let bobs = created.body["SuccessfulList"][0]["Id"].as_str().unwrap().to_owned();

    let (reader_id, reader_secret) = suite.register("dashboard", true, &[]).await;
    let reader = suite.token(&reader_id, &reader_secret).await;
    assert_eq!(suite.call(&reader, "/describeSessions", json!({})).await.status, StatusCode::OK);
    let answer =
        suite.call(&reader, "/createSessions", json!([{ "Name": "x", "Owner": "bob", "Type": "VIRTUAL" }])).await;
    report("read-only client calls createSessions", &answer);
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.body, json!({ "error": "The API client is read-only and may not call CreateSessions" }));
    let answer = suite.call(&reader, "/deleteSessions", json!([{ "SessionId": bobs, "Owner": "bob" }])).await;
    report("read-only client calls deleteSessions", &answer);
    assert_eq!(answer.status, StatusCode::FORBIDDEN);

    let (tenant_id, tenant_secret) = suite.register("alice-portal", false, &["alice"]).await;
    let tenant = suite.token(&tenant_id, &tenant_secret).await;
    let answer =
        suite.call(&tenant, "/createSessions", json!([{ "Name": "x", "Owner": "bob", "Type": "VIRTUAL" }])).await;
    report("owner-restricted client creates a session for another owner", &answer);
    assert_eq!(
        (answer.status, answer.body.clone()),
        (StatusCode::FORBIDDEN, json!({ "error": "The API client may not act for owner \"bob\"" }))
    );
    let answer = suite.call(&tenant, "/deleteSessions", json!([{ "SessionId": bobs, "Owner": "bob" }])).await;
    report("owner-restricted client deletes another owner's session", &answer);
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let answer = suite.call(&tenant, "/describeSessions", json!({ "SessionIds": [bobs] })).await;
    report("owner-restricted client describes another owner's session by id", &answer);
    assert_eq!((answer.status, answer.body["Sessions"].clone()), (StatusCode::OK, json!([])));
    let answer = suite.call(&tenant, "/describeSessions", json!({})).await;
    assert!(answer.body["Sessions"].as_array().unwrap().iter().all(|s| s["Owner"] == "alice"), "{answer:?}");
    let own =
        suite.call(&tenant, "/createSessions", json!([{ "Name": "a", "Owner": "alice", "Type": "VIRTUAL" }])).await;
    assert_eq!(own.status, StatusCode::OK, "its own owner is fine: {own:?}");
    suite.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_and_floods_are_cut_off() {
    let suite = Suite::start(|config| {
        config.gateway.max_body_bytes = 64 * 1024;
        config.gateway.limits = LimitsConfig {
            token_rate_per_minute: 1,
            token_rate_burst: 10,
            api_rate_per_minute: 1,
            api_rate_burst: 20,
            max_header_bytes: 8 * 1024,
            ..LimitsConfig::default()
        };
    })
    .await;
    let (id, secret) = suite.register("flooder", false, &[]).await;
    let token = suite.token(&id, &secret).await;

    let big = json!([{ "Name": "x".repeat(100 * 1024), "Owner": "a", "Type": "VIRTUAL" }]);
    let answer = suite.call(&token, "/createSessions", big).await;
    report("100 kB body (limit 64 kB)", &answer);
    assert_eq!(
        (answer.status, answer.body.clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!({ "error": "Request body is too large" }))
    );

    let answer = answer_of(
        suite.http.post(suite.url("/describeSessions")).bearer_auth(&token).header("x-pad", "p".repeat(12 * 1024)),
    )
    .await;
    report("12 kB header (limit 8 kB)", &answer);
    assert_eq!(answer.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);

    let batch: Vec<Value> =
        (0..101).map(|i| json!({ "Name": format!("s{i}"), "Owner": "a", "Type": "VIRTUAL" })).collect();
    let answer = suite.call(&token, "/createSessions", Value::Array(batch)).await;
    report("createSessions with 101 items (limit 100)", &answer);
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);

    let answer = suite
        .call(
            &token,
            "/createSessions",
            json!([{ "Name": "r", "Owner": "a", "Type": "VIRTUAL", "Requirements": "x = 'y' and ".repeat(1000) }]),
        )
        .await;
    report("createSessions with a 12 kB Requirements expression", &answer);
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.body["UnsuccessfulList"][0]["FailureReason"].as_str().unwrap().contains("Requirements"),
        "{answer:?}"
    );

    // Token endpoint flooding: after the burst, 429 with Retry-After; no upstream work for them.
    let mut refused = None;
    for _ in 0..30 {
        let answer = suite.token_answer(&id, "wrong").await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(answer);
            break;
        }
    }
    let refused = refused.expect("the token endpoint refuses a flood");
    report("token endpoint flooding (burst 10)", &refused);
    assert_eq!(refused.body["error"], "rate_limited");
    assert!(refused.retry_after.as_deref().is_some_and(|s| s.parse::<u64>().unwrap() >= 1), "{refused:?}");

    // API flooding by one client: 429 with Retry-After.
    let mut refused = None;
    for _ in 0..40 {
        let answer = suite.call(&token, "/describeSessions", json!({})).await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(answer);
            break;
        }
    }
    let refused = refused.expect("the API refuses a flood from one client");
    report("API flooding by one client (burst 20)", &refused);
    assert!(refused.retry_after.is_some());
    suite.cluster.stop().await;
}

async fn answer_of(request: reqwest::RequestBuilder) -> Answer {
    answer(request.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_idp_tokens_are_accepted_only_while_registered_and_valid() {
    let suite = Suite::start(|_| {}).await;
    let idp = FakeIdp::start().await;
    let audience = "api://switchboard";
    let server = AuthServerInfo {
        url: idp.jwks_url.clone(),
        issuer: idp.issuer.clone(),
        audience: audience.into(),
        ..Default::default()
    };
    let admin = || suite.cluster.admin.client().unwrap();
    let good_claims = idp.claims("portal-app", audience, 0, 600);

    let answer = suite.call(&idp.sign_rs256(&good_claims, None), "/describeSessions", json!({})).await;
    assert_unauthenticated("IdP token before its server is registered", &answer, "Access token issuer is not trusted");

    admin().register_auth_server(RegisterAuthServerRequest { server: Some(server) }).await.unwrap();
    for (what, token) in [("RS256", idp.sign_rs256(&good_claims, None)), ("ES256", idp.sign_es256(&good_claims))] {
        let answer = suite.call(&token, "/describeSessions", json!({})).await;
        assert_eq!(answer.status, StatusCode::OK, "{what} token of a registered IdP: {answer:?}");
    }
    let cases = [
        ("IdP token, expired", idp.sign_es256(&idp.claims("a", audience, -7200, 600)), "Access token expired"),
        (
            "IdP token, not yet valid",
            idp.sign_rs256(&idp.claims("a", audience, 3600, 600), None),
            "Access token not yet valid",
        ),
        (
            "IdP token, wrong audience",
            idp.sign_rs256(&idp.claims("a", "other", 0, 600), None),
            "Access token not issued for this service",
        ),
        (
            "IdP token, unknown kid",
            idp.sign_rs256(&good_claims, Some("rotated-away")),
            "Access token signed by an unknown key",
        ),
        (
            "IdP token, HS256 keyed with the RSA public key",
            FakeIdp::sign_hs256(&good_claims, RSA_KID, idp.rsa_public_n.as_bytes()),
            "Access token algorithm does not match its key",
        ),
        (
            "IdP token, HS256 with the JWKS's symmetric key",
            FakeIdp::sign_hs256(&good_claims, "idp-hmac", b"shared"),
            "Access token signed by an unknown key",
        ),
    ];
    for (attack, token, message) in cases {
        let answer = suite.call(&token, "/describeSessions", json!({})).await;
        assert_unauthenticated(attack, &answer, message);
    }

    let request = switchboard_proto::UnregisterAuthServerRequest { url: idp.jwks_url.clone() };
    admin().unregister_auth_server(request).await.unwrap();
    let answer = suite.call(&idp.sign_rs256(&good_claims, None), "/describeSessions", json!({})).await;
    assert_unauthenticated(
        "IdP token after its server was unregistered",
        &answer,
        "Access token issuer is not trusted",
    );
    suite.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_keeps_old_tokens_valid_and_signs_with_the_new_key() {
    let suite = Suite::start(|_| {}).await;
    let (id, secret) = suite.register("rotating", false, &[]).await;
    let before = suite.token(&id, &secret).await;
    let old_kid = jsonwebtoken::decode_header(&before).unwrap().kid.unwrap();
    let rotation = suite
        .cluster
        .admin
        .client()
        .unwrap()
        .rotate_signing_key(switchboard_proto::RotateSigningKeyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rotation.retiring_kids, std::slice::from_ref(&old_kid));
    // The auth service caches its signer briefly; wait until it signs with the new key.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let after = loop {
        let token = suite.token(&id, &secret).await;
        if jsonwebtoken::decode_header(&token).unwrap().kid.unwrap() == rotation.kid {
            break token;
        }
        assert!(tokio::time::Instant::now() < deadline, "the new key never signed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(suite.call(&after, "/describeSessions", json!({})).await.status, StatusCode::OK, "new key verifies");
    // Both keys are published; no private material is.
    let jwks = answer_of(suite.http.get(suite.url("/.well-known/jwks.json"))).await;
    assert_eq!(jwks.status, StatusCode::OK);
    let kids: Vec<&str> = jwks.body["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert!(kids.contains(&rotation.kid.as_str()) && kids.contains(&old_kid.as_str()), "{kids:?}");
    assert!(jwks.body["keys"].as_array().unwrap().iter().all(|k| k.get("d").is_none()), "no private keys");
    assert_eq!(
        suite.call(&before, "/describeSessions", json!({})).await.status,
        StatusCode::OK,
        "old key still verifies"
    );
    suite.cluster.stop().await;
}
