//! Shipping a running server's logs and checkpoints to one archive.
//!
//! One task per archive runs a round every `--ship-interval` (1 s by
//! default), or at once when asked (`POST /api/v1/dr/replicate`): each log
//! is read from where the archive ends up to what is durable
//! ([`fortress_storage::tail::Tail`]) and put as objects of at most
//! [`OBJECT_BYTES`] of records; checkpoints not yet archived are uploaded;
//! then the `positions` object records how far each log is archived and
//! the time through which the archive is consistent across logs.
//!
//! Where a log's archive ends is learnt from the archive itself (its
//! listing) when the task starts and after any failure, so a put that
//! failed, or succeeded just before a crash, is neither skipped nor
//! written again under another name. A failing archive is retried every
//! round; the local WAL keeps everything it has not acknowledged.
//!
//! **Consistency across logs.** Each round ships every log to a cut taken
//! at one instant ([`Cluster::log_cut`]: every shard's end read under all
//! the shards' writer locks, with the clock, then the coordinator's end),
//! waiting until each log is durable that far, and only then records the
//! cut in `positions`. A restore reads each log to the recorded cut, so it
//! sees each multi-shard transaction on all of its shards or on none (as a
//! restart decides it), and the cut's time is the archive's consistent
//! point.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use fortress_proxy::cluster::Log;
use fortress_proxy::Cluster;
use fortress_storage::checkpoint::{Manifest, MANIFEST};
use fortress_storage::tail::Tail;
use fortress_storage::wal::list_segments;
use serde::Serialize;

use super::archive::{self, Compression, Positions, Provider};

/// Records gathered into one WAL object at most.
pub const OBJECT_BYTES: usize = 16 << 20;

/// What one archive's shipping looks like from outside.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct ShipStatus {
    pub name: String,
    pub url: String,
    /// The last round reached the archive.
    pub healthy: bool,
    /// Why the last round failed, if it did.
    pub last_error: Option<String>,
    /// Wall-clock time of the last round that succeeded (RFC 3339).
    pub last_success: Option<String>,
    /// Seconds since then.
    pub seconds_since_success: Option<f64>,
    pub shipped_bytes: u64,
    pub shipped_objects: u64,
    /// Checkpoints in the archive.
    pub checkpoints: usize,
    /// The newest of them.
    pub newest_checkpoint: Option<String>,
    /// Every transaction committed at or before this time is whole in the
    /// archive (RFC 3339).
    pub consistent_through: Option<String>,
    pub logs: Vec<LogLag>,
    /// Its health checks and score (see [`super::health`]).
    pub health: super::health::ArchiveHealth,
}

/// How far one log is archived.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct LogLag {
    pub log: String,
    /// Last LSN in the archive.
    pub archived_lsn: u64,
    /// Last LSN in the local log.
    pub local_lsn: u64,
    /// Last LSN that may be shipped (durable; records after it wait for
    /// the next sync, their outcome already durable elsewhere).
    pub durable_lsn: u64,
    /// Durable records not yet archived.
    pub lag_records: u64,
}

/// One log's shipping state.
struct LogState {
    log: Log,
    /// The archive's name for it (`shard-000`, `coordinator`).
    name: String,
    /// Last LSN acknowledged by the archive.
    archived: u64,
    /// The reader, positioned after `archived`; dropped after a failure.
    tail: Option<Tail>,
}

/// A handle on one archive's shipping task.
pub struct Shipper {
    status: Arc<Mutex<ShipStatus>>,
    wake: Arc<tokio::sync::Notify>,
    /// Rounds completed, for callers waiting on "ship now".
    rounds: tokio::sync::watch::Receiver<u64>,
}

