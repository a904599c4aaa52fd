//! Result cache for read-only statements outside transaction blocks. An
//! entry is keyed by the bound plan (statement text with its parameters
//! folded in) and remembers the write generation of every table it read;
//! any later write to one of them makes it stale, as does its TTL.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fortress_storage::value::row_bytes;
use fortress_storage::{Expr, Func, Row, TableId};

use crate::plan::{OutputColumn, SelectPlan, Source};

/// Entries kept at most; the oldest is evicted beyond it.
const MAX_ENTRIES: usize = 1024;
/// Results of more rows than this are not cached.
pub const MAX_ROWS: usize = 10_000;
/// Results bigger than this (rows and key, in memory) are not cached.
pub const MAX_ENTRY_BYTES: usize = 4 << 20;
/// Bytes kept across all entries: the cache's memory bound. Rows are
/// counted as `fortress_storage::value::row_bytes` counts them, so ten
/// results of ten 10 MB rows each cost what they hold, not ten rows each.
const MAX_TOTAL_BYTES: usize = 64 << 20;

struct Entry {
    /// Insertion number: its place in [`Entries::order`].
    seq: u64,
    /// What it costs in memory (see [`MAX_TOTAL_BYTES`]).
    bytes: usize,
    columns: Vec<OutputColumn>,
    rows: Vec<Row>,
    /// (table, its write generation when the read began).
    tables: Vec<(TableId, u64)>,
    /// The catalog generation when the read began.
    catalog: u64,
    stored: Instant,
}

/// The entries, with their insertion order for eviction and their bytes.
#[derive(Default)]
struct Entries {
    map: HashMap<String, Entry>,
    /// (seq, key), oldest first; a key replaced since keeps a stale pair.
    order: VecDeque<(u64, String)>,
    bytes: usize,
    next_seq: u64,
}

impl Entries {
    fn remove(&mut self, key: &str) {
        if let Some(e) = self.map.remove(key) {
            self.bytes -= e.bytes;
        }
    }

    /// Frees the entries past their TTL. All live as long, so they are
    /// the oldest: the walk stops at the first one still fresh.
    fn expire(&mut self, now: Instant, ttl: Duration) {
        while let Some((seq, key)) = self.order.front() {
            let live = self.map.get(key).filter(|e| e.seq == *seq);
            match live {
                Some(e) if now.duration_since(e.stored) < ttl => break,
                Some(_) => {
                    let key = key.clone();
                    self.remove(&key);
                }
                None => {}
            }
            self.order.pop_front();
        }
    }

    /// Drops the oldest entry; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((seq, key)) = self.order.pop_front() {
            if self.map.get(&key).is_some_and(|e| e.seq == seq) {
                self.remove(&key);
                return true;
            }
        }
        false
    }
}

