//! The REST API's JSON shapes, named and typed exactly as in
//! `dcv-session-manager-api.yaml` (the wire contract).
//!
//! Request types reject unknown fields (reported as `Unrecognized field "X"`
//! by [`crate::extract`]); response types omit absent optional fields instead
//! of writing `null`. Times are RFC 3339 with milliseconds. Note that
//! `Server.Port` is a string in the contract while `Endpoint.Port` is a number.

use serde::{Deserialize, Serialize};

/// A generic key/value pair (tags, filters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KeyValuePair {
    /// The key, e.g. `os` or a filter name such as `tag:os`.
    pub key: String,
    /// The value.
    pub value: String,
}

/// One DCV endpoint of a server.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Endpoint {
    /// Address of the endpoint.
    pub ip_address: String,
    /// Port of the endpoint (a number, unlike `Server.Port`).
    pub port: u32,
    /// Web URL path, HTTP endpoints only.
    pub web_url_path: String,
    /// `HTTP` or `QUIC`.
    pub protocol: String,
}

/// Operating system of a host.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Os {
    /// `linux` or `windows`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// Distribution or product name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Linux kernel version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_version: Option<String>,
    /// Windows build number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_number: Option<String>,
}

/// Memory or swap usage.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Memory {
    /// Total bytes.
    pub total_bytes: u64,
    /// Used bytes.
    pub used_bytes: u64,
}

/// Processor description.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CpuInfo {
    /// Vendor string.
    pub vendor: String,
    /// Model name.
    pub model_name: String,
    /// Architecture, e.g. `x86_64`.
    pub architecture: String,
    /// Logical CPUs.
    pub number_of_cpus: u32,
    /// Physical cores per CPU.
    pub physical_cores_per_cpu: u32,
}

/// Load averages.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CpuLoadAverage {
    /// Last minute.
    pub one_minute: f32,
    /// Last five minutes.
    pub five_minutes: f32,
    /// Last fifteen minutes.
    pub fifteen_minutes: f32,
}

/// One GPU.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Gpu {
    /// Vendor.
    pub vendor: String,
    /// Model name.
    pub model_name: String,
}

/// A user logged in to the host.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoggedInUser {
    /// User name.
    pub username: String,
}

/// EC2 metadata (note the `EC2` capitalisation of the contract).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Aws {
    /// AWS region.
    #[serde(rename = "Region")]
    pub region: String,
    /// Instance type.
    #[serde(rename = "EC2InstanceType")]
    pub ec2_instance_type: String,
    /// Instance id.
    #[serde(rename = "EC2InstanceId")]
    pub ec2_instance_id: String,
    /// Image id.
    #[serde(rename = "EC2ImageId")]
    pub ec2_image_id: String,
}

/// Host telemetry.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Host {
    /// Operating system.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<Os>,
    /// Physical memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// Swap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap: Option<Memory>,
    /// EC2 metadata, only on EC2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws: Option<Aws>,
    /// Processor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_info: Option<CpuInfo>,
    /// Load averages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_load_average: Option<CpuLoadAverage>,
    /// GPUs.
    pub gpus: Vec<Gpu>,
    /// Logged-in users.
    pub logged_in_users: Vec<LoggedInUser>,
}

/// A DCV server as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Server {
    /// Server id.
    pub id: String,
    /// Address clients connect to.
    pub ip: String,
    /// Host name.
    pub hostname: String,
    /// Default DNS name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_dns_name: Option<String>,
    /// Deprecated port of the first HTTP endpoint, as a string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// DCV endpoints.
    pub endpoints: Vec<Endpoint>,
    /// Web URL path of the default endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_url_path: Option<String>,
    /// DCV server version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Agent version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_manager_agent_version: Option<String>,
    /// `AVAILABLE` or `UNAVAILABLE`.
    pub availability: String,
    /// Why unavailable; absent when available.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailability_reason: Option<String>,
    /// Console sessions on the server.
    pub console_session_count: u32,
    /// Virtual sessions on the server.
    pub virtual_session_count: u32,
    /// Host telemetry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<Host>,
    /// Server tags.
    pub tags: Vec<KeyValuePair>,
    /// Addition: `true` while the server drains (closed without `Force` while sessions ran: no new
    /// sessions, closed when the last one ends or at `DrainDeadline`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draining: Option<bool>,
    /// Addition: when a draining server closes at the latest (RFC 3339); absent when not draining.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_deadline: Option<String>,
    /// Addition: whole seconds left until `DrainDeadline` (rounded up; 0 once due); absent when not
    /// draining.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_seconds_left: Option<u64>,
}

