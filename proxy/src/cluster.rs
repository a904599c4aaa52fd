//! The set of shards behind one endpoint: opened from a data directory,
//! with the ring that routes to them and the catalog they share.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use fortress_storage::{
    Catalog, DecisionLog, Fragment, FragmentOutput, HybridClock, PinGuard, Shard, ShardId,
    ShardOptions, ShardStore, SnapshotPins, StorageError, Timestamp,
};

use fortress_storage::checkpoint::{Manifest, RingLayout};
use fortress_storage::error::Result as StorageResult;

use crate::coordinator::{Coordinator, OnDurable, Vote};
use crate::error::{ProxyError, Result};
use crate::locks::HeldLocks;
use crate::route::ring::Ring;
use crate::stream::ShardRows;
use fortress_storage::fault;

/// How to open a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub data_dir: PathBuf,
    pub shards: u32,
    pub vnodes: usize,
    pub shard: ShardOptions,
    /// Lifetime of cached read results (zero: no cache).
    pub cache_ttl: std::time::Duration,
    /// Rows one statement may hold at the proxy (joins, grouping, sorting)
    /// before it fails with 53200.
    pub work_rows: usize,
    /// Bytes a join's result may hold, at the proxy or on a shard, before
    /// it fails with 53200.
    pub work_bytes: usize,
    /// Opened as a standby (see [`crate::standby`]): no recovery, no writes,
    /// reads at the last round applied from the primary.
    pub standby: bool,
}

/// Votes bigger than this in all are made durable where they were given,
/// not copied into the coordinator's log (whose records are bounded).
const MAX_VOTE_BYTES: usize = 64 << 20;

/// How often each shard collects versions no snapshot can see.
const GC_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// File recording the layout a data directory was created with.
const IDENTITY_FILE: &str = "fortress.cluster";

/// Shards, ring and catalog.
pub struct Cluster {
    shards: Vec<Arc<dyn Shard>>,
    stores: Vec<Arc<ShardStore>>,
    ring: Ring,
    clock: Arc<HybridClock>,
    pins: Arc<SnapshotPins>,
    coordinator: Arc<Coordinator>,
    catalog: RwLock<Arc<Catalog>>,
    /// Serialises DDL so catalog versions are assigned one at a time.
    pub(crate) ddl: tokio::sync::Mutex<()>,
    next_txid: AtomicU64,
    metrics: crate::metrics::Metrics,
    cache: crate::cache::ResultCache,
    work_rows: usize,
    work_bytes: usize,
    /// Threads streaming shard rows to readers (see [`Cluster::stream`]).
    streams: Arc<tokio::sync::Semaphore>,
    /// Seals checkpoints, as the shards' WAL options seal their logs.
    cipher: Option<Arc<fortress_storage::cipher::Cipher>>,
    /// The data directory's id (see [`Identity`]).
    id: String,
    /// Row locks of READ COMMITTED transactions.
    locks: Arc<crate::locks::LockTable>,
    /// Set while the cluster is a standby: where its reads run.
    standby: RwLock<Option<Arc<crate::standby::ReadPoint>>>,
    /// Held while a standby logs or applies a round, and while it is
    /// promoted: a promotion never meets half a round.
    following: Mutex<()>,
    /// What `SHOW fortress.replication` reports (the binary's streams).
    replication: RwLock<Option<ReplicationReport>>,
    /// Waits until a commit has reached the synchronous standbys, if any.
    commit_wait: RwLock<Option<CommitWait>>,
    /// Says why writes are refused, if they are (the write lease).
    fence: RwLock<Option<WriteFence>>,
    /// This node's name among multi-master peers, if it has any.
    peer_name: RwLock<Option<String>>,
    /// Statements that write (or COMMITs of blocks that wrote) running now.
    writing: std::sync::atomic::AtomicUsize,
}

/// Counts a write as running until dropped (see [`Cluster::begin_write`]).
pub struct Writing<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why this node must not take writes now (it does not hold the write
/// lease), or `None` when it may. Called with `true` before a write made
/// is acknowledged (a handover under way lets those finish), `false`
/// before one starts.
pub type WriteFence = Arc<dyn Fn(bool) -> Option<String> + Send + Sync>;

/// Given every log's end after a commit, resolves once the synchronous
/// standbys hold the logs that far (or the primary degraded to async).
pub type CommitWait =
    Arc<dyn Fn(Vec<u64>) -> futures::future::BoxFuture<'static, Result<()>> + Send + Sync>;

/// A row version a multi-master peer committed, as it travels: its
/// table by name (ids differ between nodes), its encoded primary key.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PeerChange {
    pub table: String,
    pub key: Vec<u8>,
    pub row: Option<fortress_storage::Row>,
    pub stamp: fortress_storage::conflict::Stamp,
}

/// A row whose versions on two peers were written concurrently (version
/// vectors): the one visible and the sibling kept until resolved.
#[derive(Clone, Debug)]
pub struct Conflict {
    pub table: String,
    pub key: Vec<fortress_storage::Value>,
    pub sibling: Option<fortress_storage::Row>,
    pub sibling_node: String,
    pub sibling_ts: Timestamp,
    pub visible: Option<fortress_storage::Row>,
    pub visible_node: String,
    pub visible_ts: Timestamp,
}

/// A round a standby has logged durably and not yet applied (see
/// [`Cluster::follow_log`]).
pub struct LoggedRound {
    /// Whether the round carried records (or was a heartbeat).
    records: bool,
}

/// Rows for `SHOW fortress.replication`, from whoever runs the streams.
pub type ReplicationReport = Arc<dyn Fn() -> Vec<crate::standby::ReplicationRow> + Send + Sync>;

/// One of the logs a data directory is made of (a shard's WAL, or the
/// coordinator's decision log), for shipping it to archives and standbys.
#[derive(Clone)]
pub struct Log {
    /// Its directory relative to the data directory: `shard-000/wal`, ...,
    /// `coordinator`.
    pub name: String,
    source: LogSource,
}

#[derive(Clone)]
enum LogSource {
    Shard(Arc<ShardStore>),
    Coordinator(Arc<Coordinator>),
}

impl Log {
    fn wal(&self) -> &fortress_storage::wal::Wal {
        match &self.source {
            LogSource::Shard(s) => s.log(),
            LogSource::Coordinator(c) => c.log(),
        }
    }

    /// The shard whose log it is; `None` for the coordinator's.
    pub fn shard(&self) -> Option<ShardId> {
        match &self.source {
            LogSource::Shard(s) => Some(s.id()),
            LogSource::Coordinator(_) => None,
        }
    }

