//! Shard store behaviour through the public `Shard` interface: durability
//! across reopen, WAL replay after the applied LSN, concurrent writers.

use std::path::Path;
use std::sync::Arc;

use fortress_storage::schema::ColumnDef;
use fortress_storage::{
    BinaryOp, Catalog, DataType, Expr, Fragment, FragmentOutput, Shard, ShardOptions, ShardStore,
    TableDef, TableId, TxnWrite, Value,
};

fn catalog() -> Catalog {
    let col = |n: &str, ty, nullable| ColumnDef {
        nullable,
        ..ColumnDef::new(n, ty)
    };
    let t = TableDef::new(
        1,
        "t",
        vec![
            col("id", DataType::Int8, false),
            col("v", DataType::Int8, true),
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

fn open(dir: &Path) -> ShardStore {
    ShardStore::open(0, dir, ShardOptions::default()).unwrap()
}

fn insert(s: &ShardStore, ids: std::ops::Range<i64>) {
    let rows = ids
        .map(|i| vec![Value::Int8(i), Value::Int8(i * 10)])
        .collect();
    s.execute(1, &Fragment::Insert { table: 1, rows }).unwrap();
}

/// `(id, v)` of every row at `snapshot` (`None`: latest), or the SQLSTATE.
fn scan(
    s: &ShardStore,
    snapshot: Option<fortress_storage::Timestamp>,
) -> Result<Vec<(i64, i64)>, String> {
    scan_where(s, snapshot, None)
}

/// [`scan`] of the rows `filter` passes.
fn scan_where(
    s: &ShardStore,
    snapshot: Option<fortress_storage::Timestamp>,
    filter: Option<Expr>,
) -> Result<Vec<(i64, i64)>, String> {
    let out = s
        .execute(
            1,
            &Fragment::Scan {
                table: 1,
                key_prefix: vec![],
                filter,
                projection: Vec::new(),
                order_by: vec![],
                limit: None,
                snapshot,
            },
        )
        .map_err(|e| e.sql_state().to_string())?;
    let FragmentOutput::Rows(rows) = out else {
        panic!("scan returned {out:?}")
    };
    Ok(rows
        .iter()
        .map(|r| (r[0].as_i64().unwrap(), r[1].as_i64().unwrap_or(-1)))
        .collect())
}

/// A scan of the row of `table` whose one-column key is `id`.
fn point(table: TableId, id: i64, snapshot: Option<fortress_storage::Timestamp>) -> Fragment {
    Fragment::Scan {
        table,
        key_prefix: vec![Value::Int8(id)],
        filter: None,
        projection: Vec::new(),
        order_by: vec![],
        limit: None,
        snapshot,
    }
}

fn rows(s: &ShardStore) -> Vec<(i64, i64)> {
    scan(s, None).unwrap()
}

/// `col = v`.
fn col_is(col: usize, v: i64) -> Expr {
    Expr::binary(
        BinaryOp::Eq,
        Expr::Column(col),
        Expr::Literal(Value::Int8(v)),
    )
}

/// Deletes the row whose id is `id`.
fn delete_id(s: &ShardStore, id: i64) {
    let del = Fragment::Delete {
        table: 1,
        key_prefix: vec![],
        filter: Some(col_is(0, id)),
    };
    s.execute(1, &del).unwrap();
}

fn add_to_v(s: &ShardStore, id: Option<i64>, delta: i64) -> u64 {
    let filter = id.map(|i| col_is(0, i));
    let assign = Expr::binary(
        BinaryOp::Plus,
        Expr::Column(1),
        Expr::Literal(Value::Int8(delta)),
    );
    match s
        .execute(
            1,
            &Fragment::Update {
                table: 1,
                key_prefix: vec![],
                filter,
                assignments: vec![(1, assign)],
            },
        )
        .unwrap()
    {
        FragmentOutput::Count(n) => n,
        other => panic!("update returned {other:?}"),
    }
}

#[test]
fn writes_survive_reopen_and_scans_are_key_ordered() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        s.execute(1, &Fragment::ApplyCatalog(catalog())).unwrap();
        insert(&s, 50..100);
        insert(&s, 0..50);
        assert_eq!(add_to_v(&s, Some(7), 1), 1);
        let del = Fragment::Delete {
            table: 1,
            key_prefix: vec![],
            filter: Some(Expr::binary(
                BinaryOp::GtEq,
                Expr::Column(0),
                Expr::Literal(Value::Int8(90)),
            )),
        };
        assert_eq!(s.execute(1, &del).unwrap(), FragmentOutput::Count(10));
    }
    for _ in 0..2 {
        let s = open(dir.path());
        let got = rows(&s);
        assert_eq!(got.len(), 90);
        assert!(
            got.windows(2).all(|w| w[0].0 < w[1].0),
            "scan must be in key order"
        );
        assert_eq!(got[7], (7, 71));
        assert_eq!(s.catalog(), catalog());
    }
}

#[test]
fn replay_from_an_older_sled_state_reaches_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let stale = dir.path().join("db-stale");
    {
        let s = open(dir.path());
        s.execute(1, &Fragment::ApplyCatalog(catalog())).unwrap();
        insert(&s, 0..20);
        s.flush().unwrap();
    }
    copy_dir(&db, &stale);
    let expected = {
        let s = open(dir.path());
        insert(&s, 20..40);
        add_to_v(&s, None, 5);
        add_to_v(&s, Some(3), 100);
        s.flush().unwrap();
        rows(&s)
    };
    // sled lost everything after the copy: the WAL brings it back, and
    // records the stale state already held are not applied twice.
    std::fs::remove_dir_all(&db).unwrap();
    std::fs::rename(&stale, &db).unwrap();
    assert_eq!(rows(&open(dir.path())), expected);
    // No sled state at all: a full replay gives the same rows again.
    std::fs::remove_dir_all(&db).unwrap();
    let s = open(dir.path());
    assert_eq!(rows(&s), expected);
    assert_eq!(expected[3], (3, 30 + 5 + 100));
}

#[test]
fn concurrent_updates_of_one_row_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(dir.path()));
    s.execute(1, &Fragment::ApplyCatalog(catalog())).unwrap();
    insert(&s, 0..1);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    assert_eq!(add_to_v(&s, Some(0), 1), 1);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(rows(&s), vec![(0, 400)]);
}

#[test]
fn duplicate_and_not_null_are_rejected_without_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.execute(1, &Fragment::ApplyCatalog(catalog())).unwrap();
    insert(&s, 0..3);
    let before = s.last_lsn();
    let dup = Fragment::Insert {
        table: 1,
        rows: vec![
            vec![Value::Int8(9), Value::Null],
            vec![Value::Int8(1), Value::Null],
        ],
    };
    assert_eq!(s.execute(1, &dup).unwrap_err().sql_state(), "23505");
    let null_key = Fragment::Insert {
        table: 1,
        rows: vec![vec![Value::Null, Value::Int8(1)]],
    };
    assert_eq!(s.execute(1, &null_key).unwrap_err().sql_state(), "23502");
    assert_eq!(s.last_lsn(), before, "rejected statements write nothing");
    assert_eq!(rows(&s).len(), 3);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn commit_timestamps_survive_a_wall_clock_that_went_back() {
    use fortress_storage::HybridClock;
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let s = open(dir.path());
        s.execute(1, &Fragment::ApplyCatalog(catalog())).unwrap();
        insert(&s, 0..10);
        s.flush().unwrap();
        // The default options' clock issued the commit timestamps; a fresh
        // clock reading bounds them from above.
        HybridClock::default().now()
    };
    let hour_ago = Arc::new(HybridClock::default());
    hour_ago.set_skew(-3_600_000_000);
    let opts = ShardOptions {
        clock: hour_ago.clone(),
        ..ShardOptions::default()
    };
    let s = ShardStore::open(0, dir.path(), opts).unwrap();
    let after = hour_ago.now();
    assert!(
        after.wall_micros() + 5_000_000 > first.wall_micros(),
        "the reopened shard's clock must not run an hour behind its own data"
    );
    // New writes still take effect over the old versions.
    assert_eq!(add_to_v(&s, Some(2), 1), 1);
    assert_eq!(rows(&s)[2], (2, 21));
}

