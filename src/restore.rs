//! `fortress restore`: a new data directory from a checkpoint, optionally
//! brought forward by replaying the source's WAL to an LSN, a time, or its
//! end (point-in-time recovery).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use fortress_storage::checkpoint::{self, Manifest};
use fortress_storage::cipher::Cipher;
use fortress_storage::restore::{restore_shard, split_transactions, Cutoff, ShardSource};
use fortress_storage::{DataType, Lsn, Timestamp, Value};
use std::sync::Arc;

use crate::cli::RestoreArgs;
use crate::dr::fetch::Download;
use crate::lock::DirLock;

/// What the restored directory should hold.
#[derive(Clone, Debug, PartialEq)]
enum Target {
    /// The checkpoint's state.
    Checkpoint,
    /// Everything in the WAL.
    Latest,
    /// Every transaction committed at or before this timestamp.
    Time(Timestamp),
    /// Each shard's WAL through its LSN.
    Lsn(Vec<Lsn>),
}

impl Target {
    fn from_args(args: &RestoreArgs, shards: u32) -> anyhow::Result<Target> {
        if args.latest {
            return Ok(Target::Latest);
        }
        if let Some(t) = &args.time {
            return Ok(Target::Time(parse_time(t)?));
        }
        if let Some(l) = &args.lsn {
            return Ok(Target::Lsn(parse_lsns(l, shards)?));
        }
        Ok(Target::Checkpoint)
    }

    /// Whether a checkpoint lies at or before this target.
    fn fits(&self, m: &Manifest) -> bool {
        match self {
            Target::Checkpoint | Target::Latest => true,
            Target::Time(t) => m.snapshot <= t.0,
            Target::Lsn(lsns) => m.shards.iter().all(|s| {
                lsns.get(s.shard as usize)
                    .is_some_and(|&n| s.wal_through <= n)
            }),
        }
    }

    fn cutoff(&self, shard: usize) -> Cutoff {
        match self {
            Target::Checkpoint => Cutoff::Checkpoint,
            Target::Latest => Cutoff::Latest,
            Target::Time(t) => Cutoff::Time(t.0),
            Target::Lsn(l) => Cutoff::Lsn(l[shard]),
        }
    }
}

/// The last hybrid-clock timestamp within the wall-clock microsecond `text`
/// names: RFC 3339, or PostgreSQL timestamptz text.
fn parse_time(text: &str) -> anyhow::Result<Timestamp> {
    let micros = match chrono::DateTime::parse_from_rfc3339(text.trim()) {
        Ok(t) => t.timestamp_micros(),
        Err(_) => match Value::parse(&DataType::Timestamptz, text) {
            Ok(Value::Timestamptz(m)) => m,
            _ => bail!("{text:?} is not a time (RFC 3339, or e.g. 2026-01-02 03:04:05.678+00)"),
        },
    };
    let micros = u64::try_from(micros).context("times before 1970 hold no transactions")?;
    if micros >= u64::MAX >> 8 {
        bail!("{text:?} is beyond the last time a timestamp can hold");
    }
    Ok(Timestamp(Timestamp::from_wall(micros + 1).0 - 1))
}

/// `N` for every shard, or `SHARD:N,...` naming each shard once.
fn parse_lsns(text: &str, shards: u32) -> anyhow::Result<Vec<Lsn>> {
    if let Ok(n) = text.trim().parse::<Lsn>() {
        return Ok(vec![n; shards as usize]);
    }
    let mut lsns = vec![None; shards as usize];
    for part in text.split(',') {
        let (s, n) = part
            .split_once(':')
            .with_context(|| format!("{part:?} is not SHARD:LSN"))?;
        let s: usize = s
            .trim()
            .parse()
            .with_context(|| format!("bad shard in {part:?}"))?;
        let n: Lsn = n
            .trim()
            .parse()
            .with_context(|| format!("bad LSN in {part:?}"))?;
        match lsns.get_mut(s) {
            Some(slot @ None) => *slot = Some(n),
            Some(Some(_)) => bail!("shard {s} is named twice"),
            None => bail!("there is no shard {s} (the directory has {shards})"),
        }
    }
    lsns.into_iter()
        .enumerate()
        .map(|(s, n)| n.with_context(|| format!("no LSN given for shard {s}")))
        .collect()
}

