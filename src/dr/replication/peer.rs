//! Multi-master: nodes that each take writes pull each other's committed
//! row versions over the replication port (`--peer NAME=ADDR`) and keep,
//! for every row, the version the conflict resolver chooses
//! (`--conflict`, see [`fortress_storage::conflict`]).
//!
//! **Protocol.** A node opens a peer's replication port with PEER_HELLO
//! (JSON: token, its name, resolver, layout, and where it stands in each
//! of the peer's shard logs, for the peer's data directory id it last
//! pulled from); the peer answers PEER_WELCOME (JSON: its name, its id,
//! the positions it streams from) or ERROR. Then every round (20 ms) the
//! peer sends, for each shard log that gained records, PEER_BATCH frames
//! (postcard: shard, the last LSN read, and the row versions it committed
//! itself among them: table by name, key, row or deletion, stamp), then
//! PEER_TICK (JSON: each shard log's end), which is also the heartbeat;
//! the puller answers each tick with PEER_ACK (JSON: how far it pulled,
//! durably), and the peer keeps its WAL for it from there, like a
//! replication slot (`peers/<name>.held.json`; WAL recycling honours it).
//! Versions a node took from a peer are never sent on: every node pulls
//! from every other (a full mesh).
//!
//! **Durability rule.** A batch is applied durably (one record per shard,
//! [`fortress_proxy::Cluster::apply_remote`]) before the puller records
//! how far it got, in `peers/<name>.json` of its data directory.
//! **Recovery rule.** After any failure or restart the puller asks for
//! what follows the recorded positions; a version it applied but had not
//! recorded comes again and is kept once (its stamp is the row's already).
//! A peer whose data directory changed (another id) is pulled from its
//! start.
//!
//! **Isolation.** A reader sees this node's own transactions with the
//! snapshot isolation of a single node. A peer's transaction becomes
//! visible shard by shard as its batches are applied: across shards, a
//! reader may see part of a peer's multi-shard transaction for a moment,
//! and a snapshot taken before a peer's version arrived does not see it
//! (each applied version takes a new local commit time). Two peers that
//! stop writing converge to the same rows once each has pulled the other.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use fortress_proxy::cluster::PeerChange;
use fortress_proxy::standby::ReplicationRow;
use fortress_proxy::Cluster;
use fortress_storage::conflict::Resolver;
use fortress_storage::tail::Tail;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use super::*;

