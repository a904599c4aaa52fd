//! `fortress restore`: a new data directory from a checkpoint, optionally
//! brought forward by replaying the source's WAL to an LSN, a time, or its
//! end (point-in-time recovery).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use fortress_storage::checkpoint::{self, Manifest};
use fortress_storage::cipher::Cipher;
use fortress_storage::restore::{restore_shard, split_transactions, Cutoff, ShardSource};
use fortress_storage::{Catalog, DataType, Lsn, Timestamp, Value};

use crate::cli::RestoreArgs;
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

/// Checks that `to` may be written: not the source, not held by a live
/// server, empty unless `force` (then emptied). Returns its lock.
fn prepare_target(from: &Path, to: &Path, force: bool) -> anyhow::Result<DirLock> {
    if to.exists() {
        let (a, b) = (from.canonicalize()?, to.canonicalize()?);
        if a == b || a.starts_with(&b) || b.starts_with(&a) {
            bail!(
                "--to {} overlaps the source directory {}",
                to.display(),
                from.display()
            );
        }
    }
    let lock = DirLock::try_acquire(to)?.with_context(|| {
        format!(
            "{} is held by a running server; refusing to write into it",
            to.display()
        )
    })?;
    let lock_name = lock.path().file_name().map(|n| n.to_owned());
    let others: Vec<_> = std::fs::read_dir(to)?
        .filter_map(|e| e.ok())
        .filter(|e| Some(e.file_name()) != lock_name)
        .collect();
    if !others.is_empty() {
        if !force {
            bail!(
                "{} is not empty; pass --force to replace what it holds",
                to.display()
            );
        }
        for e in others {
            let p = e.path();
            if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            }
            .with_context(|| format!("clearing {}", p.display()))?;
        }
    }
    Ok(lock)
}

/// Picks the checkpoint to start from: the named one, else the newest that
/// fits the target. `None`: replay the whole log instead.
fn choose(
    root: &Path,
    named: Option<&str>,
    target: &Target,
    cipher: Option<&Cipher>,
) -> anyhow::Result<Option<(PathBuf, Manifest)>> {
    let found = checkpoint::list(root, cipher)?;
    if let Some(id) = named {
        let path = root.join(id);
        let m =
            Manifest::read(&path, cipher).with_context(|| format!("reading checkpoint {id}"))?;
        if !target.fits(&m) {
            bail!("checkpoint {id} is later than the target");
        }
        return Ok(Some((path, m)));
    }
    let mut unreadable = None;
    let mut readable = Vec::new();
    for (path, m) in found {
        match m {
            Ok(m) => readable.push((path, m)),
            Err(e) => {
                tracing::warn!(checkpoint = %path.display(), error = %e, "skipping an unreadable checkpoint");
                unreadable = Some(e);
            }
        }
    }
    let best = readable.into_iter().rfind(|(_, m)| target.fits(m));
    if let (None, Some(e)) = (&best, unreadable) {
        return Err(e).context("no readable checkpoint fits the target");
    }
    if best.is_none() && *target == Target::Checkpoint {
        bail!("no checkpoint in {}", root.display());
    }
    Ok(best)
}