/// Checks that `to` may be written: not overlapping the source or its
/// checkpoints, not held by a live server, empty unless `force` (then
/// emptied). Returns its lock.
fn prepare_target(
    from: &Path,
    checkpoints: &Path,
    to: &Path,
    force: bool,
) -> anyhow::Result<DirLock> {
    if to.exists() {
        let b = to.canonicalize()?;
        for (what, dir) in [
            ("the source directory", from),
            ("its checkpoints", checkpoints),
        ] {
            let Ok(a) = dir.canonicalize() else { continue };
            if a.starts_with(&b) || b.starts_with(&a) {
                bail!("--to {} overlaps {what} {}", to.display(), dir.display());
            }
        }
    }
    let lock = DirLock::try_acquire(to)?.with_context(|| {
        format!(
            "{} is held by a running server; refusing to write into it",
            to.display()
        )
    })?;
    let leftovers = others(&lock, to)?;
    if !leftovers.is_empty() {
        if !force {
            bail!(
                "{} is not empty; pass --force to replace what it holds",
                to.display()
            );
        }
        clear(&lock, to)?;
    }
    Ok(lock)
}

/// What `dir` holds besides its lock file.
fn others(lock: &DirLock, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let lock_name = lock.path().file_name().map(|n| n.to_owned());
    Ok(std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| Some(e.file_name()) != lock_name)
        .map(|e| e.path())
        .collect())
}

/// Removes everything in `dir` but its lock file.
fn clear(lock: &DirLock, dir: &Path) -> anyhow::Result<()> {
    for p in others(lock, dir)? {
        if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        }
        .with_context(|| format!("clearing {}", p.display()))?;
    }
    Ok(())
}

/// Picks the checkpoint of directory `cluster` to start from: the named
/// one, else the newest that fits the target. `None`: replay the whole log.
fn choose(
    root: &Path,
    cluster: &str,
    named: Option<&str>,
    target: &Target,
    cipher: Option<&Cipher>,
) -> anyhow::Result<Option<(PathBuf, Manifest)>> {
    if let Some(id) = named {
        let path = root.join(id);
        let m =
            Manifest::read(&path, cipher).with_context(|| format!("reading checkpoint {id}"))?;
        if m.cluster != cluster {
            bail!("checkpoint {id} was taken of another data directory");
        }
        if !target.fits(&m) {
            bail!("checkpoint {id} is later than the target");
        }
        return Ok(Some((path, m)));
    }
    let (readable, unreadable) = crate::checkpoint::checkpoints_of(root, cluster, cipher)?;
    let best = readable.into_iter().rfind(|(_, m)| target.fits(m));
    if let (None, Some(e)) = (&best, unreadable) {
        return Err(e).context("no readable checkpoint fits the target");
    }
    if best.is_none() && *target == Target::Checkpoint {
        bail!("no checkpoint of {} in {}", cluster, root.display());
    }
    Ok(best)
}

/// What a restore reads.
struct Source<'a> {
    /// A data directory (or an archive downloaded as one).
    dir: PathBuf,
    checkpoints: PathBuf,
    /// The archive being downloaded into `dir`, if restoring from one.
    archive: Option<&'a Download>,
    /// What to call it: the directory, or the archive's URL.
    label: String,
}

