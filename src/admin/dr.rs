//! `GET /api/v1/dr/status` (each archive: reachable or why not, how far
//! each log is archived, the consistent point) and `POST
//! /api/v1/dr/replicate` (ship now and return the positions).

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::Shared;
use crate::dr::ship::ShipStatus;

#[derive(Debug, Serialize, ToSchema)]
pub struct DrStatus {
    pub archives: Vec<ShipStatus>,
}

/// Every archive's shipping state.
#[utoipa::path(get, path = "/api/v1/dr/status", operation_id = "drStatus", tag = "dr",
    security(("bearer" = [])),
    responses(
        (status = 200, body = DrStatus),
        (status = 401, body = ErrorBody),
    ))]
pub async fn status(State(state): State<Shared>) -> Json<DrStatus> {
    Json(DrStatus {
        archives: state.dr.status(),
    })
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
    Json(DrStatus {
        archives: state.dr.ship_now(Duration::from_secs(30)).await,
    })
}
