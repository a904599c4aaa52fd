//! A standby's copy from an archive its primary ships to (the timeline of
//! the primary's lease epoch, see [`crate::dr::archive::TIMELINES`]): the
//! first copy, made from a checkpoint rather than from the primary's first
//! record, and the catch-up of a standby whose primary recycled records it
//! lacks.
//!
//! **First copy.** The newest checkpoint the archive's consistent cut
//! covers becomes each shard's store ([`install_base`]), and the archived
//! logs after the checkpoint, to that cut, become the copy's logs, LSN for
//! LSN with the primary's; the coordinator's log comes whole. The copy's
//! reads open at the cut, and the stream from the primary goes on from its
//! ends. The download is staged inside the data directory (same disk) and
//! checked (envelopes, records, the checkpoint's blocks); the stores are
//! built in place, the logs moved in, everything synced, and the caller
//! writes the identity last, so a copy cut short by a crash (or failed) is
//! wiped and made again from the start.
//!
//! **Catch-up.** The archive's records after each log's end, to its
//! consistent cut, are logged and applied as the stream's would be, the
//! coordinator's log first (so a shard never holds a commit whose decision
//! the copy lacks, should it be promoted midway), and reads move to the
//! cut once every log stands there. The archive's record at each log's
//! end must be the copy's own: an archive of another history is refused.
//! The primary keeps every record no archive holds yet, so from the cut
//! it can stream again.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use fortress_proxy::cluster::Identity;
use fortress_proxy::Cluster;
use fortress_storage::checkpoint::Manifest;
use fortress_storage::cipher::Cipher;
use fortress_storage::restore::{install_base, Cutoff, ShardSource};
use fortress_storage::wal::{decode, list_segments, Decoded};
use fortress_storage::Timestamp;

use crate::dr::fetch::{Download, Timeline};

/// What a first copy or catch-up took from the archive.
#[derive(Debug, Default)]
pub struct Taken {
    /// The checkpoint a first copy was made from.
    pub checkpoint: Option<String>,
    pub rows: u64,
    pub bytes: u64,
    /// The archive's consistent cut the copy stands at.
    pub cut: Timestamp,
}

/// The archive's name of each log, in [`Cluster::logs`] order.
fn log_names(shards: u32) -> Vec<String> {
    (0..shards)
        .map(|s| format!("shard-{s:03}"))
        .chain(std::iter::once("coordinator".to_string()))
        .collect()
}

/// Opens the timeline of the primary holding lease `epoch` in the archive
/// at `url` into `staging` (emptied first), checking that it is
/// `cluster`'s.
fn open(url: &str, epoch: u64, staging: &Path, cluster: &str) -> anyhow::Result<Download> {
    if staging.exists() {
        std::fs::remove_dir_all(staging)
            .with_context(|| format!("removing an old download {}", staging.display()))?;
    }
    let download = Download::begin(url, staging, Timeline::Of(epoch))?;
    let theirs = fortress_proxy::cluster::read_identity(staging)?
        .context("the archive's identity was not staged")?;
    if theirs.id != cluster {
        bail!(
            "{url} is the archive of cluster {}, and this standby is a copy of {cluster}",
            theirs.id
        );
    }
    Ok(download)
}

/// Makes the new standby copy in `dir`, whose identity is `identity`
/// (not yet written), from the archive at `url` (the timeline of the
/// primary holding lease `epoch`). `None`, with nothing
/// changed, when the archive has no complete shipping round or no
/// checkpoint its consistent cut covers: the copy then streams from its
/// primary's first record.
pub fn first_copy(
    dir: &Path,
    url: &str,
    epoch: u64,
    identity: &Identity,
    cipher: Option<Arc<Cipher>>,
) -> anyhow::Result<Option<Taken>> {
    let staging = staging(dir, "copy");
    let result = make_copy(dir, url, epoch, identity, cipher, &staging);
    let _ = std::fs::remove_dir_all(&staging);
    if !matches!(result, Ok(Some(_))) {
        // Nothing half made is left for the stream to build on.
        for name in log_names(identity.shards) {
            let _ = std::fs::remove_dir_all(dir.join(name));
        }
        let _ = std::fs::remove_file(dir.join(fortress_proxy::standby::CUT_FILE));
    }
    result
}