/// Bytes of records read from one shard log for one batch.
const BATCH_RECORDS: usize = 4 << 20;
/// A peer silent this long (not even a tick) is reconnected to.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct PeerHello {
    token: String,
    name: String,
    resolver: String,
    shards: u32,
    vnodes: usize,
    /// The data directory id of the peer these positions are in.
    pulled_from: String,
    positions: Vec<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PeerWelcome {
    name: String,
    cluster: String,
    positions: Vec<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Batch {
    shard: u32,
    /// The last LSN of the shard's log this batch covers.
    through: u64,
    changes: Vec<PeerChange>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Tick {
    ends: Vec<u64>,
}

/// How far this node pulled from a peer, kept in `peers/<name>.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Pulled {
    cluster: String,
    positions: Vec<u64>,
}

/// This node's side of multi-master.
pub struct Peers {
    me: String,
    resolver: Resolver,
    links: Vec<Arc<Link>>,
    /// `peers/` in the data directory.
    dir: PathBuf,
    /// --peer-max-lag: a peer silent longer is no longer served nor held
    /// for.
    max_lag: Duration,
    /// How far each peer pulled from this node (what it acknowledged, or
    /// recorded when it last connected), with when that was last saved
    /// to `peers/<name>.held.json`: the WAL is kept for it from there.
    held: Mutex<BTreeMap<String, Held>>,
}

/// How far one peer pulled from this node, and when that was last saved.
struct Held {
    positions: Vec<u64>,
    saved: Option<Instant>,
    /// When it last said how far it pulled (its file's time after a
    /// restart, this process's start for a peer never heard from).
    acked: Instant,
}

/// One peer this node pulls from.
struct Link {
    name: String,
    addr: String,
    file: PathBuf,
    state: Mutex<LinkState>,
}

#[derive(Default)]
struct LinkState {
    /// `None` while pulling; what went wrong otherwise.
    trouble: Option<String>,
    pulled: Pulled,
    /// The peer's shard log ends, from its last tick.
    ends: Vec<u64>,
    last_heard: Option<Instant>,
}

impl Peers {
    /// Records that peer `name` pulled this node's shard logs through
    /// `positions`; saved at most once a second (a crash leaves an older
    /// position, which only keeps more).
    fn hold(&self, name: &str, positions: &[u64]) {
        {
            let mut held = self.held.lock().expect("held");
            let now = Instant::now();
            let entry = held.entry(name.to_string()).or_insert(Held {
                positions: Vec::new(),
                saved: None,
                acked: now,
            });
            entry.positions = positions.to_vec();
            entry.acked = now;
            if entry
                .saved
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
            {
                return;
            }
            entry.saved = Some(now);
        }
        let file = self.dir.join(format!("{name}.held.json"));
        let body = serde_json::to_vec(positions).expect("positions serialize");
        // Saved off the async threads; an older position landing last only
        // keeps more.
        tokio::task::spawn_blocking(move || {
            if let Err(e) = crate::dr::replace_file(&file, &body) {
                tracing::warn!(file = %file.display(), error = %e, "saving how far a peer pulled");
            }
        });
    }

    /// Whether peer `name` was last heard from longer than --peer-max-lag
    /// ago: its versions may be older than the tombstones kept here.
    fn away_too_long(&self, name: &str) -> bool {
        let held = self.held.lock().expect("held");
        held.get(name)
            .is_some_and(|h| h.acked.elapsed() > self.max_lag)
    }

    /// The last LSN of shard log `log` that some peer may still need
    /// from this disk: the least any peer pulled, connected or not (a
    /// configured peer that never pulled holds the whole log, like a
    /// replication slot). `None` without peers.
    pub fn needed_from(&self, log: usize) -> Option<u64> {
        let held = self.held.lock().expect("held");
        self.links
            .iter()
            .filter_map(|l| match held.get(&l.name) {
                // Away longer than --peer-max-lag: it must be seeded
                // anew, and holds nothing.
                Some(h) if h.acked.elapsed() > self.max_lag => None,
                Some(h) => Some(h.positions.get(log).copied().unwrap_or(0)),
                None => Some(0),
            })
            .min()
    }

    /// Rows for `SHOW fortress.replication`: each peer, as pulled from.
    pub fn rows(&self) -> Vec<ReplicationRow> {
        self.links
            .iter()
            .map(|l| {
                let st = l.state.lock().expect("peer");
                let behind: u64 = st
                    .ends
                    .iter()
                    .zip(st.pulled.positions.iter().chain(std::iter::repeat(&0)))
                    .map(|(e, p)| e.saturating_sub(*p))
                    .sum();
                ReplicationRow {
                    name: l.name.clone(),
                    role: "peer".into(),
                    state: st.trouble.clone().unwrap_or_else(|| "streaming".into()),
                    mode: self.resolver.to_string(),
                    positions: st
                        .pulled
                        .positions
                        .iter()
                        .enumerate()
                        .map(|(i, p)| format!("{i}:{p}"))
                        .collect::<Vec<_>>()
                        .join(","),
                    // Records, not bytes: how many of its records are not
                    // yet pulled.
                    lag_bytes: behind,
                    lag_seconds: st
                        .last_heard
                        .map_or(f64::NAN, |t| t.elapsed().as_secs_f64()),
                }
            })
            .collect()
    }
}

/// `NAME=ADDR`.
pub fn parse_peer(spec: &str) -> Result<(String, String), String> {
    let (name, addr) = spec
        .split_once('=')
        .ok_or_else(|| format!("{spec:?} is not NAME=ADDR"))?;
    let (name, addr) = (name.trim(), addr.trim());
    if name.is_empty() || addr.is_empty() {
        return Err(format!("{spec:?} is not NAME=ADDR"));
    }
    Ok((name.to_string(), addr.to_string()))
}

/// Starts pulling from every peer, reconnecting after any failure.
pub fn spawn(
    cluster: Arc<Cluster>,
    dir: &Path,
    me: &str,
    resolver: Resolver,
    peers: Vec<(String, String)>,
    max_lag: Duration,
) -> anyhow::Result<Arc<Peers>> {
    let peers_dir = dir.join("peers");
    std::fs::create_dir_all(&peers_dir)?;
    let mut links = Vec::new();
    let mut held = BTreeMap::new();
    for (name, addr) in peers {
        if name == me {
            bail!("--peer {name} names this node (--name {me})");
        }
        let file = peers_dir.join(format!("{name}.json"));
        // Pulling again from the start is safe (a version that comes again
        // is kept once): a file a crash left damaged only costs time.
        let pulled = match std::fs::read(&file) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::warn!(file = %file.display(), error = %e, "damaged: pulling from the peer's start");
                Pulled::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Pulled::default(),
            Err(e) => return Err(e.into()),
        };
        // How far it pulled, and when it said so (by the file's time).
        let held_file = peers_dir.join(format!("{name}.held.json"));
        let now = Instant::now();
        let mut entry = Held {
            positions: Vec::new(),
            saved: None,
            acked: now,
        };
        if let Ok(b) = std::fs::read(&held_file) {
            if let Ok(p) = serde_json::from_slice::<Vec<u64>>(&b) {
                let age = std::fs::metadata(&held_file)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .unwrap_or_default();
                entry.positions = p;
                entry.acked = now.checked_sub(age).unwrap_or(now);
            }
        }
        held.insert(name.clone(), entry);
        links.push(Arc::new(Link {
            name,
            addr,
            file,
            state: Mutex::new(LinkState {
                trouble: Some("connecting".into()),
                pulled,
                ..LinkState::default()
            }),
        }));
    }
    let peers = Arc::new(Peers {
        me: me.to_string(),
        resolver,
        links,
        dir: peers_dir,
        max_lag,
        held: Mutex::new(held),
    });
    for link in &peers.links {
        let (link, cluster, me) = (link.clone(), cluster.clone(), me.to_string());
        tokio::spawn(async move {
            let mut last = String::new();
            loop {
                let err = match pull(&link, &cluster, &me, resolver).await {
                    Ok(()) => "the peer closed the stream".to_string(),
                    Err(e) => format!("{e:#}"),
                };
                if err != last {
                    tracing::warn!(peer = %link.name, addr = %link.addr, error = %err, "pulling from the peer; reconnecting");
                    last = err.clone();
                }
                link.state.lock().expect("peer").trouble = Some(format!("reconnecting: {err}"));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }
    Ok(peers)
}

/// One connection to a peer: the handshake, then batches until it fails.
async fn pull(
    link: &Arc<Link>,
    cluster: &Arc<Cluster>,
    me: &str,
    resolver: Resolver,
) -> anyhow::Result<()> {
    let mut s = tokio::time::timeout(PEER_TIMEOUT, TcpStream::connect(&link.addr))
        .await
        .context("connecting timed out")?
        .with_context(|| format!("connecting to {}", link.addr))?;
    s.set_nodelay(true)?;
    let (pulled_from, positions) = {
        let st = link.state.lock().expect("peer");
        (st.pulled.cluster.clone(), st.pulled.positions.clone())
    };
    let hello = PeerHello {
        token: token_from_env().unwrap_or_default(),
        name: me.to_string(),
        resolver: resolver.to_string(),
        shards: cluster.shard_count(),
        vnodes: cluster.ring().vnodes(),
        pulled_from,
        positions,
    };
    write_frame(&mut s, PEER_HELLO, &[&serde_json::to_vec(&hello)?]).await?;
    let (kind, payload) = tokio::time::timeout(PEER_TIMEOUT, read_frame(&mut s, MAX_FRAME))
        .await
        .context("no answer to PEER_HELLO")??;
    match kind {
        PEER_WELCOME => {}
        ERROR => bail!("the peer refused: {}", String::from_utf8_lossy(&payload)),
        k => bail!("unexpected frame kind {k}"),
    }
    let welcome: PeerWelcome =
        serde_json::from_slice(&payload).context("a malformed PEER_WELCOME")?;
    if welcome.name != link.name {
        bail!(
            "{} is node {}, not {} (check --peer)",
            link.addr,
            welcome.name,
            link.name
        );
    }
    {
        let mut st = link.state.lock().expect("peer");
        st.pulled = Pulled {
            cluster: welcome.cluster.clone(),
            positions: welcome.positions.clone(),
        };
        st.trouble = None;
        st.last_heard = Some(Instant::now());
    }
    tracing::info!(peer = %link.name, addr = %link.addr, "pulling the peer's writes");
    loop {
        let (kind, payload) = tokio::time::timeout(PEER_TIMEOUT, read_frame(&mut s, MAX_FRAME))
            .await
            .with_context(|| format!("nothing from the peer for {PEER_TIMEOUT:?}"))??;
        link.state.lock().expect("peer").last_heard = Some(Instant::now());
        match kind {
            PEER_BATCH => {
                let batch: Batch =
                    postcard::from_bytes(&payload).context("a malformed PEER_BATCH")?;
                let shard = batch.shard as usize;
                let n = batch.changes.len();
                let done = if n == 0 {
                    fortress_storage::RemoteApplied::default()
                } else {
                    let (c, me) = (cluster.clone(), me.to_string());
                    tokio::task::spawn_blocking(move || {
                        c.apply_remote(shard, &me, resolver, batch.changes)
                    })
                    .await??
                };
                let labels = [("peer", link.name.clone())];
                metrics::counter!("fortress_peer_versions_taken_total", &labels)
                    .increment(done.taken);
                metrics::counter!("fortress_peer_versions_kept_total", &labels)
                    .increment(done.kept);
                metrics::counter!("fortress_conflicts_total", &labels).increment(done.conflicts);
                let l = link.clone();
                tokio::task::spawn_blocking(move || record(&l, shard, batch.through)).await??;
            }
            PEER_TICK => {
                let tick: Tick =
                    serde_json::from_slice(&payload).context("a malformed PEER_TICK")?;
                // How far this node pulled, durably: the peer keeps its
                // WAL from there.
                let positions = {
                    let mut st = link.state.lock().expect("peer");
                    st.ends = tick.ends;
                    st.pulled.positions.clone()
                };
                let ack = serde_json::to_vec(&Ack { positions })?;
                tokio::time::timeout(PEER_TIMEOUT, write_frame(&mut s, PEER_ACK, &[&ack]))
                    .await
                    .context("the peer takes no acknowledgement")??;
            }
            ERROR => bail!("the peer: {}", String::from_utf8_lossy(&payload)),
            k => bail!("unexpected frame kind {k}"),
        }
    }
}

/// Records that shard `shard` of the peer is pulled through `lsn`.
fn record(link: &Link, shard: usize, lsn: u64) -> anyhow::Result<()> {
    let body = {
        let mut st = link.state.lock().expect("peer");
        let p = &mut st.pulled.positions;
        if p.len() <= shard {
            p.resize(shard + 1, 0);
        }
        p[shard] = p[shard].max(lsn);
        serde_json::to_vec(&st.pulled)?
    };
    Ok(crate::dr::replace_file(&link.file, &body)?)
}

/// A peer's connection to this node's replication port, after its
/// PEER_HELLO: checks it, then streams this node's own committed row
/// versions from where the peer stands.
pub(super) async fn serve(
    mut s: TcpStream,
    cluster: Arc<Cluster>,
    token: Option<&str>,
    local: Option<Arc<Peers>>,
    payload: &[u8],
) -> anyhow::Result<()> {
    let hello: PeerHello = serde_json::from_slice(payload).context("a malformed PEER_HELLO")?;
    let refusal = match &local {
        _ if token.is_some_and(|t| !tokens_match(t, &hello.token)) => {
            Some("the replication token does not match".to_string())
        }
        None => Some("this node has no peers (--peer): it is not multi-master".to_string()),
        Some(p) if p.me == hello.name => Some(format!("both nodes are named {}", p.me)),
        Some(p) if p.resolver.to_string() != hello.resolver => Some(format!(
            "this node resolves conflicts by {} and the peer by {}: give every peer the same --conflict",
            p.resolver, hello.resolver
        )),
        Some(_) if (hello.shards, hello.vnodes) != (cluster.shard_count(), cluster.ring().vnodes()) => {
            Some(format!(
                "this node has {} shards and {} vnodes, the peer {} and {}: peers need the same layout",
                cluster.shard_count(),
                cluster.ring().vnodes(),
                hello.shards,
                hello.vnodes
            ))
        }
        Some(p) if !p.links.iter().any(|l| l.name == hello.name) => Some(format!(
            "node {} is not among this node's peers (--peer)",
            hello.name
        )),
        Some(_) if cluster.is_standby() => Some("this node is a standby".into()),
        Some(_) => None,
    };
    if let Some(why) = refusal {
        write_frame(&mut s, ERROR, &[why.as_bytes()]).await?;
        bail!("refused peer {}: {why}", hello.name);
    }
    let me = local.as_ref().expect("checked").me.clone();
    let shards = cluster.shard_count() as usize;
    let logs = cluster.logs();
    let mut positions = match hello.pulled_from == cluster.id() {
        true => hello.positions.clone(),
        false => Vec::new(),
    };
    positions.resize(shards, 0);
    let peers = local.clone().expect("checked");
    for (i, (&p, log)) in positions.iter().zip(&logs).enumerate() {
        let first = fortress_storage::wal::list_segments(log.dir())?
            .first()
            .map_or(1, |(f, _)| *f);
        let why = if p > log.last_lsn() {
            Some(format!(
                "the peer pulled shard {i} of this node through LSN {p}, past its end ({}): this data directory is not the one it pulled from",
                log.last_lsn()
            ))
        } else if p + 1 < first {
            Some(format!(
                "the peer needs shard {i}'s records from LSN {}, recycled here (the log starts at {first}): give it a new data directory",
                p + 1
            ))
        } else if peers.away_too_long(&hello.name) {
            Some(format!(
                "the peer was away longer than --peer-max-lag ({:?}): its versions may predate tombstones collected here; give it a new data directory",
                peers.max_lag
            ))
        } else {
            None
        };
        if let Some(why) = why {
            write_frame(&mut s, ERROR, &[why.as_bytes()]).await?;
            bail!(why);
        }
    }
    let welcome = PeerWelcome {
        name: me.clone(),
        cluster: cluster.id().to_string(),
        positions: positions.clone(),
    };
    write_frame(&mut s, PEER_WELCOME, &[&serde_json::to_vec(&welcome)?]).await?;
    tracing::info!(peer = %hello.name, "a peer pulls this node's writes");
    peers.hold(&hello.name, &positions);
    let tails: Vec<Tail> = logs
        .iter()
        .take(shards)
        .zip(&positions)
        .map(|(l, &p)| Tail::new(l.dir(), p))
        .collect();
    let (mut rd, mut wr) = s.into_split();
    // How far the peer pulled, as it says after each round: this node's
    // WAL is kept for it from there (see `Peers::needed_from`).
    let acks: tokio::task::JoinHandle<anyhow::Result<()>> = {
        let (peers, name) = (peers.clone(), hello.name.clone());
        tokio::spawn(async move {
            loop {
                let (kind, payload) = read_frame(&mut rd, MAX_ACK).await?;
                if kind != PEER_ACK {
                    bail!("expected PEER_ACK, got frame kind {kind}");
                }
                let ack: Ack = serde_json::from_slice(&payload).context("a malformed PEER_ACK")?;
                peers.hold(&name, &ack.positions);
            }
        })
    };
    let abort = acks.abort_handle();
    let streamed = tokio::select! {
        r = stream(&mut wr, &cluster, logs, &me, tails) => r,
        r = acks => match r {
            Ok(Err(e)) => Err(e),
            _ => Err(anyhow::anyhow!("the peer's acknowledgements stopped")),
        },
    };
    abort.abort();
    streamed
}

/// What a round's reader hands the stream.
enum Piece {
    Batch(Batch),
    Tick(Vec<u64>),
    Failed(String),
}

/// Sends rounds to a peer until the connection fails: each round's
/// blocking reads run as one task that hands batches over a short channel
/// as they are read, so a peer far behind gets frames steadily and the
/// memory held is a few batches.
async fn stream(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    cluster: &Arc<Cluster>,
    logs: Vec<fortress_proxy::cluster::Log>,
    me: &str,
    mut tails: Vec<Tail>,
) -> anyhow::Result<()> {
    loop {
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        let (c, l, m) = (cluster.clone(), logs.clone(), me.to_string());
        let reader = tokio::task::spawn_blocking(move || {
            read_round(&c, &l, &m, &mut tails, &tx);
            tails
        });
        while let Some(piece) = rx.recv().await {
            match piece {
                Piece::Batch(b) => {
                    write_frame(wr, PEER_BATCH, &[&postcard::to_stdvec(&b)?]).await?
                }
                Piece::Tick(ends) => {
                    write_frame(wr, PEER_TICK, &[&serde_json::to_vec(&Tick { ends })?]).await?
                }
                Piece::Failed(why) => {
                    let _ = write_frame(wr, ERROR, &[why.as_bytes()]).await;
                    bail!(why);
                }
            }
        }
        tails = reader.await?;
        tokio::time::sleep(ROUND_EVERY).await;
    }
}

/// One round's reads: each shard log's durable records since the last,
/// as batches of this node's own versions handed over as they are read,
/// then the logs' ends. Stops early if the stream has gone.
fn read_round(
    cluster: &Cluster,
    logs: &[fortress_proxy::cluster::Log],
    me: &str,
    tails: &mut [Tail],
    tx: &tokio::sync::mpsc::Sender<Piece>,
) {
    let mut ends = Vec::new();
    for (i, tail) in tails.iter_mut().enumerate() {
        let end = logs[i].last_lsn();
        ends.push(end);
        if tail.next_lsn() > end {
            continue;
        }
        let batches = (|| -> anyhow::Result<()> {
            logs[i].wait_durable(end)?;
            while let Some(chunk) = tail.read(end, BATCH_RECORDS).map_err(|e| {
                anyhow::anyhow!(
                    "{e}: records the peer has not pulled were recycled here; give it a new data directory"
                )
            })? {
                let records = fortress_storage::wal::decode_shipped(
                    &chunk.bytes,
                    cluster.cipher().map(|k| &**k),
                    logs[i].dir(),
                )?;
                let changes = cluster.changes_for_peer(i, me, &records)?;
                let batch = Batch {
                    shard: i as u32,
                    through: chunk.last,
                    changes,
                };
                if tx.blocking_send(Piece::Batch(batch)).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        })();
        if let Err(e) = batches {
            let _ = tx.blocking_send(Piece::Failed(format!("{e:#}")));
            return;
        }
    }
    let _ = tx.blocking_send(Piece::Tick(ends));
}
