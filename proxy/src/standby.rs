//! A cluster in standby mode: its logs follow a primary's, round by round,
//! it takes no writes of its own (25006), and every read sees the last
//! round applied, whole.
//!
//! **Format.** `standby.cut` in the data directory: the time of the last
//! cut applied, as a decimal hybrid timestamp, rewritten (by rename, unsynced: it is a
//! hint) after each round that carried records.
//!
//! **Read point.** A round's records are every log's records up to a cut
//! the primary took at one instant (see [`crate::Cluster::log_cut`]):
//! each record before it is older than the cut's time, each after it
//! newer. Reads therefore run at the cut's time, or just below the oldest
//! transaction still prepared on some shard: a two-phase commit whose
//! COMMIT PREPARED reached one participant's copy in this round and
//! reaches another's only in the next commits at or above its PREPAREs,
//! so it stays invisible on both until both have it.
//!
//! **Recovery rule.** A standby that stopped part way through applying a
//! round reopens at the last cut it recorded: the part of the next round
//! it applied is newer than that cut, or a commit of a transaction still
//! prepared elsewhere, so the read point hides it. Its logs are then
//! completed by the next round the primary sends.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fortress_storage::clock::Timestamp;
use fortress_storage::mvcc::{PinGuard, SnapshotPins};
use fortress_storage::ShardStore;
use std::sync::Arc;

/// The file in a standby's data directory holding its last cut.
pub const CUT_FILE: &str = "standby.cut";

/// The read point of a standby, pinned against garbage collection (the
/// standby's clock runs on while its primary is away; its read point may
/// fall behind the collection's grace period, and must stay readable).
pub(crate) struct ReadPoint {
    pins: Arc<SnapshotPins>,
    file: PathBuf,
    /// The last cut applied, and the read point with its pin.
    state: Mutex<(Timestamp, Timestamp, PinGuard)>,
}

impl ReadPoint {
    /// The read point a standby reopens at: the last cut it recorded (0,
    /// nothing visible, before its first round).
    pub(crate) fn open(dir: &Path, pins: Arc<SnapshotPins>, stores: &[Arc<ShardStore>]) -> Self {
        let file = dir.join(CUT_FILE);
        let cut = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map_or(Timestamp(0), Timestamp);
        if cut == Timestamp(0) && stores.iter().any(|s| s.last_lsn() > 0) {
            tracing::warn!(
                "{} has no record of the last cut it applied: reads see nothing until the primary's next round",
                dir.display()
            );
        }
        let read = below_prepared(cut, stores);
        let pin = pins.pin(read.0);
        ReadPoint {
            pins,
            file,
            state: Mutex::new((cut, read, pin)),
        }
    }

    /// Where reads run now.
    pub(crate) fn get(&self) -> Timestamp {
        self.state.lock().expect("read point").1
    }

    /// Where reads run now, pinned against garbage collection before the
    /// read point can move on.
    pub(crate) fn pinned(&self) -> (Timestamp, PinGuard) {
        let st = self.state.lock().expect("read point");
        (st.1, self.pins.pin(st.1 .0))
    }

    /// Moves reads to cut `ts`, once every log holds the round up to it.
    /// `records` says whether the round carried any (then the cut is
    /// recorded for a restart).
    pub(crate) fn advance(&self, ts: Timestamp, records: bool, stores: &[Arc<ShardStore>]) {
        let read = below_prepared(ts, stores);
        let pin = self.pins.pin(read.0);
        {
            let mut st = self.state.lock().expect("read point");
            if ts <= st.0 {
                return;
            }
            // The old pin drops after the new one is taken.
            *st = (ts, read, pin);
        }
        if records {
            self.save(ts);
        }
    }

    fn save(&self, ts: Timestamp) {
        if let Err(e) = save_cut(&self.file, ts) {
            tracing::warn!(error = %e, "could not record the standby's last cut");
        }
    }
}

fn save_cut(file: &Path, ts: Timestamp) -> std::io::Result<()> {
    let tmp = file.with_extension("cut.tmp");
    std::fs::write(&tmp, ts.0.to_string())?;
    std::fs::rename(&tmp, file)
}

/// Records in the data directory `dir` of a new standby copy that its logs
/// stand at a cut taken at `ts` (a copy made from an archive, whose
/// consistent point that is): its reads open there.
pub fn record_cut(dir: &Path, ts: Timestamp) -> std::io::Result<()> {
    save_cut(&dir.join(CUT_FILE), ts)
}

/// `cut`, or just below the oldest transaction prepared and undecided on
/// any shard, whichever is older.
fn below_prepared(cut: Timestamp, stores: &[Arc<ShardStore>]) -> Timestamp {
    stores
        .iter()
        .filter_map(|s| s.oldest_prepared_ts())
        .map(|t| Timestamp(t.0.saturating_sub(1)))
        .fold(cut, Timestamp::min)
}

/// One row of `SHOW fortress.replication`: a standby streaming from this
/// node, or, on a standby, its primary.
#[derive(Clone, Debug)]
pub struct ReplicationRow {
    /// The standby's name, or the primary's address.
    pub name: String,
    /// What the peer is to this node: `standby` or `primary`.
    pub role: String,
    /// `streaming`, `connecting`, or why not.
    pub state: String,
    /// `async` or `sync`.
    pub mode: String,
    /// Each log's last LSN the standby has made durable (`shard:lsn,...`).
    pub positions: String,
    /// On a primary, WAL bytes sent to the standby and not yet
    /// acknowledged; on a standby, bytes received and not yet applied.
    pub lag_bytes: u64,
    /// On a primary, the age of the oldest round the standby has not
    /// acknowledged; on a standby, how old its reads are. NaN before the
    /// first round.
    pub lag_seconds: f64,
}
