//! The primary's side: `--replication-listen`, one stream per standby,
//! and what each standby has acknowledged (its lag).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use fortress_proxy::standby::ReplicationRow;
use fortress_proxy::Cluster;
use fortress_storage::tail::Tail;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::*;

/// Rounds remembered per standby before the oldest are merged.
const MAX_UNACKED: usize = 1 << 14;

/// Which standbys commits wait for, and what happens when one is gone.
#[derive(Clone, Debug, Default)]
pub struct SyncPolicy {
    /// Standbys named `NAME=sync` by `--standby-mode`.
    pub sync: BTreeSet<String>,
    /// How long a commit waits for them before the fallback applies.
    pub timeout: Duration,
    pub fallback: Fallback,
}

/// What a primary does when a synchronous standby has not acknowledged a
/// commit within `--sync-timeout`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Fallback {
    /// Commits keep waiting (RPO 0 is kept, availability is not), as
    /// PostgreSQL's synchronous_standby_names does.
    #[default]
    Wait,
    /// Commits stop waiting until the standby has caught up again.
    Degrade,
}

/// Every standby that has connected since start, by name, and the commits
/// waiting for the synchronous ones.
#[derive(Default)]
pub struct Standbys {
    links: Mutex<BTreeMap<String, Arc<Link>>>,
    policy: SyncPolicy,
    /// Woken at every acknowledgement, for the commits waiting on them.
    acked: Notify,
    /// The synchronous standbys commits do not wait for now (the `degrade`
    /// fallback), and why; each until it has caught up.
    degraded: Mutex<BTreeMap<String, String>>,
    /// Set once this node serves no more standbys (see [`Standbys::retire`]).
    retired: Mutex<Option<String>>,
    /// The write lease epoch this node holds, and the log positions it
    /// took over at if it took over from another primary.
    lease: Mutex<(u64, Option<Vec<u64>>)>,
    /// Where this node's checkpoints are (a new standby's copy is made
    /// from one taken there).
    checkpoints: Option<std::path::PathBuf>,
}

/// One standby's stream, live or ended.
pub struct Link {
    name: String,
    /// The standby's data directory id.
    id: String,
    addr: String,
    sync: bool,
    state: Mutex<LinkState>,
    /// Asks the stream for a round now: a commit waits for it.
    wanted: Notify,
    /// Woken at each of this standby's acknowledgements.
    acks: Notify,
}

#[derive(Default)]
struct LinkState {
    /// `None` while streaming; why it ended otherwise.
    ended: Option<String>,
    /// Rounds sent and not yet acknowledged, oldest first.
    unacked: VecDeque<Sent>,
    /// Each log's last LSN the standby holds durably.
    acked: Vec<u64>,
    /// The ends of the last round sent.
    sent: Vec<u64>,
    /// The records the standby needs were recycled: it takes them from an
    /// archive, and holds nothing back meanwhile.
    gone: bool,
    /// Not a stream: the WAL kept for a standby being copied (see
    /// [`Standbys::hold_for_copy`]).
    copying: bool,
}

struct Sent {
    ends: Vec<u64>,
    bytes: u64,
    at: Instant,
}

impl Link {
    fn sent(&self, ends: Vec<u64>, bytes: u64) {
        let mut st = self.state.lock().expect("link");
        if st.unacked.len() >= MAX_UNACKED {
            // A standby that stopped acknowledging: keep the oldest time
            // and every byte, in fewer entries.
            let first = st.unacked.pop_front().expect("not empty");
            let second = st.unacked.front_mut().expect("not empty");
            second.bytes += first.bytes;
            second.at = first.at;
        }
        st.sent.clone_from(&ends);
        st.unacked.push_back(Sent {
            ends,
            bytes,
            at: Instant::now(),
        });
    }

    /// Records an acknowledgement; true if nothing sent is unacknowledged.
    fn acked(&self, positions: Vec<u64>) -> bool {
        let mut st = self.state.lock().expect("link");
        while st
            .unacked
            .front()
            .is_some_and(|s| covers(&positions, &s.ends))
        {
            st.unacked.pop_front();
        }
        st.acked = positions;
        st.unacked.is_empty()
    }

    /// True while the stream to this standby is up.
    fn streaming(&self) -> bool {
        let st = self.state.lock().expect("link");
        st.ended.is_none() && !st.copying
    }

