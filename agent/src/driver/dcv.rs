//! The real driver: the host's DCV server through the `dcv` command line.
//!
//! Every operation is one `dcv` process started directly (`tokio::process::Command`, never a shell), with
//! its arguments as separate argv entries, standard input closed, a timeout after which it is killed, and
//! bounded output. At most [`MAX_CONCURRENT_PROCESSES`] run at once. Inputs that reach argv are checked
//! first: session ids and owners may not start with `-` (they would read as options), init and autorun
//! files are confined to their folders ([`super::paths`]), and permissions files go through a private
//! temporary file that is removed when the command ends.
//!
//! The commands and the outputs parsed (JSON with `--json`) are the ones of the DCV administrator guide:
//! `create-session`, `close-session`, `list-sessions`, `describe-session`, `list-connections`,
//! `get-screenshot`, `set-permissions` and `version`. Output fields are read leniently (kebab or snake case,
//! missing fields default) so server versions that add fields keep working.
//!
//! Health: the DCV server is healthy when its last `list-sessions` succeeded; a server that is not running
//! makes `list-sessions` fail, the agent reports `dcv_healthy = false` and the broker shows the host as
//! `UNHEALTHY_DCV_SERVER`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use serde::Deserialize;
use switchboard_common::time::now_ms;
use switchboard_proto::{CreateSessionSpec, HostSession, ScreenshotImage, SessionType};
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

use super::paths::confined_file;
use super::{DcvDriver, DriverError, Result};

/// `dcv` processes running at once; more wait for a slot.
pub const MAX_CONCURRENT_PROCESSES: usize = 8;
/// Largest standard output read from one `dcv` command (a JSON screenshot of a large display).
const MAX_STDOUT_BYTES: u64 = 64 * 1024 * 1024;
/// Largest standard error kept for an error message.
const MAX_STDERR_BYTES: u64 = 16 * 1024;
/// Longest session id accepted.
const MAX_ID_BYTES: usize = 256;

/// How the driver runs `dcv`.
#[derive(Debug, Clone)]
pub struct DcvCliSettings {
    /// The `dcv` program (a path, or a name looked up in `PATH`).
    pub program: PathBuf,
    /// Folder `InitFile` names are relative to; `None` refuses init files.
    pub init_folder: Option<PathBuf>,
    /// Folder `AutorunFile` names are relative to; `None` refuses autorun files.
    pub autorun_folder: Option<PathBuf>,
    /// Longest one command may run.
    pub timeout: Duration,
    /// Maximum virtual sessions; 0 means unlimited.
    pub max_virtual_sessions: u32,
}

impl DcvCliSettings {
    /// Settings for `program` with no folders, a 30 s timeout and no limit.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            init_folder: None,
            autorun_folder: None,
            timeout: Duration::from_secs(30),
            max_virtual_sessions: 0,
        }
    }
}

/// One client connection of a session (`dcv list-connections --json`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DcvConnection {
    /// Connection id.
    #[serde(alias = "connection-id", alias = "connection_id", default)]
    pub id: String,
    /// User the client authenticated as.
    #[serde(alias = "username", default)]
    pub user: String,
    /// Client address.
    #[serde(alias = "client-ip", alias = "client_ip", default)]
    pub client_ip: String,
}

/// The driver of the host's DCV server.
#[derive(Debug)]
pub struct DcvCliDriver {
    settings: DcvCliSettings,
    /// Bounds the `dcv` processes running at once.
    processes: Semaphore,
    /// Whether the last `list-sessions` succeeded.
    healthy: AtomicBool,
    /// Whether any `list-sessions` ran yet (until then `health` asks the server).
    probed: AtomicBool,
    /// `max_concurrent_clients` of the sessions this agent created, for servers whose listing omits it.
    created_limits: Mutex<HashMap<String, u32>>,
}

impl DcvCliDriver {
    /// A driver running `dcv` as `settings` say; nothing runs until the first call.
    pub fn new(settings: DcvCliSettings) -> Self {
        Self {
            settings,
            processes: Semaphore::new(MAX_CONCURRENT_PROCESSES),
            healthy: AtomicBool::new(false),
            probed: AtomicBool::new(false),
            created_limits: Mutex::default(),
        }
    }