fn scan_at(
    s: &ShardStore,
    snapshot: fortress_storage::Timestamp,
) -> Result<Vec<(i64, i64)>, String> {
    scan(s, Some(snapshot))
}

#[test]
fn snapshots_see_the_past_and_gc_reclaims_what_none_can_see() {
    use fortress_storage::HybridClock;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(HybridClock::default());
    let opts = ShardOptions {
        clock: clock.clone(),
        gc_grace: std::time::Duration::ZERO,
        ..ShardOptions::default()
    };
    let s = ShardStore::open(0, dir.path(), opts.clone()).unwrap();
    s.execute(1, &Fragment::ApplyCatalog(catalog())).unwrap();
    insert(&s, 0..3);
    let before = clock.now();
    add_to_v(&s, Some(0), 1);
    delete_id(&s, 1);
    assert_eq!(scan_at(&s, before).unwrap(), vec![(0, 0), (1, 10), (2, 20)]);
    assert_eq!(rows(&s), vec![(0, 1), (2, 20)]);
    // A deleted key can be inserted again; the old snapshot is unaffected.
    insert(&s, 1..2);
    assert_eq!(rows(&s), vec![(0, 1), (1, 10), (2, 20)]);
    assert_eq!(scan_at(&s, before).unwrap(), vec![(0, 0), (1, 10), (2, 20)]);

    // GC keeps exactly one version per live key when no reader needs more.
    let removed = s.gc().unwrap();
    assert_eq!(
        removed, 3,
        "old v of row 0, and row 1's version and tombstone"
    );
    assert_eq!(rows(&s), vec![(0, 1), (1, 10), (2, 20)]);
    assert_eq!(s.gc().unwrap(), 0);
    assert_eq!(
        scan_at(&s, before).unwrap_err(),
        "72000",
        "a collected snapshot is refused"
    );
    // Later passes look only at the keys written since: they still find
    // every superseded version and tombstone.
    add_to_v(&s, Some(0), 1);
    add_to_v(&s, Some(0), 1);
    delete_id(&s, 1);
    assert_eq!(s.gc().unwrap(), 4, "two old versions of row 0, row 1's two");
    assert_eq!(s.gc().unwrap(), 0);
    assert_eq!(rows(&s), vec![(0, 3), (2, 20)]);
    drop(s);
    // Replay after GC re-creates nothing visible that was not there.
    let s = ShardStore::open(0, dir.path(), opts).unwrap();
    assert_eq!(rows(&s), vec![(0, 3), (2, 20)]);
}

/// `(id, v)` of the rows whose `v` equals `v`: read through the index on
/// `v` when the catalog has one.
fn rows_with_v(s: &ShardStore, v: i64) -> Vec<(i64, i64)> {
    scan_where(s, None, Some(col_is(1, v))).unwrap()
}

/// The test catalog with an index (tree 2) on `v`, and options under which
/// every superseded version is garbage at once.
fn indexed_on_v() -> (fortress_storage::Catalog, ShardOptions) {
    let mut cat = catalog();
    let t = cat.tables.get_mut("t").unwrap();
    t.indexes.push(fortress_storage::IndexDef {
        name: "t_v".into(),
        id: 2,
        columns: vec![1],
    });
    cat.next_table_id = 2;
    let opts = ShardOptions {
        gc_grace: std::time::Duration::ZERO,
        ..ShardOptions::default()
    };
    (cat, opts)
}

#[test]
fn replay_over_collected_versions_keeps_rows_and_index_lookups_right() {
    let dir = tempfile::tempdir().unwrap();
    let (cat, opts) = indexed_on_v();
    let expected = {
        let s = ShardStore::open(0, dir.path(), opts.clone()).unwrap();
        s.execute(1, &Fragment::ApplyCatalog(cat.clone())).unwrap();
        insert(&s, 0..4);
        add_to_v(&s, Some(0), 1);
        add_to_v(&s, Some(0), 1);
        delete_id(&s, 1);
        insert(&s, 1..2);
        add_to_v(&s, Some(1), 5);
        assert!(s.gc().unwrap() > 0, "superseded versions are collected");
        rows(&s)
    };
    // No flush: the applied marks are the ones written at open, so the
    // reopened shard replays every record over the collected trees.
    for _ in 0..2 {
        let s = ShardStore::open(0, dir.path(), opts.clone()).unwrap();
        assert_eq!(rows(&s), expected);
        assert_eq!(expected, vec![(0, 2), (1, 15), (2, 20), (3, 30)]);
        assert_eq!(rows_with_v(&s, 2), vec![(0, 2)]);
        assert_eq!(rows_with_v(&s, 15), vec![(1, 15)]);
        assert_eq!(rows_with_v(&s, 0), vec![], "row 0's first value is gone");
        assert_eq!(rows_with_v(&s, 10), vec![], "row 1's first value is gone");
        // What the replay put back under newer versions is garbage again.
        s.gc().unwrap();
        assert_eq!(s.gc().unwrap(), 0);
        assert_eq!(rows(&s), expected);
    }
}

#[test]
fn vacuum_collects_at_once_and_pays_the_walk_a_fresh_shard_owes() {
    let dir = tempfile::tempdir().unwrap();
    let (cat, opts) = indexed_on_v();
    // A shard just opened owes every tree a whole walk.
    let s = ShardStore::open(0, dir.path(), opts).unwrap();
    s.execute(1, &Fragment::ApplyCatalog(cat)).unwrap();
    insert(&s, 0..3);
    add_to_v(&s, Some(0), 1);
    add_to_v(&s, Some(0), 1);
    assert_eq!(s.vacuum(&[1]).unwrap(), 2, "row 0's two old versions");
    // Written after its tree was walked, while the index tree is still
    // owed its walk: the key is remembered, not left to a walk.
    add_to_v(&s, Some(0), 1);
    assert!(
        s.vacuum(&[2]).unwrap() > 0,
        "the index's superseded entries"
    );
    assert_eq!(
        s.gc().unwrap(),
        1,
        "row 0's version from before the last write"
    );
    assert_eq!(s.gc().unwrap(), 0);
    assert_eq!(s.vacuum(&[]).unwrap(), 0);
    assert_eq!(rows(&s), vec![(0, 3), (1, 10), (2, 20)]);
    assert_eq!(rows_with_v(&s, 3), vec![(0, 3)]);
    assert_eq!(rows_with_v(&s, 2), vec![]);
}