/// A session as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Session {
    /// Session id.
    pub id: String,
    /// Descriptive name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Owner.
    pub owner: String,
    /// The server the session is on; absent while placing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<Server>,
    /// `CONSOLE` or `VIRTUAL`.
    #[serde(rename = "Type")]
    pub session_type: String,
    /// Maximum concurrent clients; absent when the host default applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_clients: Option<u32>,
    /// `CREATING`, `READY`, `DELETING`, `DELETED` or `UNKNOWN`.
    pub state: String,
    /// e.g. `SESSION_PLACING`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub substate: Option<String>,
    /// Why the session is in its state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// Creation time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<String>,
    /// Last client disconnection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_disconnection_time: Option<String>,
    /// Active connections.
    pub num_of_connections: u32,
    /// Session storage folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_root: Option<String>,
    /// Addition: when the reaper deletes the session (RFC 3339), set from the start of the warning before
    /// an idle or lifetime reap (on a DELETED session: when it was reaped); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reap_at: Option<String>,
    /// Addition: why the reaper deletes (or deleted) the session: `IDLE` or `MAX_LIFETIME`; absent with
    /// `ReapAt`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reap_reason: Option<String>,
    /// Addition: 1-based place of a queued session in the create-sessions queue, among the requests of
    /// its requirement class (FIFO within a class); absent for a session not waiting in the queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u32>,
    /// Addition: requests of the queued session's requirement class in the queue, itself included; absent
    /// with `QueuePosition`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_length: Option<u32>,
    /// Addition: an estimate of when the queued session will be placed (RFC 3339), from the recent
    /// placement rate of its class; absent when no rate is known (nothing of its class placed lately).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_estimated_start_time: Option<String>,
    /// Addition: the same estimate as whole seconds from now, rounded up; absent with
    /// `QueueEstimatedStartTime`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_estimated_wait_seconds: Option<u64>,
}

/// One createSessions item, kept verbatim so a failed item can be echoed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CreateSessionRequestData {
    /// Descriptive name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Owner (a user on the host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// `CONSOLE` or `VIRTUAL`.
    #[serde(rename = "Type", default, skip_serializing_if = "Option::is_none")]
    pub session_type: Option<String>,
    /// Hardware OpenGL (virtual sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dcv_gl_enabled: Option<bool>,
    /// Maximum concurrent clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_clients: Option<i64>,
    /// Deprecated alias of `InitFile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_file_path: Option<String>,
    /// Init file relative to the agent's init folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_file: Option<String>,
    /// Autorun file relative to the agent's autorun folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autorun_file: Option<String>,
    /// Arguments of the autorun file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autorun_file_arguments: Option<Vec<String>>,
    /// Base64 permissions file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_file: Option<String>,
    /// Requirements expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements: Option<String>,
    /// Queue when nothing fits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enqueue_request: Option<bool>,
    /// Do not retry on another host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_retry_on_failure: Option<bool>,
    /// Session storage folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_root: Option<String>,
    /// Addition: reap the session after this many seconds without a client connection (0 to 31536000; 0:
    /// never for this session); absent: session-store's `session_max_idle_seconds` setting. Signed so that
    /// a negative value is answered with the bounds rather than a JSON type error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_idle_seconds: Option<i64>,
    /// Addition: reap the session this many seconds after its creation, connected or not (0 to 31536000;
    /// 0: never for this session); absent: session-store's `session_max_lifetime_seconds` setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lifetime_seconds: Option<i64>,
}

/// A createSessions item that could not be created.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UnsuccessfulCreateSessionRequestData {
    /// The item as sent.
    pub create_session_request_data: CreateSessionRequestData,
    /// Why it failed.
    pub failure_reason: String,
}

/// createSessions response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateSessionsResponse {
    /// Request id.
    pub request_id: String,
    /// Sessions being created.
    pub successful_list: Vec<Session>,
    /// Items that cannot be created.
    pub unsuccessful_list: Vec<UnsuccessfulCreateSessionRequestData>,
}

