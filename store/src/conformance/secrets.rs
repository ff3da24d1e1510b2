//! Secrets: shared secrets agree across racing callers; token ids are used once.

use std::collections::HashSet;
use std::sync::Arc;

use crate::Backend;

/// Every secrets check, each against a fresh backend from `make`.
pub(super) async fn run<F, Fut>(make: &F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Backend>>,
{
    shared_secrets(make().await).await;
    tokens_are_used_once(make().await).await;
}

async fn shared_secrets(backend: Arc<dyn Backend>) {
    let first = backend.shared_secret("page-token", vec![1; 32]).await.unwrap();
    assert_eq!(first, vec![1; 32], "shared_secret stores the first candidate");
    let again = backend.shared_secret("page-token", vec![2; 32]).await.unwrap();
    assert_eq!(again, vec![1; 32], "shared_secret never replaces a stored secret");
    let other = backend.shared_secret("other", vec![3; 16]).await.unwrap();
    assert_eq!(other, vec![3; 16], "shared secrets are kept per name");

    // Racing callers all get the same (first stored) value.
    let racers: Vec<_> = (0..8u8)
        .map(|i| {
            let backend = backend.clone();
            tokio::spawn(async move { backend.shared_secret("raced", vec![i; 32]).await.unwrap() })
        })
        .collect();
    let mut seen = HashSet::new();
    for racer in racers {
        seen.insert(racer.await.unwrap());
    }
    assert_eq!(seen.len(), 1, "every racer of shared_secret gets the same secret");
}

async fn tokens_are_used_once(backend: Arc<dyn Backend>) {
    let later = switchboard_common::time::now_ms() + 60_000;
    assert!(backend.use_token_once("jti-1", later).await.unwrap(), "the first use of a token id is accepted");
    assert!(!backend.use_token_once("jti-1", later).await.unwrap(), "a second use is refused");
    assert!(backend.use_token_once("jti-2", later).await.unwrap(), "other token ids are independent");
    let concurrent = futures::future::join_all((0..8).map(|_| backend.use_token_once("jti-3", later))).await;
    let accepted = concurrent.into_iter().filter(|outcome| *outcome.as_ref().unwrap()).count();
    assert_eq!(accepted, 1, "exactly one of concurrent uses is accepted");
}