/// Default options with a clock the test can read commit timestamps from.
fn clocked() -> (Arc<fortress_storage::HybridClock>, ShardOptions) {
    let clock = Arc::new(fortress_storage::HybridClock::default());
    let opts = ShardOptions {
        clock: clock.clone(),
        ..ShardOptions::default()
    };
    (clock, opts)
}

fn txn_write(id: i64, v: i64) -> fortress_storage::TxnWrite {
    fortress_storage::TxnWrite {
        read_ts: None,
        table: 1,
        key: vec![Value::Int8(id)],
        row: Some(vec![Value::Int8(id), Value::Int8(v)]),
        insert: false,
    }
}

/// A shard with the test catalog and rows `0..4`, and transaction 77
/// prepared on it writing row 1 = 1001 (shard 0 its one participant).
fn with_prepared_77(s: &ShardStore, clock: &fortress_storage::HybridClock) {
    s.execute(1, &Fragment::ApplyCatalog(catalog())).unwrap();
    insert(s, 0..4);
    s.execute(9, &prepare_77(clock, vec![0])).unwrap();
}

/// Commits prepared transaction `txid` on `s` at `commit_ts`.
fn commit_prepared(s: &ShardStore, txid: u64, commit_ts: fortress_storage::Timestamp) {
    s.execute(9, &Fragment::CommitPrepared { txid, commit_ts })
        .unwrap();
}

/// Transaction 77's PREPARE of row 1 = 1001, naming `participants`.
fn prepare_77(clock: &fortress_storage::HybridClock, participants: Vec<u32>) -> Fragment {
    Fragment::Prepare {
        txid: 77,
        snapshot: clock.now(),
        writes: vec![txn_write(1, 1001)],
        participants,
        durable_vote: true,
    }
}

#[test]
fn prepared_transactions_survive_restart_and_resolve_either_way() {
    use fortress_storage::Timestamp;
    let dir = tempfile::tempdir().unwrap();
    let (clock, opts) = clocked();
    {
        let s = ShardStore::open(0, dir.path(), opts.clone()).unwrap();
        s.execute(1, &Fragment::ApplyCatalog(catalog())).unwrap();
        insert(&s, 0..4);
        let snapshot = clock.now();
        for (txid, id) in [(77, 1), (78, 2)] {
            let prep = Fragment::Prepare {
                txid,
                snapshot,
                writes: vec![txn_write(id, 1000 + id)],
                participants: vec![0],
                durable_vote: true,
            };
            let out = s.execute(9, &prep).unwrap();
            assert!(matches!(out, FragmentOutput::Prepared { ts, vote: None } if ts > snapshot));
        }
        // Locked keys: a transaction commit touching them loses at once.
        let rival = Fragment::CommitTxn {
            snapshot: clock.now(),
            writes: vec![txn_write(1, 5)],
        };
        assert_eq!(s.execute(9, &rival).unwrap_err().sql_state(), "40001");
        let mut doubt = s.in_doubt();
        doubt.sort();
        assert_eq!(doubt, vec![77, 78]);
        assert_eq!(rows(&s)[1], (1, 10), "prepared writes are invisible");
    }
    // The prepared state is durable; the outcome decides visibility.
    let s = ShardStore::open(0, dir.path(), opts.clone()).unwrap();
    let mut doubt = s.in_doubt();
    doubt.sort();
    assert_eq!(doubt, vec![77, 78]);
    let commit_ts: Timestamp = clock.now();
    commit_prepared(&s, 77, commit_ts);
    s.execute(9, &Fragment::AbortPrepared { txid: 78 }).unwrap();
    // Resolving twice is harmless (recovery may repeat a decision).
    assert_eq!(
        s.execute(
            9,
            &Fragment::CommitPrepared {
                txid: 77,
                commit_ts
            }
        )
        .unwrap(),
        FragmentOutput::Count(0)
    );
    assert!(s.in_doubt().is_empty());
    assert_eq!(rows(&s)[1], (1, 1001));
    assert_eq!(rows(&s)[2], (2, 20));
    assert_eq!(
        add_to_v(&s, Some(2), 1),
        1,
        "the aborted transaction's lock is gone"
    );
    drop(s);
    let s = ShardStore::open(0, dir.path(), opts).unwrap();
    assert!(s.in_doubt().is_empty());
    assert_eq!(rows(&s)[1], (1, 1001));
    assert_eq!(rows(&s)[2], (2, 21));
}

/// Gives shard `s` (in `dir`) the test catalog and rows `0..4`, copies its
/// log to `saved` (the log as it was before the PREPARE), then prepares
/// transaction 77 voting before its PREPARE is durable; gives the prepare
/// timestamp and the vote.
fn vote_77_after_saving_the_log(
    s: &ShardStore,
    clock: &fortress_storage::HybridClock,
    dir: &Path,
    saved: &Path,
) -> (fortress_storage::Timestamp, fortress_storage::LoggedVote) {
    s.execute(1, &Fragment::ApplyCatalog(catalog())).unwrap();
    insert(s, 0..4);
    copy_dir(&dir.join("wal"), saved);
    let mut prep = prepare_77(clock, vec![0, 1]);
    if let Fragment::Prepare { durable_vote, .. } = &mut prep {
        *durable_vote = false;
    }
    match s.execute(9, &prep).unwrap() {
        FragmentOutput::Prepared { ts, vote: Some(v) } => (ts, v),
        other => panic!("a vote with its record expected, got {other:?}"),
    }
}

#[test]
fn a_vote_given_before_its_prepare_is_durable_carries_what_logs_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    let (clock, opts) = clocked();
    let s = ShardStore::open(0, dir.path(), opts.clone()).unwrap();
    let (ts, vote) = vote_77_after_saving_the_log(&s, &clock, dir.path(), saved.path());
    assert_eq!(vote.lsn, s.last_lsn());
    // Its keys are locked at once, as by a durable PREPARE.
    let rival = Fragment::CommitTxn {
        snapshot: clock.now(),
        writes: vec![txn_write(1, 5)],
    };
    assert_eq!(s.execute(9, &rival).unwrap_err().sql_state(), "40001");
    assert_eq!(s.in_doubt(), vec![77]);
    assert!(s.holds_record(vote.lsn, 77).unwrap());
    assert!(
        !s.holds_record(vote.lsn, 78).unwrap(),
        "another transaction"
    );
    assert!(!s.holds_record(vote.lsn + 1, 77).unwrap(), "past the end");
    drop(s);

    // The disk never got the PREPARE: the log is as it was before it.
    std::fs::remove_dir_all(dir.path().join("wal")).unwrap();
    copy_dir(saved.path(), &dir.path().join("wal"));
    let s = ShardStore::open(0, dir.path(), opts.clone()).unwrap();
    assert!(s.in_doubt().is_empty());
    assert!(!s.holds_record(vote.lsn, 77).unwrap());
    s.restore_vote(77, ts, &vote.record).unwrap();
    assert_eq!(s.in_doubt(), vec![77]);
    assert_eq!(s.execute(9, &rival).unwrap_err().sql_state(), "40001");
    drop(s);
    // Logged durably: a restart still holds it, and it commits.
    let s = ShardStore::open(0, dir.path(), opts).unwrap();
    assert_eq!(s.in_doubt(), vec![77]);
    let commit = Fragment::CommitPrepared {
        txid: 77,
        commit_ts: ts,
    };
    s.execute(9, &commit).unwrap();
    assert_eq!(rows(&s)[1], (1, 1001));
}

