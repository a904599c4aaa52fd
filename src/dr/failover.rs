//! Failover: the write lease ([`super::lease`]) held, renewed and taken
//! over, and each failover's record.
//!
//! A primary claims the lease at start and renews it every fifth of its
//! time to live; without it (not yet taken, not renewed in time, taken by
//! another) its writes get 25006. A standby reads the lease as often;
//! when its primary is lost (nothing heard for `--primary-timeout`) and
//! the lease has expired, or when the lease was handed to it, it takes
//! the lease and promotes itself in place.
//!
//! **Records.** Each failover is `failovers/<epoch>.json` in the lease's
//! archive ([`Failover`]): who took over from whom, when the primary was
//! declared lost, when the standby was promoted, and when it accepted its
//! first write (the RTO). A replaced primary, when it comes back, counts
//! the transactions its logs hold beyond the positions its successor took
//! over at, writes them to `failover-<epoch>-lost.json` in its data
//! directory and `failovers/<epoch>.lost.json` in the archive ([`Lost`]:
//! the RPO), and takes no writes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use fortress_proxy::Cluster;
use fortress_storage::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::lease::{Held, Lease, Record};
use super::replication::primary::Standbys;
use super::replication::standby::Follower;
use super::rfc3339;

/// How a planned handover waits for its standby to catch up.
const HANDOVER_CATCH_UP: Duration = Duration::from_secs(30);
/// The lease period's multiple at which the archive's failover records
/// are read again.
const HISTORY_EVERY: u32 = 10;

/// One failover, as recorded in the archive.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Failover {
    /// The lease epoch the new primary took.
    pub epoch: u64,
    /// The node replaced (the lease's holder before).
    pub from: Option<String>,
    /// The node that took over.
    pub to: String,
    /// `automatic` (the primary was lost), `manual` (by the admin API on
    /// the standby) or `handover` (planned, by the primary).
    pub kind: String,
    /// When the old primary was last heard from (RFC 3339).
    pub last_heard: Option<String>,
    /// When the old primary was declared lost, or the failover asked for.
    pub detected: String,
    /// When the new primary was promoted.
    pub promoted: String,
    /// When it accepted its first write.
    pub first_write: Option<String>,
    /// From detection to the first accepted write, in seconds.
    pub rto_seconds: Option<f64>,
    /// From the old primary's last word to the first accepted write.
    pub outage_seconds: Option<f64>,
    /// Each log's end where the new primary took over.
    pub takeover: Vec<u64>,
    /// The new primary's read point then (microseconds since the epoch):
    /// every transaction committed at or before it is in its data.
    pub takeover_micros: u64,
    /// What the replaced primary had beyond the takeover, once it
    /// reported it.
    pub lost: Option<Lost>,
}

/// What a replaced primary had that its successor lacks.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Lost {
    /// The epoch of the failover that replaced it.
    pub epoch: u64,
    /// The replaced node.
    pub node: String,
    /// Transactions committed in its logs beyond the takeover positions
    /// (`null` if the positions were not found).
    pub transactions: Option<u64>,
    /// Commit time of the first and the last of them (RFC 3339).
    pub first_commit: Option<String>,
    pub last_commit: Option<String>,
    /// The RPO: from the successor's read point at takeover to the last
    /// lost commit, in seconds (0 when nothing was lost).
    pub rpo_seconds: Option<f64>,
    /// The lost transactions' ids (in the data directory's file only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(ignore)]
    pub txids: Vec<u64>,
    pub reported: String,
}

/// How a node acts on failures (`--failover`, `--failover-score`,
/// `--rejoin`).
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// A standby takes over by itself when its primary is lost.
    pub auto: bool,
    /// The primary's health score below which it counts as lost.
    pub min_score: f64,
    /// A replaced primary rejoins as a standby by itself.
    pub rejoin: bool,
}

/// The failover side of a node.
pub struct Manager {
    cluster: Arc<Cluster>,
    /// The data directory, where a replaced node saves its report.
    dir: std::path::PathBuf,
    lease: Arc<Lease>,
    follower: Option<Arc<Follower>>,
    standbys: Option<Arc<Standbys>>,
    auto: bool,
    /// The primary's health score below which it counts as lost.
    min_score: f64,

