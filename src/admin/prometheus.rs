//! `GET /metrics` in Prometheus' text format, through the `metrics` facade
//! and `metrics-exporter-prometheus`. Two kinds of series: those recorded
//! as work happens (statement and commit latencies and counts, errors by
//! SQLSTATE class; see `fortress_proxy::metrics::Recorded`), and those
//! read from the counters fortress keeps anyway (routes, per-shard
//! requests, WAL bytes and fsyncs, caches, connections, checkpoint age),
//! copied into the recorder at each scrape.

use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use metrics::{counter, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::Shared;

/// Latency buckets, in seconds: 100 us to 10 s.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The installed recorder's handle.
#[derive(Clone)]
pub struct Exporter {
    handle: PrometheusHandle,
}

impl Exporter {
    /// Installs the process's recorder; call before the cluster serves
    /// anything (handles taken before it record nothing).
    pub fn install() -> anyhow::Result<Exporter> {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)?
            .install_recorder()?;
        describe();
        // Histograms are drained into their buckets by upkeep; without an
        // HTTP listener of the exporter's own, that is ours to run.
        let upkeep = handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                upkeep.run_upkeep();
            }
        });
        Ok(Exporter { handle })
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_histogram!(
        "fortress_statement_duration_seconds",
        Unit::Seconds,
        "Statements' time from start to last row sent"
    );
    describe_counter!("fortress_statements_total", "Statements run");
    describe_counter!(
        "fortress_queries_total",
        "Statements run, by route (the shards they addressed: none, single_shard, multi_shard, all_shards) and outcome (ok, error); one refused at Parse never ran and counts only in fortress_statement_errors_total"
    );
    describe_counter!(
        "fortress_statement_errors_total",
        "Statements that failed, by SQLSTATE class"
    );
    describe_histogram!(
        "fortress_commit_duration_seconds",
        Unit::Seconds,
        "Time to commit a transaction's writes, by one shard or two-phase"
    );
    describe_counter!(
        "fortress_commits_total",
        "Transactions with writes, by kind and outcome"
    );
    describe_counter!("fortress_reads_total", "Table reads by route");
    describe_counter!(
        "fortress_shard_requests_total",
        "Fragments sent to each shard"
    );
    describe_gauge!("fortress_wal_lsn", "Each shard's last WAL position");
    describe_counter!(
        "fortress_wal_bytes_total",
        Unit::Bytes,
        "WAL bytes appended per shard since start"
    );
    describe_counter!(
        "fortress_wal_fsyncs_total",
        "WAL fdatasyncs per shard since start"
    );
    describe_gauge!("fortress_shard_ready", "1 when the shard takes writes");
    describe_gauge!("fortress_connections", "Client connections open");
    describe_gauge!("fortress_connections_max", "The connection limit");
    describe_counter!(
        "fortress_connections_accepted_total",
        "Client connections taken in"
    );
    describe_counter!(
        "fortress_connections_refused_total",
        "Clients turned away with 53300"
    );
    describe_counter!("fortress_cache_hits_total", "Cache hits, by cache");
    describe_counter!("fortress_cache_misses_total", "Cache misses, by cache");
    describe_gauge!("fortress_cache_bytes", Unit::Bytes, "Bytes held, by cache");
    describe_counter!(
        "fortress_plans_reused_total",
        "Simple queries run on a reused plan"
    );
    describe_gauge!(
        "fortress_2pc_decisions_held",
        "Two-phase commit decisions not yet forgotten"
    );
    describe_gauge!("fortress_hot_shards", "Shards with 4x the others' requests");
    describe_gauge!("fortress_hot_vnodes", "Vnodes with 8x the mean requests");
    describe_gauge!(
        "fortress_checkpoint_age_seconds",
        Unit::Seconds,
        "Time since the newest checkpoint of this data directory"
    );
    describe_gauge!("fortress_checkpoints", "Checkpoints of this data directory");
    describe_gauge!(
        "fortress_replication_lag_bytes",
        Unit::Bytes,
        "WAL bytes a replication peer lacks (see SHOW fortress.replication)"
    );
    describe_gauge!(
        "fortress_replication_lag_seconds",
        Unit::Seconds,
        "How far a replication peer is behind (see SHOW fortress.replication)"
    );
    describe_gauge!(
        "fortress_replication_streaming",
        "1 while the stream with a replication peer is up"
    );
    describe_gauge!(
        "fortress_lease_writable",
        "1 while this node holds the write lease and may take writes"
    );
    describe_gauge!(
        "fortress_lease_epoch",
        "The write lease's epoch as last read"
    );
    describe_gauge!(
        "fortress_failovers",
        "Failovers recorded in the lease's archive"
    );
    describe_gauge!(
        "fortress_failover_rto_seconds",
        Unit::Seconds,
        "The last failover's time from detection to the first accepted write"
    );
    describe_gauge!(
        "fortress_failover_rpo_seconds",
        Unit::Seconds,
        "The last failover's lost window, as its replaced primary reported it"
    );
    describe_gauge!(
        "fortress_primary_score",
        "A standby's health score of its primary (EMA of each second's check)"
    );
    describe_gauge!("fortress_uptime_seconds", Unit::Seconds, "Time since start");
}