/// Restores shard 0 from the log in `wal` alone, taking in `vote` of
/// transaction 77 (committed at `commit_ts` by the coordinator's log),
/// into `to`; gives the restored shard's rows.
fn restore_with_vote(
    wal: &Path,
    to: &Path,
    cutoff: fortress_storage::restore::Cutoff,
    vote: &fortress_storage::LoggedVote,
    commit_ts: fortress_storage::Timestamp,
) -> Vec<(i64, i64)> {
    use fortress_storage::restore::{decide, restore_shard, ShardSource};
    let manifest = fortress_storage::checkpoint::Manifest::default();
    let src = ShardSource {
        shard: 0,
        checkpoint: None,
        manifest: &manifest,
        wal: wal.to_path_buf(),
        cutoff,
        cipher: None,
    };
    let mut pending = restore_shard(&src, to, &mut |_| {}).unwrap();
    pending.adopt_vote(77, vote.lsn, &vote.record).unwrap();
    let logged = std::collections::HashMap::from([(77, Some(commit_ts.0))]);
    let pending = [pending];
    let decisions = decide(&pending, &logged);
    let [pending] = pending;
    pending.finish(&decisions).unwrap();
    rows(&open(to))
}

#[test]
fn a_restore_takes_in_a_vote_its_source_log_lost_and_only_then() {
    use fortress_storage::restore::Cutoff;
    let dir = tempfile::tempdir().unwrap();
    let lost = tempfile::tempdir().unwrap();
    let (clock, opts) = clocked();
    let s = ShardStore::open(0, dir.path(), opts).unwrap();
    let (ts, vote) = vote_77_after_saving_the_log(&s, &clock, dir.path(), lost.path());
    drop(s);
    let out = tempfile::tempdir().unwrap();
    let restored = |name: &str, wal: &Path, cutoff| {
        restore_with_vote(wal, &out.path().join(name), cutoff, &vote, ts)
    };
    // The log lost the PREPARE: the vote carries it.
    assert_eq!(restored("lost", lost.path(), Cutoff::Latest)[1], (1, 1001));
    // The log holds it: committed once, from the log.
    let wal = dir.path().join("wal");
    assert_eq!(restored("held", &wal, Cutoff::Latest)[1], (1, 1001));
    // An LSN target cuts by position: no commit record, not in it.
    let before = Cutoff::Lsn(vote.lsn - 1);
    assert_eq!(restored("before", lost.path(), before)[1], (1, 10));
    // After the loss a restart logged another record at the vote's LSN:
    // the transaction is still missing from the log, so it is taken in.
    let reused = tempfile::tempdir().unwrap();
    copy_dir(lost.path(), &reused.path().join("wal"));
    let s = ShardStore::open(0, reused.path(), clocked().1).unwrap();
    insert(&s, 9..10);
    assert_eq!(s.last_lsn(), vote.lsn, "the row took the vote's LSN");
    drop(s);
    let rows = restored("reused", &reused.path().join("wal"), Cutoff::Latest);
    assert_eq!((rows[1], rows[4]), ((1, 1001), (9, 90)));
}

#[test]
fn a_tree_marked_past_a_lost_tail_still_takes_the_records_that_reuse_its_lsns() {
    let dir = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    let (_, opts) = clocked();
    let s = ShardStore::open(0, dir.path(), opts.clone()).unwrap();
    s.execute(1, &Fragment::ApplyCatalog(catalog())).unwrap();
    insert(&s, 0..4);
    copy_dir(&dir.path().join("wal"), saved.path());
    let end = s.last_lsn();
    insert(&s, 4..8);
    // The tree's marks reach past `end`, and sled has them on disk.
    s.flush().unwrap();
    drop(s);
    // The log loses everything after `end`.
    std::fs::remove_dir_all(dir.path().join("wal")).unwrap();
    copy_dir(saved.path(), &dir.path().join("wal"));
    let s = ShardStore::open(0, dir.path(), opts.clone()).unwrap();
    assert_eq!(s.last_lsn(), end);
    insert(&s, 20..21);
    let has_20 = |s: &ShardStore| rows(s).contains(&(20, 200));
    assert!(has_20(&s), "a record at a reused LSN is applied");
    drop(s);
    let s = ShardStore::open(0, dir.path(), opts).unwrap();
    assert!(has_20(&s), "and replayed after a restart");
}

#[test]
fn a_pinned_snapshot_keeps_its_versions_through_gc() {
    use fortress_storage::{HybridClock, SnapshotPins};
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(HybridClock::default());
    let pins = Arc::new(SnapshotPins::default());
    let opts = ShardOptions {
        clock: clock.clone(),
        gc_grace: std::time::Duration::ZERO,
        pins: pins.clone(),
        ..ShardOptions::default()
    };
    let s = ShardStore::open(0, dir.path(), opts).unwrap();
    s.execute(1, &Fragment::ApplyCatalog(catalog())).unwrap();
    insert(&s, 0..2);
    let old = clock.now();
    let pin = pins.pin(old.0);
    add_to_v(&s, None, 1);
    add_to_v(&s, None, 1);
    assert_eq!(
        s.gc().unwrap(),
        0,
        "the pinned snapshot still needs every row's first version"
    );
    assert_eq!(scan_at(&s, old).unwrap(), vec![(0, 0), (1, 10)]);
    drop(pin);
    assert_eq!(
        s.gc().unwrap(),
        4,
        "unpinned: only the newest version of each row stays"
    );
    assert_eq!(rows(&s), vec![(0, 2), (1, 12)]);
}

/// A key IN list is answered by point lookups: listed keys only, in key
/// order, duplicates once, projected, and a limit stops early.
#[test]
fn key_in_lists_look_up_each_key_and_project() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.execute(1, &Fragment::ApplyCatalog(catalog())).unwrap();
    insert(&s, 0..50);
    let list = |vals: &[i64]| Expr::In {
        expr: Box::new(Expr::Column(0)),
        list: vals
            .iter()
            .map(|&v| Expr::Literal(Value::Int8(v)))
            .collect(),
        negated: false,
    };
    let run = |filter: Expr, limit| {
        let out = s
            .execute(
                1,
                &Fragment::Scan {
                    table: 1,
                    key_prefix: vec![],
                    filter: Some(filter),
                    projection: vec![Expr::binary(
                        BinaryOp::Plus,
                        Expr::Column(1),
                        Expr::Literal(Value::Int8(1)),
                    )],
                    order_by: vec![],
                    limit,
                    snapshot: None,
                },
            )
            .unwrap();
        let FragmentOutput::Rows(rows) = out else {
            panic!("scan returned {out:?}")
        };
        rows.iter()
            .map(|r| r[0].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(list(&[30, 3, 99, 3, 7]), None), vec![31, 71, 301]);
    assert_eq!(run(list(&[30, 3, 7]), Some(1)), vec![31]);
    // Other conjuncts still filter the looked-up rows.
    let both = Expr::binary(
        BinaryOp::And,
        list(&[1, 2, 3]),
        Expr::binary(
            BinaryOp::Gt,
            Expr::Column(1),
            Expr::Literal(Value::Int8(10)),
        ),
    );
    assert_eq!(run(both, None), vec![21, 31]);
    // The list may sit anywhere in the conjunction; the rest still counts.
    let gt = |c: usize, v: i64| {
        Expr::binary(BinaryOp::Gt, Expr::Column(c), Expr::Literal(Value::Int8(v)))
    };
    let lt = |c: usize, v: i64| {
        Expr::binary(BinaryOp::Lt, Expr::Column(c), Expr::Literal(Value::Int8(v)))
    };
    let nested = Expr::binary(
        BinaryOp::And,
        Expr::binary(BinaryOp::And, gt(1, 10), list(&[4, 1, 2, 3, 40])),
        lt(1, 40),
    );
    assert_eq!(run(nested, None), vec![21, 31]);
    let unknown = Expr::binary(
        BinaryOp::And,
        list(&[1, 2]),
        Expr::binary(BinaryOp::Gt, Expr::Column(1), Expr::Literal(Value::Null)),
    );
    assert_eq!(run(unknown, None), Vec::<i64>::new());
}

