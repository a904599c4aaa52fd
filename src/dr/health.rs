//! Health of each archive: the checks of SPEC §4, each on its own
//! interval, and a score.
//!
//! - connectivity (critical; every 30 s): the archive answers a read of
//!   its identity object;
//! - latency (every 1 min): a small object written and read back within
//!   500 ms;
//! - capacity (every 5 min): the archive's disk under 90% full (measured
//!   for `file://`; object stores report no capacity and pass);
//! - replication lag (critical; every 30 s): the last successful shipping
//!   round no older than 10 s.
//!
//! Every interval and threshold is a `--health-*` setting. The score is an
//! exponential moving average of the results (1 for a pass, 0 for a
//! failure; alpha 0.3), starting at 1; a critical check's consecutive
//! failures are counted for failover.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::archive::{self, Provider};
use super::ship::ShipStatus;

/// Weight of the newest result in the score.
const ALPHA: f64 = 0.3;
/// A check that takes longer than this has failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// The object the latency check writes and reads.
const PROBE: &str = "health/probe";

/// Intervals and thresholds of the checks.
#[derive(Clone, Debug)]
pub struct Settings {
    pub connectivity_every: Duration,
    pub latency_every: Duration,
    pub latency_max: Duration,
    pub capacity_every: Duration,
    pub capacity_max_pct: u8,
    pub lag_every: Duration,
    pub lag_max: Duration,
}

/// One check's state.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct CheckStatus {
    pub name: String,
    /// A critical check failing again and again triggers failover.
    pub critical: bool,
    pub every_seconds: f64,
    /// The last result (none before the first run).
    pub ok: Option<bool>,
    /// What the last run measured, or why it failed.
    pub detail: Option<String>,
    pub consecutive_failures: u32,
    pub runs: u64,
    /// When it last ran (RFC 3339).
    pub last_run: Option<String>,
}

/// An archive's checks and score.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ArchiveHealth {
    /// Exponential moving average of the check results (alpha 0.3), 0 to 1.
    pub score: f64,
    pub checks: Vec<CheckStatus>,
}

impl Default for ArchiveHealth {
    fn default() -> Self {
        ArchiveHealth {
            score: 1.0,
            checks: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Connectivity,
    Latency,
    Capacity,
    Lag,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Connectivity => "connectivity",
            Kind::Latency => "latency",
            Kind::Capacity => "capacity",
            Kind::Lag => "replication_lag",
        }
    }

    fn critical(self) -> bool {
        matches!(self, Kind::Connectivity | Kind::Lag)
    }
}

/// Starts the checks of `provider`, reporting into `status`.
pub fn spawn(provider: Arc<Provider>, status: Arc<Mutex<ShipStatus>>, settings: &Settings) {
    let kinds = [
        (Kind::Connectivity, settings.connectivity_every),
        (Kind::Latency, settings.latency_every),
        (Kind::Capacity, settings.capacity_every),
        (Kind::Lag, settings.lag_every),
    ];
    {
        let mut st = status.lock().expect("ship status");
        st.health.checks = kinds
            .iter()
            .map(|(k, every)| CheckStatus {
                name: k.name().into(),
                critical: k.critical(),
                every_seconds: every.as_secs_f64(),
                ..CheckStatus::default()
            })
            .collect();
    }
    for (i, (kind, every)) in kinds.into_iter().enumerate() {
        // Never a busy loop against the store.
        let every = every.max(Duration::from_millis(100));
        let (provider, status, settings) = (provider.clone(), status.clone(), settings.clone());
        tokio::spawn(async move {
            // The lag check waits one interval: the first round needs time.
            if kind == Kind::Lag {
                tokio::time::sleep(every).await;
            }
            loop {
                let result = match tokio::time::timeout(
                    CHECK_TIMEOUT,
                    run(kind, &provider, &status, &settings),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
                };
                record(&status, &provider.name, i, kind, result);
                tokio::time::sleep(every).await;
            }
        });
    }
}