impl Shipper {
    /// Starts shipping `cluster` to `provider`.
    pub fn spawn(
        provider: Provider,
        cluster: Arc<Cluster>,
        checkpoints: PathBuf,
        compression: Compression,
        interval: Duration,
        health: &super::health::Settings,
    ) -> Shipper {
        let provider = Arc::new(provider);
        let status = Arc::new(Mutex::new(ShipStatus {
            name: provider.name.clone(),
            url: provider.url.clone(),
            ..ShipStatus::default()
        }));
        super::health::spawn(provider.clone(), status.clone(), health);
        let wake = Arc::new(tokio::sync::Notify::new());
        let (done, rounds) = tokio::sync::watch::channel(0u64);
        let logs = cluster
            .logs()
            .into_iter()
            .map(|log| {
                let name = log.name.trim_end_matches("/wal").to_string();
                LogState {
                    name,
                    log,
                    archived: 0,
                    tail: None,
                }
            })
            .collect();
        let mut task = Task {
            provider: provider.clone(),
            cluster,
            checkpoints,
            compression,
            logs,
            consistent_ts: 0,
            connected: false,
            archived_checkpoints: BTreeSet::new(),
            status: status.clone(),
        };
        let w = wake.clone();
        tokio::spawn(async move {
            let mut round = 0u64;
            loop {
                let result = task.round().await;
                task.report(result);
                round += 1;
                let _ = done.send(round);
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = w.notified() => {}
                }
            }
        });
        Shipper {
            status,
            wake,
            rounds,
        }
    }

    /// The archive's name.
    pub fn name(&self) -> String {
        self.status.lock().expect("ship status").name.clone()
    }

    /// The last LSN of `log` this archive acknowledged (0 before its
    /// first successful round).
    pub fn archived(&self, log: &str) -> u64 {
        let st = self.status.lock().expect("ship status");
        st.logs
            .iter()
            .find(|l| l.log == log)
            .map_or(0, |l| l.archived_lsn)
    }

    pub fn status(&self) -> ShipStatus {
        let mut s = self.status.lock().expect("ship status").clone();
        s.seconds_since_success = s.last_success.as_deref().and_then(|t| {
            let t = chrono::DateTime::parse_from_rfc3339(t).ok()?;
            Some((chrono::Utc::now() - t.to_utc()).num_milliseconds() as f64 / 1000.0)
        });
        s
    }

    /// Runs a round now and returns the status after it (or after
    /// `timeout`, whichever is first).
    pub async fn ship_now(&self, timeout: Duration) -> ShipStatus {
        let mut rounds = self.rounds.clone();
        let seen = *rounds.borrow_and_update();
        self.wake.notify_one();
        let _ = tokio::time::timeout(timeout, async {
            // The round in progress when asked may have read the logs
            // before the caller's writes: wait for the one after it.
            while *rounds.borrow_and_update() < seen + 2 {
                if rounds.changed().await.is_err() {
                    return;
                }
                self.wake.notify_one();
            }
        })
        .await;
        self.status()
    }
}

struct Task {
    provider: Arc<Provider>,
    cluster: Arc<Cluster>,
    checkpoints: PathBuf,
    compression: Compression,
    logs: Vec<LogState>,
    /// The time of the last cut archived whole (see the module docs).
    consistent_ts: u64,
    connected: bool,
    archived_checkpoints: BTreeSet<String>,
    status: Arc<Mutex<ShipStatus>>,
}

impl Task {
    /// Learns where the archive stands: its identity, each log's last
    /// object, the checkpoints it holds.
    async fn connect(&mut self) -> anyhow::Result<()> {
        let c = &self.cluster;
        self.provider
            .claim(&archive::Identity {
                format: 1,
                cluster: c.id().to_string(),
                shards: c.shard_count(),
                vnodes: c.ring().vnodes(),
                sealed: c.cipher().is_some(),
            })
            .await?;
        let positions: Option<Positions> = match self.provider.get(archive::POSITIONS).await? {
            Some(b) => archive::open(archive::POSITIONS, &b)
                .ok()
                .and_then(|raw| serde_json::from_slice(&raw).ok()),
            None => None,
        };
        for l in &mut self.logs {
            // The positions object was written after the puts it names
            // succeeded; objects put after it are found by listing past it.
            let hint = positions
                .as_ref()
                .and_then(|p| p.logs.get(&l.name))
                .copied()
                .unwrap_or(0);
            let prefix = format!("wal/{}", l.name);
            let after = (hint > 0).then(|| format!("{hint:020}"));
            let listed = self.provider.list(&prefix, after.as_deref()).await?;
            l.archived = listed
                .iter()
                .filter_map(|(n, _)| archive::parse_wal_object(n))
                .map(|(_, last)| last)
                .fold(hint, u64::max);
            if l.archived > l.log.last_lsn() {
                anyhow::bail!(
                    "archive {} holds {} through LSN {}, past this server's log (LSN {}): it was written by another copy of this data directory",
                    self.provider.name,
                    l.name,
                    l.archived,
                    l.log.last_lsn()
                );
            }
            l.tail = None;
        }
        // The last cut recorded stays whole.
        self.consistent_ts = self
            .consistent_ts
            .max(positions.as_ref().map_or(0, |p| p.consistent_ts));
        self.archived_checkpoints = self
            .provider
            .list("checkpoints", None)
            .await?
            .into_iter()
            .filter_map(|(n, _)| n.strip_suffix(&format!("/{MANIFEST}")).map(String::from))
            .collect();
        self.connected = true;
        Ok(())
    }

