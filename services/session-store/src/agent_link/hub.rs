//! The agent streams this replica owns, and the commands waiting for results.
//!
//! Both maps sit behind `std::sync::Mutex`: every access is a short insert,
//! remove or clone, never held across an `.await`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use switchboard_proto::{CommandResult, HostCommand};
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use crate::Error;

/// One live stream: its ownership epoch and the queue of its run loop.
struct LocalStream {
    epoch: u64,
    command_tx: mpsc::Sender<HostCommand>,
}

/// A command sent to a host whose result has not arrived yet.
struct Pending {
    server_id: String,
    result_tx: oneshot::Sender<CommandResult>,
}

/// Registry of this replica's agent streams and of in-flight commands.
#[derive(Default)]
pub struct AgentHub {
    streams: Mutex<HashMap<String, LocalStream>>,
    pending: Mutex<HashMap<String, Pending>>,
}

/// Removes a pending entry when the waiting caller gives up (timeout or
/// cancellation), so the map never grows with abandoned commands.
struct PendingGuard<'a> {
    hub: &'a AgentHub,
    command_id: String,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.hub.pending).remove(&self.command_id);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl AgentHub {
    /// Records the stream of `server_id` (replacing an older one).
    pub(crate) fn register(&self, server_id: &str, epoch: u64, command_tx: mpsc::Sender<HostCommand>) {
        if lock(&self.streams).insert(server_id.to_owned(), LocalStream { epoch, command_tx }).is_none() {
            crate::metrics::stream(1.0);
        }
    }

    /// Forgets the stream of `server_id` if it is still the one of `epoch`,
    /// and fails the commands waiting on it.
    pub(crate) fn deregister(&self, server_id: &str, epoch: u64) {
        let mut streams = lock(&self.streams);
        if streams.get(server_id).is_some_and(|s| s.epoch == epoch) {
            streams.remove(server_id);
            drop(streams);
            crate::metrics::stream(-1.0);
            // Dropping the senders wakes the waiters with an error.
            lock(&self.pending).retain(|_, pending| pending.server_id != server_id);
        }
    }

    /// Whether this replica holds a stream for `server_id`.
    pub fn is_connected(&self, server_id: &str) -> bool {
        lock(&self.streams).contains_key(server_id)
    }

    /// Hands a result from the agent to whoever waits for it.
    pub(crate) fn complete(&self, server_id: &str, result: CommandResult) {
        let pending = lock(&self.pending).remove(&result.command_id);
        match pending {
            Some(pending) if pending.server_id == server_id => {
                let _ = pending.result_tx.send(result);
            }
            Some(_) => {
                tracing::warn!(server_id, command_id = %result.command_id, "result from the wrong agent dropped")
            }
            None => tracing::debug!(server_id, command_id = %result.command_id, "late or unknown command result"),
        }
    }

    /// Sends `command` (with its `command_id` set) on this replica's stream to
    /// `server_id` and waits for the result. `None` when no local stream exists.
    /// The command carries the current span's trace context, so the agent's span is its child.
    pub async fn send_local(
        &self,
        server_id: &str,
        mut command: HostCommand,
        timeout: Duration,
    ) -> Option<Result<CommandResult, Status>> {
        let command_tx = lock(&self.streams).get(server_id).map(|s| s.command_tx.clone())?;
        command.traceparent = switchboard_common::trace_context::current_traceparent();
        let (result_tx, result_rx) = oneshot::channel();
        let command_id = command.command_id.clone();
        lock(&self.pending).insert(command_id.clone(), Pending { server_id: server_id.to_owned(), result_tx });
        let _guard = PendingGuard { hub: self, command_id };
        let exchange = async {
            command_tx.send(command).await.map_err(|_| disconnected(server_id))?;
            result_rx.await.map_err(|_| disconnected(server_id))
        };
        Some(match tokio::time::timeout(timeout, exchange).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Error::HostTimeout(format!("agent for server {server_id} did not answer in time")).into()),
        })
    }
}

fn disconnected(server_id: &str) -> Status {
    Error::HostUnreachable(format!("agent for server {server_id} disconnected")).into()
}
