//! Idempotency: claims, stored answers, body mismatches, expiry, release, and one winner among concurrent
//! claims.

use std::sync::Arc;
use std::time::Duration;

use crate::idempotency::scope_key;
use crate::{Backend, IdempotencyClaim};

/// Every idempotency check, each against a fresh backend from `make`.
pub(super) async fn run<F, Fut>(make: &F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Backend>>,
{
    claim_then_complete(make().await).await;
    keys_are_scoped_by_client(make().await).await;
    release_lets_a_retry_run(make().await).await;
    claims_and_answers_expire(make().await).await;
    one_of_concurrent_claims_wins(make().await).await;
}

/// A claim long enough never to expire during a check.
const LONG: Duration = Duration::from_secs(600);
/// Upper bound for polling until a short-lived record expired.
const EXPIRY_WAIT: Duration = Duration::from_secs(10);

fn body(text: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).to_vec()
}

async fn claim_then_complete(backend: Arc<dyn Backend>) {
    let key = scope_key("client", "key-1");
    let claim = |body_hash: Vec<u8>| {
        let (backend, key) = (backend.clone(), key.clone());
        async move { backend.claim_idempotency_key(&key, &body_hash, LONG).await.unwrap() }
    };
    assert_eq!(claim(body("a")).await, IdempotencyClaim::Claimed, "a new key is claimed");
    assert_eq!(claim(body("a")).await, IdempotencyClaim::InProgress, "a retry while the first runs");
    assert_eq!(claim(body("b")).await, IdempotencyClaim::Mismatch, "another body while the first runs");
    assert!(backend.complete_idempotency_key(&key, b"answer".to_vec(), LONG).await.unwrap(), "completes the claim");
    assert_eq!(claim(body("a")).await, IdempotencyClaim::Done(b"answer".to_vec()), "a retry gets the answer");
    assert_eq!(claim(body("b")).await, IdempotencyClaim::Mismatch, "another body after the first finished");
    assert!(
        !backend.complete_idempotency_key(&key, b"other".to_vec(), LONG).await.unwrap(),
        "a done record is not completed again"
    );
    backend.release_idempotency_key(&key).await.unwrap();
    assert_eq!(
        claim(body("a")).await,
        IdempotencyClaim::Done(b"answer".to_vec()),
        "release leaves a done record, answer unchanged"
    );
    let unclaimed = scope_key("client", "never-claimed");
    assert!(
        !backend.complete_idempotency_key(&unclaimed, b"x".to_vec(), LONG).await.unwrap(),
        "no answer is stored without a claim"
    );
    assert_eq!(
        backend.claim_idempotency_key(&unclaimed, &body("a"), LONG).await.unwrap(),
        IdempotencyClaim::Claimed,
        "a refused completion left nothing behind"
    );
}

async fn keys_are_scoped_by_client(backend: Arc<dyn Backend>) {
    let (first, second) = (scope_key("client-1", "shared"), scope_key("client-2", "shared"));
    assert_eq!(backend.claim_idempotency_key(&first, &body("a"), LONG).await.unwrap(), IdempotencyClaim::Claimed);
    assert_eq!(
        backend.claim_idempotency_key(&second, &body("b"), LONG).await.unwrap(),
        IdempotencyClaim::Claimed,
        "another client's use of the same key is independent"
    );
}

async fn release_lets_a_retry_run(backend: Arc<dyn Backend>) {
    let key = scope_key("client", "released");
    assert_eq!(backend.claim_idempotency_key(&key, &body("a"), LONG).await.unwrap(), IdempotencyClaim::Claimed);
    backend.release_idempotency_key(&key).await.unwrap();
    assert_eq!(
        backend.claim_idempotency_key(&key, &body("b"), LONG).await.unwrap(),
        IdempotencyClaim::Claimed,
        "a released key is free again, for any body"
    );
    backend.release_idempotency_key(&scope_key("client", "unknown")).await.unwrap();
}

/// Claims `key` with `body_hash` until the claim succeeds (the earlier record expired); bounded.
async fn claim_once_expired(backend: &Arc<dyn Backend>, key: &str, body_hash: &[u8], what: &str) {
    let deadline = tokio::time::Instant::now() + EXPIRY_WAIT;
    loop {
        match backend.claim_idempotency_key(key, body_hash, LONG).await.unwrap() {
            IdempotencyClaim::Claimed => return,
            other if tokio::time::Instant::now() < deadline => {
                assert_eq!(other, IdempotencyClaim::Mismatch, "{what}: until it expires, the record is live");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("{what}: still {other:?} after {EXPIRY_WAIT:?}"),
        }
    }
}

async fn claims_and_answers_expire(backend: Arc<dyn Backend>) {
    let short = Duration::from_millis(50);
    let claimed = scope_key("client", "claim-expires");
    assert_eq!(backend.claim_idempotency_key(&claimed, &body("a"), short).await.unwrap(), IdempotencyClaim::Claimed);
    claim_once_expired(&backend, &claimed, &body("b"), "an abandoned claim").await;

    let answered = scope_key("client", "answer-expires");
    assert_eq!(backend.claim_idempotency_key(&answered, &body("a"), LONG).await.unwrap(), IdempotencyClaim::Claimed);
    assert!(backend.complete_idempotency_key(&answered, b"answer".to_vec(), short).await.unwrap());
    claim_once_expired(&backend, &answered, &body("b"), "a stored answer").await;
    assert_eq!(
        backend.claim_idempotency_key(&answered, &body("b"), LONG).await.unwrap(),
        IdempotencyClaim::InProgress,
        "the new claim replaced the expired answer"
    );
    // Many expired records, then one more claim each: pruning removes old records but never a live one.
    for index in 0..40 {
        let key = scope_key("client", &format!("bulk-{index}"));
        assert_eq!(backend.claim_idempotency_key(&key, &body("a"), short).await.unwrap(), IdempotencyClaim::Claimed);
    }
    claim_once_expired(&backend, &scope_key("client", "bulk-0"), &body("b"), "bulk records").await;
    for index in 0..40 {
        let key = scope_key("client", &format!("fresh-{index}"));
        assert_eq!(backend.claim_idempotency_key(&key, &body("a"), LONG).await.unwrap(), IdempotencyClaim::Claimed);
    }
    assert_eq!(
        backend.claim_idempotency_key(&answered, &body("b"), LONG).await.unwrap(),
        IdempotencyClaim::InProgress,
        "pruning expired records kept the live one that replaced an expired record"
    );
}

async fn one_of_concurrent_claims_wins(backend: Arc<dyn Backend>) {
    let key = scope_key("client", "raced");
    let claims = (0..16).map(|_| {
        let (backend, key) = (backend.clone(), key.clone());
        tokio::spawn(async move { backend.claim_idempotency_key(&key, &body("a"), LONG).await.unwrap() })
    });
    let outcomes: Vec<IdempotencyClaim> =
        futures::future::join_all(claims).await.into_iter().map(|joined| joined.unwrap()).collect();
    let won = outcomes.iter().filter(|claim| **claim == IdempotencyClaim::Claimed).count();
    assert_eq!(won, 1, "exactly one of concurrent claims wins: {outcomes:?}");
    assert!(
        outcomes.iter().all(|claim| matches!(claim, IdempotencyClaim::Claimed | IdempotencyClaim::InProgress)),
        "the others see it in progress: {outcomes:?}"
    );
}
