//! The agent's log file as an operator reads it: `agent.log` in `[log] directory`, in the chosen format.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the agent against a broker that is not there until its log file has lines; returns them.
fn log_lines(format: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let conf = dir.path().join("agent.conf");
    let text = format!(
        "version = '0.1'\n[agent]\nbroker_host = '127.0.0.1'\nbroker_port = 9\ndriver = 'simulated'\n\
         init_folder = '{d}/init'\nautorun_folder = '{d}/autorun'\ntags_folder = '{d}/tags'\n\
         [log]\ndirectory = '{logs}'\nformat = '{format}'\nlevel = 'info'\n",
        d = dir.path().display(),
        logs = logs.display()
    );
    std::fs::write(&conf, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard-agent"))
        .arg("--config")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let file = logs.join("agent.log");
    let lines = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if text.lines().count() >= 2 || Instant::now() > deadline {
            break text.lines().map(str::to_owned).collect::<Vec<_>>();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    assert!(lines.len() >= 2, "agent.log has lines; stderr: {}", String::from_utf8_lossy(&output.stderr));
    lines
}

#[test]
fn json_logs_are_one_object_per_line() {
    for line in log_lines("json") {
        let object: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(object["level"].is_string() && object["timestamp"].is_string(), "{line}");
    }
}

#[test]
fn text_logs_are_lines_for_people() {
    for line in log_lines("text") {
        assert!(serde_json::from_str::<serde_json::Value>(&line).is_err(), "not JSON: {line}");
        assert!(line.contains("INFO") || line.contains("WARN") || line.contains("ERROR"), "{line}");
    }
}