    /// The client connections of a session (`dcv list-connections --json SESSION`).
    pub async fn list_connections(&self, session_id: &str) -> Result<Vec<DcvConnection>> {
        check_id(session_id)?;
        let stdout = self.run(["list-connections", "--json", session_id], Some(session_id)).await?;
        parse_json(&stdout, "list-connections")
    }

    /// `dcv describe-session --json SESSION` as the broker sees a session.
    pub async fn describe_session(&self, session_id: &str) -> Result<HostSession> {
        check_id(session_id)?;
        let stdout = self.run(["describe-session", "--json", session_id], Some(session_id)).await?;
        let session: DcvSession = parse_json(&stdout, "describe-session")?;
        Ok(self.host_session(session))
    }

    /// Runs `dcv ARGS`; the standard output on success. `session_id` names the session for not-found errors.
    async fn run<I, S>(&self, args: I, session_id: Option<&str>) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let verb = args.first().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
        let _slot = self.processes.acquire().await.map_err(|_| DriverError::Dcv("driver closed".into()))?;
        let mut child = tokio::process::Command::new(&self.settings.program)
            .args(&args)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| DriverError::Dcv(format!("cannot run {} {verb}: {e}", self.settings.program.display())))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let finished = tokio::time::timeout(self.settings.timeout, async {
            let mut out = Vec::new();
            let mut stdout = stdout.take(MAX_STDOUT_BYTES + 1);
            let (read_out, err) = tokio::join!(stdout.read_to_end(&mut out), read_keeping(stderr, MAX_STDERR_BYTES));
            read_out?;
            let err = err?;
            let status = child.wait().await?;
            Ok::<_, std::io::Error>((status, out, err))
        })
        .await;
        let (status, out, err) = match finished {
            Err(_) => {
                return Err(DriverError::Dcv(format!("dcv {verb} did not finish within {:?}", self.settings.timeout)));
            }
            Ok(Err(error)) => return Err(DriverError::Dcv(format!("dcv {verb}: {error}"))),
            Ok(Ok(done)) => done,
        };
        if out.len() as u64 > MAX_STDOUT_BYTES {
            return Err(DriverError::Dcv(format!("dcv {verb}: output larger than {MAX_STDOUT_BYTES} bytes")));
        }
        let stderr_text = String::from_utf8_lossy(&err).trim().to_owned();
        if !status.success() {
            return Err(classify_failure(&verb, session_id, status.code(), &stderr_text, &out));
        }
        String::from_utf8(out).map_err(|_| DriverError::Dcv(format!("dcv {verb}: output is not UTF-8")))
    }

    fn host_session(&self, session: DcvSession) -> HostSession {
        let r#type = match session.r#type.to_ascii_lowercase().as_str() {
            "console" => SessionType::Console,
            _ => SessionType::Virtual,
        };
        let known_limit = self.created_limits.lock().expect("limits lock poisoned").get(&session.id).copied();
        HostSession {
            name: if session.name.is_empty() { session.id.clone() } else { session.name },
            owner: session.owner,
            r#type: r#type as i32,
            max_concurrent_clients: session.max_concurrent_clients.or(known_limit).unwrap_or(0),
            num_of_connections: session.num_of_connections.unwrap_or(0),
            creation_time_unix_ms: parse_time(&session.creation_time),
            last_disconnection_time_unix_ms: parse_time(&session.last_disconnection_time),
            storage_root: session.storage_root,
            id: session.id,
        }
    }

    /// The argv of `create-session` for `spec` (everything after the program name).
    fn create_args(
        &self,
        session_id: &str,
        spec: &CreateSessionSpec,
        permissions: Option<&PathBuf>,
    ) -> Result<Vec<OsString>> {
        let session_type = spec.r#type();
        let mut args: Vec<OsString> = vec!["create-session".into(), "--type".into()];
        args.push(match session_type {
            SessionType::Console => "console".into(),
            SessionType::Virtual => "virtual".into(),
            SessionType::Unspecified => return Err(DriverError::InvalidRequest("session type not set".into())),
        });
        if !spec.name.is_empty() {
            args.extend(["--name".into(), spec.name.clone().into()]);
        }
        // The owner may connect; for a virtual session the desktop also runs as that user.
        args.extend(["--owner".into(), spec.owner.clone().into()]);
        if session_type == SessionType::Virtual {
            args.extend(["--user".into(), spec.owner.clone().into()]);
        }
        if let Some(path) = permissions {
            args.extend(["--permissions-file".into(), path.clone().into()]);
        }
        if !spec.storage_root.is_empty() {
            args.extend(["--storage-root".into(), spec.storage_root.clone().into()]);
        }
        if session_type == SessionType::Virtual {
            args.extend(["--gl".into(), if spec.dcv_gl_enabled { "on" } else { "off" }.into()]);
        }
        if spec.max_concurrent_clients > 0 {
            args.extend(["--max-concurrent-clients".into(), spec.max_concurrent_clients.to_string().into()]);
        }
        if !spec.init_file.is_empty() {
            let init = confined_file(self.settings.init_folder.as_deref(), &spec.init_file, "init file")?;
            args.extend(["--init".into(), init.into()]);
        }
        if !spec.autorun_file.is_empty() {
            let autorun = confined_file(self.settings.autorun_folder.as_deref(), &spec.autorun_file, "autorun file")?;
            args.extend(["--autorun-file".into(), autorun.into()]);
            for argument in &spec.autorun_file_arguments {
                if argument.chars().any(|c| c == '\0') {
                    return Err(DriverError::InvalidRequest("autorun file argument with a NUL character".into()));
                }
                args.extend(["--autorun-file-arguments".into(), argument.clone().into()]);
            }
        } else if !spec.autorun_file_arguments.is_empty() {
            return Err(DriverError::InvalidRequest("autorun file arguments without an autorun file".into()));
        }
        args.push(session_id.into());
        Ok(args)
    }
}