    /// Its segments' directory.
    pub fn dir(&self) -> &Path {
        self.wal().dir()
    }

    /// The last record that may leave the machine (see
    /// [`fortress_storage::wal::Wal::shippable_lsn`]).
    pub fn shippable_lsn(&self) -> u64 {
        self.wal().shippable_lsn()
    }

    /// The last record appended.
    pub fn last_lsn(&self) -> u64 {
        self.wal().last_lsn()
    }

    /// Blocks until the log is durable through `lsn` (forcing a sync).
    pub fn wait_durable(&self, lsn: u64) -> Result<()> {
        Ok(self.wal().wait_durable(lsn)?)
    }

    /// For a shard's log, the last LSN a restart no longer needs (see
    /// [`ShardStore::flushed_through`]); the coordinator's log is not
    /// recycled (`None`).
    pub fn flushed_through(&self) -> Result<Option<u64>> {
        match &self.source {
            LogSource::Shard(s) => Ok(Some(s.flushed_through()?)),
            LogSource::Coordinator(_) => Ok(None),
        }
    }
}

/// One shard as [`Cluster::shard_status`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardStatus {
    pub id: ShardId,
    /// The last WAL record's position.
    pub wal_lsn: u64,
    /// Bytes of its files (store and WAL) on disk.
    pub bytes: u64,
    /// Live rows at the snapshot of the call.
    pub rows: u64,
}

/// Bytes of the files under `dir` (0 for what cannot be read).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// Shard producers that may stream at once.
const MAX_STREAMS: usize = 128;

/// What a data directory was created as: its layout, which routing depends
/// on, and an id that ties its checkpoints to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub shards: u32,
    pub vnodes: usize,
    /// Random, fixed at creation (a restore makes a new directory, with a
    /// new id).
    pub id: String,
}

/// The identity of a data directory, if it has one. Directories made before
/// ids existed get one now.
pub fn read_identity(dir: &Path) -> Result<Option<Identity>> {
    let path = dir.join(IDENTITY_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::Io { path, source: e }.into()),
    };
    let mut shards = None;
    let mut vnodes = None;
    let mut id = None;
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            match k.trim() {
                "shards" => shards = v.trim().parse().ok(),
                "vnodes" => vnodes = v.trim().parse().ok(),
                "id" => id = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    let (Some(shards), Some(vnodes)) = (shards, vnodes) else {
        return Err(ProxyError::new(
            "XX000",
            format!(
                "{} is damaged: expected shards = N and vnodes = N",
                path.display()
            ),
        ));
    };
    match id {
        Some(id) => Ok(Some(Identity { shards, vnodes, id })),
        None => write_identity(dir, shards, vnodes).map(Some),
    }
}

/// Records the layout a data directory is created with, under a new id.
pub fn write_identity(dir: &Path, shards: u32, vnodes: usize) -> Result<Identity> {
    use sha2::Digest;
    let seed = format!(
        "{:?} {} {}",
        std::time::SystemTime::now(),
        std::process::id(),
        dir.display()
    );
    let id: String = sha2::Sha256::digest(seed.as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    let identity = Identity { shards, vnodes, id };
    write_identity_as(dir, &identity)?;
    Ok(identity)
}

/// Writes `identity` as the identity of `dir` (a copy of a directory
/// keeps the id its checkpoints and archives name).
pub fn write_identity_as(dir: &Path, identity: &Identity) -> Result<()> {
    let Identity { shards, vnodes, id } = identity;
    let path = dir.join(IDENTITY_FILE);
    let body = format!(
        "# written at creation; routing depends on it\nshards = {shards}\nvnodes = {vnodes}\nring = 1\nid = {id}\n"
    );
    let tmp = dir.join(format!("{IDENTITY_FILE}.tmp"));
    std::fs::write(&tmp, body)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| StorageError::Io { path, source: e })?;
    Ok(())
}

/// The catalog a primary starts from: the newest any shard has, with every
/// shard brought to it (a DDL interrupted by a stop, or a standby's copy
/// cut between one DDL's records, leaves some behind), and any table still
/// locked for a rewrite that never started (the process stopped first)
/// unlocked.
fn settle_catalog(stores: &[Arc<ShardStore>]) -> Result<Catalog> {
    let mut newest = stores
        .iter()
        .map(|s| s.catalog())
        .max_by_key(|c| c.version)
        .unwrap_or_default();
    if newest.tables.values().any(|t| t.locked) {
        for t in newest.tables.values_mut() {
            t.locked = false;
        }
        newest.version += 1;
    }
    for s in stores {
        if s.catalog().version < newest.version {
            tracing::warn!(
                shard = s.id(),
                "catching up a catalog left behind by an interrupted DDL"
            );
            s.execute(0, &Fragment::ApplyCatalog(newest.clone()))?;
        }
    }
    Ok(newest)
}

/// Runs each job on a thread of its own and returns their results in order;
/// the first error (or a panic, as an error) wins.
fn in_parallel<T, F>(jobs: impl Iterator<Item = F>) -> std::result::Result<Vec<T>, StorageError>
where
    T: Send,
    F: FnOnce() -> std::result::Result<T, StorageError> + Send,
{
    std::thread::scope(|scope| {
        let running: Vec<_> = jobs.map(|job| scope.spawn(job)).collect();
        running
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(StorageError::Codec("a shard thread panicked".into())))
            })
            .collect()
    })
}

/// Runs a fragment on `shard` without blocking the runtime: a write the
/// shard can log at once is awaited here, anything else runs on a blocking
/// thread.
async fn run_on(shard: Arc<dyn Shard>, txid: u64, fragment: Fragment) -> Result<FragmentOutput> {
    if let Some(started) = shard.try_write(txid, &fragment) {
        return Ok(started?.await?);
    }
    // A scan stops where its statement is cancelled or times out.
    let interrupt = crate::stop::interrupt();
    tokio::task::spawn_blocking(move || {
        fortress_storage::interrupt::scope(interrupt, || shard.execute(txid, &fragment))
    })
    .await
    .map_err(|e| ProxyError::new("XX000", format!("shard task failed: {e}")))?
    .map_err(ProxyError::from)
}

/// Each participant's outcome of phase two, in participant order, or the
/// fault that stopped it.
type PhaseTwoOutcome = Result<Vec<Result<FragmentOutput>>>;

