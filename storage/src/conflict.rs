//! Multi-master conflict resolution: which of two versions of a row, one
//! here and one a peer committed, a node keeps.
//!
//! **Stamps.** Every version a node writes is stamped with the node that
//! committed it first and its commit time there, plus a version vector:
//! for each node, the newest of its writes to the row this version
//! follows. A version committed here is stamped implicitly (this node, its
//! commit timestamp, the vector of the peer version it replaced with this
//! node's entry raised); a version a peer sent keeps the peer's stamp,
//! stored beside it (see `ShardStore::apply_remote`).
//!
//! **Resolvers.** Under every resolver a version whose vector covers the
//! one here (written after seeing it) replaces it, and one the version
//! here covers is ignored; resolvers choose between concurrent versions
//! (neither covers the other). `timestamp` (the default) keeps the one
//! with the greater hybrid-clock commit time, ties broken by node name;
//! `lww` the greater wall-clock part of it (a clock running ahead wins),
//! then the whole clock, then the node; `version-vector` keeps the
//! `timestamp` winner visible and the other as a sibling, reported until a
//! later write covers both. A table may name `greatest(COLUMN)`: of two
//! concurrent rows, the greater value of that column wins, ties by the
//! node's resolver. Every resolver chooses alike on every node, whichever
//! version arrives first, so peers converge.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;

/// How a node chooses between its version of a row and a peer's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resolver {
    Timestamp,
    Lww,
    VersionVector,
}

impl std::str::FromStr for Resolver {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "timestamp" => Ok(Resolver::Timestamp),
            "lww" => Ok(Resolver::Lww),
            "version-vector" => Ok(Resolver::VersionVector),
            _ => Err(format!(
                "unknown conflict resolver {s:?} (timestamp, lww, version-vector)"
            )),
        }
    }
}

impl std::fmt::Display for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Resolver::Timestamp => "timestamp",
            Resolver::Lww => "lww",
            Resolver::VersionVector => "version-vector",
        })
    }
}

/// Who wrote a version first, when, and what it follows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub node: String,
    /// Its commit timestamp on that node.
    pub ts: u64,
    /// For each node, the commit timestamp of its newest write this
    /// version follows (itself included).
    pub vv: BTreeMap<String, u64>,
}

impl Stamp {
    /// The stamp of a version `node` committed at `ts`, following the
    /// version stamped `before` (if a peer's).
    pub fn local(node: &str, ts: u64, before: Option<&Stamp>) -> Stamp {
        let mut vv = before.map(|b| b.vv.clone()).unwrap_or_default();
        let e = vv.entry(node.to_string()).or_default();
        *e = (*e).max(ts);
        Stamp {
            node: node.to_string(),
            ts,
            vv,
        }
    }

    /// Whether this version follows (or is) `other`.
    pub fn covers(&self, other: &Stamp) -> bool {
        other
            .vv
            .iter()
            .all(|(n, &t)| self.vv.get(n).is_some_and(|&mine| mine >= t))
    }

    /// Both histories: each node's newest write in either.
    pub fn merged(&self, other: &Stamp) -> BTreeMap<String, u64> {
        let mut vv = self.vv.clone();
        for (n, &t) in &other.vv {
            let e = vv.entry(n.clone()).or_default();
            *e = (*e).max(t);
        }
        vv
    }

    fn by_timestamp(&self, other: &Stamp) -> Ordering {
        (self.ts, &self.node).cmp(&(other.ts, &other.node))
    }

    /// By wall-clock time; in one microsecond by the whole clock, then by
    /// node.
    fn by_wall(&self, other: &Stamp) -> Ordering {
        let wall = |s: &Stamp| Timestamp(s.ts).wall_micros();
        (wall(self), self.ts, &self.node).cmp(&(wall(other), other.ts, &other.node))
    }
}

/// What to do with a peer's version of a row, given the one here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It wins: it becomes the row's newest version, stamped so.
    Take(Stamp),
    /// The version here wins (or already is it).
    Keep,
    /// Concurrent (version vectors): both are kept, the winner visible,
    /// the loser a sibling; `take` says whether the peer's version wins,
    /// and `merged` is the winner's vector (both histories).
    Siblings {
        take: bool,
        merged: BTreeMap<String, u64>,
    },
}

