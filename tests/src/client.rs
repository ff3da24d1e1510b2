//! An API client that behaves like a well-written SDK under faults: it spreads calls over every gateway,
//! retries transport errors, 5xx answers and expired tokens with a short backoff, and counts what still
//! failed after retries (the client-visible errors).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::cluster::ProcessCluster;

/// Attempts per call before it counts as a client-visible error.
const ATTEMPTS: u32 = 10;

/// A REST client over every gateway of a cluster.
pub struct ApiClient {
    http: reqwest::Client,
    /// Without a whole-request timeout: for streams.
    stream_http: reqwest::Client,
    gateways: Vec<String>,
    client_id: String,
    client_secret: String,
    token: tokio::sync::RwLock<Option<String>>,
    next_gateway: AtomicUsize,
    /// Calls made (after retries, one per call).
    pub calls: AtomicU64,
    /// Calls that failed after every retry.
    pub errors: AtomicU64,
    /// The last few errors, for the failure message.
    last_errors: Mutex<Vec<String>>,
}

impl ApiClient {
    /// Registers an API client through the admin RPC and builds an HTTPS client trusting the cluster CA.
    pub async fn register(cluster: &ProcessCluster, name: &str) -> anyhow::Result<Self> {
        let (client_id, client_secret) = cluster.register_client(name).await?;
        Self::with_credentials(cluster, client_id, client_secret)
    }

