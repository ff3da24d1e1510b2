//! Metrics as an operator sees them: every service process of a cluster (one replica each, Redis, two
//! simulated agents) serves `/metrics`; `promtool check metrics` accepts every exposition; a real
//! Prometheus server scrapes them and PromQL returns the session and server counts the API reports after a
//! create/delete scenario; and the number of series does not grow with sessions or owners.
//!
//! `promtool` and `prometheus` come from Debian's `prometheus` package, which `./scripts/test` installs
//! when missing.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use switchboard_tests::client::ApiClient;
use switchboard_tests::cluster::{ClusterSpec, ProcessCluster, free_port};
use tokio::task::JoinSet;

/// How long Prometheus gets to show what the API shows (scrapes every second; the sessions gauge is
/// refreshed every half stalled bound, 10 s in the test cluster).
const CONVERGE: Duration = Duration::from_secs(90);

fn tool(name: &str) -> String {
    let path = format!("/usr/bin/{name}");
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: ./scripts/test installs Debian's prometheus package"
    );
    path
}

async fn expositions(cluster: &ProcessCluster) -> Vec<(String, String)> {
    let http = reqwest::Client::new();
    let mut texts = Vec::new();
    for (label, url) in cluster.metrics_urls() {
        let response = http.get(&url).send().await.unwrap_or_else(|e| panic!("{label}: {e}"));
        assert!(response.status().is_success(), "{label}: {}", response.status());
        texts.push((label, response.text().await.unwrap()));
    }
    texts
}

/// The series of the expositions: each sample line without its value, prefixed with the process.
fn series(texts: &[(String, String)]) -> std::collections::BTreeSet<String> {
    let lines = texts.iter().flat_map(|(label, text)| text.lines().map(move |line| (label, line)));
    let samples = lines.filter(|(_, line)| !line.is_empty() && !line.starts_with('#'));
    samples
        .map(|(label, line)| format!("{label} {}", line.rsplit_once(' ').map_or(line, |(series, _)| series)))
        .collect()
}

/// The metric names (`switchboard_…`, `process_…`) a text mentions.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for prefix in ["switchboard_", "process_"] {
        for (start, _) in text.match_indices(prefix) {
            let boundary = text[..start].chars().next_back().is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_');
            let name: String = text[start..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if boundary {
                names.insert(name);
            }
        }
    }
    names
}

/// Creates `count` sessions spread over `owners` owners (8 at a time), waits for each to be READY and
/// deletes every other one; returns the ids left READY.
async fn churn(client: &Arc<ApiClient>, count: usize, owners: usize, tag: &str) -> Vec<String> {
    let mut tasks = JoinSet::new();
    for worker in 0..8 {
        let client = client.clone();
        let tag = tag.to_owned();
        tasks.spawn(async move {
            let mut kept = Vec::new();
            for n in (worker..count).step_by(8) {
                let owner = format!("{tag}-owner-{}", n % owners);
                let id = client.create(&owner).await.unwrap().unwrap_or_else(|reason| panic!("create: {reason}"));
                let (state, reason) = client.settle(&id, Duration::from_secs(30)).await.unwrap();
                assert_eq!(state, "READY", "{reason}");
                if n % 2 == 0 {
                    assert!(client.delete(&id, &owner).await.unwrap(), "delete {id}");
                } else {
                    kept.push(id);
                }
            }
            kept
        });
    }
    let mut kept = Vec::new();
    while let Some(done) = tasks.join_next().await {
        kept.extend(done.unwrap());
    }
    kept
}

