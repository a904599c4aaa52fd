//! The standby's side: `fortress standby` is `fortress serve` on a copy
//! opened in standby mode, with a follower that streams the primary's
//! logs into it ([`fortress_proxy::Cluster::follow_log`]) and reconnects after
//! any failure.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use fortress_proxy::cluster::Identity;
use fortress_proxy::standby::ReplicationRow;
use fortress_proxy::Cluster;
use fortress_storage::Timestamp;
use tokio::net::TcpStream;

use super::*;

/// Where to follow from, and as whom.
#[derive(Clone, Debug)]
pub struct Upstream {
    pub primary: String,
    pub name: String,
    /// This node's data directory id: the primary refuses a second
    /// standby streaming under a name in use.
    pub id: String,
    /// Silence after which the primary is declared lost.
    pub timeout: Duration,
    /// The lease epoch of the primary last followed, for the HELLO.
    pub epoch: u64,
    /// Whether an existing copy is set aside and the standby starts over.
    pub rebuild: bool,
    /// The copy's data directory (where the epoch of the primary it
    /// follows is kept).
    pub dir: std::path::PathBuf,
    /// URLs of the archives the primary ships to: a new copy is made from
    /// one, and records the primary recycled are taken from one.
    pub archives: Vec<String>,
}

/// The follower's view of its primary.
pub struct Follower {
    upstream: Upstream,
    cluster: Arc<Cluster>,
    state: Mutex<FollowState>,
    /// The tasks following and checking the primary, until promotion
    /// stops them.
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// Run once promoted: what a primary does that a standby does not.
    after_promote: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
    /// The primary's address now: `upstream.primary` until a failover
    /// points this standby at the new primary (see [`Follower::retarget`]).
    primary: Mutex<String>,
    /// Cuts the stream now, for a retarget.
    cut: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// The lease epoch of the primary last followed (0: none known), kept
    /// in `standby.epoch` in the copy.
    upstream_epoch: std::sync::atomic::AtomicU64,
}

/// Where a standby keeps the lease epoch of the primary it follows.
const EPOCH_FILE: &str = "standby.epoch";

/// Records in the copy `dir` that it follows the primary of lease `epoch`.
fn save_epoch(dir: &Path, epoch: u64) -> std::io::Result<()> {
    crate::dr::replace_file(&dir.join(EPOCH_FILE), epoch.to_string().as_bytes())
}

struct FollowState {
    /// `None` while streaming; what went wrong otherwise.
    trouble: Option<String>,
    /// Bytes of the round being received, not yet applied.
    receiving: u64,
    /// What the primary said this standby is to it: `async` or `sync`.
    mode: String,
    /// When the primary was last heard from (or following started).
    last_heard: std::time::Instant,
    /// The primary's health check (see [`PrimaryHealth`]).
    health: PrimaryHealth,
}

/// A standby's critical check of its primary, every second: was it heard
/// from (a heartbeat comes every 20 ms when idle) within that second. Its
/// score is the archives' EMA (alpha 0.3), starting at 1.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PrimaryHealth {
    pub score: f64,
    pub consecutive_failures: u32,
    pub seconds_since_heard: f64,
}

/// How often a standby checks its primary.
const CHECK_EVERY: Duration = Duration::from_secs(1);

impl Follower {
    /// Stops following and makes this node a primary in place (see
    /// [`Cluster::promote`]).
    pub async fn promote(&self) -> anyhow::Result<()> {
        // Following stops at once (the next round is refused: the cluster
        // is no longer a standby); if promotion fails, it goes on.
        let c = self.cluster.clone();
        tokio::task::spawn_blocking(move || c.promote()).await??;
        for task in self.tasks.lock().expect("follower").drain(..) {
            task.abort();
        }
        // No primary to score any more.
        metrics::gauge!("fortress_primary_score").set(f64::NAN);
        tracing::warn!(primary = %self.primary(), "stopped following the primary");
        if let Some(then) = self.after_promote.lock().expect("follower").as_ref() {
            then();
        }
        Ok(())
    }

