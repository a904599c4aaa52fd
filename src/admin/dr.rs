//! `GET /api/v1/dr/status` (each archive: reachable or why not, how far
//! each log is archived, the consistent point, its health), `POST
//! /api/v1/dr/replicate` (ship now and return the positions), `POST
//! /api/v1/dr/providers` (add an archive while the server runs) and `POST
//! /api/v1/dr/checkpoint/{provider}` (take a checkpoint and archive it).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::Shared;
use crate::dr::ship::ShipStatus;
use crate::dr::AddError;

#[derive(Debug, Serialize, ToSchema)]
pub struct DrStatus {
    /// `primary`, or `standby` (reads only, following a primary).
    pub role: String,
    pub archives: Vec<ShipStatus>,
    /// On a primary, each standby streaming from it (or configured sync
    /// and never seen); on a standby, its primary.
    pub replication: Vec<Replication>,
    /// The write lease and every failover recorded; null without a lease.
    pub failover: Option<crate::dr::failover::FailoverStatus>,
}

/// One replication peer, as `SHOW fortress.replication` reports it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Replication {
    /// The standby's name, or the primary's address.
    pub name: String,
    /// `standby` or `primary`: what the peer is to this node.
    pub role: String,
    /// `streaming`, or why not.
    pub state: String,
    /// `async`, `sync` or `sync (degraded to async)`.
    pub mode: String,
    /// Each log's last LSN the standby holds (`shard:lsn,...,c:lsn`).
    pub positions: String,
    /// On a primary, WAL bytes sent and not yet acknowledged; on a
    /// standby, bytes received and not yet applied.
    pub lag_bytes: u64,
    /// On a primary, the age of the oldest unacknowledged round; on a
    /// standby, how old its reads are. Null before the first round.
    pub lag_seconds: Option<f64>,
}

/// The DR state: role, archives and replication peers.
pub fn dr_status(state: &Shared, archives: Vec<ShipStatus>) -> DrStatus {
    DrStatus {
        role: match state.cluster.is_standby() {
            true => "standby",
            false => "primary",
        }
        .into(),
        archives,
        replication: state
            .cluster
            .replication_rows()
            .into_iter()
            .map(|r| Replication {
                name: r.name,
                role: r.role,
                state: r.state,
                mode: r.mode,
                positions: r.positions,
                lag_bytes: r.lag_bytes,
                lag_seconds: Some(r.lag_seconds).filter(|s| s.is_finite()),
            })
            .collect(),
        failover: state.failover.as_ref().map(|f| f.status()),
    }
}

/// This node's role, every archive's shipping state, and its replication
/// peers with their lag.
#[utoipa::path(get, path = "/api/v1/dr/status", operation_id = "drStatus", tag = "dr",
    security(("bearer" = [])),
    responses(
        (status = 200, body = DrStatus),
        (status = 401, body = ErrorBody),
    ))]
pub async fn status(State(state): State<Shared>) -> Json<DrStatus> {
    let archives = state.dr.status();
    Json(dr_status(&state, archives))
}

/// Ships what the logs hold now to every archive and returns where each
/// stands (an archive that fails says why in `last_error`).
#[utoipa::path(post, path = "/api/v1/dr/replicate", operation_id = "drReplicate", tag = "dr",
    security(("bearer" = [])),
    responses(
        (status = 200, body = DrStatus),
        (status = 401, body = ErrorBody),
    ))]
pub async fn replicate(State(state): State<Shared>) -> Json<DrStatus> {
    let archives = state.dr.ship_now(Duration::from_secs(30)).await;
    Json(dr_status(&state, archives))
}

/// An archive to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProvider {
    /// Letters, digits, '-' or '_'.
    pub name: String,
    /// `file:///dir`, `s3://bucket/path`, `gs://bucket/path` or
    /// `az://container/path`; credentials come from the server's
    /// environment, never the URL.
    pub url: String,
}

/// Adds an archive while the server runs (until it stops: archives on the
/// command line or in the config file are the lasting ones) and starts
/// shipping to it.
#[utoipa::path(post, path = "/api/v1/dr/providers", operation_id = "drAddProvider", tag = "dr",
    security(("bearer" = [])),
    request_body = NewProvider,
    responses(
        (status = 201, body = ShipStatus),
        (status = 400, description = "A malformed name or URL", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "An archive of that name exists", body = ErrorBody),
    ))]
pub async fn add_provider(
    State(state): State<Shared>,
    body: Result<Json<NewProvider>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<ShipStatus>), ApiError> {
    let Json(p) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    match state.dr.add(&p.name, &p.url) {
        Ok(shipper) => Ok((StatusCode::CREATED, Json(shipper.status()))),
        Err(e @ AddError::Invalid(_)) => Err(ApiError::bad_request(e.to_string())),
        Err(e @ AddError::Exists(_)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            e.to_string(),
        )),
    }
}

/// A checkpoint taken and archived.
#[derive(Debug, Serialize, ToSchema)]
pub struct ArchivedCheckpoint {
    pub checkpoint: String,
    pub archive: ShipStatus,
}

