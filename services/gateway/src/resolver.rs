//! The Connection Gateway session resolver: `POST /resolveSession` on its own
//! port (8447 by convention), as the DCV Connection Gateway calls it.
//!
//! `POST /resolveSession?sessionId=ID&transport=HTTP|QUIC&clientIpAddress=IP`
//! answers `200 {SessionId, TransportProtocol, DcvServerEndpoint, Port, WebUrlPath}`
//! for a READY session whose host has an endpoint of that transport, and
//! `404` otherwise. `DcvServerEndpoint` is the server's `InternalDnsName` when a DNS mapping names it
//! (`register-server-dns-mappings`), else its address. No bearer token: the port is meant for the Connection Gateway only. Bind it to an
//! internal address; it always speaks TLS, and with `resolver_client_ca_file` it requires a client
//! certificate chaining to that CA (mutual TLS), so only the Connection Gateway (configured with that
//! certificate) is answered. `transport` defaults to `HTTP`; `clientIpAddress` is logged.

use std::collections::HashMap;

use axum::{
    Json, Router,
    extract::{Query, State, rejection::QueryRejection},
    routing::post,
};
use switchboard_common::Shutdown;
use switchboard_common::tls_reload::{ReloadingCa, ReloadingIdentity};
use switchboard_proto::SessionState;

use crate::{
    Upstreams,
    error::{ApiError, Result},
    model::ResolvedSession,
};

/// The resolver's text for anything it cannot resolve.
pub const NOT_RESOLVED: &str = "Session not found";
/// Longest accepted query value.
const MAX_CHARS: usize = 256;

/// The resolver's routes over `upstreams`.
pub fn router(upstreams: Upstreams) -> Router {
    Router::new()
        .route("/resolveSession", post(resolve_session))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(upstreams)
}

async fn resolve_session(
    State(upstreams): State<Upstreams>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<ResolvedSession>> {
    let Query(query) = query.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    let session_id = query.get("sessionId").map(String::as_str).unwrap_or_default();
    if session_id.is_empty() || session_id.chars().count() > MAX_CHARS {
        return Err(ApiError::BadRequest(format!("sessionId must be 1 to {MAX_CHARS} characters")));
    }
    let transport = match query.get("transport").map(String::as_str) {
        None | Some("") => "HTTP".to_owned(),
        Some(t) if t.eq_ignore_ascii_case("HTTP") || t.eq_ignore_ascii_case("QUIC") => t.to_ascii_uppercase(),
        Some(_) => return Err(ApiError::BadRequest("transport must be HTTP or QUIC".into())),
    };
    let client_ip = query.get("clientIpAddress").map(String::as_str).unwrap_or_default();
    let page = upstreams
        .store
        .clone()
        .get_sessions(switchboard_proto::GetSessionsRequest {
            session_ids: vec![session_id.to_owned()],
            with_queue_places: false,
        })
        .await?
        .into_inner();
    let not_found = || ApiError::NotFoundWith(NOT_RESOLVED.into());
    let session =
        page.sessions.iter().find(|s| s.id == session_id && s.state() == SessionState::Ready).ok_or_else(not_found)?;
    let server = page.servers.iter().find(|s| s.id == session.server_id).ok_or_else(not_found)?;
    let endpoint =
        server.endpoints.iter().find(|e| e.protocol.eq_ignore_ascii_case(&transport)).ok_or_else(not_found)?;
    // A registered DNS mapping names the server as the Connection Gateway reaches it; else its address.
    let address = match upstreams.server_dns_names(&server.id).await? {
        Some(names) => names.internal_dns_name,
        None if endpoint.ip_address.is_empty() => server.ip.clone(),
        None => endpoint.ip_address.clone(),
    };
    tracing::info!(%session_id, %transport, client_ip = %client_ip.chars().take(MAX_CHARS).collect::<String>(), server = %server.id, "session resolved");
    Ok(Json(ResolvedSession {
        session_id: session.id.clone(),
        transport_protocol: transport,
        dcv_server_endpoint: address,
        port: endpoint.port,
        web_url_path: endpoint.web_url_path.clone(),
    }))
}

/// Serves the resolver on `listener` (HTTPS with `tls`, plain HTTP without,
/// for tests) until `shutdown`. With `client_ca_pem` a client must present a
/// certificate chaining to it, or the TLS handshake fails.
pub async fn serve(
    listener: std::net::TcpListener,
    tls: Option<ReloadingIdentity>,
    client_ca: Option<ReloadingCa>,
    upstreams: Upstreams,
    shutdown: Shutdown,
) -> Result<()> {
    if tls.is_none() && client_ca.is_some() {
        return Err(ApiError::Internal("a resolver client CA needs the resolver to serve TLS".into()));
    }
    let app = router(upstreams);
    let handle = axum_server::Handle::new();
    let watcher = handle.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        watcher.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    });
    let addr = listener.local_addr().ok();
    match tls {
        Some(identity) => {
            let tls_config = switchboard_common::tls_reload::server_config(
                &identity,
                client_ca.as_ref(),
                switchboard_common::tls::HTTPS_ALPN,
            )?;
            tracing::info!(?addr, client_certificates = client_ca.is_some(), "session resolver serving https");
            let server = switchboard_common::listen::https(listener, tls_config)?;
            server.handle(handle).serve(app.into_make_service()).await?;
        }
        None => {
            tracing::info!(?addr, "session resolver serving plain http");
            switchboard_common::listen::http(listener)?.handle(handle).serve(app.into_make_service()).await?;
        }
    }
    Ok(())
}