    /// A client for existing credentials.
    pub fn with_credentials(
        cluster: &ProcessCluster,
        client_id: String,
        client_secret: String,
    ) -> anyhow::Result<Self> {
        let ca = reqwest::Certificate::from_pem(cluster.ca_pem.as_bytes())?;
        let http = reqwest::Client::builder()
            .add_root_certificate(ca)
            .tls_built_in_root_certs(false)
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0)
            .build()?;
        let stream_http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(cluster.ca_pem.as_bytes())?)
            .tls_built_in_root_certs(false)
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            http,
            stream_http,
            gateways: cluster.gateway_urls(),
            client_id,
            client_secret,
            token: tokio::sync::RwLock::new(None),
            next_gateway: AtomicUsize::new(0),
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_errors: Mutex::new(Vec::new()),
        })
    }

    fn gateway(&self) -> &str {
        &self.gateways[self.next_gateway.fetch_add(1, Ordering::Relaxed) % self.gateways.len()]
    }

    /// A fresh access token (one attempt).
    async fn fetch_token(&self) -> anyhow::Result<String> {
        let url = format!("{}/oauth2/token?grant_type=client_credentials", self.gateway());
        let response = self
            .http
            .post(url)
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("token: {status} {body}");
        }
        Ok(body["access_token"].as_str().context("no access_token")?.to_owned())
    }

    /// One attempt of `POST path` through gateway `gateway` (an index, wrapping) with `body` sent as is and
    /// the extra `headers`, without retries: the HTTP status and the JSON answer (`Null` when none).
    pub async fn post_once(
        &self,
        gateway: usize,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(u16, Value)> {
        let token = self.token().await?;
        let url = format!("{}{path}", self.gateways[gateway % self.gateways.len()]);
        let mut request =
            self.http.post(url).bearer_auth(token).header("Content-Type", "application/json").body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// One attempt of `GET path` (with its query) through gateway `gateway` (an index, wrapping) with the
    /// extra `headers`: the HTTP status and the JSON answer (`Null` when none).
    pub async fn get_once(&self, gateway: usize, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<(u16, Value)> {
        let token = self.token().await?;
        let url = format!("{}{path}", self.gateways[gateway % self.gateways.len()]);
        let mut request = self.stream_http.get(url).bearer_auth(token).timeout(Duration::from_secs(40));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// `GET path` through gateway `gateway` with `headers`, its body left to read (a stream): the response.
    pub async fn open_stream(
        &self,
        gateway: usize,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<reqwest::Response> {
        let token = self.token().await?;
        let url = format!("{}{path}", self.gateways[gateway % self.gateways.len()]);
        let mut request = self.stream_http.get(url).bearer_auth(token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Ok(request.send().await?)
    }

    /// The cached access token, fetched first when there is none.
    async fn token(&self) -> anyhow::Result<String> {
        let cached = self.token.read().await.clone();
        if let Some(token) = cached {
            return Ok(token);
        }
        let token = self.fetch_token().await?;
        *self.token.write().await = Some(token.clone());
        Ok(token)
    }

    /// One attempt of `POST path`; `Ok(None)` for answers worth retrying.
    async fn attempt(&self, path: &str, body: &Value) -> anyhow::Result<Option<Value>> {
        let token = self.token().await?;
        let response = self.http.post(format!("{}{path}", self.gateway())).bearer_auth(token).json(body).send().await?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(Some(answer));
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            *self.token.write().await = None;
            return Ok(None);
        }
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            bail!("{path}: {status} {answer}");
        }
        bail!("{path}: not retryable: {status} {answer}")
    }

    /// `POST path` with retries; counted as one call, and as an error when every attempt failed.
    pub async fn call(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut last = anyhow::anyhow!("no attempt");
        for attempt in 0..ATTEMPTS {
            match self.attempt(path, &body).await {
                Ok(Some(answer)) => return Ok(answer),
                Ok(None) => last = anyhow::anyhow!("{path}: unauthorized"),
                Err(error) if error.to_string().contains("not retryable") => {
                    last = error;
                    break;
                }
                Err(error) => last = error,
            }
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt + 1))).await;
        }
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.last_errors.lock().expect("not poisoned");
        errors.push(format!("{last:#}"));
        if errors.len() > 5 {
            errors.remove(0);
        }
        Err(last)
    }

    /// The last client-visible errors.
    pub fn recent_errors(&self) -> Vec<String> {
        self.last_errors.lock().expect("not poisoned").clone()
    }

    /// Creates one virtual session for `owner`; its id, or the UnsuccessfulList reason.
    pub async fn create(&self, owner: &str) -> anyhow::Result<Result<String, String>> {
        let answer = self.call("/createSessions", json!([{ "Name": "ha", "Owner": owner, "Type": "VIRTUAL" }])).await?;
        if let Some(id) = answer["SuccessfulList"][0]["Id"].as_str() {
            return Ok(Ok(id.to_owned()));
        }
        Ok(Err(answer["UnsuccessfulList"][0]["FailureReason"].as_str().unwrap_or("no reason").to_owned()))
    }

    /// The session's state and reason, `None` when describeSessions does not know it.
    pub async fn state(&self, id: &str) -> anyhow::Result<Option<(String, String)>> {
        let answer = self.call("/describeSessions", json!({ "SessionIds": [id] })).await?;
        Ok(answer["Sessions"].as_array().and_then(|s| s.first()).map(|session| {
            let text = |key: &str| session[key].as_str().unwrap_or_default().to_owned();
            (text("State"), text("StateReason"))
        }))
    }

    /// The states and reasons of `ids` (50 per describeSessions call); ids it does not know are left out.
    pub async fn states(&self, ids: &[String]) -> anyhow::Result<HashMap<String, (String, String)>> {
        let mut states = HashMap::new();
        for chunk in ids.chunks(50) {
            let answer = self.call("/describeSessions", json!({ "SessionIds": chunk })).await?;
            for session in answer["Sessions"].as_array().into_iter().flatten() {
                let text = |key: &str| session[key].as_str().unwrap_or_default().to_owned();
                states.insert(text("Id"), (text("State"), text("StateReason")));
            }
        }
        Ok(states)
    }

    /// Polls until the session leaves CREATING; its final state and reason. `timeout` bounds the wait.
    pub async fn settle(&self, id: &str, timeout: Duration) -> anyhow::Result<(String, String)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some((state, reason)) = self.state(id).await?
                && state != "CREATING"
            {
                return Ok((state, reason));
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("session {id} still CREATING after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Deletes a session; `true` when accepted.
    pub async fn delete(&self, id: &str, owner: &str) -> anyhow::Result<bool> {
        let answer = self.call("/deleteSessions", json!([{ "SessionId": id, "Owner": owner }])).await?;
        Ok(answer["SuccessfulList"].as_array().is_some_and(|list| !list.is_empty()))
    }
}
