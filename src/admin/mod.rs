//! The admin HTTP API (`--admin-listen`, default 127.0.0.1:7070): JSON in
//! and out under `/api/v1`, errors as `{"error": {"code", "message"}}`
//! ([`error`]), Prometheus text at `/metrics`, and the OpenAPI document,
//! generated from the handlers' types, at `/api/v1/openapi.json`.
//!
//! Auth: when FORTRESS_ADMIN_TOKEN is set, every endpoint but
//! `GET /api/v1/health` (and the dashboard's static page at `/`, which
//! holds no data) needs `Authorization: Bearer TOKEN`, compared in
//! constant time; without a token the API must listen on loopback only
//! (checked at start-up, see [`check_exposure`]).
//!
//! One module per group of endpoints: [`health`] (health and status),
//! [`sharding`] (query, transaction, routing metrics), [`checkpoints`], [`dr`],
//! [`prometheus`] (`/metrics`), [`openapi`]; [`listener`] bounds the
//! connections and serves HTTPS. Later groups (chaos,
//! deploy) mount under the same router, auth and error shape.

pub mod checkpoints;
pub mod dr;
pub mod error;
pub mod health;
pub mod listener;
pub mod openapi;
pub mod prometheus;
pub mod sharding;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use fortress_proxy::direct::Direct;
use fortress_proxy::wire::ConnectionStats;
use fortress_proxy::Cluster;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use error::ApiError;

/// The limits and settings `/api/v1/status` reports.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Settings {
    pub listen: String,
    pub max_connections: usize,
    pub statement_timeout_ms: u64,
    pub auth_timeout_ms: u64,
    pub work_rows: usize,
    pub work_mem_mb: usize,
    pub page_cache_mb: u64,
    pub row_cache_mb: u64,
    pub sort_mem_mb: usize,
    pub cache_ttl_s: u64,
    pub disk_reserve_mb: u64,
    pub sync: String,
}

impl Settings {
    pub fn of(args: &crate::cli::ServeArgs) -> Settings {
        Settings {
            listen: args.listen.clone(),
            max_connections: args.max_connections,
            statement_timeout_ms: args.statement_timeout.as_millis() as u64,
            auth_timeout_ms: args.auth_timeout.as_millis() as u64,
            work_rows: args.work_rows,
            work_mem_mb: args.work_mem_mb,
            page_cache_mb: args.page_cache_mb,
            row_cache_mb: args.row_cache_mb,
            sort_mem_mb: args.sort_mem_mb,
            cache_ttl_s: args.cache_ttl,
            disk_reserve_mb: args.disk_reserve_mb,
            sync: format!("{:?}", args.sync).to_lowercase(),
        }
    }
}

/// What every handler reaches.
pub struct AdminState {
    pub cluster: Arc<Cluster>,
    pub direct: Direct,
    pub connections: Arc<ConnectionStats>,
    pub checkpoints: PathBuf,
    pub settings: Settings,
    pub started: Instant,
    /// FORTRESS_ADMIN_TOKEN; `None` leaves the API open (loopback only).
    pub token: Option<String>,
    pub metrics: prometheus::Exporter,
    /// The last count of each shard's rows and bytes (see [`health::status`]).
    pub shard_counts: health::Counts,
    /// Archives and their shipping.
    pub dr: Arc<crate::dr::Dr>,
    /// On a standby, what follows its primary (and promotes it).
    pub follower: Option<Arc<crate::dr::replication::standby::Follower>>,
    /// The write lease and failovers, when the node has a lease.
    pub failover: Option<Arc<crate::dr::failover::Manager>>,
}

pub type Shared = Arc<AdminState>;

/// Every route, with auth in front of all but the health check.
pub fn router(state: Shared) -> Router {
    let guarded = Router::new()
        .route("/api/v1/status", get(health::status))
        .route("/api/v1/sharding/query", post(sharding::query))
        .route("/api/v1/sharding/transaction", post(sharding::transaction))
        .route("/api/v1/sharding/metrics", get(sharding::metrics))
        .route(
            "/api/v1/checkpoints",
            get(checkpoints::list).post(checkpoints::create),
        )
        .route("/api/v1/dr/status", get(dr::status))
        .route("/api/v1/dr/replicate", post(dr::replicate))
        .route("/api/v1/dr/providers", post(dr::add_provider))
        .route("/api/v1/dr/checkpoint/{provider}", post(dr::checkpoint))
        .route("/api/v1/dr/promote", post(dr::promote))
        .route("/api/v1/dr/failover", post(dr::failover))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/metrics", get(prometheus::render))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    Router::new()
        .route("/", get(dashboard))
        .route("/api/v1/health", get(health::health))
        .merge(guarded)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            same_origin,
        ))
        .with_state(state)
}