#[test]
fn a_prepared_transaction_below_the_watermark_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, opts) = clocked();
    // Well past the interval at which the applied LSN and prepare floor
    // are written, so the trees' watermark passes the PREPARE record.
    const LATER_WRITES: i64 = 2_500;
    {
        let s = ShardStore::open(0, dir.path(), opts.clone()).unwrap();
        with_prepared_77(&s, &clock);
        for i in 0..LATER_WRITES {
            insert(&s, 100 + i..101 + i);
        }
        s.flush().unwrap();
    }
    let s = ShardStore::open(0, dir.path(), opts.clone()).unwrap();
    assert_eq!(s.in_doubt(), vec![77]);
    assert_eq!(rows(&s)[1], (1, 10), "still invisible");
    s.execute(
        9,
        &Fragment::CommitPrepared {
            txid: 77,
            commit_ts: clock.now(),
        },
    )
    .unwrap();
    for i in 0..LATER_WRITES {
        insert(&s, 10_000 + i..10_001 + i);
    }
    s.flush().unwrap();
    drop(s);
    let s = ShardStore::open(0, dir.path(), opts).unwrap();
    assert!(s.in_doubt().is_empty(), "resolved before the restart");
    let all = rows(&s);
    assert_eq!(all[1], (1, 1001));
    assert_eq!(all.len(), 4 + 2 * LATER_WRITES as usize);
}

/// Starts `fragment` through the non-blocking write path and waits for it.
fn write_async(s: &ShardStore, fragment: &Fragment) -> Result<FragmentOutput, String> {
    let started = s
        .try_write(9, fragment)
        .expect("a small transaction write is taken");
    let pending = started.map_err(|e| e.sql_state().to_string())?;
    futures::executor::block_on(pending).map_err(|e| e.sql_state().to_string())
}

#[test]
fn async_and_blocking_writers_share_the_log_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, opts) = clocked();
    let s = Arc::new(ShardStore::open(0, dir.path(), opts.clone()).unwrap());
    s.execute(1, &Fragment::ApplyCatalog(catalog())).unwrap();
    insert(&s, 0..1);
    let commit = move |id: i64, v: i64| Fragment::CommitTxn {
        snapshot: clock.now(),
        writes: vec![fortress_storage::TxnWrite {
            insert: true,
            ..txn_write(id, v)
        }],
    };
    assert!(
        s.try_write(9, &commit(1, 1)).is_none(),
        "no committer yet: the caller must block"
    );
    s.spawn_committer();
    let writers: Vec<_> = (0..4i64)
        .map(|t| {
            let s = s.clone();
            let commit = commit.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let id = 1 + t * 1000 + i;
                    let done = write_async(&s, &commit(id, id * 10));
                    assert_eq!(done, Ok(FragmentOutput::Count(1)));
                    // Read-your-writes: applied when the future resolves.
                    assert!(rows(&s).contains(&(id, id * 10)));
                }
            })
        })
        .collect();
    for _ in 0..100 {
        assert_eq!(add_to_v(&s, Some(0), 1), 1);
    }
    for w in writers {
        w.join().unwrap();
    }
    // First committer wins on the async path too.
    let stale = Fragment::CommitTxn {
        snapshot: fortress_storage::Timestamp(1),
        writes: vec![txn_write(1, 7)],
    };
    assert_eq!(write_async(&s, &stale), Err("40001".into()));
    let before = rows(&s);
    assert_eq!(before.len(), 201);
    assert_eq!(before[0], (0, 100));
    drop(s);
    let s = ShardStore::open(0, dir.path(), opts).unwrap();
    assert_eq!(rows(&s), before);
}

#[test]
fn a_resolution_applies_while_an_earlier_record_waits_for_its_fsync() {
    use std::task::Context;
    let dir = tempfile::tempdir().unwrap();
    let (clock, opts) = clocked();
    {
        let s = ShardStore::open(0, dir.path(), opts.clone()).unwrap();
        with_prepared_77(&s, &clock);
    }
    // Reopened with every fdatasync waiting this long first: the write
    // below stays logged but not durable while the resolution applies.
    let mut opts = opts;
    opts.wal.sync = fortress_storage::SyncMode::Batch;
    opts.wal.batch_window = std::time::Duration::from_secs(3);
    let s = Arc::new(ShardStore::open(0, dir.path(), opts.clone()).unwrap());
    assert_eq!(s.in_doubt(), vec![77]);
    s.spawn_committer();
    let later = Fragment::CommitTxn {
        snapshot: clock.now(),
        writes: vec![txn_write(2, 2002)],
    };
    let mut pending = s.try_write(9, &later).unwrap().unwrap();
    let commit_ts = clock.now();
    commit_prepared(&s, 77, commit_ts);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(
        pending.as_mut().poll(&mut cx).is_pending(),
        "the later write still waits for its fsync"
    );
    assert!(s.in_doubt().is_empty());
    assert_eq!(&rows(&s)[1..3], &[(1, 1001), (2, 20)]);
    assert_eq!(
        futures::executor::block_on(pending).unwrap(),
        FragmentOutput::Count(1)
    );
    let after = rows(&s);
    assert_eq!(&after[1..3], &[(1, 1001), (2, 2002)]);
    // Both are in the log, applied again in order on reopen.
    drop(s);
    let s = ShardStore::open(0, dir.path(), opts).unwrap();
    assert!(s.in_doubt().is_empty());
    assert_eq!(rows(&s), after);
}

