//! Reachable: a backend that works answers its health check (an outage is each backend's own test:
//! `store/tests/conformance_redis.rs` stops its server).

use std::sync::Arc;

use crate::Backend;

/// Every reachability check, against a fresh backend from `make`.
pub(super) async fn run<F, Fut>(make: &F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Backend>>,
{
    let backend = make().await;
    backend.ping().await.expect("a working backend answers ping");
    backend
        .put_signing_key(switchboard_proto::SigningKeyRecord { kid: "k".into(), ..Default::default() })
        .await
        .unwrap();
    backend.ping().await.expect("ping changes nothing and still answers");
    assert_eq!(backend.list_signing_keys().await.unwrap().len(), 1, "ping leaves the data alone");
}
