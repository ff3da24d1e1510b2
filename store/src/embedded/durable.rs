//! The durable half of the embedded backend: API clients, signing keys,
//! server `open` flags (with their drain deadlines) and agent enrolment (software statements, agent
//! clients and their server bindings) and the server - DNS names mappings in one redb file; plus the write-through
//! copy of the create-sessions queue (each entry, its session's record and the
//! queue's sequence counter) and of the used single-use token ids, which the
//! backend reads back into memory when it opens ([`Durable::restore`]); and CreateSessions'
//! idempotency records, which live in the file only (each call is one write transaction, which redb
//! serialises: that is what makes a claim atomic).
//!
//! Every call is a short synchronous redb transaction, committed with
//! `Durability::Immediate` (an fsync). These are rare admin operations
//! (registering a client, rotating a key, opening a server), one or two writes
//! per queued request and one per single-use token, plus cheap MVCC reads, so
//! they run inline on the async worker instead of `spawn_blocking`; redb
//! serialises writers itself, which also makes check-then-insert atomic.

use std::path::Path;

use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use switchboard_proto::{
    DeadLetterRecord, DnsMappingSet, IdempotencyRecord, QueuedRequest, SessionRecord, WebhookRecord,
};

use crate::AuthServerRecord;
use crate::idempotency::IdempotencyClaim;
use crate::{
    AgentClientRecord, ApiClientRecord, BackendError, BackendResult, SigningKeyRecord, SoftwareStatementRecord,
};

const API_CLIENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_clients");
const SIGNING_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("signing_keys");
const SERVER_OPEN: TableDefinition<&str, bool> = TableDefinition::new("server_open");
/// The drain deadline (ms since epoch) of each draining server; written with its `server_open` entry.
const SERVER_DRAIN: TableDefinition<&str, i64> = TableDefinition::new("server_drain");
const SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("secrets");
const SOFTWARE_STATEMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("software_statements");
const AGENT_CLIENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("agent_clients");
/// Server id → the agent client bound to it.
const AGENT_SERVERS: TableDefinition<&str, &str> = TableDefinition::new("agent_servers");
const AUTH_SERVERS: TableDefinition<&str, &[u8]> = TableDefinition::new("auth_servers");
/// Named settings kept as one encoded value each; [`DNS_MAPPINGS`] holds the server - DNS names mappings.
const SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("settings");
const DNS_MAPPINGS: &str = "dns_mappings";
/// Session id → its create-sessions queue entry (claim fields empty: claims
/// are leases of live processes and do not survive a restart).
const QUEUE: TableDefinition<&str, &[u8]> = TableDefinition::new("queue");
/// Session id → the record of a queued session (kept while its entry exists).
const QUEUED_SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("queued_sessions");
/// Named counters; [`QUEUE_SEQUENCE`] keeps queue sequences growing across
/// restarts, even when the queue was empty.
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
const QUEUE_SEQUENCE: &str = "queue_sequence";
/// Used single-use token id → its expiry (ms since epoch).
const USED_TOKENS: TableDefinition<&str, i64> = TableDefinition::new("used_tokens");

/// Idempotency scope key → its record ([`IdempotencyRecord`]).
const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");
/// Webhook subscriptions (`WebhookRecord`) by id.
const WEBHOOKS: TableDefinition<&str, &[u8]> = TableDefinition::new("webhooks");
/// Dead letters (`DeadLetterRecord`) by `<webhook id>/<20-digit sequence>`, oldest first per webhook.
const DEAD_LETTERS: TableDefinition<&str, &[u8]> = TableDefinition::new("dead_letters");
/// (expiry in ms since epoch, scope key) of every idempotency record: the order expired ones are pruned in.
const IDEMPOTENCY_EXPIRY: TableDefinition<(i64, &str), ()> = TableDefinition::new("idempotency_expiry");
/// Most expired idempotency records one claim prunes: bounds the work of a call while pruning at least
/// as fast as claims add records.
const IDEMPOTENCY_PRUNE_PER_CLAIM: usize = 16;

