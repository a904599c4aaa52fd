//! The write-ahead log: one per shard, the source of truth for its data.
//!
//! **Format.** `DIR/<first-lsn>.seg` files, each a sequence of records:
//! `len:u32 | lsn:u64 | txid:u64 | ts:u64 | kind:u8 | payload[len] | crc32:u32`,
//! little-endian, the CRC (crc32fast) covering every byte before it. LSNs are
//! dense: each record's LSN is its predecessor's plus one, across segments.
//!
//! **Durability rule.** [`Wal::append`] writes the record to the OS
//! ([`Wal::append_unwritten`] holds it until the next append or sync, for a
//! record that no one needs written before then);
//! [`Wal::wait_durable`] returns once an fdatasync covers it. With
//! `sync = always` concurrent committers elect one leader whose single
//! fdatasync covers every record appended before it started (group commit);
//! `batch` lets the leader wait a short window to gather more; `off` skips
//! fsync (survives a process crash, not a power loss). Callers acknowledge a
//! write only after `wait_durable`. A failed write or fsync poisons the log:
//! nothing after it is acknowledged.
//!
//! **Preallocation.** The segment being written is extended with zeros a
//! chunk at a time, ahead of its records, so that most fdatasyncs overwrite
//! allocated blocks and need not also commit a new file size. Only the last
//! segment ends in zeros; rotation trims it to its records first.
//!
//! **Recovery rule.** [`Wal::open`] reads the segments in order. The last
//! segment's records may be followed by zeros: that is its end. A record that
//! is incomplete, or fails its CRC, at the very end of the last segment with no
//! valid record after it is a torn tail: it is truncated and logged. Any other
//! bad record stops start-up with [`StorageError::Corruption`] naming the file
//! and offset.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::cipher::Cipher;
use crate::error::{Result, StorageError};

/// Log sequence number: position of a record in one shard's log.
pub type Lsn = u64;

/// `len | lsn | txid | ts | kind`.
pub(crate) const HEADER: usize = 4 + 8 + 8 + 8 + 1;
pub(crate) const TRAILER: usize = 4;
/// Upper bound on one record's payload; anything larger is corruption.
pub const MAX_PAYLOAD: usize = 256 << 20;
/// Kind bit of a record whose payload is sealed with the log's cipher.
const SEALED: u8 = 0x80;
/// Default size at which a new segment is started.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// How far ahead of its records the current segment is zero-filled.
const PREALLOCATE_BYTES: u64 = 1 << 20;

/// When a commit counts as durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// fdatasync before acknowledging; concurrent commits share one.
    #[default]
    Always,
    /// Like `Always`, but the sync leader waits a short window first so that
    /// more commits share each fdatasync.
    Batch,
    /// No fsync: acknowledged once written to the OS.
    Off,
}

impl std::str::FromStr for SyncMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "always" => Ok(SyncMode::Always),
            "batch" => Ok(SyncMode::Batch),
            "off" => Ok(SyncMode::Off),
            _ => Err(format!("unknown sync mode {s:?} (always, batch, off)")),
        }
    }
}

/// One decoded log record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub lsn: Lsn,
    pub txid: u64,
    pub ts: u64,
    pub kind: u8,
    pub payload: Vec<u8>,
}

impl Record {
    /// Appends the wire form of this record to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&(self.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.lsn.to_le_bytes());
        out.extend_from_slice(&self.txid.to_le_bytes());
        out.extend_from_slice(&self.ts.to_le_bytes());
        out.push(self.kind);
        out.extend_from_slice(&self.payload);
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }
}

impl Record {
    /// The header fields a sealed payload is bound to.
    fn sealing_aad(lsn: Lsn, txid: u64, ts: u64, kind: u8) -> [u8; 25] {
        let mut aad = [0u8; 25];
        aad[..8].copy_from_slice(&lsn.to_le_bytes());
        aad[8..16].copy_from_slice(&txid.to_le_bytes());
        aad[16..24].copy_from_slice(&ts.to_le_bytes());
        aad[24] = kind;
        aad
    }

    /// Decrypts a sealed payload in place (found at `offset` of `file`).
    pub(crate) fn unseal(
        &mut self,
        cipher: Option<&Cipher>,
        file: &Path,
        offset: usize,
    ) -> Result<()> {
        if self.kind & SEALED == 0 {
            return Ok(());
        }
        let fail = |reason: String| StorageError::Encryption {
            file: file.to_path_buf(),
            offset: offset as u64,
            reason,
        };
        let cipher = cipher.ok_or_else(|| {
            fail("the log is encrypted and no key was given (FORTRESS_KEY or --key-file)".into())
        })?;
        self.kind &= !SEALED;
        let aad = Record::sealing_aad(self.lsn, self.txid, self.ts, self.kind);
        self.payload = cipher.open(&self.payload, &aad).ok_or_else(|| {
            fail(format!(
                "cannot decrypt with key {}: it is not the key the log was written with",
                cipher.id()
            ))
        })?;
        Ok(())
    }
}

/// Outcome of decoding at one offset.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A valid record and its encoded length.
    Record(Record, usize),
    /// The buffer ends inside the record.
    Incomplete,
    /// Length out of bounds or CRC mismatch; the reason.
    Bad(String),
}

/// Decodes every record of shipped bytes (records as encoded in a log,
/// see [`Wal::append_encoded`]), opening sealed payloads with `cipher`.
/// `origin` names where they came from, for errors. Bytes that do not
/// decode whole are refused.
pub fn decode_shipped(bytes: &[u8], cipher: Option<&Cipher>, origin: &Path) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let Decoded::Record(mut rec, n) = decode(&bytes[pos..]) else {
            return Err(StorageError::Codec(format!(
                "shipped WAL records for {} do not decode at byte {pos}",
                origin.display()
            )));
        };
        rec.unseal(cipher, origin, pos)?;
        out.push(rec);
        pos += n;
    }
    Ok(out)
}

