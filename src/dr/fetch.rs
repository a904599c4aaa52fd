//! Downloading an archive into a directory laid out like a data directory
//! (`fortress restore --from URL`), for the ordinary restore to read: the
//! identity, every checkpoint's manifest, then the chosen checkpoint's
//! files and the WAL objects after its cut, several at a time.
//!
//! Every WAL object's envelope and records are verified as it arrives and
//! each becomes one segment file; the logs must be contiguous from where
//! replay starts to the cut of the last complete shipping round (the
//! `positions` object), and nothing after that cut is read, so the
//! download is a consistent cut of the cluster (see `dr::ship`). Checkpoint files are
//! verified by the restore itself (their blocks carry CRCs and the
//! manifest their sizes).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use fortress_storage::checkpoint::{Manifest, MANIFEST};
use fortress_storage::wal::{decode, Decoded};
use futures::StreamExt;

use super::archive::{self, Positions, Provider};

/// Objects downloaded at once.
const PARALLEL: usize = 8;

/// The objects of one log to download.
struct LogPlan {
    name: String,
    prefix: String,
    dir: PathBuf,
    after: u64,
    /// First LSN, last LSN, name and size of each object, in order.
    objects: Vec<(u64, u64, String, u64)>,
}

/// Which timeline of an archive to read (see [`archive::TIMELINES`]).
#[derive(Clone, Copy, Debug)]
pub enum Timeline {
    /// The newest with a complete shipping round.
    Newest,
    /// The one of the primary that held this write lease epoch.
    Of(u64),
}

/// An archive being downloaded into `dir`.
pub struct Download {
    provider: Arc<Provider>,
    /// The timeline read: the lease epoch of the primary that wrote it (1
    /// for the first primary's).
    pub timeline: u64,
    pub dir: PathBuf,
    rt: tokio::runtime::Runtime,
    /// Where shipping stood when the archive was last written to.
    pub positions: Positions,
    /// Bytes downloaded so far.
    pub bytes: Arc<AtomicU64>,
    /// Bytes [`Download::finish`] downloads in all, once chosen.
    pub total: AtomicU64,
}