/// Takes a checkpoint of every shard now and ships it, with the WAL, to
/// archive `provider`; answers once it is there.
#[utoipa::path(post, path = "/api/v1/dr/checkpoint/{provider}", operation_id = "drCheckpoint", tag = "dr",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The archive's name")),
    responses(
        (status = 201, body = ArchivedCheckpoint),
        (status = 409, description = "This node is a standby", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No archive of that name", body = ErrorBody),
        (status = 500, description = "The checkpoint could not be taken", body = ErrorBody),
        (status = 503, description = "The archive did not take it", body = ErrorBody),
    ))]
pub async fn checkpoint(
    State(state): State<Shared>,
    Path(provider): Path<String>,
) -> Result<(StatusCode, Json<ArchivedCheckpoint>), ApiError> {
    let shipper = state
        .dr
        .get(&provider)
        .ok_or_else(|| ApiError::not_found(format!("no archive named {provider:?}")))?;
    let m = super::checkpoints::take(&state).await?;
    let after = shipper.ship_now(Duration::from_secs(600)).await;
    if after.newest_checkpoint.as_deref() < Some(m.id.as_str()) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!(
                "checkpoint {} was taken but archive {provider} did not take it: {}",
                m.id,
                after.last_error.as_deref().unwrap_or("not shipped in time")
            ),
        ));
    }
    Ok((
        StatusCode::CREATED,
        Json(ArchivedCheckpoint {
            checkpoint: m.id,
            archive: after,
        }),
    ))
}

/// Promotes this standby to a primary, in place: it stops following its
/// primary, applies what it logged, decides the transactions left
/// prepared, and takes writes. Answers with the new status. With a write
/// lease it first takes the lease (409 while the primary renews it);
/// without one, make sure the old primary is stopped first.
#[utoipa::path(post, path = "/api/v1/dr/promote", operation_id = "drPromote", tag = "dr",
    security(("bearer" = [])),
    responses(
        (status = 200, body = DrStatus),
        (status = 401, body = ErrorBody),
        (status = 409, description = "This node is not a standby", body = ErrorBody),
        (status = 500, body = ErrorBody),
    ))]
pub async fn promote(State(state): State<Shared>) -> Result<Json<DrStatus>, ApiError> {
    if let Some(m) = &state.failover {
        // With a lease, a promotion is a takeover of it.
        if state.cluster.is_standby() {
            m.failover(None).await.map_err(refused)?;
            let archives = state.dr.status();
            return Ok(Json(dr_status(&state, archives)));
        }
    }
    let follower = match &state.follower {
        Some(f) if state.cluster.is_standby() => f.clone(),
        _ => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "this node is not a standby".to_string(),
            ))
        }
    };
    let started = std::time::Instant::now();
    follower.promote().await.map_err(|e| {
        match e.downcast_ref::<fortress_proxy::ProxyError>() {
            // Promoted meanwhile, by another request.
            Some(p) if p.sql_state() == "55000" => {
                ApiError::new(StatusCode::CONFLICT, "conflict", p.to_string())
            }
            _ => ApiError::internal("promotion failed", format!("{e:#}")),
        }
    })?;
    tracing::warn!(
        took_ms = started.elapsed().as_millis() as u64,
        "promoted by the admin API"
    );
    let archives = state.dr.status();
    Ok(Json(dr_status(&state, archives)))
}

/// Whom to fail over to.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailoverRequest {
    /// The standby to make the primary; on a standby, itself (or null).
    pub to: Option<String>,
}

fn refused(r: crate::dr::failover::Refusal) -> ApiError {
    match r {
        crate::dr::failover::Refusal::Conflict(why) => {
            ApiError::new(StatusCode::CONFLICT, "conflict", why)
        }
        crate::dr::failover::Refusal::Failed(e) => {
            ApiError::internal("failover failed", format!("{e:#}"))
        }
    }
}

/// Makes a standby the primary. On the primary holding the write lease:
/// a planned handover to standby `to` (writes stop, `to` catches up, the
/// lease goes to it, and it promotes itself). On a standby: it takes the
/// lease if the primary's has expired, and promotes itself. Answers with
/// the status after.
#[utoipa::path(post, path = "/api/v1/dr/failover", operation_id = "drFailover", tag = "dr",
    security(("bearer" = [])),
    request_body = FailoverRequest,
    responses(
        (status = 200, body = DrStatus),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "Not possible now or here (the reason says why)", body = ErrorBody),
        (status = 500, body = ErrorBody),
    ))]
pub async fn failover(
    State(state): State<Shared>,
    body: Result<Json<FailoverRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<DrStatus>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let Some(m) = &state.failover else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "this node has no write lease (serve --lease-archive): use POST /api/v1/dr/promote on the standby after stopping the primary".to_string(),
        ));
    };
    m.failover(req.to.as_deref()).await.map_err(refused)?;
    let archives = state.dr.status();
    Ok(Json(dr_status(&state, archives)))
}