/// Decodes the record starting at `buf[0]`.
pub fn decode(buf: &[u8]) -> Decoded {
    if buf.len() < HEADER + TRAILER {
        return Decoded::Incomplete;
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    if len > MAX_PAYLOAD {
        return Decoded::Bad(format!("record length {len} exceeds the maximum"));
    }
    let total = HEADER + len + TRAILER;
    if buf.len() < total {
        return Decoded::Incomplete;
    }
    let crc = u32::from_le_bytes(buf[total - 4..total].try_into().expect("4 bytes"));
    if crc32fast::hash(&buf[..total - 4]) != crc {
        return Decoded::Bad("checksum mismatch".into());
    }
    let u64_at = |o: usize| u64::from_le_bytes(buf[o..o + 8].try_into().expect("8 bytes"));
    Decoded::Record(
        Record {
            lsn: u64_at(4),
            txid: u64_at(12),
            ts: u64_at(20),
            kind: buf[28],
            payload: buf[HEADER..HEADER + len].to_vec(),
        },
        total,
    )
}

pub(crate) fn segment_name(first_lsn: Lsn) -> String {
    format!("{first_lsn:020}.seg")
}

/// Segment files of `dir` with their first LSN, in LSN order.
pub fn list_segments(dir: &Path) -> Result<Vec<(Lsn, PathBuf)>> {
    let mut segs = Vec::new();
    let rd = fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| StorageError::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".seg") {
            if let Ok(lsn) = stem.parse::<u64>() {
                segs.push((lsn, entry.path()));
            }
        }
    }
    segs.sort();
    Ok(segs)
}

/// Removes the segments of the log in `dir` whose records all lie at or
/// below `lsn`, oldest first, never the last one (being written); returns
/// how many and their bytes. For recycling: the caller knows that nothing
/// (restart, restore, standby, archive) needs those records from here.
pub fn remove_segments_through(dir: &Path, lsn: Lsn) -> Result<(usize, u64)> {
    let segs = list_segments(dir)?;
    let (mut count, mut bytes) = (0, 0);
    for pair in segs.windows(2) {
        let ((_, path), (next_first, _)) = (&pair[0], &pair[1]);
        if next_first - 1 > lsn {
            break;
        }
        let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        fs::remove_file(path).map_err(|e| StorageError::io(path, e))?;
        count += 1;
        bytes += len;
    }
    if count > 0 {
        sync_dir(dir)?;
    }
    Ok((count, bytes))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(dir, e))
}

struct Writer {
    file: Arc<File>,
    path: PathBuf,
    /// End of the records written to the file: where `buf` goes next.
    size: u64,
    /// Length of the file; the bytes from `size` on are zeros.
    allocated: u64,
    next_lsn: Lsn,
    /// Encoded records not yet written to the file (see
    /// [`Wal::append_unwritten`]); empty after every other append.
    buf: Vec<u8>,
}

/// Bytes of records [`Wal::append_unwritten`] holds before writing them.
const UNWRITTEN_MAX: usize = 64 << 10;

/// Options for opening a log.
#[derive(Clone, Debug)]
pub struct WalOptions {
    pub sync: SyncMode,
    pub segment_bytes: u64,
    /// How long a `batch` sync leader waits for company.
    pub batch_window: Duration,
    /// Seals record payloads (encryption at rest); records are read with
    /// it whether or not they were sealed.
    pub cipher: Option<Arc<Cipher>>,
    /// Records through this LSN were durable once: a store built from them
    /// says it applied them. A damaged record among them is corruption,
    /// refused at open, never a torn tail to truncate (which would lose an
    /// acknowledged commit the store still serves).
    pub known_durable: Lsn,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            sync: SyncMode::Always,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            batch_window: Duration::from_millis(2),
            cipher: None,
            known_durable: 0,
        }
    }
}

/// An open, appendable log.
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    writer: Mutex<Writer>,
    durable: AtomicU64,
    /// True while a leader's fdatasync is in flight; `synced` wakes every
    /// waiter when it ends, so those it covered return at once instead of
    /// queueing behind the next leader.
    syncing: Mutex<bool>,
    synced: Condvar,
    failed: AtomicBool,
    syncs: AtomicU64,
    /// Bytes of records appended since open (headers included).
    appended: AtomicU64,
}

