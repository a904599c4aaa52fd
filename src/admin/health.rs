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
    /// Bytes of the shard's files (store and WAL) on disk (at most 2 s old).
    pub bytes: u64,
    /// Live rows, counted at one snapshot (at most 2 s old).
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

/// How long a count of every shard's rows serves `/status` while writes
/// go on (with none, it serves until the next write).
const COUNTS_FRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// The last count of every shard's rows and bytes. Counting reads every
/// table (a `count(*)` over all the data), so callers share one count at a
/// time and reuse it.
pub type Counts = tokio::sync::Mutex<Option<Counted>>;

/// A count: when it was taken, and at which WAL positions.
pub struct Counted {
    at: std::time::Instant,
    lsns: Vec<u64>,
    shards: Vec<fortress_proxy::cluster::ShardStatus>,
}

/// Everything an operator looks at first. Rows and bytes are counted at
/// most every 2 s while writes go on, and not again until the next write
/// when none do (however many callers poll); WAL positions, readiness and
/// requests are read live.
#[utoipa::path(get, path = "/api/v1/status", operation_id = "status", tag = "health",
    security(("bearer" = [])),
    responses(
        (status = 200, body = Status),
        (status = 401, body = ErrorBody),
        (status = 503, description = "A shard could not be read", body = ErrorBody),
    ))]
pub async fn status(State(state): State<Shared>) -> Result<Json<Status>, ApiError> {
    let cluster = &state.cluster;
    let lsns: Vec<(u32, u64)> = cluster
        .wal_stats()
        .into_iter()
        .map(|(id, lsn, _, _)| (id, lsn))
        .collect();
    let found = {
        let mut counts = state.shard_counts.lock().await;
        let now: Vec<u64> = lsns.iter().map(|(_, lsn)| *lsn).collect();
        match &*counts {
            Some(c) if c.lsns == now || c.at.elapsed() < COUNTS_FRESH => c.shards.clone(),
            _ => {
                let shards = cluster
                    .shard_status()
                    .await
                    .map_err(|e| ApiError::sql(&e))?;
                *counts = Some(Counted {
                    at: std::time::Instant::now(),
                    // Read before counting: a write during the count
                    // moves them, and the next caller counts again.
                    lsns: now.clone(),
                    shards: shards.clone(),
                });
                shards
            }
        }
    };
    let health = cluster.shard_health();
    let requests = cluster.metrics().shard_requests();
    let shards = found
        .into_iter()
        .map(|s| ShardStatus {
            id: s.id,
            ready: health.iter().any(|(id, r)| *id == s.id && r.is_ok()),
            wal_lsn: lsns
                .iter()
                .find(|(id, _)| *id == s.id)
                .map_or(s.wal_lsn, |(_, lsn)| *lsn),
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