#[async_trait]
impl DcvDriver for DcvCliDriver {
    async fn health(&self) -> bool {
        if !self.probed.load(Ordering::Acquire) {
            let _ = self.list_sessions().await;
        }
        self.healthy.load(Ordering::Acquire)
    }

    async fn version(&self) -> String {
        match self.run(["version"], None).await {
            Ok(text) => parse_version(&text),
            Err(error) => {
                tracing::warn!(%error, "cannot read the DCV server version");
                String::new()
            }
        }
    }

    async fn list_sessions(&self) -> Result<Vec<HostSession>> {
        let listed = self.run(["list-sessions", "--json"], None).await;
        self.probed.store(true, Ordering::Release);
        self.healthy.store(listed.is_ok(), Ordering::Release);
        let sessions: Vec<DcvSession> = parse_json(&listed?, "list-sessions")?;
        let mut hosts = Vec::with_capacity(sessions.len());
        for session in sessions {
            let count_missing = session.num_of_connections.is_none();
            let mut host = self.host_session(session);
            if count_missing && let Ok(connections) = self.list_connections(&host.id).await {
                host.num_of_connections = connections.len() as u32;
            }
            hosts.push(host);
        }
        let live: std::collections::HashSet<&str> = hosts.iter().map(|s| s.id.as_str()).collect();
        self.created_limits.lock().expect("limits lock poisoned").retain(|id, _| live.contains(id.as_str()));
        Ok(hosts)
    }