impl Wal {
    /// Opens (or creates) the log in `dir`, validating every segment that may
    /// hold records after `replay_after` and passing those records, in order,
    /// to `replay`. Truncates a torn tail; fails on corruption.
    pub fn open(
        dir: &Path,
        opts: WalOptions,
        replay_after: Lsn,
        mut replay: impl FnMut(&Record) -> Result<()>,
    ) -> Result<Wal> {
        fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let segs = list_segments(dir)?;
        let mut expected: Option<Lsn> = None;
        let mut sealing = Sealing {
            cipher: opts.cipher.as_deref(),
            sealed: None,
            key_checked: false,
        };
        let mut tail: Option<(PathBuf, u64, u64)> = None;
        for (i, (first, path)) in segs.iter().enumerate() {
            let last = i + 1 == segs.len();
            if !last && segs[i + 1].0 <= replay_after + 1 {
                expected = Some(segs[i + 1].0);
                continue;
            }
            // The first segment read must hold the first record to replay.
            let exp = expected.unwrap_or((*first).min(replay_after + 1));
            if *first != exp {
                return Err(StorageError::Corruption {
                    file: path.clone(),
                    offset: 0,
                    reason: format!("segment starts at LSN {first}, expected {exp}"),
                });
            }
            let buf = fs::read(path).map_err(|e| StorageError::io(path, e))?;
            let scanned = scan_segment(
                path,
                &buf,
                *first,
                last,
                replay_after,
                &mut sealing,
                |rec| {
                    replay(rec)?;
                    Ok(true)
                },
            )?;
            // Where the records end, and the file's length after the scan.
            let (pos, len, next) = match scanned {
                Scanned::Whole(next) | Scanned::Stopped(next) => (buf.len(), buf.len(), next),
                Scanned::ZeroTail(pos, next) => (pos, buf.len(), next),
                Scanned::TornAt(pos, next) if next <= opts.known_durable => {
                    return Err(StorageError::Corruption {
                        file: path.clone(),
                        offset: pos as u64,
                        reason: format!(
                            "the record at LSN {next} is damaged, but the shard's store applied \
                             through LSN {}: it was durable, so this is damage, not a torn write, \
                             and nothing was truncated. Restore the data directory from a \
                             checkpoint (fortress restore) or this file from a backup",
                            opts.known_durable
                        ),
                    });
                }
                Scanned::TornAt(pos, next) => {
                    tracing::warn!(
                        file = %path.display(),
                        offset = pos,
                        dropped = buf.len() - pos,
                        "truncating torn WAL tail"
                    );
                    let f = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(|e| StorageError::io(path, e))?;
                    f.set_len(pos as u64)
                        .and_then(|_| f.sync_all())
                        .map_err(|e| StorageError::io(path, e))?;
                    (pos, pos, next)
                }
            };
            expected = Some(next);
            if last {
                tail = Some((path.clone(), pos as u64, len as u64));
            }
        }
        if opts.cipher.is_some() && sealing.sealed == Some(false) {
            return Err(StorageError::Encryption {
                file: dir.to_path_buf(),
                offset: 0,
                reason: "the log is not encrypted; to encrypt a data directory, restore it into a new one with the key".into(),
            });
        }
        let next_lsn = expected.unwrap_or(1).max(1);
        let (path, size, allocated) = match tail {
            Some(t) => t,
            None => (dir.join(segment_name(next_lsn)), 0, 0),
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StorageError::io(&path, e))?;
        // What the log holds is durable from here on: records written but
        // never synced before a crash of the process (not of the machine)
        // are in it and may already have been acknowledged or applied.
        file.sync_data().map_err(|e| StorageError::io(&path, e))?;
        sync_dir(dir)?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            opts,
            writer: Mutex::new(Writer {
                file: Arc::new(file),
                path,
                size,
                allocated,
                next_lsn,
                buf: Vec::with_capacity(4096),
            }),
            durable: AtomicU64::new(next_lsn - 1),
            syncing: Mutex::new(false),
            synced: Condvar::new(),
            failed: AtomicBool::new(false),
            syncs: AtomicU64::new(0),
            appended: AtomicU64::new(0),
        })
    }

    /// The cipher sealing this log's records, if encrypted.
    /// When appended records are made durable.
    pub fn sync_mode(&self) -> SyncMode {
        self.opts.sync
    }

    pub fn cipher(&self) -> Option<&Arc<Cipher>> {
        self.opts.cipher.as_ref()
    }

    /// LSN of the last appended record (0 when empty).
    pub fn last_lsn(&self) -> Lsn {
        self.writer.lock().expect("wal writer").next_lsn - 1
    }

    /// Number of fdatasync calls made for commits so far (group commit makes
    /// this smaller than the number of commits under concurrency).
    pub fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Bytes of records appended since the log was opened.
    pub fn bytes_appended(&self) -> u64 {
        self.appended.load(Ordering::Relaxed)
    }

    /// LSN up to which every record is durable.
    pub fn durable_lsn(&self) -> Lsn {
        self.durable.load(Ordering::Acquire)
    }

    /// LSN up to which records may leave this machine (to archives and
    /// standbys): the durable ones, or with `sync = off`, which never
    /// syncs, every record written to the OS. A record past it may still
    /// be lost to a crash and its LSN reused by another, so shipping it
    /// could make a copy disagree with this log.
    pub fn shippable_lsn(&self) -> Lsn {
        match self.opts.sync {
            SyncMode::Off => {
                let w = self.writer.lock().expect("wal writer");
                // `off` writes every record out at once (see `append_record`).
                debug_assert!(w.buf.is_empty());
                w.next_lsn - 1
            }
            _ => self.durable.load(Ordering::Acquire),
        }
    }

    /// The directory holding this log's segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn check_failed(&self) -> Result<()> {
        if self.failed.load(Ordering::Acquire) {
            return Err(StorageError::Unavailable {
                shard: u32::MAX,
                reason: format!(
                    "WAL in {} failed earlier; restart to recover",
                    self.dir.display()
                ),
            });
        }
        Ok(())
    }

    fn fail<T>(&self, path: &Path, e: std::io::Error) -> Result<T> {
        self.failed.store(true, Ordering::Release);
        tracing::error!(file = %path.display(), error = %e, "WAL write failed; log poisoned");
        Err(StorageError::io(path, e))
    }

    /// Appends one record and returns its LSN. The record is written to the
    /// OS but not yet durable: call [`Wal::wait_durable`] before acknowledging.
    pub fn append(&self, txid: u64, ts: u64, kind: u8, payload: &[u8]) -> Result<Lsn> {
        self.append_record(txid, ts, kind, payload, false)
    }

    /// Appends a record that no one needs written before the next sync:
    /// its waiter syncs anyway (a commit decision), or another log holds
    /// what it says (a vote the coordinator's decision carries). It stays
    /// in memory until the next append, sync or rotation, or until 64 KiB
    /// of such records wait: one write for many instead of one each.
    /// Unlike [`Wal::append`], a crash of the process loses it.
    pub fn append_unwritten(&self, txid: u64, ts: u64, kind: u8, payload: &[u8]) -> Result<Lsn> {
        self.append_record(txid, ts, kind, payload, true)
    }

    fn append_record(
        &self,
        txid: u64,
        ts: u64,
        kind: u8,
        payload: &[u8],
        unwritten: bool,
    ) -> Result<Lsn> {
        self.check_failed()?;
        if kind & SEALED != 0 {
            return Err(StorageError::Codec(format!(
                "record kind {kind} is reserved"
            )));
        }
        if payload.len() + crate::cipher::OVERHEAD > MAX_PAYLOAD {
            return Err(StorageError::Codec(format!(
                "WAL record of {} bytes exceeds the maximum",
                payload.len()
            )));
        }
        let mut w = self.writer.lock().expect("wal writer");
        if w.size + w.buf.len() as u64 >= self.opts.segment_bytes {
            self.rotate(&mut w)?;
        }
        let lsn = w.next_lsn;
        let rec = match &self.opts.cipher {
            Some(c) => Record {
                lsn,
                txid,
                ts,
                kind: kind | SEALED,
                payload: c.seal(payload, &Record::sealing_aad(lsn, txid, ts, kind)),
            },
            None => Record {
                lsn,
                txid,
                ts,
                kind,
                payload: payload.to_vec(),
            },
        };
        let before = w.buf.len();
        rec.encode_into(&mut w.buf);
        let end = w.size + w.buf.len() as u64;
        if end > w.allocated {
            if let Err(e) = self.preallocate(&mut w, end) {
                // Nothing of the record reached the file and its LSN is not
                // taken: the log stays usable (a full disk is 53100, and
                // writes resume once space is freed).
                w.buf.truncate(before);
                tracing::warn!(file = %w.path.display(), error = %e, "could not extend the WAL");
                return Err(StorageError::io(&w.path, e));
            }
        }
        w.next_lsn += 1;
        self.appended
            .fetch_add((w.buf.len() - before) as u64, Ordering::Relaxed);
        // `off` never syncs, so nothing would write a held record out: it
        // goes to the OS at once, which is all that mode promises.
        let hold = unwritten && self.opts.sync != SyncMode::Off;
        if !hold || w.buf.len() >= UNWRITTEN_MAX {
            self.write_out(&mut w)?;
        }
        Ok(lsn)
    }

    /// Appends records encoded by another copy of this log (a primary's,
    /// shipped to a standby) byte for byte: each must decode, take the
    /// next LSN, and be sealed exactly when this log seals. Returns the
    /// last LSN; durable after [`Wal::wait_durable`]. Nothing is appended
    /// unless every record passes.
    pub fn append_encoded(&self, bytes: &[u8]) -> Result<Lsn> {
        self.check_failed()?;
        let mut w = self.writer.lock().expect("wal writer");
        let mut records = Vec::new();
        let (mut pos, mut next) = (0, w.next_lsn);
        while pos < bytes.len() {
            let n = match decode(&bytes[pos..]) {
                Decoded::Record(rec, _) if rec.lsn != next => {
                    return Err(StorageError::Codec(format!(
                        "a shipped record has LSN {} where {next} follows",
                        rec.lsn
                    )))
                }
                Decoded::Record(rec, _)
                    if (rec.kind & SEALED != 0) != self.opts.cipher.is_some() =>
                {
                    return Err(StorageError::Codec(format!(
                        "shipped record {} is {}sealed, this log {}",
                        rec.lsn,
                        if rec.kind & SEALED != 0 { "" } else { "not " },
                        if self.opts.cipher.is_some() {
                            "seals (same key on both sides)"
                        } else {
                            "has no key"
                        }
                    )))
                }
                Decoded::Record(_, n) => n,
                Decoded::Incomplete => {
                    return Err(StorageError::Codec("a shipped record is cut off".into()))
                }
                Decoded::Bad(why) => {
                    return Err(StorageError::Codec(format!(
                        "a shipped record is damaged: {why}"
                    )))
                }
            };
            records.push(pos..pos + n);
            pos += n;
            next += 1;
        }
        for range in records {
            if w.size + w.buf.len() as u64 >= self.opts.segment_bytes {
                self.rotate(&mut w)?;
            }
            let before = w.buf.len();
            w.buf.extend_from_slice(&bytes[range.clone()]);
            let end = w.size + w.buf.len() as u64;
            if end > w.allocated {
                if let Err(e) = self.preallocate(&mut w, end) {
                    w.buf.truncate(before);
                    return Err(StorageError::io(&w.path, e));
                }
            }
            w.next_lsn += 1;
            self.appended
                .fetch_add(range.len() as u64, Ordering::Relaxed);
        }
        self.write_out(&mut w)?;
        Ok(w.next_lsn - 1)
    }

    /// Writes the records waiting in `w.buf` to the file, in one write.
    fn write_out(&self, w: &mut Writer) -> Result<()> {
        if w.buf.is_empty() {
            return Ok(());
        }
        let end = w.size + w.buf.len() as u64;
        let mut res = Ok(());
        if end > w.allocated {
            res = self.preallocate(w, end);
        }
        let res = res.and_then(|_| w.file.write_all_at(&w.buf, w.size));
        w.size = end;
        w.buf.clear();
        if let Err(e) = res {
            let path = w.path.clone();
            return self.fail(&path, e);
        }
        Ok(())
    }

    /// Writes the records [`Wal::append_unwritten`] holds to the OS (not
    /// durably), for a reader of the files.
    pub fn write_unwritten(&self) -> Result<()> {
        let mut w = self.writer.lock().expect("wal writer");
        self.write_out(&mut w)
    }

    /// Zero-fills the current segment from its allocated end to at least
    /// `end`, a chunk ahead but not past the segment size. Real zeros, not
    /// `fallocate`: writing into unwritten extents changes metadata too.
    fn preallocate(&self, w: &mut Writer, end: u64) -> std::io::Result<()> {
        let target = (w.size + PREALLOCATE_BYTES)
            .min(self.opts.segment_bytes)
            .max(end);
        let zeros = vec![0u8; (target - w.allocated) as usize];
        w.file.write_all_at(&zeros, w.allocated)?;
        w.allocated = target;
        Ok(())
    }

    /// Seals the current segment (trimmed to its records, fsynced) and
    /// starts the next one.
    fn rotate(&self, w: &mut Writer) -> Result<()> {
        self.write_out(w)?;
        if let Err(e) = w.file.set_len(w.size).and_then(|_| w.file.sync_data()) {
            let path = w.path.clone();
            return self.fail(&path, e);
        }
        self.durable.fetch_max(w.next_lsn - 1, Ordering::AcqRel);
        // Trimmed to its records: a rotation that cannot go on (a full
        // disk) leaves the segment current and is tried again.
        w.allocated = w.size;
        let path = self.dir.join(segment_name(w.next_lsn));
        let file = match OpenOptions::new().create_new(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if matches!(e.raw_os_error(), Some(28) | Some(122)) => {
                return Err(StorageError::io(&path, e))
            }
            Err(e) => return self.fail(&path, e),
        };
        sync_dir(&self.dir)?;
        w.file = Arc::new(file);
        w.path = path;
        w.size = 0;
        w.allocated = 0;
        Ok(())
    }

    /// Blocks until `lsn` is durable under the configured sync mode. One
    /// waiter at a time leads: its fdatasync covers every record appended
    /// before it began.
    pub fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        if self.opts.sync == SyncMode::Off {
            return self.check_failed();
        }
        loop {
            if self.durable.load(Ordering::Acquire) >= lsn {
                return Ok(());
            }
            {
                let mut syncing = self.syncing.lock().expect("wal sync");
                loop {
                    if self.durable.load(Ordering::Acquire) >= lsn {
                        return Ok(());
                    }
                    self.check_failed()?;
                    if !*syncing {
                        break;
                    }
                    syncing = self.synced.wait(syncing).expect("wal sync");
                }
                *syncing = true;
            }
            let res = self.sync();
            *self.syncing.lock().expect("wal sync") = false;
            self.synced.notify_all();
            res?;
        }
    }

    /// The leader's fdatasync of everything appended so far.
    fn sync(&self) -> Result<()> {
        if self.opts.sync == SyncMode::Batch {
            std::thread::sleep(self.opts.batch_window);
        }
        let (file, path, upto) = {
            let mut w = self.writer.lock().expect("wal writer");
            self.write_out(&mut w)?;
            // After a failed write `next_lsn` counts records that never
            // reached the file: no fsync may call them durable.
            self.check_failed()?;
            (w.file.clone(), w.path.clone(), w.next_lsn - 1)
        };
        if let Err(e) = file.sync_data() {
            return self.fail(&path, e);
        }
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.durable.fetch_max(upto, Ordering::AcqRel);
        Ok(())
    }
}

