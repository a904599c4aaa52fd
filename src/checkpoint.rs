//! `fortress checkpoint`: create, list, verify and prune checkpoints, and the
//! server's automatic checkpoints.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use fortress_proxy::Cluster;
use fortress_storage::checkpoint::{self, Manifest};
use fortress_storage::cipher::Cipher;
use fortress_storage::StorageError;

use crate::cli::{CheckpointAction, DirArgs};
use crate::lock::DirLock;

pub fn run(action: CheckpointAction) -> anyhow::Result<()> {
    match action {
        CheckpointAction::Create { dirs } => {
            let m = create(&dirs)?;
            let (bytes, raw) = m.sizes();
            println!(
                "created checkpoint {} ({} rows, {} in {} files, {} before compression)",
                m.id,
                m.rows(),
                mib(bytes),
                m.shards.iter().map(|s| s.tables.len()).sum::<usize>(),
                mib(raw)
            );
            Ok(())
        }
        CheckpointAction::List { dirs } => list(&dirs),
        CheckpointAction::Verify { dirs, ids } => verify(&dirs, &ids),
        CheckpointAction::Prune {
            dirs,
            keep,
            older_than,
        } => {
            if keep.is_none() && older_than.is_none() {
                anyhow::bail!("prune needs --keep N or --older-than DURATION");
            }
            let identity =
                fortress_proxy::cluster::read_identity(&dirs.data_dir)?.with_context(|| {
                    format!(
                        "{} is not a fortress data directory",
                        dirs.data_dir.display()
                    )
                })?;
            let cipher = crate::key::load(dirs.key_file.as_deref())?;
            let root = dirs.checkpoints();
            for id in prune(&root, &identity.id, cipher.as_deref(), keep, older_than)? {
                println!("removed checkpoint {id}");
            }
            Ok(())
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// Logs a new checkpoint's figures.
pub fn log_created(m: &Manifest) {
    let (bytes, raw) = m.sizes();
    tracing::info!(
        id = %m.id,
        rows = m.rows(),
        bytes,
        raw_bytes = raw,
        "checkpoint created"
    );
}

/// Takes a checkpoint: through the server holding the directory, or, when
/// none does, by opening the directory in this process.
fn create(dirs: &DirArgs) -> anyhow::Result<Manifest> {
    let root = std::path::absolute(dirs.checkpoints())?;
    let cipher = crate::key::load(dirs.key_file.as_deref())?;
    let Some(lock) = DirLock::try_acquire(&dirs.data_dir)? else {
        let reply = crate::control::request(
            &dirs.data_dir,
            serde_json::json!({"op": "checkpoint", "dir": root}),
        )?;
        return serde_json::from_value(reply["manifest"].clone())
            .context("the server's manifest does not parse");
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let m = runtime.block_on(async {
        let cluster = Arc::new(crate::open_existing(&dirs.data_dir, cipher)?);
        let m = cluster.checkpoint(&root).await?;
        cluster.flush();
        anyhow::Ok(m)
    })?;
    drop(lock);
    log_created(&m);
    Ok(m)
}

fn list(dirs: &DirArgs) -> anyhow::Result<()> {
    let cipher = crate::key::load(dirs.key_file.as_deref())?;
    let found = checkpoint::list(&dirs.checkpoints(), cipher.as_deref())?;
    let ours = fortress_proxy::cluster::read_identity(&dirs.data_dir)?.map(|i| i.id);
    if found.is_empty() {
        println!("no checkpoints in {}", dirs.checkpoints().display());
        return Ok(());
    }
    println!(
        "{:<26} {:<28} {:>10} {:>12} {:>12}  WAL position per shard",
        "ID", "CREATED", "ROWS", "SIZE", "RAW"
    );
    for (path, m) in found {
        match m {
            Ok(m) => {
                let (bytes, raw) = m.sizes();
                let lsns: Vec<String> = m
                    .shards
                    .iter()
                    .map(|s| format!("{}:{}", s.shard, s.wal_through))
                    .collect();
                let other = if ours.as_deref() == Some(m.cluster.as_str()) {
                    ""
                } else {
                    "  (of another data directory)"
                };
                println!(
                    "{:<26} {:<28} {:>10} {:>12} {:>12}  {}{other}",
                    m.id,
                    m.created,
                    m.rows(),
                    mib(bytes),
                    mib(raw),
                    lsns.join(",")
                );
            }
            Err(e) => println!("{:<26} unreadable: {e}", name_of(&path)),
        }
    }
    Ok(())
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn verify(dirs: &DirArgs, ids: &[String]) -> anyhow::Result<()> {
    let root = dirs.checkpoints();
    let cipher = crate::key::load(dirs.key_file.as_deref())?;
    let mut targets: Vec<_> = checkpoint::list(&root, cipher.as_deref())?
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| ids.is_empty() || ids.contains(&name_of(p)))
        .collect();
    for id in ids {
        if !targets.iter().any(|p| &name_of(p) == id) {
            targets.push(root.join(id));
        }
    }
    if targets.is_empty() {
        anyhow::bail!("no checkpoints in {}", root.display());
    }
    let mut bad = 0;
    for path in targets {
        let started = Instant::now();
        match checkpoint::verify(&path, cipher.as_deref()) {
            Ok(m) => {
                let (bytes, _) = m.sizes();
                let secs = started.elapsed().as_secs_f64();
                println!(
                    "checkpoint {} is intact: {} rows, {} read in {:.2} s ({:.0} MB/s)",
                    m.id,
                    m.rows(),
                    mib(bytes),
                    secs,
                    bytes as f64 / 1e6 / secs.max(1e-6)
                );
            }
            Err(e) => {
                bad += 1;
                eprintln!("checkpoint {} is damaged: {e}", name_of(&path));
            }
        }
    }
    if bad > 0 {
        anyhow::bail!("{bad} damaged checkpoint(s)");
    }
    Ok(())
}

/// Removes checkpoints of directory `cluster` beyond the newest `keep` and
/// those older than `older_than`, never the newest one; checkpoints of other
/// directories sharing the root, and unreadable ones, are left alone.
/// Returns the IDs removed.
pub fn prune(
    root: &Path,
    cluster: &str,
    cipher: Option<&Cipher>,
    keep: Option<usize>,
    older_than: Option<Duration>,
) -> anyhow::Result<Vec<String>> {
    remove_stale_partials(root)?;
    let (found, _) = checkpoints_of(root, cluster, cipher)?;
    let now_micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_micros() as u64;
    let n = found.len();
    let mut removed = Vec::new();
    for (i, (path, m)) in found.into_iter().enumerate() {
        let newer = n - 1 - i;
        if newer == 0 {
            break;
        }
        let too_many = keep.is_some_and(|k| newer >= k);
        let wall = fortress_storage::Timestamp(m.snapshot).wall_micros();
        let too_old =
            older_than.is_some_and(|d| now_micros.saturating_sub(wall) > d.as_micros() as u64);
        if too_many || too_old {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing {}", path.display()))?;
            removed.push(m.id);
        }
    }
    Ok(removed)
}

/// Checkpoints found: the readable ones with their directories, and the last
/// error of those that could not be read.
pub type Found = (Vec<(PathBuf, Manifest)>, Option<StorageError>);

/// The readable checkpoints of data directory `cluster` under `root`, oldest
/// first, and the last error of those that could not be read (each is
/// logged: it may be anyone's, so it is never pruned nor restored).
pub fn checkpoints_of(
    root: &Path,
    cluster: &str,
    cipher: Option<&Cipher>,
) -> anyhow::Result<Found> {
    let mut unreadable = None;
    let mut found = Vec::new();
    for (path, m) in checkpoint::list(root, cipher)? {
        match m {
            Ok(m) if m.cluster == cluster => found.push((path, m)),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(checkpoint = %path.display(), error = %e, "skipping an unreadable checkpoint");
                unreadable = Some(e);
            }
        }
    }
    Ok((found, unreadable))
}

/// Removes `*.tmp` directories that checkpoints interrupted by a crash left
/// behind (untouched for an hour: none is still being written).
fn remove_stale_partials(root: &Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Ok(());
    };
    for e in entries.filter_map(|e| e.ok()) {
        let path = e.path();
        let stale = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if stale && path.is_dir() && name_of(&path).ends_with(".tmp") {
            tracing::info!(dir = %path.display(), "removing an interrupted checkpoint");
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Takes a checkpoint every `every` and keeps the newest `keep`.
pub fn spawn_automatic(cluster: Arc<Cluster>, root: PathBuf, every: Duration, keep: usize) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tick.tick().await;
            match cluster.checkpoint(&root).await {
                Ok(m) => {
                    log_created(&m);
                    let root = root.clone();
                    let c = cluster.clone();
                    match tokio::task::spawn_blocking(move || {
                        prune(
                            &root,
                            c.id(),
                            c.cipher().map(|k| &**k),
                            Some(keep.max(1)),
                            None,
                        )
                    })
                    .await
                    {
                        Ok(Ok(ids)) if !ids.is_empty() => {
                            tracing::info!(removed = ?ids, "pruned old checkpoints")
                        }
                        Ok(Err(e)) => tracing::warn!(error = %e, "pruning checkpoints failed"),
                        _ => {}
                    }
                }
                Err(e) => tracing::warn!(error = %e, "automatic checkpoint failed"),
            }
        }
    });
}