/// Decides between `theirs`, a peer's version, and `here`, the stamp of
/// the newest version of the row here (`None` if the row never had one).
/// `greater` is `Some(ordering)` of their row against ours by a table's
/// own resolver column, when it has one and both are rows.
pub fn resolve(
    resolver: Resolver,
    here: Option<&Stamp>,
    theirs: &Stamp,
    greater: Option<Ordering>,
) -> Verdict {
    let Some(here) = here else {
        return Verdict::Take(theirs.clone());
    };
    if here.node == theirs.node && here.ts == theirs.ts {
        // The same version again (a stream resumed after a failure).
        return Verdict::Keep;
    }
    // A version written after seeing the other replaces it, under every
    // resolver: a resolver only chooses between concurrent ones (else a
    // node's own later write, once taken, could lose on its peer).
    if theirs.covers(here) {
        return Verdict::Take(theirs.clone());
    }
    if here.covers(theirs) {
        return Verdict::Keep;
    }
    let wins = |by: Ordering| match greater.unwrap_or(Ordering::Equal) {
        Ordering::Equal => by == Ordering::Greater,
        o => o == Ordering::Greater,
    };
    match resolver {
        Resolver::Timestamp => match wins(theirs.by_timestamp(here)) {
            true => Verdict::Take(theirs.clone()),
            false => Verdict::Keep,
        },
        Resolver::Lww => match wins(theirs.by_wall(here)) {
            true => Verdict::Take(theirs.clone()),
            false => Verdict::Keep,
        },
        Resolver::VersionVector => Verdict::Siblings {
            take: wins(theirs.by_timestamp(here)),
            merged: theirs.merged(here),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(node: &str, wall: u64, before: Option<&Stamp>) -> Stamp {
        Stamp::local(node, Timestamp::from_wall(wall).0, before)
    }

    #[test]
    fn each_resolver_chooses_alike_whichever_version_arrives_first() {
        let a = at("a", 100, None);
        let b = at("b", 200, None);
        for r in [Resolver::Timestamp, Resolver::Lww] {
            // On a (holding a), b's arrives; on b (holding b), a's does.
            assert_eq!(resolve(r, Some(&a), &b, None), Verdict::Take(b.clone()));
            assert_eq!(resolve(r, Some(&b), &a, None), Verdict::Keep);
        }
        // Concurrent under version vectors: siblings on both, b visible.
        let on_a = resolve(Resolver::VersionVector, Some(&a), &b, None);
        let on_b = resolve(Resolver::VersionVector, Some(&b), &a, None);
        let merged = BTreeMap::from([("a".to_string(), a.ts), ("b".to_string(), b.ts)]);
        assert_eq!(
            on_a,
            Verdict::Siblings {
                take: true,
                merged: merged.clone()
            }
        );
        assert_eq!(
            on_b,
            Verdict::Siblings {
                take: false,
                merged
            }
        );
        // A later write on a that saw b covers both: taken, never a sibling.
        let a2 = at("a", 300, Some(&b));
        assert!(a2.covers(&b) && !b.covers(&a2));
        assert_eq!(
            resolve(Resolver::VersionVector, Some(&b), &a2, None),
            Verdict::Take(a2.clone())
        );
        assert_eq!(
            resolve(Resolver::VersionVector, Some(&a2), &b, None),
            Verdict::Keep
        );
        // The same version again is kept, under every resolver.
        for r in [Resolver::Timestamp, Resolver::Lww, Resolver::VersionVector] {
            assert_eq!(resolve(r, Some(&b), &b, None), Verdict::Keep);
        }
        // A table's own column decides first; ties by timestamp.
        let r = Resolver::Timestamp;
        assert_eq!(
            resolve(r, Some(&b), &a, Some(Ordering::Greater)),
            Verdict::Take(a.clone())
        );
        assert_eq!(
            resolve(r, Some(&a), &b, Some(Ordering::Less)),
            Verdict::Keep
        );
        assert_eq!(
            resolve(r, Some(&a), &b, Some(Ordering::Equal)),
            Verdict::Take(b.clone())
        );
    }

    #[test]
    fn a_write_that_saw_the_other_wins_under_every_resolver() {
        // b's clock runs ahead; a takes b's version, then writes again in
        // the same wall microsecond (its clock observed b's): a's write
        // follows b's, so it wins on both nodes, under lww and greatest too.
        let b = at("b", 900, None);
        let a2 = Stamp::local("a", b.ts + 1, Some(&b));
        for r in [Resolver::Timestamp, Resolver::Lww, Resolver::VersionVector] {
            assert_eq!(
                resolve(r, Some(&b), &a2, None),
                Verdict::Take(a2.clone()),
                "{r}"
            );
            let lower = Some(Ordering::Less);
            assert_eq!(
                resolve(r, Some(&b), &a2, lower),
                Verdict::Take(a2.clone()),
                "{r}"
            );
            assert_eq!(resolve(r, Some(&a2), &b, None), Verdict::Keep, "{r}");
        }
        // Concurrent in one microsecond: lww goes by the whole clock.
        let t = Timestamp::from_wall(500).0;
        let (x, y) = (Stamp::local("a", t + 1, None), Stamp::local("b", t, None));
        assert_eq!(
            resolve(Resolver::Lww, Some(&y), &x, None),
            Verdict::Take(x.clone())
        );
        assert_eq!(resolve(Resolver::Lww, Some(&x), &y, None), Verdict::Keep);
    }
}
