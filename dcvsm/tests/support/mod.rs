//! What the dcvsm tests share: a `switchboard up` cluster with a registered API client, the built binary
//! run as a process in a clean environment, and golden-file comparison with ids and times masked.

#![allow(dead_code)] // each test file uses a part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use switchboard::{Cluster, UpConfig};

/// A running cluster and the credentials of one API client.
pub struct Harness {
    /// The cluster (stopped by [`Harness::stop`]).
    pub cluster: Cluster,
    /// The API client's id.
    pub client_id: String,
    /// The API client's password.
    pub client_password: String,
    /// Home, config and cache folders of the dcvsm processes.
    pub home: tempfile::TempDir,
    _data: tempfile::TempDir,
}

/// What one dcvsm run returned.
#[derive(Debug)]
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8(output.stdout).expect("UTF-8 output"),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Panics with both streams unless the exit code is `code`.
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(self.code, code, "exit code; stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    /// The standard output as JSON (panics when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.stdout))
    }
}

impl Harness {
    /// Starts a cluster with `hosts` simulated hosts, waits for them and registers an API client.
    pub async fn start(hosts: usize) -> Harness {
        Self::start_with(hosts, |_| {}).await
    }

    /// [`Harness::start`] with the cluster's settings changed by `change`.
    pub async fn start_with(hosts: usize, change: impl FnOnce(&mut UpConfig)) -> Harness {
        let data = tempfile::tempdir().unwrap();
        let mut config = UpConfig::ephemeral(data.path(), hosts);
        change(&mut config);
        let cluster = Cluster::start(config).await.unwrap();
        cluster.wait_ready(hosts, Duration::from_secs(30)).await.unwrap();
        let request = switchboard_proto::RegisterApiClientRequest { client_name: "dcvsm".into(), ..Default::default() };
        let registered = cluster.admin.client().unwrap().register_api_client(request).await.unwrap().into_inner();
        let home = tempfile::tempdir().unwrap();
        for dir in ["config", "cache"] {
            std::fs::create_dir_all(home.path().join(dir)).unwrap();
        }
        Harness {
            cluster,
            client_id: registered.client_id,
            client_password: registered.client_secret,
            home,
            _data: data,
        }
    }

    /// `$XDG_CONFIG_HOME` of the dcvsm processes.
    pub fn config_home(&self) -> PathBuf {
        self.home.path().join("config")
    }

    /// `$XDG_CACHE_HOME` of the dcvsm processes.
    pub fn cache_home(&self) -> PathBuf {
        self.home.path().join("cache")
    }

    /// dcvsm with the broker URL and CA bundle as flags and the credentials in the environment.
    pub fn dcvsm(&self, args: &[&str]) -> Command {
        let mut command = self.bare(&[]);
        command.args(["--broker-url", &self.cluster.api_url, "--ca-bundle"]).arg(&self.cluster.ca_path);
        command.env("DCV_SM_CLIENT_ID", &self.client_id).env("DCV_SM_CLIENT_PASSWORD", &self.client_password);
        command.args(args);
        command
    }

    /// dcvsm with nothing but `env` and the harness's home folders.
    pub fn bare(&self, args: &[&str]) -> Command {
        bare_command(self.home.path(), args)
    }

    /// Stops the cluster.
    pub async fn stop(self) {
        self.cluster.stop().await;
    }
}

/// dcvsm in an empty environment whose home, config and cache folders are under `home`.
pub fn bare_command(home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dcvsm"));
    command
        .env_clear()
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .args(args);
    command
}

/// Runs a prepared command off the async runtime.
pub async fn run(mut command: Command) -> Run {
    tokio::task::spawn_blocking(move || command.output().expect("run dcvsm")).await.unwrap().into()
}

/// Replaces UUIDs with `<id>` and RFC 3339 times with `<time>`.
pub fn mask(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut at = 0;
    while at < chars.len() {
        if let Some(len) = uuid_at(&chars[at..]) {
            out.push_str("<id>");
            at += len;
        } else if let Some(len) = time_at(&chars[at..]) {
            out.push_str("<time>");
            at += len;
        } else {
            out.push(chars[at]);
            at += 1;
        }
    }
    out
}

fn uuid_at(chars: &[char]) -> Option<usize> {
    let groups = [8, 4, 4, 4, 12];
    let mut at = 0;
    for (index, len) in groups.iter().enumerate() {
        if index > 0 {
            (chars.get(at) == Some(&'-')).then_some(())?;
            at += 1;
        }
        for _ in 0..*len {
            chars.get(at).filter(|c| c.is_ascii_hexdigit())?;
            at += 1;
        }
    }
    Some(at)
}

fn time_at(chars: &[char]) -> Option<usize> {
    // YYYY-MM-DDTHH:MM:SS then optional fraction and zone.
    let shape = "dddd-dd-ddTdd:dd:dd";
    for (index, expected) in shape.chars().enumerate() {
        let c = *chars.get(index)?;
        let ok = if expected == 'd' { c.is_ascii_digit() } else { c == expected };
        ok.then_some(())?;
    }
    let mut at = shape.len();
    if chars.get(at) == Some(&'.') {
        at += 1;
        while chars.get(at).is_some_and(char::is_ascii_digit) {
            at += 1;
        }
    }
    match chars.get(at) {
        Some('Z') => at += 1,
        Some('+') | Some('-') if chars.len() >= at + 6 => at += 6,
        _ => {}
    }
    Some(at)
}

/// Compares `actual` (masked) with `tests/golden/<name>`; `DCVSM_UPDATE_GOLDEN=1` rewrites the file.
pub fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("golden").join(name);
    let actual = mask(actual);
    if std::env::var_os("DCVSM_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    assert_eq!(actual, expected, "golden {} differs (DCVSM_UPDATE_GOLDEN=1 rewrites it)", path.display());
}

/// Polls `describe-sessions` until the session is in `state`.
pub async fn wait_for_state(harness: &Harness, session_id: &str, state: &str) -> serde_json::Value {
    for _ in 0..150 {
        let described = run(harness.dcvsm(&["describe-sessions", "--session-ids", session_id])).await.expect_code(0);
        let session = described.json()["Sessions"][0].clone();
        if session["State"] == state {
            return session;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("session {session_id} never became {state}");
}

#[test]
fn masking_replaces_ids_and_times() {
    let text = "id 0b0e5c1e-7a2f-4c4e-9d7c-1f2e3d4c5b6a at 2026-12-02T21:57:36.123Z, 2026-12-02T21:57:36+01:00.";
    assert_eq!(mask(text), "id <id> at <time>, <time>.");
}