    /// True if the standby is streaming and has acknowledged `ends`.
    fn holds(&self, ends: &[u64]) -> bool {
        let st = self.state.lock().expect("link");
        st.ended.is_none() && covers(&st.acked, ends)
    }

    /// True if a round through `ends` has been sent (its acknowledgement
    /// may be on its way).
    fn sent_through(&self, ends: &[u64]) -> bool {
        covers(&self.state.lock().expect("link").sent, ends)
    }

    pub(super) fn end(&self, why: String) {
        self.state.lock().expect("link").ended = Some(why);
    }

    fn row(&self, degraded: bool) -> ReplicationRow {
        let st = self.state.lock().expect("link");
        ReplicationRow {
            name: self.name.clone(),
            role: "standby".into(),
            state: match &st.ended {
                None => "streaming".into(),
                Some(why) => format!("disconnected: {why}"),
            },
            mode: mode_name(self.sync, degraded).into(),
            positions: format_positions(&st.acked),
            lag_bytes: st.unacked.iter().map(|s| s.bytes).sum(),
            lag_seconds: st
                .unacked
                .front()
                .map_or(0.0, |s| s.at.elapsed().as_secs_f64()),
        }
    }
}

/// True if positions `have` reach `want`, log for log.
fn covers(have: &[u64], want: &[u64]) -> bool {
    have.len() == want.len() && have.iter().zip(want).all(|(h, w)| h >= w)
}

fn mode_name(sync: bool, degraded: bool) -> &'static str {
    match (sync, degraded) {
        (false, _) => "async",
        (true, false) => "sync",
        (true, true) => "sync (degraded to async)",
    }
}

impl Standbys {
    pub fn new(policy: SyncPolicy, checkpoints: std::path::PathBuf) -> Standbys {
        Standbys {
            policy,
            checkpoints: Some(checkpoints),
            ..Standbys::default()
        }
    }

    /// Where this node's checkpoints are.
    pub(super) fn checkpoints(&self) -> Option<std::path::PathBuf> {
        self.checkpoints.clone()
    }

    /// Keeps the WAL from `positions` for a standby being copied, until it
    /// streams (its link then replaces this one; see
    /// [`Standbys::release_copy_after`]).
    pub(super) fn hold_for_copy(
        self: &Arc<Self>,
        name: &str,
        id: &str,
        addr: String,
        positions: Vec<u64>,
    ) -> Arc<Link> {
        let link = self.connect(name, id, addr, positions);
        link.state.lock().expect("link").copying = true;
        link
    }

