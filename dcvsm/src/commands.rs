//! Each command: the request it sends (the API's JSON, as the guide documents it), and how its answer is
//! printed as a table.

use std::path::Path;

use base64::Engine;
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::cli::{self, Command, Paging};
use crate::client::Broker;
use crate::error::{Error, Result};
use crate::output::{self, Column, SERVER, SESSION};

/// What a command produced: the response (printed as JSON) and its table form.
pub struct Outcome {
    /// The API's response, parsed (for the table).
    pub response: Value,
    /// The API's response as printed by `--output-format json`: pretty, in the broker's key order.
    pub json: String,
    /// The same for people.
    pub table: String,
    /// Text printed instead of either (the paths of written screenshots).
    pub plain: Option<String>,
    /// The exit code (0, or 252 for an invalid placement expression).
    pub exit_code: u8,
}

impl Outcome {
    fn new((response, raw): (Value, String), table: String) -> Self {
        Self { response, json: output::pretty(&raw), table, plain: None, exit_code: 0 }
    }
}

/// Inserts `value` under `key` when it is `Some`.
fn put(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        map.insert(key.into(), value);
    }
}

/// A permissions file, base64-encoded as the API wants it.
fn read_base64(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|error| {
        Error::InvalidArgument(format!("cannot read the permissions file {}: {error}", path.display()))
    })?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Runs one command against the broker.
