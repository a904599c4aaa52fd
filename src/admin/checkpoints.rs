//! `POST /api/v1/checkpoints` (take one now) and `GET /api/v1/checkpoints`
//! (those in the checkpoint directory, oldest first): what `fortress
//! checkpoint create` and `list` do, over HTTP.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use fortress_storage::checkpoint::Manifest;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::Shared;

#[derive(Debug, Serialize, ToSchema)]
pub struct Checkpoint {
    pub id: String,
    /// Wall time of the snapshot, RFC 3339.
    pub created: String,
    pub rows: u64,
    /// Bytes of its row files (compressed), and before compression.
    pub bytes: u64,
    pub raw_bytes: u64,
    /// Per shard, the last WAL position it holds (replay starts after it).
    pub shards: Vec<CheckpointShard>,
    /// Taken of this data directory (not of another sharing the folder).
    pub ours: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointShard {
    pub shard: u32,
    pub wal_through: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointList {
    pub checkpoints: Vec<Checkpoint>,
    /// Entries that could not be read, by name, with why.
    pub unreadable: Vec<Unreadable>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Unreadable {
    pub name: String,
    pub error: String,
}

fn describe(m: &Manifest, cluster_id: &str) -> Checkpoint {
    let (bytes, raw_bytes) = m.sizes();
    Checkpoint {
        id: m.id.clone(),
        created: m.created.clone(),
        rows: m.rows(),
        bytes,
        raw_bytes,
        shards: m
            .shards
            .iter()
            .map(|s| CheckpointShard {
                shard: s.shard,
                wal_through: s.wal_through,
            })
            .collect(),
        ours: m.cluster == cluster_id,
    }
}

/// Takes a checkpoint of every shard at one snapshot, while writes go on.
#[utoipa::path(post, path = "/api/v1/checkpoints", operation_id = "createCheckpoint", tag = "checkpoints",
    security(("bearer" = [])),
    responses(
        (status = 201, body = Checkpoint),
        (status = 401, body = ErrorBody),
        (status = 409, description = "This node is a standby", body = ErrorBody),
        (status = 500, description = "The checkpoint could not be written", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<Shared>,
) -> Result<(StatusCode, Json<Checkpoint>), ApiError> {
    let m = take(&state).await?;
    Ok((StatusCode::CREATED, Json(describe(&m, state.cluster.id()))))
}

/// Takes a checkpoint into the checkpoint directory.
pub async fn take(state: &Shared) -> Result<Manifest, ApiError> {
    if state.cluster.is_standby() {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "conflict",
            "a standby takes no checkpoints: take them on its primary",
        ));
    }
    let root = std::path::absolute(&state.checkpoints)
        .map_err(|e| ApiError::internal("resolving the checkpoint directory", e))?;
    let m = state
        .cluster
        .checkpoint(&root)
        .await
        .map_err(|e| ApiError::internal("taking a checkpoint", e))?;
    crate::checkpoint::log_created(&m);
    Ok(m)
}

/// The checkpoints in the checkpoint directory, oldest first.
#[utoipa::path(get, path = "/api/v1/checkpoints", operation_id = "listCheckpoints", tag = "checkpoints",
    security(("bearer" = [])),
    responses(
        (status = 200, body = CheckpointList),
        (status = 401, body = ErrorBody),
        (status = 500, description = "The checkpoint directory could not be read", body = ErrorBody),
    ))]
pub async fn list(State(state): State<Shared>) -> Result<Json<CheckpointList>, ApiError> {
    let root = state.checkpoints.clone();
    let cipher = state.cluster.cipher().cloned();
    let found = tokio::task::spawn_blocking(move || {
        fortress_storage::checkpoint::list(&root, cipher.as_deref())
    })
    .await
    .map_err(|e| ApiError::internal("listing checkpoints", e))?
    .map_err(|e| ApiError::internal("listing checkpoints", e))?;
    let mut out = CheckpointList {
        checkpoints: Vec::new(),
        unreadable: Vec::new(),
    };
    for (path, m) in found {
        match m {
            Ok(m) => out.checkpoints.push(describe(&m, state.cluster.id())),
            Err(e) => out.unreadable.push(Unreadable {
                name: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                error: e.to_string(),
            }),
        }
    }
    Ok(Json(out))
}