    /// Failovers by epoch: read from the archive, and done here.
    history: Mutex<BTreeMap<u64, Failover>>,
    /// One takeover, handover or promotion at a time.
    acting: tokio::sync::Mutex<()>,
    /// Set once this node reported itself replaced.
    replaced: Mutex<Option<Lost>>,
    /// Whether a replaced node rejoins as a standby by itself.
    rejoin: bool,
    /// Whether it said why it does not rejoin.
    said_why_not: std::sync::atomic::AtomicBool,
    /// Set once what a replaced node had beyond the takeover is counted
    /// and saved: only then does it set its copy aside.
    report_saved: std::sync::atomic::AtomicBool,
    /// Set once a rejoin failed (the exec): it is not tried again.
    rejoin_failed: std::sync::atomic::AtomicBool,
    /// The other standbys' reports, to let the one that holds the most of
    /// the log take over.
    candidates: super::candidates::Candidates,
}

/// The failover state as status reports it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct FailoverStatus {
    pub lease: super::lease::LeaseStatus,
    /// Whether a standby takes over by itself when its primary is lost.
    pub automatic: bool,
    /// Every failover recorded in the archive, oldest first.
    pub failovers: Vec<Failover>,
    /// If this node was replaced: what it had that its successor lacks.
    pub replaced: Option<Lost>,
    /// On a standby, its check of its primary.
    pub primary: Option<super::replication::standby::PrimaryHealth>,
}

/// Why a failover asked for did not happen.
#[derive(Debug)]
pub enum Refusal {
    /// Not now or not here (HTTP 409).
    Conflict(String),
    /// It failed (HTTP 500).
    Failed(anyhow::Error),
}

