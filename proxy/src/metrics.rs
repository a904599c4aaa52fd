//! In-process counters: how statements were routed (one shard, several,
//! every shard), requests per shard and per vnode (key-addressed requests
//! on hash tables), and hot-spot detection over them, shown by `SHOW
//! fortress.metrics` and the admin API. Statement and commit latencies and
//! counts go to the `metrics` facade ([`Recorded`]): the binary installs a
//! Prometheus recorder for them; without one they cost nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fortress_storage::ShardId;

use crate::route::router::Target;

/// Counters shared by every session of a cluster.
#[derive(Debug)]
pub struct Metrics {
    single_shard: AtomicU64,
    multi_shard: AtomicU64,
    scatter_gather: AtomicU64,
    /// Simple queries run on a plan their connection had bound before.
    plans_reused: AtomicU64,
    per_shard: Vec<AtomicU64>,
    /// Indexed by token position on the ring; each with its shard.
    per_vnode: Vec<(ShardId, AtomicU64)>,
}

/// How a transaction's writes were committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitKind {
    /// On its one shard, in one WAL record.
    OneShard,
    /// Across shards by two-phase commit.
    TwoPhase,
}

/// How a statement was routed: the shards it addressed (see
/// [`crate::stop::Stops::route`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// No shard: SET, SHOW, a cached result, the catalog.
    None,
    SingleShard,
    /// Several shards, not all.
    MultiShard,
    AllShards,
}

/// Each [`Route`]'s label, in the enum's order.
const ROUTES: [&str; 4] = ["none", "single_shard", "multi_shard", "all_shards"];
const OUTCOMES: [&str; 2] = ["ok", "error"];

/// Handles into the process's metrics recorder, taken at first use (the
/// binary installs its recorder before it serves anything; one installed
/// later is not seen).
pub fn recorded() -> &'static Recorded {
    static RECORDED: std::sync::LazyLock<Recorded> = std::sync::LazyLock::new(Recorded::new);
    &RECORDED
}

/// See [`recorded`].
#[derive(Debug)]
pub struct Recorded {
    statement_seconds: metrics::Histogram,
    statements: metrics::Counter,
    /// By route (none, single, multi, all shards) and outcome (ok, error).
    queries: [[metrics::Counter; 2]; 4],
    commit_one_shard_seconds: metrics::Histogram,
    commit_two_phase_seconds: metrics::Histogram,
    commits_one_shard: metrics::Counter,
    commits_two_phase: metrics::Counter,
    aborts_two_phase: metrics::Counter,
    /// The same counts, readable here (the admin API's JSON and dashboard).
    totals: [AtomicU64; 5],
}

/// Statement and commit totals since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub statements: u64,
    /// Statements' summed time, in microseconds.
    pub statement_micros: u64,
    pub one_shard_commits: u64,
    pub two_phase_commits: u64,
    pub two_phase_aborts: u64,
}

impl Recorded {
    fn new() -> Recorded {
        let commit = |kind: &'static str| metrics::histogram!("fortress_commit_duration_seconds", "kind" => kind);
        let commits = |kind: &'static str, outcome: &'static str| metrics::counter!("fortress_commits_total", "kind" => kind, "outcome" => outcome);
        let queries = ROUTES.map(|route| {
            OUTCOMES.map(|outcome| {
                metrics::counter!("fortress_queries_total", "route" => route, "outcome" => outcome)
            })
        });
        Recorded {
            statement_seconds: metrics::histogram!("fortress_statement_duration_seconds"),
            statements: metrics::counter!("fortress_statements_total"),
            queries,
            commit_one_shard_seconds: commit("one_shard"),
            commit_two_phase_seconds: commit("two_phase"),
            commits_one_shard: commits("one_shard", "committed"),
            commits_two_phase: commits("two_phase", "committed"),
            aborts_two_phase: commits("two_phase", "aborted"),
            totals: Default::default(),
        }
    }

    /// Statement and commit totals since start.
    pub fn totals(&self) -> Totals {
        let [statements, micros, one, two, aborted] =
            self.totals.each_ref().map(|c| c.load(Ordering::Relaxed));
        Totals {
            statements,
            statement_micros: micros,
            one_shard_commits: one,
            two_phase_commits: two,
            two_phase_aborts: aborted,
        }
    }

    fn add(&self, which: usize, n: u64) {
        self.totals[which].fetch_add(n, Ordering::Relaxed);
    }

    /// One statement ran for `took`, as its client waited for it, routed
    /// as `route`, and failed or not.
    pub fn statement(&self, took: Duration, route: Route, failed: bool) {
        self.queries[route as usize][usize::from(failed)].increment(1);
        self.statements.increment(1);
        self.statement_seconds.record(took.as_secs_f64());
        self.add(0, 1);
        self.add(1, took.as_micros() as u64);
    }

    /// One statement failed with SQLSTATE `code` (counted by its class).
    pub fn error(&self, code: &str) {
        let class = code.get(..2).unwrap_or("XX").to_string();
        metrics::counter!("fortress_statement_errors_total", "class" => class).increment(1);
    }

    /// A transaction with writes ended: committed (in `took`) or not.
    pub fn commit(&self, kind: CommitKind, committed: bool, took: Duration) {
        match (kind, committed) {
            (CommitKind::OneShard, true) => {
                self.add(2, 1);
                self.commits_one_shard.increment(1);
                self.commit_one_shard_seconds.record(took.as_secs_f64());
            }
            (CommitKind::TwoPhase, true) => {
                self.add(3, 1);
                self.commits_two_phase.increment(1);
                self.commit_two_phase_seconds.record(took.as_secs_f64());
            }
            (CommitKind::TwoPhase, false) => {
                self.add(4, 1);
                self.aborts_two_phase.increment(1)
            }
            // A one-shard commit that failed wrote nothing: the statement's
            // error says so, and there is no abort to count.
            (CommitKind::OneShard, false) => {}
        }
    }
}

