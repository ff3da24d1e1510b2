//! Settings from the command line, the environment and `dcvsmcli.conf`, in that order of precedence.
//!
//! The file is the original's INI layout: `[output]` (`output-format`, `debug`), `[security]`
//! (`no-verify-ssl`, `ca-bundle`), `[authentication]` (`auth-server-url`, `client-id`, `client-password`)
//! and `[broker]` (`url`). Without `--conf` it is looked up where the original looks:
//! `$XDG_CONFIG_HOME/dcvsmcli.conf` (`~/.config` when unset), `%UserProfile%\dcvsmcli.conf` on Windows,
//! then `conf/dcvsmcli.conf` beside the installation (the binary's folder and its parent). No file at all
//! is fine when the flags and the environment say enough. Credentials come only from the environment
//! (`DCV_SM_CLIENT_ID`, `DCV_SM_CLIENT_PASSWORD`, or a ready `DCV_SM_OAUTH2_TOKEN`) or the file, never
//! from flags, as in the original.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cli::{GlobalArgs, OutputFormat};
use crate::error::{Error, Result};

/// Environment variable: URL of the authorization server.
pub const ENV_AUTH_SERVER_URL: &str = "DCV_SM_AUTH_SERVER_URL";
/// Environment variable: the API client id.
pub const ENV_CLIENT_ID: &str = "DCV_SM_CLIENT_ID";
/// Environment variable: the API client password.
pub const ENV_CLIENT_PASSWORD: &str = "DCV_SM_CLIENT_PASSWORD";
/// Environment variable: an access token to use as is (no token request).
pub const ENV_OAUTH2_TOKEN: &str = "DCV_SM_OAUTH2_TOKEN";
/// The configuration file's name.
pub const FILE_NAME: &str = "dcvsmcli.conf";

/// A secret string: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Everything a command needs to reach the broker, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The broker's base URL, without a trailing slash.
    pub broker_url: String,
    /// The authorization server's URL as configured (a base URL or the full token URL), if any.
    pub auth_server_url: Option<String>,
    /// API client id.
    pub client_id: Option<String>,
    /// API client password.
    pub client_password: Option<Secret>,
    /// A ready access token, which replaces the token request.
    pub oauth2_token: Option<Secret>,
    /// Output format.
    pub output_format: OutputFormat,
    /// Whether to print debug lines on stderr.
    pub debug: bool,
    /// Whether to verify TLS certificates.
    pub verify_ssl: bool,
    /// Extra CAs to trust.
    pub ca_bundle: Option<PathBuf>,
    /// The configuration file that was read, if any.
    pub conf_file: Option<PathBuf>,
}

/// A parsed INI file: section → key → value (names lowercased).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConfFile {
    sections: BTreeMap<String, BTreeMap<String, String>>,
}

impl ConfFile {
    /// Parses INI text: `[section]`, `key = value` or `key: value`, `#` and `;` comment lines.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut file = ConfFile::default();
        let mut section: Option<String> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[') {
                let name = name.strip_suffix(']').ok_or_else(|| format!("line {}: unclosed section", index + 1))?;
                let name = name.trim().to_ascii_lowercase();
                file.sections.entry(name.clone()).or_default();
                section = Some(name);
                continue;
            }
            let Some(at) = line.find(['=', ':']) else {
                return Err(format!("line {}: expected `key = value`", index + 1));
            };
            let Some(current) = &section else {
                return Err(format!("line {}: a key before any [section]", index + 1));
            };
            let key = line[..at].trim().to_ascii_lowercase();
            let value = line[at + 1..].trim().to_owned();
            file.sections.entry(current.clone()).or_default().insert(key, value);
        }
        Ok(file)
    }

    /// The value of `key` in `section`, if set and not empty.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.sections.get(section)?.get(key).map(String::as_str).filter(|value| !value.is_empty())
    }

    /// A boolean key (`true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`).
    fn get_bool(&self, path: &Path, section: &str, key: &str) -> Result<Option<bool>> {
        let Some(value) = self.get(section, key) else { return Ok(None) };
        match value.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(Some(true)),
            "false" | "no" | "off" | "0" => Ok(Some(false)),
            _ => Err(Error::ConfigFile {
                path: path.to_owned(),
                reason: format!("[{section}] {key} = {value}: expected true or false"),
            }),
        }
    }
}

/// Where the configuration file is looked up when `--conf` is not given, first found wins.
pub fn default_locations(env: &dyn Fn(&str) -> Option<String>, exe: Option<&Path>) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    let non_empty = |name: &str| env(name).filter(|value| !value.is_empty());
    if cfg!(windows) {
        if let Some(profile) = non_empty("UserProfile") {
            paths.push(PathBuf::from(profile).join(FILE_NAME));
        }
    } else if let Some(config_home) = non_empty("XDG_CONFIG_HOME") {
        paths.push(PathBuf::from(config_home).join(FILE_NAME));
    } else if let Some(home) = non_empty("HOME") {
        paths.push(PathBuf::from(home).join(".config").join(FILE_NAME));
    }
    if let Some(dir) = exe.and_then(Path::parent) {
        paths.push(dir.join("conf").join(FILE_NAME));
        if let Some(parent) = dir.parent() {
            paths.push(parent.join("conf").join(FILE_NAME));
        }
    }
    paths
}