pub fn run(args: RestoreArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let from = &args.dirs.data_dir;
    let (shards, vnodes) = fortress_proxy::cluster::read_identity(from)?
        .with_context(|| format!("{} is not a fortress data directory", from.display()))?;
    let target = Target::from_args(&args, shards)?;
    let cipher = crate::key::load(args.dirs.key_file.as_deref())?;
    let chosen = choose(
        &args.dirs.checkpoints(),
        args.checkpoint.as_deref(),
        &target,
        cipher.as_deref(),
    )?;
    if let Some((path, m)) = &chosen {
        if (m.ring.shards, m.ring.vnodes) != (shards, vnodes) {
            bail!(
                "checkpoint {} has {} shards and {} vnodes; the directory has {shards} and {vnodes}",
                m.id,
                m.ring.shards,
                m.ring.vnodes
            );
        }
        tracing::info!(checkpoint = %m.id, "verifying the checkpoint");
        checkpoint::verify(path, cipher.as_deref())
            .with_context(|| format!("checkpoint {} is damaged", m.id))?;
    }
    let lock = prepare_target(from, &args.to, args.force)?;
    let wal_dir = |s: u32| from.join(format!("shard-{s:03}")).join("wal");
    let after = |s: u32| {
        chosen
            .as_ref()
            .and_then(|(_, m)| m.shards.iter().find(|c| c.shard == s))
            .map_or(0, |c| c.wal_after)
    };
    let decisions =
        fortress_proxy::coordinator::read_decisions(&from.join("coordinator"), cipher.as_deref())?;
    let excluded = match &target {
        Target::Lsn(lsns) => {
            let logs: Vec<_> = (0..shards)
                .map(|s| (wal_dir(s), after(s), lsns[s as usize]))
                .collect();
            split_transactions(&logs, cipher.as_deref())?
        }
        _ => HashSet::new(),
    };
    if !excluded.is_empty() {
        tracing::warn!(
            transactions = ?excluded,
            "left out multi-shard transactions the LSN target cuts in half"
        );
    }
    let total = input_bytes(chosen.as_ref().map(|(_, m)| m), &target, shards, &wal_dir);
    let mut progress = Progress::new(total);
    fortress_proxy::cluster::write_identity(&args.to, shards, vnodes)?;
    let empty = Catalog::default();
    let (mut rows, mut records, mut bytes) = (0, 0, 0);
    let mut positions = Vec::new();
    for s in 0..shards {
        let cut = chosen.as_ref().and_then(|(p, m)| {
            m.shards
                .iter()
                .find(|c| c.shard == s)
                .map(|c| (p.as_path(), c))
        });
        if chosen.is_some() && cut.is_none() {
            bail!("the checkpoint has no part for shard {s}");
        }
        let src = ShardSource {
            checkpoint: cut,
            catalog: chosen.as_ref().map_or(&empty, |(_, m)| &m.catalog),
            wal: wal_dir(s),
            cutoff: target.cutoff(s as usize),
            excluded: &excluded,
            decisions: &decisions,
            cipher: cipher.clone(),
        };
        let new_dir = args.to.join(format!("shard-{s:03}"));
        let stats = restore_shard(&src, &new_dir, &mut |n| progress.add(n))
            .with_context(|| format!("restoring shard {s}"))?;
        rows += stats.rows;
        records += stats.replayed;
        bytes += stats.bytes;
        positions.push(format!("{s}:{}", stats.last_lsn));
    }
    progress.finish();
    let written = started.elapsed();
    // Materialise the new directory now, so it is checked and its first
    // start does not replay everything.
    let cluster = crate::open_existing(&args.to, cipher.clone())
        .with_context(|| format!("opening the restored {}", args.to.display()))?;
    cluster.flush();
    drop(cluster);
    drop(lock);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "restored {} into {}: {} rows from checkpoint {}, {} WAL records read through {}; {:.1} MB read in {:.2} s ({:.1} MB/s; log written in {:.2} s)",
        from.display(),
        args.to.display(),
        rows,
        chosen.as_ref().map_or("(none)", |(_, m)| m.id.as_str()),
        records,
        match &target {
            Target::Checkpoint => "the checkpoint".to_string(),
            Target::Latest => "the end of the log".to_string(),
            Target::Time(_) => format!("time {}", args.time.as_deref().unwrap_or("")),
            Target::Lsn(_) => format!("LSNs {}", positions.join(",")),
        },
        bytes as f64 / 1e6,
        secs,
        bytes as f64 / 1e6 / secs.max(1e-6),
        written.as_secs_f64()
    );
    Ok(())
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

/// A progress bar on a terminal, progress lines in the log otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    done: u64,
    logged: Instant,
}

impl Progress {
    fn new(total: u64) -> Progress {
        let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} restoring [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Progress {
            bar,
            total,
            done: 0,
            logged: Instant::now(),
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
                    "restore progress: {:.0}%",
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