#[test]
fn the_prepare_floor_passes_a_resolved_transaction_only_once_decisions_are_durable() {
    use fortress_storage::{DecisionLog, TxnStatus};
    use std::sync::atomic::{AtomicBool, Ordering};
    // Past one interval of the applied marks, which write the floor.
    const LATER_WRITES: i64 = 1_100;
    let run = |durable: bool| {
        let dir = tempfile::tempdir().unwrap();
        let (clock, mut opts) = clocked();
        let synced = Arc::new(AtomicBool::new(durable));
        let flag = synced.clone();
        opts.decisions = Some(DecisionLog(Arc::new(move || {
            if flag.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err(fortress_storage::StorageError::Codec("no disk".into()))
            }
        })));
        let commit_ts = {
            let s = ShardStore::open(0, dir.path(), opts.clone()).unwrap();
            s.recovered();
            s.execute(1, &Fragment::ApplyCatalog(catalog())).unwrap();
            s.execute(9, &prepare_77(&clock, vec![0, 1])).unwrap();
            let commit_ts = clock.now();
            s.execute(
                9,
                &Fragment::CommitPrepared {
                    txid: 77,
                    commit_ts,
                },
            )
            .unwrap();
            for i in 0..LATER_WRITES {
                insert(&s, 100 + i..101 + i);
            }
            s.flush().unwrap();
            commit_ts
        };
        let s = ShardStore::open(0, dir.path(), opts).unwrap();
        assert_eq!(rows(&s)[0], (1, 1001));
        let status = s.txn_status(77);
        s.recovered();
        assert_eq!(
            s.txn_status(77),
            TxnStatus::Unknown,
            "forgotten after recovery"
        );
        (status, commit_ts)
    };
    // The coordinator's log could not be synced: the floor stayed below
    // the PREPARE, so the reopened shard replays the outcome itself.
    let (status, commit_ts) = run(false);
    assert_eq!(status, TxnStatus::Committed(commit_ts));
    // Synced: the floor moved on and the outcome is the coordinator's.
    let (status, _) = run(true);
    assert_eq!(status, TxnStatus::Unknown);
}

/// One step of [`the_head_cache_answers_like_the_tree`]'s workload.
#[derive(Clone, Debug)]
enum Step {
    Insert(i64),
    Add(i64, i64),
    Delete(i64),
    /// Commit `id = v` in a transaction whose snapshot is the one taken
    /// `back` steps ago (a conflict if the row changed since), inserting
    /// when `insert`.
    Commit {
        id: i64,
        v: i64,
        back: usize,
        insert: bool,
    },
    /// Point read at the snapshot taken `back` steps ago (0: latest).
    Read(i64, usize),
    Gc,
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    let id = 0..40i64;
    prop_oneof![
        1 => id.clone().prop_map(Step::Insert),
        1 => (id.clone(), 1..5i64).prop_map(|(i, d)| Step::Add(i, d)),
        1 => id.clone().prop_map(Step::Delete),
        1 => (id.clone(), 0..100i64, 0..4usize, any::<bool>()).prop_map(|(id, v, back, insert)| {
            Step::Commit {
                id,
                v,
                back,
                insert,
            }
        }),
        2 => (id, 0..6usize).prop_map(|(i, b)| Step::Read(i, b)),
        1 => Just(Step::Gc),
    ]
}

/// Runs `steps` on a fresh shard and returns what each step answered.
fn run_steps(head_cache_bytes: u64, steps: &[Step]) -> Vec<String> {
    use fortress_storage::{HybridClock, Timestamp};
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(HybridClock::default());
    let pins = Arc::new(fortress_storage::SnapshotPins::default());
    let opts = ShardOptions {
        clock: clock.clone(),
        gc_grace: std::time::Duration::ZERO,
        head_cache_bytes,
        pins: pins.clone(),
        ..ShardOptions::default()
    };
    let s = ShardStore::open(0, dir.path(), opts).unwrap();
    s.execute(1, &Fragment::ApplyCatalog(catalog())).unwrap();
    let mut snapshots: Vec<Timestamp> = Vec::new();
    // The snapshots steps may still read stay pinned; older ones are
    // collected as GC gets to them.
    let mut pinned = std::collections::VecDeque::new();
    let mut out = Vec::new();
    for (n, st) in steps.iter().enumerate() {
        let back = |b: usize| snapshots.len().checked_sub(b).map(|i| snapshots[i]);
        let key = vec![Value::Int8(match st {
            Step::Insert(i) | Step::Add(i, _) | Step::Delete(i) | Step::Read(i, _) => *i,
            Step::Commit { id, .. } => *id,
            Step::Gc => 0,
        })];
        let result = match st {
            Step::Insert(i) => s.execute(
                1,
                &Fragment::Insert {
                    table: 1,
                    rows: vec![vec![Value::Int8(*i), Value::Int8(n as i64)]],
                },
            ),
            Step::Add(_, d) => s.execute(
                1,
                &Fragment::Update {
                    table: 1,
                    key_prefix: key,
                    filter: None,
                    assignments: vec![(
                        1,
                        Expr::binary(
                            BinaryOp::Plus,
                            Expr::Column(1),
                            Expr::Literal(Value::Int8(*d)),
                        ),
                    )],
                },
            ),
            Step::Delete(_) => s.execute(
                1,
                &Fragment::Delete {
                    table: 1,
                    key_prefix: key,
                    filter: None,
                },
            ),
            Step::Commit {
                id,
                v,
                back: b,
                insert,
            } => s.execute(
                1,
                &Fragment::CommitTxn {
                    snapshot: back(*b + 1).unwrap_or_else(|| clock.now()),
                    writes: vec![fortress_storage::TxnWrite {
                        insert: *insert,
                        ..txn_write(*id, *v)
                    }],
                },
            ),
            Step::Read(i, b) => s.execute(1, &point(1, *i, if *b == 0 { None } else { back(*b) })),
            Step::Gc => s.gc().map(FragmentOutput::Count),
        };
        out.push(match result {
            Ok(FragmentOutput::Rows(rows)) => format!("{rows:?}"),
            // The background collector may have been first: not compared.
            Ok(FragmentOutput::Count(_)) if matches!(st, Step::Gc) => "gc".into(),
            Ok(other) => format!("{other:?}"),
            Err(e) => e.sql_state().to_string(),
        });
        let now = clock.now();
        snapshots.push(now);
        pinned.push_back(pins.pin(now.0));
        if pinned.len() > 6 {
            pinned.pop_front();
        }
    }
    out
}

/// Replays the writes `out` says succeeded on a map, and checks every point
/// read against the map as it stood at the read's snapshot.
fn reads_match_a_model(steps: &[Step], out: &[String]) -> Result<(), String> {
    let mut state = std::collections::BTreeMap::new();
    let mut history = Vec::new();
    for (n, (st, got)) in steps.iter().zip(out).enumerate() {
        let ok = got == "Count(1)";
        match *st {
            Step::Insert(i) if ok => drop(state.insert(i, n as i64)),
            Step::Add(i, d) if ok => *state.get_mut(&i).ok_or("added to no row")? += d,
            Step::Delete(i) if ok => drop(state.remove(&i)),
            Step::Commit { id, v, .. } if ok => drop(state.insert(id, v)),
            Step::Read(i, b) => {
                let at = match n.checked_sub(b) {
                    Some(k) if b > 0 => &history[k],
                    _ => &state,
                };
                let want = match at.get(&i) {
                    Some(v) => format!("{:?}", vec![vec![Value::Int8(i), Value::Int8(*v)]]),
                    None => "[]".to_string(),
                };
                if *got != want {
                    return Err(format!("step {n} {st:?}: got {got}, want {want}"));
                }
            }
            _ => {}
        }
        history.push(state.clone());
    }
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(48))]

    /// Point reads, updates, inserts' duplicate checks and commits'
    /// first-committer checks answer the same with a head cache (one small
    /// enough to evict) as without one, and point reads at recent snapshots
    /// see what the acknowledged writes left there.
    #[test]
    fn the_head_cache_answers_like_the_tree(
        steps in proptest::collection::vec(step(), 1..120)
    ) {
        let without = run_steps(0, &steps);
        let with = run_steps(8 * 1024, &steps);
        proptest::prop_assert_eq!(&with, &without);
        if let Err(e) = reads_match_a_model(&steps, &without) {
            proptest::prop_assert!(false, "{}", e);
        }
    }
}

