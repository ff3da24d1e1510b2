//! The `Auth` gRPC service: token issuance, the public key set, and the admin-only client registry.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq as _;
use switchboard_proto::auth_server::Auth;
use switchboard_proto::{
    ApiClientInfo, ClientPolicy, GetClientPolicyRequest, GetKeySetRequest, IssueConnectionTokenRequest,
    IssueConnectionTokenResponse, IssueTokenRequest, IssueTokenResponse, KeySet, ListApiClientsRequest,
    ListApiClientsResponse, ListAuthServersRequest, ListAuthServersResponse, RegisterApiClientRequest,
    RegisterApiClientResponse, RegisterAuthServerRequest, RegisterAuthServerResponse, RotateSigningKeyRequest,
    RotateSigningKeyResponse, UnregisterApiClientRequest, UnregisterApiClientResponse, UnregisterAuthServerRequest,
    UnregisterAuthServerResponse,
};
use switchboard_store::ApiRegistry;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use switchboard_common::claims::CONNECTION_TOKEN_AUDIENCE;

use crate::tokens::{ConnectionTokenSubject, Signer};
use crate::{AuthConfig, Error, Result, admin_token_hash, clients, keys, servers};

/// How long a replica keeps signing with the key it loaded before re-reading the stored keys, so
/// replicas converge on the newest key after a race or a rotation. A retired key may thus sign for
/// up to this long after its retirement; `keys::RETIRED_KEY_GRACE_MS` (120 s) covers that.
const SIGNER_CACHE_TTL: Duration = Duration::from_secs(10);

/// Longest client id accepted by `GetClientPolicy` (ids are UUIDs).
const MAX_CLIENT_ID_CHARS: usize = 256;

/// The `Auth` service of one replica. All state lives in the backend, except a short-lived cache
/// of the signing key.
pub struct AuthService {
    config: AuthConfig,
    backend: Arc<dyn ApiRegistry>,
    /// The key currently used for signing and when it was loaded; std lock, never held across an
    /// await (the backend is read outside it).
    signer: Mutex<Option<(Instant, Arc<Signer>)>>,
}

impl fmt::Debug for AuthService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthService").field("config", &self.config).finish_non_exhaustive()
    }
}

impl AuthService {
    /// A service over `backend` with `config`.
    pub fn new(config: AuthConfig, backend: Arc<dyn ApiRegistry>) -> Self {
        Self { config, backend, signer: Mutex::new(None) }
    }

