//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]`
//! annotations and their types: it cannot drift from what they accept and
//! return.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{checkpoints, dr, error, health, prometheus, sharding};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "fortress admin API",
        description = "Operate a fortress server: health, status, SQL over HTTP, routing metrics, checkpoints, disaster recovery. \
                       Errors are `{\"error\": {\"code\", \"message\"}}`; `code` is the SQLSTATE of a failed statement.",
    ),
    paths(
        health::health,
        health::status,
        sharding::query,
        sharding::transaction,
        sharding::metrics,
        checkpoints::create,
        checkpoints::list,
        dr::status,
        dr::replicate,
        dr::add_provider,
        dr::checkpoint,
        dr::promote,
        dr::failover,
        prometheus::render,
        document,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail, super::Settings)),
    modifiers(&BearerAuth),
    tags(
        (name = "health", description = "Liveness, readiness and status"),
        (name = "sharding", description = "SQL over HTTP and routing metrics"),
        (name = "checkpoints", description = "Consistent snapshots of every shard"),
        (name = "dr", description = "Archives: WAL and checkpoint shipping"),
        (name = "metrics", description = "Prometheus"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer token the guarded endpoints name.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("FORTRESS_ADMIN_TOKEN, when the server has one"))
                    .build(),
            ),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", operation_id = "openapiDocument", tag = "meta",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The OpenAPI 3 document", content_type = "application/json"),
        (status = 401, body = error::ErrorBody),
    ))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