    async fn create_session(&self, session_id: &str, spec: &CreateSessionSpec) -> Result<HostSession> {
        check_id(session_id)?;
        if spec.owner.is_empty() || spec.owner.starts_with('-') || spec.owner.chars().any(char::is_control) {
            return Err(DriverError::InvalidRequest(format!("invalid owner `{}`", spec.owner)));
        }
        if spec.name.starts_with('-') || spec.storage_root.starts_with('-') {
            return Err(DriverError::InvalidRequest("name and storage root may not start with `-`".into()));
        }
        let existing = self.list_sessions().await?;
        if existing.iter().any(|s| s.id == session_id) {
            return Err(DriverError::SessionExists(session_id.into()));
        }
        let count_of = |kind: SessionType| existing.iter().filter(|s| s.r#type() == kind).count();
        match spec.r#type() {
            SessionType::Console if count_of(SessionType::Console) > 0 => {
                return Err(DriverError::ConsoleSessionExists);
            }
            SessionType::Virtual
                if self.settings.max_virtual_sessions > 0
                    && count_of(SessionType::Virtual) >= self.settings.max_virtual_sessions as usize =>
            {
                return Err(DriverError::VirtualSessionLimit(self.settings.max_virtual_sessions));
            }
            _ => {}
        }
        let permissions = match spec.permissions_file.is_empty() {
            true => None,
            false => Some(write_private_file(&spec.permissions_file)?),
        };
        let args = self.create_args(session_id, spec, permissions.as_ref().map(|f| f.path().to_path_buf()).as_ref())?;
        self.run(args, None).await?;
        drop(permissions);
        if spec.max_concurrent_clients > 0 {
            let mut limits = self.created_limits.lock().expect("limits lock poisoned");
            limits.insert(session_id.to_owned(), spec.max_concurrent_clients);
        }
        match self.describe_session(session_id).await {
            Ok(session) => Ok(session),
            Err(error) => {
                tracing::warn!(session_id, %error, "created session cannot be described; reporting the request");
                Ok(HostSession {
                    id: session_id.to_owned(),
                    name: spec.name.clone(),
                    owner: spec.owner.clone(),
                    r#type: spec.r#type,
                    max_concurrent_clients: spec.max_concurrent_clients,
                    num_of_connections: 0,
                    creation_time_unix_ms: now_ms(),
                    last_disconnection_time_unix_ms: 0,
                    storage_root: spec.storage_root.clone(),
                })
            }
        }
    }

    async fn close_session(&self, session_id: &str) -> Result<()> {
        check_id(session_id)?;
        self.run(["close-session", session_id], Some(session_id)).await?;
        self.created_limits.lock().expect("limits lock poisoned").remove(session_id);
        Ok(())
    }

    async fn set_permissions(&self, session_id: &str, permissions: &[u8]) -> Result<()> {
        check_id(session_id)?;
        let file = write_private_file(permissions)?;
        let args: Vec<OsString> = vec![
            "set-permissions".into(),
            "--session".into(),
            session_id.into(),
            "--file".into(),
            file.path().as_os_str().to_owned(),
        ];
        self.run(args, Some(session_id)).await?;
        Ok(())
    }

    async fn screenshot(
        &self,
        session_id: &str,
        max_width: u32,
        max_height: u32,
        format: &str,
    ) -> Result<Vec<ScreenshotImage>> {
        check_id(session_id)?;
        let format = match format.to_ascii_lowercase().as_str() {
            "" | "png" => "png",
            "jpeg" | "jpg" => "jpeg",
            other => return Err(DriverError::InvalidRequest(format!("unknown screenshot format `{other}`"))),
        };
        let mut args: Vec<OsString> = vec!["get-screenshot".into()];
        if max_width > 0 {
            args.extend(["--max-width".into(), max_width.to_string().into()]);
        }
        if max_height > 0 {
            args.extend(["--max-height".into(), max_height.to_string().into()]);
        }
        args.extend(["--format".into(), format.into(), "--json".into(), session_id.into()]);
        let stdout = self.run(args, Some(session_id)).await?;
        parse_screenshot(&stdout, format)
    }
}

/// A session as `list-sessions --json` / `describe-session --json` print it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DcvSession {
    id: String,
    name: String,
    owner: String,
    #[serde(rename = "type")]
    r#type: String,
    #[serde(alias = "num-of-connections", alias = "num_of_connections")]
    num_of_connections: Option<u32>,
    #[serde(alias = "max-concurrent-clients", alias = "max_concurrent_clients")]
    max_concurrent_clients: Option<u32>,
    #[serde(alias = "creation-time", alias = "creation_time")]
    creation_time: String,
    #[serde(alias = "last-disconnection-time", alias = "last_disconnection_time")]
    last_disconnection_time: String,
    #[serde(alias = "storage-root", alias = "storage_root")]
    storage_root: String,
}