pub fn run(args: RestoreArgs) -> anyhow::Result<()> {
    let Some(url) = args.from.clone() else {
        let source = Source {
            dir: args.dirs.data_dir.clone(),
            checkpoints: args.dirs.checkpoints(),
            archive: None,
            label: args.dirs.data_dir.display().to_string(),
        };
        return restore(source, &args);
    };
    // The download sits beside the new directory (same disk, no overlap)
    // and goes once the restore has read it.
    let to = std::path::absolute(&args.to)?;
    let name = to
        .file_name()
        .context("--to names no directory")?
        .to_string_lossy()
        .into_owned();
    let staging = to.with_file_name(format!(".{name}.download"));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("removing an old download {}", staging.display()))?;
    }
    let result = (|| {
        tracing::info!(from = %url, "reading the archive");
        let download = Download::begin(&url, &staging, crate::dr::fetch::Timeline::Newest)?;
        if download.timeline > 1 {
            tracing::info!(
                timeline = download.timeline,
                "restoring the timeline of the primary that took over at this lease epoch (older timelines: --from URL/timelines/EPOCH, or URL itself for the first)"
            );
        }
        let source = Source {
            dir: staging.clone(),
            checkpoints: download.checkpoints(),
            archive: Some(&download),
            label: url.clone(),
        };
        restore(source, &args)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}

fn restore(source: Source<'_>, args: &RestoreArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let from = &source.dir;
    let identity = fortress_proxy::cluster::read_identity(from)?
        .with_context(|| format!("{} is not a fortress data directory", from.display()))?;
    let shards = identity.shards;
    let mut target = Target::from_args(args, shards)?;
    // A live source keeps committing while its shards are read one after
    // another: only transactions committed before the restore began are
    // sure to be complete on every shard.
    let source_lock = DirLock::try_acquire(from)?;
    if let Some(download) = source.archive {
        // An archive is whole through its consistent point (see
        // `dr::ship`); records after it may be missing on some shard.
        let through = Timestamp(download.positions.consistent_ts);
        match target {
            Target::Latest => target = Target::Time(through),
            Target::Time(t) if t > through => {
                tracing::warn!(
                    consistent_through = %format_ts(through),
                    "the archive is consistent only through an earlier time: restoring to it"
                );
                target = Target::Time(through);
            }
            _ => {}
        }
    } else if source_lock.is_none() {
        let began = Timestamp::from_wall(wall_micros_now()?);
        match target {
            Target::Latest => target = Target::Time(began),
            Target::Time(t) if t > began => target = Target::Time(began),
            _ => {}
        }
        if matches!(target, Target::Time(_)) {
            tracing::info!(
                "the source is live: restoring what was committed before the restore began"
            );
        }
    }
    let cipher = crate::key::load(args.dirs.key_file.as_deref())?;
    let root = source.checkpoints.clone();
    let chosen = choose(
        &root,
        &identity.id,
        args.checkpoint.as_deref(),
        &target,
        cipher.as_deref(),
    )?;
    if let Some(download) = source.archive {
        download_with_progress(download, chosen.as_ref().map(|(_, m)| m))?;
    }
    if let Some((path, m)) = &chosen {
        if (m.ring.shards, m.ring.vnodes) != (identity.shards, identity.vnodes) {
            bail!(
                "checkpoint {} has {} shards and {} vnodes; the directory has {} and {}",
                m.id,
                m.ring.shards,
                m.ring.vnodes,
                identity.shards,
                identity.vnodes
            );
        }
        tracing::info!(checkpoint = %m.id, "verifying the checkpoint");
        checkpoint::verify(path, cipher.as_deref())
            .with_context(|| format!("checkpoint {} is damaged", m.id))?;
    }
    let wal_dir = |s: u32| from.join(format!("shard-{s:03}")).join("wal");
    let after = |s: u32| {
        chosen
            .as_ref()
            .and_then(|(_, m)| m.shards.iter().find(|c| c.shard == s))
            .map_or(0, |c| c.wal_after)
    };
    if let Target::Lsn(lsns) = &target {
        let logs: Vec<_> = (0..shards)
            .map(|s| (wal_dir(s), after(s), lsns[s as usize]))
            .collect();
        let mut split: Vec<_> = split_transactions(&logs, cipher.as_deref())?
            .into_iter()
            .collect();
        if !split.is_empty() {
            split.sort();
            bail!(
                "the LSN target cuts multi-shard transactions {split:?} in half (committed on some shards within it, not on others); choose other LSNs or use --time"
            );
        }
    }
    let lock = prepare_target(from, &root, &args.to, args.force)?;
    let result = write_shards(
        args,
        from,
        &target,
        chosen.as_ref(),
        cipher.clone(),
        shards,
        &wal_dir,
    )
    .and_then(|summary| {
        fortress_proxy::cluster::write_identity(&args.to, identity.shards, identity.vnodes)?;
        // Materialise the new directory now, so it is checked and its
        // first start does not replay everything.
        let began = Instant::now();
        let cluster = crate::open_existing(&args.to, cipher.clone())
            .with_context(|| format!("opening the restored {}", args.to.display()))?;
        cluster.flush();
        Ok((summary, began.elapsed().as_secs_f64()))
    });
    let ((rows, records, bytes, positions, written), applied) = match result {
        Ok(r) => r,
        Err(e) => {
            // Nothing half-restored is left for a server to start on.
            let _ = clear(&lock, &args.to);
            return Err(e);
        }
    };
    drop(lock);
    drop(source_lock);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "restored {} into {}: {} rows from checkpoint {}, {} WAL records read through {}; {:.1} MB read and new logs written in {:.2} s ({:.1} MB/s), applied to the new shards in {:.2} s, {:.2} s in all",
        source.label,
        args.to.display(),
        rows,
        chosen.as_ref().map_or("(none)", |(_, m)| m.id.as_str()),
        records,
        match &target {
            Target::Checkpoint => "the checkpoint".to_string(),
            Target::Latest => "the end of the log".to_string(),
            Target::Time(t) => format!("time {}", format_ts(*t)),
            Target::Lsn(_) => format!("LSNs {}", positions.join(",")),
        },
                bytes as f64 / 1e6,
        written,
        bytes as f64 / 1e6 / written.max(1e-6),
        applied,
        secs
    );
    Ok(())
}

type Written = (u64, u64, u64, Vec<String>, f64);

