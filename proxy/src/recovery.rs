//! What a restart decides for two-phase transactions a crash left prepared.
//!
//! The coordinator's log decides where it holds the outcome. Otherwise the
//! participants do (parallel commits, see [`crate::coordinator`]): one that
//! replayed the transaction's commit or abort settles it; if every one of
//! them still holds its PREPARE, every vote was durable and the transaction
//! committed, at the greatest prepare timestamp; if one holds nothing, it
//! never prepared there and the transaction aborts.
//!
//! A commit logged with its votes (see [`crate::coordinator`]) first has
//! every vote a participant lost with its log's unsynced tail logged there
//! again, so each participant holds its PREPARE before anything is decided.
//! Once all is resolved every participant's log is synced and every
//! decision forgotten: a vote's LSN then always names a record of the log
//! as it stands, never one a lost tail freed for another.

use std::collections::BTreeMap;
use std::sync::Arc;

use fortress_storage::{Fragment, Shard, ShardStore, Timestamp, TxnId, TxnStatus};

use crate::coordinator::{Coordinator, Outcome};
use crate::error::Result;

/// Decides and resolves every transaction left prepared on `stores`.
/// Every decision is logged durably before any shard applies one, so a
/// shard's prepare floor never passes an outcome only that shard held.
pub fn resolve_in_doubt(stores: &[Arc<ShardStore>], coordinator: &Coordinator) -> Result<()> {
    restore_votes(stores, coordinator)?;
    let mut decided: BTreeMap<TxnId, Outcome> = BTreeMap::new();
    for s in stores {
        for txid in s.in_doubt() {
            decided
                .entry(txid)
                .or_insert_with(|| decide(txid, stores, coordinator));
        }
    }
    for (&txid, &outcome) in &decided {
        match outcome {
            Some(commit_ts) => coordinator.log_commit(txid, commit_ts)?,
            None => coordinator.log_abort(txid)?,
        }
    }
    for s in stores {
        for txid in s.in_doubt() {
            let fragment = match decided.get(&txid).copied().flatten() {
                Some(commit_ts) => Fragment::CommitPrepared { txid, commit_ts },
                None => Fragment::AbortPrepared { txid },
            };
            tracing::warn!(shard = s.id(), txid, outcome = ?fragment, "resolving in-doubt transaction");
            s.execute(txid, &fragment)?;
        }
    }
    for s in stores {
        s.sync_log()?;
    }
    coordinator.retire_all()?;
    for s in stores {
        s.recovered();
    }
    Ok(())
}

/// Logs again on its participant every vote a commit carries that the
/// participant's log lost: neither its replay knows the transaction nor
/// does its log hold the record where the vote was given.
fn restore_votes(stores: &[Arc<ShardStore>], coordinator: &Coordinator) -> Result<()> {
    for (txid, commit_ts, votes) in coordinator.logged_votes()? {
        for (shard, vote) in votes {
            let Some(s) = stores.get(shard as usize) else {
                continue;
            };
            if s.txn_status(txid) != TxnStatus::Unknown || s.holds_record(vote.lsn, txid)? {
                continue;
            }
            tracing::warn!(
                shard,
                txid,
                "a vote was lost with the log's tail; logging it again"
            );
            s.restore_vote(txid, commit_ts, &vote.record)?;
        }
    }
    Ok(())
}