/// The cache, shared by every session of a cluster.
pub struct ResultCache {
    ttl: Duration,
    entries: Mutex<Entries>,
    /// Per table: (write generation, writes in flight). A write counts as
    /// in flight from before it can become visible until it has returned,
    /// and bumps the generation when it ends.
    generations: Mutex<HashMap<TableId, (u64, u64)>>,
    catalog_generation: AtomicU64,
    /// Added to `Instant::now()`: tests move time without sleeping.
    time_offset: Mutex<Duration>,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

/// What a read must remember to store its result later.
pub struct Ticket {
    key: String,
    tables: Vec<(TableId, u64)>,
    catalog: u64,
}

impl ResultCache {
    /// A cache whose entries live `ttl` (zero disables caching).
    pub fn new(ttl: Duration) -> ResultCache {
        ResultCache {
            ttl,
            entries: Mutex::new(Entries::default()),
            generations: Mutex::new(HashMap::new()),
            catalog_generation: AtomicU64::new(0),
            time_offset: Mutex::new(Duration::ZERO),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Entries held and their bytes.
    pub fn size(&self) -> (usize, usize) {
        let e = self.entries.lock().expect("cache entries");
        (e.map.len(), e.bytes)
    }

    fn now(&self) -> Instant {
        Instant::now() + *self.time_offset.lock().expect("cache clock")
    }

    /// Moves the cache's clock forward (tests).
    pub fn advance(&self, by: Duration) {
        *self.time_offset.lock().expect("cache clock") += by;
    }

    /// A write to `tables` is starting: no result of them is served or
    /// stored until it ends.
    pub fn begin_write(&self, tables: &[TableId]) {
        let mut g = self.generations.lock().expect("cache generations");
        for t in tables {
            g.entry(*t).or_default().1 += 1;
        }
    }

    /// The write started by [`Self::begin_write`] has ended (committed or
    /// not): results read before it are stale.
    pub fn end_write(&self, tables: &[TableId]) {
        let mut g = self.generations.lock().expect("cache generations");
        for t in tables {
            let e = g.entry(*t).or_default();
            e.0 += 1;
            e.1 = e.1.saturating_sub(1);
        }
    }

    /// Records a finished write to `table`.
    #[cfg(test)]
    fn invalidate(&self, table: TableId) {
        self.begin_write(&[table]);
        self.end_write(&[table]);
    }

    /// Generations of `tables`, or `None` while a write to one is in flight.
    fn generations_of(&self, tables: &[TableId]) -> Option<Vec<(TableId, u64)>> {
        let g = self.generations.lock().expect("cache generations");
        tables
            .iter()
            .map(|t| {
                let (gen, in_flight) = g.get(t).copied().unwrap_or_default();
                (in_flight == 0).then_some((*t, gen))
            })
            .collect()
    }

    /// Records a catalog change: every cached result is stale.
    pub fn invalidate_all(&self) {
        self.catalog_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Looks `plan` up. On a miss, returns the ticket to store its result
    /// with (`None` when the plan is not cacheable). A point read is not:
    /// its one seek costs less than a look-up and a store.
    pub fn lookup(
        &self,
        plan: &SelectPlan,
    ) -> Result<(Vec<OutputColumn>, Vec<Row>), Option<Ticket>> {
        if self.ttl.is_zero() || point_read(plan) {
            return Err(None);
        }
        let Some(tables) = tables_read(plan) else {
            return Err(None);
        };
        // Generations are read before the statement's snapshot is taken,
        // so a write racing with the read leaves its entry stale; while a
        // write is in flight the cache stays out of the way.
        let Some(tables) = self.generations_of(&tables) else {
            return Err(None);
        };
        let key = key_of(plan);
        let catalog = self.catalog_generation.load(Ordering::Acquire);
        let now = self.now();
        let mut entries = self.entries.lock().expect("cache entries");
        entries.expire(now, self.ttl);
        if let Some(e) = entries.map.get(&key) {
            let fresh = now.duration_since(e.stored) < self.ttl
                && e.catalog == catalog
                && e.tables == tables;
            if fresh {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok((e.columns.clone(), e.rows.clone()));
            }
            entries.remove(&key);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        Err(Some(Ticket {
            key,
            tables,
            catalog,
        }))
    }

    /// Stores a result read under `ticket`.
    pub fn store(&self, ticket: Ticket, columns: &[OutputColumn], rows: &[Row]) {
        if rows.len() > MAX_ROWS {
            return;
        }
        let bytes = ticket.key.len() + rows.iter().map(|r| row_bytes(r)).sum::<usize>();
        if bytes > MAX_ENTRY_BYTES {
            return;
        }
        let ids: Vec<TableId> = ticket.tables.iter().map(|(t, _)| *t).collect();
        if self.generations_of(&ids).as_ref() != Some(&ticket.tables) {
            return;
        }
        let now = self.now();
        let mut entries = self.entries.lock().expect("cache entries");
        entries.expire(now, self.ttl);
        entries.remove(&ticket.key);
        while (entries.map.len() >= MAX_ENTRIES || entries.bytes + bytes > MAX_TOTAL_BYTES)
            && entries.evict_oldest()
        {}
        let seq = entries.next_seq;
        entries.next_seq += 1;
        entries.bytes += bytes;
        entries.order.push_back((seq, ticket.key.clone()));
        if entries.order.len() > 2 * MAX_ENTRIES {
            let Entries { map, order, .. } = &mut *entries;
            order.retain(|(seq, key)| map.get(key).is_some_and(|e| e.seq == *seq));
        }
        entries.map.insert(
            ticket.key,
            Entry {
                seq,
                bytes,
                columns: columns.to_vec(),
                rows: rows.to_vec(),
                tables: ticket.tables,
                catalog: ticket.catalog,
                stored: now,
            },
        );
    }
}

/// The cache key of a plan: its parts, with tables by id (their definitions
/// are covered by the catalog generation). Destructured in full, so a new
/// plan field cannot be left out unnoticed.
fn key_of(plan: &SelectPlan) -> String {
    let mut k = String::new();
    write_plan(plan, &mut k);
    k
}

fn write_plan(plan: &SelectPlan, k: &mut String) {
    let SelectPlan {
        source,
        filter,
        aggregate,
        having,
        projection,
        columns,
        distinct,
        order_by,
        limit,
        offset,
        subqueries,
        untyped,
    } = plan;
    if let Some(src) = source {
        write_source(src, k);
    }
    let _ = write!(
        k,
        "|{filter:?}|{aggregate:?}|{having:?}|{projection:?}|{columns:?}|{distinct}|{order_by:?}|{limit:?}|{offset}|{untyped:?}"
    );
    for s in subqueries {
        let _ = write!(k, "[{} {:?} {:?} ", s.slot, s.kind, s.outer_refs);
        write_plan(&s.plan, k);
        k.push(']');
    }
}

fn write_source(src: &Source, k: &mut String) {
    match src {
        Source::Table(t) => {
            let _ = write!(k, "T{}", t.id);
        }
        Source::Join {
            left,
            right,
            kind,
            on,
        } => {
            k.push('(');
            write_source(left, k);
            let _ = write!(k, " {kind:?} {on:?} ");
            write_source(right, k);
            k.push(')');
        }
        Source::Derived(p) => {
            k.push('(');
            write_plan(p, k);
            k.push(')');
        }
        Source::Rows { rows, width } => {
            let _ = write!(k, "R{width}{rows:?}");
        }
        Source::SetOp {
            op,
            all,
            left,
            right,
        } => {
            let _ = write!(k, "{op:?}{all}(");
            write_plan(left, k);
            k.push(',');
            write_plan(right, k);
            k.push(')');
        }
    }
}

/// The tables a plan reads, or `None` if its result is not a function of
/// table contents alone (system relations, clock functions).
/// A one-table SELECT whose filter fixes the whole primary key, with
/// nothing computed across rows.
fn point_read(plan: &SelectPlan) -> bool {
    match &plan.source {
        Some(Source::Table(t)) => {
            plan.runs_on_shards()
                && plan.subqueries.is_empty()
                && crate::route::router::fixes_primary_key(t, plan.filter.as_ref())
        }
        _ => false,
    }
}

fn tables_read(plan: &SelectPlan) -> Option<Vec<TableId>> {
    let mut out = Vec::new();
    collect(plan, &mut out)?;
    out.sort_unstable();
    out.dedup();
    Some(out)
}

fn collect(plan: &SelectPlan, out: &mut Vec<TableId>) -> Option<()> {
    let mut clock = false;
    for e in plan.filter.iter().chain(&plan.projection) {
        e.visit(&mut |n| clock |= matches!(n, Expr::Func(Func::Now, _)));
    }
    if clock {
        return None;
    }
    if let Some(src) = &plan.source {
        collect_source(src, out)?;
    }
    for s in &plan.subqueries {
        collect(&s.plan, out)?;
    }
    Some(())
}

fn collect_source(src: &Source, out: &mut Vec<TableId>) -> Option<()> {
    match src {
        Source::Table(t) => out.push(t.id),
        Source::Join { left, right, .. } => {
            collect_source(left, out)?;
            collect_source(right, out)?;
        }
        Source::Derived(p) => collect(p, out)?,
        Source::SetOp { left, right, .. } => {
            collect(left, out)?;
            collect(right, out)?;
        }
        Source::Rows { .. } => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fortress_storage::{ColumnDef, DataType, TableDef, Value};

    /// `SELECT id FROM t WHERE <column> = filter`; on `v` it is a scan, on
    /// the key `id` a point read.
    fn plan_on(table_id: TableId, column: usize, filter: i32) -> SelectPlan {
        let t = TableDef::new(
            table_id,
            "t",
            vec![
                ColumnDef::new("id", DataType::Int4),
                ColumnDef::new("v", DataType::Int4),
            ],
            vec![0],
        );
        SelectPlan {
            source: Some(Source::Table(std::sync::Arc::new(t))),
            filter: Some(Expr::binary(
                fortress_storage::BinaryOp::Eq,
                Expr::Column(column),
                Expr::Literal(Value::Int4(filter)),
            )),
            aggregate: None,
            having: None,
            projection: vec![Expr::Column(0)],
            columns: vec![OutputColumn {
                name: "id".into(),
                ty: DataType::Int4,
            }],
            distinct: false,
            order_by: Vec::new(),
            limit: None,
            offset: 0,
            subqueries: Vec::new(),
            untyped: Vec::new(),
        }
    }

    /// A scan the cache keeps.
    fn plan(table_id: TableId, filter: i32) -> SelectPlan {
        plan_on(table_id, 1, filter)
    }

    #[test]
    fn point_reads_are_not_cacheable() {
        let c = ResultCache::new(Duration::from_secs(300));
        assert!(matches!(c.lookup(&plan_on(7, 0, 1)), Err(None)));
        assert!(matches!(c.lookup(&plan(7, 1)), Err(Some(_))));
    }

    fn cached(c: &ResultCache, p: &SelectPlan) -> bool {
        c.lookup(p).is_ok()
    }

    #[test]
    fn hit_on_repeat_miss_after_a_write_and_after_the_ttl() {
        let c = ResultCache::new(Duration::from_secs(300));
        let p = plan(7, 1);
        let Err(Some(ticket)) = c.lookup(&p) else {
            panic!("first look-up must miss with a ticket")
        };
        c.store(ticket, &p.columns, &[vec![Value::Int4(1)]]);
        assert!(cached(&c, &p), "repeat hits");
        assert!(!cached(&c, &plan(7, 2)), "other parameters miss");
        c.invalidate(8);
        assert!(cached(&c, &p), "a write to another table changes nothing");
        c.invalidate(7);
        assert!(!cached(&c, &p), "a write to the table read makes it stale");
        let Err(Some(ticket)) = c.lookup(&p) else {
            panic!("miss")
        };
        c.store(ticket, &p.columns, &[]);
        c.advance(Duration::from_secs(299));
        assert!(cached(&c, &p), "still fresh just before the TTL");
        c.advance(Duration::from_secs(2));
        assert!(!cached(&c, &p), "expired after the TTL");
        assert_eq!(c.hits.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_write_during_the_read_leaves_nothing_fresh_behind() {
        let c = ResultCache::new(Duration::from_secs(300));
        let p = plan(7, 1);
        let Err(Some(ticket)) = c.lookup(&p) else {
            panic!("miss")
        };
        c.invalidate(7); // a write commits while the read runs
        c.store(ticket, &p.columns, &[]);
        assert!(!cached(&c, &p));
    }

    #[test]
    fn nothing_is_served_or_stored_while_a_write_is_in_flight() {
        let c = ResultCache::new(Duration::from_secs(300));
        let p = plan(7, 1);
        let Err(Some(ticket)) = c.lookup(&p) else {
            panic!("miss")
        };
        c.store(ticket, &p.columns, &[]);
        c.begin_write(&[7]);
        assert!(matches!(c.lookup(&p), Err(None)), "bypassed while writing");
        c.end_write(&[7]);
        assert!(!cached(&c, &p), "stale after the write");
    }

    #[test]
    fn ddl_and_zero_ttl() {
        let c = ResultCache::new(Duration::from_secs(300));
        let p = plan(7, 1);
        let Err(Some(ticket)) = c.lookup(&p) else {
            panic!("miss")
        };
        c.store(ticket, &p.columns, &[]);
        c.invalidate_all();
        assert!(!cached(&c, &p));
        let off = ResultCache::new(Duration::ZERO);
        assert!(matches!(off.lookup(&p), Err(None)));
    }

    /// Stores `rows` for `p` (which must miss).
    fn fill(c: &ResultCache, p: &SelectPlan, rows: &[Row]) {
        let Err(Some(ticket)) = c.lookup(p) else {
            panic!("miss")
        };
        c.store(ticket, &p.columns, rows);
    }

    fn held_bytes(c: &ResultCache) -> usize {
        c.entries.lock().unwrap().bytes
    }

    #[test]
    fn memory_is_bounded_in_bytes_and_expired_entries_are_freed() {
        let c = ResultCache::new(Duration::from_secs(300));
        // Ten rows of 3 MB: one result over the entry bound is not kept.
        let big = vec![vec![Value::Text("x".repeat(3 << 20))]; 10];
        fill(&c, &plan(7, 1), &big);
        assert!(!cached(&c, &plan(7, 1)));
        assert_eq!(held_bytes(&c), 0);
        // Many results of 3 MB each: the total stays within its bound, the
        // oldest going first.
        let one = vec![vec![Value::Text("x".repeat(3 << 20))]];
        for i in 0..40 {
            fill(&c, &plan(7, i), &one);
            assert!(held_bytes(&c) <= MAX_TOTAL_BYTES, "{}", held_bytes(&c));
        }
        assert!(cached(&c, &plan(7, 39)));
        assert!(!cached(&c, &plan(7, 0)), "evicted");
        // Past the TTL the next look-up frees every expired entry.
        c.advance(Duration::from_secs(301));
        assert!(!cached(&c, &plan(8, 1)));
        assert_eq!(held_bytes(&c), 0);
        assert!(c.entries.lock().unwrap().map.is_empty());
    }
}
