//! The write lease: which node of a primary and its standbys may accept
//! writes.
//!
//! **Format.** One object, `lease`, at the root of an archive the nodes
//! share: JSON [`Record`] (holder, epoch, renewal count, time to live,
//! and for a holder that took over, the log positions it took over at).
//! Each node keeps the epoch it last held in `lease.json` in its data
//! directory.
//!
//! **Rule.** The object changes only by conditional writes
//! ([`Provider::put_if`]): created when absent, replaced only when it is
//! still the version last read. The holder renews it every fifth of its
//! time to live; a renewal that loses the race to another writer means the
//! lease is gone. No two clocks are compared: a node deems the lease
//! expired once it has seen the same version for a whole time to live on
//! its own monotonic clock, and the holder takes writes only until four
//! fifths of the time to live after it *started* its last successful
//! renewal. Whoever saw that renewal saw it after it started, so the
//! holder has stopped writing before anyone else may take the lease.
//!
//! **Epochs.** Every change of holder raises the epoch. A node whose own
//! epoch is below the lease's while another holds it was replaced: it
//! takes no writes and never takes the lease back on its own (its data
//! lacks what its successor wrote since); an operator decides.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::archive::{Provider, Version};

/// The lease object's name in its archive.
pub const OBJECT: &str = "lease";
/// What the probe for conditional writes writes to (never successfully).
const PROBE: &str = "lease.probe";
/// The node's own record of the lease, in its data directory.
const LOCAL: &str = "lease.json";

/// The lease object.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// The node that may take writes, by name.
    pub holder: String,
    /// And by the id of its data directory ([`super::node_id`]), so two
    /// nodes given one name are never both the holder; `None` while the
    /// lease is handed to `holder` and not yet taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_id: Option<String>,
    /// Raised by one at every change of holder.
    pub epoch: u64,
    /// Raised by one at every renewal (an object store's version may be
    /// a hash of the content: every write must change it).
    pub renewal: u64,
    pub ttl_ms: u64,
    /// Wall-clock time of the write, RFC 3339: for people only.
    pub at: String,
    /// Each log's end where the holder took over (see
    /// [`fortress_proxy::Cluster::logs`]); `None` for the first holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub takeover: Option<Vec<u64>>,
    /// The holder before this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// Where the holder's standbys stream from (its replication address
    /// as others reach it), so the other standbys of a replaced primary
    /// follow the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<String>,
}

/// What the node keeps of the lease across restarts.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Local {
    epoch: u64,
}

/// What a node found when it tried to hold the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Held {
    /// This node holds it.
    Mine,
    /// Another node holds it, and this node never held a later epoch:
    /// writes wait for an operator (or the holder's loss and a failover).
    Other { holder: String, epoch: u64 },
    /// This node held epoch `mine`, and another took over since: it was
    /// replaced, and `record` is the lease as found.
    Replaced { mine: u64, record: Record },
}

/// A node's side of the lease.
pub struct Lease {
    archive: Provider,
    me: String,
    /// This node's data directory id.
    id: String,
    ttl: Duration,
    local: PathBuf,
    st: Mutex<State>,
    /// One write of the lease at a time from this node: a renewal and a
    /// handover never race each other.
    writing: tokio::sync::Mutex<()>,
    /// Whether the archive was seen to refuse a conditional write.
    probed: std::sync::atomic::AtomicBool,
    /// This node's replication address, written into the lease it holds.
    advertise: Option<String>,
}

#[derive(Default)]
struct State {
    /// The lease as last read or written, its version, and when this node
    /// first saw that version.
    seen: Option<(Record, Version, Instant)>,
    /// While this node holds the lease: writes are allowed until then.
    valid_until: Option<Instant>,
    /// The epoch this node last held.
    epoch: u64,
    /// Set once this node learned that another took the lease from it,
    /// or handed it over: no writes from then on.
    replaced: Option<String>,
    /// The last failure to reach the lease, if the last attempt failed.
    error: Option<String>,
    /// Set while the holder refuses new writes of its own accord (a
    /// handover under way).
    paused: Option<String>,
}

/// The lease as status reports it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LeaseStatus {
    /// The archive the lease lives in.
    pub archive: String,
    /// This node's name.
    pub node: String,
    /// The holder as last read, if any.
    pub holder: Option<String>,
    pub epoch: u64,
    /// Whether this node may take writes now.
    pub writable: bool,
    /// Why not, if not.
    pub fenced: Option<String>,
    /// The last failure to reach the lease.
    pub error: Option<String>,
}