/// Runs one check: what it measured, or why it failed.
async fn run(
    kind: Kind,
    provider: &Provider,
    status: &Mutex<ShipStatus>,
    settings: &Settings,
) -> Result<String, String> {
    let err = |e: anyhow::Error| format!("{e:#}");
    match kind {
        Kind::Connectivity => {
            let started = Instant::now();
            provider.get(archive::IDENTITY).await.map_err(err)?;
            Ok(format!("answered in {} ms", started.elapsed().as_millis()))
        }
        Kind::Latency => {
            let started = Instant::now();
            let probe = archive::seal(super::now_rfc3339().as_bytes(), archive::Compression::None);
            provider.put(PROBE, probe).await.map_err(err)?;
            provider.get(PROBE).await.map_err(err)?;
            let took = started.elapsed();
            let text = format!("write and read back in {} ms", took.as_millis());
            if took > settings.latency_max {
                return Err(format!(
                    "{text}, over {} ms",
                    settings.latency_max.as_millis()
                ));
            }
            Ok(text)
        }
        Kind::Capacity => {
            let Some(dir) = &provider.local_dir else {
                return Ok("an object store reports no capacity".into());
            };
            let (available, total) =
                fortress_storage::space::usage(dir).map_err(|e| e.to_string())?;
            let used = 100.0 * (total - available.min(total)) as f64 / total.max(1) as f64;
            let text = format!("{used:.1}% of {} GiB used", total >> 30);
            if used > settings.capacity_max_pct as f64 {
                return Err(format!("{text}, over {}%", settings.capacity_max_pct));
            }
            Ok(text)
        }
        Kind::Lag => {
            let since = status.lock().expect("ship status").last_success.clone();
            let Some(since) = since else {
                return Err("nothing shipped yet".into());
            };
            let age = chrono::DateTime::parse_from_rfc3339(&since)
                .map(|t| {
                    (chrono::Utc::now() - t.to_utc()).num_milliseconds().max(0) as f64 / 1000.0
                })
                .map_err(|e| e.to_string())?;
            let text = format!("last shipped {age:.1} s ago");
            if age > settings.lag_max.as_secs_f64() {
                return Err(format!("{text}, over {} s", settings.lag_max.as_secs_f64()));
            }
            Ok(text)
        }
    }
}

/// A score moved by one check's result (an EMA, alpha 0.3).
pub fn next_score(score: f64, ok: bool) -> f64 {
    ALPHA * if ok { 1.0 } else { 0.0 } + (1.0 - ALPHA) * score
}

/// Records a result of check `i` and moves the score.
fn record(
    status: &Mutex<ShipStatus>,
    provider: &str,
    i: usize,
    kind: Kind,
    result: Result<String, String>,
) {
    let mut st = status.lock().expect("ship status");
    let ok = result.is_ok();
    let check = &mut st.health.checks[i];
    if !ok && check.ok != Some(false) {
        tracing::warn!(archive = provider, check = kind.name(), detail = ?result, "archive health check failed");
    }
    check.runs += 1;
    check.ok = Some(ok);
    check.consecutive_failures = if ok {
        0
    } else {
        check.consecutive_failures + 1
    };
    check.detail = Some(match result {
        Ok(t) | Err(t) => t,
    });
    check.last_run = Some(super::now_rfc3339());
    let score = next_score(st.health.score, ok);
    st.health.score = score;
    metrics::gauge!("fortress_dr_check_ok", "provider" => provider.to_string(), "check" => kind.name())
        .set(if ok { 1.0 } else { 0.0 });
    metrics::gauge!("fortress_dr_score", "provider" => provider.to_string()).set(score);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_score_is_an_ema_with_alpha_0_3() {
        let status = Mutex::new(ShipStatus::default());
        status.lock().unwrap().health.checks = vec![CheckStatus::default()];
        record(&status, "a", 0, Kind::Connectivity, Err("down".into()));
        assert!((status.lock().unwrap().health.score - 0.7).abs() < 1e-9);
        record(&status, "a", 0, Kind::Connectivity, Err("down".into()));
        assert!((status.lock().unwrap().health.score - 0.49).abs() < 1e-9);
        record(&status, "a", 0, Kind::Connectivity, Ok("up".into()));
        let st = status.lock().unwrap();
        assert!((st.health.score - 0.643).abs() < 1e-9);
        assert_eq!(st.health.checks[0].consecutive_failures, 0);
        assert_eq!(st.health.checks[0].runs, 3);
    }
}