fn make_copy(
    dir: &Path,
    url: &str,
    epoch: u64,
    identity: &Identity,
    cipher: Option<Arc<Cipher>>,
    staging: &Path,
) -> anyhow::Result<Option<Taken>> {
    let download = open(url, epoch, staging, &identity.id)?;
    let positions = download.positions.clone();
    let names = log_names(identity.shards);
    let Some(ends) = names
        .iter()
        .map(|n| positions.logs.get(n).copied())
        .collect::<Option<Vec<u64>>>()
    else {
        return Ok(None);
    };
    let (found, _) = crate::checkpoint::checkpoints_of(
        &download.checkpoints(),
        &identity.id,
        cipher.as_deref(),
    )?;
    // The newest checkpoint that the cut covers whole: its snapshot at or
    // before the cut's time, every record it may hold at or below the cut.
    let covered = |m: &Manifest| {
        m.snapshot <= positions.consistent_ts
            && (m.ring.shards, m.ring.vnodes) == (identity.shards, identity.vnodes)
            && (0..identity.shards).all(|s| {
                m.shards
                    .iter()
                    .find(|c| c.shard == s)
                    .is_some_and(|c| c.wal_through <= ends[s as usize])
            })
    };
    let Some((cp, manifest)) = found.into_iter().rev().find(|(_, m)| covered(m)) else {
        return Ok(None);
    };
    tracing::info!(checkpoint = %manifest.id, archive = %url, "making this standby's copy from the archive");
    download.finish(Some(&manifest))?;
    // Anything a copy cut short left (there is no identity yet).
    for name in &names {
        let old = dir.join(name);
        if old.exists() {
            std::fs::remove_dir_all(&old)?;
        }
    }
    let mut taken = Taken {
        checkpoint: Some(manifest.id.clone()),
        cut: Timestamp(positions.consistent_ts),
        ..Taken::default()
    };
    for s in 0..identity.shards {
        let shard_dir = dir.join(format!("shard-{s:03}"));
        let (rows, _) = install_shard(&shard_dir, &cp, &manifest, s, cipher.clone())?;
        taken.rows += rows;
        let staged = staging.join(format!("shard-{s:03}/wal"));
        std::fs::rename(&staged, shard_dir.join("wal"))?;
    }
    std::fs::rename(staging.join("coordinator"), dir.join("coordinator"))?;
    fortress_proxy::standby::record_cut(dir, taken.cut)?;
    // Durable before the identity makes it a copy.
    for name in &names {
        sync_tree(&dir.join(name))?;
    }
    fortress_storage::checkpoint::sync_dir(dir)?;
    taken.bytes = download.bytes.load(std::sync::atomic::Ordering::Relaxed);
    Ok(Some(taken))
}

/// Makes `shard_dir` shard `shard`'s store from its part of the
/// checkpoint `manifest` in `cp` (see [`install_base`]): the rows loaded,
/// and the LSN its log must continue after.
pub(super) fn install_shard(
    shard_dir: &Path,
    cp: &Path,
    manifest: &Manifest,
    shard: u32,
    cipher: Option<Arc<Cipher>>,
) -> anyhow::Result<(u64, u64)> {
    let cut = manifest
        .shards
        .iter()
        .find(|c| c.shard == shard)
        .with_context(|| format!("the checkpoint has no part for shard {shard}"))?;
    let src = ShardSource {
        shard,
        checkpoint: Some((cp, cut)),
        manifest,
        // Not read: a base takes the checkpoint alone.
        wal: shard_dir.join("wal"),
        cutoff: Cutoff::Latest,
        cipher,
    };
    let (stats, after) =
        install_base(&src, shard_dir, &mut |_| {}).with_context(|| format!("shard {shard}"))?;
    Ok((stats.rows, after))
}

/// Brings the standby `cluster` (its data directory `dir`) to the
/// consistent cut of the archive at `url` (the timeline of the primary
/// holding lease `epoch`), taking every log's archived
/// records after its end. Fails, changing nothing, if the archive stands
/// behind the copy, or lacks records right after its end.
pub fn catch_up(cluster: &Cluster, dir: &Path, url: &str, epoch: u64) -> anyhow::Result<Taken> {
    let staging = staging(dir, "catch-up");
    let result = take_records(cluster, url, epoch, &staging);
    let _ = std::fs::remove_dir_all(&staging);
    result
}