    /// Ends the hold of a copy sent to standby `name` if, `after` from now,
    /// it has not come back to stream.
    pub(super) fn release_copy_after(
        self: &Arc<Self>,
        name: &str,
        held: &Arc<Link>,
        after: Duration,
    ) {
        let (me, held, name) = (self.clone(), held.clone(), name.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let current = me.links.lock().expect("links").get(&name).cloned();
            if current.is_some_and(|l| Arc::ptr_eq(&l, &held)) {
                held.end("the copy did not come back to stream".into());
            }
        });
    }

    /// What `SHOW fortress.replication` and the API report of them: each
    /// standby seen, and each synchronous one never seen.
    pub fn rows(&self) -> Vec<ReplicationRow> {
        let degraded = self.degraded.lock().expect("degraded").clone();
        let links = self.links.lock().expect("links");
        let mut rows: Vec<ReplicationRow> = links
            .values()
            .map(|l| l.row(degraded.contains_key(&l.name)))
            .collect();
        for name in self.policy.sync.iter().filter(|n| !links.contains_key(*n)) {
            rows.push(ReplicationRow {
                name: name.clone(),
                role: "standby".into(),
                state: "never connected".into(),
                mode: mode_name(true, degraded.contains_key(name)).into(),
                positions: String::new(),
                lag_bytes: 0,
                lag_seconds: f64::NAN,
            });
        }
        rows
    }

    /// The last LSN of log `log` (its index in [`Cluster::logs`]) that a
    /// standby may still need from this disk: the least any streaming
    /// standby, or any synchronous one even while away, has acknowledged.
    /// `None` when no standby holds the log back.
    pub fn needed_from(&self, log: usize) -> Option<u64> {
        let links = self.links.lock().expect("links");
        links
            .values()
            .filter_map(|l| {
                let st = l.state.lock().expect("link");
                let held = (st.ended.is_none() || l.sync) && !st.gone;
                held.then(|| st.acked.get(log).copied()).flatten()
            })
            .min()
    }

    /// Resolves once every synchronous standby holds the logs through
    /// `ends`, or, with the `degrade` fallback, once those that do not have
    /// kept the commit waiting past the timeout (commits then stop waiting
    /// for them until each has caught up).
    pub async fn wait_for(&self, ends: Vec<u64>) {
        if self.policy.sync.is_empty() {
            return;
        }
        let mut deadline = tokio::time::Instant::now() + self.policy.timeout;
        loop {
            let acked = self.acked.notified();
            tokio::pin!(acked);
            acked.as_mut().enable();
            let missing: Vec<String> = {
                let degraded = self.degraded.lock().expect("degraded");
                let links = self.links.lock().expect("links");
                self.policy
                    .sync
                    .iter()
                    .filter(|n| !degraded.contains_key(*n))
                    .filter(|n| !links.get(*n).is_some_and(|l| l.holds(&ends)))
                    .cloned()
                    .collect()
            };
            if missing.is_empty() {
                return;
            }
            // A round now, unless one through `ends` is on its way.
            for link in self.links.lock().expect("links").values() {
                if link.sync && !link.sent_through(&ends) {
                    link.wanted.notify_one();
                }
            }
            if tokio::time::timeout_at(deadline, acked).await.is_ok() {
                continue;
            }
            let who = missing.join(", ");
            match self.policy.fallback {
                Fallback::Degrade => {
                    let why = format!(
                        "synchronous standby {who} did not acknowledge a commit within {:?}",
                        self.policy.timeout
                    );
                    {
                        let mut d = self.degraded.lock().expect("degraded");
                        for name in missing {
                            if let std::collections::btree_map::Entry::Vacant(e) = d.entry(name) {
                                tracing::warn!(standby = %e.key(), "{why}; commits no longer wait for it (degraded to async) until it catches up");
                                e.insert(why.clone());
                            }
                        }
                    }
                    // Commits waiting on the same standbys stop waiting too.
                    self.acked.notify_waiters();
                    return;
                }
                Fallback::Wait => {
                    tracing::warn!(standby = %who, timeout = ?self.policy.timeout, "a commit is still waiting for a synchronous standby");
                    deadline = tokio::time::Instant::now() + self.policy.timeout;
                }
            }
        }
    }

    /// The data directory id of the standby streaming as `name`, if it
    /// streams and said it.
    pub fn id_of(&self, name: &str) -> Option<String> {
        let link = self.streaming(name)?;
        (!link.id.is_empty()).then(|| link.id.clone())
    }

    /// The stream to the standby named `name`, while it is up.
    fn streaming(&self, name: &str) -> Option<Arc<Link>> {
        let links = self.links.lock().expect("links");
        links.get(name).filter(|l| l.streaming()).cloned()
    }

    /// Makes the cluster report these standbys and, if some are
    /// synchronous, wait for them at every acknowledged write.
    pub fn install(self: &Arc<Self>, cluster: &Cluster) {
        let report = self.clone();
        cluster.set_replication_report(Arc::new(move || report.rows()));
        if !self.policy.sync.is_empty() {
            let waits = self.clone();
            cluster.set_commit_wait(Arc::new(move |ends| {
                let waits = waits.clone();
                Box::pin(async move {
                    waits.wait_for(ends).await;
                    Ok(())
                })
            }));
        }
    }

    /// Why a standby named `name` from data directory `id` may not stream
    /// now: another data directory streams under that name.
    fn name_taken(&self, name: &str, id: &str) -> Option<String> {
        let old = self.streaming(name)?;
        (!old.id.is_empty() && !id.is_empty() && old.id != id).then(|| {
            format!("another standby ({}) streams under the name {name}: give each standby its own --name", old.addr)
        })
    }

    /// Records the lease epoch this node holds and where it took over.
    pub fn set_lease(&self, epoch: u64, takeover: Option<Vec<u64>>) {
        *self.lease.lock().expect("lease") = (epoch, takeover);
    }

    fn lease(&self) -> (u64, Option<Vec<u64>>) {
        self.lease.lock().expect("lease").clone()
    }

    /// Why a standby whose logs end at `positions`, having last followed
    /// the primary of lease epoch `epoch`, may not follow this one: it
    /// followed the previous primary past where this one took over, so
    /// its logs hold records this node's do not (at LSNs this node has
    /// used or will use for others).
    fn forked(&self, positions: &[u64], epoch: u64) -> Option<String> {
        let (mine, takeover) = self.lease();
        let takeover = takeover?;
        let past = positions.iter().zip(&takeover).any(|(p, t)| p > t);
        (epoch < mine && past).then(|| {
            format!(
                "the standby followed the previous primary past where this one took over (epoch {mine}): its copy holds records this primary's does not; start it over with fortress standby --rebuild"
            )
        })
    }

    /// Stops serving standbys for good (this node was replaced, or handed
    /// its lease over): every stream ends at its next round, and new ones
    /// are refused with `why`.
    pub fn retire(&self, why: &str) {
        *self.retired.lock().expect("retired") = Some(why.to_string());
        for link in self.links.lock().expect("links").values() {
            link.wanted.notify_one();
        }
    }

    pub fn retired(&self) -> Option<String> {
        self.retired.lock().expect("retired").clone()
    }

    /// Resolves once standby `name` streams and holds the logs through
    /// `ends` (a planned handover waits for this); why not otherwise, by
    /// `timeout`.
    pub async fn wait_caught_up(
        &self,
        name: &str,
        ends: &[u64],
        timeout: std::time::Duration,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let acked = self.acked.notified();
            tokio::pin!(acked);
            acked.as_mut().enable();
            {
                let links = self.links.lock().expect("links");
                let Some(link) = links.get(name) else {
                    return Err(format!("no standby named {name} has connected"));
                };
                if let Some(why) = &link.state.lock().expect("link").ended {
                    return Err(format!("standby {name} is not streaming: {why}"));
                }
                if link.holds(ends) {
                    return Ok(());
                }
                if !link.sent_through(ends) {
                    link.wanted.notify_one();
                }
            }
            if tokio::time::timeout_at(deadline, acked).await.is_err() {
                return Err(format!(
                    "standby {name} did not catch up within {timeout:?}"
                ));
            }
        }
    }

    /// An acknowledgement from `link`: wakes the commits waiting, and ends
    /// its degradation once it has caught up.
    fn on_ack(&self, link: &Link, positions: Vec<u64>) {
        let caught_up = link.acked(positions);
        if link.sync && caught_up {
            let mut d = self.degraded.lock().expect("degraded");
            if d.remove(&link.name).is_some() {
                tracing::info!(standby = %link.name, "synchronous standby caught up; commits wait for it again");
            }
        }
        self.acked.notify_waiters();
        link.acks.notify_waiters();
    }

    /// Registers a standby whose logs end at `positions`, before anything
    /// is sent: from here recycling keeps what it lacks.
    fn connect(&self, name: &str, id: &str, addr: String, positions: Vec<u64>) -> Arc<Link> {
        let link = Arc::new(Link {
            name: name.to_string(),
            id: id.to_string(),
            addr,
            sync: self.policy.sync.contains(name),
            state: Mutex::new(LinkState {
                acked: positions,
                ..LinkState::default()
            }),
            wanted: Notify::new(),
            acks: Notify::new(),
        });
        let mut links = self.links.lock().expect("links");
        if let Some(old) = links.get(name) {
            if old.streaming() {
                tracing::warn!(
                    standby = name,
                    old = %old.addr,
                    new = %link.addr,
                    "two standbys stream under one name; only the newer is reported"
                );
            }
        }
        links.insert(name.to_string(), link.clone());
        link
    }
}

