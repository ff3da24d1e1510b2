//! The real DCV driver against a fake `dcv` (`tests/fake-dcv/dcv`, a test double of the DCV CLI that records
//! every call's argv and answers in the documented formats). Each test gets its own copy of the fake's state
//! by starting it through a symbolic link in a temporary folder.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use switchboard_agent::driver::dcv::{DcvCliDriver, DcvCliSettings};
use switchboard_agent::{DcvDriver, DriverError};
use switchboard_proto::{CommandErrorKind, CreateSessionSpec, SessionType};

/// One fake DCV host: its state folder (with the `dcv` link in it), init and autorun folders.
struct FakeDcv {
    dir: tempfile::TempDir,
    init: PathBuf,
    autorun: PathBuf,
}

impl FakeDcv {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-dcv/dcv");
        std::os::unix::fs::symlink(fake, dir.path().join("dcv")).unwrap();
        let init = dir.path().join("init");
        let autorun = dir.path().join("autorun");
        std::fs::create_dir_all(init.join("gpu")).unwrap();
        std::fs::create_dir_all(&autorun).unwrap();
        std::fs::write(init.join("setup.sh"), "#!/bin/sh\n").unwrap();
        std::fs::write(init.join("gpu/nvidia.sh"), "#!/bin/sh\n").unwrap();
        std::fs::write(autorun.join("app.sh"), "#!/bin/sh\n").unwrap();
        std::fs::write(dir.path().join("outside.sh"), "#!/bin/sh\n").unwrap();
        Self { dir, init, autorun }
    }

    fn settings(&self) -> DcvCliSettings {
        DcvCliSettings {
            program: self.dir.path().join("dcv"),
            init_folder: Some(self.init.clone()),
            autorun_folder: Some(self.autorun.clone()),
            timeout: Duration::from_secs(20),
            max_virtual_sessions: 0,
        }
    }

    fn driver(&self) -> DcvCliDriver {
        DcvCliDriver::new(self.settings())
    }

    /// Every recorded call, oldest first.
    fn calls(&self) -> Vec<Vec<String>> {
        let text = std::fs::read_to_string(self.dir.path().join("calls.jsonl")).unwrap_or_default();
        text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }

    /// The calls whose first argument is `verb`.
    fn calls_of(&self, verb: &str) -> Vec<Vec<String>> {
        self.calls().into_iter().filter(|argv| argv.first().is_some_and(|v| v == verb)).collect()
    }

    fn sessions(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir.path().join("sessions.json")).unwrap()).unwrap()
    }

    fn edit_sessions(&self, edit: impl FnOnce(&mut Value)) {
        let mut sessions = self.sessions();
        edit(&mut sessions);
        std::fs::write(self.dir.path().join("sessions.json"), sessions.to_string()).unwrap();
    }

    fn set_flag(&self, name: &str, on: bool) {
        let path = self.dir.path().join(name);
        if on { std::fs::write(path, "").unwrap() } else { std::fs::remove_file(path).unwrap() }
    }

    fn permissions(&self, session_id: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join("permissions").join(session_id)).unwrap()
    }
}