pub async fn run(broker: &Broker, command: Command) -> Result<Outcome> {
    match command {
        Command::CreateSession(args) => create_session(broker, args).await,
        Command::DescribeSessions(args) => {
            let mut body = Map::new();
            if !args.session_ids.is_empty() {
                body.insert("SessionIds".into(), json!(args.session_ids));
            }
            put(&mut body, "Filters", args.owner.map(|owner| json!([{"Key": "owner", "Value": owner}])));
            let answer = describe(broker, "describeSessions", "Sessions", body, &args.paging).await?;
            let rows = output::rows(&answer.0, "/Sessions");
            let table = output::table(&rows, &output::session_columns(&rows));
            Ok(Outcome::new(answer, table))
        }
        Command::DeleteSession(args) => {
            let mut item = json!({"SessionId": args.session_id, "Owner": args.owner});
            if args.force {
                item["Force"] = json!(true);
            }
            let answer = broker.call(Method::POST, &["deleteSessions"], Some(&json!([item]))).await?;
            let response = answer.0.clone();
            let table = output::lists(
                &response,
                &[("SessionId", "/SessionId"), ("State", "/State")],
                &[("SessionId", "/SessionId"), ("FailureReason", "/FailureReason")],
            );
            Ok(Outcome::new(answer, table))
        }
        Command::DescribeServers(args) => {
            let mut body = Map::new();
            if !args.server_ids.is_empty() {
                body.insert("ServerIds".into(), json!(args.server_ids));
            }
            let answer = describe(broker, "describeServers", "Servers", body, &args.paging).await?;
            let table = output::table(&output::rows(&answer.0, "/Servers"), SERVER);
            Ok(Outcome::new(answer, table))
        }
        Command::OpenServers(args) => {
            let body: Vec<Value> = args.server_ids.iter().map(|id| json!({"ServerId": id})).collect();
            servers(broker, "openServers", "/OpenServerRequestData/ServerId", Value::Array(body)).await
        }
        Command::CloseServers(args) => {
            let body: Vec<Value> = args
                .server_ids
                .iter()
                .map(|id| {
                    let mut item = Map::new();
                    item.insert("ServerId".into(), json!(id));
                    put(&mut item, "Force", args.force.then_some(Value::Bool(true)));
                    put(&mut item, "DrainTimeoutSeconds", args.drain_timeout_seconds.map(Value::from));
                    Value::Object(item)
                })
                .collect();
            servers(broker, "closeServers", "/CloseServerRequestData/ServerId", Value::Array(body)).await
        }
        Command::GetSessionConnectionData(args) => {
            let path = ["sessionConnectionData", args.session_id.as_str(), args.user.as_str()];
            let answer = broker.call(Method::GET, &path, None).await?;
            let response = answer.0.clone();
            let mut row = response.get("Session").cloned().unwrap_or_default();
            if let (Some(object), Some(token)) = (row.as_object_mut(), response.get("ConnectionToken")) {
                object.insert("ConnectionToken".into(), token.clone());
            }
            let mut columns: Vec<Column> = SESSION.to_vec();
            columns.push(("ConnectionToken", "/ConnectionToken"));
            let table = output::table(&[row], &columns);
            Ok(Outcome::new(answer, table))
        }
        Command::GetSessionScreenshots(args) => screenshots(broker, args).await,
        Command::UpdateSessionPermissions(args) => {
            let item = json!({
                "SessionId": args.session_id,
                "Owner": args.owner,
                "PermissionsFile": read_base64(&args.permission_file)?,
            });
            let answer = broker.call(Method::PUT, &["sessionPermissions"], Some(&json!([item]))).await?;
            let response = answer.0.clone();
            let table = output::lists(
                &response,
                &[("SessionId", "/SessionId")],
                &[("SessionId", "/SessionId"), ("FailureReason", "/FailureReason")],
            );
            Ok(Outcome::new(answer, table))
        }
        Command::ExplainPlacement(args) => explain_placement(broker, args).await,
        Command::RegisterWebhook(args) => {
            let body = json!({ "Url": args.url, "EventTypes": args.event_types });
            let answer = broker.call(Method::POST, &["registerWebhook"], Some(&body)).await?;
            let response = answer.0.clone();
            let table = output::table(&[response], &[("Id", "/Id"), ("Secret", "/Secret")]);
            Ok(Outcome::new(answer, table))
        }
        Command::DescribeWebhooks => {
            let answer = broker.call(Method::POST, &["describeWebhooks"], Some(&json!({}))).await?;
            let rows: Vec<Value> = answer.0.get("Webhooks").and_then(Value::as_array).cloned().unwrap_or_default();
            let rows: Vec<Value> = rows
                .into_iter()
                .map(|mut row| {
                    let dead = row.get("DeadLetters").and_then(Value::as_array).map_or(0, Vec::len);
                    if let Some(object) = row.as_object_mut() {
                        object.insert("DeadLetterCount".into(), json!(dead));
                    }
                    row
                })
                .collect();
            let table = output::table(
                &rows,
                &[
                    ("Id", "/Id"),
                    ("Url", "/Url"),
                    ("EventTypes", "/EventTypes"),
                    ("Delivered", "/Delivered"),
                    ("Attempts", "/Attempts"),
                    ("LastError", "/LastError"),
                    ("NextAttemptTime", "/NextAttemptTime"),
                    ("DeadLetters", "/DeadLetterCount"),
                ],
            );
            Ok(Outcome::new(answer, table))
        }
        Command::UnregisterWebhook(args) => {
            let answer = broker.call(Method::POST, &["unregisterWebhook"], Some(&json!({ "Id": args.id }))).await?;
            let response = answer.0.clone();
            let table = output::table(&[response], &[("Removed", "/Removed")]);
            Ok(Outcome::new(answer, table))
        }
    }
}

async fn create_session(broker: &Broker, args: cli::CreateSession) -> Result<Outcome> {
    let mut item = Map::new();
    item.insert("Name".into(), json!(args.name));
    item.insert("Owner".into(), json!(args.owner));
    item.insert("Type".into(), json!(args.session_type.api_name()));
    put(&mut item, "InitFile", args.init_file_path.map(Value::from));
    put(&mut item, "AutorunFile", args.autorun_file.map(Value::from));
    if !args.autorun_file_arguments.is_empty() {
        item.insert("AutorunFileArguments".into(), json!(args.autorun_file_arguments));
    }
    put(&mut item, "MaxConcurrentClients", args.max_concurrent_clients.map(Value::from));
    if args.dcv_gl_enabled {
        item.insert("DcvGlEnabled".into(), json!(true));
    }
    if let Some(path) = &args.permissions_file {
        item.insert("PermissionsFile".into(), json!(read_base64(path)?));
    }
    put(&mut item, "Requirements", args.requirements.map(Value::from));
    put(&mut item, "StorageRoot", args.storage_root.map(Value::from));
    put(&mut item, "EnqueueRequest", args.enqueue_request.map(Value::from));
    put(&mut item, "MaxIdleSeconds", args.max_idle_seconds.map(Value::from));
    put(&mut item, "MaxLifetimeSeconds", args.max_lifetime_seconds.map(Value::from));
    let answer = broker.call(Method::POST, &["createSessions"], Some(&json!([item]))).await?;
    let response = answer.0.clone();
    let table = output::lists(
        &response,
        SESSION,
        &[("Name", "/CreateSessionRequestData/Name"), ("FailureReason", "/FailureReason")],
    );
    Ok(Outcome::new(answer, table))
}

