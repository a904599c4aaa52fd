//! `GET /api/v1/health` (liveness and each shard's readiness; no token
//! needed, for load balancers and orchestrators) and `GET /api/v1/status`
//! (shards, connections, uptime, version, settings).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::{Settings, Shared};

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when every shard takes writes, else `degraded`.
    pub status: String,
    pub shards: Vec<ShardHealth>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ShardHealth {
    pub id: u32,
    pub ready: bool,
    /// Why the shard is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Liveness (any answer at all) and per-shard readiness: 200 when every
/// shard is ready, 503 with the same body when one is not.
#[utoipa::path(get, path = "/api/v1/health", operation_id = "health", tag = "health",
    responses(
        (status = 200, description = "Every shard is ready", body = Health),
        (status = 503, description = "A shard takes no writes until restarted", body = Health),
    ))]
pub async fn health(State(state): State<Shared>) -> (StatusCode, Json<Health>) {
    let shards: Vec<ShardHealth> = state
        .cluster
        .shard_health()
        .into_iter()
        .map(|(id, r)| ShardHealth {
            id,
            ready: r.is_ok(),
            reason: r.err(),
        })
        .collect();
    let ready = shards.iter().all(|s| s.ready);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Health {
        status: if ready { "ok" } else { "degraded" }.into(),
        shards,
    };
    (status, Json(body))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    pub version: String,
    /// The data directory's id (its checkpoints carry it).
    pub cluster_id: String,
    pub uptime_seconds: u64,
    pub shards: Vec<ShardStatus>,
    pub connections: Connections,
    pub settings: Settings,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ShardStatus {
    pub id: u32,
    pub ready: bool,
    /// The last WAL record's position (what `fortress restore --lsn` takes).
    pub wal_lsn: u64,
    /// Bytes of the shard's files (store and WAL) on disk.
    pub bytes: u64,
    /// Live rows, counted at one snapshot.
    pub rows: u64,
    /// Fragments routed to the shard since start.
    pub requests: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Connections {
    pub active: u64,
    pub max: usize,
    pub accepted_total: u64,
    /// Turned away with 53300 (the limit, or out of file descriptors).
    pub refused_total: u64,
}

/// Everything an operator looks at first. Counting rows reads every
/// table, so this costs a `count(*)` over the data: poll it every few
/// seconds, not faster.
#[utoipa::path(get, path = "/api/v1/status", operation_id = "status", tag = "health",
    security(("bearer" = [])),
    responses(
        (status = 200, body = Status),
        (status = 401, body = ErrorBody),
        (status = 503, description = "A shard could not be read", body = ErrorBody),
    ))]
pub async fn status(State(state): State<Shared>) -> Result<Json<Status>, ApiError> {
    let cluster = &state.cluster;
    let found = cluster
        .shard_status()
        .await
        .map_err(|e| ApiError::sql(&e))?;
    let health = cluster.shard_health();
    let requests = cluster.metrics().shard_requests();
    let shards = found
        .into_iter()
        .map(|s| ShardStatus {
            id: s.id,
            ready: health.iter().any(|(id, r)| *id == s.id && r.is_ok()),
            wal_lsn: s.wal_lsn,
            bytes: s.bytes,
            rows: s.rows,
            requests: requests.get(s.id as usize).copied().unwrap_or(0),
        })
        .collect();
    let (active, accepted, refused) = state.connections.read();
    Ok(Json(Status {
        version: env!("CARGO_PKG_VERSION").into(),
        cluster_id: cluster.id().into(),
        uptime_seconds: state.started.elapsed().as_secs(),
        shards,
        connections: Connections {
            active,
            max: state.settings.max_connections,
            accepted_total: accepted,
            refused_total: refused,
        },
        settings: state.settings.clone(),
    }))
}