/// Phase two of a decided commit, run where it can block: on the
/// coordinator's committer thread right after the decision's sync, or on
/// the blocking pool.
#[derive(Clone)]
struct PhaseTwo {
    coordinator: Arc<Coordinator>,
    shards: Vec<Arc<dyn Shard>>,
    txid: u64,
    commit_ts: Timestamp,
}

impl PhaseTwo {
    /// The participants commit one after another, the first alone before
    /// the crash tests' mid-phase fault point; once all have, the decision
    /// is queued to be forgotten.
    fn run(&self) -> PhaseTwoOutcome {
        let fault = |point| fault::hit(point).map_err(|f| ProxyError::new("XX000", f.to_string()));
        fault("2pc.after_decision")?;
        let frag = Fragment::CommitPrepared {
            txid: self.txid,
            commit_ts: self.commit_ts,
        };
        let mut out = Vec::with_capacity(self.shards.len());
        for (i, s) in self.shards.iter().enumerate() {
            if i == 1 {
                fault("2pc.mid_phase_two")?;
            }
            out.push(s.execute(self.txid, &frag).map_err(ProxyError::from));
        }
        if out.iter().all(Result::is_ok) {
            self.coordinator.retire(self.txid, self.shards.clone());
        }
        Ok(out)
    }
}