impl Drop for Wal {
    /// A log closed in an orderly way leaves no record only in memory.
    fn drop(&mut self) {
        if self.failed.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut w) = self.writer.lock() {
            let _ = self.write_out(&mut w);
        }
    }
}

/// True if some offset at or after `from` holds a valid record with an LSN at
/// or after `next`: then the damage is mid-log, not a torn tail.
fn has_valid_record_after(buf: &[u8], from: usize, next: Lsn) -> bool {
    (from..buf.len().saturating_sub(HEADER + TRAILER - 1)).any(|off| {
        let lsn = u64::from_le_bytes(buf[off + 4..off + 12].try_into().expect("8 bytes"));
        lsn >= next
            && lsn < next.saturating_add(1 << 24)
            && matches!(decode(&buf[off..]), Decoded::Record(..))
    })
}

/// Whether a log's records are sealed: all of them or none, as its first
/// record says, so unsealed records cannot be slipped into an encrypted log.
struct Sealing<'a> {
    cipher: Option<&'a Cipher>,
    sealed: Option<bool>,
    key_checked: bool,
}

impl Sealing<'_> {
    fn check(&mut self, rec: &Record, file: &Path, offset: usize) -> Result<()> {
        let sealed = rec.kind & SEALED != 0;
        match self.sealed.replace(sealed) {
            Some(was) if was != sealed => Err(StorageError::Encryption {
                file: file.to_path_buf(),
                offset: offset as u64,
                reason: "the log mixes encrypted and unencrypted records".into(),
            }),
            _ => Ok(()),
        }
    }
}