/// What [`Durable::restore`] reads back for the in-memory state.
#[derive(Debug, Default)]
pub(super) struct Restored {
    /// Queue entries, in sequence order.
    pub(super) queue: Vec<QueuedRequest>,
    /// The last queue sequence handed out.
    pub(super) queue_sequence: u64,
    /// Records of queued sessions.
    pub(super) sessions: Vec<SessionRecord>,
    /// Used token ids not yet expired, with their expiry.
    pub(super) used_tokens: Vec<(String, i64)>,
}

/// Maps any redb failure to `Unavailable`, keeping the cause for logs.
fn storage<E: Into<redb::Error>>(error: E) -> BackendError {
    BackendError::Unavailable(format!("embedded storage: {}", error.into()))
}

/// The redb database with Switchboard's durable tables.
pub(super) struct Durable {
    db: Database,
}

impl Durable {
    /// Opens (or creates) `<dir>/switchboard.redb`.
    pub(super) fn open(dir: &Path) -> BackendResult<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| BackendError::Unavailable(format!("creating {}: {e}", dir.display())))?;
        let db = Database::create(dir.join("switchboard.redb")).map_err(storage)?;
        Self::with_tables(db)
    }

    /// A database that lives in memory only (tests).
    pub(super) fn in_memory() -> BackendResult<Self> {
        let db = redb::Builder::new().create_with_backend(redb::backends::InMemoryBackend::new()).map_err(storage)?;
        Self::with_tables(db)
    }

    /// Creates the tables up front so read transactions never miss one.
    fn with_tables(db: Database) -> BackendResult<Self> {
        let txn = db.begin_write().map_err(storage)?;
        txn.open_table(API_CLIENTS).map_err(storage)?;
        txn.open_table(SIGNING_KEYS).map_err(storage)?;
        txn.open_table(SERVER_OPEN).map_err(storage)?;
        txn.open_table(SERVER_DRAIN).map_err(storage)?;
        txn.open_table(SOFTWARE_STATEMENTS).map_err(storage)?;
        txn.open_table(AGENT_CLIENTS).map_err(storage)?;
        txn.open_table(AGENT_SERVERS).map_err(storage)?;
        txn.open_table(AUTH_SERVERS).map_err(storage)?;
        txn.open_table(SETTINGS).map_err(storage)?;
        txn.open_table(QUEUE).map_err(storage)?;
        txn.open_table(QUEUED_SESSIONS).map_err(storage)?;
        txn.open_table(COUNTERS).map_err(storage)?;
        txn.open_table(USED_TOKENS).map_err(storage)?;
        txn.open_table(IDEMPOTENCY).map_err(storage)?;
        txn.open_table(IDEMPOTENCY_EXPIRY).map_err(storage)?;
        txn.open_table(WEBHOOKS).map_err(storage)?;
        txn.open_table(DEAD_LETTERS).map_err(storage)?;
        txn.commit().map_err(storage)?;
        Ok(Self { db })
    }

    pub(super) fn insert_api_client(&self, client: &ApiClientRecord) -> BackendResult<()> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(API_CLIENTS).map_err(storage)?;
            if table.get(client.client_id.as_str()).map_err(storage)?.is_some() {
                return Err(BackendError::AlreadyExists(format!("api client {}", client.client_id)));
            }
            table.insert(client.client_id.as_str(), client.encode_to_vec().as_slice()).map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    pub(super) fn get_api_client(&self, client_id: &str) -> BackendResult<Option<ApiClientRecord>> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(API_CLIENTS).map_err(storage)?;
        let Some(value) = table.get(client_id).map_err(storage)? else {
            return Ok(None);
        };
        decode(client_id, value.value()).map(Some)
    }

    /// Stores `webhook`: a new one (`AlreadyExists` if the id is taken) or, with `replace`, over an
    /// existing one only (`false` when there is none).
    pub(super) fn put_webhook(&self, webhook: &WebhookRecord, replace: bool) -> BackendResult<bool> {
        let txn = self.db.begin_write().map_err(storage)?;
        let stored = {
            let mut table = txn.open_table(WEBHOOKS).map_err(storage)?;
            let exists = table.get(webhook.id.as_str()).map_err(storage)?.is_some();
            if exists != replace {
                if exists {
                    return Err(BackendError::AlreadyExists(format!("webhook {}", webhook.id)));
                }
                return Ok(false);
            }
            table.insert(webhook.id.as_str(), webhook.encode_to_vec().as_slice()).map_err(storage)?;
            true
        };
        txn.commit().map_err(storage)?;
        Ok(stored)
    }

    pub(super) fn list_webhooks(&self) -> BackendResult<Vec<WebhookRecord>> {
        self.list(WEBHOOKS)
    }

    /// Removes a webhook and its dead letters.
    pub(super) fn remove_webhook(&self, id: &str) -> BackendResult<bool> {
        let txn = self.db.begin_write().map_err(storage)?;
        let existed = {
            let mut table = txn.open_table(WEBHOOKS).map_err(storage)?;
            let existed = table.remove(id).map_err(storage)?.is_some();
            let mut letters = txn.open_table(DEAD_LETTERS).map_err(storage)?;
            let (start, end) = (format!("{id}/"), format!("{id}0"));
            letters.retain_in(start.as_str()..end.as_str(), |_, _| false).map_err(storage)?;
            existed
        };
        txn.commit().map_err(storage)?;
        Ok(existed)
    }

    /// Appends a dead letter, keeping the newest `keep` of its webhook.
    pub(super) fn add_dead_letter(&self, letter: &DeadLetterRecord, keep: usize) -> BackendResult<()> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut letters = txn.open_table(DEAD_LETTERS).map_err(storage)?;
            let id = &letter.webhook_id;
            let (start, end) = (format!("{id}/"), format!("{id}0"));
            let keys: Vec<String> = letters
                .range(start.as_str()..end.as_str())
                .map_err(storage)?
                .map(|entry| entry.map(|(key, _)| key.value().to_owned()))
                .collect::<Result<_, _>>()
                .map_err(storage)?;
            let next = keys.last().and_then(|key| key.rsplit('/').next()?.parse::<u64>().ok()).map_or(0, |n| n + 1);
            let key = format!("{id}/{next:020}");
            letters.insert(key.as_str(), letter.encode_to_vec().as_slice()).map_err(storage)?;
            for old in keys.iter().take((keys.len() + 1).saturating_sub(keep)) {
                letters.remove(old.as_str()).map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)
    }

    /// A webhook's dead letters, newest first.
    pub(super) fn dead_letters(&self, webhook_id: &str) -> BackendResult<Vec<DeadLetterRecord>> {
        let txn = self.db.begin_read().map_err(storage)?;
        let letters = txn.open_table(DEAD_LETTERS).map_err(storage)?;
        let (start, end) = (format!("{webhook_id}/"), format!("{webhook_id}0"));
        let mut out = Vec::new();
        for entry in letters.range(start.as_str()..end.as_str()).map_err(storage)? {
            let (key, value) = entry.map_err(storage)?;
            out.push(decode(key.value(), value.value())?);
        }
        out.reverse();
        Ok(out)
    }

    pub(super) fn list_api_clients(&self) -> BackendResult<Vec<ApiClientRecord>> {
        self.list(API_CLIENTS)
    }

    pub(super) fn remove_api_client(&self, client_id: &str) -> BackendResult<bool> {
        let txn = self.db.begin_write().map_err(storage)?;
        let existed = {
            let mut table = txn.open_table(API_CLIENTS).map_err(storage)?;
            table.remove(client_id).map_err(storage)?.is_some()
        };
        txn.commit().map_err(storage)?;
        Ok(existed)
    }

    pub(super) fn put_signing_key(&self, key: &SigningKeyRecord) -> BackendResult<()> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(SIGNING_KEYS).map_err(storage)?;
            table.insert(key.kid.as_str(), key.encode_to_vec().as_slice()).map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    pub(super) fn list_signing_keys(&self) -> BackendResult<Vec<SigningKeyRecord>> {
        let mut keys: Vec<SigningKeyRecord> = self.list(SIGNING_KEYS)?;
        keys.sort_by(|a, b| a.created_unix_ms.cmp(&b.created_unix_ms).then_with(|| a.kid.cmp(&b.kid)));
        Ok(keys)
    }

    pub(super) fn remove_signing_key(&self, kid: &str) -> BackendResult<()> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(SIGNING_KEYS).map_err(storage)?;
            table.remove(kid).map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    /// The secret under `name`, inserting `candidate` first when absent (one write transaction).
    pub(super) fn shared_secret(&self, name: &str, candidate: &[u8]) -> BackendResult<Vec<u8>> {
        let txn = self.db.begin_write().map_err(storage)?;
        let secret = {
            let mut table = txn.open_table(SECRETS).map_err(storage)?;
            let existing = table.get(name).map_err(storage)?.map(|v| v.value().to_vec());
            match existing {
                Some(secret) => secret,
                None => {
                    table.insert(name, candidate).map_err(storage)?;
                    candidate.to_vec()
                }
            }
        };
        txn.commit().map_err(storage)?;
        Ok(secret)
    }

    pub(super) fn put_auth_server(&self, server: &AuthServerRecord) -> BackendResult<()> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(AUTH_SERVERS).map_err(storage)?;
            table.insert(server.url.as_str(), server.encode_to_vec().as_slice()).map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    pub(super) fn list_auth_servers(&self) -> BackendResult<Vec<AuthServerRecord>> {
        self.list(AUTH_SERVERS)
    }

    pub(super) fn remove_auth_server(&self, url: &str) -> BackendResult<bool> {
        let txn = self.db.begin_write().map_err(storage)?;
        let existed = {
            let mut table = txn.open_table(AUTH_SERVERS).map_err(storage)?;
            table.remove(url).map_err(storage)?.is_some()
        };
        txn.commit().map_err(storage)?;
        Ok(existed)
    }

    pub(super) fn replace_dns_mappings(&self, mappings: &DnsMappingSet) -> BackendResult<()> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(SETTINGS).map_err(storage)?;
            table.insert(DNS_MAPPINGS, mappings.encode_to_vec().as_slice()).map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    /// A read transaction opened and closed: the file is usable.
    pub(super) fn ping(&self) -> BackendResult<()> {
        self.db.begin_read().map_err(storage)?;
        Ok(())
    }

    pub(super) fn dns_mappings(&self) -> BackendResult<DnsMappingSet> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(SETTINGS).map_err(storage)?;
        match table.get(DNS_MAPPINGS).map_err(storage)? {
            Some(bytes) => decode(DNS_MAPPINGS, bytes.value()),
            None => Ok(DnsMappingSet::default()),
        }
    }

    /// The stored `open` flag of a server, if an operator ever set one, and its drain deadline (0: not
    /// draining).
    pub(super) fn server_state(&self, server_id: &str) -> BackendResult<Option<(bool, i64)>> {
        let txn = self.db.begin_read().map_err(storage)?;
        let Some(open) =
            txn.open_table(SERVER_OPEN).map_err(storage)?.get(server_id).map_err(storage)?.map(|v| v.value())
        else {
            return Ok(None);
        };
        let drain = txn.open_table(SERVER_DRAIN).map_err(storage)?.get(server_id).map_err(storage)?.map(|v| v.value());
        Ok(Some((open, drain.unwrap_or_default())))
    }

    /// Stores (`Some((open, drain deadline))`, a deadline of 0 for none) or forgets (`None`) a server's
    /// operator state, in one transaction.
    pub(super) fn set_server_state(&self, server_id: &str, state: Option<(bool, i64)>) -> BackendResult<()> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut open_table = txn.open_table(SERVER_OPEN).map_err(storage)?;
            let mut drain_table = txn.open_table(SERVER_DRAIN).map_err(storage)?;
            match state {
                Some((open, _)) => open_table.insert(server_id, open).map(|_| ()),
                None => open_table.remove(server_id).map(|_| ()),
            }
            .map_err(storage)?;
            match state {
                Some((_, drain)) if drain > 0 => drain_table.insert(server_id, drain).map(|_| ()),
                _ => drain_table.remove(server_id).map(|_| ()),
            }
            .map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    pub(super) fn insert_software_statement(&self, statement: &SoftwareStatementRecord) -> BackendResult<()> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(SOFTWARE_STATEMENTS).map_err(storage)?;
            if table.get(statement.id.as_str()).map_err(storage)?.is_some() {
                return Err(BackendError::AlreadyExists(format!("software statement {}", statement.id)));
            }
            table.insert(statement.id.as_str(), statement.encode_to_vec().as_slice()).map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    pub(super) fn get_software_statement(&self, id: &str) -> BackendResult<Option<SoftwareStatementRecord>> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(SOFTWARE_STATEMENTS).map_err(storage)?;
        let Some(value) = table.get(id).map_err(storage)? else {
            return Ok(None);
        };
        decode(id, value.value()).map(Some)
    }

    pub(super) fn list_software_statements(&self) -> BackendResult<Vec<SoftwareStatementRecord>> {
        let mut statements: Vec<SoftwareStatementRecord> = self.list(SOFTWARE_STATEMENTS)?;
        statements.sort_by(|a, b| a.issued_at_unix_ms.cmp(&b.issued_at_unix_ms).then_with(|| a.id.cmp(&b.id)));
        Ok(statements)
    }

    pub(super) fn deactivate_software_statement(&self, id: &str) -> BackendResult<bool> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(SOFTWARE_STATEMENTS).map_err(storage)?;
            let Some(mut statement) = table
                .get(id)
                .map_err(storage)?
                .map(|v| decode::<SoftwareStatementRecord>(id, v.value()))
                .transpose()?
            else {
                return Ok(false);
            };
            statement.active = false;
            table.insert(id, statement.encode_to_vec().as_slice()).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        Ok(true)
    }

    /// One write transaction: the statement check and the insert are atomic.
    pub(super) fn register_agent_client(&self, client: &AgentClientRecord) -> BackendResult<()> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let statements = txn.open_table(SOFTWARE_STATEMENTS).map_err(storage)?;
            let statement_id = client.software_statement_id.as_str();
            let active = match statements.get(statement_id).map_err(storage)? {
                Some(value) => decode::<SoftwareStatementRecord>(statement_id, value.value())?.active,
                None => false,
            };
            if !active {
                return Err(BackendError::NotFound(format!("active software statement {statement_id}")));
            }
            let mut clients = txn.open_table(AGENT_CLIENTS).map_err(storage)?;
            if clients.get(client.client_id.as_str()).map_err(storage)?.is_some() {
                return Err(BackendError::AlreadyExists(format!("agent client {}", client.client_id)));
            }
            let unbound = AgentClientRecord { server_id: String::new(), ..client.clone() };
            clients.insert(client.client_id.as_str(), unbound.encode_to_vec().as_slice()).map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    pub(super) fn get_agent_client(&self, client_id: &str) -> BackendResult<Option<AgentClientRecord>> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(AGENT_CLIENTS).map_err(storage)?;
        let Some(value) = table.get(client_id).map_err(storage)? else {
            return Ok(None);
        };
        decode(client_id, value.value()).map(Some)
    }

    pub(super) fn list_agent_clients(&self) -> BackendResult<Vec<AgentClientRecord>> {
        self.list(AGENT_CLIENTS)
    }

    pub(super) fn remove_agent_client(&self, client_id: &str) -> BackendResult<bool> {
        let txn = self.db.begin_write().map_err(storage)?;
        let existed = {
            let mut clients = txn.open_table(AGENT_CLIENTS).map_err(storage)?;
            let removed = clients.remove(client_id).map_err(storage)?;
            let record = removed.map(|v| decode::<AgentClientRecord>(client_id, v.value())).transpose()?;
            if let Some(record) = &record
                && !record.server_id.is_empty()
            {
                let mut servers = txn.open_table(AGENT_SERVERS).map_err(storage)?;
                let bound_here =
                    servers.get(record.server_id.as_str()).map_err(storage)?.is_some_and(|v| v.value() == client_id);
                if bound_here {
                    servers.remove(record.server_id.as_str()).map_err(storage)?;
                }
            }
            record.is_some()
        };
        txn.commit().map_err(storage)?;
        Ok(existed)
    }

    /// One write transaction over the client and the server index.
    pub(super) fn bind_agent_server(&self, client_id: &str, server_id: &str) -> BackendResult<()> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut clients = txn.open_table(AGENT_CLIENTS).map_err(storage)?;
            let Some(mut client) = clients
                .get(client_id)
                .map_err(storage)?
                .map(|v| decode::<AgentClientRecord>(client_id, v.value()))
                .transpose()?
            else {
                return Err(BackendError::NotFound(format!("agent client {client_id}")));
            };
            if client.server_id == server_id {
                return Ok(());
            }
            if !client.server_id.is_empty() {
                return Err(BackendError::Conflict(format!("agent client {client_id} is bound to another server")));
            }
            let mut servers = txn.open_table(AGENT_SERVERS).map_err(storage)?;
            if servers.get(server_id).map_err(storage)?.is_some_and(|v| v.value() != client_id) {
                return Err(BackendError::Conflict(format!("server {server_id} is bound to another agent client")));
            }
            servers.insert(server_id, client_id).map_err(storage)?;
            client.server_id = server_id.to_owned();
            clients.insert(client_id, client.encode_to_vec().as_slice()).map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    /// Reads back the queue, its sessions and the used token ids still valid
    /// at `now_ms`, deleting the expired ids (one write transaction).
    pub(super) fn restore(&self, now_ms: i64) -> BackendResult<Restored> {
        let txn = self.db.begin_write().map_err(storage)?;
        let mut restored = Restored::default();
        {
            let queue = txn.open_table(QUEUE).map_err(storage)?;
            for entry in queue.iter().map_err(storage)? {
                let (key, value) = entry.map_err(storage)?;
                restored.queue.push(decode(key.value(), value.value())?);
            }
            restored.queue.sort_by_key(|entry| entry.sequence);
            let sessions = txn.open_table(QUEUED_SESSIONS).map_err(storage)?;
            for entry in sessions.iter().map_err(storage)? {
                let (key, value) = entry.map_err(storage)?;
                restored.sessions.push(decode(key.value(), value.value())?);
            }
            let counters = txn.open_table(COUNTERS).map_err(storage)?;
            let stored = counters.get(QUEUE_SEQUENCE).map_err(storage)?.map_or(0, |v| v.value());
            let newest = restored.queue.last().map_or(0, |entry| entry.sequence);
            restored.queue_sequence = stored.max(newest);
            let mut tokens = txn.open_table(USED_TOKENS).map_err(storage)?;
            let mut expired = Vec::new();
            for entry in tokens.iter().map_err(storage)? {
                let (key, value) = entry.map_err(storage)?;
                let (id, expires) = (key.value().to_owned(), value.value());
                if expires > now_ms {
                    restored.used_tokens.push((id, expires));
                } else {
                    expired.push(id);
                }
            }
            for id in &expired {
                tokens.remove(id.as_str()).map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)?;
        Ok(restored)
    }

    /// Stores a new queue entry (claim fields dropped), the record of its
    /// session if there is one, and the entry's sequence as the last one.
    pub(super) fn queue_push(&self, entry: &QueuedRequest, session: Option<&SessionRecord>) -> BackendResult<()> {
        let entry = QueuedRequest { claim_id: String::new(), claimed_until_unix_ms: 0, ..entry.clone() };
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut queue = txn.open_table(QUEUE).map_err(storage)?;
            queue.insert(entry.session_id.as_str(), entry.encode_to_vec().as_slice()).map_err(storage)?;
            if let Some(session) = session {
                let mut sessions = txn.open_table(QUEUED_SESSIONS).map_err(storage)?;
                sessions.insert(session.id.as_str(), session.encode_to_vec().as_slice()).map_err(storage)?;
            }
            let mut counters = txn.open_table(COUNTERS).map_err(storage)?;
            counters.insert(QUEUE_SEQUENCE, entry.sequence).map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    /// Forgets a queue entry and its session's record.
    pub(super) fn queue_remove(&self, session_id: &str) -> BackendResult<()> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            txn.open_table(QUEUE).map_err(storage)?.remove(session_id).map_err(storage)?;
            txn.open_table(QUEUED_SESSIONS).map_err(storage)?.remove(session_id).map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    /// Replaces the stored record of a queued session.
    pub(super) fn put_queued_session(&self, session: &SessionRecord) -> BackendResult<()> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut sessions = txn.open_table(QUEUED_SESSIONS).map_err(storage)?;
            sessions.insert(session.id.as_str(), session.encode_to_vec().as_slice()).map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    /// Forgets the stored records of queued sessions (their entries stay).
    pub(super) fn remove_queued_sessions(&self, ids: &[&str]) -> BackendResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut sessions = txn.open_table(QUEUED_SESSIONS).map_err(storage)?;
            for id in ids {
                sessions.remove(*id).map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)
    }

    /// Records a used token id with its expiry and deletes the `expired` ids
    /// (one write transaction).
    pub(super) fn use_token(&self, token_id: &str, expires_at_ms: i64, expired: &[String]) -> BackendResult<()> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut tokens = txn.open_table(USED_TOKENS).map_err(storage)?;
            for id in expired {
                tokens.remove(id.as_str()).map_err(storage)?;
            }
            tokens.insert(token_id, expires_at_ms).map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    /// Claims `key` at `now_ms` (see [`crate::Idempotency::claim_idempotency_key`]) and prunes up to
    /// [`IDEMPOTENCY_PRUNE_PER_CLAIM`] expired records; one write transaction.
    pub(super) fn claim_idempotency_key(
        &self,
        key: &str,
        body_sha256: &[u8],
        claim_ttl_ms: i64,
        now_ms: i64,
    ) -> BackendResult<IdempotencyClaim> {
        let txn = self.db.begin_write().map_err(storage)?;
        let claim = {
            let mut records = txn.open_table(IDEMPOTENCY).map_err(storage)?;
            let mut expiry = txn.open_table(IDEMPOTENCY_EXPIRY).map_err(storage)?;
            let expired: Vec<(i64, String)> = expiry
                .range(..=(now_ms, ""))
                .map_err(storage)?
                .take(IDEMPOTENCY_PRUNE_PER_CLAIM)
                .map(|entry| entry.map(|(k, _)| (k.value().0, k.value().1.to_owned())).map_err(storage))
                .collect::<BackendResult<_>>()?;
            for (at, expired_key) in &expired {
                expiry.remove((*at, expired_key.as_str())).map_err(storage)?;
                records.remove(expired_key.as_str()).map_err(storage)?;
            }
            let stored = match records.get(key).map_err(storage)? {
                Some(value) => Some(decode::<IdempotencyRecord>(key, value.value())?),
                None => None,
            };
            let (live, expired) = match stored {
                Some(record) if record.expires_unix_ms > now_ms => (Some(record), None),
                other => (None, other),
            };
            if let Some(expired) = expired {
                // Replaced below: its index entry must not prune the new record later.
                expiry.remove((expired.expires_unix_ms, key)).map_err(storage)?;
            }
            match live {
                Some(record) if record.body_sha256 != body_sha256 => IdempotencyClaim::Mismatch,
                Some(record) if record.done => IdempotencyClaim::Done(record.answer),
                Some(_) => IdempotencyClaim::InProgress,
                None => {
                    let record = IdempotencyRecord {
                        body_sha256: body_sha256.to_vec(),
                        expires_unix_ms: now_ms.saturating_add(claim_ttl_ms),
                        ..Default::default()
                    };
                    Self::put_idempotency_record(&mut records, &mut expiry, key, &record)?;
                    IdempotencyClaim::Claimed
                }
            }
        };
        txn.commit().map_err(storage)?;
        Ok(claim)
    }

    /// Stores `answer` on the live in-progress record of `key`, expiring `ttl_ms` after `now_ms`;
    /// `false` when there is none.
    pub(super) fn complete_idempotency_key(
        &self,
        key: &str,
        answer: &[u8],
        ttl_ms: i64,
        now_ms: i64,
    ) -> BackendResult<bool> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut records = txn.open_table(IDEMPOTENCY).map_err(storage)?;
            let mut expiry = txn.open_table(IDEMPOTENCY_EXPIRY).map_err(storage)?;
            let record = match records.get(key).map_err(storage)? {
                Some(value) => Some(decode::<IdempotencyRecord>(key, value.value())?),
                None => None,
            };
            let Some(record) = record.filter(|record| !record.done && record.expires_unix_ms > now_ms) else {
                return Ok(false);
            };
            let done = IdempotencyRecord {
                done: true,
                answer: answer.to_vec(),
                expires_unix_ms: now_ms.saturating_add(ttl_ms),
                body_sha256: record.body_sha256,
            };
            expiry.remove((record.expires_unix_ms, key)).map_err(storage)?;
            Self::put_idempotency_record(&mut records, &mut expiry, key, &done)?;
        }
        txn.commit().map_err(storage)?;
        Ok(true)
    }

    /// Forgets the in-progress record of `key`, if any (a done one stays).
    pub(super) fn release_idempotency_key(&self, key: &str) -> BackendResult<()> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut records = txn.open_table(IDEMPOTENCY).map_err(storage)?;
            let record = match records.get(key).map_err(storage)? {
                Some(value) => Some(decode::<IdempotencyRecord>(key, value.value())?),
                None => None,
            };
            let Some(record) = record.filter(|record| !record.done) else { return Ok(()) };
            records.remove(key).map_err(storage)?;
            txn.open_table(IDEMPOTENCY_EXPIRY)
                .map_err(storage)?
                .remove((record.expires_unix_ms, key))
                .map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    /// Writes `record` under `key` with its expiry index entry (an earlier entry is the caller's to remove).
    fn put_idempotency_record(
        records: &mut redb::Table<&str, &[u8]>,
        expiry: &mut redb::Table<(i64, &str), ()>,
        key: &str,
        record: &IdempotencyRecord,
    ) -> BackendResult<()> {
        records.insert(key, record.encode_to_vec().as_slice()).map_err(storage)?;
        expiry.insert((record.expires_unix_ms, key), ()).map_err(storage)?;
        Ok(())
    }

    /// The number of idempotency records in the file, expired ones not yet pruned included (tests).
    #[cfg(test)]
    pub(super) fn idempotency_records(&self) -> BackendResult<u64> {
        use redb::ReadableTableMetadata;
        let txn = self.db.begin_read().map_err(storage)?;
        txn.open_table(IDEMPOTENCY).map_err(storage)?.len().map_err(storage)
    }

    /// The used token ids in the file (tests).
    #[cfg(test)]
    pub(super) fn used_token_ids(&self) -> BackendResult<Vec<String>> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(USED_TOKENS).map_err(storage)?;
        let mut ids = Vec::new();
        for entry in table.iter().map_err(storage)? {
            ids.push(entry.map_err(storage)?.0.value().to_owned());
        }
        Ok(ids)
    }

    /// Every record of a prost-encoded table, in key order.
    fn list<M: Message + Default>(&self, definition: TableDefinition<&str, &[u8]>) -> BackendResult<Vec<M>> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(definition).map_err(storage)?;
        let mut records = Vec::new();
        for entry in table.iter().map_err(storage)? {
            let (key, value) = entry.map_err(storage)?;
            records.push(decode(key.value(), value.value())?);
        }
        Ok(records)
    }
}

fn decode<M: Message + Default>(key: &str, bytes: &[u8]) -> BackendResult<M> {
    M::decode(bytes).map_err(|e| BackendError::Corrupt(format!("{key}: {e}")))
}