impl Cluster {
    /// Opens (creating if new) the shards under `opts.data_dir`, replays their
    /// logs and brings every shard's catalog to the newest version.
    pub fn open(opts: ClusterOptions) -> Result<Cluster> {
        let dir = &opts.data_dir;
        std::fs::create_dir_all(dir).map_err(|e| StorageError::Io {
            path: dir.clone(),
            source: e,
        })?;
        let identity = match read_identity(dir)? {
            Some(Identity {
                shards: s,
                vnodes: v,
                ..
            }) if (s, v) != (opts.shards, opts.vnodes) => {
                return Err(ProxyError::new(
                    "55000",
                    format!(
                        "{} was created with {s} shards and {v} vnodes; asked for {} and {} (resharding is not supported yet)",
                        dir.display(),
                        opts.shards,
                        opts.vnodes
                    ),
                ));
            }
            Some(identity) => identity,
            None => write_identity(dir, opts.shards, opts.vnodes)?,
        };
        let coordinator = Arc::new(Coordinator::open(
            &dir.join("coordinator"),
            opts.shard.wal.clone(),
        )?);
        let decisions = {
            let c = coordinator.clone();
            DecisionLog(Arc::new(move || c.sync()))
        };
        // Shards replay their logs in parallel.
        let stores = in_parallel((0..opts.shards).map(|i| {
            let sdir = dir.join(format!("shard-{i:03}"));
            let shard_opts = ShardOptions {
                decisions: Some(decisions.clone()),
                ..opts.shard.clone()
            };
            move || ShardStore::open(i, &sdir, shard_opts).map(Arc::new)
        }))?;
        // A standby changes nothing: its primary's log says what happened.
        // Its reads see the catalog every shard has (see `follow_apply`).
        let newest = match opts.standby {
            false => settle_catalog(&stores)?,
            true => stores
                .iter()
                .map(|s| s.catalog())
                .min_by_key(|c| c.version)
                .unwrap_or_default(),
        };
        let standby = if opts.standby {
            // Transactions left prepared are the primary's to decide; its
            // decisions arrive in the stream.
            for s in &stores {
                s.recovered();
            }
            Some(Arc::new(crate::standby::ReadPoint::open(
                dir,
                opts.shard.pins.clone(),
                &stores,
            )))
        } else {
            crate::recovery::resolve_in_doubt(&stores, &coordinator)?;
            coordinator.spawn_retirer();
            None
        };
        coordinator.spawn_committer();
        for s in &stores {
            s.spawn_gc(GC_EVERY);
            s.spawn_committer();
        }
        let shard_count = stores.len() as u32;
        let shards = stores.iter().map(|s| s.clone() as Arc<dyn Shard>).collect();
        let ring = Ring::new(opts.shards, opts.vnodes);
        Ok(Cluster {
            shards,
            stores,
            metrics: crate::metrics::Metrics::new(shard_count, ring.token_owners()),
            ring,
            clock: opts.shard.clock.clone(),
            pins: opts.shard.pins.clone(),
            coordinator,
            catalog: RwLock::new(Arc::new(newest)),
            ddl: tokio::sync::Mutex::new(()),
            // A standby's rows change under the cache, by replication.
            cache: crate::cache::ResultCache::new(match standby {
                Some(_) => std::time::Duration::ZERO,
                None => opts.cache_ttl,
            }),
            work_rows: opts.work_rows,
            work_bytes: opts.work_bytes,
            streams: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
            cipher: opts.shard.wal.cipher.clone(),
            id: identity.id,
            // Seeded from the clock so ids stay unique across restarts.
            next_txid: AtomicU64::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros() as u64)
                    .unwrap_or(1),
            ),
            locks: Arc::new(crate::locks::LockTable::default()),
            standby: RwLock::new(standby),
            following: Mutex::new(()),
            replication: RwLock::new(None),
            commit_wait: RwLock::new(None),
            fence: RwLock::new(None),
            peer_name: RwLock::new(None),
            writing: Default::default(),
        })
    }

    /// True while this cluster follows a primary: it takes no writes.
    pub fn is_standby(&self) -> bool {
        self.standby.read().expect("standby").is_some()
    }

    /// Takes one round from the primary (see [`crate::standby`]), first
    /// half: records for each log, by its index in [`Cluster::logs`], all
    /// up to a cut; logs them byte for byte and makes them durable: from here a restart replays them, so the round may be
    /// acknowledged to the primary. Nothing is visible until
    /// [`Cluster::follow_apply`].
    pub fn follow_log(&self, round: &[(usize, Vec<u8>)]) -> Result<LoggedRound> {
        let _following = self.following.lock().expect("following");
        if !self.is_standby() {
            return Err(ProxyError::new(
                "25006",
                "only a standby follows a primary's log",
            ));
        }
        let mut by_log: Vec<Vec<&[u8]>> = vec![Vec::new(); self.stores.len() + 1];
        for (log, bytes) in round {
            match by_log.get_mut(*log) {
                Some(chunks) => chunks.push(bytes),
                None => {
                    return Err(ProxyError::new(
                        "XX000",
                        format!("the primary sent records of log {log}, which this copy lacks"),
                    ))
                }
            }
        }
        let log_one = |log: usize, chunks: &[&[u8]]| -> StorageResult<()> {
            for bytes in chunks {
                match self.stores.get(log) {
                    Some(s) => {
                        s.follow_log(bytes)?;
                    }
                    None => {
                        self.coordinator.follow(bytes)?;
                    }
                }
            }
            Ok(())
        };
        // Each log is written and synced on its own thread: a round's
        // latency is one sync, not one per log.
        let busy: Vec<(usize, &Vec<&[u8]>)> = by_log
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.is_empty())
            .collect();
        match busy.as_slice() {
            [] => {}
            [(log, chunks)] => log_one(*log, chunks)?,
            _ => std::thread::scope(|scope| {
                let threads: Vec<_> = busy
                    .iter()
                    .map(|(log, chunks)| scope.spawn(move || log_one(*log, chunks)))
                    .collect();
                threads.into_iter().try_for_each(|t| {
                    t.join().map_err(|_| {
                        StorageError::Codec("a thread logging a round panicked".into())
                    })?
                })
            })?,
        }
        Ok(LoggedRound {
            records: !round.is_empty(),
        })
    }

    /// Applies a logged round, picks up catalog changes, and moves reads to
    /// its cut (every log's end `cut_ends`, taken at `cut_ts`) once every
    /// log stands exactly there, every record applied. Otherwise (a round
    /// logged in part, a record that did not apply) reads stay where they
    /// were, whole, and the error says why.
    pub fn follow_apply(
        &self,
        logged: LoggedRound,
        cut_ends: &[u64],
        cut_ts: Timestamp,
    ) -> Result<()> {
        let _following = self.following.lock().expect("following");
        let Some(read_point) = self.standby.read().expect("standby").clone() else {
            return Err(ProxyError::new(
                "25006",
                "only a standby follows a primary's log",
            ));
        };
        // Every shard: one that took records in a round whose apply was
        // cut short applies them now, before reads move past them.
        for s in &self.stores {
            s.follow_apply()?;
        }
        let ends = self.log_ends();
        if ends != cut_ends {
            return Err(ProxyError::new(
                "XX000",
                format!("the logs end at {ends:?}, not at the primary's cut {cut_ends:?}"),
            ));
        }
        if let Some(s) = self.stores.iter().find(|s| s.applied_lsn() != s.last_lsn()) {
            return Err(ProxyError::new(
                "XX000",
                format!(
                    "shard {} logged records through {} and applied them through {}",
                    s.id(),
                    s.last_lsn(),
                    s.applied_lsn()
                ),
            ));
        }
        // The catalog every shard has: a cut may fall between the shards'
        // records of one DDL statement.
        if let Some(oldest) = self.stores.iter().min_by_key(|s| s.catalog_version()) {
            if oldest.catalog_version() != self.catalog().version {
                self.set_catalog(oldest.catalog());
                self.cache.invalidate_all();
            }
        }
        read_point.advance(cut_ts, logged.records, &self.stores);
        Ok(())
    }

    /// The committed row versions this node wrote itself among `records`
    /// (decoded from shard `shard`'s log), for a multi-master peer, each
    /// stamped as `me` (see [`fortress_storage::conflict`]); versions a
    /// peer wrote are never sent back.
    pub fn changes_for_peer(
        &self,
        shard: usize,
        me: &str,
        records: &[fortress_storage::wal::Record],
    ) -> Result<Vec<PeerChange>> {
        let store = self.store(shard)?;
        let catalog = store.catalog();
        let changes = store.changes_for_peer(me, records)?;
        Ok(changes
            .into_iter()
            .filter_map(|c| {
                let table = catalog.by_id(c.table)?.name.clone();
                Some(PeerChange {
                    table,
                    key: c.key,
                    row: c.row,
                    stamp: c.stamp,
                })
            })
            .collect())
    }

    /// Applies a multi-master peer's row versions to shard `shard` (see
    /// [`ShardStore::apply_remote`]); 42P01 for a table this node lacks.
    pub fn apply_remote(
        &self,
        shard: usize,
        me: &str,
        resolver: fortress_storage::conflict::Resolver,
        changes: Vec<PeerChange>,
    ) -> Result<fortress_storage::RemoteApplied> {
        if self.is_standby() {
            return Err(ProxyError::new("25006", "a standby takes no peer's writes"));
        }
        let store = self.store(shard)?;
        let catalog = self.catalog();
        let mut mapped = Vec::with_capacity(changes.len());
        for c in changes {
            let def = catalog.tables.get(&c.table).ok_or_else(|| {
                ProxyError::new(
                    "42P01",
                    format!(
                        "a peer wrote to table \"{}\", which does not exist here: create every table on every peer",
                        c.table
                    ),
                )
            })?;
            mapped.push(fortress_storage::RemoteChange {
                table: def.id,
                key: c.key,
                row: c.row,
                stamp: c.stamp,
            });
        }
        let done = store.apply_remote(me, resolver, &mapped)?;
        if done.taken > 0 {
            self.cache.invalidate_all();
        }
        Ok(done)
    }

    /// Names this node among its multi-master peers (what
    /// [`Cluster::conflicts`] stamps its own versions with).
    pub fn set_peer_name(&self, name: &str) {
        *self.peer_name.write().expect("peer name") = Some(name.to_string());
    }

    /// The rows of `fortress_conflicts`: the siblings of every shard no
    /// later write resolved yet (none without peers).
    pub fn conflicts(&self) -> Result<Vec<Conflict>> {
        let Some(me) = self.peer_name.read().expect("peer name").clone() else {
            return Ok(Vec::new());
        };
        let me = me.as_str();
        let catalog = self.catalog();
        let mut out = Vec::new();
        for s in &self.stores {
            for (sib, visible, stamp) in s.siblings(me)? {
                let Some(def) = catalog.by_id(sib.table) else {
                    continue;
                };
                let key = sib
                    .row
                    .as_ref()
                    .or(visible.as_ref())
                    .map(|r| def.primary_key.iter().map(|&c| r[c].clone()).collect())
                    .unwrap_or_default();
                out.push(Conflict {
                    table: def.name.clone(),
                    key,
                    sibling: sib.row,
                    sibling_node: sib.stamp.node,
                    sibling_ts: Timestamp(sib.stamp.ts),
                    visible,
                    visible_node: stamp.node,
                    visible_ts: Timestamp(stamp.ts),
                });
            }
        }
        Ok(out)
    }

    fn store(&self, shard: usize) -> Result<&Arc<ShardStore>> {
        self.stores
            .get(shard)
            .ok_or_else(|| ProxyError::new("XX000", format!("there is no shard {shard}")))
    }

    /// Takes records of log `log` (by its index in [`Cluster::logs`]) from
    /// an archive, for a standby catching up where its primary no longer
    /// has them: logs them durably and applies them like a round's, without
    /// moving reads. [`Cluster::follow_archived_cut`] moves reads once
    /// every log reached the archive's cut.
    pub fn follow_archived(&self, log: usize, records: Vec<u8>) -> Result<()> {
        self.follow_log(&[(log, records)])?;
        if let Some(s) = self.stores.get(log) {
            s.follow_apply()?;
        }
        Ok(())
    }

    /// Moves a standby's reads to an archive's consistent cut (each log's
    /// end `ends`, taken at `ts`) once [`Cluster::follow_archived`] brought
    /// every log exactly there.
    pub fn follow_archived_cut(&self, ends: &[u64], ts: Timestamp) -> Result<()> {
        self.follow_apply(LoggedRound { records: true }, ends, ts)
    }

    /// Makes a standby a primary, in place: it applies what it has logged,
    /// decides the transactions its primary left prepared (as a restart
    /// would), and takes writes from then on, reading at the clock. The
    /// caller has stopped following the old primary first. 55000 if this
    /// cluster is not a standby.
    pub fn promote(&self) -> Result<()> {
        let _following = self.following.lock().expect("following");
        if !self.is_standby() {
            return Err(ProxyError::new("55000", "this node is not a standby"));
        }
        for s in &self.stores {
            s.follow_apply()?;
        }
        let catalog = settle_catalog(&self.stores)?;
        self.set_catalog(catalog);
        self.cache.invalidate_all();
        crate::recovery::resolve_in_doubt(&self.stores, &self.coordinator)?;
        self.coordinator.spawn_retirer();
        // Transaction ids go on from the clock, as after a restart.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        self.next_txid.fetch_max(now, Ordering::Relaxed);
        *self.standby.write().expect("standby") = None;
        *self.replication.write().expect("replication") = None;
        tracing::warn!("promoted: this node was a standby and now takes writes");
        Ok(())
    }

    /// Every log's last LSN, in [`Cluster::logs`] order.
    pub fn log_ends(&self) -> Vec<u64> {
        self.stores
            .iter()
            .map(|s| s.last_lsn())
            .chain(std::iter::once(self.coordinator.log().last_lsn()))
            .collect()
    }

    /// Makes every acknowledged write wait for `wait` (synchronous
    /// standbys).
    pub fn set_commit_wait(&self, wait: CommitWait) {
        *self.commit_wait.write().expect("commit wait") = Some(wait);
    }

    /// Called once a write committed here, before it is acknowledged:
    /// waits until it is wherever the replication mode requires.
    pub async fn replicated(&self) -> Result<()> {
        let wait = self.commit_wait.read().expect("commit wait").clone();
        match wait {
            None => Ok(()),
            Some(w) => w(self.log_ends()).await,
        }
    }

    /// Makes every write ask `fence` first (see [`WriteFence`]).
    pub fn set_write_fence(&self, fence: WriteFence) {
        *self.fence.write().expect("fence") = Some(fence);
    }

    /// Counts a write as running, then says whether it may run: a fence
    /// raised after this call sees it in [`Cluster::writes_running`] and
    /// can wait for it.
    pub fn begin_write(&self) -> (Writing<'_>, Option<String>) {
        self.writing.fetch_add(1, Ordering::SeqCst);
        (Writing(&self.writing), self.fenced())
    }

    /// Writes counted by [`Cluster::begin_write`] and not yet ended.
    pub fn writes_running(&self) -> usize {
        self.writing.load(Ordering::SeqCst)
    }

    /// Why writes are refused now, if they are.
    pub fn fenced(&self) -> Option<String> {
        self.fence_says(false)
    }

    /// Why a write made must not be acknowledged now (this node lost the
    /// write lease while making it), if so.
    pub fn fenced_at_ack(&self) -> Option<String> {
        self.fence_says(true)
    }

    fn fence_says(&self, ack: bool) -> Option<String> {
        let fence = self.fence.read().expect("fence").clone();
        fence.and_then(|f| f(ack))
    }

    /// The transactions committed in this node's logs after `ends` (each
    /// log's position, in [`Cluster::logs`] order), as `(txid, commit
    /// timestamp)`, each once: what a successor that took over at `ends`
    /// lacks.
    pub fn commits_after(&self, ends: &[u64]) -> Result<Vec<(u64, u64)>> {
        let cipher = self.cipher.as_deref();
        let mut all = Vec::new();
        for (s, after) in self.stores.iter().zip(ends) {
            all.extend(fortress_storage::shard::commits_after(
                s.log().dir(),
                *after,
                cipher,
            )?);
        }
        if let Some(after) = ends.get(self.stores.len()) {
            all.extend(crate::coordinator::commits_after(
                self.coordinator.log().dir(),
                *after,
                cipher,
            )?);
        }
        let mut seen = std::collections::HashMap::new();
        for (txid, ts) in all {
            let e = seen.entry(txid).or_insert(ts);
            *e = (*e).max(ts);
        }
        let mut out: Vec<(u64, u64)> = seen.into_iter().collect();
        out.sort_by_key(|&(txid, ts)| (ts, txid));
        Ok(out)
    }

    /// Registers what `SHOW fortress.replication` reports.
    pub fn set_replication_report(&self, report: ReplicationReport) {
        *self.replication.write().expect("replication") = Some(report);
    }

    /// The rows of `SHOW fortress.replication`.
    pub fn replication_rows(&self) -> Vec<crate::standby::ReplicationRow> {
        let report = self.replication.read().expect("replication").clone();
        report.map(|r| r()).unwrap_or_default()
    }

    /// Takes a checkpoint of every shard at one snapshot into `root/<id>`
    /// and returns its manifest. Writes go on meanwhile; DDL waits, so the
    /// catalog is the one the rows were written under. Every transaction
    /// committed at or before the snapshot is in it, none after, on every
    /// shard alike.
    pub async fn checkpoint(self: &Arc<Self>, root: &Path) -> Result<Manifest> {
        if self.is_standby() {
            // Its snapshot (the read point) may lag the logs it would
            // replay from: a checkpoint of it could miss rows.
            return Err(ProxyError::new(
                "25006",
                "a standby takes no checkpoints: take them on its primary",
            ));
        }
        let _ddl = self.ddl.lock().await;
        // Read before the snapshot: every record up to these LSNs carries an
        // earlier timestamp, so replay after a restore can start there.
        let after: Vec<_> = self.stores.iter().map(|s| s.last_lsn()).collect();
        let (ts, pin) = self.pinned_snapshot();
        let this = self.clone();
        let root = root.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let _pin = pin;
            this.write_checkpoint(ts, &after, &root)
        })
        .await
        .map_err(|e| ProxyError::new("XX000", format!("checkpoint task failed: {e}")))?
    }

    fn write_checkpoint(&self, ts: Timestamp, after: &[u64], root: &Path) -> Result<Manifest> {
        let created =
            chrono::DateTime::from_timestamp_micros(ts.wall_micros() as i64).unwrap_or_default();
        let id = created.format("%Y%m%dT%H%M%S%.6fZ").to_string();
        let tmp = root.join(format!("{id}.tmp"));
        let io = |path: &Path, e| ProxyError::from(StorageError::io(path, e));
        std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
        let cuts = in_parallel(self.stores.iter().zip(after).map(|(s, &after)| {
            let dir = tmp.join(format!("shard-{:03}", s.id()));
            move || s.dump(ts.0, after, &dir)
        }));
        // The log positions a cut names must survive a crash, or a restore
        // from it would skip records that later reuse those LSNs.
        let cuts = cuts.and_then(|c| {
            self.stores.iter().try_for_each(|s| s.sync_log())?;
            Ok(c)
        });
        let cuts = match cuts {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e.into());
            }
        };
        let manifest = Manifest {
            format: fortress_storage::checkpoint::FORMAT,
            id: id.clone(),
            cluster: self.id.clone(),
            created: created.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            snapshot: ts.0,
            ring: RingLayout {
                shards: self.shard_count(),
                vnodes: self.ring.vnodes(),
                version: 1,
            },
            shards: cuts,
            catalog: (*self.catalog()).clone(),
            sealed: self.cipher.is_some(),
        };
        manifest.write(&tmp, self.cipher.clone())?;
        fortress_storage::checkpoint::sync_dir(&tmp)?;
        let dest = root.join(&id);
        std::fs::rename(&tmp, &dest).map_err(|e| io(&dest, e))?;
        fortress_storage::checkpoint::sync_dir(root)?;
        Ok(manifest)
    }

    /// Each shard's last WAL position as `SHARD:LSN,...`.
    /// Every shard's row cache summed: hits, misses and bytes held.
    pub fn row_cache_stats(&self) -> (u64, u64, usize) {
        self.stores.iter().fold((0, 0, 0), |(h, m, b), s| {
            let (sh, sm, sb) = s.row_cache_stats();
            (h + sh, m + sm, b + sb)
        })
    }

    pub fn wal_positions(&self) -> String {
        self.stores
            .iter()
            .map(|s| format!("{}:{}", s.id(), s.last_lsn()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A consistent cut of the logs: every shard's end at one instant (see
    /// [`ShardStore::fence`]) with the clock then, and the coordinator's
    /// end read after it, so every decision a shard's commit record below
    /// its end depends on is below the coordinator's. Returns the ends in
    /// [`Cluster::logs`] order and the time.
    pub fn log_cut(&self) -> (Vec<u64>, Timestamp) {
        let (mut ends, ts) = ShardStore::fence(&self.stores);
        ends.push(self.coordinator.log().last_lsn());
        (ends, ts)
    }

    /// Every log of the data directory: the shards' in order, then the
    /// coordinator's.
    pub fn logs(&self) -> Vec<Log> {
        let shards = self.stores.iter().map(|s| Log {
            name: format!("shard-{:03}/wal", s.id()),
            source: LogSource::Shard(s.clone()),
        });
        shards
            .chain(std::iter::once(Log {
                name: "coordinator".into(),
                source: LogSource::Coordinator(self.coordinator.clone()),
            }))
            .collect()
    }

    /// The key sealing this cluster's logs and checkpoints, if encrypted.
    pub fn cipher(&self) -> Option<&Arc<fortress_storage::cipher::Cipher>> {
        self.cipher.as_ref()
    }

    /// The data directory's id, which its checkpoints carry.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The two-phase-commit decision log.
    pub fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    /// A transaction snapshot, pinned against garbage collection until the
    /// guard is dropped.
    pub fn pinned_snapshot(&self) -> (Timestamp, PinGuard) {
        if let Some(rp) = &*self.standby.read().expect("standby") {
            return rp.pinned();
        }
        let ts = self.clock.now();
        (ts, self.pins.pin(ts.0))
    }

    /// A fresh snapshot timestamp from the clock all shards share; on a
    /// standby, its read point.
    pub fn snapshot(&self) -> Timestamp {
        match &*self.standby.read().expect("standby") {
            Some(rp) => rp.get(),
            None => self.clock.now(),
        }
    }

    pub fn shard_count(&self) -> u32 {
        self.shards.len() as u32
    }

    /// The current catalog (shared; DDL swaps in a new one).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().expect("catalog").clone()
    }

    pub(crate) fn set_catalog(&self, c: Catalog) {
        *self.catalog.write().expect("catalog") = Arc::new(c);
    }

    /// What one statement may hold at the proxy (joins, grouping, sorting)
    /// and a join's result on a shard.
    pub fn work_limit(&self) -> fortress_storage::join::WorkLimit {
        fortress_storage::join::WorkLimit {
            rows: self.work_rows as u64,
            bytes: self.work_bytes as u64,
        }
    }

    /// The result cache of read-only statements.
    pub fn cache(&self) -> &crate::cache::ResultCache {
        &self.cache
    }

    /// Routing and per-shard request counters.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    pub(crate) fn txid(&self) -> u64 {
        self.next_txid.fetch_add(1, Ordering::Relaxed)
    }

    /// The shard `id`, counting a request to it.
    fn shard(&self, id: ShardId) -> Result<Arc<dyn Shard>> {
        self.metrics.record_request(id);
        crate::stop::note_shard(id, self.shard_count());
        self.shards
            .get(id as usize)
            .cloned()
            .ok_or_else(|| ProxyError::new("XX000", format!("no shard {id}")))
    }

    /// Runs one fragment on one shard, off the async runtime.
    pub async fn run(
        &self,
        shard: ShardId,
        txid: u64,
        fragment: Fragment,
    ) -> Result<FragmentOutput> {
        let s = self.shard(shard)?;
        if let Some(done) = s.try_read(&fragment) {
            return done.map_err(ProxyError::from);
        }
        // Boxed: a point read, answered above, keeps a small future.
        Box::pin(run_on(s, txid, fragment)).await
    }

    /// Phase two of a two-phase commit whose every participant prepared
    /// (see [`crate::coordinator`]). With `votes` (PREPAREs not yet
    /// durable) the decision is logged with them and waited for: that
    /// commits the transaction, and the coordinator's committer thread runs
    /// phase two ([`PhaseTwo`]) and releases the row `locks` as soon as its
    /// sync returns, so other writers of those rows do not wait for this
    /// connection's thread to wake. Without votes, every PREPARE is
    /// durable, which committed it already; the decision is only appended
    /// and phase two runs on the blocking pool. Gives each participant's
    /// outcome in order, or the fault that stopped phase two.
    pub async fn decide_commit(
        &self,
        txid: u64,
        commit_ts: Timestamp,
        participants: &[ShardId],
        votes: Vec<Vote>,
        locks: Option<Arc<HeldLocks>>,
    ) -> Result<Vec<Result<FragmentOutput>>> {
        let shards = participants
            .iter()
            .map(|&p| self.shard(p))
            .collect::<Result<Vec<_>>>()?;
        let phase_two = PhaseTwo {
            coordinator: self.coordinator.clone(),
            shards,
            txid,
            commit_ts,
        };
        if votes.is_empty() {
            if let Err(e) = self.coordinator.append_commit(txid, commit_ts) {
                // Committed all the same; a restart finds every PREPARE.
                tracing::warn!(txid, error = %e, "could not log a commit decision");
            }
        } else if let Some(done) = self.log_votes(&phase_two, votes, locks).await? {
            return done;
        }
        tokio::task::spawn_blocking(move || phase_two.run())
            .await
            .map_err(|e| ProxyError::new("XX000", format!("commit task failed: {e}")))?
    }

    /// Makes a commit carrying `votes` durable: logged with them. If they
    /// are too big for one record, or the log fails, every participant's
    /// PREPARE is synced instead, which commits it all the same (parallel
    /// commits, as for a bulk write set). 40003 if neither worked: the
    /// outcome is then a restart's to find. Gives phase two's outcome when
    /// the committer thread ran it (and released `locks`), `None` when it
    /// is still to run.
    async fn log_votes(
        &self,
        phase_two: &PhaseTwo,
        votes: Vec<Vote>,
        locks: Option<Arc<HeldLocks>>,
    ) -> Result<Option<PhaseTwoOutcome>> {
        let (txid, commit_ts) = (phase_two.txid, phase_two.commit_ts);
        let bytes: usize = votes.iter().map(|(_, v)| v.record.len()).sum();
        let coordinator = self.coordinator.clone();
        let blocking = |f: Box<dyn FnOnce() -> StorageResult<()> + Send>| async move {
            tokio::task::spawn_blocking(f)
                .await
                .map_err(|e| StorageError::Codec(format!("commit task failed: {e}")))
                .and_then(|r| r)
        };
        let logged = if bytes > MAX_VOTE_BYTES {
            Err(StorageError::Codec(format!(
                "{bytes} bytes of votes, over the {MAX_VOTE_BYTES} one record holds"
            )))
        } else if let Err(f) = fault::hit("2pc.log_votes") {
            Err(StorageError::Codec(f.to_string()))
        } else {
            match coordinator.append_commit_votes(txid, commit_ts, &votes) {
                Err(e) => Err(e),
                Ok(lsn) => {
                    let outcome: Arc<Mutex<Option<PhaseTwoOutcome>>> = Arc::default();
                    let then: OnDurable = {
                        let (phase_two, outcome) = (phase_two.clone(), outcome.clone());
                        Box::new(move || {
                            // A panic still answers the waiter, and frees the rows.
                            let run = std::panic::AssertUnwindSafe(|| phase_two.run());
                            let done = std::panic::catch_unwind(run).unwrap_or_else(|_| {
                                Err(ProxyError::new(
                                    "XX000",
                                    "phase two of a committed transaction panicked; a restart completes it",
                                ))
                            });
                            if let Some(locks) = &locks {
                                locks.release();
                            }
                            *outcome.lock().expect("phase two") = Some(done);
                        })
                    };
                    match coordinator.durable(lsn, Some(then)) {
                        Some(wait) => wait
                            .await
                            .map(|()| outcome.lock().expect("phase two").take()),
                        None => {
                            let c = coordinator.clone();
                            blocking(Box::new(move || c.sync_through(lsn)))
                                .await
                                .map(|()| None)
                        }
                    }
                }
            }
        };
        let why = match logged {
            Ok(done) => return Ok(done),
            Err(why) => why,
        };
        if bytes <= MAX_VOTE_BYTES {
            tracing::warn!(txid, error = %why, "could not log a commit with its votes; syncing its participants instead");
        }
        let shards = phase_two.shards.clone();
        let synced = blocking(Box::new(move || {
            for s in &shards {
                s.sync_log()?;
            }
            if let Err(e) = coordinator.append_commit(txid, commit_ts) {
                // Committed all the same; a restart finds every PREPARE.
                tracing::warn!(txid, error = %e, "could not log a commit decision");
            }
            Ok(())
        }))
        .await;
        synced.map(|()| None).map_err(|e| {
            ProxyError::new(
                "40003",
                format!("transaction outcome unknown: its commit could not be made durable ({why}; {e}); a restart decides it"),
            )
        })
    }

    /// Aborts a transaction whose prepare failed somewhere: the abort is
    /// logged durably first (a restart must not find every PREPARE and
    /// commit it), then every participant drops its PREPARE. 40003 if the
    /// abort could not be logged: the outcome is then a restart's to find.
    pub async fn abort_prepared(&self, txid: u64, participants: &[ShardId]) -> Result<()> {
        let coordinator = self.coordinator.clone();
        tokio::task::spawn_blocking(move || coordinator.log_abort(txid))
            .await
            .map_err(|e| StorageError::Codec(format!("abort task failed: {e}")))
            .and_then(|r| r)
            .map_err(|e| {
                ProxyError::new(
                    "40003",
                    format!("transaction outcome unknown: its abort could not be logged ({e}); a restart decides it"),
                )
            })?;
        let abort = Fragment::AbortPrepared { txid };
        let mut all_aborted = true;
        for r in self.scatter(participants, txid, &abort).await {
            if let Err(e) = r {
                all_aborted = false;
                tracing::warn!(txid, error = %e, "abort after a failed prepare; restart resolves it");
            }
        }
        // Forgotten like a commit once every participant's abort is durable.
        let shards = participants.iter().map(|&p| self.shard(p)).collect();
        if let (true, Ok(shards)) = (all_aborted, shards) {
            self.coordinator.retire(txid, shards);
        }
        Ok(())
    }

    /// Row locks of READ COMMITTED transactions.
    pub fn locks(&self) -> &Arc<crate::locks::LockTable> {
        &self.locks
    }

    /// Runs `fragment` on each of `shards` in parallel; results in shard order.
    pub async fn scatter(
        &self,
        shards: &[ShardId],
        txid: u64,
        fragment: &Fragment,
    ) -> Vec<Result<FragmentOutput>> {
        futures::future::join_all(shards.iter().map(|&s| self.run(s, txid, fragment.clone()))).await
    }

    /// Starts a streamed scan on each shard of `parts`. Each stream has a
    /// thread of its own while its reader reads; past `MAX_STREAMS` of
    /// them a shard's rows are computed up front instead, so idle readers
    /// can never tie up every thread. A result known to be `small` (a key
    /// lookup, a small LIMIT) is computed up front in parallel, sparing a
    /// thread start per statement.
    pub async fn stream(
        &self,
        parts: Vec<(ShardId, Fragment)>,
        small: bool,
    ) -> Result<Vec<ShardRows>> {
        if small {
            return self
                .scatter_each(parts)
                .await
                .into_iter()
                .map(|o| Ok(ShardRows::Ready(o?.into_rows())))
                .collect();
        }
        let mut out = Vec::with_capacity(parts.len());
        for (s, fragment) in parts {
            let shard = self
                .shards
                .get(s as usize)
                .cloned()
                .ok_or_else(|| ProxyError::new("XX000", format!("no shard {s}")))?;
            let started = match self.streams.clone().try_acquire_owned() {
                Ok(permit) => {
                    self.metrics.record_request(s);
                    crate::stream::start(shard, fragment.clone(), permit)
                }
                Err(_) => None,
            };
            out.push(match started {
                Some(rows) => rows,
                None => ShardRows::Ready(self.run(s, self.txid(), fragment).await?.into_rows()),
            });
        }
        Ok(out)
    }

    /// Runs each shard's own fragment in parallel; results in `parts` order.
    pub async fn scatter_each(
        &self,
        parts: Vec<(ShardId, Fragment)>,
    ) -> Vec<Result<FragmentOutput>> {
        let txid = self.txid();
        if parts.len() == 1 {
            let (s, f) = parts.into_iter().next().expect("one part");
            return vec![self.run(s, txid, f).await];
        }
        futures::future::join_all(parts.into_iter().map(|(s, f)| self.run(s, txid, f))).await
    }

    /// Routes a statement on `table` and counts a key-addressed request
    /// against the vnode it lands on.
    pub fn route(
        &self,
        table: &fortress_storage::TableDef,
        filter: Option<&fortress_storage::Expr>,
    ) -> crate::route::router::Route {
        let r = crate::route::router::route(&self.ring, table, filter);
        if let Some(v) = r.vnode {
            self.metrics.record_vnode(v);
        }
        r
    }

    /// Counts an inserted row against the vnode of its shard key (hash
    /// tables only).
    pub fn count_row(&self, table: &fortress_storage::TableDef, row: &fortress_storage::Row) {
        if table.strategy == fortress_storage::schema::Strategy::Hash && !table.replicated {
            let key = fortress_storage::keycodec::canonical(&row[table.shard_key]);
            self.metrics.record_vnode(self.ring.vnode_for_key(&key).0);
        }
    }

    /// What each shard holds now: its WAL position, its files' size and
    /// its live rows (counted at one snapshot, table by table: the cost of
    /// a `count(*)` over everything, so callers should not poll it fast).
    /// Not counted as requests in the routing metrics.
    pub async fn shard_status(&self) -> Result<Vec<ShardStatus>> {
        use fortress_storage::aggregate::{AggCall, AggFunc, Aggregate};
        let snapshot = self.snapshot();
        let catalog = self.catalog();
        let count = Aggregate {
            keys: Vec::new(),
            calls: vec![AggCall {
                func: AggFunc::Count,
                arg: None,
                distinct: false,
                arg_ty: None,
                filter: None,
            }],
        };
        let mut out = Vec::with_capacity(self.shards.len());
        for (shard, store) in self.shards.iter().zip(&self.stores) {
            let mut rows = 0u64;
            for table in catalog.tables.values() {
                let frag = Fragment::Aggregate {
                    table: table.id,
                    key_prefix: Vec::new(),
                    filter: None,
                    aggregate: count.clone(),
                    snapshot: Some(snapshot),
                };
                let parts = run_on(shard.clone(), 0, frag).await?.into_rows();
                let merged = fortress_storage::aggregate::merge_partials(&count, false, parts)?;
                if let Some(fortress_storage::Value::Int8(n)) =
                    merged.first().and_then(|r| r.first())
                {
                    rows += *n as u64;
                }
            }
            let dir = store.dir().to_path_buf();
            let bytes = tokio::task::spawn_blocking(move || dir_bytes(&dir))
                .await
                .unwrap_or(0);
            out.push(ShardStatus {
                id: store.id(),
                wal_lsn: store.last_lsn(),
                bytes,
                rows,
            });
        }
        Ok(out)
    }

    /// Each shard's WAL: (shard, last LSN, bytes appended and fdatasyncs
    /// since it opened). Cheap: counters only.
    pub fn wal_stats(&self) -> Vec<(ShardId, u64, u64, u64)> {
        self.stores
            .iter()
            .map(|s| {
                let (bytes, syncs) = s.wal_stats();
                (s.id(), s.last_lsn(), bytes, syncs)
            })
            .collect()
    }

    /// Each shard's readiness: `Err` says why it takes no writes.
    pub fn shard_health(&self) -> Vec<(ShardId, std::result::Result<(), String>)> {
        self.stores
            .iter()
            .map(|s| (s.id(), s.health().map_err(|e| e.to_string())))
            .collect()
    }

    /// Every shard id.
    pub fn all_shards(&self) -> Vec<ShardId> {
        (0..self.shard_count()).collect()
    }

    /// Flushes sled on every shard (clean shutdown; not needed for durability).
    pub fn flush(&self) {
        for s in &self.stores {
            if let Err(e) = s.flush() {
                tracing::warn!(shard = s.id(), error = %e, "flush on shutdown failed");
            }
        }
    }
}
