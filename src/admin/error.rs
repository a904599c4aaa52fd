//! The admin API's one error shape, `{"error": {"code", "message"}}`, and
//! the HTTP status each kind of failure gets. `code` is the SQLSTATE for
//! a failed statement, else a short word (`unauthorized`, `not_found`...).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// What every failing endpoint returns.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The SQLSTATE of a failed statement, else one of `bad_request`,
    /// `unauthorized`, `forbidden`, `not_found`, `method_not_allowed`,
    /// `internal`.
    pub code: String,
    pub message: String,
    /// PostgreSQL's DETAIL line, when the statement's error has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Which statement of a transaction failed (0-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement: Option<usize>,
}

/// An endpoint's failure, turned into [`ErrorBody`] with its status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: ErrorDetail,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            detail: ErrorDetail {
                code: code.into(),
                message: message.into(),
                detail: None,
                statement: None,
            },
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this endpoint needs the header `Authorization: Bearer TOKEN` with the server's \
             FORTRESS_ADMIN_TOKEN",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A failure of the server's own (logged; the client gets the gist).
    pub fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "admin API: {what}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{what}: {e}"),
        )
    }

    /// A statement's error, with the status its SQLSTATE class calls for.
    pub fn sql(e: &fortress_proxy::ProxyError) -> ApiError {
        let code = e.sql_state();
        ApiError {
            status: status_of(code),
            detail: ErrorDetail {
                code: code.into(),
                message: e.to_string(),
                detail: e.detail().map(str::to_string),
                statement: None,
            },
        }
    }

    pub fn in_statement(mut self, index: usize) -> ApiError {
        self.detail.statement = Some(index);
        self
    }
}

/// The HTTP status for a SQLSTATE: the client's mistake (400), a conflict
/// with other work that a retry may clear (409), a request too big (413),
/// the server out of a resource or stopping the statement (503), or the
/// server's own fault (500).
fn status_of(sqlstate: &str) -> StatusCode {
    if sqlstate == "08P01" {
        // A protocol violation: the request's own (parameters that do not
        // fit the statement).
        return StatusCode::BAD_REQUEST;
    }
    match sqlstate.get(..2).unwrap_or("XX") {
        // Integrity, serialization failure and deadlock, lock not available.
        "23" | "40" | "55" => StatusCode::CONFLICT,
        // Program limit exceeded: too long or too complex.
        "54" => StatusCode::PAYLOAD_TOO_LARGE,
        // Insufficient resources, operator intervention (cancel, timeout,
        // shutdown), connection trouble.
        "53" | "57" | "08" => StatusCode::SERVICE_UNAVAILABLE,
        // Internal error, system error.
        "XX" | "58" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { error: self.detail })).into_response()
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> ApiError {
        ApiError::new(r.status(), "bad_request", r.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> ApiError {
        ApiError::new(r.status(), "bad_request", r.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_the_status_their_class_calls_for() {
        assert_eq!(status_of("42P01"), StatusCode::BAD_REQUEST);
        assert_eq!(status_of("22012"), StatusCode::BAD_REQUEST);
        assert_eq!(status_of("23505"), StatusCode::CONFLICT);
        assert_eq!(status_of("40001"), StatusCode::CONFLICT);
        assert_eq!(status_of("54001"), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(status_of("57014"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status_of("08P01"), StatusCode::BAD_REQUEST);
        assert_eq!(status_of("08006"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status_of("XX000"), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