    /// Registers what to start once this standby is promoted.
    pub fn after_promote(&self, then: impl Fn() + Send + Sync + 'static) {
        *self.after_promote.lock().expect("follower") = Some(Box::new(then));
    }

    /// When the primary was declared lost: once nothing (not even a
    /// heartbeat) has come from it for the primary timeout. `None` while
    /// it is heard from.
    pub fn primary_lost(&self) -> Option<std::time::Instant> {
        let heard = self.state.lock().expect("follower").last_heard;
        (heard.elapsed() >= self.upstream.timeout).then(|| heard + self.upstream.timeout)
    }

    /// The primary's health as last checked.
    pub fn health(&self) -> PrimaryHealth {
        let st = self.state.lock().expect("follower");
        PrimaryHealth {
            seconds_since_heard: st.last_heard.elapsed().as_secs_f64(),
            ..st.health.clone()
        }
    }

    /// One check of the primary (see [`PrimaryHealth`]).
    fn check(&self) {
        let mut st = self.state.lock().expect("follower");
        let ok = st.last_heard.elapsed() < CHECK_EVERY;
        let h = &mut st.health;
        h.score = crate::dr::health::next_score(h.score, ok);
        h.consecutive_failures = if ok { 0 } else { h.consecutive_failures + 1 };
        metrics::gauge!("fortress_primary_score").set(h.score);
    }