/// How a segment scan ended.
enum Scanned {
    /// Every record was read; the LSN after the last.
    Whole(Lsn),
    /// The visitor asked to stop; the LSN after the last record it saw.
    Stopped(Lsn),
    /// The records end at this offset and only zeros follow (the last
    /// segment, preallocated); the LSN after the last record.
    ZeroTail(usize, Lsn),
    /// A torn tail starts at this offset; the LSN after the last good record.
    TornAt(usize, Lsn),
}

/// Decodes the records of one segment (its bytes `buf`, first LSN `first`)
/// in order, handing each after LSN `after` (decrypted) to `visit` until it
/// returns false; earlier ones are checked but not decrypted. Damage at the
/// end of the last segment with nothing valid after it is a torn tail; any
/// other damage is corruption naming the file and offset.
fn scan_segment(
    path: &Path,
    buf: &[u8],
    first: Lsn,
    last: bool,
    after: Lsn,
    sealing: &mut Sealing<'_>,
    mut visit: impl FnMut(&Record) -> Result<bool>,
) -> Result<Scanned> {
    let mut pos = 0usize;
    let mut next = first;
    while pos < buf.len() {
        let corrupt = |reason: String| StorageError::Corruption {
            file: path.to_path_buf(),
            offset: pos as u64,
            reason,
        };
        match decode(&buf[pos..]) {
            Decoded::Record(mut rec, n) => {
                if rec.lsn != next {
                    return Err(corrupt(format!(
                        "LSN {} where {next} was expected",
                        rec.lsn
                    )));
                }
                sealing.check(&rec, path, pos)?;
                // The first record is decrypted whatever `after`, so a wrong
                // key is found before anything is appended under it.
                if rec.lsn > after || !sealing.key_checked {
                    rec.unseal(sealing.cipher, path, pos)?;
                    sealing.key_checked = true;
                }
                next += 1;
                pos += n;
                if rec.lsn > after && !visit(&rec)? {
                    return Ok(Scanned::Stopped(next));
                }
            }
            Decoded::Incomplete | Decoded::Bad(_) if last && buf[pos..].iter().all(|&b| b == 0) => {
                return Ok(Scanned::ZeroTail(pos, next));
            }
            Decoded::Incomplete | Decoded::Bad(_)
                if last && !has_valid_record_after(buf, pos + 1, next) =>
            {
                return Ok(Scanned::TornAt(pos, next));
            }
            Decoded::Incomplete => {
                return Err(corrupt("truncated record before the end of the log".into()))
            }
            Decoded::Bad(reason) => return Err(corrupt(reason)),
        }
    }
    Ok(Scanned::Whole(next))
}

