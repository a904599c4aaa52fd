//! Which standby takes over: the one that holds the most of the lost
//! primary's log, so a failover loses as little as it can.
//!
//! **Format.** Every standby with a write lease writes, each lease period,
//! `standbys/<name>.json` into the lease's archive (JSON: name, the lease
//! epoch of the primary it follows, each log's end, whether it takes over
//! by itself, and a counter raised at every write).
//!
//! **Rule.** When a standby's primary is lost and the lease expired, it
//! first looks for another standby of the same primary that takes over by
//! itself, is alive and holds more of every log (all ends at least its
//! own, one beyond). It defers to that one for up to three lease periods
//! of time to live (the other may declare the primary lost later), then
//! takes over itself. No clocks are compared: a standby counts as alive
//! only once this node has seen its counter change, and while it last
//! saw it change within three times to live.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::archive::Provider;

/// One standby's report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub name: String,
    /// The lease epoch of the primary it follows.
    pub epoch: u64,
    /// Each log's end ([`fortress_proxy::Cluster::log_ends`]).
    pub ends: Vec<u64>,
    /// Whether it takes over by itself (`--failover auto`).
    pub auto: bool,
    pub seq: u64,
}

/// The other standbys as this one last saw them.
#[derive(Default)]
pub struct Candidates {
    seq: AtomicU64,
    seen: Mutex<HashMap<String, Seen>>,
    /// The standby last deferred to, and when this outage's deferring
    /// began.
    deferring: Mutex<Option<(String, Instant)>>,
}

struct Seen {
    report: Report,
    /// When this node saw its counter change (never, yet: `None`).
    changed: Option<Instant>,
}

fn object(name: &str) -> String {
    format!("standbys/{name}.json")
}

/// Whether `theirs` holds more of every log than `mine`.
fn ahead(theirs: &[u64], mine: &[u64]) -> bool {
    theirs.len() == mine.len()
        && theirs.iter().zip(mine).all(|(t, m)| t >= m)
        && theirs.iter().zip(mine).any(|(t, m)| t > m)
}

impl Candidates {
    /// Writes this standby's report (its counter raised).
    pub async fn publish(&self, archive: &Provider, mut me: Report) -> anyhow::Result<()> {
        me.seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        archive
            .put(&object(&me.name), serde_json::to_vec(&me)?)
            .await
    }

    /// Reads the other standbys' reports.
    pub async fn refresh(&self, archive: &Provider, me: &str) -> anyhow::Result<()> {
        let mut reports = Vec::new();
        for (file, _) in archive.list("standbys", None).await? {
            let Some(name) = file.strip_suffix(".json") else {
                continue;
            };
            if name == me {
                continue;
            }
            if let Some(body) = archive.get(&object(name)).await? {
                if let Ok(r) = serde_json::from_slice::<Report>(&body) {
                    reports.push(r);
                }
            }
        }
        let now = Instant::now();
        let mut seen = self.seen.lock().expect("candidates");
        for r in reports {
            match seen.get_mut(&r.name) {
                Some(s) if s.report.seq != r.seq => {
                    s.report = r;
                    s.changed = Some(now);
                }
                Some(_) => {}
                None => {
                    seen.insert(
                        r.name.clone(),
                        Seen {
                            report: r,
                            changed: None,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// A live standby that takes over by itself, follows the primary of
    /// lease `epoch` and holds more of every log than `mine`: its name.
    /// `alive` is how recently its counter must have changed.
    pub fn better(&self, epoch: u64, mine: &[u64], alive: Duration) -> Option<String> {
        let seen = self.seen.lock().expect("candidates");
        seen.values()
            .filter(|s| s.changed.is_some_and(|t| t.elapsed() < alive))
            .filter(|s| s.report.auto && s.report.epoch == epoch && ahead(&s.report.ends, mine))
            .max_by_key(|s| s.report.ends.iter().sum::<u64>())
            .map(|s| s.report.name.clone())
    }

    /// Whether to go on deferring to standby `to`: for at most `max` since
    /// this outage's deferring began, whichever standby it is to. Logs
    /// each standby deferred to.
    pub fn defer(&self, to: &str, max: Duration) -> bool {
        let mut d = self.deferring.lock().expect("candidates");
        let since = match &*d {
            Some((name, since)) if name == to => *since,
            other => {
                tracing::warn!(
                    standby = to,
                    "deferring the takeover to a standby that holds more of the primary's log"
                );
                let since = other.as_ref().map_or_else(Instant::now, |(_, s)| *s);
                *d = Some((to.to_string(), since));
                since
            }
        };
        since.elapsed() < max
    }

    /// The primary is back (or another node took over): the next outage
    /// defers afresh.
    pub fn reset(&self) {
        *self.deferring.lock().expect("candidates") = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_live_automatic_standby_of_the_same_primary_with_more_log_is_deferred_to() {
        let c = Candidates::default();
        let report = |name: &str, ends: Vec<u64>, auto: bool, seq: u64| Report {
            name: name.into(),
            epoch: 1,
            ends,
            auto,
            seq,
        };
        let now = Instant::now();
        let mut seen = c.seen.lock().unwrap();
        for r in [
            report("ahead", vec![10, 5], true, 2),
            report("manual", vec![20, 9], false, 2),
            report("behind", vec![9, 5], true, 2),
            report("mixed", vec![11, 4], true, 2),
        ] {
            seen.insert(
                r.name.clone(),
                Seen {
                    report: r,
                    changed: Some(now),
                },
            );
        }
        seen.insert(
            "silent".into(),
            Seen {
                report: report("silent", vec![99, 99], true, 1),
                changed: None,
            },
        );
        drop(seen);
        let alive = Duration::from_secs(5);
        assert_eq!(c.better(1, &[9, 5], alive).as_deref(), Some("ahead"));
        assert_eq!(c.better(1, &[10, 5], alive), None);
        assert_eq!(
            c.better(2, &[9, 5], alive),
            None,
            "another primary's standby"
        );
        assert!(c.defer("ahead", Duration::from_secs(60)));
        assert!(c.defer("ahead", Duration::from_secs(60)));
        assert!(!c.defer("ahead", Duration::ZERO));
    }
}