/// A table rewrite (ALTER TABLE ... ADD PRIMARY KEY) caches the copied rows;
/// the old table's cached rows go first, so they do not crowd the copies
/// out of a cache that holds one table but not both.
#[test]
fn a_rewritten_table_is_cached_in_place_of_the_old_one() {
    const N: i64 = 2000;
    // What one cached row is charged.
    let probe = tempfile::tempdir().unwrap();
    let s = open(probe.path());
    s.execute(1, &Fragment::ApplyCatalog(catalog())).unwrap();
    insert(&s, 0..N);
    let per_row = s.row_cache_stats().2 / N as usize;
    drop(s);

    // Room for about 56 rows in each of the cache's 64 stripes: one table's
    // 2000 rows spread over them fit, two tables' do not.
    let dir = tempfile::tempdir().unwrap();
    let opts = ShardOptions {
        head_cache_bytes: (64 * 56 * per_row) as u64,
        ..ShardOptions::default()
    };
    let s = ShardStore::open(0, dir.path(), opts).unwrap();
    s.execute(1, &Fragment::ApplyCatalog(catalog())).unwrap();
    insert(&s, 0..N);
    let mut rewritten = catalog();
    let mut t = rewritten.tables.remove("t").unwrap();
    t.id = 2;
    t.primary_key = vec![1];
    t.shard_key = 1;
    t.rewritten_from = Some(1);
    rewritten.tables.insert("t".into(), t);
    rewritten.version = 2;
    s.execute(1, &Fragment::ApplyCatalog(rewritten)).unwrap();

    let (hits, misses, _) = s.row_cache_stats();
    for id in 0..N {
        let out = s.execute(1, &point(2, id * 10, None)).unwrap();
        assert_eq!(
            out,
            FragmentOutput::Rows(vec![vec![Value::Int8(id), Value::Int8(id * 10)]])
        );
    }
    let (hits_after, misses_after, _) = s.row_cache_stats();
    assert_eq!(misses_after, misses, "every copied row is cached");
    assert_eq!(hits_after - hits, N as u64);
}

#[test]
fn a_keyless_tables_inserts_leave_the_row_cache_to_rows_that_are_read() {
    const N: i64 = 2000;
    // Room for about 56 rows in each of the cache's 64 stripes: "t" fits.
    let probe = tempfile::tempdir().unwrap();
    let s = open(probe.path());
    s.execute(1, &Fragment::ApplyCatalog(catalog())).unwrap();
    insert(&s, 0..N);
    let per_row = s.row_cache_stats().2 / N as usize;
    drop(s);

    let mut cat = catalog();
    let mut log = TableDef::new(
        2,
        "log",
        vec![
            ColumnDef::new("v", DataType::Int8),
            ColumnDef {
                nullable: false,
                ..ColumnDef::new("rowid", DataType::Int8)
            },
        ],
        vec![0, 1],
    );
    log.rowid = Some(1);
    cat.tables.insert("log".into(), log);
    let dir = tempfile::tempdir().unwrap();
    let opts = ShardOptions {
        head_cache_bytes: (64 * 56 * per_row) as u64,
        ..ShardOptions::default()
    };
    let s = ShardStore::open(0, dir.path(), opts).unwrap();
    s.execute(1, &Fragment::ApplyCatalog(cat)).unwrap();
    insert(&s, 0..N);
    let cached = s.row_cache_stats().2;

    // As an INSERT in a transaction block commits: checked against the
    // newest version of its (fresh) key, then applied.
    for i in 0..N {
        let writes = vec![TxnWrite {
            table: 2,
            key: vec![Value::Int8(i), Value::Int8(1_000_000 + i)],
            row: Some(vec![Value::Int8(i), Value::Int8(1_000_000 + i)]),
            insert: true,
            read_ts: None,
        }];
        let snapshot = fortress_storage::Timestamp(u64::MAX >> 1);
        s.execute(1, &Fragment::CommitTxn { snapshot, writes })
            .unwrap();
    }
    assert_eq!(s.row_cache_stats().2, cached, "no row of \"log\" is cached");
    let (_, misses, _) = s.row_cache_stats();
    for id in 0..N {
        let out = s.execute(1, &point(1, id, None)).unwrap();
        assert_eq!(
            out,
            FragmentOutput::Rows(vec![vec![Value::Int8(id), Value::Int8(id * 10)]])
        );
    }
    assert_eq!(
        s.row_cache_stats().1,
        misses,
        "every row of \"t\" is still cached"
    );
}

