//! What a restart decides for two-phase transactions a crash left prepared.
//!
//! The coordinator's log decides where it holds the outcome. Otherwise the
//! participants do (parallel commits, see [`crate::coordinator`]): one that
//! replayed the transaction's commit or abort settles it; if every one of
//! them still holds its PREPARE, every vote was durable and the transaction
//! committed, at the greatest prepare timestamp; if one holds nothing, it
//! never prepared there and the transaction aborts.

use std::collections::BTreeMap;
use std::sync::Arc;

use fortress_storage::{Fragment, Shard, ShardStore, Timestamp, TxnId, TxnStatus};

use crate::coordinator::{Coordinator, Outcome};
use crate::error::Result;

/// Decides and resolves every transaction left prepared on `stores`.
/// Every decision is logged durably before any shard applies one, so a
/// shard's prepare floor never passes an outcome only that shard held.
pub fn resolve_in_doubt(stores: &[Arc<ShardStore>], coordinator: &Coordinator) -> Result<()> {
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
        s.recovered();
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
        Catalog, DataType, FragmentOutput, ShardOptions, TableDef, TxnWrite, Value,
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
    /// `participants`; gives each prepare timestamp.
    fn prepare(
        stores: &[Arc<ShardStore>],
        txid: TxnId,
        on: &[u32],
        participants: &[u32],
        v: i64,
    ) -> Vec<Timestamp> {
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
                };
                match stores[s as usize].execute(txid, &frag).unwrap() {
                    FragmentOutput::Prepared { ts } => ts,
                    other => panic!("prepare answered {other:?}"),
                }
            })
            .collect()
    }

    /// The value of row `txid` on shard `s`, if it is there.
    fn row(stores: &[Arc<ShardStore>], s: usize, txid: TxnId) -> Option<i64> {
        let scan = Fragment::Scan {
            table: 1,
            key_prefix: vec![Value::Int8(txid as i64)],
            filter: None,
            projection: Vec::new(),
            order_by: Vec::new(),
            limit: None,
            snapshot: None,
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
        assert_eq!(c.outcome(10), Some(Some(ts[0].max(ts[1]))));
        assert_eq!((row(&stores, 0, 11), row(&stores, 1, 11)), (None, None));
        assert_eq!((row(&stores, 0, 12), row(&stores, 1, 12)), (None, None));
        assert_eq!(
            (row(&stores, 0, 13), row(&stores, 1, 13)),
            (Some(130), Some(130))
        );
        assert_eq!(c.outcome(13), Some(Some(Timestamp(ts13[1].0 + 5))));
        assert_eq!(row(&stores, 2, 14), None);
        // Every decision is logged: a second restart decides the same.
        drop((stores, c));
        let (stores, c) = open(dir.path(), 3);
        assert_eq!(c.outcome(11), Some(None));
        assert_eq!(row(&stores, 0, 10), Some(100));
    }
}