impl Metrics {
    /// Counters for `shards` shards; `vnodes` gives each ring token's shard.
    pub fn new(shards: u32, vnodes: Vec<ShardId>) -> Metrics {
        Metrics {
            single_shard: AtomicU64::new(0),
            multi_shard: AtomicU64::new(0),
            scatter_gather: AtomicU64::new(0),
            plans_reused: AtomicU64::new(0),
            per_shard: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            per_vnode: vnodes.into_iter().map(|s| (s, AtomicU64::new(0))).collect(),
        }
    }

    /// Counts one key-addressed request landing on vnode `token`.
    pub fn record_vnode(&self, token: usize) {
        if let Some((_, c)) = self.per_vnode.get(token) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Vnodes (token position, shard) whose request count is more than
    /// `factor` times the mean over all vnodes (and at least
    /// `min_requests`): a hot key range, finer than a hot shard.
    pub fn hot_vnodes(&self, factor: f64, min_requests: u64) -> Vec<(usize, ShardId)> {
        let counts: Vec<u64> = self
            .per_vnode
            .iter()
            .map(|(_, c)| c.load(Ordering::Relaxed))
            .collect();
        hot(&counts, factor, min_requests)
            .into_iter()
            .map(|i| (i as usize, self.per_vnode[i as usize].0))
            .collect()
    }

    /// Counts one table read by how it was routed.
    pub fn record_route(&self, target: &Target) {
        let c = match target {
            Target::One(_) => &self.single_shard,
            Target::Some(_) => &self.multi_shard,
            Target::All => &self.scatter_gather,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a simple query that reused its shape's plan.
    pub fn record_plan_reuse(&self) {
        self.plans_reused.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one fragment sent to `shard`.
    pub fn record_request(&self, shard: ShardId) {
        if let Some(c) = self.per_shard.get(shard as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Name/value pairs, in a stable order.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .routes()
            .into_iter()
            .map(|(route, n)| (format!("reads_{route}"), n))
            .collect();
        out.push(("simple_plans_reused".to_string(), self.plans_reused()));
        for (i, n) in self.shard_requests().into_iter().enumerate() {
            out.push((format!("shard_{i}_requests"), n));
        }
        out
    }

    /// Reads by how they were routed: one shard, several, every shard.
    pub fn routes(&self) -> [(&'static str, u64); 3] {
        [
            ("single_shard", self.single_shard.load(Ordering::Relaxed)),
            ("multi_shard", self.multi_shard.load(Ordering::Relaxed)),
            (
                "scatter_gather",
                self.scatter_gather.load(Ordering::Relaxed),
            ),
        ]
    }

    /// Simple queries run on a plan their connection had bound before.
    pub fn plans_reused(&self) -> u64 {
        self.plans_reused.load(Ordering::Relaxed)
    }

    /// Fragments sent to each shard, by shard id.
    pub fn shard_requests(&self) -> Vec<u64> {
        self.per_shard
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    /// Key-addressed requests per vnode, by ring position: (shard, count).
    pub fn vnode_requests(&self) -> Vec<(ShardId, u64)> {
        self.per_vnode
            .iter()
            .map(|(s, c)| (*s, c.load(Ordering::Relaxed)))
            .collect()
    }

    /// Shards whose request count is more than `factor` times the mean of
    /// the others (and at least `min_requests`): a hot spot.
    pub fn hot_shards(&self, factor: f64, min_requests: u64) -> Vec<ShardId> {
        hot(&self.shard_requests(), factor, min_requests)
    }
}

fn hot(counts: &[u64], factor: f64, min_requests: u64) -> Vec<ShardId> {
    let total: u64 = counts.iter().sum();
    let n = counts.len();
    if n < 2 {
        return Vec::new();
    }
    (0..n)
        .filter(|&i| {
            let others = (total - counts[i]) as f64 / (n - 1) as f64;
            counts[i] >= min_requests && counts[i] as f64 > factor * others.max(1.0)
        })
        .map(|i| i as ShardId)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_far_above_the_others_is_hot() {
        assert_eq!(hot(&[10, 12, 400, 9], 4.0, 100), vec![2]);
        assert!(hot(&[100, 110, 95, 105], 4.0, 10).is_empty());
        assert!(
            hot(&[0, 0, 5, 0], 4.0, 100).is_empty(),
            "too few requests to judge"
        );
    }

    #[test]
    fn routes_are_counted_by_kind() {
        let m = Metrics::new(2, vec![0, 1]);
        m.record_route(&Target::One(1));
        m.record_route(&Target::All);
        m.record_route(&Target::All);
        m.record_request(1);
        let s: std::collections::HashMap<String, u64> = m.snapshot().into_iter().collect();
        assert_eq!(s["reads_single_shard"], 1);
        assert_eq!(s["reads_scatter_gather"], 2);
        assert_eq!(s["shard_1_requests"], 1);
    }

    #[test]
    fn a_vnode_far_above_the_mean_is_hot() {
        let m = Metrics::new(2, vec![0, 1, 0, 1, 0, 1]);
        for t in 0..6 {
            m.record_vnode(t);
        }
        for _ in 0..500 {
            m.record_vnode(3);
        }
        assert_eq!(m.hot_vnodes(4.0, 100), vec![(3, 1)]);
    }
}