/// A describe call; with `--all`, every page merged into one response: `RequestId` of the last page, the
/// items of every page in order (each as the broker sent it), no `NextToken`.
async fn describe(
    broker: &Broker,
    operation: &str,
    items: &str,
    mut body: Map<String, Value>,
    paging: &Paging,
) -> Result<(Value, String)> {
    put(&mut body, "MaxResults", paging.max_results.map(Value::from));
    put(&mut body, "NextToken", paging.next_token.clone().map(Value::from));
    let mut answer = broker.call(Method::POST, &[operation], Some(&Value::Object(body.clone()))).await?;
    if !paging.all {
        return Ok(answer);
    }
    let mut values: Vec<Value> = Vec::new();
    let mut raws: Vec<String> = Vec::new();
    loop {
        values.extend(output::rows(&answer.0, &format!("/{items}")));
        raws.extend(raw_items(&answer.1, items)?);
        let Some(token) = answer.0.get("NextToken").and_then(Value::as_str).filter(|token| !token.is_empty()) else {
            break;
        };
        body.insert("NextToken".into(), json!(token));
        answer = broker.call(Method::POST, &[operation], Some(&Value::Object(body.clone()))).await?;
    }
    let request_id = answer.0.get("RequestId").cloned().unwrap_or(Value::Null);
    let raw = format!("{{\"RequestId\":{request_id},\"{items}\":[{}]}}", raws.join(","));
    Ok((json!({"RequestId": request_id, items: values}), raw))
}

/// The items of the array `key` of a JSON object, each as its original text.
fn raw_items(raw: &str, key: &str) -> Result<Vec<String>> {
    let not_json = |error: serde_json::Error| Error::Other(format!("the broker's answer is not JSON: {error}"));
    let object: std::collections::HashMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_str(raw).map_err(not_json)?;
    let Some(array) = object.get(key) else { return Ok(Vec::new()) };
    let items: Vec<Box<serde_json::value::RawValue>> = serde_json::from_str(array.get()).map_err(not_json)?;
    Ok(items.into_iter().map(|item| item.get().to_owned()).collect())
}

async fn servers(broker: &Broker, operation: &str, failed_id: &'static str, body: Value) -> Result<Outcome> {
    let answer = broker.call(Method::POST, &[operation], Some(&body)).await?;
    let response = answer.0.clone();
    // A closed server that drains says until when (a Switchboard addition); the column only then.
    let draining = output::rows(&response, "/SuccessfulList").iter().any(|row| row.get("DrainDeadline").is_some());
    let successful: &[Column] = if draining {
        &[("ServerId", "/ServerId"), ("DrainDeadline", "/DrainDeadline")]
    } else {
        &[("ServerId", "/ServerId")]
    };
    let table = output::lists(
        &response,
        successful,
        &[("ServerId", failed_id), ("FailureCode", "/FailureCode"), ("FailureReason", "/FailureReason")],
    );
    Ok(Outcome::new(answer, table))
}

/// A file-name-safe form of a session id.
fn file_safe(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect()
}