impl Download {
    /// Opens timeline `which` of the archive at `url` and writes the
    /// identity and every checkpoint manifest into `dir` (created, empty).
    pub fn begin(url: &str, dir: &Path, which: Timeline) -> anyhow::Result<Download> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let epoch = match which {
            Timeline::Of(e) => e,
            Timeline::Newest => {
                let top = Provider::open("source", url)?;
                rt.block_on(top.newest_timeline())?.unwrap_or(1)
            }
        };
        let url = &archive::timeline_url(url, epoch);
        let provider = Arc::new(Provider::open("source", url)?);
        let (identity, positions, manifests) = rt.block_on(async {
            let id = provider.get(archive::IDENTITY).await?.with_context(|| {
                format!(
                    "{url} holds no fortress archive ({} is missing)",
                    archive::IDENTITY
                )
            })?;
            let id: archive::Identity = serde_json::from_slice(&id)
                .with_context(|| format!("{url}: {} is damaged", archive::IDENTITY))?;
            let positions = match provider.get(archive::POSITIONS).await? {
                Some(b) => serde_json::from_slice(&archive::open(archive::POSITIONS, &b)?)?,
                None => Positions::default(),
            };
            let manifests: Vec<String> = provider
                .list("checkpoints", None)
                .await?
                .into_iter()
                .filter_map(|(n, _)| n.strip_suffix(&format!("/{MANIFEST}")).map(String::from))
                .collect();
            anyhow::Ok((id, positions, manifests))
        })?;
        std::fs::create_dir_all(dir)?;
        fortress_proxy::cluster::write_identity_as(
            dir,
            &fortress_proxy::cluster::Identity {
                shards: identity.shards,
                vnodes: identity.vnodes,
                id: identity.cluster,
            },
        )?;
        let d = Download {
            provider,
            timeline: epoch.max(1),
            dir: dir.to_path_buf(),
            rt,
            positions,
            bytes: Arc::new(AtomicU64::new(0)),
            total: AtomicU64::new(0),
        };
        let jobs = manifests
            .into_iter()
            .map(|id| {
                (
                    format!("checkpoints/{id}/{MANIFEST}"),
                    d.checkpoints().join(id).join(MANIFEST),
                )
            })
            .collect();
        d.files(jobs)?;
        Ok(d)
    }

    /// Where the checkpoints are.
    pub fn checkpoints(&self) -> PathBuf {
        self.dir.join("checkpoints")
    }

    /// Downloads `(object, file)` pairs, several at a time.
    fn files(&self, jobs: Vec<(String, PathBuf)>) -> anyhow::Result<()> {
        let provider = self.provider.clone();
        let bytes = self.bytes.clone();
        self.rt.block_on(async move {
            let results: Vec<anyhow::Result<()>> = futures::stream::iter(jobs)
                .map(|(object, file)| {
                    let provider = provider.clone();
                    let bytes = bytes.clone();
                    async move {
                        if let Some(parent) = file.parent() {
                            tokio::fs::create_dir_all(parent).await?;
                        }
                        let n = provider.download(&object, &file).await?;
                        bytes.fetch_add(n, Ordering::Relaxed);
                        Ok(())
                    }
                })
                .buffer_unordered(PARALLEL)
                .collect()
                .await;
            results.into_iter().collect()
        })
    }

    /// Downloads the checkpoint `chosen` (if any) and, for every log, the
    /// WAL objects from where replay after it starts; [`Download::total`]
    /// says how many bytes that is once they are chosen.
    pub fn finish(&self, chosen: Option<&Manifest>) -> anyhow::Result<()> {
        let mut files = Vec::new();
        let mut total = 0;
        if let Some(m) = chosen {
            let dir = self.checkpoints().join(&m.id);
            for t in m.shards.iter().flat_map(|s| s.files()) {
                total += t.bytes;
                files.push((
                    format!("checkpoints/{}/{}", m.id, t.file),
                    dir.join(&t.file),
                ));
            }
        }
        let shards = fortress_proxy::cluster::read_identity(&self.dir)?
            .context("the staged identity vanished")?
            .shards;
        let mut logs: Vec<(String, PathBuf, u64)> = (0..shards)
            .map(|s| {
                let after = chosen
                    .and_then(|m| m.shards.iter().find(|c| c.shard == s))
                    .map_or(0, |c| c.wal_after);
                (
                    format!("shard-{s:03}"),
                    self.dir.join(format!("shard-{s:03}/wal")),
                    after,
                )
            })
            .collect();
        logs.push(("coordinator".into(), self.dir.join("coordinator"), 0));
        let mut plans = Vec::new();
        for (name, dir, after) in logs {
            // Only to the last cut archived whole: objects after it belong
            // to a round still in progress.
            let end = *self.positions.logs.get(&name).with_context(|| {
                format!("the archive has no complete shipping round for {name} yet")
            })?;
            let plan = self.plan(&name, dir, after, end)?;
            total += plan.objects.iter().map(|o| o.3).sum::<u64>();
            plans.push(plan);
        }
        self.total.store(total, Ordering::Relaxed);
        self.files(files)?;
        for plan in plans {
            self.fetch(plan)?;
        }
        Ok(())
    }

    /// Downloads log `name`'s records after `after` through `end` into
    /// segment files in `dir`, checking each object (the first may begin
    /// before `after + 1`: objects are whole).
    pub fn fetch_log(&self, name: &str, dir: PathBuf, after: u64, end: u64) -> anyhow::Result<()> {
        let plan = self.plan(name, dir, after, end)?;
        self.total.fetch_add(
            plan.objects.iter().map(|o| o.3).sum::<u64>(),
            Ordering::Relaxed,
        );
        self.fetch(plan)
    }

    /// Chooses log `name`'s objects holding records after `after` through
    /// `end`, checking that they follow on as one history.
    fn plan(&self, name: &str, dir: PathBuf, after: u64, end: u64) -> anyhow::Result<LogPlan> {
        let prefix = format!("wal/{name}");
        let listed = self.rt.block_on(self.provider.list(&prefix, None))?;
        let mut listed: Vec<(u64, u64, String, u64)> = listed
            .into_iter()
            .filter_map(|(n, size)| archive::parse_wal_object(&n).map(|(f, l)| (f, l, n, size)))
            .collect();
        listed.sort();
        // The chain of objects from the one holding record `after + 1` (or
        // `after`) to the cut: one history, with no gap and no overlap.
        let mut objects = Vec::new();
        let mut next = after + 1;
        for (first, last, object, size) in listed {
            if next > end || first > end {
                break;
            }
            if last < after {
                continue;
            }
            if first > next {
                bail!(
                    "the archive lacks records {next} to {} of {name}: it cannot be restored past LSN {}",
                    first - 1,
                    next - 1
                );
            }
            if !objects.is_empty() && first < next {
                bail!(
                    "archived objects of {name} overlap at LSN {first} ({object}): the archive holds two histories (was it shared by two copies of one data directory?)"
                );
            }
            next = last + 1;
            objects.push((first, last, object, size));
        }
        if next <= end {
            bail!(
                "the archive lacks records {next} to {end} of {name}: its objects end before the last shipping round's cut"
            );
        }
        Ok(LogPlan {
            name: name.to_string(),
            prefix,
            dir,
            after,
            objects,
        })
    }

    /// Downloads the objects of `plan` into segment files in its
    /// directory, checking each.
    fn fetch(&self, plan: LogPlan) -> anyhow::Result<()> {
        let LogPlan {
            name,
            prefix,
            dir,
            after,
            objects,
        } = plan;
        std::fs::create_dir_all(&dir)?;
        if objects.is_empty() {
            // Nothing after `after`: an empty segment where replay starts.
            std::fs::write(dir.join(format!("{:020}.seg", after + 1)), b"")?;
            return Ok(());
        }
        let provider = self.provider.clone();
        let bytes = self.bytes.clone();
        self.rt.block_on(async move {
            let results: Vec<anyhow::Result<()>> = futures::stream::iter(objects)
                .map(|(first, last, object, _)| {
                    let provider = provider.clone();
                    let bytes = bytes.clone();
                    let rel = format!("{prefix}/{object}");
                    let seg = dir.join(format!("{first:020}.seg"));
                    let name = name.clone();
                    async move {
                        let body = provider
                            .get(&rel)
                            .await?
                            .with_context(|| format!("{rel} vanished while restoring"))?;
                        bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                        let raw = tokio::task::spawn_blocking(move || {
                            let raw = archive::open(&rel, &body)?;
                            check_records(&rel, &raw, first, last)?;
                            anyhow::Ok(raw)
                        })
                        .await??;
                        tokio::fs::write(&seg, &raw)
                            .await
                            .with_context(|| format!("writing {} of {name}", seg.display()))?;
                        Ok(())
                    }
                })
                .buffer_unordered(PARALLEL)
                .collect()
                .await;
            results.into_iter().collect()
        })
    }
}

/// Checks that `raw` holds exactly records `first..=last`, each whole.
fn check_records(object: &str, raw: &[u8], first: u64, last: u64) -> anyhow::Result<()> {
    let mut pos = 0;
    let mut next = first;
    while pos < raw.len() {
        match decode(&raw[pos..]) {
            Decoded::Record(r, n) if r.lsn == next => {
                pos += n;
                next += 1;
            }
            Decoded::Record(r, _) => {
                bail!(
                    "archived object {object} holds LSN {} where {next} was expected",
                    r.lsn
                )
            }
            Decoded::Incomplete => bail!("archived object {object} ends inside a record"),
            Decoded::Bad(why) => {
                bail!("archived object {object} is damaged at offset {pos}: {why}")
            }
        }
    }
    if next != last + 1 {
        bail!(
            "archived object {object} holds records {first} to {} where its name says {last}",
            next - 1
        );
    }
    Ok(())
}
