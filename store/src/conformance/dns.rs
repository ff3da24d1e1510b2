//! DnsMappings: the server - DNS names mappings, replaced as a whole.

use std::sync::Arc;

use switchboard_proto::DnsMappingRecord;

use crate::Backend;

/// Every DNS mapping check, each against a fresh backend from `make`.
pub(super) async fn run<F, Fut>(make: &F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Backend>>,
{
    replaced_as_a_whole(make().await).await;
}

/// A mapping of `server_id` (by type `kind`) to `internal`.
pub fn mapping(kind: &str, server_id: &str, internal: &str, external: &str) -> DnsMappingRecord {
    DnsMappingRecord {
        server_id_type: kind.to_owned(),
        server_id: server_id.to_owned(),
        internal_dns_name: internal.to_owned(),
        external_dns_name: external.to_owned(),
    }
}

async fn replaced_as_a_whole(backend: Arc<dyn Backend>) {
    assert_eq!(backend.list_dns_mappings().await.unwrap(), [], "no mappings before the first registration");
    let first =
        vec![mapping("Ip", "10.0.0.2", "b.internal", ""), mapping("Id", "server-1", "a.internal", "a.example.com")];
    backend.replace_dns_mappings(first.clone()).await.unwrap();
    assert_eq!(backend.list_dns_mappings().await.unwrap(), first, "mappings round-trip in the order registered");
    let second = vec![mapping("Host.Aws.Ec2InstanceId", "i-0abc", "c.internal", "")];
    backend.replace_dns_mappings(second.clone()).await.unwrap();
    assert_eq!(backend.list_dns_mappings().await.unwrap(), second, "a registration replaces every earlier mapping");
    backend.replace_dns_mappings(Vec::new()).await.unwrap();
    assert_eq!(backend.list_dns_mappings().await.unwrap(), [], "an empty registration clears the mappings");
}
