//! The DCV server's endpoints, from its configuration file (`/etc/dcv/dcv.conf`).
//!
//! `dcv.conf` is an INI file. The `[connectivity]` section sets `web-port` (default 8443), `web-url-path`
//! (default `/`), `enable-quic-frontend` (default false) and `quic-port` (default: the web port). The host
//! offers an `HTTP` endpoint (TCP/WebSocket) on the web port, and a `QUIC` endpoint (UDP) on the QUIC port
//! when the QUIC frontend is enabled. A missing or unreadable file means the defaults.

use std::path::Path;

use switchboard_proto::Endpoint;

/// Port DCV serves clients on by default.
pub const DEFAULT_WEB_PORT: u32 = 8443;

/// The endpoints of the DCV server at `ip` as the file at `path` configures them.
pub fn endpoints(path: &Path, ip: &str) -> Vec<Endpoint> {
    parse(&std::fs::read_to_string(path).unwrap_or_default(), ip)
}

/// The endpoints `text` (dcv.conf contents) configures for `ip`.
pub fn parse(text: &str, ip: &str) -> Vec<Endpoint> {
    let mut section = String::new();
    let mut web_port = DEFAULT_WEB_PORT;
    let mut quic_port = None;
    let mut quic = false;
    let mut path = "/".to_owned();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_ascii_lowercase();
            continue;
        }
        if section != "connectivity" {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
        match key.trim() {
            "web-port" => web_port = value.parse().unwrap_or(web_port),
            "quic-port" => quic_port = value.parse().ok(),
            "enable-quic-frontend" => quic = value.eq_ignore_ascii_case("true"),
            "web-url-path" if !value.is_empty() => path = value.to_owned(),
            _ => {}
        }
    }
    let endpoint = |port: u32, protocol: &str| Endpoint {
        ip_address: ip.to_owned(),
        port,
        web_url_path: path.clone(),
        protocol: protocol.to_owned(),
    };
    let mut endpoints = vec![endpoint(web_port, "HTTP")];
    if quic {
        endpoints.push(endpoint(quic_port.unwrap_or(web_port), "QUIC"));
    }
    endpoints
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_a_file() {
        let endpoints = endpoints(Path::new("/nonexistent/dcv.conf"), "10.0.0.1");
        assert_eq!(endpoints.len(), 1);
        assert_eq!(
            (endpoints[0].port, endpoints[0].protocol.as_str(), endpoints[0].web_url_path.as_str()),
            (8443, "HTTP", "/")
        );
    }

    #[test]
    fn reads_ports_path_and_quic() {
        let text = "[license]\nweb-port=1\n\n[connectivity]\n# comment\nweb-port=9443\nweb-url-path=\"/dcv\"\n\
                    enable-quic-frontend=true\nquic-port = 9444\n[security]\nauthentication=\"system\"\n";
        let endpoints = parse(text, "10.0.0.2");
        let summary: Vec<(u32, &str, &str)> =
            endpoints.iter().map(|e| (e.port, e.protocol.as_str(), e.web_url_path.as_str())).collect();
        assert_eq!(summary, [(9443, "HTTP", "/dcv"), (9444, "QUIC", "/dcv")]);
        assert!(endpoints.iter().all(|e| e.ip_address == "10.0.0.2"));
        let same_port = parse("[connectivity]\nenable-quic-frontend=true\n", "ip");
        assert_eq!(same_port[1].port, 8443);
    }
}