    async fn round(&mut self) -> anyhow::Result<()> {
        if !self.connected {
            self.connect().await?;
        }
        // The cut holds every shard's writer lock for a moment.
        let cluster = self.cluster.clone();
        let (cut, ts) = tokio::task::spawn_blocking(move || cluster.log_cut()).await?;
        // Checkpoints go after the logs, so a long upload does not hold
        // back the recovery point; first only when a log whose start was
        // recycled here must continue after one.
        let bridging = self.logs.iter().any(|l| {
            l.tail.is_none()
                && list_segments(l.log.dir())
                    .ok()
                    .and_then(|s| s.first().map(|(f, _)| *f))
                    .is_some_and(|first| l.archived + 1 < first)
        });
        if bridging {
            self.ship_checkpoints().await?;
        }
        for (i, end) in cut.into_iter().enumerate() {
            if let Err(e) = self.ship_log(i, end, ts.0).await {
                // Learn the archive's end again before the next attempt.
                self.connected = false;
                return Err(e);
            }
        }
        if !bridging {
            self.ship_checkpoints().await?;
        }
        let positions = Positions {
            logs: self
                .logs
                .iter()
                .map(|l| (l.name.clone(), l.archived))
                .collect(),
            consistent_ts: ts.0,
            at: super::now_rfc3339(),
        };
        let raw = serde_json::to_vec(&positions)?;
        self.provider
            .put(archive::POSITIONS, archive::seal(&raw, Compression::None))
            .await?;
        self.consistent_ts = ts.0;
        Ok(())
    }

    /// Ships log `i` through `end`, once it is durable that far.
    async fn ship_log(&mut self, i: usize, end: u64, cut_ts: u64) -> anyhow::Result<()> {
        let compression = self.compression;
        let l = &mut self.logs[i];
        let log = l.log.clone();
        tokio::task::spawn_blocking(move || log.wait_durable(end))
            .await?
            .with_context(|| format!("syncing log {}", l.name))?;
        if l.tail.is_none() {
            let first = list_segments(l.log.dir())?.first().map_or(1, |(f, _)| *f);
            if l.archived + 1 < first {
                let (name, shard, archived) = (l.name.clone(), l.log.shard(), l.archived);
                let bridged = self.bridge(&name, shard, archived, first, (end, cut_ts))?;
                self.logs[i].archived = bridged;
            }
        }
        let l = &mut self.logs[i];
        let mut tail = match l.tail.take() {
            Some(t) => t,
            None => Tail::new(l.log.dir(), l.archived),
        };
        loop {
            let (back, read) = tokio::task::spawn_blocking(move || {
                let read = tail.read(end, OBJECT_BYTES).map(|chunk| {
                    chunk.map(|c| {
                        let body = archive::seal(&c.bytes, compression);
                        (c.first, c.last, body)
                    })
                });
                (tail, read)
            })
            .await?;
            tail = back;
            let read = read.with_context(|| format!("reading log {}", l.name))?;
            let Some((first, last, body)) = read else {
                break;
            };
            let size = body.len() as u64;
            let name = archive::wal_object(&l.name, first, last);
            self.provider.put_once(&name, body).await?;
            l.archived = last;
            let mut st = self.status.lock().expect("ship status");
            st.shipped_bytes += size;
            st.shipped_objects += 1;
            metrics::counter!("fortress_dr_shipped_bytes_total", "provider" => self.provider.name.clone())
                .increment(size);
        }
        l.tail = Some(tail);
        Ok(())
    }