/// The operators' live page (embedded at build time; no build step, no
/// CDN). It holds no data: it reads the API with the token, which it asks
/// for (or takes from the URL fragment, `/#token=...`, never sent here).
async fn dashboard() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("dashboard.html"))
}

/// Lets a request through when no token is set or it carries the token.
async fn require_token(
    State(state): State<Shared>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(token) = &state.token {
        let given = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map_or("", |(_, t)| t.trim());
        // Digests of equal length, compared in constant time: neither the
        // token's bytes nor its length show in the time taken.
        let (given, token) = (Sha256::digest(given), Sha256::digest(token));
        if !bool::from(given.as_slice().ct_eq(token.as_slice())) {
            return Err(ApiError::unauthorized());
        }
    }
    Ok(next.run(request).await)
}

/// Refuses what a browser sends on behalf of another site: a request whose
/// `Origin` is not this server (cross-site POSTs), and, without a token, a
/// `Host` other than a loopback name (DNS rebinding: a page of another
/// site made to resolve to 127.0.0.1). The dashboard is same-origin.
async fn same_origin(
    State(state): State<Shared>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let headers = request.headers();
    let text =
        |v: Option<&axum::http::HeaderValue>| v.and_then(|v| v.to_str().ok()).map(str::to_string);
    let host = text(headers.get(axum::http::header::HOST)).unwrap_or_default();
    let origin = text(headers.get(axum::http::header::ORIGIN));
    if let Some(origin) = origin {
        let own = origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(&host));
        if !own {
            return Err(ApiError::forbidden(
                "requests from another origin are refused",
            ));
        }
    }
    if state.token.is_none() && !host.is_empty() && !loopback_host(&host) {
        return Err(ApiError::forbidden(
            "without FORTRESS_ADMIN_TOKEN the admin API answers only to loopback host names",
        ));
    }
    Ok(next.run(request).await)
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The admin token: FORTRESS_ADMIN_TOKEN, or the file FORTRESS_ADMIN_TOKEN_FILE
/// names (trimmed). Never from the command line, where `ps` shows it.
pub fn token_from_env() -> anyhow::Result<Option<String>> {
    let token = match (
        std::env::var("FORTRESS_ADMIN_TOKEN").ok(),
        std::env::var_os("FORTRESS_ADMIN_TOKEN_FILE"),
    ) {
        (Some(t), _) => t,
        (None, Some(path)) => crate::perms::check_secret(std::path::Path::new(&path))
            .and_then(|()| Ok(std::fs::read_to_string(&path)?))
            .map_err(|e| {
                anyhow::anyhow!(
                    "reading FORTRESS_ADMIN_TOKEN_FILE {}: {e}",
                    PathBuf::from(&path).display()
                )
            })?
            .trim()
            .to_string(),
        (None, None) => return Ok(None),
    };
    if token.len() < 16 {
        anyhow::bail!("the admin token is shorter than 16 characters; use a long random one");
    }
    Ok(Some(token))
}

/// Refuses to serve the API without a token where that would open the
/// data to others: beyond loopback (anyone who reaches it could read and
/// write every table), and when the server has users (the API runs SQL,
/// so without a token every local process would get past their passwords).
pub fn check_exposure(
    addr: &SocketAddr,
    token: Option<&str>,
    users_exist: bool,
) -> anyhow::Result<()> {
    if token.is_some() {
        return Ok(());
    }
    if !addr.ip().is_loopback() {
        anyhow::bail!(
            "the admin API would listen on {addr} without a token: set FORTRESS_ADMIN_TOKEN \
             (clients then send `Authorization: Bearer TOKEN`), or listen on a loopback \
             address, or turn it off with --admin-listen off"
        );
    }
    if users_exist {
        anyhow::bail!(
            "this server has users, so its admin API (which runs SQL) needs a token too: \
             set FORTRESS_ADMIN_TOKEN (or FORTRESS_ADMIN_TOKEN_FILE), or turn the API off \
             with --admin-listen off"
        );
    }
    Ok(())
}

/// Serves the API on `listener` until the process ends: HTTPS with `tls`.
pub fn spawn(
    listener: tokio::net::TcpListener,
    state: Shared,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
) -> std::io::Result<()> {
    let app = router(state);
    let listener = listener::AdminListener::new(listener, tls)?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the admin API stopped");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_host_names() {
        for ok in [
            "localhost",
            "localhost:7070",
            "127.0.0.1:7070",
            "127.1.2.3",
            "[::1]:7070",
            "[::1]",
        ] {
            assert!(super::loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example:7070",
            "10.0.0.1:7070",
            "[fe80::1]:7070",
            "localhost.evil.example",
        ] {
            assert!(!super::loopback_host(bad), "{bad}");
        }
    }
}