/// Serves standbys on `listener` for as long as the server runs; reports
/// them to `SHOW fortress.replication`.
pub fn serve(
    listener: TcpListener,
    cluster: Arc<Cluster>,
    token: Option<String>,
    policy: SyncPolicy,
    peers: Option<Arc<super::peer::Peers>>,
    checkpoints: std::path::PathBuf,
) -> Arc<Standbys> {
    let standbys = Arc::new(Standbys::new(policy, checkpoints));
    // A standby serves its own standbys only once promoted (then it
    // installs them: see `Standbys::install`).
    if !cluster.is_standby() {
        standbys.install(&cluster);
    }
    let registry = standbys.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let (cluster, token, registry) = (cluster.clone(), token.clone(), registry.clone());
            let peers = peers.clone();
            tokio::spawn(async move {
                if let Err(e) = stream_to(stream, cluster, token.as_deref(), registry, peers).await
                {
                    tracing::info!(%peer, error = %format!("{e:#}"), "standby stream ended");
                }
            });
        }
    });
    standbys
}

/// One standby's stream: the handshake, then rounds until it goes away.
async fn stream_to(
    mut s: TcpStream,
    cluster: Arc<Cluster>,
    token: Option<&str>,
    standbys: Arc<Standbys>,
    peers: Option<Arc<super::peer::Peers>>,
) -> anyhow::Result<()> {
    s.set_nodelay(true)?;
    let peer = s.peer_addr()?.to_string();
    let (kind, payload) =
        tokio::time::timeout(Duration::from_secs(10), read_frame(&mut s, MAX_HELLO))
            .await
            .context("no HELLO within 10 s")??;
    let hello: Hello = match kind {
        HELLO => serde_json::from_slice(&payload).context("a malformed HELLO")?,
        PEER_HELLO => return super::peer::serve(s, cluster, token, peers, &payload).await,
        _ => bail!("expected HELLO"),
    };
    let logs = cluster.logs();
    let welcome = Welcome {
        cluster: cluster.id().to_string(),
        shards: cluster.shard_count(),
        vnodes: cluster.ring().vnodes(),
        mode: mode_name(standbys.policy.sync.contains(&hello.name), false).into(),
        epoch: standbys.lease().0,
    };
    let refusal = if token.is_some_and(|t| !tokens_match(t, &hello.token)) {
        Some("the replication token does not match".to_string())
    } else if cluster.is_standby() {
        Some("this node is a standby itself (cascading replication is not supported)".into())
    } else if let Some(why) = standbys.retired() {
        Some(format!(
            "this node no longer takes writes, and serves no standbys: {why}"
        ))
    } else if let Some(why) = standbys.name_taken(&hello.name, &hello.id) {
        Some(why)
    } else if let Some(why) = standbys.forked(&hello.positions, hello.epoch) {
        Some(why)
    } else if hello.positions.is_empty() {
        // A new standby learns the identity, makes its copy (from a
        // checkpoint taken for it, if it asks) and comes back.
        write_frame(&mut s, WELCOME, &[&serde_json::to_vec(&welcome)?]).await?;
        // A copy is made only when the first records are gone: while the
        // logs are whole, streaming them from the start is the copy.
        if hello.base && !super::base::logs_whole(&cluster)? {
            return super::base::send(&mut s, &cluster, &standbys, &hello.name, &hello.id, peer)
                .await;
        }
        return Ok(());
    } else if hello.positions.len() != logs.len() {
        Some("the standby has another number of logs (shards)".to_string())
    } else {
        hello
            .positions
            .iter()
            .zip(&logs)
            .find(|(p, l)| **p > l.last_lsn())
            .map(|(p, l)| {
                format!(
                    "the standby's {} ends at LSN {p}, past this primary's {}: it followed another history",
                    l.name,
                    l.last_lsn()
                )
            })
    };
    if let Some(why) = refusal {
        write_frame(&mut s, ERROR, &[why.as_bytes()]).await?;
        bail!("refused standby {}: {why}", hello.name);
    }
    // Registered before it is welcomed, so a recycling pass meanwhile
    // keeps what it lacks. Its positions acknowledge nothing sent: they end
    // no degradation.
    let link = standbys.connect(
        &hello.name,
        &hello.id,
        peer.clone(),
        hello.positions.clone(),
    );
    if let Err(e) = write_frame(&mut s, WELCOME, &[&serde_json::to_vec(&welcome)?]).await {
        link.end(format!("{e}"));
        return Err(e.into());
    }
    tracing::info!(standby = %hello.name, %peer, "standby connected; streaming the WAL");
    let (mut rd, mut wr) = s.into_split();
    let acks: tokio::task::JoinHandle<anyhow::Result<()>> = {
        let (link, standbys) = (link.clone(), standbys.clone());
        tokio::spawn(async move {
            loop {
                let (kind, payload) = read_frame(&mut rd, MAX_ACK).await?;
                if kind != ACK {
                    bail!("expected ACK, got frame kind {kind}");
                }
                let ack: Ack = serde_json::from_slice(&payload).context("a malformed ACK")?;
                standbys.on_ack(&link, ack.positions);
            }
        })
    };
    let abort = acks.abort_handle();
    let streamed = tokio::select! {
        r = rounds(&mut wr, &cluster, &hello.positions, &link, &standbys) => r,
        r = acks => match r {
            Ok(Err(e)) => Err(e),
            _ => Err(anyhow::anyhow!("the standby's acknowledgements stopped")),
        },
    };
    abort.abort();
    let why = match &streamed {
        Ok(()) => "closed".to_string(),
        Err(e) => format!("{e:#}"),
    };
    link.end(why);
    streamed
}