/// Writes every shard's new log; returns rows loaded, records read, bytes
/// read, each shard's last source LSN and the seconds it took.
fn write_shards(
    args: &RestoreArgs,
    from: &Path,
    target: &Target,
    chosen: Option<&(PathBuf, Manifest)>,
    cipher: Option<Arc<Cipher>>,
    shards: u32,
    wal_dir: &dyn Fn(u32) -> PathBuf,
) -> anyhow::Result<Written> {
    let started = Instant::now();
    let total = input_bytes(chosen.map(|(_, m)| m), target, shards, wal_dir);
    let mut progress = Progress::new(total, "restoring");
    let empty = Manifest::default();
    let mut pending = Vec::new();
    for s in 0..shards {
        let cut = chosen.map(|(p, m)| {
            m.shards
                .iter()
                .find(|c| c.shard == s)
                .map(|c| (p.as_path(), c))
                .with_context(|| format!("the checkpoint has no part for shard {s}"))
        });
        let src = ShardSource {
            shard: s,
            checkpoint: cut.transpose()?,
            manifest: chosen.map_or(&empty, |(_, m)| m),
            wal: wal_dir(s),
            cutoff: target.cutoff(s as usize),
            cipher: cipher.clone(),
        };
        let new_dir = args.to.join(format!("shard-{s:03}"));
        pending.push(
            restore_shard(&src, &new_dir, &mut |n| progress.add(n))
                .with_context(|| format!("restoring shard {s}"))?,
        );
    }
    progress.finish();
    // Read after every shard's log: a decision logged before a shard was
    // read is in this log by now.
    let logged =
        fortress_proxy::coordinator::read_decisions(&from.join("coordinator"), cipher.as_deref())?;
    // A vote a shard's log lost with its unsynced tail is in the decision.
    for (&txid, d) in &logged {
        for (shard, vote) in &d.votes {
            if let Some(p) = pending.get_mut(*shard as usize) {
                p.adopt_vote(txid, vote.lsn, &vote.record)?;
            }
        }
    }
    let outcomes = logged.iter().map(|(&t, d)| (t, d.commit_ts)).collect();
    let decisions = fortress_storage::restore::decide(&pending, &outcomes);
    let (mut rows, mut records, mut bytes) = (0, 0, 0);
    let mut positions = Vec::new();
    for (s, p) in pending.into_iter().enumerate() {
        let stats = p.finish(&decisions)?;
        rows += stats.rows;
        records += stats.replayed;
        bytes += stats.bytes;
        positions.push(format!("{s}:{}", stats.last_lsn));
    }
    Ok((
        rows,
        records,
        bytes,
        positions,
        started.elapsed().as_secs_f64(),
    ))
}

fn wall_micros_now() -> anyhow::Result<u64> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_micros() as u64)
}

fn format_ts(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp_micros(t.wall_micros() as i64)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_else(|| t.0.to_string())
}

/// Bytes a restore reads: the checkpoint's files and the WAL segments it
/// may replay (an estimate for the progress bar).
fn input_bytes(
    m: Option<&Manifest>,
    target: &Target,
    shards: u32,
    wal_dir: &dyn Fn(u32) -> PathBuf,
) -> u64 {
    let ckpt = m.map_or(0, |m| m.sizes().0);
    if *target == Target::Checkpoint {
        return ckpt;
    }
    let wal: u64 = (0..shards)
        .flat_map(|s| fortress_storage::wal::list_segments(&wal_dir(s)).unwrap_or_default())
        .filter_map(|(_, p)| std::fs::metadata(p).ok())
        .map(|md| md.len())
        .sum();
    ckpt + wal
}

/// Runs [`Download::finish`] with a progress bar over its bytes.
fn download_with_progress(download: &Download, chosen: Option<&Manifest>) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut progress: Option<Progress> = None;
            while !done.load(Ordering::Acquire) {
                std::thread::sleep(std::time::Duration::from_millis(100));
                let total = download.total.load(Ordering::Relaxed);
                if total == 0 {
                    continue;
                }
                let p = progress.get_or_insert_with(|| Progress::new(total, "downloading"));
                let now = download.bytes.load(Ordering::Relaxed);
                p.add(now.saturating_sub(p.done));
            }
            if let Some(p) = progress {
                p.finish();
            }
        });
        let result = download.finish(chosen);
        done.store(true, Ordering::Release);
        result
    })
}

/// A progress bar on a terminal, progress lines in the log otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    done: u64,
    logged: Instant,
    what: &'static str,
}

impl Progress {
    fn new(total: u64, what: &'static str) -> Progress {
        let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
                "{{spinner}} {what} [{{bar:40}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}} eta {{eta}}"
            )) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Progress {
            bar,
            total,
            done: 0,
            logged: Instant::now(),
            what,
        }
    }

    fn add(&mut self, n: u64) {
        self.done += n;
        match &self.bar {
            Some(bar) => bar.set_position(self.done.min(self.total)),
            None if self.logged.elapsed().as_secs() >= 2 => {
                self.logged = Instant::now();
                tracing::info!(
                    read = self.done,
                    of = self.total,
                    "{} progress: {:.0}%",
                    self.what,
                    100.0 * self.done as f64 / self.total.max(1) as f64
                );
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
