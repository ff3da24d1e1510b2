//! Who this host is: the stable server id.
//!
//! Like the original agent, a host gets a new server id when its host name or IP changes (to the broker it
//! is then a different host). The id is the FNV-1a 64-bit hash of `"{hostname}|{ip}"` as 16 lowercase hex
//! digits: stable across restarts and releases (FNV-1a is fully specified, unlike std's `DefaultHasher`),
//! and it needs no secret because it only names the host. `server_id` in `agent.conf` overrides it.

/// FNV-1a, 64 bits: a tiny, fully specified, stable non-cryptographic hash.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(PRIME))
}

/// The server id of a host with this host name and IP.
pub fn derive_server_id(hostname: &str, ip: &str) -> String {
    format!("{:016x}", fnv1a64(format!("{hostname}|{ip}").as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn the_server_id_is_stable_and_changes_with_name_or_ip() {
        let id = derive_server_id("host-1", "10.0.0.1");
        assert_eq!(id.len(), 16);
        assert_eq!(id, derive_server_id("host-1", "10.0.0.1"));
        assert_ne!(id, derive_server_id("host-2", "10.0.0.1"));
        assert_ne!(id, derive_server_id("host-1", "10.0.0.2"));
    }
}