/// Reads the records after `after` from the log in `dir` without changing
/// it (the log may belong to a running server), handing each to `visit`
/// until it returns false. A record cut off at the end of the last segment
/// is where a writer is, or a torn tail: the read ends there. Missing
/// segments and damage anywhere else are errors naming the file. Returns
/// the LSN of the last record read (visited or not).
pub fn read_from(
    dir: &Path,
    after: Lsn,
    cipher: Option<&Cipher>,
    mut visit: impl FnMut(&Record) -> Result<bool>,
) -> Result<Lsn> {
    let segs = list_segments(dir)?;
    if segs.is_empty() && after == 0 {
        return Ok(0);
    }
    let start = segs
        .iter()
        .rposition(|(first, _)| *first <= after + 1)
        .ok_or_else(|| StorageError::Corruption {
            file: dir.to_path_buf(),
            offset: 0,
            reason: match segs.first() {
                Some((first, _)) => format!(
                    "the log starts at LSN {first}; records from LSN {} are missing",
                    after + 1
                ),
                None => "the log has no segments".into(),
            },
        })?;
    let mut expected = segs[start].0;
    let mut sealing = Sealing {
        cipher,
        sealed: None,
        key_checked: false,
    };
    for (i, (first, path)) in segs.iter().enumerate().skip(start) {
        if *first != expected {
            return Err(StorageError::Corruption {
                file: path.clone(),
                offset: 0,
                reason: format!("segment starts at LSN {first}, expected {expected}"),
            });
        }
        let buf = fs::read(path).map_err(|e| StorageError::io(path, e))?;
        let last = i + 1 == segs.len();
        let scanned = scan_segment(path, &buf, *first, last, after, &mut sealing, &mut visit)?;
        match scanned {
            Scanned::Whole(next) => expected = next,
            Scanned::Stopped(next) | Scanned::ZeroTail(_, next) => return Ok(next - 1),
            Scanned::TornAt(pos, next) => {
                tracing::warn!(
                    file = %path.display(),
                    offset = pos,
                    "the log ends with an incomplete or damaged record (a torn tail, or a live server writing it); reading stops before it"
                );
                return Ok(next - 1);
            }
        }
    }
    Ok(expected - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, after: Lsn) -> Result<(Wal, Vec<Record>)> {
        let mut seen = Vec::new();
        let wal = Wal::open(dir, WalOptions::default(), after, |r| {
            seen.push(r.clone());
            Ok(())
        })?;
        Ok((wal, seen))
    }

    /// Where the records of segment `path` end (its zero tail starts).
    fn records_end(path: &Path) -> u64 {
        let buf = fs::read(path).unwrap();
        let mut pos = 0;
        while let Decoded::Record(_, n) = decode(&buf[pos..]) {
            pos += n;
        }
        pos as u64
    }

    /// Writes `bytes` right after the records of segment `path`, as a
    /// writer would.
    fn write_after_records(path: &Path, bytes: &[u8]) {
        let f = OpenOptions::new().write(true).open(path).unwrap();
        f.write_all_at(bytes, records_end(path)).unwrap();
    }

    /// Default options with segments of `bytes`, so that a few records rotate.
    fn segments_of(bytes: u64) -> WalOptions {
        WalOptions {
            segment_bytes: bytes,
            ..Default::default()
        }
    }

    fn write_n(wal: &Wal, n: u64) {
        for i in 0..n {
            let lsn = wal
                .append(i, i * 10, 1, format!("payload-{i}").as_bytes())
                .unwrap();
            wal.wait_durable(lsn).unwrap();
        }
    }

    /// LSNs `read_from` finds in the files of `dir`.
    fn lsns_on_disk(dir: &Path) -> Vec<Lsn> {
        let mut lsns = Vec::new();
        read_from(dir, 0, None, |r| {
            lsns.push(r.lsn);
            Ok(true)
        })
        .unwrap();
        lsns
    }

    #[test]
    fn unwritten_records_reach_the_file_with_the_next_append_or_sync() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = open(dir.path(), 0).unwrap();
        write_n(&wal, 1);
        assert_eq!(wal.append_unwritten(7, 70, 1, b"vote").unwrap(), 2);
        assert_eq!(wal.last_lsn(), 2);
        assert_eq!(lsns_on_disk(dir.path()), vec![1], "held in memory");
        // An ordinary append writes it first, in LSN order.
        assert_eq!(wal.append(8, 80, 1, b"write").unwrap(), 3);
        assert_eq!(lsns_on_disk(dir.path()), vec![1, 2, 3]);
        // A sync writes it before its fdatasync covers it.
        let lsn = wal.append_unwritten(9, 90, 1, b"commit").unwrap();
        wal.wait_durable(lsn).unwrap();
        assert_eq!(wal.durable_lsn(), 4);
        assert_eq!(lsns_on_disk(dir.path()), vec![1, 2, 3, 4]);
        // Closing the log writes what is held.
        wal.append_unwritten(10, 100, 1, b"last").unwrap();
        drop(wal);
        let (wal, seen) = open(dir.path(), 0).unwrap();
        assert_eq!(
            seen.last().map(|r| r.payload.clone()),
            Some(b"last".to_vec())
        );
        assert_eq!(wal.last_lsn(), 5);
    }

    #[test]
    fn without_fsync_nothing_is_held_in_memory() {
        // `off` never syncs, so a held record would wait for an append
        // that may never come: it is written at once instead.
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            sync: SyncMode::Off,
            ..Default::default()
        };
        let wal = Wal::open(dir.path(), opts, 0, |_| Ok(())).unwrap();
        wal.append_unwritten(7, 70, 1, b"vote").unwrap();
        assert_eq!(lsns_on_disk(dir.path()), vec![1]);
    }

    #[test]
    fn a_crash_loses_only_the_unwritten_records() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = open(dir.path(), 0).unwrap();
        write_n(&wal, 2);
        wal.append_unwritten(7, 70, 1, b"vote").unwrap();
        // A killed process runs no destructor.
        std::mem::forget(wal);
        let (wal, seen) = open(dir.path(), 0).unwrap();
        assert_eq!(seen.iter().map(|r| r.lsn).collect::<Vec<_>>(), vec![1, 2]);
        // The lost record's LSN goes to the next one.
        assert_eq!(wal.append(8, 80, 1, b"next").unwrap(), 3);
    }

    #[test]
    fn records_survive_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, seen) = open(dir.path(), 0).unwrap();
        assert!(seen.is_empty());
        write_n(&wal, 5);
        drop(wal);
        let (wal, seen) = open(dir.path(), 0).unwrap();
        assert_eq!(
            seen.iter().map(|r| r.lsn).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(seen[2].payload, b"payload-2");
        assert_eq!(wal.last_lsn(), 5);
    }

    #[test]
    fn replay_starts_after_the_applied_lsn() {
        let dir = tempfile::tempdir().unwrap();
        let opts = segments_of(100);
        let wal = Wal::open(dir.path(), opts.clone(), 0, |_| Ok(())).unwrap();
        write_n(&wal, 20);
        drop(wal);
        assert!(list_segments(dir.path()).unwrap().len() > 3);
        let mut seen = Vec::new();
        Wal::open(dir.path(), opts, 12, |r| {
            seen.push(r.lsn);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, (13..=20).collect::<Vec<_>>());
    }

    #[test]
    fn torn_tail_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = open(dir.path(), 0).unwrap();
        write_n(&wal, 3);
        drop(wal);
        let (_, path) = list_segments(dir.path()).unwrap().pop().unwrap();
        let good = records_end(&path);
        // Half of a fourth record, as a crash mid-write leaves it.
        let mut rec = Vec::new();
        Record {
            lsn: 4,
            txid: 0,
            ts: 0,
            kind: 1,
            payload: vec![7; 40],
        }
        .encode_into(&mut rec);
        write_after_records(&path, &rec[..rec.len() / 2]);
        let (wal, seen) = open(dir.path(), 0).unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(fs::metadata(&path).unwrap().len(), good);
        // The log keeps working after the truncation.
        write_n(&wal, 1);
        drop(wal);
        assert_eq!(open(dir.path(), 0).unwrap().1.len(), 4);
    }

    #[test]
    fn segments_are_zero_filled_ahead_and_trimmed_when_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let opts = segments_of(4096);
        let wal = Wal::open(dir.path(), opts.clone(), 0, |_| Ok(())).unwrap();
        write_n(&wal, 3);
        let (_, first) = list_segments(dir.path()).unwrap().pop().unwrap();
        // Appends within the allocated chunk leave the file size alone.
        assert_eq!(fs::metadata(&first).unwrap().len(), 4096);
        write_n(&wal, 2);
        assert_eq!(fs::metadata(&first).unwrap().len(), 4096);
        // Enough to rotate: sealed segments end at their last record.
        write_n(&wal, 300);
        let segs = list_segments(dir.path()).unwrap();
        assert!(segs.len() > 2);
        for (_, path) in &segs[..segs.len() - 1] {
            assert_eq!(fs::metadata(path).unwrap().len(), records_end(path));
        }
        drop(wal);
        // The zeros after the last record are its end, not a torn tail.
        let (_, last) = segs.last().unwrap().clone();
        let len = fs::metadata(&last).unwrap().len();
        assert!(len > records_end(&last));
        let mut seen = Vec::new();
        let wal = Wal::open(dir.path(), opts, 0, |r| {
            seen.push(r.lsn);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, (1..=305).collect::<Vec<_>>());
        assert_eq!(
            fs::metadata(&last).unwrap().len(),
            len,
            "kept, not truncated"
        );
        assert_eq!(read_from(dir.path(), 300, None, |_| Ok(true)).unwrap(), 305);
        write_n(&wal, 1);
        assert_eq!(wal.last_lsn(), 306);
    }

    #[test]
    fn read_from_leaves_the_log_alone_and_stops_at_a_partial_tail() {
        let dir = tempfile::tempdir().unwrap();
        let opts = segments_of(100);
        let wal = Wal::open(dir.path(), opts, 0, |_| Ok(())).unwrap();
        write_n(&wal, 12);
        // A writer mid-record: half a record at the end of the last segment.
        let (_, last) = list_segments(dir.path()).unwrap().pop().unwrap();
        let mut rec = Vec::new();
        Record {
            lsn: 13,
            txid: 0,
            ts: 0,
            kind: 1,
            payload: vec![1; 30],
        }
        .encode_into(&mut rec);
        write_after_records(&last, &rec[..10]);
        let before = fs::read(&last).unwrap();
        let mut seen = Vec::new();
        read_from(dir.path(), 4, None, |r| {
            seen.push(r.lsn);
            Ok(true)
        })
        .unwrap();
        assert_eq!(seen, (5..=12).collect::<Vec<_>>());
        assert_eq!(fs::read(&last).unwrap(), before, "untouched");
        let mut first_two = Vec::new();
        read_from(dir.path(), 0, None, |r| {
            first_two.push(r.lsn);
            Ok(first_two.len() < 2)
        })
        .unwrap();
        assert_eq!(first_two, vec![1, 2]);
    }

    #[test]
    fn missing_early_segments_are_an_error_not_a_short_replay() {
        let dir = tempfile::tempdir().unwrap();
        let opts = segments_of(100);
        let wal = Wal::open(dir.path(), opts.clone(), 0, |_| Ok(())).unwrap();
        write_n(&wal, 12);
        drop(wal);
        let segs = list_segments(dir.path()).unwrap();
        fs::remove_file(&segs[0].1).unwrap();
        assert!(matches!(
            read_from(dir.path(), 0, None, |_| Ok(true)),
            Err(StorageError::Corruption { .. })
        ));
        assert!(matches!(
            Wal::open(dir.path(), opts.clone(), 0, |_| Ok(())),
            Err(StorageError::Corruption { .. })
        ));
        // Past the missing records, both read.
        let after = segs[1].0 - 1;
        read_from(dir.path(), after, None, |_| Ok(true)).unwrap();
        Wal::open(dir.path(), opts, after, |_| Ok(())).unwrap();
    }

    #[test]
    fn sealed_records_read_back_only_with_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = |k: u8| WalOptions {
            cipher: Some(Arc::new(Cipher::new(&[k; 32]))),
            ..Default::default()
        };
        let wal = Wal::open(dir.path(), key(1), 0, |_| Ok(())).unwrap();
        write_n(&wal, 5);
        drop(wal);
        let (_, seg) = list_segments(dir.path()).unwrap().pop().unwrap();
        let bytes = fs::read(&seg).unwrap();
        assert!(
            !bytes.windows(9).any(|w| w == b"payload-3"),
            "sealed on disk"
        );
        let mut seen = Vec::new();
        let wal = Wal::open(dir.path(), key(1), 0, |r| {
            seen.push(r.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen[3].payload, b"payload-3");
        assert_eq!(seen[3].kind, 1, "the sealed bit is not the caller's");
        drop(wal);
        for opts in [WalOptions::default(), key(2)] {
            assert!(matches!(
                Wal::open(dir.path(), opts, 0, |_| Ok(())),
                Err(StorageError::Encryption { offset: 0, .. })
            ));
        }
        let c = Cipher::new(&[1; 32]);
        let mut n = 0;
        read_from(dir.path(), 2, Some(&c), |r| {
            assert_eq!(r.payload, format!("payload-{}", r.lsn - 1).as_bytes());
            n += 1;
            Ok(true)
        })
        .unwrap();
        assert_eq!(n, 3);
    }

    #[test]
    fn a_log_is_sealed_throughout_or_not_at_all() {
        let key = || WalOptions {
            cipher: Some(Arc::new(Cipher::new(&[5; 32]))),
            ..Default::default()
        };
        // A plaintext log is not silently continued under a key.
        let plain = tempfile::tempdir().unwrap();
        let wal = Wal::open(plain.path(), WalOptions::default(), 0, |_| Ok(())).unwrap();
        write_n(&wal, 2);
        drop(wal);
        assert!(matches!(
            Wal::open(plain.path(), key(), 0, |_| Ok(())),
            Err(StorageError::Encryption { .. })
        ));
        // An unsealed record slipped into a sealed log is refused.
        let sealed = tempfile::tempdir().unwrap();
        let wal = Wal::open(sealed.path(), key(), 0, |_| Ok(())).unwrap();
        write_n(&wal, 2);
        drop(wal);
        let (_, seg) = list_segments(sealed.path()).unwrap().pop().unwrap();
        let mut forged = Vec::new();
        Record {
            lsn: 3,
            txid: 0,
            ts: 0,
            kind: 1,
            payload: b"forged".to_vec(),
        }
        .encode_into(&mut forged);
        write_after_records(&seg, &forged);
        match Wal::open(sealed.path(), key(), 0, |_| Ok(())) {
            Err(StorageError::Encryption { reason, .. }) => assert!(reason.contains("mixes")),
            other => panic!("expected a refusal, got {:?}", other.map(|w| w.last_lsn())),
        }
        let c = Cipher::new(&[5; 32]);
        assert!(read_from(sealed.path(), 0, Some(&c), |_| Ok(true)).is_err());
    }

    #[test]
    fn flipped_byte_mid_log_names_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = open(dir.path(), 0).unwrap();
        write_n(&wal, 10);
        drop(wal);
        let (_, path) = list_segments(dir.path()).unwrap().pop().unwrap();
        let mut bytes = fs::read(&path).unwrap();
        let mut rec = Vec::new();
        Record {
            lsn: 1,
            txid: 0,
            ts: 0,
            kind: 1,
            payload: b"payload-0".to_vec(),
        }
        .encode_into(&mut rec);
        let record_len = rec.len();
        // Damage the payload of the fourth record.
        let offset = 3 * record_len;
        bytes[offset + HEADER + 2] ^= 0x5A;
        fs::write(&path, &bytes).unwrap();
        match open(dir.path(), 0) {
            Err(StorageError::Corruption {
                file, offset: at, ..
            }) => {
                assert_eq!(file, path);
                assert_eq!(at, offset as u64);
            }
            other => panic!("expected corruption, got {:?}", other.map(|(_, s)| s.len())),
        }
    }

    #[test]
    fn damaged_length_mid_log_is_corruption_not_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = open(dir.path(), 0).unwrap();
        write_n(&wal, 10);
        drop(wal);
        let (_, path) = list_segments(dir.path()).unwrap().pop().unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes[2] = 0x7F; // first record's length now points far past the end
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            open(dir.path(), 0),
            Err(StorageError::Corruption { offset: 0, .. })
        ));
    }

    #[test]
    fn one_fsync_covers_every_record_appended_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = open(dir.path(), 0).unwrap();
        let lsns: Vec<Lsn> = (0..10)
            .map(|i| wal.append(i, i, 1, b"x").unwrap())
            .collect();
        wal.wait_durable(lsns[9]).unwrap();
        assert_eq!(wal.sync_count(), 1);
        for lsn in lsns {
            wal.wait_durable(lsn).unwrap();
        }
        assert_eq!(
            wal.sync_count(),
            1,
            "earlier records needed no further fsync"
        );
        assert_eq!(wal.durable_lsn(), 10);
    }

    #[test]
    fn batch_and_off_modes_keep_records() {
        for sync in [SyncMode::Batch, SyncMode::Off] {
            let dir = tempfile::tempdir().unwrap();
            let opts = WalOptions {
                sync,
                ..Default::default()
            };
            let wal = Wal::open(dir.path(), opts.clone(), 0, |_| Ok(())).unwrap();
            write_n(&wal, 5);
            if sync == SyncMode::Off {
                assert_eq!(wal.sync_count(), 0);
            }
            drop(wal);
            let mut n = 0;
            Wal::open(dir.path(), opts, 0, |_| {
                n += 1;
                Ok(())
            })
            .unwrap();
            assert_eq!(n, 5, "{sync:?}");
        }
    }

    #[test]
    fn concurrent_committers_share_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = open(dir.path(), 0).unwrap();
        let wal = Arc::new(wal);
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let wal = wal.clone();
                std::thread::spawn(move || {
                    for i in 0..50u64 {
                        let lsn = wal.append(t, i, 1, &[t as u8; 16]).unwrap();
                        wal.wait_durable(lsn).unwrap();
                        assert!(wal.durable_lsn() >= lsn);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(wal.last_lsn(), 400);
        assert!(wal.sync_count() <= 400);
        drop(wal);
        assert_eq!(open(dir.path(), 0).unwrap().1.len(), 400);
    }
}