    /// Where a log whose records after `archived` were recycled here (the
    /// local log starts at `first`) goes on in the archive: after the
    /// oldest archived checkpoint that covers the gap and lies within this
    /// round's cut (`end` of this log, at time `cut_ts`), so that restores
    /// from it need nothing the archive lacks.
    fn bridge(
        &self,
        log: &str,
        shard: Option<u32>,
        archived: u64,
        first: u64,
        (end, cut_ts): (u64, u64),
    ) -> anyhow::Result<u64> {
        let shard = shard.with_context(|| {
            format!("log {log} starts at LSN {first} here but the archive ends at {archived}")
        })?;
        let covering = self.archived_checkpoints.iter().find_map(|id| {
            let m = Manifest::read(
                &self.checkpoints.join(id),
                self.cluster.cipher().map(|k| &**k),
            )
            .ok()?;
            let after = m.shards.iter().find(|c| c.shard == shard)?.wal_after;
            (after + 1 >= first && after <= end && m.snapshot <= cut_ts)
                .then_some((id.clone(), after))
        });
        let (id, after) = covering.with_context(|| {
            format!(
                "archive {}: {log} holds records to LSN {archived}, and this server's WAL now starts at LSN {first} (recycled) with no archived checkpoint after it; take a checkpoint",
                self.provider.name
            )
        })?;
        tracing::warn!(
            archive = %self.provider.name,
            log,
            from = archived + 1,
            to = after,
            checkpoint = %id,
            "the archive lacks WAL recycled here; it continues after the checkpoint that covers it"
        );
        Ok(after)
    }

    /// Uploads the checkpoints the archive lacks, oldest first, each
    /// manifest after its files.
    async fn ship_checkpoints(&mut self) -> anyhow::Result<()> {
        let Ok(entries) = std::fs::read_dir(&self.checkpoints) else {
            return Ok(());
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".tmp") && !self.archived_checkpoints.contains(n))
            .collect();
        ids.sort();
        for id in ids {
            let dir = self.checkpoints.join(&id);
            let cipher = self.cluster.cipher().cloned();
            let d = dir.clone();
            let manifest =
                tokio::task::spawn_blocking(move || Manifest::read(&d, cipher.as_deref())).await?;
            let manifest = match manifest {
                Ok(m) if m.cluster == self.cluster.id() => m,
                // Another directory's, or not a checkpoint (or one being
                // pruned): not ours to archive.
                _ => continue,
            };
            for t in manifest.shards.iter().flat_map(|s| s.files()) {
                let n = self
                    .provider
                    .upload(&format!("checkpoints/{id}/{}", t.file), &dir.join(&t.file))
                    .await?;
                self.status.lock().expect("ship status").shipped_bytes += n;
            }
            self.provider
                .upload(&format!("checkpoints/{id}/{MANIFEST}"), &dir.join(MANIFEST))
                .await?;
            tracing::info!(archive = %self.provider.name, checkpoint = %id, "checkpoint archived");
            self.archived_checkpoints.insert(id);
        }
        Ok(())
    }

    fn report(&mut self, result: anyhow::Result<()>) {
        let name = self.provider.name.clone();
        let mut st = self.status.lock().expect("ship status");
        match result {
            Ok(()) => {
                if !st.healthy {
                    tracing::info!(archive = %name, "archive reachable; shipping");
                }
                st.healthy = true;
                st.last_error = None;
                st.last_success = Some(super::now_rfc3339());
            }
            Err(e) => {
                let msg = format!("{e:#}");
                if st.last_error.as_deref() != Some(&msg) {
                    tracing::warn!(archive = %name, error = %msg, "shipping to the archive failed; the WAL is kept until it succeeds");
                }
                st.healthy = false;
                st.last_error = Some(msg);
            }
        }
        st.checkpoints = self.archived_checkpoints.len();
        st.newest_checkpoint = self.archived_checkpoints.last().cloned();
        let ts = self.consistent_ts;
        st.consistent_through = (ts > 0).then(|| {
            let t = fortress_storage::Timestamp(ts);
            chrono::DateTime::from_timestamp_micros(t.wall_micros() as i64)
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default()
        });
        st.logs = self
            .logs
            .iter()
            .map(|l| {
                let durable = l.log.shippable_lsn();
                LogLag {
                    log: l.name.clone(),
                    archived_lsn: l.archived,
                    local_lsn: l.log.last_lsn(),
                    durable_lsn: durable,
                    lag_records: durable.saturating_sub(l.archived),
                }
            })
            .collect();
        metrics::gauge!("fortress_dr_provider_up", "provider" => name.clone()).set(if st.healthy {
            1.0
        } else {
            0.0
        });
        for l in &st.logs {
            metrics::gauge!("fortress_dr_lag_records", "provider" => name.clone(), "log" => l.log.clone())
                .set(l.lag_records as f64);
        }
    }
}