    /// The signer for new tokens, reloaded from the backend every [`SIGNER_CACHE_TTL`].
    async fn signer(&self) -> Result<Arc<Signer>> {
        if let Some((loaded_at, signer)) = self.signer.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
            && loaded_at.elapsed() < SIGNER_CACHE_TTL
        {
            return Ok(signer.clone());
        }
        let record = keys::ensure_signing_key(self.backend.as_ref()).await?;
        let signer = Arc::new(Signer::from_record(&record)?);
        *self.signer.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), signer.clone()));
        Ok(signer)
    }

    /// Checks the `authorization: Bearer <admin token>` metadata of an admin call.
    fn check_admin(&self, metadata: &MetadataMap) -> Result<()> {
        AdminGuard::new(self.config.admin_token_sha256).check(metadata)
    }

    async fn issue_token(&self, request: IssueTokenRequest) -> Result<IssueTokenResponse> {
        let client = clients::authenticate(self.backend.as_ref(), &request.client_id, &request.client_secret).await;
        let client = client.inspect_err(|error| {
            if matches!(error, Error::InvalidCredentials) {
                tracing::info!(client_id = ?request.client_id, "token request with invalid credentials");
            }
        })?;
        let signer = self.signer().await?;
        let now_seconds = switchboard_common::time::now_ms() / 1000;
        let lifetime = self.config.token_lifetime_seconds;
        let issued =
            signer.issue(&self.config.issuer, &self.config.audience, &client.client_id, now_seconds, lifetime)?;
        tracing::info!(client_id = %client.client_id, jti = %issued.claims.jti, kid = %signer.kid(), "issued access token");
        crate::metrics::issued("access");
        Ok(IssueTokenResponse {
            access_token: issued.access_token,
            token_type: "Bearer".to_owned(),
            expires_in_seconds: lifetime,
        })
    }

    async fn issue_connection_token(
        &self,
        request: IssueConnectionTokenRequest,
    ) -> Result<IssueConnectionTokenResponse> {
        const MAX_CHARS: usize = 1024;
        for (name, value) in [("session_id", &request.session_id), ("user", &request.user)] {
            if value.is_empty() || value.chars().count() > MAX_CHARS {
                return Err(Error::InvalidArgument(format!("{name} must be 1..={MAX_CHARS} characters")));
            }
        }
        if request.session_owner.chars().count() > MAX_CHARS {
            return Err(Error::InvalidArgument(format!("session_owner must be at most {MAX_CHARS} characters")));
        }
        let signer = self.signer().await?;
        let now_seconds = switchboard_common::time::now_ms() / 1000;
        let lifetime = self.config.connection_token_lifetime_seconds();
        let subject = ConnectionTokenSubject {
            session_id: &request.session_id,
            session_owner: &request.session_owner,
            user: &request.user,
        };
        let (token, claims) = signer.issue_connection_token(&self.config.issuer, subject, now_seconds, lifetime)?;
        tracing::info!(session_id = %claims.dcv_session_id, user = %claims.dcv_session_user, jti = %claims.jti, "issued connection token");
        crate::metrics::issued("connection");
        Ok(IssueConnectionTokenResponse { connection_token: token, expires_in_seconds: lifetime })
    }

    async fn key_set(&self) -> Result<KeySet> {
        let stored = self.backend.list_signing_keys().await?;
        let now_ms = switchboard_common::time::now_ms();
        // A retired key stays published as long as any token it signed may live.
        let longest = self.config.token_lifetime_seconds.max(self.config.connection_token_lifetime_seconds());
        Ok(KeySet {
            jwks_json: keys::jwks_json(&stored, now_ms, longest),
            issuer: self.config.issuer.clone(),
            audience: self.config.audience.clone(),
            connection_audience: CONNECTION_TOKEN_AUDIENCE.to_owned(),
            external_servers: servers::list(self.backend.as_ref()).await?,
        })
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn issue_token(&self, request: Request<IssueTokenRequest>) -> Result<Response<IssueTokenResponse>, Status> {
        Ok(Response::new(AuthService::issue_token(self, request.into_inner()).await?))
    }

    async fn issue_connection_token(
        &self,
        request: Request<IssueConnectionTokenRequest>,
    ) -> Result<Response<IssueConnectionTokenResponse>, Status> {
        Ok(Response::new(AuthService::issue_connection_token(self, request.into_inner()).await?))
    }

    async fn get_key_set(&self, _request: Request<GetKeySetRequest>) -> Result<Response<KeySet>, Status> {
        Ok(Response::new(self.key_set().await?))
    }

    async fn register_api_client(
        &self,
        request: Request<RegisterApiClientRequest>,
    ) -> Result<Response<RegisterApiClientResponse>, Status> {
        self.check_admin(request.metadata())?;
        let request = request.into_inner();
        let scope = clients::ClientScope { read_only: request.read_only, allowed_owners: request.allowed_owners };
        let client = clients::register(self.backend.as_ref(), &request.client_name, scope).await?;
        Ok(Response::new(RegisterApiClientResponse {
            client_id: client.record.client_id,
            client_secret: client.client_secret.expose().to_owned(),
        }))
    }

    async fn list_api_clients(
        &self,
        request: Request<ListApiClientsRequest>,
    ) -> Result<Response<ListApiClientsResponse>, Status> {
        self.check_admin(request.metadata())?;
        let clients = clients::list(self.backend.as_ref())
            .await?
            .into_iter()
            .map(|record| ApiClientInfo {
                client_id: record.client_id,
                client_name: record.client_name,
                created_unix_ms: record.created_unix_ms,
                read_only: record.read_only,
                allowed_owners: record.allowed_owners,
            })
            .collect();
        Ok(Response::new(ListApiClientsResponse { clients }))
    }

    async fn unregister_api_client(
        &self,
        request: Request<UnregisterApiClientRequest>,
    ) -> Result<Response<UnregisterApiClientResponse>, Status> {
        self.check_admin(request.metadata())?;
        clients::unregister(self.backend.as_ref(), &request.get_ref().client_id).await?;
        Ok(Response::new(UnregisterApiClientResponse {}))
    }

    async fn get_client_policy(
        &self,
        request: Request<GetClientPolicyRequest>,
    ) -> Result<Response<ClientPolicy>, Status> {
        let client_id = &request.get_ref().client_id;
        if client_id.is_empty() || client_id.chars().count() > MAX_CLIENT_ID_CHARS {
            return Ok(Response::new(ClientPolicy::default()));
        }
        Ok(Response::new(clients::policy(self.backend.as_ref(), client_id).await?))
    }

    async fn rotate_signing_key(
        &self,
        request: Request<RotateSigningKeyRequest>,
    ) -> Result<Response<RotateSigningKeyResponse>, Status> {
        self.check_admin(request.metadata())?;
        let now_ms = switchboard_common::time::now_ms();
        let delay_ms = i64::from(self.config.key_publish_delay_seconds) * 1000;
        let rotation =
            keys::rotate(self.backend.as_ref(), now_ms, delay_ms, self.config.token_lifetime_seconds).await?;
        Ok(Response::new(RotateSigningKeyResponse {
            kid: rotation.kid,
            active_from_unix_ms: rotation.active_from_unix_ms,
            retiring_kids: rotation.retiring_kids,
        }))
    }

    async fn register_auth_server(
        &self,
        request: Request<RegisterAuthServerRequest>,
    ) -> Result<Response<RegisterAuthServerResponse>, Status> {
        self.check_admin(request.metadata())?;
        let Some(server) = request.into_inner().server else {
            return Err(Error::InvalidArgument("server is required".to_owned()).into());
        };
        servers::register(self.backend.as_ref(), &server).await?;
        Ok(Response::new(RegisterAuthServerResponse {}))
    }

    async fn list_auth_servers(
        &self,
        request: Request<ListAuthServersRequest>,
    ) -> Result<Response<ListAuthServersResponse>, Status> {
        self.check_admin(request.metadata())?;
        Ok(Response::new(ListAuthServersResponse { servers: servers::list(self.backend.as_ref()).await? }))
    }

    async fn unregister_auth_server(
        &self,
        request: Request<UnregisterAuthServerRequest>,
    ) -> Result<Response<UnregisterAuthServerResponse>, Status> {
        self.check_admin(request.metadata())?;
        servers::unregister(self.backend.as_ref(), &request.get_ref().url).await?;
        Ok(Response::new(UnregisterAuthServerResponse {}))
    }
}

/// Checks the admin token of admin calls (`authorization: Bearer <admin token>`) against its SHA-256;
/// shared by every admin service of this crate.
#[derive(Clone, Copy)]
pub struct AdminGuard {
    expected: Option<[u8; 32]>,
}

impl fmt::Debug for AdminGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminGuard").field("enabled", &self.expected.is_some()).finish()
    }
}

impl AdminGuard {
    /// A guard for the admin token hashing to `expected`; `None` disables admin calls.
    pub fn new(expected: Option<[u8; 32]>) -> Self {
        Self { expected }
    }

    /// `Ok` when `metadata` carries the admin token.
    pub fn check(&self, metadata: &MetadataMap) -> Result<()> {
        let Some(expected) = &self.expected else {
            return Err(Error::AdminDisabled);
        };
        let presented = metadata
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or(Error::AdminUnauthenticated)?;
        if bool::from(admin_token_hash(presented).ct_eq(expected)) {
            Ok(())
        } else {
            tracing::warn!("admin call with a wrong admin token");
            Err(Error::AdminUnauthenticated)
        }
    }
}
