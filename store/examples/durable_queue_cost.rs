//! One-off measurement of what the embedded backend's write-through costs:
//! queue pushes, removals and single-use token uses per second on disk (each
//! one redb commit with an fsync) against the same calls on an in-memory file.
//!
//! `cargo run -p switchboard-session-store --example durable_queue_cost [--release] -- [dir] [count]`
//! (`dir` defaults to a temporary directory; put it on the disk you deploy on).

use std::time::Instant;

use switchboard_proto::{QueuedRequest, SessionType};
use switchboard_store::conformance::session;
use switchboard_store::embedded::EmbeddedBackend;
use switchboard_store::{CreateQueue, QueuePush, Secrets, Sessions};

async fn measure(label: &str, backend: &EmbeddedBackend, count: usize) {
    let now = switchboard_common::time::now_ms();
    for i in 0..count {
        backend.insert_session(session(&format!("s{i}"), "alice", SessionType::Virtual), None).await.unwrap();
    }
    let started = Instant::now();
    for i in 0..count {
        let entry = QueuedRequest {
            session_id: format!("s{i}"),
            class_id: format!("class-{}", i % 4),
            requirements: "tag:gpu = 'a100'".into(),
            r#type: SessionType::Virtual as i32,
            owner: "alice".into(),
            ..Default::default()
        };
        let pushed = backend.queue_push(entry, 600_000, count).await.unwrap();
        assert!(matches!(pushed, QueuePush::Queued(_)));
    }
    report(label, "queue_push", count, started);
    let started = Instant::now();
    for i in 0..count {
        assert!(backend.queue_remove(&format!("s{i}")).await.unwrap());
    }
    report(label, "queue_remove", count, started);
    let started = Instant::now();
    for i in 0..count {
        assert!(backend.use_token_once(&format!("jti-{i}"), now + 600_000).await.unwrap());
    }
    report(label, "use_token_once", count, started);
}

fn report(label: &str, operation: &str, count: usize, started: Instant) {
    let elapsed = started.elapsed();
    let per_op = elapsed / u32::try_from(count).unwrap_or(u32::MAX);
    println!(
        "{label:>9} {operation:<15} {count} in {elapsed:>10.2?}: {per_op:>9.2?} each, {:>9.0}/s",
        count as f64 / elapsed.as_secs_f64()
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let root = args.next().map(std::path::PathBuf::from);
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(500);
    let dir = match &root {
        Some(root) => tempfile::tempdir_in(root).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    measure("on disk", &EmbeddedBackend::open(dir.path()).unwrap(), count).await;
    measure("in memory", &EmbeddedBackend::in_memory().unwrap(), count).await;
}