async fn screenshots(broker: &Broker, args: cli::GetSessionScreenshots) -> Result<Outcome> {
    let body: Vec<Value> = args
        .session_ids
        .iter()
        .map(|id| {
            let mut item = Map::new();
            item.insert("SessionId".into(), json!(id));
            put(&mut item, "MaxWidth", args.max_width.map(Value::from));
            put(&mut item, "MaxHeight", args.max_height.map(Value::from));
            Value::Object(item)
        })
        .collect();
    let answer = broker.call(Method::POST, &["getSessionScreenshots"], Some(&Value::Array(body))).await?;
    let response = answer.0.clone();
    let mut images = Vec::new();
    for success in output::rows(&response, "/SuccessfulList") {
        let session = success.pointer("/SessionScreenshot/SessionId").cloned().unwrap_or_default();
        for (index, image) in output::rows(&success, "/SessionScreenshot/Images").into_iter().enumerate() {
            images.push((session.clone(), index + 1, image));
        }
    }
    let rows: Vec<Value> = images
        .iter()
        .map(|(session, index, image)| {
            let size = image.get("Data").and_then(Value::as_str).map(|data| data.len() / 4 * 3).unwrap_or(0);
            json!({"SessionId": session, "Image": index, "Format": image.get("Format"),
                   "Primary": image.get("Primary"), "CreationTime": image.get("CreationTime"), "Bytes": size})
        })
        .collect();
    let mut table = output::table(
        &rows,
        &[
            ("SessionId", "/SessionId"),
            ("Image", "/Image"),
            ("Format", "/Format"),
            ("Primary", "/Primary"),
            ("Bytes", "/Bytes"),
            ("CreationTime", "/CreationTime"),
        ],
    );
    let failed = output::rows(&response, "/UnsuccessfulList");
    if !failed.is_empty() {
        let columns =
            [("SessionId", "/GetSessionScreenshotRequestData/SessionId"), ("FailureReason", "/FailureReason")];
        table.push_str(&format!("\nUnsuccessful\n{}", output::table(&failed, &columns)));
    }
    let mut outcome = Outcome::new(answer, table);
    if let Some(dir) = &args.output_dir {
        outcome.plain = Some(write_images(dir, &images)?);
    }
    Ok(outcome)
}

/// Writes each image as `<dir>/<session-id>-<n>.<format>`; returns the paths, one per line.
fn write_images(dir: &Path, images: &[(Value, usize, Value)]) -> Result<String> {
    std::fs::create_dir_all(dir).map_err(|error| Error::Other(format!("cannot create {}: {error}", dir.display())))?;
    let mut written = String::new();
    for (session, index, image) in images {
        let data = image.get("Data").and_then(Value::as_str).unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|error| Error::Other(format!("the broker sent an image that is not base64: {error}")))?;
        let format = image.get("Format").and_then(Value::as_str).unwrap_or("img").to_ascii_lowercase();
        let name = format!("{}-{index}.{}", file_safe(session.as_str().unwrap_or("session")), file_safe(&format));
        let path = dir.join(name);
        std::fs::write(&path, bytes)
            .map_err(|error| Error::Other(format!("cannot write {}: {error}", path.display())))?;
        written.push_str(&format!("{}\n", path.display()));
    }
    Ok(written)
}

async fn explain_placement(broker: &Broker, args: cli::ExplainPlacement) -> Result<Outcome> {
    let mut body = Map::new();
    put(&mut body, "Requirements", args.requirements.map(Value::from));
    put(&mut body, "Type", args.session_type.map(|kind| Value::from(kind.api_name())));
    put(&mut body, "Owner", args.owner.map(Value::from));
    if args.dcv_gl_enabled {
        body.insert("DcvGlEnabled".into(), json!(true));
    }
    put(&mut body, "AutorunFile", args.autorun_file.map(Value::from));
    put(&mut body, "MaxServers", args.max_servers.map(Value::from));
    let answer = broker.call(Method::POST, &["explainPlacement"], Some(&Value::Object(body))).await?;
    let response = answer.0.clone();
    let valid = response.get("Valid").and_then(Value::as_bool).unwrap_or(false);
    let mut row = response.clone();
    if let Some(object) = row.as_object_mut() {
        let matching = format!(
            "{}/{}",
            output::table_cell(response.get("MatchingCount")),
            output::table_cell(response.get("TotalServers"))
        );
        object.insert("Matching".into(), json!(matching));
    }
    let table = output::table(
        &[row],
        &[
            ("Valid", "/Valid"),
            ("Matching", "/Matching"),
            ("MatchingServers", "/MatchingServers"),
            ("Rejections", "/Rejections"),
            ("Explanation", "/Explanation"),
            ("Error", "/Error"),
        ],
    );
    let mut outcome = Outcome::new(answer, table);
    if !valid {
        outcome.exit_code = 252;
    }
    Ok(outcome)
}