/// Reads `reader` to its end (so the writer never blocks on a full pipe), keeping the first `keep` bytes.
async fn read_keeping(mut reader: impl tokio::io::AsyncRead + Unpin, keep: u64) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = reader.read(&mut buffer).await?;
        if n == 0 {
            return Ok(kept);
        }
        let room = (keep as usize).saturating_sub(kept.len());
        kept.extend_from_slice(&buffer[..n.min(room)]);
    }
}

/// Refuses session ids that are empty, long, or could read as an option or break a path.
fn check_id(session_id: &str) -> Result<()> {
    let valid = !session_id.is_empty()
        && session_id.len() <= MAX_ID_BYTES
        && !session_id.starts_with('-')
        && session_id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if valid { Ok(()) } else { Err(DriverError::InvalidRequest(format!("invalid session id `{session_id}`"))) }
}

/// A failed command as a driver error: not found / exists when the server says so, else a DCV failure.
fn classify_failure(
    verb: &str,
    session_id: Option<&str>,
    code: Option<i32>,
    stderr: &str,
    stdout: &[u8],
) -> DriverError {
    let text = if stderr.is_empty() { String::from_utf8_lossy(stdout).trim().to_owned() } else { stderr.to_owned() };
    let lower = text.to_ascii_lowercase();
    if let Some(id) = session_id
        && (lower.contains("not found") || lower.contains("does not exist") || lower.contains("no such session"))
    {
        return DriverError::SessionNotFound(id.to_owned());
    }
    if lower.contains("already exists") {
        return DriverError::SessionExists(text);
    }
    let first_line: String = text.lines().next().unwrap_or_default().chars().take(300).collect();
    let code = code.map_or_else(|| "a signal".to_owned(), |c| format!("status {c}"));
    DriverError::Dcv(format!("dcv {verb} failed with {code}: {first_line}"))
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str, verb: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| DriverError::Dcv(format!("dcv {verb}: unexpected output: {e}")))
}

/// Milliseconds since the epoch of an RFC 3339 time; 0 when empty or unreadable.
fn parse_time(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text.trim()).map_or(0, |t| t.timestamp_millis())
}

/// `Amazon DCV 2024.0 (r17979)` (or `NICE DCV ...`) → `2024.0.17979`; other text is kept trimmed.
pub fn parse_version(text: &str) -> String {
    let line = text.lines().find(|l| l.contains("DCV")).unwrap_or(text).trim();
    let after = line.split_once("DCV").map_or(line, |(_, rest)| rest).trim();
    let mut parts = after.split_whitespace();
    let Some(version) = parts.next() else { return String::new() };
    match parts.next().map(|r| r.trim_matches(|c| c == '(' || c == ')')) {
        Some(revision) if revision.starts_with('r') && revision[1..].chars().all(|c| c.is_ascii_digit()) => {
            format!("{version}.{}", &revision[1..])
        }
        _ => version.to_owned(),
    }
}