/// Copies what fortress counts anyway into the recorder.
async fn collect(state: &Shared) {
    let cluster = &state.cluster;
    let m = cluster.metrics();
    for (route, n) in m.routes() {
        counter!("fortress_reads_total", "route" => route).absolute(n);
    }
    for (shard, n) in m.shard_requests().into_iter().enumerate() {
        counter!("fortress_shard_requests_total", "shard" => shard.to_string()).absolute(n);
    }
    for (shard, lsn, bytes, syncs) in cluster.wal_stats() {
        let shard = shard.to_string();
        gauge!("fortress_wal_lsn", "shard" => shard.clone()).set(lsn as f64);
        counter!("fortress_wal_bytes_total", "shard" => shard.clone()).absolute(bytes);
        counter!("fortress_wal_fsyncs_total", "shard" => shard).absolute(syncs);
    }
    for (shard, health) in cluster.shard_health() {
        let ready = if health.is_ok() { 1.0 } else { 0.0 };
        gauge!("fortress_shard_ready", "shard" => shard.to_string()).set(ready);
    }
    let (active, accepted, refused) = state.connections.read();
    gauge!("fortress_connections").set(active as f64);
    gauge!("fortress_connections_max").set(state.settings.max_connections as f64);
    counter!("fortress_connections_accepted_total").absolute(accepted);
    counter!("fortress_connections_refused_total").absolute(refused);
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    let (row_hits, row_misses, row_bytes) = cluster.row_cache_stats();
    let (_, result_bytes) = cluster.cache().size();
    for (cache, hits, misses, bytes) in [
        (
            "result",
            cluster.cache().hits.load(relaxed),
            cluster.cache().misses.load(relaxed),
            result_bytes,
        ),
        ("row", row_hits, row_misses, row_bytes),
    ] {
        counter!("fortress_cache_hits_total", "cache" => cache).absolute(hits);
        counter!("fortress_cache_misses_total", "cache" => cache).absolute(misses);
        gauge!("fortress_cache_bytes", "cache" => cache).set(bytes as f64);
    }
    counter!("fortress_plans_reused_total").absolute(m.plans_reused());
    gauge!("fortress_2pc_decisions_held").set(cluster.coordinator().held() as f64);
    gauge!("fortress_hot_shards").set(m.hot_shards(4.0, 1000).len() as f64);
    gauge!("fortress_hot_vnodes").set(m.hot_vnodes(8.0, 1000).len() as f64);
    gauge!("fortress_uptime_seconds").set(state.started.elapsed().as_secs_f64());
    for r in cluster.replication_rows() {
        let labels = [("peer", r.name.clone()), ("role", r.role.clone())];
        gauge!("fortress_replication_lag_bytes", &labels).set(r.lag_bytes as f64);
        if r.lag_seconds.is_finite() {
            gauge!("fortress_replication_lag_seconds", &labels).set(r.lag_seconds);
        }
        let up = if r.state == "streaming" { 1.0 } else { 0.0 };
        gauge!("fortress_replication_streaming", &labels).set(up);
    }
    if let Some(f) = state.failover.as_ref().map(|f| f.status()) {
        gauge!("fortress_lease_writable").set(if f.lease.writable { 1.0 } else { 0.0 });
        gauge!("fortress_lease_epoch").set(f.lease.epoch as f64);
        gauge!("fortress_failovers").set(f.failovers.len() as f64);
        if let Some(last) = f.failovers.last() {
            if let Some(rto) = last.rto_seconds {
                gauge!("fortress_failover_rto_seconds").set(rto);
            }
            if let Some(rpo) = last.lost.as_ref().and_then(|l| l.rpo_seconds) {
                gauge!("fortress_failover_rpo_seconds").set(rpo);
            }
        }
    }
    let (count, age) = checkpoint_age(state).await;
    gauge!("fortress_checkpoints").set(count as f64);
    match age {
        Some(age) => gauge!("fortress_checkpoint_age_seconds").set(age),
        // No checkpoint yet: an age as large as the server's, so an alert
        // on the age fires for a server that never took one.
        None => {
            gauge!("fortress_checkpoint_age_seconds").set(state.started.elapsed().as_secs_f64())
        }
    }
}

/// This directory's checkpoints and the newest one's age in seconds.
async fn checkpoint_age(state: &Shared) -> (usize, Option<f64>) {
    let root = state.checkpoints.clone();
    let cipher = state.cluster.cipher().cloned();
    let id = state.cluster.id().to_string();
    let found = tokio::task::spawn_blocking(move || {
        fortress_storage::checkpoint::list(&root, cipher.as_deref())
    })
    .await;
    let Ok(Ok(found)) = found else {
        return (0, None);
    };
    let created: Vec<chrono::DateTime<chrono::FixedOffset>> = found
        .into_iter()
        .filter_map(|(_, m)| m.ok())
        .filter(|m| m.cluster == id)
        .filter_map(|m| chrono::DateTime::parse_from_rfc3339(&m.created).ok())
        .collect();
    let newest = created.iter().max().map(|t| {
        let age = chrono::Utc::now().signed_duration_since(t);
        age.num_milliseconds().max(0) as f64 / 1000.0
    });
    (created.len(), newest)
}

/// Every series, in the text exposition format.
#[utoipa::path(get, path = "/metrics", operation_id = "prometheusMetrics", tag = "metrics",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain"),
        (status = 401, body = super::error::ErrorBody),
    ))]
pub async fn render(State(state): State<Shared>) -> impl IntoResponse {
    collect(&state).await;
    let text = state.metrics.handle.render();
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
}
