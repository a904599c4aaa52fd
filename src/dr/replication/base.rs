//! A new standby's first copy from a checkpoint its primary takes for it,
//! as pg_basebackup makes one: for a standby with no archive to make it
//! from (see [`super::from_archive`]) whose primary no longer has its
//! first records (while it has them, streaming from the first is the
//! copy, and no checkpoint is taken).
//!
//! **Protocol.** The standby's HELLO asks for a base (no positions,
//! `base`); the primary answers WELCOME, takes a checkpoint and sends its
//! files as BASE_FILE frames (`path_len:u16 | path | bytes`: each file in
//! one or more frames, in order, paths relative to the checkpoint), then
//! BASE_END (JSON: the checkpoint's id). Until the standby streams, the
//! primary keeps its WAL from the checkpoint's cut for it (a minute after
//! the last file if it never comes).
//!
//! **Copy.** The standby checks the checkpoint (its manifest and every
//! block's checksum), makes each shard's store from it
//! ([`fortress_storage::restore::install_base`]) with an empty log that
//! continues after the cut, and opens its reads at the checkpoint's
//! snapshot; the coordinator's log,
//! kept whole by the primary, and every record after the cut come with
//! the stream. Everything is synced before the caller writes the identity,
//! so a copy cut short is made again from the start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use fortress_proxy::cluster::Identity;
use fortress_proxy::Cluster;
use fortress_storage::checkpoint;
use fortress_storage::cipher::Cipher;
use fortress_storage::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::from_archive::Taken;
use super::primary::Standbys;
use super::*;

/// Bytes of a file per BASE_FILE frame.
const CHUNK: usize = 4 << 20;
/// How long the primary waits for each frame's worth of work (its
/// checkpoint included) before the standby gives up.
const BASE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a primary keeps its WAL for a copy that does not come back.
const HOLD_FOR: Duration = Duration::from_secs(60);

#[derive(Debug, Serialize, Deserialize)]
struct End {
    checkpoint: String,
}

/// The primary's side: a checkpoint, its files, then BASE_END.
pub(super) async fn send(
    s: &mut TcpStream,
    cluster: &Arc<Cluster>,
    standbys: &Arc<Standbys>,
    name: &str,
    id: &str,
    peer: String,
) -> anyhow::Result<()> {
    let root = standbys
        .checkpoints()
        .context("this primary keeps no checkpoints")?;
    tracing::info!(
        standby = name,
        "taking a checkpoint for a new standby's copy"
    );
    let manifest = cluster
        .checkpoint(&root)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Its WAL after the cut stays until the standby streams (or a while).
    let mut positions: Vec<u64> = manifest.shards.iter().map(|c| c.wal_after).collect();
    positions.push(0);
    let link = standbys.hold_for_copy(name, id, peer, positions);
    let dir = root.join(&manifest.id);
    let mut files = Vec::new();
    collect(&dir, &dir, &mut files)?;
    // The manifest last: a copy that has it has every file.
    files.sort_by_key(|p| p == Path::new(checkpoint::MANIFEST));
    let sent = async {
        for rel in files {
            let rel_text = rel.to_string_lossy().into_owned();
            let mut f = tokio::fs::File::open(dir.join(&rel)).await?;
            let mut buf = vec![0u8; CHUNK];
            let mut empty = true;
            loop {
                let n = f.read(&mut buf).await?;
                if n == 0 && !empty {
                    break;
                }
                let head = (rel_text.len() as u16).to_le_bytes();
                write_frame(s, BASE_FILE, &[&head, rel_text.as_bytes(), &buf[..n]]).await?;
                empty = false;
                if n == 0 {
                    break;
                }
            }
        }
        let end = serde_json::to_vec(&End {
            checkpoint: manifest.id.clone(),
        })?;
        write_frame(s, BASE_END, &[&end]).await?;
        anyhow::Ok(())
    }
    .await;
    match &sent {
        // Until it streams, or a while.
        Ok(()) => standbys.release_copy_after(name, &link, HOLD_FOR),
        Err(e) => link.end(format!("copy failed: {e:#}")),
    }
    tracing::info!(standby = name, checkpoint = %manifest.id, "sent a checkpoint for a new standby's copy");
    sent
}

/// Whether every log of `cluster` still starts at its first record.
pub(super) fn logs_whole(cluster: &Cluster) -> anyhow::Result<bool> {
    for log in cluster.logs() {
        let segs = fortress_storage::wal::list_segments(log.dir())?;
        if segs.first().is_some_and(|(first, _)| *first > 1) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Every file under `dir`, relative to `root`.
fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            collect(root, &e.path(), out)?;
        } else {
            out.push(e.path().strip_prefix(root)?.to_path_buf());
        }
    }
    Ok(())
}

