//! `POST /api/v1/sharding/query`, `POST /api/v1/sharding/transaction` and
//! `GET /api/v1/sharding/metrics`: SQL over HTTP, run in-process through
//! the same binder, router and executor as a client's statements
//! ([`fortress_proxy::direct`]), and the routing counters.
//!
//! Values: parameters are read as PostgreSQL reads text-format parameters
//! (a JSON string as its text, a number or boolean as its literal, null as
//! NULL, an array or object as its JSON text). In results, integers, floats
//! and booleans are JSON numbers and booleans; numeric (exact, beyond a
//! double's precision) and every other type are strings in PostgreSQL's
//! text form.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use fortress_proxy::direct::Answer;
use fortress_storage::Value;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::Shared;

/// Rows returned when the request does not say.
const DEFAULT_MAX_ROWS: usize = 10_000;
/// The most rows one response carries (the rest are not read).
const MAX_ROWS: usize = 100_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// One SQL statement; `$1`, `$2`... refer to `params`.
    pub sql: String,
    /// Values for `$1`, `$2`... (see the module notes for how they are read).
    #[serde(default)]
    #[schema(value_type = Vec<Value>)]
    pub params: Vec<serde_json::Value>,
    /// Rows to return at most (default 10000, at most 100000); past it the
    /// response says `truncated`.
    #[schema(minimum = 0, maximum = 100000)]
    pub max_rows: Option<u64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransactionRequest {
    /// Statements run in order as one transaction (no BEGIN or COMMIT of
    /// their own): all commit, or none does. At most 1000.
    #[schema(max_items = 1000)]
    pub statements: Vec<String>,
    /// Rows returned at most, over all the statements (default 10000, at
    /// most 100000).
    #[schema(minimum = 0, maximum = 100000)]
    pub max_rows: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueryResponse {
    /// The command tag a PostgreSQL client sees (`SELECT 2`, `INSERT 0 1`).
    pub tag: String,
    pub columns: Vec<Column>,
    /// One array per row, one value per column.
    #[schema(value_type = Vec<Vec<Value>>)]
    pub rows: Vec<Vec<serde_json::Value>>,
    /// More rows were produced than `max_rows`.
    pub truncated: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Column {
    pub name: String,
    /// PostgreSQL's name of the type (`int8`, `text`, `numeric`...).
    #[serde(rename = "type")]
    pub ty: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionResponse {
    /// One result per statement, in order.
    pub results: Vec<QueryResponse>,
}

fn max_rows(asked: Option<u64>) -> Result<usize, ApiError> {
    match asked {
        None => Ok(DEFAULT_MAX_ROWS),
        Some(n) if n <= MAX_ROWS as u64 => Ok(n as usize),
        Some(n) => Err(ApiError::bad_request(format!(
            "max_rows is {n}; at most {MAX_ROWS} rows come back in one response"
        ))),
    }
}

/// A parameter as the text a Bind message would carry.
fn param_text(v: serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

/// A result value as JSON.
fn json_of(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int2(n) => J::from(*n),
        Value::Int4(n) => J::from(*n),
        Value::Int8(n) => J::from(*n),
        // NaN and the infinities have no JSON number: their text.
        Value::Float4(f) if f.is_finite() => J::from(*f as f64),
        Value::Float8(f) if f.is_finite() => J::from(*f),
        other => other.to_text().map_or(J::Null, J::String),
    }
}

fn response(a: Answer) -> QueryResponse {
    QueryResponse {
        tag: a.tag,
        columns: a
            .columns
            .iter()
            .map(|c| Column {
                name: c.name.clone(),
                ty: c.ty.pg_name().to_string(),
            })
            .collect(),
        rows: a
            .rows
            .iter()
            .map(|r| r.iter().map(json_of).collect())
            .collect(),
        truncated: a.truncated,
    }
}

/// Runs one statement (autocommit) and returns its rows or command tag.
#[utoipa::path(post, path = "/api/v1/sharding/query", operation_id = "runQuery", tag = "sharding",
    security(("bearer" = [])),
    request_body = QueryRequest,
    responses(
        (status = 200, body = QueryResponse),
        (status = 400, description = "The request or the statement is wrong (code: its SQLSTATE)", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "A conflict: unique violation, serialization failure", body = ErrorBody),
        (status = 413, description = "The statement is too long or nests too deep", body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, description = "Out of a resource, or stopped (statement_timeout)", body = ErrorBody),
    ))]
pub async fn query(
    State(state): State<Shared>,
    body: Result<Json<QueryRequest>, JsonRejection>,
) -> Result<Json<QueryResponse>, ApiError> {
    let Json(req) = body?;
    let max_rows = max_rows(req.max_rows)?;
    let params = req.params.into_iter().map(param_text).collect();
    let answer = state
        .direct
        .query(req.sql, params, max_rows)
        .await
        .map_err(|e| ApiError::sql(&e))?;
    Ok(Json(response(answer)))
}

/// Runs the statements as one transaction. When one fails, the
/// transaction is rolled back, nothing of it is written, and the error
/// names the statement (`statement`, 0-based).
#[utoipa::path(post, path = "/api/v1/sharding/transaction", operation_id = "runTransaction", tag = "sharding",
    security(("bearer" = [])),
    request_body = TransactionRequest,
    responses(
        (status = 200, body = TransactionResponse),
        (status = 400, description = "A statement is wrong (code: its SQLSTATE; statement: which)", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "A conflict: unique violation, serialization failure", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn transaction(
    State(state): State<Shared>,
    body: Result<Json<TransactionRequest>, JsonRejection>,
) -> Result<Json<TransactionResponse>, ApiError> {
    let Json(req) = body?;
    let max_rows = max_rows(req.max_rows)?;
    let answers = state
        .direct
        .transaction(req.statements, max_rows)
        .await
        .map_err(|f| match f.statement {
            Some(i) => ApiError::sql(&f.error).in_statement(i),
            None => ApiError::sql(&f.error),
        })?;
    Ok(Json(TransactionResponse {
        results: answers.into_iter().map(response).collect(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ShardingMetrics {
    pub shards: u32,
    /// Table reads by how they were routed.
    pub routes: Routes,
    /// Fragments sent to each shard.
    pub shard_requests: Vec<ShardRequests>,
    /// Key-addressed requests on hash tables per ring position (vnode).
    pub vnode_requests: Vec<VnodeRequests>,
    /// Shards with more than 4x the mean requests of the others.
    pub hot_shards: Vec<u32>,
    /// Vnodes with more than 8x the mean requests.
    pub hot_vnodes: Vec<VnodeRef>,
    pub cache: Cache,
    /// Simple queries that reused the plan of their shape.
    pub plans_reused: u64,
    /// Two-phase commit decisions logged and not yet forgotten.
    pub decisions_held: u64,
    pub statements: Statements,
}

/// Statement and commit totals since start.
#[derive(Debug, Serialize, ToSchema)]
pub struct Statements {
    pub total: u64,
    /// Statements' summed time, in seconds (with `total`, a mean latency).
    pub seconds_total: f64,
    pub one_shard_commits: u64,
    /// Cross-shard transactions committed by two-phase commit.
    pub two_phase_commits: u64,
    pub two_phase_aborts: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Routes {
    pub single_shard: u64,
    pub multi_shard: u64,
    pub scatter_gather: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ShardRequests {
    pub shard: u32,
    pub requests: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VnodeRequests {
    /// Position of the vnode's token on the ring.
    pub token: usize,
    pub shard: u32,
    pub requests: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VnodeRef {
    pub token: usize,
    pub shard: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Cache {
    /// Result cache of read-only statements.
    pub result_hits: u64,
    pub result_misses: u64,
    pub result_entries: usize,
    pub result_bytes: usize,
    /// Per-shard caches of recently read rows, summed.
    pub row_hits: u64,
    pub row_misses: u64,
    pub row_bytes: usize,
}

/// Where statements went: routes, per-shard and per-vnode requests, hot
/// spots and the caches, since the server started.
#[utoipa::path(get, path = "/api/v1/sharding/metrics", operation_id = "shardingMetrics", tag = "sharding",
    security(("bearer" = [])),
    responses((status = 200, body = ShardingMetrics), (status = 401, body = ErrorBody)))]
pub async fn metrics(State(state): State<Shared>) -> Json<ShardingMetrics> {
    Json(sharding_metrics(&state.cluster))
}

/// The routing counters of `cluster` (also the dashboard's source).
pub fn sharding_metrics(cluster: &fortress_proxy::Cluster) -> ShardingMetrics {
    use std::sync::atomic::Ordering::Relaxed;
    let m = cluster.metrics();
    let [single, multi, all] = m.routes();
    let (row_hits, row_misses, row_bytes) = cluster.row_cache_stats();
    let (entries, bytes) = cluster.cache().size();
    ShardingMetrics {
        shards: cluster.shard_count(),
        routes: Routes {
            single_shard: single.1,
            multi_shard: multi.1,
            scatter_gather: all.1,
        },
        shard_requests: m
            .shard_requests()
            .into_iter()
            .enumerate()
            .map(|(i, requests)| ShardRequests {
                shard: i as u32,
                requests,
            })
            .collect(),
        vnode_requests: m
            .vnode_requests()
            .into_iter()
            .enumerate()
            .map(|(token, (shard, requests))| VnodeRequests {
                token,
                shard,
                requests,
            })
            .collect(),
        hot_shards: m.hot_shards(4.0, 1000),
        hot_vnodes: m
            .hot_vnodes(8.0, 1000)
            .into_iter()
            .map(|(token, shard)| VnodeRef { token, shard })
            .collect(),
        cache: Cache {
            result_hits: cluster.cache().hits.load(Relaxed),
            result_misses: cluster.cache().misses.load(Relaxed),
            result_entries: entries,
            result_bytes: bytes,
            row_hits,
            row_misses,
            row_bytes,
        },
        plans_reused: m.plans_reused(),
        decisions_held: cluster.coordinator().held() as u64,
        statements: {
            let t = fortress_proxy::metrics::recorded().totals();
            Statements {
                total: t.statements,
                seconds_total: t.statement_micros as f64 / 1e6,
                one_shard_commits: t.one_shard_commits,
                two_phase_commits: t.two_phase_commits,
                two_phase_aborts: t.two_phase_aborts,
            }
        },
    }
}