fn take_records(cluster: &Cluster, url: &str, epoch: u64, staging: &Path) -> anyhow::Result<Taken> {
    let download = open(url, epoch, staging, cluster.id())?;
    let positions = download.positions.clone();
    let names = log_names(cluster.shard_count());
    let have = cluster.log_ends();
    let mut ends = Vec::new();
    for (name, &at) in names.iter().zip(&have) {
        let end = *positions
            .logs
            .get(name)
            .with_context(|| format!("the archive at {url} has no complete shipping round"))?;
        if end < at {
            bail!("the archive at {url} holds {name} only through LSN {end}, behind this standby's {at}");
        }
        ends.push(end);
    }
    if ends == have {
        bail!("the archive at {url} holds nothing after this standby's logs");
    }
    let cipher = cluster.cipher().map(|k| &**k);
    let logs = cluster.logs();
    for (i, name) in names.iter().enumerate() {
        if ends[i] > have[i] {
            // From the object holding the copy's last record, to compare.
            let from = have[i].saturating_sub(1);
            download.fetch_log(name, staging.join(name), from, ends[i])?;
            same_history(logs[i].dir(), &staging.join(name), have[i], cipher)
                .with_context(|| format!("{url}, {name}"))?;
        }
    }
    // The coordinator's log first (the last in `logs` order): every
    // decision a shard's commit record depends on is below its cut.
    let order = std::iter::once(names.len() - 1).chain(0..names.len() - 1);
    for i in order {
        let name = &names[i];
        if ends[i] == have[i] {
            continue;
        }
        for (_, seg) in list_segments(&staging.join(name))? {
            let raw = std::fs::read(&seg)?;
            let records = after(&raw, have[i]);
            if !records.is_empty() {
                cluster.follow_archived(i, records.to_vec())?;
            }
        }
    }
    let cut = Timestamp(positions.consistent_ts);
    cluster.follow_archived_cut(&ends, cut)?;
    Ok(Taken {
        checkpoint: None,
        rows: 0,
        bytes: download.bytes.load(std::sync::atomic::Ordering::Relaxed),
        cut,
    })
}

/// Checks that the archived log in `archived` (downloaded from the
/// object holding LSN `at` on) and the copy's log in `local` hold the same
/// record at `at`, the copy's last: the archive continues this history.
fn same_history(
    local: &Path,
    archived: &Path,
    at: u64,
    cipher: Option<&Cipher>,
) -> anyhow::Result<()> {
    if at == 0 {
        return Ok(());
    }
    let record = |dir: &Path| -> anyhow::Result<Option<fortress_storage::wal::Record>> {
        let mut found = None;
        fortress_storage::wal::read_from(dir, at - 1, cipher, |r| {
            found = Some(r.clone());
            Ok(false)
        })?;
        Ok(found.filter(|r| r.lsn == at))
    };
    let (mine, theirs) = (record(local)?, record(archived)?);
    match (mine, theirs) {
        (Some(a), Some(b)) if a == b => Ok(()),
        (Some(_), Some(_)) => bail!(
            "the archive's record at LSN {at} differs from this standby's: it holds another history"
        ),
        _ => bail!("LSN {at} is missing from this standby's log or from the archive"),
    }
}

/// The records of `raw` (whole, checked ones: a downloaded object) after
/// LSN `lsn`.
fn after(raw: &[u8], lsn: u64) -> &[u8] {
    let mut pos = 0;
    while let Decoded::Record(r, n) = decode(&raw[pos..]) {
        if r.lsn > lsn {
            break;
        }
        pos += n;
    }
    &raw[pos..]
}

/// Where a download is staged: inside the data directory `dir` (same
/// disk, so its files move in by rename), apart from the copy's own.
fn staging(dir: &Path, what: &str) -> PathBuf {
    dir.join(format!("{what}.download"))
}

/// Syncs every file under `dir` and every directory, itself included.
pub(super) fn sync_tree(dir: &Path) -> anyhow::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            sync_tree(&e.path())?;
        } else {
            std::fs::File::open(e.path())?.sync_all()?;
        }
    }
    fortress_storage::checkpoint::sync_dir(dir)?;
    Ok(())
}
