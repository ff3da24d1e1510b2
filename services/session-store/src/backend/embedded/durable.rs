//! The durable half of the embedded backend: API clients, signing keys and
//! server `open` flags in one redb file.
//!
//! Every call is a short synchronous redb transaction. These are rare admin
//! operations (registering a client, rotating a key, opening a server) plus
//! cheap MVCC reads, so they run inline on the async worker instead of
//! `spawn_blocking`; redb serialises writers itself, which also makes
//! check-then-insert atomic.

use std::path::Path;

use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::backend::{ApiClientRecord, AuthServerRecord, BackendError, BackendResult, SigningKeyRecord};

const API_CLIENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_clients");
const SIGNING_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("signing_keys");
const SERVER_OPEN: TableDefinition<&str, bool> = TableDefinition::new("server_open");
const AUTH_SERVERS: TableDefinition<&str, &[u8]> = TableDefinition::new("auth_servers");

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
        txn.open_table(AUTH_SERVERS).map_err(storage)?;
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

    /// The stored `open` flag of a server, if an operator ever set one.
    pub(super) fn server_open(&self, server_id: &str) -> BackendResult<Option<bool>> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(SERVER_OPEN).map_err(storage)?;
        Ok(table.get(server_id).map_err(storage)?.map(|v| v.value()))
    }

    /// Stores (`Some`) or forgets (`None`) a server's `open` flag.
    pub(super) fn set_server_open(&self, server_id: &str, open: Option<bool>) -> BackendResult<()> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(SERVER_OPEN).map_err(storage)?;
            match open {
                Some(open) => table.insert(server_id, open).map(|_| ()),
                None => table.remove(server_id).map(|_| ()),
            }
            .map_err(storage)?;
        }
        txn.commit().map_err(storage)
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