impl Lease {
    /// The lease in `archive` as node `me` with data directory id `id`,
    /// whose data directory is `dir`.
    pub fn open(
        archive: Provider,
        me: &str,
        id: &str,
        ttl: Duration,
        dir: &Path,
    ) -> anyhow::Result<Lease> {
        let local = dir.join(LOCAL);
        let epoch = match std::fs::read(&local) {
            Ok(b) => {
                serde_json::from_slice::<Local>(&b)
                    .with_context(|| format!("{} is damaged", local.display()))?
                    .epoch
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e).with_context(|| format!("reading {}", local.display())),
        };
        Ok(Lease {
            archive,
            me: me.to_string(),
            id: id.to_string(),
            ttl,
            local,
            st: Mutex::new(State {
                epoch,
                ..State::default()
            }),
            writing: Default::default(),
            probed: Default::default(),
            advertise: None,
        })
    }

    /// Names the replication address written into the lease this node
    /// holds.
    pub fn advertising(self, addr: Option<String>) -> Lease {
        Lease {
            advertise: addr,
            ..self
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn archive(&self) -> &Provider {
        &self.archive
    }

    /// How often the holder renews and the others read.
    pub fn period(&self) -> Duration {
        self.ttl / 5
    }

    /// The epoch this node last held (0 if never).
    pub fn my_epoch(&self) -> u64 {
        self.st.lock().expect("lease").epoch
    }

    /// The lease as last read.
    pub fn seen(&self) -> Option<Record> {
        self.st
            .lock()
            .expect("lease")
            .seen
            .as_ref()
            .map(|s| s.0.clone())
    }

    /// Whether `r` names this node, by name and data directory.
    pub fn mine(&self, r: &Record) -> bool {
        r.holder == self.me && r.holder_id.as_deref() == Some(self.id.as_str())
    }

    /// Whether `r` hands the lease to this node's name, not yet taken.
    pub fn handed(&self, r: &Record) -> bool {
        r.holder == self.me && r.holder_id.is_none()
    }

    /// Whether this node holds the lease as last read, at its own epoch.
    pub fn holding(&self) -> bool {
        let st = self.st.lock().expect("lease");
        st.replaced.is_none()
            && st
                .seen
                .as_ref()
                .is_some_and(|(r, _, _)| self.mine(r) && r.epoch == st.epoch)
    }

    /// The lease as last read and its version, while this node holds it.
    fn held(&self) -> Option<(Record, Version)> {
        if !self.holding() {
            return None;
        }
        let st = self.st.lock().expect("lease");
        st.seen.as_ref().map(|(r, v, _)| (r.clone(), v.clone()))
    }

    fn record_error<T>(&self, r: anyhow::Result<T>) -> anyhow::Result<T> {
        let mut st = self.st.lock().expect("lease");
        st.error = r.as_ref().err().map(|e| format!("{e:#}"));
        r
    }

    /// How long one read or write of the lease may take: one that takes
    /// longer could not keep a holder's writes going anyway, and a stuck
    /// one (an object store retrying) would hold up the next.
    fn call_timeout(&self) -> Duration {
        self.ttl * 2 / 5
    }

    async fn bounded<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        match tokio::time::timeout(self.call_timeout(), call).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!(
                "archive {}: {what} the lease took over {:?}",
                self.archive.name,
                self.call_timeout()
            )),
        }
    }

    /// Reads the lease, noting when a new version was first seen.
    pub async fn observe(&self) -> anyhow::Result<Option<Record>> {
        let got = self
            .bounded("reading", self.archive.get_versioned(OBJECT))
            .await;
        let got = self.record_error(got)?;
        let Some((bytes, version)) = got else {
            self.st.lock().expect("lease").seen = None;
            return Ok(None);
        };
        let record: Record = serde_json::from_slice(&bytes).with_context(|| {
            format!("archive {}: the lease object is damaged", self.archive.name)
        })?;
        let mut st = self.st.lock().expect("lease");
        let fresh = !matches!(&st.seen, Some((_, v, _)) if *v == version);
        if fresh {
            st.seen = Some((record.clone(), version, Instant::now()));
        }
        Ok(Some(record))
    }

    /// Whether the lease as last read has stayed unchanged for the whole
    /// time to live its holder promised: its holder has stopped writing.
    /// A lease never found has not expired: only a primary creates one.
    pub fn expired(&self) -> bool {
        self.expired_locked(&self.st.lock().expect("lease"))
    }

    fn expired_locked(&self, st: &State) -> bool {
        match &st.seen {
            None => false,
            Some((r, _, first_seen)) => first_seen.elapsed() >= Duration::from_millis(r.ttl_ms),
        }
    }

    /// Why this node must not start a write now, or `None`.
    pub fn fence(&self) -> Option<String> {
        self.fence_for(false)
    }

    /// Why this node must not acknowledge a write it has made, or `None`:
    /// as [`Lease::fence`], except that a handover under way waits for
    /// the writes that started before it.
    pub fn fence_ack(&self) -> Option<String> {
        self.fence_for(true)
    }

    fn fence_for(&self, ack: bool) -> Option<String> {
        let st = self.st.lock().expect("lease");
        if let Some(why) = &st.replaced {
            return Some(why.clone());
        }
        if let Some(why) = st.paused.as_ref().filter(|_| !ack) {
            return Some(why.clone());
        }
        match st.valid_until {
            Some(until) if Instant::now() < until => None,
            Some(_) => Some(format!(
                "the write lease in archive {} could not be renewed in time{}",
                self.archive.name,
                st.error
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            )),
            None => Some(match &st.seen {
                Some((r, _, _)) if !self.mine(r) => format!(
                    "node {} holds the write lease (epoch {}) in archive {}",
                    r.holder, r.epoch, self.archive.name
                ),
                _ => format!(
                    "this node has not yet taken the write lease in archive {}",
                    self.archive.name
                ),
            }),
        }
    }

    pub fn status(&self) -> LeaseStatus {
        let fenced = self.fence();
        let st = self.st.lock().expect("lease");
        LeaseStatus {
            archive: self.archive.name.clone(),
            node: self.me.clone(),
            holder: st.seen.as_ref().map(|s| s.0.holder.clone()),
            epoch: st.seen.as_ref().map_or(st.epoch, |s| s.0.epoch),
            writable: fenced.is_none(),
            fenced,
            error: st.error.clone(),
        }
    }

    fn save_epoch(&self, epoch: u64) -> anyhow::Result<()> {
        super::replace_file(&self.local, &serde_json::to_vec(&Local { epoch })?)?;
        self.st.lock().expect("lease").epoch = epoch;
        Ok(())
    }

    /// Writes `record` over `expected` (the version last seen); true if
    /// it landed, and then, if it names this node, this node holds the
    /// lease until four fifths of its time to live from now.
    async fn write(&self, record: Record, expected: Option<&Version>) -> anyhow::Result<bool> {
        let started = Instant::now();
        let body = serde_json::to_vec_pretty(&record)?;
        let put = self
            .bounded("writing", self.archive.put_if(OBJECT, body, expected))
            .await;
        let Some(version) = self.record_error(put)? else {
            return Ok(false);
        };
        let mine = self.mine(&record);
        let mut st = self.st.lock().expect("lease");
        st.seen = Some((record, version, started));
        if mine && st.replaced.is_none() {
            st.valid_until = Some(started + self.ttl * 4 / 5);
        }
        Ok(true)
    }

    /// The record after `from` naming `holder` (`holder_id` `None` for a
    /// handover to it).
    fn next(
        &self,
        from: Option<&Record>,
        holder: &str,
        holder_id: Option<&str>,
        takeover: Option<Vec<u64>>,
    ) -> Record {
        let same = |r: &Record| r.holder == holder && r.holder_id.as_deref() == holder_id;
        let (epoch, renewal) = match from {
            None => (self.my_epoch().max(1), 0),
            Some(r) if same(r) => (r.epoch, r.renewal + 1),
            // Taking what was handed over: the giver raised the epoch.
            Some(r) if r.holder == holder && r.holder_id.is_none() => (r.epoch, r.renewal + 1),
            Some(r) => (r.epoch + 1, 0),
        };
        let keeps = from.is_some_and(|r| r.holder == holder);
        Record {
            holder: holder.to_string(),
            holder_id: holder_id.map(String::from),
            epoch,
            renewal,
            ttl_ms: self.ttl.as_millis() as u64,
            at: super::now_rfc3339(),
            takeover: match from {
                Some(r) if keeps && takeover.is_none() => r.takeover.clone(),
                _ => takeover,
            },
            previous: match from {
                Some(r) if keeps => r.previous.clone(),
                Some(r) => Some(r.holder.clone()),
                None => None,
            },
            // Its own address in a record naming this node; a handover's
            // taker writes its own.
            replication: match holder_id {
                Some(id) if holder == self.me && id == self.id => self.advertise.clone(),
                _ => None,
            },
        }
    }

    /// Checks once that the archive refuses a conditional write against a
    /// version that does not exist: a store that ignored the condition
    /// would let two nodes both take the lease.
    async fn probe(&self) -> anyhow::Result<()> {
        use std::sync::atomic::Ordering;
        if self.probed.load(Ordering::Relaxed) || self.archive.local_dir.is_some() {
            return Ok(());
        }
        // An ETag (S3, Azure) and a generation (GCS) no object has.
        let bogus = Version::Tag(object_store::UpdateVersion {
            e_tag: Some("\"fortress-lease-probe\"".into()),
            version: Some("1".into()),
        });
        let put = self
            .bounded(
                "probing",
                self.archive.put_if(PROBE, b"probe".to_vec(), Some(&bogus)),
            )
            .await;
        if self.record_error(put)?.is_some() {
            anyhow::bail!(
                "archive {} ignores conditional writes (it replaced an object on a version it never had): the write lease cannot fence there; give --lease-archive another archive, or off",
                self.archive.name
            );
        }
        self.probed.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// A primary's claim at start: takes the lease when there is none,
    /// renews it when it is this node's, and otherwise says whose it is.
    pub async fn claim(&self) -> anyhow::Result<Held> {
        self.probe().await?;
        let _writing = self.writing.lock().await;
        for _ in 0..3 {
            let found = self.observe().await?;
            let version = self.version();
            if found.is_none() && self.my_epoch() > 0 {
                // Gone while this node was away: a successor's lease may
                // have been lost with it, so this node does not assume it
                // is still the latest holder.
                anyhow::bail!(
                    "the write lease object is gone from archive {}, and this node held epoch {}: if it is still the primary, put the lease back (or remove {} deliberately)",
                    self.archive.name,
                    self.my_epoch(),
                    self.local.display()
                );
            }
            if let Some(r) = found.as_ref().filter(|r| !self.mine(r)) {
                let mine = self.my_epoch();
                return Ok(if r.holder == self.me && !self.handed(r) {
                    anyhow::bail!(
                        "another node named {} (data directory {}) holds the write lease: give each node its own --name",
                        r.holder,
                        r.holder_id.as_deref().unwrap_or("?")
                    )
                } else if mine > 0 && r.epoch > mine {
                    Held::Replaced {
                        mine,
                        record: r.clone(),
                    }
                } else {
                    Held::Other {
                        holder: r.holder.clone(),
                        epoch: r.epoch,
                    }
                });
            }
            let record = self.next(found.as_ref(), &self.me, Some(&self.id), None);
            let epoch = record.epoch;
            if self.write(record, version.as_ref()).await? {
                self.save_epoch(epoch)?;
                return Ok(Held::Mine);
            }
        }
        anyhow::bail!(
            "archive {}: the lease kept changing while this node claimed it",
            self.archive.name
        )
    }

    fn version(&self) -> Option<Version> {
        self.st
            .lock()
            .expect("lease")
            .seen
            .as_ref()
            .map(|s| s.1.clone())
    }

    /// Renews the lease this node holds. `Ok(false)` when it was lost:
    /// another node wrote it since; this node is then fenced for good.
    pub async fn renew(&self) -> anyhow::Result<bool> {
        let _writing = self.writing.lock().await;
        let Some((record, version)) = self.held() else {
            return Ok(false);
        };
        let next = self.next(Some(&record), &self.me, Some(&self.id), None);
        if self.write(next, Some(&version)).await? {
            return Ok(true);
        }
        // Lost the race. If the winner is this node (a renewal whose answer
        // was lost landed after all), renew on that; if the object is gone,
        // put it back (no other node takes a lease it cannot find); else it
        // is gone.
        match self.observe().await? {
            Some(r) if self.mine(&r) && r.epoch == record.epoch => {
                let version = self.version();
                let next = self.next(Some(&r), &self.me, Some(&self.id), None);
                Ok(self.write(next, version.as_ref()).await?)
            }
            None => {
                tracing::warn!(archive = %self.archive.name, "the write lease object vanished; writing it again");
                let next = self.next(Some(&record), &self.me, Some(&self.id), None);
                Ok(self.write(next, None).await?)
            }
            Some(r) => {
                self.lose(&format!(
                    "node {} took the write lease (epoch {}) from this node",
                    r.holder, r.epoch
                ));
                Ok(false)
            }
        }
    }

    /// Gives up writes for good: `why` is what fenced this node.
    pub fn lose(&self, why: &str) {
        let mut st = self.st.lock().expect("lease");
        if st.replaced.is_none() {
            tracing::error!(reason = %why, "this node takes no more writes");
            st.replaced = Some(why.to_string());
        }
        st.valid_until = None;
    }

    /// Refuses new writes until [`Lease::resume`], holding the lease
    /// meanwhile.
    pub fn pause(&self, why: &str) {
        self.st.lock().expect("lease").paused = Some(why.to_string());
    }

    pub fn resume(&self) {
        self.st.lock().expect("lease").paused = None;
    }

    /// A standby's takeover: takes the lease when it has expired, when it
    /// was handed to this node, or when this node took it already (a
    /// promotion to retry), recording the log positions it takes over at.
    /// `Ok(None)` when it may not (a lease never found is not taken); the
    /// new epoch when taken.
    pub async fn take_over(&self, takeover: Vec<u64>) -> anyhow::Result<Option<u64>> {
        let _writing = self.writing.lock().await;
        let Some(found) = self.observe().await? else {
            return Ok(None);
        };
        let (expired, version) = {
            let st = self.st.lock().expect("lease");
            let version = st.seen.as_ref().map(|s| s.1.clone());
            (self.expired_locked(&st), version)
        };
        if !expired && !self.handed(&found) && !self.mine(&found) {
            return Ok(None);
        }
        let record = self.next(Some(&found), &self.me, Some(&self.id), Some(takeover));
        let epoch = record.epoch;
        if !self.write(record, version.as_ref()).await? {
            return Ok(None);
        }
        self.save_epoch(epoch)?;
        Ok(Some(epoch))
    }

    /// A holder's planned handover to the node named `to`: names it the
    /// holder at the next epoch, and this node takes no more writes.
    /// `Ok(false)` if the lease was not this node's to give. On an error
    /// the handover may or may not have landed: see [`Lease::settle`].
    pub async fn hand_over(&self, to: &str, to_id: Option<&str>) -> anyhow::Result<bool> {
        let _writing = self.writing.lock().await;
        let Some((record, version)) = self.held() else {
            return Ok(false);
        };
        let next = self.next(Some(&record), to, to_id, None);
        if self.write(next, Some(&version)).await? {
            self.lose(&format!("this node handed the write lease over to {to}"));
            return Ok(true);
        }
        Ok(false)
    }

    /// After a handover whose outcome is unknown: renews the lease (a few
    /// tries), which replaces the version the handover was conditional on,
    /// so a late handover write can no longer land. True if this node
    /// still holds it; otherwise it takes no more writes (it may have been
    /// handed over).
    pub async fn settle(&self) -> bool {
        for _ in 0..3 {
            match self.renew().await {
                Ok(true) => return true,
                Ok(false) => {
                    self.lose("the write lease was handed over or lost during a handover");
                    return false;
                }
                Err(_) => tokio::time::sleep(self.period()).await,
            }
        }
        self.lose("a handover's outcome could not be settled with the archive; take no chances");
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(archive: &Path, dir: &Path, me: &str, ttl_ms: u64) -> Lease {
        node_id(archive, dir, me, &format!("{me}-id"), ttl_ms)
    }

    fn node_id(archive: &Path, dir: &Path, me: &str, id: &str, ttl_ms: u64) -> Lease {
        let url = format!("file://{}", archive.display());
        let p = Provider::open("a", &url).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        Lease::open(p, me, id, Duration::from_millis(ttl_ms), dir).unwrap()
    }

    const TTL: u64 = 1500;

    #[tokio::test]
    async fn one_holder_at_a_time_and_a_replaced_holder_stays_replaced() {
        let t = tempfile::tempdir().unwrap();
        let arch = t.path().join("arch");
        let p = node(&arch, &t.path().join("p"), "p", TTL);
        let s = node(&arch, &t.path().join("s"), "s", TTL);
        // No lease yet: a standby does not create one.
        assert_eq!(s.take_over(vec![1, 2]).await.unwrap(), None);
        assert_eq!(p.claim().await.unwrap(), Held::Mine);
        assert!(p.fence().is_none(), "{:?}", p.fence());
        // The standby may not take a lease it has not seen expire.
        assert_eq!(s.take_over(vec![1, 2]).await.unwrap(), None);
        assert!(s.fence().is_some());
        // A renewal keeps it; the standby sees a new version each time.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(p.renew().await.unwrap());
            assert_eq!(s.take_over(vec![1, 2]).await.unwrap(), None);
        }
        // The holder stops renewing: its writes stop at 4/5 of the ttl,
        // and the standby takes over only after a whole ttl.
        tokio::time::sleep(Duration::from_millis(TTL * 4 / 5 + 50)).await;
        assert!(p.fence().unwrap().contains("could not be renewed"));
        tokio::time::sleep(Duration::from_millis(TTL / 5 + 50)).await;
        assert_eq!(s.take_over(vec![1, 2]).await.unwrap(), Some(2));
        assert!(s.fence().is_none());
        assert_eq!(s.seen().unwrap().takeover, Some(vec![1, 2]));
        assert_eq!(s.seen().unwrap().previous.as_deref(), Some("p"));
        // The old holder's renewal fails for good.
        assert!(!p.renew().await.unwrap());
        assert!(p.fence().unwrap().contains("node s took"));
        // Restarted, it finds itself replaced and does not take it back.
        let p2 = node(&arch, &t.path().join("p"), "p", TTL);
        assert_eq!(p2.my_epoch(), 1);
        let Held::Replaced { mine, record } = p2.claim().await.unwrap() else {
            panic!("not replaced");
        };
        assert_eq!((mine, record.epoch, record.holder.as_str()), (1, 2, "s"));
        // A node that never held it waits for the holder.
        let q = node(&arch, &t.path().join("q"), "q", TTL);
        assert_eq!(
            q.claim().await.unwrap(),
            Held::Other {
                holder: "s".into(),
                epoch: 2
            }
        );
        // Another node given the holder's name is refused, and does not
        // count the lease as handed to it.
        let twin = node_id(&arch, &t.path().join("twin"), "s", "twin-id", TTL);
        let e = twin.claim().await.unwrap_err();
        assert!(e.to_string().contains("its own --name"), "{e}");
        assert_eq!(twin.take_over(vec![3]).await.unwrap(), None);
        // The new holder restarted claims its own lease again.
        let s2 = node(&arch, &t.path().join("s"), "s", TTL);
        assert_eq!(s2.claim().await.unwrap(), Held::Mine);
        assert_eq!(s2.seen().unwrap().epoch, 2);
    }

    #[tokio::test]
    async fn a_handover_names_the_successor_and_fences_the_giver() {
        let t = tempfile::tempdir().unwrap();
        let arch = t.path().join("arch");
        let p = node(&arch, &t.path().join("p"), "p", 5000);
        let s = node(&arch, &t.path().join("s"), "s", 5000);
        assert_eq!(p.claim().await.unwrap(), Held::Mine);
        assert!(p.hand_over("s", Some("s-id")).await.unwrap());
        // Only the standby named, by its data directory too, may take it.
        let twin = node_id(&arch, &t.path().join("twin"), "s", "twin-id", 5000);
        assert_eq!(twin.take_over(vec![7]).await.unwrap(), None);
        assert!(p.fence().unwrap().contains("handed"));
        assert!(!p.settle().await);
        // Not expired, but handed to it: taken at once, at the new epoch.
        assert_eq!(s.take_over(vec![7]).await.unwrap(), Some(2));
        assert!(s.fence().is_none());
        assert!(s.renew().await.unwrap());
        assert!(!p.renew().await.unwrap());
        assert_eq!(s.seen().unwrap().holder_id.as_deref(), Some("s-id"));
    }

    #[tokio::test]
    async fn a_vanished_lease_is_written_again_by_its_holder() {
        let t = tempfile::tempdir().unwrap();
        let arch = t.path().join("arch");
        let p = node(&arch, &t.path().join("p"), "p", TTL);
        assert_eq!(p.claim().await.unwrap(), Held::Mine);
        std::fs::remove_file(arch.join(OBJECT)).unwrap();
        assert!(p.renew().await.unwrap());
        assert!(p.fence().is_none());
        assert!(arch.join(OBJECT).exists());
    }
}