/// The standby's side: makes the new copy in `dir` (whose identity is
/// `identity`, not yet written) from a checkpoint its primary takes for
/// it. `None`, changing nothing, if the primary cannot send one.
pub async fn receive(
    dir: &Path,
    upstream: &super::standby::Upstream,
    identity: &Identity,
    cipher: Option<Arc<Cipher>>,
) -> anyhow::Result<Option<Taken>> {
    let staging = dir.join("base.download");
    let result = fetch(&staging, upstream).await;
    let made = match result {
        Ok(Some((bytes, id))) => {
            let (d, st, i) = (dir.to_path_buf(), staging.clone(), identity.clone());
            tokio::task::spawn_blocking(move || make_copy(&d, &st.join(&id), &i, cipher, bytes))
                .await?
                .map(Some)
        }
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_dir_all(&staging);
    if !matches!(made, Ok(Some(_))) {
        // Nothing half made is left for the stream to build on.
        for s in 0..identity.shards {
            let _ = std::fs::remove_dir_all(dir.join(format!("shard-{s:03}")));
        }
        let _ = std::fs::remove_file(dir.join(fortress_proxy::standby::CUT_FILE));
    }
    made
}

/// Downloads a checkpoint of the primary into `staging/<id>`: its bytes
/// and id; `None` if the primary answered without one.
async fn fetch(
    staging: &Path,
    upstream: &super::standby::Upstream,
) -> anyhow::Result<Option<(u64, String)>> {
    if staging.exists() {
        std::fs::remove_dir_all(staging)?;
    }
    let mut s = super::standby::say_hello(upstream, Vec::new(), true).await?;
    let files = staging.join("files");
    let mut bytes = 0u64;
    let mut welcomed = false;
    loop {
        let frame = tokio::time::timeout(BASE_TIMEOUT, read_frame(&mut s, MAX_FRAME))
            .await
            .context("the primary sent nothing of the copy for 10 minutes")?;
        let (kind, payload) = match frame {
            Ok(f) => f,
            // A primary whose logs are whole closes after its WELCOME.
            Err(e) if welcomed && bytes == 0 && is_eof(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        match kind {
            WELCOME => welcomed = true,
            BASE_FILE if payload.len() >= 2 => {
                let n = u16::from_le_bytes([payload[0], payload[1]]) as usize;
                let rel = payload
                    .get(2..2 + n)
                    .and_then(|p| std::str::from_utf8(p).ok())
                    .context("a malformed BASE_FILE")?;
                let rel = Path::new(rel);
                if rel.is_absolute()
                    || rel
                        .components()
                        .any(|c| matches!(c, std::path::Component::ParentDir))
                {
                    bail!(
                        "the primary sent a file outside the checkpoint: {}",
                        rel.display()
                    );
                }
                let path = files.join(rel);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)?;
                f.write_all(&payload[2 + n..])?;
                bytes += (payload.len() - 2 - n) as u64;
            }
            BASE_END => {
                let end: End = serde_json::from_slice(&payload).context("a malformed BASE_END")?;
                let mut parts = Path::new(&end.checkpoint).components();
                if !matches!(
                    (parts.next(), parts.next()),
                    (Some(std::path::Component::Normal(_)), None)
                ) {
                    bail!("the primary named its checkpoint {:?}", end.checkpoint);
                }
                let to = staging.join(&end.checkpoint);
                std::fs::rename(&files, &to)?;
                return Ok(Some((bytes, end.checkpoint)));
            }
            ERROR => bail!("the primary: {}", String::from_utf8_lossy(&payload)),
            // A primary that sends no copy closes after its WELCOME.
            k => bail!("unexpected frame kind {k}"),
        }
    }
}

/// Whether `e` is the connection closing.
fn is_eof(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof)
}

/// Makes the copy in `dir` from the checkpoint in `cp`: each shard's
/// store, an empty log continuing after the cut, reads at its snapshot.
fn make_copy(
    dir: &Path,
    cp: &Path,
    identity: &Identity,
    cipher: Option<Arc<Cipher>>,
    bytes: u64,
) -> anyhow::Result<Taken> {
    let manifest = checkpoint::verify(cp, cipher.as_deref()).context("the primary's checkpoint")?;
    if manifest.cluster != identity.id {
        bail!(
            "the primary sent a checkpoint of cluster {}",
            manifest.cluster
        );
    }
    let mut taken = Taken {
        checkpoint: Some(manifest.id.clone()),
        bytes,
        cut: Timestamp(manifest.snapshot),
        ..Taken::default()
    };
    for s in 0..identity.shards {
        let shard_dir = dir.join(format!("shard-{s:03}"));
        if shard_dir.exists() {
            std::fs::remove_dir_all(&shard_dir)?;
        }
        let (rows, after) =
            super::from_archive::install_shard(&shard_dir, cp, &manifest, s, cipher.clone())?;
        taken.rows += rows;
        let wal = shard_dir.join("wal");
        std::fs::create_dir_all(&wal)?;
        std::fs::write(wal.join(format!("{:020}.seg", after + 1)), b"")?;
        super::from_archive::sync_tree(&shard_dir)?;
    }
    fortress_proxy::standby::record_cut(dir, taken.cut)?;
    checkpoint::sync_dir(dir)?;
    Ok(taken)
}