#[test]
fn a_follower_takes_a_primary_log_byte_for_byte_and_keeps_it_across_reopen() {
    use fortress_storage::tail::Tail;
    use fortress_storage::Timestamp;
    let (pdir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (clock, opts) = clocked();
    let p = ShardStore::open(0, pdir.path(), opts).unwrap();
    with_prepared_77(&p, &clock);
    let f = ShardStore::open(0, fdir.path(), clocked().1).unwrap();
    let mut tail = Tail::new(&pdir.path().join("wal"), 0);
    let first = tail
        .read(p.log().shippable_lsn(), 1 << 20)
        .unwrap()
        .unwrap();
    assert_eq!(f.follow(&first.bytes).unwrap(), p.last_lsn());
    assert_eq!(f.in_doubt(), vec![77], "the PREPARE is held, undecided");
    assert_eq!(rows(&f), rows(&p), "prepared writes are invisible on both");
    // The decision and more writes follow.
    p.execute(
        9,
        &Fragment::CommitPrepared {
            txid: 77,
            commit_ts: Timestamp(clock.now().0),
        },
    )
    .unwrap();
    insert(&p, 4..6);
    p.flush().unwrap();
    let next = tail
        .read(p.log().shippable_lsn(), 1 << 20)
        .unwrap()
        .unwrap();
    // Records that do not follow on are refused whole.
    let err = f.follow(&first.bytes).unwrap_err();
    assert!(err.to_string().contains("follows"), "{err}");
    assert_eq!(f.follow(&next.bytes).unwrap(), p.last_lsn());
    assert!(f.in_doubt().is_empty());
    assert_eq!(rows(&f), rows(&p));
    assert_eq!(rows(&f)[1], (1, 1001));
    assert_eq!(rows(&f).len(), 6);
    // The follower's log is the primary's, LSN for LSN: it replays alone.
    drop(f);
    let f = ShardStore::open(0, fdir.path(), clocked().1).unwrap();
    assert_eq!(f.last_lsn(), p.last_lsn());
    assert_eq!(rows(&f), rows(&p));
    let (a, b) = (pdir.path().join("wal"), fdir.path().join("wal"));
    let records = |dir: &Path| {
        let mut out = Vec::new();
        fortress_storage::wal::read_from(dir, 0, None, |r| {
            out.push(r.clone());
            Ok(true)
        })
        .unwrap();
        out
    };
    assert_eq!(records(&a), records(&b));
}

/// A copy built on a checkpoint of `s` (taken in `cp`) with `s`'s whole
/// log after it, opened in `to`.
fn copy_from_checkpoint(
    s: &ShardStore,
    cut: &fortress_storage::checkpoint::ShardCut,
    manifest: &fortress_storage::checkpoint::Manifest,
    cp: &Path,
    from: &Path,
    to: &Path,
) -> ShardStore {
    use fortress_storage::restore::{install_base, Cutoff, ShardSource};
    let src = ShardSource {
        shard: 0,
        checkpoint: Some((cp, cut)),
        manifest,
        wal: from.join("wal"),
        cutoff: Cutoff::Latest,
        cipher: None,
    };
    let (stats, after) = install_base(&src, to, &mut |_| {}).unwrap();
    assert_eq!((after, stats.rows), (cut.wal_after, 5));
    // The source's log, LSN for LSN, as an archive holds it: whole
    // segments from the one holding the record after the cut (what comes
    // before it in that segment the store holds, and is put back as it was).
    s.flush().unwrap();
    copy_dir(&from.join("wal"), &to.join("wal"));
    let (removed, _) =
        fortress_storage::wal::remove_segments_through(&to.join("wal"), cut.wal_after).unwrap();
    assert!(removed > 0, "the log before the cut is gone");
    ShardStore::open(0, to, clocked().1).unwrap()
}

#[test]
fn a_copy_built_on_a_checkpoint_continues_the_log_and_its_transactions() {
    use fortress_storage::checkpoint::Manifest;
    let dir = tempfile::tempdir().unwrap();
    let cp = tempfile::tempdir().unwrap();
    let (clock, mut opts) = clocked();
    // A segment per record or two: the copy gets only those after the cut.
    opts.wal.segment_bytes = 64;
    let s = ShardStore::open(0, dir.path(), opts).unwrap();
    with_prepared_77(&s, &clock);
    insert(&s, 4..5);
    // 77 commits after the checkpoint's snapshot (which waits for it, and
    // leaves its write out): only its commit record, after the cut, has it.
    let wal_after = s.last_lsn();
    let snapshot = clock.now();
    let commit_ts = clock.now();
    commit_prepared(&s, 77, commit_ts);
    let cut = s
        .dump(snapshot.0, wal_after, &cp.path().join("shard-000"))
        .unwrap();
    let manifest = Manifest {
        snapshot: snapshot.0,
        catalog: s.catalog(),
        shards: vec![cut.clone()],
        ..Manifest::default()
    };
    // After it: an update, new rows, a new table, a delete, and 78 left
    // in doubt.
    add_to_v(&s, Some(2), 1);
    insert(&s, 6..8);
    let mut c = catalog();
    let mut t2 = c.tables["t"].clone();
    t2.id = 2;
    t2.name = "t2".into();
    c.tables.insert("t2".into(), t2);
    c.version = 2;
    c.next_table_id = 2;
    s.execute(1, &Fragment::ApplyCatalog(c)).unwrap();
    delete_id(&s, 0);
    let prepare_78 = Fragment::Prepare {
        txid: 78,
        snapshot: clock.now(),
        writes: vec![txn_write(3, 1003)],
        participants: vec![0],
        durable_vote: true,
    };
    s.execute(9, &prepare_78).unwrap();
    let out = tempfile::tempdir().unwrap();
    let copy = copy_from_checkpoint(
        &s,
        &cut,
        &manifest,
        cp.path(),
        dir.path(),
        &out.path().join("in-doubt"),
    );
    assert_eq!(
        copy.last_lsn(),
        s.last_lsn(),
        "the copy continues LSN for LSN"
    );
    assert_eq!(rows(&copy), rows(&s));
    assert!(
        rows(&copy).contains(&(1, 1001)),
        "77 committed after the cut"
    );
    assert_eq!(copy.in_doubt(), vec![78], "78's PREPARE came with the log");
    assert_eq!(copy.catalog().version, 2);
    drop(copy);
    // Resolved later: a copy commits it too, and goes on after a reopen.
    commit_prepared(&s, 78, clock.now());
    insert(&s, 8..9);
    let to = out.path().join("committed");
    let copy = copy_from_checkpoint(&s, &cut, &manifest, cp.path(), dir.path(), &to);
    assert!(copy.in_doubt().is_empty());
    assert_eq!(rows(&copy), rows(&s));
    assert!(rows(&copy).contains(&(3, 1003)));
    drop(copy);
    let copy = ShardStore::open(0, &to, clocked().1).unwrap();
    assert_eq!(rows(&copy), rows(&s));
}

#[test]
fn a_checkpoint_keeps_the_stamps_of_versions_peers_wrote() {
    use fortress_storage::checkpoint::Manifest;
    use fortress_storage::conflict::{Resolver, Stamp};
    use fortress_storage::restore::{install_base, restore_shard, Cutoff, ShardSource};
    let dir = tempfile::tempdir().unwrap();
    let cp = tempfile::tempdir().unwrap();
    let (clock, opts) = clocked();
    let s = ShardStore::open(0, dir.path(), opts).unwrap();
    s.execute(1, &Fragment::ApplyCatalog(catalog())).unwrap();
    insert(&s, 0..3);
    // Node b's version of row 1, taken here (on node a).
    let key = fortress_storage::keycodec::encode_key(&[Value::Int8(1)]);
    let b_ts = clock.now().0;
    let change = fortress_storage::RemoteChange {
        table: 1,
        key: key.clone(),
        row: Some(vec![Value::Int8(1), Value::Int8(100)]),
        stamp: Stamp::local("b", b_ts, None),
    };
    let done = s.apply_remote("a", Resolver::Timestamp, &[change]).unwrap();
    assert_eq!(done.taken, 1);
    let wal_after = s.last_lsn();
    let snapshot = clock.now();
    let cut = s
        .dump(snapshot.0, wal_after, &cp.path().join("shard-000"))
        .unwrap();
    assert_eq!(cut.peer_files.len(), 1, "{cut:?}");
    let manifest = Manifest {
        snapshot: snapshot.0,
        catalog: s.catalog(),
        shards: vec![cut.clone()],
        ..Manifest::default()
    };
    let src = ShardSource {
        shard: 0,
        checkpoint: Some((cp.path(), &cut)),
        manifest: &manifest,
        wal: dir.path().join("wal"),
        cutoff: Cutoff::Checkpoint,
        cipher: None,
    };
    // A later write here follows b's version: its vector has b's entry,
    // in a restore from the checkpoint and in a copy built on it alike.
    let follows_b = |copy: &ShardStore| {
        assert!(rows(copy).contains(&(1, 100)));
        let next = copy.stamp_for_peer("a", 1, &key, u64::MAX).unwrap();
        assert_eq!(next.vv.get("b"), Some(&b_ts), "{next:?}");
    };
    let out = tempfile::tempdir().unwrap();
    let restored = out.path().join("restored");
    let pending = restore_shard(&src, &restored, &mut |_| {}).unwrap();
    pending.finish(&Default::default()).unwrap();
    follows_b(&ShardStore::open(0, &restored, clocked().1).unwrap());
    let copy = out.path().join("copy");
    install_base(&src, &copy, &mut |_| {}).unwrap();
    std::fs::create_dir_all(copy.join("wal")).unwrap();
    std::fs::write(
        copy.join("wal").join(format!("{:020}.seg", wal_after + 1)),
        b"",
    )
    .unwrap();
    follows_b(&ShardStore::open(0, &copy, clocked().1).unwrap());
}
