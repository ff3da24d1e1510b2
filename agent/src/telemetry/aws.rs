//! EC2 instance metadata, only on EC2, through IMDSv2 with short timeouts.
//!
//! A host is taken for an EC2 instance when its DMI vendor says so (`/sys/class/dmi/id/sys_vendor` or
//! `board_vendor` is `Amazon EC2`) or its hypervisor UUID starts with `ec2` (older Xen instances). Only then
//! is the metadata service asked: a session token (`PUT /latest/api/token`), then region, instance type,
//! instance id and AMI id, each with a 1 s timeout, so a host off EC2 never waits on a link-local address.
//! Read once at start: none of these change while an instance runs.

use std::time::Duration;

use switchboard_proto::AwsInfo;

/// The instance metadata service.
pub const IMDS_URL: &str = "http://169.254.169.254";
/// Timeout of each metadata request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// Lifetime asked for the IMDSv2 session token.
const TOKEN_TTL_SECONDS: &str = "60";

/// Whether this host looks like an EC2 instance.
pub fn is_ec2() -> bool {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let vendor = |path: &str| read(path).trim() == "Amazon EC2";
    vendor("/sys/class/dmi/id/sys_vendor")
        || vendor("/sys/class/dmi/id/board_vendor")
        || read("/sys/hypervisor/uuid").trim().to_ascii_lowercase().starts_with("ec2")
}

/// The instance's metadata from the service at `base_url`, or `None` when any part cannot be read.
pub async fn instance_metadata(base_url: &str) -> Option<AwsInfo> {
    let client = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).no_proxy().build().ok()?;
    let token = client
        .put(format!("{base_url}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL_SECONDS)
        .send()
        .await
        .ok()?
        .error_for_status()
        .ok()?
        .text()
        .await
        .ok()?;
    let get = |path: &'static str| {
        let request =
            client.get(format!("{base_url}/latest/meta-data/{path}")).header("X-aws-ec2-metadata-token", &token);
        async move {
            let text = request.send().await.ok()?.error_for_status().ok()?.text().await.ok()?;
            Some(text.trim().to_owned())
        }
    };
    let (region, instance_type, instance_id, image_id) =
        tokio::join!(get("placement/region"), get("instance-type"), get("instance-id"), get("ami-id"));
    Some(AwsInfo {
        region: region?,
        ec2_instance_type: instance_type?,
        ec2_instance_id: instance_id?,
        ec2_image_id: image_id?,
    })
}

/// The metadata of this host when it is an EC2 instance (and `enabled`), else `None` without any request.
pub async fn local_aws(enabled: bool) -> Option<AwsInfo> {
    if !enabled || !is_ec2() {
        return None;
    }
    let info = instance_metadata(IMDS_URL).await;
    if info.is_none() {
        tracing::warn!("this host looks like an EC2 instance but its metadata could not be read (IMDSv2)");
    }
    info
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A fake IMDSv2: hands out a token on PUT and answers GETs only with that token.
    async fn fake_imds() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 4096];
                    let n = socket.read(&mut buffer).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&buffer[..n]).to_ascii_lowercase();
                    let line = request.lines().next().unwrap_or_default().to_owned();
                    let authorized = request.contains("x-aws-ec2-metadata-token: tok-1");
                    let (status, body) = match line.split_whitespace().collect::<Vec<_>>()[..] {
                        ["put", "/latest/api/token", _] if request.contains("x-aws-ec2-metadata-token-ttl-seconds") => {
                            ("200 OK", "tok-1")
                        }
                        ["get", path, _] if authorized => match path {
                            "/latest/meta-data/placement/region" => ("200 OK", "eu-west-1"),
                            "/latest/meta-data/instance-type" => ("200 OK", "g4dn.xlarge"),
                            "/latest/meta-data/instance-id" => ("200 OK", "i-0123456789abcdef0"),
                            "/latest/meta-data/ami-id" => ("200 OK", "ami-0abcdef"),
                            _ => ("404 Not Found", ""),
                        },
                        _ => ("401 Unauthorized", ""),
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        url
    }

    #[tokio::test]
    async fn reads_the_metadata_with_a_session_token() {
        let url = fake_imds().await;
        let info = instance_metadata(&url).await.expect("metadata");
        assert_eq!(info.region, "eu-west-1");
        assert_eq!(info.ec2_instance_type, "g4dn.xlarge");
        assert_eq!(info.ec2_instance_id, "i-0123456789abcdef0");
        assert_eq!(info.ec2_image_id, "ami-0abcdef");
    }

    #[tokio::test]
    async fn no_service_means_no_metadata() {
        let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", reserved.local_addr().unwrap());
        drop(reserved);
        assert_eq!(instance_metadata(&url).await, None);
        assert_eq!(local_aws(false).await, None, "disabled: never asked");
    }
}
