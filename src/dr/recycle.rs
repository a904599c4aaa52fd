//! WAL recycling: a shard's sealed segments are removed once nothing needs
//! them from this disk. A segment goes when all of its records are
//! - applied and flushed into the shard's store, with no unresolved
//!   PREPARE among them (a restart replays from after them);
//! - covered by a checkpoint: the newest one when archives hold the older
//!   WAL for point-in-time restores, the oldest kept one without archives
//!   (so every local checkpoint can still be brought forward);
//! - held by every archive;
//! - held by every standby streaming from this primary, and by every
//!   synchronous one even while it is away (an asynchronous standby away
//!   when its records go takes them from an archive, every one of which
//!   holds them by the rule above);
//! - pulled by every multi-master peer, connected or not (see
//!   `replication::peer`);
//!
//! and it is not among the newest `--wal-keep-segments` that pass. The
//! coordinator's decision log is small and is kept whole.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fortress_proxy::Cluster;
use fortress_storage::wal::{list_segments, remove_segments_through};

use super::replication::peer::Peers;
use super::replication::primary::Standbys;
use super::Dr;

/// Recycles in the background for as long as the server runs.
pub fn spawn(
    cluster: Arc<Cluster>,
    dr: Arc<Dr>,
    standbys: Option<Arc<Standbys>>,
    peers: Option<Arc<Peers>>,
    checkpoints: PathBuf,
    keep: usize,
    every: Duration,
) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let (c, d, root) = (cluster.clone(), dr.clone(), checkpoints.clone());
            let (s, p) = (standbys.clone(), peers.clone());
            match tokio::task::spawn_blocking(move || {
                pass(&c, &d, s.as_deref(), p.as_deref(), &root, keep)
            })
            .await
            {
                Ok(Ok((0, _))) => {}
                Ok(Ok((segments, bytes))) => {
                    metrics::counter!("fortress_wal_recycled_bytes_total").increment(bytes);
                    tracing::info!(segments, bytes, "recycled WAL segments");
                }
                Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "WAL recycling failed"),
                Err(e) => tracing::warn!(error = %e, "WAL recycling task failed"),
            }
        }
    });
}

/// One recycling pass: the segments and bytes removed.
pub fn pass(
    cluster: &Cluster,
    dr: &Dr,
    standbys: Option<&Standbys>,
    peers: Option<&Peers>,
    checkpoints: &std::path::Path,
    keep: usize,
) -> anyhow::Result<(usize, u64)> {
    let (found, _) = crate::checkpoint::checkpoints_of(
        checkpoints,
        cluster.id(),
        cluster.cipher().map(|k| &**k),
    )?;
    let cover = match dr.has_archives() {
        false => found.first(),
        true => found.last(),
    };
    let Some((_, manifest)) = cover else {
        return Ok((0, 0));
    };
    let (mut segments, mut bytes) = (0, 0);
    for (i, log) in cluster.logs().into_iter().enumerate() {
        let Some(shard) = log.shard() else {
            continue;
        };
        let Some(flushed) = log.flushed_through()? else {
            continue;
        };
        let covered = manifest
            .shards
            .iter()
            .find(|c| c.shard == shard)
            .map_or(0, |c| c.wal_after);
        let archived = dr
            .archived(&format!("shard-{shard:03}"))
            .unwrap_or(u64::MAX);
        let standby = standbys.and_then(|s| s.needed_from(i)).unwrap_or(u64::MAX);
        let peer = peers.and_then(|p| p.needed_from(i)).unwrap_or(u64::MAX);
        let bound = flushed.min(covered).min(archived).min(standby).min(peer);
        tracing::debug!(
            shard,
            flushed,
            covered,
            archived,
            standby,
            peer,
            "WAL recycling bound"
        );
        // The sealed segments wholly at or below the bound, oldest first,
        // by their last LSN; the newest `keep` of them stay.
        let segs = list_segments(log.dir())?;
        let lasts: Vec<u64> = segs
            .windows(2)
            .map(|w| w[1].0 - 1)
            .take_while(|&last| last <= bound)
            .collect();
        let Some(&through) = lasts.len().checked_sub(keep + 1).map(|i| &lasts[i]) else {
            continue;
        };
        let (n, b) = remove_segments_through(log.dir(), through)?;
        segments += n;
        bytes += b;
    }
    Ok((segments, bytes))
}