/// What a round's reader hands the stream, in order.
enum Piece {
    Records(u16, Vec<u8>),
    Cut(Vec<u64>, fortress_storage::Timestamp),
    /// The records the standby needs are gone (recycled).
    Gone(String),
}

/// Sends rounds from `positions` on, every [`ROUND_EVERY`] or at once when
/// a commit waits, until the connection fails. A round's blocking work
/// (the cut, the syncs, the reads) runs as one task that hands its pieces
/// over a short channel, so a round costs one thread hop and holds a few
/// frames in memory however far behind the standby is.
async fn rounds(
    wr: &mut OwnedWriteHalf,
    cluster: &Arc<Cluster>,
    positions: &[u64],
    link: &Link,
    standbys: &Standbys,
) -> anyhow::Result<()> {
    let logs = cluster.logs();
    let mut tails: Vec<Tail> = logs
        .iter()
        .zip(positions)
        .map(|(l, &p)| Tail::new(l.dir(), p))
        .collect();
    loop {
        if let Some(why) = standbys.retired() {
            let why = format!("this node serves no more standbys: {why}");
            let _ = write_frame(wr, ERROR, &[why.as_bytes()]).await;
            bail!(why);
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let (c, l) = (cluster.clone(), logs.clone());
        let reader = tokio::task::spawn_blocking(move || {
            let read = read_round(&c, &l, &mut tails, &tx);
            (tails, read)
        });
        let mut bytes = 0u64;
        while let Some(piece) = rx.recv().await {
            match piece {
                Piece::Records(log, records) => {
                    bytes += records.len() as u64;
                    write_frame(wr, RECORDS, &[&log.to_le_bytes(), &records]).await?;
                }
                Piece::Cut(ends, ts) => {
                    let cut = serde_json::to_vec(&Cut {
                        ends: ends.clone(),
                        ts: ts.0,
                    })?;
                    link.sent(ends, bytes);
                    write_frame(wr, CUT, &[&cut]).await?;
                }
                Piece::Gone(why) => {
                    link.state.lock().expect("link").gone = true;
                    let _ = write_frame(wr, GONE, &[why.as_bytes()]).await;
                    bail!(why);
                }
            }
        }
        let (back, read) = reader.await?;
        tails = back;
        read?;
        if link.sync {
            // A synchronous standby's round is acknowledged (or an interval
            // passes) before the next: the commits that arrive meanwhile go
            // in the next round together, rather than each in a round of
            // its own that the standby must log and sync separately.
            let deadline = tokio::time::Instant::now() + ROUND_EVERY;
            loop {
                let acked = link.acks.notified();
                tokio::pin!(acked);
                acked.as_mut().enable();
                if link.state.lock().expect("link").unacked.is_empty() {
                    break;
                }
                if tokio::time::timeout_at(deadline, acked).await.is_err() {
                    break;
                }
            }
        }
        // The next round after the interval, or at once for a commit
        // waiting on this standby.
        tokio::select! {
            _ = tokio::time::sleep(ROUND_EVERY) => {}
            _ = link.wanted.notified() => {}
        }
    }
}

/// One round's blocking work: a cut, then each log that gained records
/// made durable to it and read to it, frame by frame, then the cut. Stops
/// early if the stream has gone (the channel is closed).
fn read_round(
    cluster: &Cluster,
    logs: &[fortress_proxy::cluster::Log],
    tails: &mut [Tail],
    tx: &tokio::sync::mpsc::Sender<Piece>,
) -> anyhow::Result<()> {
    let (ends, ts) = cluster.log_cut();
    for (i, (log, &end)) in logs.iter().zip(&ends).enumerate() {
        if tails[i].next_lsn() > end {
            // Nothing new on this log: no sync, no read.
            continue;
        }
        log.wait_durable(end)?;
        loop {
            let piece = match tails[i].read(end, FRAME_RECORDS) {
                Ok(Some(chunk)) => Piece::Records(i as u16, chunk.bytes),
                Ok(None) => break,
                Err(e) => Piece::Gone(format!("{e}; the standby must take them from an archive")),
            };
            let gone = matches!(piece, Piece::Gone(_));
            if tx.blocking_send(piece).is_err() || gone {
                return Ok(());
            }
        }
    }
    let _ = tx.blocking_send(Piece::Cut(ends, ts));
    Ok(())
}