/// A Prometheus server scraping `targets` every second, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(targets: &[String]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: switchboard\n    \
             static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting prometheus");
        Self { child, url: format!("http://127.0.0.1:{port}"), _dir: dir }
    }

    /// The single value of an instant query, `None` while it has no result.
    async fn value(&self, query: &str) -> Option<f64> {
        let url = format!("{}/api/v1/query", self.url);
        let answer: Value =
            reqwest::Client::new().get(url).query(&[("query", query)]).send().await.ok()?.json().await.ok()?;
        answer["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Polls `query` until it equals `expected`; the last value seen otherwise.
    async fn converges(&self, query: &str, expected: f64) -> Result<(), Option<f64>> {
        let deadline = tokio::time::Instant::now() + CONVERGE;
        loop {
            let value = self.value(query).await;
            if value == Some(expected) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(value);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_what_the_api_reports_and_series_do_not_grow_with_sessions() {
    switchboard_common::telemetry::init_for_tests();
    let spec = ClusterSpec { replicas: 1, agents: 2, max_virtual_sessions: 400, metrics: true, ..Default::default() };
    let cluster = ProcessCluster::start(spec).await.expect("cluster starts");
    let client = Arc::new(ApiClient::register(&cluster, "metrics").await.expect("client registered"));

    // A scenario, then what the API reports.
    let ready = churn(&client, 12, 3, "scenario").await;
    let states = client.states(&ready).await.unwrap();
    let api_ready = states.values().filter(|(state, _)| state == "READY").count();
    assert_eq!(api_ready, ready.len());
    let servers = client.call("/describeServers", serde_json::json!({})).await.unwrap();
    let api_servers = servers["Servers"].as_array().map_or(0, Vec::len);
    assert_eq!(api_servers, 2);

    // One request waits in the create-sessions queue (nothing matches it), so the queue gauges exist.
    let queued = serde_json::json!([{
        "Name": "queued", "Owner": "scenario-owner-0", "Type": "VIRTUAL",
        "Requirements": "tag:pool = 'nowhere'", "EnqueueRequest": true
    }]);
    let answer = client.call("/createSessions", queued).await.unwrap();
    assert!(answer["SuccessfulList"][0]["Id"].is_string(), "queued: {answer}");
    let deadline = tokio::time::Instant::now() + CONVERGE;
    let texts = loop {
        let texts = expositions(&cluster).await;
        let has = |series: &str| texts.iter().any(|(_, text)| text.contains(series));
        if has("switchboard_queue_depth{") && has("switchboard_sessions{") {
            break texts;
        }
        assert!(tokio::time::Instant::now() < deadline, "no switchboard_queue_depth or switchboard_sessions series");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    // The operations kit names only metrics the services expose, and its rules pass promtool.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rules = root.join("deploy/observability/alerts.yml");
    let checked = Command::new(tool("promtool")).args(["check", "rules"]).arg(&rules).output().unwrap();
    assert!(checked.status.success(), "promtool check rules: {}", String::from_utf8_lossy(&checked.stdout));
    let exposed: std::collections::BTreeSet<&str> = texts
        .iter()
        .flat_map(|(_, text)| text.lines())
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();
    for kit in ["deploy/observability/alerts.yml", "deploy/observability/grafana-dashboard.json"] {
        let text = std::fs::read_to_string(root.join(kit)).unwrap();
        let names = metric_names(&text);
        assert!(names.len() >= 5, "{kit}: {names:?}");
        for name in names {
            assert!(exposed.contains(name.as_str()), "{kit} names {name}, which no service exposes");
        }
    }

    // Every metric a service exposes is listed in docs/observability.md (histograms by their base name).
    let documented = std::fs::read_to_string(root.join("docs/observability.md")).unwrap();
    for name in exposed.iter().filter(|name| name.starts_with("switchboard_")) {
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        assert!(documented.contains(&format!("| `{base}` |")), "{base} is exposed but not in docs/observability.md");
    }

    // Every exposition passes promtool's checks.
    assert_eq!(texts.len(), 4, "gateway, auth, placement and session-store");
    for (label, text) in &texts {
        let mut check = Command::new(tool("promtool"))
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        check.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let output = check.wait_with_output().unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success() && said.trim().is_empty(), "promtool check metrics on {label}: {said}");
    }
    let gateway = &texts.iter().find(|(label, _)| label.starts_with("switchboard-gateway")).unwrap().1;
    assert!(gateway.contains("switchboard_api_requests_total{operation=\"/createSessions\",status_class=\"2xx\"}"));
    // Every store call is measured, by backend and operation.
    let store = &texts.iter().find(|(label, _)| label.starts_with("switchboard-session-store")).unwrap().1;
    for series in [
        "switchboard_store_call_duration_seconds_count{backend=\"redis\",operation=\"assign_session\"}",
        "switchboard_store_call_errors_total{backend=\"redis\",operation=\"assign_session\"} 0",
        "switchboard_store_fencing_rejections_total{backend=\"redis\",operation=\"update_session\"}",
    ] {
        assert!(store.contains(series), "session-store exposes no {series}");
    }

    // A real Prometheus scrapes them; PromQL answers what the API answered.
    let targets: Vec<String> = cluster
        .metrics_urls()
        .iter()
        .map(|(_, url)| url.trim_start_matches("http://").trim_end_matches("/metrics").to_owned())
        .collect();
    let prometheus = Prometheus::start(&targets);
    let sessions = prometheus.converges("max(switchboard_sessions{state=\"READY\"})", api_ready as f64).await;
    assert_eq!(sessions, Ok(()), "READY sessions in Prometheus vs the API ({api_ready})");
    let open = prometheus.converges("sum(max by (os_family) (switchboard_servers{availability=\"open\"}))", 2.0).await;
    assert_eq!(open, Ok(()), "open servers in Prometheus vs describeServers (2)");
    let creates = prometheus
        .converges("sum(switchboard_api_requests_total{operation=\"/createSessions\",status_class=\"2xx\"})", 13.0)
        .await;
    assert_eq!(creates, Ok(()), "createSessions answered: 12, and the queued one");

    // Cardinality: 5x the sessions and 10x the owners add no series.
    churn(&client, 100, 10, "small").await;
    let before = series(&expositions(&cluster).await);
    churn(&client, 1000, 100, "large").await;
    let after = series(&expositions(&cluster).await);
    println!(
        "metrics: series after 100 sessions / 10 owners {}, after 1,000 more / 100 owners {}",
        before.len(),
        after.len()
    );
    let new: Vec<&String> = after.difference(&before).collect();
    assert!(new.is_empty(), "series grew with sessions or owners: {new:#?}");
}