/// Reads the file `--conf` names (which must exist) or the first default location that exists.
fn load_file(
    conf: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    exe: Option<&Path>,
) -> Result<Option<(PathBuf, ConfFile)>> {
    let path = match conf {
        Some(path) => path.to_owned(),
        None => match default_locations(env, exe).into_iter().find(|path| path.is_file()) {
            Some(path) => path,
            None => return Ok(None),
        },
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|error| Error::ConfigFile { path: path.clone(), reason: error.to_string() })?;
    let file = ConfFile::parse(&text).map_err(|reason| Error::ConfigFile { path: path.clone(), reason })?;
    Ok(Some((path, file)))
}

/// Resolves the settings: flags, then the environment, then the configuration file.
pub fn resolve(flags: &GlobalArgs, env: &dyn Fn(&str) -> Option<String>, exe: Option<&Path>) -> Result<Settings> {
    let loaded = load_file(flags.conf.as_deref(), env, exe)?;
    let (conf_file, file) = match loaded {
        Some((path, file)) => (Some(path), file),
        None => (None, ConfFile::default()),
    };
    let file_path = conf_file.clone().unwrap_or_default();
    let from_env = |name: &str| env(name).filter(|value| !value.is_empty());
    let from_file = |section: &str, key: &str| file.get(section, key).map(str::to_owned);

    let broker_url = flags.broker_url.clone().or_else(|| from_file("broker", "url")).ok_or_else(|| {
        Error::Configuration(
            "no broker URL: pass --broker-url or set `url` in the [broker] section of dcvsmcli.conf".into(),
        )
    })?;
    let output_format = match flags.output_format {
        Some(format) => format,
        None => match file.get("output", "output-format") {
            None => OutputFormat::default(),
            Some(value) => <OutputFormat as clap::ValueEnum>::from_str(value, true).map_err(|_| Error::ConfigFile {
                path: file_path.clone(),
                reason: format!("[output] output-format = {value}: expected json or table"),
            })?,
        },
    };
    let debug = flags.debug || file.get_bool(&file_path, "output", "debug")?.unwrap_or(false);
    let no_verify = flags.no_verify_ssl || file.get_bool(&file_path, "security", "no-verify-ssl")?.unwrap_or(false);
    let ca_bundle = flags.ca_bundle.clone().or_else(|| {
        // A relative path in the file is taken from the working directory, else from the file's folder.
        let value = PathBuf::from(from_file("security", "ca-bundle")?);
        if value.is_absolute() || value.exists() {
            return Some(value);
        }
        Some(file_path.parent().map(|dir| dir.join(&value)).unwrap_or(value))
    });
    Ok(Settings {
        broker_url: broker_url.trim_end_matches('/').to_owned(),
        auth_server_url: flags
            .auth_server_url
            .clone()
            .or_else(|| from_env(ENV_AUTH_SERVER_URL))
            .or_else(|| from_file("authentication", "auth-server-url")),
        client_id: from_env(ENV_CLIENT_ID).or_else(|| from_file("authentication", "client-id")),
        client_password: from_env(ENV_CLIENT_PASSWORD)
            .or_else(|| from_file("authentication", "client-password"))
            .map(Secret),
        oauth2_token: from_env(ENV_OAUTH2_TOKEN).map(Secret),
        output_format,
        debug,
        verify_ssl: !no_verify,
        ca_bundle,
        conf_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUIDE_EXAMPLE: &str = "[output]\n# The formatting style for command output.\noutput-format = json\n\
        debug = true\n[security]\nno-verify-ssl = true\nca-bundle = ca-bundle.pem\n[authentication]\n\
        auth-server-url = https://broker-host:8443/oauth2/token?grant_type=client_credentials\n\
        client-id = username\nclient-password = password\n[broker]\nurl = https://broker-host:8443\n";

    #[test]
    fn the_guides_example_file_parses() {
        let file = ConfFile::parse(GUIDE_EXAMPLE).unwrap();
        assert_eq!(file.get("broker", "url"), Some("https://broker-host:8443"));
        assert_eq!(
            file.get("authentication", "auth-server-url"),
            Some("https://broker-host:8443/oauth2/token?grant_type=client_credentials")
        );
        assert_eq!(file.get("authentication", "client-password"), Some("password"));
        assert_eq!(file.get("output", "debug"), Some("true"));
    }

    #[test]
    fn malformed_files_are_refused_with_the_line() {
        assert!(ConfFile::parse("url = x\n").unwrap_err().contains("line 1"));
        assert!(ConfFile::parse("[broker\n").unwrap_err().contains("unclosed"));
        assert!(ConfFile::parse("[broker]\njust words\n").unwrap_err().contains("line 2"));
    }

    #[test]
    fn xdg_config_home_comes_first_then_home_config_then_beside_the_installation() {
        let env = |name: &str| match name {
            "XDG_CONFIG_HOME" => Some("/xdg".to_owned()),
            "HOME" => Some("/home/u".to_owned()),
            _ => None,
        };
        let paths = default_locations(&env, Some(Path::new("/opt/dcvsm/bin/dcvsm")));
        if !cfg!(windows) {
            assert_eq!(paths[0], PathBuf::from("/xdg/dcvsmcli.conf"));
        }
        assert!(paths.contains(&PathBuf::from("/opt/dcvsm/bin/conf/dcvsmcli.conf")));
        assert!(paths.contains(&PathBuf::from("/opt/dcvsm/conf/dcvsmcli.conf")));
        let no_xdg = |name: &str| (name == "HOME").then(|| "/home/u".to_owned());
        if !cfg!(windows) {
            assert_eq!(default_locations(&no_xdg, None), vec![PathBuf::from("/home/u/.config/dcvsmcli.conf")]);
        }
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "[redacted]");
    }
}