/// The outcome of `txid`, prepared on at least one of `stores`.
fn decide(txid: TxnId, stores: &[Arc<ShardStore>], coordinator: &Coordinator) -> Outcome {
    if let Some(outcome) = coordinator.outcome(txid) {
        return outcome;
    }
    let participants = stores.iter().find_map(|s| match s.txn_status(txid) {
        TxnStatus::Prepared { participants, .. } if !participants.is_empty() => Some(participants),
        _ => None,
    });
    // A PREPARE from before participants were logged: presumed abort.
    let participants = participants?;
    let mut commit_ts = Timestamp(0);
    for p in participants {
        let status = stores
            .get(p as usize)
            .map_or(TxnStatus::Unknown, |s| s.txn_status(txid));
        match status {
            TxnStatus::Prepared { ts, .. } => commit_ts = commit_ts.max(ts),
            TxnStatus::Committed(ts) => return Some(ts),
            TxnStatus::Aborted | TxnStatus::Unknown => return None,
        }
    }
    Some(commit_ts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fortress_storage::schema::ColumnDef;
    use fortress_storage::wal::WalOptions;
    use fortress_storage::{
        Catalog, DataType, FragmentOutput, LoggedVote, ShardOptions, TableDef, TxnWrite, Value,
    };
    use std::path::Path;

    fn catalog() -> Catalog {
        let t = TableDef::new(
            1,
            "t",
            vec![
                ColumnDef::new("id", DataType::Int8),
                ColumnDef::new("v", DataType::Int8),
            ],
            vec![0],
        );
        let mut c = Catalog {
            version: 1,
            next_table_id: 1,
            ..Catalog::default()
        };
        c.tables.insert("t".into(), t);
        c
    }

    fn open(dir: &Path, shards: u32) -> (Vec<Arc<ShardStore>>, Coordinator) {
        let stores = (0..shards)
            .map(|i| {
                let path = dir.join(format!("s{i}"));
                Arc::new(ShardStore::open(i, &path, ShardOptions::default()).unwrap())
            })
            .collect();
        let c = Coordinator::open(&dir.join("c"), WalOptions::default()).unwrap();
        (stores, c)
    }

    /// Prepares `txid` writing row `id` = `v` on each of `on`, naming
    /// `participants`, each PREPARE durable; gives each prepare timestamp.
    fn prepare(
        stores: &[Arc<ShardStore>],
        txid: TxnId,
        on: &[u32],
        participants: &[u32],
        v: i64,
    ) -> Vec<Timestamp> {
        prepare_voting(stores, txid, on, participants, v, true)
            .into_iter()
            .map(|(ts, _)| ts)
            .collect()
    }

    /// [`prepare`], with each vote given before or after its PREPARE is
    /// durable; gives each prepare timestamp and vote.
    fn prepare_voting(
        stores: &[Arc<ShardStore>],
        txid: TxnId,
        on: &[u32],
        participants: &[u32],
        v: i64,
        durable_vote: bool,
    ) -> Vec<(Timestamp, Option<LoggedVote>)> {
        on.iter()
            .map(|&s| {
                let frag = Fragment::Prepare {
                    txid,
                    snapshot: Timestamp(1),
                    writes: vec![TxnWrite {
                        table: 1,
                        key: vec![Value::Int8(txid as i64)],
                        row: Some(vec![Value::Int8(txid as i64), Value::Int8(v)]),
                        insert: true,
                        read_ts: None,
                    }],
                    participants: participants.to_vec(),
                    durable_vote,
                };
                match stores[s as usize].execute(txid, &frag).unwrap() {
                    FragmentOutput::Prepared { ts, vote } => (ts, vote),
                    other => panic!("prepare answered {other:?}"),
                }
            })
            .collect()
    }

    /// The value of row `txid` on shard `s`, if it is there.
    fn row(stores: &[Arc<ShardStore>], s: usize, txid: TxnId) -> Option<i64> {
        row_at(stores, s, txid, None)
    }

    /// [`row`] as of `snapshot` (the latest without).
    fn row_at(
        stores: &[Arc<ShardStore>],
        s: usize,
        txid: TxnId,
        snapshot: Option<Timestamp>,
    ) -> Option<i64> {
        let scan = Fragment::Scan {
            table: 1,
            key_prefix: vec![Value::Int8(txid as i64)],
            filter: None,
            projection: Vec::new(),
            order_by: Vec::new(),
            limit: None,
            snapshot,
        };
        let rows = stores[s].execute(0, &scan).unwrap().into_rows();
        rows.first().map(|r| r[1].as_i64().unwrap())
    }

    #[test]
    fn a_restart_commits_what_every_participant_voted_for_and_aborts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (ts, ts13) = {
            let (stores, c) = open(dir.path(), 3);
            for s in &stores {
                s.execute(0, &Fragment::ApplyCatalog(catalog())).unwrap();
            }
            // 10: every participant voted, no decision logged: committed.
            let ts = prepare(&stores, 10, &[0, 1], &[0, 1], 100);
            // 11: shard 1 never got its PREPARE: aborted.
            prepare(&stores, 11, &[0], &[0, 1], 110);
            // 12: every vote in, but the abort was logged: aborted.
            prepare(&stores, 12, &[0, 1], &[0, 1], 120);
            c.log_abort(12).unwrap();
            // 13: shard 1 applied the commit before the crash (its log
            // holds it), shard 0 did not: committed at that timestamp.
            let ts13 = prepare(&stores, 13, &[0, 1], &[0, 1], 130);
            let commit = Fragment::CommitPrepared {
                txid: 13,
                commit_ts: Timestamp(ts13[1].0 + 5),
            };
            stores[1].execute(13, &commit).unwrap();
            // 14: a PREPARE that does not name its participants (an older
            // log) and no decision: presumed abort.
            prepare(&stores, 14, &[2], &[], 140);
            (ts, ts13)
        };
        let (stores, c) = open(dir.path(), 3);
        resolve_in_doubt(&stores, &c).unwrap();
        for s in &stores {
            assert!(s.in_doubt().is_empty());
        }
        assert_eq!(
            (row(&stores, 0, 10), row(&stores, 1, 10)),
            (Some(100), Some(100))
        );
        // At the greatest prepare timestamp.
        let at = ts[0].max(ts[1]);
        assert_eq!(row_at(&stores, 0, 10, Some(Timestamp(at.0 - 1))), None);
        assert_eq!(row_at(&stores, 0, 10, Some(at)), Some(100));
        assert_eq!((row(&stores, 0, 11), row(&stores, 1, 11)), (None, None));
        assert_eq!((row(&stores, 0, 12), row(&stores, 1, 12)), (None, None));
        assert_eq!(
            (row(&stores, 0, 13), row(&stores, 1, 13)),
            (Some(130), Some(130))
        );
        let at = Timestamp(ts13[1].0 + 5);
        assert_eq!(row_at(&stores, 0, 13, Some(Timestamp(at.0 - 1))), None);
        assert_eq!(row_at(&stores, 0, 13, Some(at)), Some(130));
        assert_eq!(row(&stores, 2, 14), None);
        // Every participant holds every outcome durably, so the decisions
        // are forgotten, and a second restart finds nothing to decide.
        for txid in 10..=14 {
            assert_eq!(c.outcome(txid), None, "{txid}");
        }
        drop((stores, c));
        let (stores, c) = open(dir.path(), 3);
        for s in &stores {
            assert!(s.in_doubt().is_empty());
        }
        resolve_in_doubt(&stores, &c).unwrap();
        assert_eq!(row(&stores, 0, 10), Some(100));
        assert_eq!(row(&stores, 1, 13), Some(130));
        assert_eq!(row(&stores, 0, 11), None);
    }

    /// Copies the flat directory `from` (a log's segments) to `to`.
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }

    #[test]
    fn a_commit_logged_with_its_votes_is_redone_where_a_crash_lost_the_prepare() {
        let dir = tempfile::tempdir().unwrap();
        let wal1 = dir.path().join("s1").join("wal");
        let before = dir.path().join("s1-wal-before");
        let commit_ts = {
            let (stores, c) = open(dir.path(), 2);
            for s in &stores {
                s.execute(0, &Fragment::ApplyCatalog(catalog())).unwrap();
            }
            copy_dir(&wal1, &before);
            let prepared = prepare_voting(&stores, 20, &[0, 1], &[0, 1], 200, false);
            let commit_ts = prepared.iter().map(|(ts, _)| *ts).max().unwrap();
            let votes: Vec<_> = prepared
                .into_iter()
                .zip([0, 1])
                .map(|((_, vote), shard)| (shard, vote.expect("a vote not yet durable")))
                .collect();
            let lsn = c.append_commit_votes(20, commit_ts, &votes).unwrap();
            c.sync_through(lsn).unwrap();
            // The crash comes before phase two.
            commit_ts
        };
        // Shard 1's disk never got the tail that held its PREPARE.
        std::fs::remove_dir_all(&wal1).unwrap();
        copy_dir(&before, &wal1);
        let (stores, c) = open(dir.path(), 2);
        assert_eq!(stores[1].txn_status(20), TxnStatus::Unknown);
        assert_eq!(stores[0].in_doubt(), vec![20]);
        resolve_in_doubt(&stores, &c).unwrap();
        assert_eq!(
            (row(&stores, 0, 20), row(&stores, 1, 20)),
            (Some(200), Some(200))
        );
        // The redone PREPARE commits at the logged timestamp.
        let before_commit = Some(Timestamp(commit_ts.0 - 1));
        assert_eq!(row_at(&stores, 1, 20, before_commit), None);
        assert_eq!(row_at(&stores, 1, 20, Some(commit_ts)), Some(200));
        assert_eq!(c.outcome(20), None, "done: both logs hold the commit");
        // A second restart neither loses the commit nor logs it again.
        let ends: Vec<_> = stores.iter().map(|s| s.last_lsn()).collect();
        drop((stores, c));
        let (stores, c) = open(dir.path(), 2);
        resolve_in_doubt(&stores, &c).unwrap();
        assert_eq!(
            (row(&stores, 0, 20), row(&stores, 1, 20)),
            (Some(200), Some(200))
        );
        let again: Vec<_> = stores.iter().map(|s| s.last_lsn()).collect();
        assert_eq!(again, ends);
    }
}
