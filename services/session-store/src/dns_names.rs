//! The DNS names registered for servers (`register-server-dns-mappings`), for the session resolver and
//! `getSessionConnectionData` (`SessionStore.GetServerDnsNames`).
//!
//! The mappings are read from the store's [`DnsMappings`] role and indexed ([`DnsIndex`]); the index is
//! kept for [`REFRESH`], so a registration reaches every replica within that time and a resolve costs
//! no store read in between.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_proto::{ServerDnsNames, ServerRecord};
use switchboard_store::{BackendResult, DnsMappings, dns::DnsIndex};
use tokio::sync::Mutex;

/// How long a read of the mappings is used before the store is read again.
pub const REFRESH: Duration = Duration::from_secs(2);

/// The mappings of one replica, read at most once per [`REFRESH`].
pub struct DnsNames {
    backend: Arc<dyn DnsMappings>,
    cached: Mutex<Option<(Instant, Arc<DnsIndex>)>>,
}

impl DnsNames {
    /// Names from `backend`'s mappings.
    pub fn new(backend: Arc<dyn DnsMappings>) -> Self {
        Self { backend, cached: Mutex::new(None) }
    }

    /// The current index (one store read when the cached one is older than [`REFRESH`]).
    async fn index(&self) -> BackendResult<Arc<DnsIndex>> {
        let mut cached = self.cached.lock().await;
        if let Some((read_at, index)) = cached.as_ref()
            && read_at.elapsed() < REFRESH
        {
            return Ok(index.clone());
        }
        let index = Arc::new(DnsIndex::new(self.backend.list_dns_mappings().await?));
        *cached = Some((Instant::now(), index.clone()));
        Ok(index)
    }

    /// The registered names of each of `servers` that has a mapping, by server id.
    pub async fn of(&self, servers: &[ServerRecord]) -> BackendResult<HashMap<String, ServerDnsNames>> {
        let index = self.index().await?;
        Ok(servers
            .iter()
            .filter_map(|server| {
                let mapping = index.lookup(server)?;
                let names = ServerDnsNames {
                    internal_dns_name: mapping.internal_dns_name.clone(),
                    external_dns_name: mapping.external_dns_name.clone(),
                };
                Some((server.id.clone(), names))
            })
            .collect())
    }
}