/// describeSessions request (the whole body is optional).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DescribeSessionsRequestData {
    /// Only these sessions.
    #[serde(default)]
    pub session_ids: Option<Vec<String>>,
    /// `owner` and `tag:KEY` filters; all must match.
    #[serde(default)]
    pub filters: Option<Vec<KeyValuePair>>,
    /// Page size, 1..=1000.
    #[serde(default)]
    pub max_results: Option<i64>,
    /// Token from the previous page.
    #[serde(default)]
    pub next_token: Option<String>,
}

/// describeSessions response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeSessionsResponse {
    /// Request id.
    pub request_id: String,
    /// The sessions.
    pub sessions: Vec<Session>,
    /// Token for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// One deleteSessions item.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DeleteSessionRequestData {
    /// Session id.
    #[serde(default)]
    pub session_id: Option<String>,
    /// Owner; must match the session's.
    #[serde(default)]
    pub owner: Option<String>,
    /// Forget the session without waiting for the host.
    #[serde(default)]
    pub force: Option<bool>,
}

/// A session whose deletion started.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteSessionSuccessfulResponse {
    /// Session id.
    pub session_id: String,
    /// New state, normally `DELETING`.
    pub state: String,
}

/// A session that could not be deleted.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteSessionUnsuccessfulResponse {
    /// Session id.
    pub session_id: String,
    /// Why.
    pub failure_reason: String,
}

/// deleteSessions response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteSessionsResponse {
    /// Request id.
    pub request_id: String,
    /// Sessions being deleted.
    pub successful_list: Vec<DeleteSessionSuccessfulResponse>,
    /// Sessions that cannot be deleted.
    pub unsuccessful_list: Vec<DeleteSessionUnsuccessfulResponse>,
}

/// The OAuth 2.0 token response (snake_case, as RFC 6749 defines it).
/// `Debug` redacts the token.
#[derive(Clone, PartialEq, Serialize)]
pub struct TokenResponse {
    /// The JWT.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Lifetime in seconds.
    pub expires_in: u32,
}

/// describeServers request (the whole body is optional).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DescribeServersRequestData {
    /// Only these servers.
    #[serde(default)]
    pub server_ids: Option<Vec<String>>,
    /// Page size, 1..=1000.
    #[serde(default)]
    pub max_results: Option<i64>,
    /// Token from the previous page.
    #[serde(default)]
    pub next_token: Option<String>,
}

/// describeServers response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeServersResponse {
    /// Request id.
    pub request_id: String,
    /// The servers.
    pub servers: Vec<Server>,
    /// Token for the next page; absent at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// One updateSessionPermissions item.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct UpdateSessionPermissionsRequestData {
    /// Session id.
    #[serde(default)]
    pub session_id: Option<String>,
    /// Must match the session's owner.
    #[serde(default)]
    pub owner: Option<String>,
    /// Base64 permissions file.
    #[serde(default)]
    pub permissions_file: Option<String>,
}

/// A session whose permissions were updated.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateSessionPermissionsSuccessfulResponse {
    /// Session id.
    pub session_id: String,
}

/// A session whose permissions could not be updated.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateSessionPermissionsUnsuccessfulResponse {
    /// Session id.
    pub session_id: String,
    /// Why.
    pub failure_reason: String,
}

/// updateSessionPermissions response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateSessionPermissionsResponse {
    /// Request id.
    pub request_id: String,
    /// Updated sessions.
    pub successful_list: Vec<UpdateSessionPermissionsSuccessfulResponse>,
    /// Sessions not updated.
    pub unsuccessful_list: Vec<UpdateSessionPermissionsUnsuccessfulResponse>,
}

/// GetSessionConnectionData response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetSessionConnectionDataResponse {
    /// The session, with its server.
    pub session: Session,
    /// Signed token the DCV server accepts for this session and user.
    pub connection_token: String,
}

/// One getSessionScreenshots item, kept verbatim so a failed item can be echoed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct GetSessionScreenshotRequestData {
    /// Session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Largest width in pixels (> 0); the configured default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_width: Option<i64>,
    /// Largest height in pixels (> 0); the configured default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_height: Option<i64>,
}