    /// The lease epoch of the primary last followed (0: none known).
    pub fn upstream_epoch(&self) -> u64 {
        self.upstream_epoch
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn followed_epoch(&self, epoch: u64) {
        if epoch == 0 || epoch == self.upstream_epoch() {
            return;
        }
        self.upstream_epoch
            .store(epoch, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = save_epoch(&self.upstream.dir, epoch) {
            tracing::warn!(dir = %self.upstream.dir.display(), error = %e, "keeping the followed primary's epoch");
        }
    }

    /// The address followed now.
    pub fn primary(&self) -> String {
        self.primary.lock().expect("follower").clone()
    }

    /// Follows the primary at `addr` from the next connection on (the one
    /// now is cut): after a failover elsewhere, the new primary.
    pub fn retarget(&self, addr: &str) {
        let mut p = self.primary.lock().expect("follower");
        if *p != addr {
            tracing::warn!(from = %p, to = %addr, "following the new primary");
            *p = addr.to_string();
            if let Some(cut) = self.cut.lock().expect("follower").take() {
                let _ = cut.send(());
            }
        }
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    fn heard(&self) {
        self.state.lock().expect("follower").last_heard = std::time::Instant::now();
    }

    fn row(&self) -> ReplicationRow {
        let st = self.state.lock().expect("follower");
        let positions = self.cluster.log_ends();
        let now = Timestamp::from_wall(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
        );
        // How old reads are: the read point, which a transaction still
        // prepared may hold below the last cut (0 before the first).
        let read = self.cluster.snapshot();
        ReplicationRow {
            name: self.primary(),
            role: "primary".into(),
            state: match &st.trouble {
                None => "streaming".into(),
                Some(why) => why.clone(),
            },
            mode: st.mode.clone(),
            positions: format_positions(&positions),
            lag_bytes: st.receiving,
            lag_seconds: match read.0 {
                0 => f64::NAN,
                _ => now.wall_micros().saturating_sub(read.wall_micros()) as f64 / 1e6,
            },
        }
    }
}

/// For a standby with no copy yet: asks the primary for its identity,
/// makes the copy from the newest checkpoint in one of its archives if
/// there is one (else the copy streams from the primary's first record),
/// and writes the identity into `dir` last. Waits for the primary,
/// retrying, for as long as it takes.
pub async fn bootstrap(
    dir: &Path,
    upstream: &Upstream,
    cipher: Option<Arc<fortress_storage::cipher::Cipher>>,
) -> anyhow::Result<Identity> {
    let welcome = loop {
        match ask_identity(upstream).await {
            Ok(w) => break w,
            Err(e) if e.downcast_ref::<Refused>().is_some() => return Err(e),
            Err(e) => {
                tracing::warn!(primary = %upstream.primary, error = %format!("{e:#}"), "waiting for the primary");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let identity = Identity {
        shards: welcome.shards,
        vnodes: welcome.vnodes,
        id: welcome.cluster,
    };
    std::fs::create_dir_all(dir)?;
    let mut copied = false;
    for url in &upstream.archives {
        let (d, u, i, c) = (
            dir.to_path_buf(),
            url.clone(),
            identity.clone(),
            cipher.clone(),
        );
        let epoch = welcome.epoch;
        let made = tokio::task::spawn_blocking(move || {
            super::from_archive::first_copy(&d, &u, epoch, &i, c)
        })
        .await?;
        match made {
            Ok(Some(t)) => {
                // The copy holds that primary's history: the primary must
                // not take it for one that followed the primary before.
                save_epoch(dir, welcome.epoch)?;
                copied = true;
                tracing::info!(archive = %url, checkpoint = t.checkpoint.as_deref().unwrap_or(""), rows = t.rows, bytes = t.bytes,
                    "made this standby's copy from the archive's checkpoint and logs");
                break;
            }
            Ok(None) => {
                tracing::info!(archive = %url, "the archive has no checkpoint to start from yet")
            }
            Err(e) => {
                tracing::warn!(archive = %url, error = %format!("{e:#}"), "could not make the copy from the archive")
            }
        }
    }
    if !copied {
        // No archive had one: a checkpoint the primary takes for it.
        match super::base::receive(dir, upstream, &identity, cipher).await {
            Ok(Some(t)) => {
                save_epoch(dir, welcome.epoch)?;
                tracing::info!(
                    checkpoint = t.checkpoint.as_deref().unwrap_or(""),
                    rows = t.rows,
                    bytes = t.bytes,
                    "made this standby's copy from a checkpoint its primary took for it"
                );
            }
            // Its logs are whole: streaming them from the first record
            // is the copy.
            Ok(None) => {}
            // Nothing is written: the next start makes the copy again.
            Err(e) => return Err(e.context("making this standby's copy from its primary")),
        }
    }
    fortress_proxy::cluster::write_identity_as(dir, &identity)?;
    tracing::info!(dir = %dir.display(), cluster = %identity.id, "created a standby copy of the primary");
    Ok(identity)
}

/// The primary said no: retrying will not help.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the primary refused: {}", self.0)
    }
}

impl std::error::Error for Refused {}

/// The primary no longer has the records this standby needs.
#[derive(Debug)]
struct Gone(String);

impl std::fmt::Display for Gone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the primary: {}", self.0)
    }
}

impl std::error::Error for Gone {}

/// Connects and says HELLO; the WELCOME, within the primary timeout.
async fn connect(upstream: &Upstream, positions: Vec<u64>) -> anyhow::Result<(TcpStream, Welcome)> {
    tokio::time::timeout(upstream.timeout, handshake(upstream, positions))
        .await
        .with_context(|| {
            format!(
                "the primary at {} did not answer within {:?}",
                upstream.primary, upstream.timeout
            )
        })?
}

/// Connects to the primary and says HELLO (see [`Hello`]): at
/// `positions`, or, with none, asking for the identity (and a copy if
/// `base`).
pub(super) async fn say_hello(
    upstream: &Upstream,
    positions: Vec<u64>,
    base: bool,
) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(&upstream.primary)
        .await
        .with_context(|| format!("connecting to the primary at {}", upstream.primary))?;
    s.set_nodelay(true)?;
    let hello = Hello {
        token: token_from_env().unwrap_or_default(),
        name: upstream.name.clone(),
        id: upstream.id.clone(),
        epoch: upstream.epoch,
        positions,
        base,
    };
    write_frame(&mut s, HELLO, &[&serde_json::to_vec(&hello)?]).await?;
    Ok(s)
}

async fn handshake(
    upstream: &Upstream,
    positions: Vec<u64>,
) -> anyhow::Result<(TcpStream, Welcome)> {
    let mut s = say_hello(upstream, positions, false).await?;
    let (kind, payload) = read_frame(&mut s, MAX_FRAME).await?;
    if kind == ERROR {
        return Err(Refused(String::from_utf8_lossy(&payload).into_owned()).into());
    }
    let welcome: Welcome = serde_json::from_slice(&payload).context("a malformed WELCOME")?;
    Ok((s, welcome))
}

async fn ask_identity(upstream: &Upstream) -> anyhow::Result<Welcome> {
    Ok(connect(upstream, Vec::new()).await?.1)
}

/// Follows the primary into `cluster` (opened in standby mode) for as
/// long as the server runs, reconnecting after any failure; reports to
/// `SHOW fortress.replication`.
pub fn spawn(cluster: Arc<Cluster>, upstream: Upstream) -> Arc<Follower> {
    let upstream_dir = upstream.dir.clone();
    let follower = Arc::new(Follower {
        primary: Mutex::new(upstream.primary.clone()),
        upstream,
        cluster: cluster.clone(),
        state: Mutex::new(FollowState {
            trouble: Some("connecting".into()),
            receiving: 0,
            mode: String::new(),
            last_heard: std::time::Instant::now(),
            health: PrimaryHealth {
                score: 1.0,
                consecutive_failures: 0,
                seconds_since_heard: 0.0,
            },
        }),
        tasks: Mutex::new(Vec::new()),
        cut: Mutex::new(None),
        upstream_epoch: std::sync::atomic::AtomicU64::new(
            std::fs::read_to_string(upstream_dir.join(EPOCH_FILE))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
        ),
        after_promote: Mutex::new(None),
    });
    let report = follower.clone();
    cluster.set_replication_report(Arc::new(move || vec![report.row()]));
    let checked = follower.clone();
    let checks = tokio::spawn(async move {
        let mut every = tokio::time::interval(CHECK_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            checked.check();
        }
    });
    let f = follower.clone();
    let task = tokio::spawn(async move {
        let mut last = String::new();
        loop {
            let mut pause = Duration::from_millis(500);
            let err = match follow(&f).await {
                Ok(()) => "the primary closed the stream".to_string(),
                Err(e) if e.downcast_ref::<Gone>().is_some() => match catch_up(&f).await {
                    Ok(()) => {
                        // It answered (GONE) before the catch-up.
                        f.heard();
                        continue;
                    }
                    Err(why) => {
                        // Archives fill in every round: try again after a few.
                        pause = Duration::from_secs(5);
                        format!("{e:#}; {why:#}")
                    }
                },
                Err(e) => format!("{e:#}"),
            };
            // Each new trouble is a warning; the same one again, while
            // retrying, is not.
            let was_streaming = f.state.lock().expect("follower").trouble.is_none();
            if was_streaming || err != last {
                tracing::warn!(primary = %f.primary(), error = %err, "replication stream lost; reconnecting");
            } else {
                tracing::debug!(primary = %f.primary(), error = %err, "reconnecting");
            }
            last = err.clone();
            {
                let mut st = f.state.lock().expect("follower");
                st.trouble = Some(format!("reconnecting: {err}"));
                st.receiving = 0;
            }
            tokio::time::sleep(pause).await;
        }
    });
    *follower.tasks.lock().expect("follower") = vec![task.abort_handle(), checks.abort_handle()];
    follower
}

/// Takes what the primary recycled from the first archive that has it,
/// up to the archive's consistent cut (see [`super::from_archive`]).
async fn catch_up(f: &Follower) -> anyhow::Result<()> {
    if f.upstream.archives.is_empty() {
        bail!("give this standby its primary's archive (--archive) to take them from there");
    }
    let mut failed = Vec::new();
    for url in &f.upstream.archives {
        {
            let mut st = f.state.lock().expect("follower");
            st.trouble = Some(format!("catching up from the archive at {url}"));
        }
        tracing::warn!(archive = %url, "the primary recycled records this standby lacks: taking them from the archive");
        let (cluster, dir, u) = (f.cluster.clone(), f.upstream.dir.clone(), url.clone());
        let epoch = f.upstream_epoch();
        let took = tokio::task::spawn_blocking(move || {
            super::from_archive::catch_up(&cluster, &dir, &u, epoch)
        })
        .await?;
        match took {
            Ok(t) => {
                tracing::info!(archive = %url, bytes = t.bytes, "caught up from the archive; streaming from the primary again");
                return Ok(());
            }
            Err(e) => failed.push(format!("{url}: {e:#}")),
        }
    }
    bail!(
        "no archive could catch this standby up: {}",
        failed.join("; ")
    )
}

async fn follow(f: &Follower) -> anyhow::Result<()> {
    let cluster = &f.cluster;
    let positions = cluster.log_ends();
    // The cut first: a retarget from here on reaches this connection.
    let (cut_tx, mut cut_rx) = tokio::sync::oneshot::channel();
    *f.cut.lock().expect("follower") = Some(cut_tx);
    let upstream = Upstream {
        primary: f.primary(),
        epoch: f.upstream_epoch(),
        ..f.upstream.clone()
    };
    let (s, welcome) = connect(&upstream, positions).await?;
    if welcome.cluster != cluster.id() {
        bail!(
            "this standby is a copy of cluster {}, and the primary is {}",
            cluster.id(),
            welcome.cluster
        );
    }
    tracing::info!(primary = %upstream.primary, "following the primary");
    {
        let mut st = f.state.lock().expect("follower");
        st.trouble = None;
        st.mode = welcome.mode.clone();
        st.last_heard = std::time::Instant::now();
    }
    f.followed_epoch(welcome.epoch);
    let (mut rd, mut wr) = s.into_split();
    let mut round: Vec<(usize, Vec<u8>)> = Vec::new();
    loop {
        let frame = tokio::select! {
            frame = tokio::time::timeout(f.upstream.timeout, read_frame(&mut rd, MAX_FRAME)) => frame,
            _ = &mut cut_rx => bail!("retargeted to another primary"),
        };
        let Ok(frame) = frame else {
            bail!(
                "primary lost: nothing from it, not even a heartbeat, for {:?}",
                f.upstream.timeout
            );
        };
        let (kind, payload) = frame?;
        f.heard();
        match kind {
            RECORDS if payload.len() >= 2 => {
                let log = u16::from_le_bytes([payload[0], payload[1]]) as usize;
                f.state.lock().expect("follower").receiving += payload.len() as u64 - 2;
                round.push((log, payload[2..].to_vec()));
            }
            CUT => {
                let cut: Cut = serde_json::from_slice(&payload).context("a malformed CUT")?;
                let take = std::mem::take(&mut round);
                // One blocking task: log the round durably, hand back the
                // positions for the ACK, then apply it. Durable first: the
                // primary may count the round as held (a synchronous commit
                // waits for this) before it is applied.
                let (logged_tx, logged_rx) = tokio::sync::oneshot::channel();
                let c = cluster.clone();
                let task = tokio::task::spawn_blocking(move || {
                    let logged = c.follow_log(&take)?;
                    let _ = logged_tx.send(c.log_ends());
                    c.follow_apply(logged, &cut.ends, Timestamp(cut.ts))
                });
                // A round logged is applied even if the ACK cannot be sent:
                // the next round's records apply only after it.
                let acked = match logged_rx.await {
                    Ok(positions) => {
                        let ack = serde_json::to_vec(&Ack { positions })?;
                        write_frame(&mut wr, ACK, &[&ack]).await
                    }
                    Err(_) => Ok(()),
                };
                task.await??;
                f.state.lock().expect("follower").receiving = 0;
                acked?;
            }
            ERROR => bail!("the primary: {}", String::from_utf8_lossy(&payload)),
            GONE => return Err(Gone(String::from_utf8_lossy(&payload).into_owned()).into()),
            k => bail!("unexpected frame kind {k}"),
        }
    }
}