fn virtual_spec(owner: &str) -> CreateSessionSpec {
    CreateSessionSpec { owner: owner.into(), r#type: SessionType::Virtual as i32, ..Default::default() }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

fn real(path: &Path) -> String {
    path.canonicalize().unwrap().display().to_string()
}

#[tokio::test]
async fn create_passes_every_option_as_documented() {
    let fake = FakeDcv::new();
    let driver = fake.driver();
    let spec = CreateSessionSpec {
        name: "desk of alice".into(),
        owner: "alice".into(),
        r#type: SessionType::Virtual as i32,
        dcv_gl_enabled: true,
        max_concurrent_clients: 3,
        init_file: "gpu/nvidia.sh".into(),
        autorun_file: "app.sh".into(),
        autorun_file_arguments: vec!["--verbose".into(), "two words".into()],
        permissions_file: b"[permissions]\nalice allow builtin\n".to_vec(),
        storage_root: "/home/alice/storage".into(),
        ..Default::default()
    };
    let session = driver.create_session("s-1", &spec).await.unwrap();

    let creates = fake.calls_of("create-session");
    assert_eq!(creates.len(), 1);
    let argv = &creates[0];
    let permissions_path = argv.iter().position(|a| a == "--permissions-file").map(|i| argv[i + 1].clone()).unwrap();
    let expected = strings(&[
        "create-session",
        "--type",
        "virtual",
        "--name",
        "desk of alice",
        "--owner",
        "alice",
        "--user",
        "alice",
        "--permissions-file",
        &permissions_path,
        "--storage-root",
        "/home/alice/storage",
        "--gl",
        "on",
        "--max-concurrent-clients",
        "3",
        "--init",
        &real(&fake.init.join("gpu/nvidia.sh")),
        "--autorun-file",
        &real(&fake.autorun.join("app.sh")),
        "--autorun-file-arguments",
        "--verbose",
        "--autorun-file-arguments",
        "two words",
        "s-1",
    ]);
    assert_eq!(argv, &expected);
    // The permissions reached dcv through a temporary file that is gone afterwards.
    assert_eq!(fake.permissions("s-1"), spec.permissions_file);
    assert!(!Path::new(&permissions_path).exists(), "the permissions file is removed");

    // The answer is the session as the server describes it.
    assert_eq!(fake.calls_of("describe-session"), [strings(&["describe-session", "--json", "s-1"])]);
    assert_eq!((session.id.as_str(), session.name.as_str(), session.owner.as_str()), ("s-1", "desk of alice", "alice"));
    assert_eq!(session.r#type(), SessionType::Virtual);
    assert_eq!(session.max_concurrent_clients, 3);
    assert_eq!(session.storage_root, "/home/alice/storage");
    assert!(session.creation_time_unix_ms > 0);
    let stored = &fake.sessions()["s-1"];
    assert_eq!(stored["gl"], "on");
    assert_eq!(stored["autorun-file-arguments"], serde_json::json!(["--verbose", "two words"]));
}

#[tokio::test]
async fn create_defaults_console_and_gl_off() {
    let fake = FakeDcv::new();
    let driver = fake.driver();
    driver.create_session("v1", &virtual_spec("bob")).await.unwrap();
    let console =
        CreateSessionSpec { owner: "carol".into(), r#type: SessionType::Console as i32, ..Default::default() };
    driver.create_session("c1", &console).await.unwrap();
    let creates = fake.calls_of("create-session");
    assert_eq!(
        creates[0],
        strings(&["create-session", "--type", "virtual", "--owner", "bob", "--user", "bob", "--gl", "off", "v1"])
    );
    // A console session runs as the console user: no --user, no --gl.
    assert_eq!(creates[1], strings(&["create-session", "--type", "console", "--owner", "carol", "c1"]));

    // The host's rules are checked before dcv runs.
    let error = driver.create_session("c2", &console).await.unwrap_err();
    assert_eq!(error, DriverError::ConsoleSessionExists);
    let error = driver.create_session("v1", &virtual_spec("bob")).await.unwrap_err();
    assert_eq!(error, DriverError::SessionExists("v1".into()));
    let limited = DcvCliDriver::new(DcvCliSettings { max_virtual_sessions: 1, ..fake.settings() });
    assert_eq!(
        limited.create_session("v2", &virtual_spec("bob")).await.unwrap_err(),
        DriverError::VirtualSessionLimit(1)
    );
    assert_eq!(fake.calls_of("create-session").len(), 2, "refused creates never reach dcv");
}

#[tokio::test]
async fn init_and_autorun_files_cannot_escape_their_folders() {
    let fake = FakeDcv::new();
    std::os::unix::fs::symlink(fake.dir.path().join("outside.sh"), fake.init.join("link.sh")).unwrap();
    std::os::unix::fs::symlink(fake.dir.path(), fake.autorun.join("up")).unwrap();
    let driver = fake.driver();
    let outside = fake.dir.path().join("outside.sh").display().to_string();
    let cases: Vec<(&str, &str)> = vec![
        ("../outside.sh", ""),
        ("gpu/../../outside.sh", ""),
        (&outside, ""),
        ("/etc/passwd", ""),
        ("link.sh", ""),
        ("", "../outside.sh"),
        ("", "up/outside.sh"),
        ("", &outside),
    ];
    for (init, autorun) in cases {
        let spec = CreateSessionSpec { init_file: init.into(), autorun_file: autorun.into(), ..virtual_spec("eve") };
        let error = driver.create_session("evil", &spec).await.unwrap_err();
        assert_eq!(error.kind(), CommandErrorKind::InvalidRequest, "init {init:?} autorun {autorun:?}: {error}");
    }
    // Without configured folders no file is accepted at all.
    let bare = DcvCliDriver::new(DcvCliSettings { init_folder: None, autorun_folder: None, ..fake.settings() });
    let spec = CreateSessionSpec { init_file: "setup.sh".into(), ..virtual_spec("eve") };
    assert_eq!(bare.create_session("evil", &spec).await.unwrap_err().kind(), CommandErrorKind::InvalidRequest);
    assert!(fake.calls_of("create-session").is_empty(), "nothing reached dcv");
}

#[tokio::test]
async fn unsafe_ids_and_owners_never_reach_argv() {
    let fake = FakeDcv::new();
    let driver = fake.driver();
    for id in ["--type", "-x", "a b", "../x", ""] {
        assert_eq!(
            driver.create_session(id, &virtual_spec("bob")).await.unwrap_err().kind(),
            CommandErrorKind::InvalidRequest
        );
        assert_eq!(driver.close_session(id).await.unwrap_err().kind(), CommandErrorKind::InvalidRequest);
    }
    assert!(driver.create_session("ok", &virtual_spec("--owner")).await.is_err());
    assert!(driver.create_session("ok", &virtual_spec("")).await.is_err());
    let args = CreateSessionSpec { autorun_file_arguments: vec!["x".into()], ..virtual_spec("bob") };
    assert!(driver.create_session("ok", &args).await.is_err(), "arguments without a file");
    assert!(fake.calls_of("create-session").is_empty() && fake.calls_of("close-session").is_empty());
}

#[tokio::test]
async fn list_describe_and_connections() {
    let fake = FakeDcv::new();
    let driver = fake.driver();
    let spec = CreateSessionSpec { max_concurrent_clients: 2, storage_root: "/s".into(), ..virtual_spec("alice") };
    driver.create_session("s1", &spec).await.unwrap();
    driver.create_session("s2", &virtual_spec("bob")).await.unwrap();
    fake.edit_sessions(|sessions| {
        sessions["s1"]["connections"] = serde_json::json!([
            {"connection-id": "1", "user": "alice", "client-ip": "10.0.0.5"},
            {"connection-id": "2", "user": "alice", "client-ip": "10.0.0.6"}
        ]);
        sessions["s2"]["last-disconnection-time"] = "2024-05-01T10:00:00.000000Z".into();
    });

    let sessions = driver.list_sessions().await.unwrap();
    assert_eq!(fake.calls_of("list-sessions").last().unwrap(), &strings(&["list-sessions", "--json"]));
    let ids: Vec<&str> = sessions.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["s1", "s2"]);
    assert_eq!(sessions[0].num_of_connections, 2);
    assert_eq!(sessions[0].max_concurrent_clients, 2, "remembered from the create");
    assert_eq!(sessions[0].storage_root, "/s");
    assert_eq!(sessions[1].last_disconnection_time_unix_ms, 1_714_557_600_000);
    assert!(fake.calls_of("list-connections").is_empty(), "the listing had the counts");

    let described = driver.describe_session("s1").await.unwrap();
    assert_eq!((described.owner.as_str(), described.num_of_connections), ("alice", 2));
    let connections = driver.list_connections("s1").await.unwrap();
    assert_eq!(fake.calls_of("list-connections").last().unwrap(), &strings(&["list-connections", "--json", "s1"]));
    assert_eq!(connections[1].client_ip, "10.0.0.6");

    // A server whose listing has no counts: the driver asks each session's connections.
    fake.set_flag("omit-count", true);
    let sessions = driver.list_sessions().await.unwrap();
    assert_eq!((sessions[0].num_of_connections, sessions[1].num_of_connections), (2, 0));
    assert_eq!(fake.calls_of("list-connections").len(), 3);

    assert_eq!(driver.describe_session("nope").await.unwrap_err(), DriverError::SessionNotFound("nope".into()));
}

#[tokio::test]
async fn close_set_permissions_and_screenshot() {
    let fake = FakeDcv::new();
    let driver = fake.driver();
    driver.create_session("s1", &virtual_spec("alice")).await.unwrap();

    driver.set_permissions("s1", b"[permissions]\n%any% allow display\n").await.unwrap();
    let call = fake.calls_of("set-permissions").pop().unwrap();
    assert_eq!(call[..4], strings(&["set-permissions", "--session", "s1", "--file"]));
    assert_eq!(call.len(), 5);
    assert!(!Path::new(&call[4]).exists(), "the temporary file is removed");
    assert_eq!(fake.permissions("s1"), b"[permissions]\n%any% allow display\n");

    let images = driver.screenshot("s1", 320, 200, "jpeg").await.unwrap();
    let call = fake.calls_of("get-screenshot").pop().unwrap();
    assert_eq!(
        call,
        strings(&["get-screenshot", "--max-width", "320", "--max-height", "200", "--format", "jpeg", "--json", "s1"])
    );
    assert_eq!(images.len(), 1);
    assert_eq!((images[0].format.as_str(), images[0].primary), ("jpeg", true));
    assert_eq!(images[0].data, b"FAKE-jpeg-320x200");
    let images = driver.screenshot("s1", 0, 0, "png").await.unwrap();
    assert_eq!(
        fake.calls_of("get-screenshot").pop().unwrap(),
        strings(&["get-screenshot", "--format", "png", "--json", "s1"])
    );
    assert_eq!(images[0].data, b"FAKE-png-fullxfull");
    assert_eq!(driver.screenshot("s1", 0, 0, "bmp").await.unwrap_err().kind(), CommandErrorKind::InvalidRequest);

    driver.close_session("s1").await.unwrap();
    assert_eq!(fake.calls_of("close-session"), [strings(&["close-session", "s1"])]);
    assert_eq!(driver.close_session("s1").await.unwrap_err(), DriverError::SessionNotFound("s1".into()));
    assert_eq!(driver.set_permissions("s1", b"x").await.unwrap_err(), DriverError::SessionNotFound("s1".into()));
    assert_eq!(driver.screenshot("s1", 0, 0, "png").await.unwrap_err(), DriverError::SessionNotFound("s1".into()));
}

#[tokio::test]
async fn a_stopped_dcv_server_makes_the_host_unhealthy() {
    let fake = FakeDcv::new();
    let driver = fake.driver();
    assert!(driver.health().await);
    assert_eq!(driver.version().await, "2024.0.17979");
    assert_eq!(fake.calls_of("version"), [strings(&["version"])]);

    fake.set_flag("down", true);
    let error = driver.list_sessions().await.unwrap_err();
    assert_eq!(error.kind(), CommandErrorKind::HostFailure, "{error}");
    assert!(error.to_string().contains("Could not connect"), "{error}");
    assert!(!driver.health().await);
    assert_eq!(
        driver.create_session("s1", &virtual_spec("a")).await.unwrap_err().kind(),
        CommandErrorKind::HostFailure
    );

    fake.set_flag("down", false);
    driver.list_sessions().await.unwrap();
    assert!(driver.health().await);

    // No dcv at all: unhealthy, with a clear error.
    let missing = DcvCliDriver::new(DcvCliSettings::new(fake.dir.path().join("no-such-dcv")));
    assert!(!missing.health().await);
    let error = missing.list_sessions().await.unwrap_err();
    assert!(error.to_string().contains("cannot run"), "{error}");
    assert_eq!(missing.version().await, "");
}

#[test]
fn the_fake_records_argv_without_a_shell() {
    // Arguments with shell metacharacters arrive verbatim: no shell ever interprets them.
    let fake = FakeDcv::new();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let driver = fake.driver();
    let spec = CreateSessionSpec { name: "$(touch pwned); `id` | x".into(), ..virtual_spec("alice") };
    runtime.block_on(driver.create_session("s1", &spec)).unwrap();
    let argv: Vec<OsString> = fake.calls_of("create-session")[0].iter().map(OsString::from).collect();
    assert!(argv.contains(&OsString::from("$(touch pwned); `id` | x")));
    assert!(!fake.dir.path().join("pwned").exists() && !Path::new("pwned").exists());
}
