//! The DNS mappings role (durable): which DNS names the DCV Connection Gateway reaches each server by,
//! as operators register them with the original broker's `register-server-dns-mappings` file
//! (`ServerIdType` `Ip`, `Id` or `Host.Aws.Ec2InstanceId`, `ServerId`, `DnsNames`).
//!
//! The set is one value, replaced as a whole (a registration is the complete file), so every replica
//! sees either the old or the new set. [`check`] holds the rules a set must pass before it is stored;
//! [`DnsIndex`] answers which names a server has.

use std::collections::HashMap;

use async_trait::async_trait;
use switchboard_proto::{DnsMappingRecord, ServerRecord};

use crate::BackendResult;

/// The `ServerIdType` values, as the original's file names them.
pub const SERVER_ID_TYPES: [&str; 3] = ["Ip", "Id", "Host.Aws.Ec2InstanceId"];

/// Most mappings one registration may hold.
pub const MAX_MAPPINGS: usize = 50_000;

/// Longest DNS name (RFC 1035) and longest server id, in bytes.
const MAX_NAME: usize = 253;

/// The registered server - DNS names mappings. All methods are atomic.
#[async_trait]
pub trait DnsMappings: Send + Sync + 'static {
    /// Replaces every mapping with `mappings` (already [`check`]ed).
    async fn replace_dns_mappings(&self, mappings: Vec<DnsMappingRecord>) -> BackendResult<()>;

    /// The registered mappings, in the order registered.
    async fn list_dns_mappings(&self) -> BackendResult<Vec<DnsMappingRecord>>;
}

/// Why a mapping set is refused: the first bad entry (0-based index) and the reason.
pub fn check(mappings: &[DnsMappingRecord]) -> Result<(), String> {
    if mappings.len() > MAX_MAPPINGS {
        return Err(format!("{} mappings; at most {MAX_MAPPINGS} are accepted", mappings.len()));
    }
    let mut seen = std::collections::HashSet::new();
    for (index, mapping) in mappings.iter().enumerate() {
        let bad = |reason: String| Err(format!("mapping {index}: {reason}"));
        if !SERVER_ID_TYPES.contains(&mapping.server_id_type.as_str()) {
            return bad(format!(
                "ServerIdType `{}` is not one of {}",
                mapping.server_id_type.chars().take(64).collect::<String>(),
                SERVER_ID_TYPES.join(", ")
            ));
        }
        if mapping.server_id.is_empty() || mapping.server_id.len() > MAX_NAME {
            return bad(format!("ServerId must be 1 to {MAX_NAME} bytes"));
        }
        if mapping.internal_dns_name.is_empty() {
            return bad("DnsNames.InternalDnsName is missing".to_owned());
        }
        for (field, name) in
            [("InternalDnsName", &mapping.internal_dns_name), ("ExternalDnsName", &mapping.external_dns_name)]
        {
            if !name.is_empty() && !is_dns_name(name) {
                return bad(format!(
                    "DnsNames.{field} `{}` is not a DNS name",
                    name.chars().take(64).collect::<String>()
                ));
            }
        }
        if !seen.insert((mapping.server_id_type.as_str(), mapping.server_id.as_str())) {
            return bad(format!("{} `{}` is mapped twice", mapping.server_id_type, mapping.server_id));
        }
    }
    Ok(())
}

/// A host name or address as DCV and the Connection Gateway accept it: at most 253 bytes of labels of
/// letters, digits, `-` and `_`, separated by dots (an IPv4 address passes too).
fn is_dns_name(name: &str) -> bool {
    name.len() <= MAX_NAME
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The mappings indexed for lookups by server: by id, by IP address and by EC2 instance id. A server
/// matched by several entries takes the one by id first, then by instance id, then by address.
#[derive(Debug, Default, Clone)]
pub struct DnsIndex {
    by_type: [HashMap<String, DnsMappingRecord>; 3],
}

impl DnsIndex {
    /// Indexes `mappings`.
    pub fn new(mappings: Vec<DnsMappingRecord>) -> Self {
        let mut index = Self::default();
        for mapping in mappings {
            if let Some(slot) = SERVER_ID_TYPES.iter().position(|t| *t == mapping.server_id_type) {
                index.by_type[slot].insert(mapping.server_id.clone(), mapping);
            }
        }
        index
    }

    /// Whether no mapping is registered.
    pub fn is_empty(&self) -> bool {
        self.by_type.iter().all(HashMap::is_empty)
    }

    /// The mapping that names `server`, if any.
    pub fn lookup(&self, server: &ServerRecord) -> Option<&DnsMappingRecord> {
        let [by_ip, by_id, by_instance] = &self.by_type;
        let instance = server.host.as_ref().and_then(|host| host.aws.as_ref()).map(|aws| aws.ec2_instance_id.as_str());
        by_id
            .get(&server.id)
            .or_else(|| instance.filter(|id| !id.is_empty()).and_then(|id| by_instance.get(id)))
            .or_else(|| by_ip.get(&server.ip))
    }
}

#[cfg(test)]
mod tests {
    use switchboard_proto::{AwsInfo, HostInfo};

    use super::*;

    fn mapping(kind: &str, id: &str, internal: &str) -> DnsMappingRecord {
        DnsMappingRecord {
            server_id_type: kind.to_owned(),
            server_id: id.to_owned(),
            internal_dns_name: internal.to_owned(),
            external_dns_name: String::new(),
        }
    }

    #[test]
    fn refuses_what_the_gateway_could_not_use() {
        assert!(check(&[mapping("Ip", "10.0.0.1", "ip-10-0-0-1.internal")]).is_ok());
        assert!(check(&[mapping("ip", "10.0.0.1", "a")]).unwrap_err().contains("ServerIdType `ip`"));
        assert!(check(&[mapping("Id", "", "a")]).unwrap_err().contains("ServerId"));
        assert!(check(&[mapping("Id", "s", "")]).unwrap_err().contains("InternalDnsName is missing"));
        assert!(check(&[mapping("Id", "s", "bad name")]).unwrap_err().contains("not a DNS name"));
        let twice = [mapping("Id", "s", "a"), mapping("Id", "s", "b")];
        assert_eq!(check(&twice).unwrap_err(), "mapping 1: Id `s` is mapped twice");
    }

    #[test]
    fn finds_a_server_by_id_instance_or_address() {
        let index = DnsIndex::new(vec![
            mapping("Ip", "10.0.0.1", "by-ip"),
            mapping("Id", "server-2", "by-id"),
            mapping("Host.Aws.Ec2InstanceId", "i-0abc", "by-instance"),
        ]);
        let server = |id: &str, ip: &str, instance: &str| ServerRecord {
            id: id.to_owned(),
            ip: ip.to_owned(),
            host: Some(HostInfo {
                aws: Some(AwsInfo { ec2_instance_id: instance.to_owned(), ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = |s: &ServerRecord| index.lookup(s).map(|m| m.internal_dns_name.clone());
        assert_eq!(name(&server("server-1", "10.0.0.1", "")).as_deref(), Some("by-ip"));
        assert_eq!(name(&server("server-2", "10.0.0.1", "i-0abc")).as_deref(), Some("by-id"));
        assert_eq!(name(&server("server-3", "10.0.0.1", "i-0abc")).as_deref(), Some("by-instance"));
        assert_eq!(name(&server("server-4", "10.0.0.9", "")), None);
    }
}