/// Images from `get-screenshot --json`. Real DCV prints one object with the picture in `base64` and its
/// `format` (`{"base64": "iVBOR…", "format": "png"}`, as Research and Engineering Studio reads it in
/// `aws/res` `res/resources/dcv/session_screenshots.py`); all displays are combined into that one picture
/// unless `--primary` is given. Kept as fallbacks: the picture under `data` or `screenshot`, a list of
/// objects or a `screenshots` list, and a `primary` flag.
fn parse_screenshot(text: &str, format: &str) -> Result<Vec<ScreenshotImage>> {
    #[derive(Default, Deserialize)]
    #[serde(default)]
    struct Image {
        #[serde(alias = "data", alias = "screenshot")]
        base64: String,
        format: String,
        primary: Option<bool>,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Output {
        Many { screenshots: Vec<Image> },
        One(Image),
        List(Vec<Image>),
    }
    let images = match parse_json::<Output>(text, "get-screenshot")? {
        Output::Many { screenshots } | Output::List(screenshots) => screenshots,
        Output::One(image) => vec![image],
    };
    let count = images.len();
    images
        .into_iter()
        .enumerate()
        .map(|(index, image)| {
            let data = base64::engine::general_purpose::STANDARD
                .decode(image.base64.trim())
                .map_err(|e| DriverError::Dcv(format!("dcv get-screenshot: the image is not base64: {e}")))?;
            if data.is_empty() {
                return Err(DriverError::Dcv("dcv get-screenshot: empty image (no `base64` in the output)".into()));
            }
            Ok(ScreenshotImage {
                format: if image.format.is_empty() { format.to_owned() } else { image.format.to_ascii_lowercase() },
                data,
                creation_time_unix_ms: now_ms(),
                primary: image.primary.unwrap_or(index == 0 || count == 1),
            })
        })
        .collect()
}

/// A temporary file (mode 0600: the agent's user, and root, which the DCV server runs as, can read it),
/// removed when dropped.
fn write_private_file(contents: &[u8]) -> Result<tempfile::NamedTempFile> {
    let io = |e: std::io::Error| DriverError::Dcv(format!("cannot write the permissions file: {e}"));
    let mut file = tempfile::Builder::new().prefix("switchboard-permissions-").tempfile().map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_the_banner() {
        assert_eq!(parse_version("Amazon DCV 2024.0 (r17979)\n"), "2024.0.17979");
        assert_eq!(parse_version("NICE DCV 2023.1 (r16388)"), "2023.1.16388");
        assert_eq!(parse_version("2023.1"), "2023.1");
        assert_eq!(parse_version(""), "");
    }

    #[test]
    fn ids_that_could_be_options_are_refused() {
        assert!(check_id("0f3c8a52-1b2c-4d5e-8f90-123456789abc").is_ok());
        for bad in ["", "-rf", "--type", "a b", "a/b", "a\nb", &"x".repeat(300)] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn failures_are_classified() {
        let not_found = classify_failure("close-session", Some("s1"), Some(1), "Session 's1' does not exist", b"");
        assert_eq!(not_found, DriverError::SessionNotFound("s1".into()));
        let exists = classify_failure("create-session", None, Some(1), "Session 's1' already exists", b"");
        assert!(matches!(exists, DriverError::SessionExists(_)));
        let down = classify_failure("list-sessions", None, Some(2), "Could not connect to the DCV server\nmore", b"");
        assert_eq!(
            down,
            DriverError::Dcv("dcv list-sessions failed with status 2: Could not connect to the DCV server".into())
        );
    }

    #[test]
    fn screenshots_are_read_as_real_dcv_prints_them() {
        let images = parse_screenshot(r#"{"base64": "iVBORw0KGgo=", "format": "png"}"#, "jpeg").unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].data, b"\x89PNG\r\n\x1a\n");
        assert_eq!((images[0].format.as_str(), images[0].primary), ("png", true));
        let jpeg = parse_screenshot(r#"{"base64":"/9j/4A==","format":"JPEG"}"#, "png").unwrap();
        assert_eq!((jpeg[0].data.as_slice(), jpeg[0].format.as_str()), (&[0xff, 0xd8, 0xff, 0xe0][..], "jpeg"));
        let error = parse_screenshot(r#"{"format":"png"}"#, "png").unwrap_err();
        assert!(error.to_string().contains("no `base64`"), "{error}");
    }

    #[test]
    fn screenshots_of_every_shape_parse() {
        let one = parse_screenshot(r#"{"data":"iVBORw==","format":"PNG"}"#, "png").unwrap();
        assert_eq!((one.len(), one[0].format.as_str(), one[0].primary), (1, "png", true));
        let many = parse_screenshot(
            r#"{"screenshots":[{"data":"AQID","primary":false},{"screenshot":"BAUG","primary":true}]}"#,
            "jpeg",
        )
        .unwrap();
        assert_eq!(many[0].data, [1, 2, 3]);
        assert_eq!(
            (many[1].data.as_slice(), many[1].primary, many[1].format.as_str()),
            (&[4u8, 5, 6][..], true, "jpeg")
        );
        assert!(parse_screenshot(r#"{"data":"%%%"}"#, "png").is_err());
        assert!(parse_screenshot("not json", "png").is_err());
    }

    #[test]
    fn times_parse_or_are_zero() {
        assert_eq!(parse_time("1970-01-01T00:00:01.000000Z"), 1000);
        assert_eq!(parse_time(""), 0);
        assert_eq!(parse_time("yesterday"), 0);
    }
}
