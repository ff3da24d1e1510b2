//! Webhooks: subscriptions stored, listed, updated only while they exist, removed with their dead letters;
//! dead letters newest first and bounded.

use std::sync::Arc;

use switchboard_proto::{DeadLetterRecord, EventRecord, WebhookRecord};

use crate::Backend;
use crate::webhooks::DEAD_LETTERS_KEPT;

/// Every webhook check, each against a fresh backend from `make`.
pub(super) async fn run<F, Fut>(make: &F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Backend>>,
{
    subscriptions(make().await).await;
    dead_letters_are_bounded_and_go_with_their_webhook(make().await).await;
}

fn webhook(id: &str) -> WebhookRecord {
    WebhookRecord {
        id: id.into(),
        url: format!("https://{id}.example/hook"),
        event_types: vec!["session.state".into()],
        secret: "s3cret".into(),
        created_unix_ms: 1,
        ..Default::default()
    }
}

async fn subscriptions(backend: Arc<dyn Backend>) {
    backend.insert_webhook(webhook("wh-b")).await.unwrap();
    backend.insert_webhook(webhook("wh-a")).await.unwrap();
    assert!(backend.insert_webhook(webhook("wh-a")).await.is_err(), "an id is taken once");
    let listed = backend.list_webhooks().await.unwrap();
    assert_eq!(listed.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(), ["wh-a", "wh-b"], "in id order");
    assert_eq!(listed[0], webhook("wh-a"), "stored as given, secret included");
    let progressed =
        WebhookRecord { cursor: "5-0".into(), attempts: 2, last_error: "HTTP 500".into(), ..webhook("wh-a") };
    assert!(backend.update_webhook(progressed.clone()).await.unwrap(), "an existing one is updated");
    assert_eq!(backend.list_webhooks().await.unwrap()[0], progressed);
    assert!(backend.remove_webhook("wh-a").await.unwrap());
    assert!(!backend.remove_webhook("wh-a").await.unwrap(), "removed once");
    assert!(!backend.update_webhook(progressed).await.unwrap(), "an update never brings a removed one back");
    assert_eq!(backend.list_webhooks().await.unwrap().len(), 1);
}

async fn dead_letters_are_bounded_and_go_with_their_webhook(backend: Arc<dyn Backend>) {
    backend.insert_webhook(webhook("wh-1")).await.unwrap();
    let letter = |n: usize| DeadLetterRecord {
        webhook_id: "wh-1".into(),
        event: Some(EventRecord { id: format!("{n}-0"), ..Default::default() }),
        attempts: 3,
        last_error: "timeout".into(),
        failed_unix_ms: n as i64,
    };
    for n in 0..DEAD_LETTERS_KEPT + 5 {
        backend.add_dead_letter(letter(n)).await.unwrap();
    }
    let letters = backend.dead_letters("wh-1").await.unwrap();
    assert_eq!(letters.len(), DEAD_LETTERS_KEPT, "bounded");
    assert_eq!(letters[0], letter(DEAD_LETTERS_KEPT + 4), "newest first");
    assert_eq!(letters.last().unwrap(), &letter(5), "the oldest dropped");
    assert!(backend.dead_letters("wh-2").await.unwrap().is_empty());
    backend.remove_webhook("wh-1").await.unwrap();
    assert!(backend.dead_letters("wh-1").await.unwrap().is_empty(), "they go with their webhook");
}