fn micros_rfc3339(micros: u64) -> String {
    chrono::DateTime::from_timestamp_micros(micros as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The wall-clock time of monotonic instant `at`.
fn wall(at: Instant) -> SystemTime {
    let now = Instant::now();
    match now.checked_duration_since(at) {
        Some(ago) => SystemTime::now() - ago,
        None => SystemTime::now() + at.duration_since(now),
    }
}

fn record_name(epoch: u64) -> String {
    format!("failovers/{epoch:010}.json")
}

fn lost_name(epoch: u64) -> String {
    format!("failovers/{epoch:010}.lost.json")
}

impl Manager {
    /// Fences the cluster's writes by the lease and starts holding it
    /// (a primary) or watching it (a standby).
    pub async fn start(
        cluster: Arc<Cluster>,
        dir: std::path::PathBuf,
        lease: Lease,
        follower: Option<Arc<Follower>>,
        standbys: Option<Arc<Standbys>>,
        policy: Policy,
    ) -> Arc<Manager> {
        let lease = Arc::new(lease);
        let fence = lease.clone();
        cluster.set_write_fence(Arc::new(move |ack| match ack {
            false => fence.fence(),
            true => fence.fence_ack(),
        }));
        tracing::info!(
            archive = %lease.archive().name,
            node = lease.me(),
            ttl = ?lease.ttl(),
            automatic = policy.auto,
            "writes are fenced by the lease"
        );
        let m = Arc::new(Manager {
            cluster,
            dir,
            lease,
            follower,
            standbys,
            auto: policy.auto,
            min_score: policy.min_score,
            rejoin: policy.rejoin,
            history: Default::default(),
            acting: Default::default(),
            replaced: Default::default(),
            said_why_not: Default::default(),
            report_saved: Default::default(),
            rejoin_failed: Default::default(),
            candidates: Default::default(),
        });
        // The first period before serving: a primary that holds the lease
        // takes writes from its first connection.
        if let Err(e) = m.tick().await {
            tracing::warn!(error = %format!("{e:#}"), "the write lease");
        }
        tokio::spawn(m.clone().run());
        tokio::spawn(renew(m.lease.clone()));
        m
    }

    /// The write lease epoch this node last held (0: never): the
    /// timeline it ships into (see [`super::archive::TIMELINES`]).
    pub fn epoch(&self) -> u64 {
        self.lease.my_epoch()
    }

    pub fn status(&self) -> FailoverStatus {
        FailoverStatus {
            lease: self.lease.status(),
            automatic: self.auto,
            failovers: self
                .history
                .lock()
                .expect("history")
                .values()
                .cloned()
                .collect(),
            replaced: self.replaced.lock().expect("replaced").clone(),
            primary: self
                .follower
                .as_ref()
                .filter(|_| self.cluster.is_standby())
                .map(|f| f.health()),
        }
    }

    async fn run(self: Arc<Self>) {
        let mut round = 0u32;
        let mut complained = None::<String>;
        loop {
            tokio::time::sleep(self.lease.period()).await;
            let r = self.tick().await;
            // Each distinct trouble is logged once, not every period.
            match r {
                Ok(()) => complained = None,
                Err(e) => {
                    let e = format!("{e:#}");
                    if complained.as_ref() != Some(&e) {
                        tracing::warn!(error = %e, "the write lease");
                        complained = Some(e);
                    }
                }
            }
            if round.is_multiple_of(HISTORY_EVERY) {
                if let Err(e) = self.read_history().await {
                    tracing::debug!(error = %format!("{e:#}"), "reading the failover records");
                }
            }
            round = round.wrapping_add(1);
        }
    }

    /// One period (renewals run on their own, see [`renew`]): a standby
    /// watches for its chance; a primary without the lease tries to claim
    /// it.
    async fn tick(self: &Arc<Self>) -> anyhow::Result<()> {
        if self.cluster.is_standby() {
            return self.watch().await;
        }
        if self.lease.holding() {
            return Ok(());
        }
        if self.replaced.lock().expect("replaced").is_some() {
            // Replaced: it only keeps the lease in view, until it rejoins.
            self.lease.observe().await?;
            self.rejoin().await;
            return Ok(());
        }
        match self.lease.claim().await? {
            Held::Mine => {
                tracing::info!(epoch = self.lease.my_epoch(), "holding the write lease");
                if let Some(s) = &self.standbys {
                    s.set_lease(
                        self.lease.my_epoch(),
                        self.lease.seen().and_then(|r| r.takeover),
                    );
                }
            }
            Held::Other { holder, epoch } => {
                anyhow::bail!(
                    "node {holder} holds the write lease (epoch {epoch}); this node takes no writes until it is handed over (fortress dr failover)"
                );
            }
            Held::Replaced { mine, record } => {
                let why = format!(
                    "node {} took over at epoch {} while this node was away; it takes no writes (see its lost-transactions report)",
                    record.holder, record.epoch
                );
                self.lease.lose(&why);
                if let Some(s) = &self.standbys {
                    s.retire(&why);
                }
                let lost = self.report_lost(mine, &record).await;
                *self.replaced.lock().expect("replaced") = Some(lost);
                self.rejoin().await;
            }
        }
        Ok(())
    }

    /// A replaced node (its report saved) with `--rejoin auto` becomes a
    /// standby of the lease's holder once that one has taken the lease and
    /// says where it streams from (see [`super::rejoin`]).
    async fn rejoin(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.rejoin || self.rejoin_failed.load(Relaxed) {
            return;
        }
        if !self.report_saved.load(Relaxed) {
            if !self.said_why_not.swap(true, Relaxed) {
                tracing::error!("what this node had beyond the takeover could not be counted and saved: it stays fenced, with its copy, for a look; rejoin it by hand with fortress standby --rebuild");
            }
            return;
        }
        let Some(r) = self.lease.seen() else {
            return;
        };
        if self.lease.mine(&r) || r.holder_id.is_none() {
            return;
        }
        let Some(addr) = r.replication.clone() else {
            if !self.said_why_not.swap(true, Relaxed) {
                tracing::warn!(holder = %r.holder, "the new primary advertises no replication address (--replication-listen): rejoin it by hand with fortress standby --rebuild");
            }
            return;
        };
        let (c, name) = (self.cluster.clone(), self.lease.me().to_string());
        let failed =
            tokio::task::spawn_blocking(move || super::rejoin::exec_as_standby(&c, &addr, &name))
                .await;
        self.rejoin_failed.store(true, Relaxed);
        let why = match failed {
            Ok(e) => format!("{e:#}"),
            Err(e) => e.to_string(),
        };
        tracing::error!(error = %why, "could not rejoin as a standby (not tried again): rejoin it by hand with fortress standby --rebuild");
    }

    /// A standby's period: takes over when the lease was handed to it,
    /// or when its primary is lost and the lease expired.
    async fn watch(self: &Arc<Self>) -> anyhow::Result<()> {
        let found = self.lease.observe().await?;
        // Handed to it, or taken by it with the promotion still to do.
        let handed = found
            .as_ref()
            .is_some_and(|r| self.lease.handed(r) || self.lease.mine(r));
        // Lost: silent for --primary-timeout, or its health score below
        // --failover-score (a primary heard only now and then).
        let lost = self.follower.as_ref().and_then(|f| {
            f.primary_lost()
                .or_else(|| (f.health().score < self.min_score).then(Instant::now))
        });
        if let Some(f) = &self.follower {
            // Each period: how far this standby holds the primary's log,
            // and how far the others do.
            let me = super::candidates::Report {
                name: self.lease.me().to_string(),
                epoch: f.upstream_epoch(),
                ends: self.cluster.log_ends(),
                auto: self.auto,
                seq: 0,
            };
            let archive = self.lease.archive();
            if let Err(e) = self.candidates.publish(archive, me).await {
                tracing::debug!(error = %format!("{e:#}"), "reporting this standby's position");
            }
            if let Err(e) = self.candidates.refresh(archive, self.lease.me()).await {
                tracing::debug!(error = %format!("{e:#}"), "reading the other standbys' positions");
            }
        }
        if handed {
            self.take_over("handover", Instant::now()).await?;
        } else if let (true, Some(detected)) = (self.auto, lost) {
            if self.lease.expired() && !self.defers() {
                self.take_over("automatic", detected).await?;
            }
        }
        if lost.is_none() || !self.lease.expired() {
            self.candidates.reset();
        }
        self.follow_new_primary(found.as_ref(), lost.is_some());
        Ok(())
    }

    /// Whether this standby leaves the takeover to another one of the same
    /// primary that holds more of its log (see [`super::candidates`]).
    fn defers(&self) -> bool {
        let Some(f) = &self.follower else {
            return false;
        };
        let alive = self.lease.ttl() * 3;
        let mine = self.cluster.log_ends();
        match self.candidates.better(f.upstream_epoch(), &mine, alive) {
            Some(better) => self.candidates.defer(&better, alive),
            None => false,
        }
    }

    /// Another node took over from the primary this standby followed:
    /// follow it instead (it serves standbys if it was given
    /// --replication-listen). A copy that went further than the new
    /// primary is refused by it and says so; `--rebuild` starts it over.
    fn follow_new_primary(&self, found: Option<&Record>, lost: bool) {
        let (Some(f), Some(r)) = (&self.follower, found) else {
            return;
        };
        if !lost || !self.cluster.is_standby() || self.lease.mine(r) || self.lease.handed(r) {
            return;
        }
        // Only past the epoch of the primary it streamed from (as that
        // primary said): not at start, and not back to the same primary
        // by another address.
        let followed = f.upstream_epoch();
        if followed > 0 && r.epoch > followed {
            if let Some(addr) = &r.replication {
                tracing::warn!(holder = %r.holder, epoch = r.epoch, "the primary was replaced");
                f.retarget(addr);
            }
        }
    }

    /// Takes the lease and promotes this standby. `Ok(false)` if the
    /// lease was not free to take.
    async fn take_over(self: &Arc<Self>, kind: &str, detected: Instant) -> anyhow::Result<bool> {
        let _acting = self.acting.lock().await;
        if !self.cluster.is_standby() {
            return Ok(false);
        }
        let Some(follower) = self.follower.clone() else {
            return Ok(false);
        };
        let takeover = self.cluster.log_ends();
        let read = self.cluster.snapshot();
        let Some(epoch) = self.lease.take_over(takeover.clone()).await? else {
            return Ok(false);
        };
        let previous = self.lease.seen().and_then(|r| r.previous);
        tracing::warn!(epoch, from = ?previous, kind, "took the write lease; promoting");
        if let Some(s) = &self.standbys {
            s.set_lease(epoch, Some(takeover.clone()));
        }
        // Renewals go on meanwhile (their own task).
        follower
            .promote()
            .await
            .context("promoting after taking the write lease")?;
        let before = shard_ends(&self.cluster);
        let last_heard = follower
            .primary_lost()
            .map(|lost| wall(lost - follower.upstream().timeout));
        let record = Failover {
            epoch,
            from: previous,
            to: self.lease.me().to_string(),
            kind: kind.to_string(),
            last_heard: last_heard.map(rfc3339),
            detected: rfc3339(wall(detected)),
            promoted: super::now_rfc3339(),
            first_write: None,
            rto_seconds: None,
            outage_seconds: None,
            takeover,
            takeover_micros: read.wall_micros(),
            lost: None,
        };
        let me = self.clone();
        tokio::spawn(async move {
            me.save(record.clone()).await;
            me.time_first_write(record, before, detected, last_heard)
                .await
        });
        Ok(true)
    }

    /// Records the failover here and in the archive.
    async fn save(&self, record: Failover) {
        let epoch = record.epoch;
        let body = serde_json::to_vec_pretty(&record).expect("a failover serializes");
        self.history.lock().expect("history").insert(epoch, record);
        if let Err(e) = self.lease.archive().put(&record_name(epoch), body).await {
            tracing::warn!(error = %format!("{e:#}"), epoch, "recording the failover in the archive");
        }
    }

    /// Waits for the first write after a promotion and records the RTO.
    async fn time_first_write(
        &self,
        mut record: Failover,
        before: Vec<u64>,
        detected: Instant,
        last_heard: Option<SystemTime>,
    ) {
        // Finely at first (the RTO is in seconds), then coarsely; given up
        // after a day without writes.
        let started = Instant::now();
        while shard_ends(&self.cluster) == before {
            let waited = started.elapsed();
            if waited > Duration::from_secs(24 * 3600) {
                return;
            }
            let step = if waited < Duration::from_secs(60) {
                2
            } else {
                100
            };
            tokio::time::sleep(Duration::from_millis(step)).await;
        }
        let now = SystemTime::now();
        record.first_write = Some(rfc3339(now));
        record.rto_seconds = Some(detected.elapsed().as_secs_f64());
        record.outage_seconds =
            last_heard.and_then(|h| now.duration_since(h).ok().map(|d| d.as_secs_f64()));
        tracing::warn!(
            epoch = record.epoch,
            rto_seconds = record.rto_seconds,
            outage_seconds = record.outage_seconds,
            "first write accepted after the failover"
        );
        self.save(record).await;
    }

    /// Counts what this node's logs hold beyond the positions its
    /// successor took over at; saves and reports it.
    async fn report_lost(&self, mine: u64, lease: &Record) -> Lost {
        let epoch = mine + 1;
        let archived: Option<Failover> = match self.lease.archive().get(&record_name(epoch)).await {
            Ok(Some(b)) => serde_json::from_slice(&b).ok(),
            _ => None,
        };
        let takeover = archived
            .as_ref()
            .map(|f| (f.takeover.clone(), f.takeover_micros))
            .or_else(|| {
                (lease.epoch == epoch)
                    .then(|| lease.takeover.clone().map(|t| (t, 0)))
                    .flatten()
            });
        let mut lost = Lost {
            epoch,
            node: self.lease.me().to_string(),
            transactions: None,
            first_commit: None,
            last_commit: None,
            rpo_seconds: None,
            txids: Vec::new(),
            reported: super::now_rfc3339(),
        };
        match takeover {
            None => tracing::error!(
                epoch,
                "replaced, and the successor's takeover positions are not in the archive: what this node had beyond them is unknown"
            ),
            Some((ends, read_micros)) => {
                let c = self.cluster.clone();
                match tokio::task::spawn_blocking(move || c.commits_after(&ends)).await {
                    Ok(Ok(commits)) => {
                        let wall = |ts: u64| Timestamp(ts).wall_micros();
                        lost.transactions = Some(commits.len() as u64);
                        lost.first_commit = commits.first().map(|c| micros_rfc3339(wall(c.1)));
                        lost.last_commit = commits.last().map(|c| micros_rfc3339(wall(c.1)));
                        lost.rpo_seconds = Some(match commits.last() {
                            Some(&(_, ts)) if read_micros > 0 => {
                                wall(ts).saturating_sub(read_micros) as f64 / 1e6
                            }
                            Some(_) => f64::NAN,
                            None => 0.0,
                        })
                        .filter(|s| s.is_finite());
                        lost.txids = commits.iter().map(|c| c.0).collect();
                    }
                    Ok(Err(e)) => tracing::error!(error = %e, "counting the transactions beyond the takeover"),
                    Err(e) => tracing::error!(error = %e, "counting the transactions beyond the takeover"),
                }
            }
        }
        tracing::error!(
            successor = %lease.holder,
            epoch,
            lost_transactions = lost.transactions,
            first = lost.first_commit.as_deref(),
            last = lost.last_commit.as_deref(),
            rpo_seconds = lost.rpo_seconds,
            "this node was replaced while away: it takes no writes, and these transactions are not on the new primary"
        );
        let file = self.dir.join(format!("failover-{epoch:010}-lost.json"));
        let body = serde_json::to_vec_pretty(&lost).expect("a report serializes");
        match std::fs::write(&file, &body) {
            Ok(()) if lost.transactions.is_some() => self
                .report_saved
                .store(true, std::sync::atomic::Ordering::Relaxed),
            Ok(()) => {}
            Err(e) => {
                tracing::error!(file = %file.display(), error = %e, "saving the lost-transactions report")
            }
        }
        let mut shared = lost.clone();
        shared.txids.clear();
        let body = serde_json::to_vec_pretty(&shared).expect("a report serializes");
        if let Err(e) = self.lease.archive().put(&lost_name(epoch), body).await {
            tracing::warn!(error = %format!("{e:#}"), "sending the lost-transactions report to the archive");
        }
        lost
    }

    /// Reads every failover record (and report) from the archive.
    async fn read_history(&self) -> anyhow::Result<()> {
        let archive = self.lease.archive();
        let mut found: BTreeMap<u64, Failover> = BTreeMap::new();
        let mut reports: Vec<Lost> = Vec::new();
        for (name, _) in archive.list("failovers", None).await? {
            let Some(body) = archive.get(&format!("failovers/{name}")).await? else {
                continue;
            };
            if name.ends_with(".lost.json") {
                reports.extend(serde_json::from_slice::<Lost>(&body).ok());
            } else if let Ok(f) = serde_json::from_slice::<Failover>(&body) {
                found.insert(f.epoch, f);
            }
        }
        for r in reports {
            if let Some(f) = found.get_mut(&r.epoch) {
                f.lost = Some(r);
            }
        }
        let mut history = self.history.lock().expect("history");
        for (epoch, f) in found {
            // What this node recorded itself may be newer than the archive.
            let keep = history
                .get(&epoch)
                .is_some_and(|h| h.first_write.is_some() && f.first_write.is_none());
            if !keep {
                let lost = f
                    .lost
                    .clone()
                    .or_else(|| history.get(&epoch).and_then(|h| h.lost.clone()));
                history.insert(epoch, Failover { lost, ..f });
            }
        }
        Ok(())
    }

    /// A failover asked for through the admin API. On the primary holding
    /// the lease: a planned handover to standby `to`, which must have
    /// caught up first (writes stop meanwhile). On a standby: it takes
    /// the lease if it is free (the primary gone) and promotes itself.
    pub async fn failover(self: &Arc<Self>, to: Option<&str>) -> Result<(), Refusal> {
        if self.cluster.is_standby() {
            if to.is_some_and(|t| t != self.lease.me()) {
                return Err(Refusal::Conflict(format!(
                    "this node is standby {}: ask standby {} itself, or the primary",
                    self.lease.me(),
                    to.unwrap_or_default()
                )));
            }
            return match self.take_over("manual", Instant::now()).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(Refusal::Conflict(format!(
                    "the write lease is held and renewed{}: a standby takes over only once it expires; ask the primary for a planned handover",
                    self.lease
                        .seen()
                        .map(|r| format!(" by {}", r.holder))
                        .unwrap_or_default()
                ))),
                Err(e) => Err(Refusal::Failed(e)),
            };
        }
        let Some(to) = to else {
            return Err(Refusal::Conflict(
                "this node is the primary: name the standby to hand over to".into(),
            ));
        };
        let Some(standbys) = self.standbys.clone() else {
            return Err(Refusal::Conflict(
                "this node has no --replication-listen, so no standby follows it".into(),
            ));
        };
        let _acting = self.acting.lock().await;
        if let Some(why) = self.lease.fence() {
            return Err(Refusal::Conflict(format!(
                "this node does not hold the write lease: {why}"
            )));
        }
        // Writes stop (those running end), then the standby catches up to
        // where they stopped.
        self.lease
            .pause(&format!("handing the write lease over to {to}"));
        let deadline = Instant::now() + HANDOVER_CATCH_UP;
        while self.cluster.writes_running() > 0 {
            if Instant::now() > deadline {
                self.lease.resume();
                return Err(Refusal::Conflict(format!(
                    "writes still running after {HANDOVER_CATCH_UP:?}: try again"
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let ends = self.cluster.log_ends();
        if let Err(why) = standbys.wait_caught_up(to, &ends, HANDOVER_CATCH_UP).await {
            self.lease.resume();
            return Err(Refusal::Conflict(why));
        }
        // Named by its data directory too: only the standby that caught up
        // may take it.
        let to_id = standbys.id_of(to);
        let handed = self.lease.hand_over(to, to_id.as_deref()).await;
        match handed {
            Ok(true) => {
                tracing::warn!(
                    to,
                    "handed the write lease over; this node takes no more writes"
                );
                standbys.retire(&format!("it handed the write lease over to {to}"));
                self.report_saved
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                // Nothing is lost: writes stopped where the standby caught up.
                *self.replaced.lock().expect("replaced") = Some(Lost {
                    epoch: self.lease.my_epoch() + 1,
                    node: self.lease.me().to_string(),
                    transactions: Some(0),
                    first_commit: None,
                    last_commit: None,
                    rpo_seconds: Some(0.0),
                    txids: Vec::new(),
                    reported: super::now_rfc3339(),
                });
                Ok(())
            }
            // The write may have landed (an answer lost, a retry refused):
            // writes resume only if the lease is still this node's.
            Ok(false) | Err(_) => {
                let still_mine = self.lease.settle().await;
                if still_mine {
                    self.lease.resume();
                }
                Err(match handed {
                    Err(e) => Refusal::Failed(e),
                    _ if still_mine => {
                        Refusal::Conflict("the write lease changed meanwhile".into())
                    }
                    _ => Refusal::Conflict(
                        "the handover's outcome is unknown; this node takes no more writes".into(),
                    ),
                })
            }
        }
    }
}

/// Each log's end but the coordinator's (whose upkeep writes too).
fn shard_ends(c: &Cluster) -> Vec<u64> {
    let mut ends = c.log_ends();
    ends.pop();
    ends
}

/// Renews the lease every period while this node holds it, on its own
/// task: nothing slower (status reads, records) delays a renewal.
async fn renew(lease: Arc<Lease>) {
    let mut complained = None::<String>;
    loop {
        tokio::time::sleep(lease.period()).await;
        if !lease.holding() {
            continue;
        }
        match lease.renew().await {
            Ok(_) => complained = None,
            Err(e) => {
                let e = format!("{e:#}");
                if complained.as_ref() != Some(&e) {
                    tracing::warn!(error = %e, "renewing the write lease");
                    complained = Some(e);
                }
            }
        }
    }
}