/// One screenshot image.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SessionScreenshotImage {
    /// `png` or `jpeg`.
    pub format: String,
    /// Base64 image bytes.
    pub data: String,
    /// When it was taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<String>,
    /// Image of the primary display.
    pub primary: bool,
}

/// The screenshots of one session.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SessionScreenshot {
    /// Session id.
    pub session_id: String,
    /// One image per display.
    pub images: Vec<SessionScreenshotImage>,
}

/// A screenshot that was taken.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetSessionScreenshotSuccessfulResponse {
    /// The screenshot.
    pub session_screenshot: SessionScreenshot,
}

/// A screenshot that could not be taken.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetSessionScreenshotUnsuccessfulResponse {
    /// The item as sent.
    pub get_session_screenshot_request_data: GetSessionScreenshotRequestData,
    /// Why.
    pub failure_reason: String,
}

/// getSessionScreenshots response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetSessionScreenshotsResponse {
    /// Request id.
    pub request_id: String,
    /// Screenshots taken.
    pub successful_list: Vec<GetSessionScreenshotSuccessfulResponse>,
    /// Screenshots not taken.
    pub unsuccessful_list: Vec<GetSessionScreenshotUnsuccessfulResponse>,
}

/// One openServers item.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct OpenServerRequestData {
    /// Server id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<String>,
}

/// One closeServers item.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CloseServerRequestData {
    /// Server id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<String>,
    /// Close even while sessions run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
    /// Addition: without `Force`, how long a server with sessions may drain before it closes as with
    /// `Force` (0..=604800 seconds; 0: refused while sessions run, as the original broker does). Absent:
    /// session-store's `drain_timeout_seconds` setting. Ignored with `Force`. Signed so that a
    /// negative value fails this item alone, as a missing `ServerId` does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_timeout_seconds: Option<i64>,
}

/// A server that was opened (`OpenServerSuccessfulResponse`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServerIdResponse {
    /// Server id.
    pub server_id: String,
}

/// A server that was closed, or is draining (`CloseServerSuccessfulResponse`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CloseServerSuccessfulResponse {
    /// Server id.
    pub server_id: String,
    /// Addition: `true` when the server was left draining (closed for new sessions, closed for good when
    /// its last session ends or at `DrainDeadline`); absent when it is closed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draining: Option<bool>,
    /// Addition: when the draining server closes at the latest (RFC 3339); absent when closed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_deadline: Option<String>,
}

/// A server that could not be opened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct OpenServerUnsuccessfulResponse {
    /// The item as sent.
    pub open_server_request_data: OpenServerRequestData,
    /// e.g. `DCV_SERVER_NOT_FOUND`.
    pub failure_code: String,
    /// e.g. `Dcv server not found.`
    pub failure_reason: String,
}

/// A server that could not be closed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CloseServerUnsuccessfulResponse {
    /// The item as sent.
    pub close_server_request_data: CloseServerRequestData,
    /// e.g. `DCV_SERVER_NOT_FOUND`.
    pub failure_code: String,
    /// e.g. `Dcv server not found.`
    pub failure_reason: String,
}

/// openServers response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct OpenServersResponse {
    /// Request id.
    pub request_id: String,
    /// Opened servers.
    pub successful_list: Vec<ServerIdResponse>,
    /// Servers not opened.
    pub unsuccessful_list: Vec<OpenServerUnsuccessfulResponse>,
}

/// closeServers response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CloseServersResponse {
    /// Request id.
    pub request_id: String,
    /// Closed (or draining) servers.
    pub successful_list: Vec<CloseServerSuccessfulResponse>,
    /// Servers not closed.
    pub unsuccessful_list: Vec<CloseServerUnsuccessfulResponse>,
}

/// The Connection Gateway's session-resolver answer (`POST /resolveSession`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResolvedSession {
    /// Session id.
    pub session_id: String,
    /// `HTTP` or `QUIC`.
    pub transport_protocol: String,
    /// Address of the DCV server endpoint.
    pub dcv_server_endpoint: String,
    /// Port of that endpoint.
    pub port: u32,
    /// Web URL path of that endpoint.
    pub web_url_path: String,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[redacted]")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}
