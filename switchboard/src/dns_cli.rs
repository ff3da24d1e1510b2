//! The server DNS mapping admin commands, compatible in name, file format and output with the original
//! broker's: `register-server-dns-mappings --file-path FILE` and `describe-server-dns-mappings`. They
//! call the auth service's `AgentAdmin` RPCs over the admin channel; the mappings are stored durably and
//! used by the session resolver and `getSessionConnectionData` (`docs/configuration.md#dns-mappings`).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde::Deserialize;
use serde_json::json;
use switchboard_proto::DnsMappingRecord;

use crate::admin::explain;
use crate::cli::Target;

/// Largest mappings file read, in bytes.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// DNS mapping commands.
#[derive(Debug, Subcommand)]
pub enum DnsCommand {
    /// Registers the server - DNS names mappings of a JSON file; they replace every earlier mapping.
    RegisterServerDnsMappings {
        /// The mappings file: `[{"ServerIdType": "Ip"|"Id"|"Host.Aws.Ec2InstanceId", "ServerId": …,
        /// "DnsNames": {"InternalDnsName": …, "ExternalDnsName": …}}, …]`.
        #[arg(long)]
        file_path: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Lists the registered server - DNS names mappings.
    DescribeServerDnsMappings {
        #[command(flatten)]
        target: Target,
    },
}

/// One entry of the original's mappings file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct FileMapping {
    server_id_type: String,
    server_id: String,
    dns_names: FileDnsNames,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct FileDnsNames {
    internal_dns_name: String,
    #[serde(default)]
    external_dns_name: String,
}

/// Reads and checks a mappings file (the same checks the auth service applies).
pub fn read_file(path: &Path) -> anyhow::Result<Vec<DnsMappingRecord>> {
    let size = std::fs::metadata(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?.len();
    anyhow::ensure!(size <= MAX_FILE_BYTES, "{} is {size} bytes; at most {MAX_FILE_BYTES} are read", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let entries: Vec<FileMapping> = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a DNS mappings file: {e}", path.display()))?;
    let mappings: Vec<DnsMappingRecord> = entries
        .into_iter()
        .map(|entry| DnsMappingRecord {
            server_id_type: entry.server_id_type,
            server_id: entry.server_id,
            internal_dns_name: entry.dns_names.internal_dns_name,
            external_dns_name: entry.dns_names.external_dns_name,
        })
        .collect();
    switchboard_store::dns::check(&mappings).map_err(|reason| anyhow::anyhow!("{}: {reason}", path.display()))?;
    Ok(mappings)
}

/// The original's `describe-server-dns-mappings` listing.
pub fn describe(mappings: &[DnsMappingRecord]) -> serde_json::Value {
    mappings
        .iter()
        .map(|m| {
            let mut names = json!({ "internalDnsName": m.internal_dns_name });
            if !m.external_dns_name.is_empty() {
                names["externalDnsName"] = json!(m.external_dns_name);
            }
            json!({ "serverIdType": m.server_id_type, "serverId": m.server_id, "dnsNames": names })
        })
        .collect()
}

/// Runs one DNS mapping command.
pub async fn run(command: DnsCommand) -> anyhow::Result<()> {
    match command {
        DnsCommand::RegisterServerDnsMappings { file_path, target } => {
            let mappings = read_file(&file_path)?;
            let channel = target.channel()?;
            let request = switchboard_proto::RegisterServerDnsMappingsRequest { mappings };
            let response = channel
                .agent_admin_client()?
                .register_server_dns_mappings(request)
                .await
                .map_err(|status| explain(status, &channel.auth_url))?
                .into_inner();
            println!(
                "Successfully loaded {} server id - dns name mappings from file {}",
                response.count,
                file_path.display()
            );
        }
        DnsCommand::DescribeServerDnsMappings { target } => {
            let channel = target.channel()?;
            let response = channel
                .agent_admin_client()?
                .list_server_dns_mappings(switchboard_proto::ListServerDnsMappingsRequest {})
                .await
                .map_err(|status| explain(status, &channel.auth_url))?
                .into_inner();
            println!("{}", serde_json::to_string_pretty(&describe(&response.mappings))?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_original_file_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mappings.json");
        let file = r#"[
            {"ServerIdType": "Ip", "ServerId": "192.168.0.1", "DnsNames": {"InternalDnsName": "internal"}},
            {"ServerIdType": "Host.Aws.Ec2InstanceId", "ServerId": "i-0648aee30bc78bdff",
             "DnsNames": {"InternalDnsName": "internal2", "ExternalDnsName": "external2"}}
        ]"#;
        std::fs::write(&path, file).unwrap();
        let mappings = read_file(&path).unwrap();
        assert_eq!(mappings.len(), 2);
        assert_eq!(mappings[1].external_dns_name, "external2");
        let described = describe(&mappings);
        assert_eq!(
            described[0],
            json!({"serverIdType": "Ip", "serverId": "192.168.0.1", "dnsNames": {"internalDnsName": "internal"}})
        );
        assert_eq!(described[1]["dnsNames"]["externalDnsName"], "external2");

        std::fs::write(&path, r#"[{"ServerIdType": "Mac", "ServerId": "x", "DnsNames": {"InternalDnsName": "a"}}]"#)
            .unwrap();
        let refused = read_file(&path).unwrap_err().to_string();
        assert!(refused.contains("mapping 0: ServerIdType `Mac`"), "{refused}");
        std::fs::write(&path, r#"[{"ServerIdType": "Ip", "ServerId": "x"}]"#).unwrap();
        assert!(read_file(&path).unwrap_err().to_string().contains("not a DNS mappings file"));
    }
}
