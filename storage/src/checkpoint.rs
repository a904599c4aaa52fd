//! Checkpoints: a consistent cut of every shard, written in our own format
//! (never sled's files), so restore and point-in-time recovery depend only on
//! this module and the WAL.
//!
//! **Layout.** A checkpoint is a directory holding `MANIFEST` (the cut: the
//! snapshot timestamp, each shard's WAL position, the catalog, the ring
//! layout) and `shard-NNN/t<id>.rows` per table: the versions visible at the
//! snapshot, in key order.
//!
//! **Block files.** Every file is `"FORTCKP1" | flags:u8` followed by blocks
//! `raw_len:u32 | stored_len:u32 | crc32:u32 | stored`, little-endian, where
//! `stored` is the zstd-compressed entries and the CRC covers the three
//! header fields' data and `stored`. Entries are
//! `key_len:u32 | key | value_len:u32 | value`. The last block has
//! `raw_len` 0 and stores the entry count, so a cut-off file is caught too.
//! With encryption at rest, flag 2 says each block's compressed bytes are
//! sealed with AES-256-GCM (see [`crate::cipher`]), bound to `raw_len`.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cipher::Cipher;
use crate::error::{Result, StorageError};
use crate::schema::{Catalog, TableId};
use crate::wal::Lsn;
use crate::ShardId;

const MAGIC: &[u8; 8] = b"FORTCKP1";
const FLAG_ZSTD: u8 = 1;
/// Blocks are sealed with AES-256-GCM after compression.
const FLAG_SEALED: u8 = 2;
const BLOCK_HEADER: usize = 12;
/// Raw bytes gathered before a block is compressed and written.
const BLOCK_RAW: usize = 1 << 20;
/// Upper bound on one block, raw or stored; anything larger is corruption.
const MAX_BLOCK: usize = 64 << 20;
const ZSTD_LEVEL: i32 = 3;
/// Version of the manifest and file format.
pub const FORMAT: u32 = 1;
/// Name of the manifest file in a checkpoint directory.
pub const MANIFEST: &str = "MANIFEST";

fn corrupt(file: &Path, offset: u64, reason: impl Into<String>) -> StorageError {
    StorageError::Corruption {
        file: file.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

/// Writes one block file.
pub struct BlockWriter {
    out: BufWriter<File>,
    cipher: Option<Arc<Cipher>>,
    /// The file's name in its checkpoint, which sealed blocks are bound to.
    label: String,
    blocks: u64,
    path: PathBuf,
    raw: Vec<u8>,
    entries: u64,
    bytes: u64,
    raw_bytes: u64,
}

/// What a finished block file holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileSummary {
    pub entries: u64,
    pub bytes: u64,
    /// Bytes of the entries before compression.
    pub raw_bytes: u64,
    /// Whether the blocks are sealed (encrypted).
    pub sealed: bool,
}

/// What a sealed block is bound to: its file, its place in it and its
/// length, so blocks cannot be dropped, reordered or moved between files.
fn block_aad(label: &str, index: u64, raw_len: usize) -> Vec<u8> {
    let mut aad = label.as_bytes().to_vec();
    aad.push(0);
    aad.extend_from_slice(&index.to_le_bytes());
    aad.extend_from_slice(&(raw_len as u32).to_le_bytes());
    aad
}

impl BlockWriter {
    /// Creates `path`, known in its checkpoint as `label`; blocks are
    /// sealed when a cipher is given.
    pub fn create(path: &Path, label: &str, cipher: Option<Arc<Cipher>>) -> Result<BlockWriter> {
        let file = File::create(path).map_err(|e| StorageError::io(path, e))?;
        let mut out = BufWriter::with_capacity(1 << 16, file);
        let flags = if cipher.is_some() {
            FLAG_ZSTD | FLAG_SEALED
        } else {
            FLAG_ZSTD
        };
        out.write_all(MAGIC)
            .and_then(|_| out.write_all(&[flags]))
            .map_err(|e| StorageError::io(path, e))?;
        Ok(BlockWriter {
            out,
            cipher,
            label: label.to_string(),
            blocks: 0,
            path: path.to_path_buf(),
            raw: Vec::with_capacity(BLOCK_RAW + 4096),
            entries: 0,
            bytes: MAGIC.len() as u64 + 1,
            raw_bytes: 0,
        })
    }

    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.raw
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.raw.extend_from_slice(key);
        self.raw
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.raw.extend_from_slice(value);
        self.entries += 1;
        if self.raw.len() >= BLOCK_RAW {
            self.flush_block()?;
        }
        Ok(())
    }

    fn write_block(&mut self, raw_len: usize, stored: &[u8]) -> Result<()> {
        let sealed;
        let stored = match &self.cipher {
            Some(c) => {
                sealed = c.seal(stored, &block_aad(&self.label, self.blocks, raw_len));
                &sealed
            }
            None => stored,
        };
        self.blocks += 1;
        let mut header = [0u8; BLOCK_HEADER];
        header[0..4].copy_from_slice(&(raw_len as u32).to_le_bytes());
        header[4..8].copy_from_slice(&(stored.len() as u32).to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header[0..8]);
        crc.update(stored);
        header[8..12].copy_from_slice(&crc.finalize().to_le_bytes());
        self.out
            .write_all(&header)
            .and_then(|_| self.out.write_all(stored))
            .map_err(|e| StorageError::io(&self.path, e))?;
        self.bytes += (BLOCK_HEADER + stored.len()) as u64;
        Ok(())
    }

    fn flush_block(&mut self) -> Result<()> {
        if self.raw.is_empty() {
            return Ok(());
        }
        let stored = zstd::bulk::compress(&self.raw, ZSTD_LEVEL)
            .map_err(|e| StorageError::io(&self.path, e))?;
        let raw_len = self.raw.len();
        self.write_block(raw_len, &stored)?;
        self.raw_bytes += raw_len as u64;
        self.raw.clear();
        Ok(())
    }

    /// Writes the end block and makes the file durable.
    pub fn finish(mut self) -> Result<FileSummary> {
        self.flush_block()?;
        let count = self.entries.to_le_bytes();
        self.write_block(0, &count)?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| StorageError::io(&self.path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| StorageError::io(&self.path, e))?;
        Ok(FileSummary {
            entries: self.entries,
            bytes: self.bytes,
            raw_bytes: self.raw_bytes,
            sealed: self.cipher.is_some(),
        })
    }
}

/// Reads a block file, checking every block, and hands each entry to
/// `visit`. Any damage is [`StorageError::Corruption`] naming the file and
/// the offset of the bad block; a sealed file needs the key it was written
/// with ([`StorageError::Encryption`] otherwise).
pub fn read_file(
    path: &Path,
    label: &str,
    cipher: Option<&Cipher>,
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<()>,
) -> Result<FileSummary> {
    let file = File::open(path).map_err(|e| StorageError::io(path, e))?;
    let mut input = BufReader::with_capacity(1 << 16, file);
    let mut head = [0u8; 9];
    if input.read_exact(&mut head).is_err() || &head[..8] != MAGIC {
        return Err(corrupt(path, 0, "not a fortress checkpoint file"));
    }
    let sealed = match head[8] {
        FLAG_ZSTD => false,
        f if f == FLAG_ZSTD | FLAG_SEALED => true,
        f => return Err(corrupt(path, 8, format!("unknown file flags {f:#x}"))),
    };
    let encryption = |offset: u64, reason: String| StorageError::Encryption {
        file: path.to_path_buf(),
        offset,
        reason,
    };
    let cipher = match (sealed, cipher) {
        (true, None) => {
            return Err(encryption(
                8,
                "the checkpoint is encrypted and no key was given (FORTRESS_KEY or --key-file)"
                    .into(),
            ))
        }
        (true, Some(c)) => Some(c),
        (false, _) => None,
    };
    let mut offset = head.len() as u64;
    let mut summary = FileSummary {
        sealed,
        ..FileSummary::default()
    };
    let mut stored = Vec::new();
    let mut index = 0u64;
    loop {
        let mut header = [0u8; BLOCK_HEADER];
        input
            .read_exact(&mut header)
            .map_err(|_| corrupt(path, offset, "file ends before its end block"))?;
        let raw_len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        let stored_len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        if raw_len > MAX_BLOCK || stored_len > MAX_BLOCK {
            return Err(corrupt(path, offset, "block length out of bounds"));
        }
        stored.resize(stored_len, 0);
        input
            .read_exact(&mut stored)
            .map_err(|_| corrupt(path, offset, "block cut off"))?;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&header[0..8]);
        hasher.update(&stored);
        if hasher.finalize() != crc {
            return Err(corrupt(path, offset, "block checksum mismatch"));
        }
        summary.bytes = offset + (BLOCK_HEADER + stored_len) as u64;
        let opened;
        let content = match cipher {
            Some(c) => {
                opened = c
                    .open(&stored, &block_aad(label, index, raw_len))
                    .ok_or_else(|| {
                        encryption(
                            offset,
                            format!(
                                "cannot decrypt with key {}: it is not the key the checkpoint was written with, or the block was moved",
                                c.id()
                            ),
                        )
                    })?;
                &opened
            }
            None => &stored,
        };
        index += 1;
        if raw_len == 0 {
            let count = content
                .as_slice()
                .try_into()
                .map(u64::from_le_bytes)
                .map_err(|_| corrupt(path, offset, "bad end block"))?;
            if count != summary.entries {
                return Err(corrupt(
                    path,
                    offset,
                    format!("{} entries where {count} were written", summary.entries),
                ));
            }
            let mut rest = [0u8; 1];
            if input
                .read(&mut rest)
                .map_err(|e| StorageError::io(path, e))?
                != 0
            {
                return Err(corrupt(path, summary.bytes, "data after the end block"));
            }
            return Ok(summary);
        }
        let raw = zstd::bulk::decompress(content, raw_len)
            .map_err(|e| corrupt(path, offset, format!("block does not decompress: {e}")))?;
        if raw.len() != raw_len {
            return Err(corrupt(
                path,
                offset,
                "block decompresses to the wrong length",
            ));
        }
        summary.raw_bytes += raw_len as u64;
        let mut pos = 0usize;
        while pos < raw.len() {
            let (key, next) =
                take_field(&raw, pos).ok_or_else(|| corrupt(path, offset, "bad entry"))?;
            let (value, next) =
                take_field(&raw, next).ok_or_else(|| corrupt(path, offset, "bad entry"))?;
            visit(key, value)?;
            summary.entries += 1;
            pos = next;
        }
        offset = summary.bytes;
    }
}

/// The length-prefixed field at `pos` and the offset after it.
fn take_field(raw: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let len = u32::from_le_bytes(raw.get(pos..pos + 4)?.try_into().ok()?) as usize;
    let start = pos + 4;
    let end = start.checked_add(len)?;
    Some((raw.get(start..end)?, end))
}

/// The ring a checkpoint's rows were placed by.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingLayout {
    pub shards: u32,
    pub vnodes: usize,
    pub version: u32,
}

/// One table's rows on one shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableFile {
    pub table: TableId,
    pub name: String,
    /// Path relative to the checkpoint directory.
    pub file: String,
    pub rows: u64,
    pub bytes: u64,
    pub raw_bytes: u64,
}

/// Where a shard's log stands relative to the cut.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardCut {
    pub shard: ShardId,
    /// Every record at or below this LSN is in the checkpoint: replay for
    /// point-in-time recovery starts after it.
    pub wal_after: Lsn,
    /// No record above this LSN is in the checkpoint.
    pub wal_through: Lsn,
    pub tables: Vec<TableFile>,
    /// Multi-master: the stamps of versions peers wrote and the siblings
    /// of concurrent versions (see `crate::conflict`), as stored (`name`
    /// `stamps` or `siblings`; `table` unused). Absent without peers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peer_files: Vec<TableFile>,
}

impl ShardCut {
    /// Every file of this shard's part: its tables', then its peer files.
    pub fn files(&self) -> impl Iterator<Item = &TableFile> {
        self.tables.iter().chain(&self.peer_files)
    }
}

/// The description of a checkpoint, stored in its `MANIFEST`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    /// Id of the data directory the checkpoint was taken of: its log is the
    /// one that continues it.
    pub cluster: String,
    /// Wall time of the snapshot, RFC 3339.
    pub created: String,
    /// Hybrid-clock timestamp of the cut: every transaction committed at or
    /// before it is in the checkpoint, none after.
    pub snapshot: u64,
    pub ring: RingLayout,
    pub shards: Vec<ShardCut>,
    #[serde(skip)]
    pub catalog: Catalog,
    /// Whether the checkpoint is encrypted (read from its files, not stored).
    #[serde(skip)]
    pub sealed: bool,
}

impl Manifest {
    /// Rows over all shards.
    pub fn rows(&self) -> u64 {
        self.shards
            .iter()
            .flat_map(|s| &s.tables)
            .map(|t| t.rows)
            .sum()
    }

    /// Bytes of all row files (compressed) and before compression.
    pub fn sizes(&self) -> (u64, u64) {
        self.shards
            .iter()
            .flat_map(|s| &s.tables)
            .fold((0, 0), |(b, r), t| (b + t.bytes, r + t.raw_bytes))
    }

    /// Writes the manifest into `dir` (durably).
    pub fn write(&self, dir: &Path, cipher: Option<Arc<Cipher>>) -> Result<()> {
        let path = dir.join(MANIFEST);
        let json =
            serde_json::to_vec_pretty(self).map_err(|e| StorageError::Codec(e.to_string()))?;
        let catalog =
            postcard::to_stdvec(&self.catalog).map_err(|e| StorageError::Codec(e.to_string()))?;
        let mut w = BlockWriter::create(&path, MANIFEST, cipher)?;
        w.push(b"manifest", &json)?;
        w.push(b"catalog", &catalog)?;
        w.finish()?;
        Ok(())
    }

    /// Reads and checks the manifest of the checkpoint in `dir`.
    pub fn read(dir: &Path, cipher: Option<&Cipher>) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let (mut json, mut catalog) = (None, None);
        let file = read_file(&path, MANIFEST, cipher, |k, v| {
            match k {
                b"manifest" => json = Some(v.to_vec()),
                b"catalog" => catalog = Some(v.to_vec()),
                _ => {}
            }
            Ok(())
        })?;
        let (Some(json), Some(catalog)) = (json, catalog) else {
            return Err(corrupt(&path, 0, "manifest or catalog missing"));
        };
        let mut m: Manifest =
            serde_json::from_slice(&json).map_err(|e| corrupt(&path, 0, e.to_string()))?;
        m.catalog = postcard::from_bytes(&catalog).map_err(|e| corrupt(&path, 0, e.to_string()))?;
        m.sealed = file.sealed;
        if m.format != FORMAT {
            return Err(corrupt(
                &path,
                0,
                format!("unknown checkpoint format {}", m.format),
            ));
        }
        Ok(m)
    }
}

/// Re-reads every file of the checkpoint in `dir`, checking every block and
/// that each file holds the rows the manifest says. Returns the manifest.
pub fn verify(dir: &Path, cipher: Option<&Cipher>) -> Result<Manifest> {
    let m = Manifest::read(dir, cipher)?;
    for cut in &m.shards {
        for t in cut.files() {
            let got = read_file(&dir.join(&t.file), &t.file, cipher, |_, _| Ok(()))?;
            m.check_file(dir, t, &got)?;
        }
    }
    Ok(m)
}

impl Manifest {
    /// Checks a file read whole against what the manifest says of it: its
    /// rows, its size and whether it is sealed like the manifest.
    pub fn check_file(&self, dir: &Path, t: &TableFile, got: &FileSummary) -> Result<()> {
        let path = dir.join(&t.file);
        if got.sealed != self.sealed {
            return Err(StorageError::Encryption {
                file: path,
                offset: 8,
                reason: "the file is not encrypted like its manifest".into(),
            });
        }
        if got.entries != t.rows || got.bytes != t.bytes {
            return Err(corrupt(
                &path,
                got.bytes,
                format!(
                    "{} rows in {} bytes where the manifest says {} rows in {} bytes",
                    got.entries, got.bytes, t.rows, t.bytes
                ),
            ));
        }
        Ok(())
    }
}

/// The checkpoints under `root`, oldest first; directories being written
/// (`*.tmp`) are skipped, unreadable manifests are reported as errors.
pub fn list(root: &Path, cipher: Option<&Cipher>) -> Result<Vec<(PathBuf, Result<Manifest>)>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(StorageError::io(root, e)),
    };
    for entry in rd {
        let entry = entry.map_err(|e| StorageError::io(root, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !path.is_dir() || name.ends_with(".tmp") {
            continue;
        }
        out.push((path.clone(), Manifest::read(&path, cipher)));
    }
    out.sort_by_key(|(p, m)| (m.as_ref().map(|m| m.snapshot).unwrap_or(0), p.clone()));
    Ok(out)
}

/// Syncs a directory so the names in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, n: u32) -> FileSummary {
        let mut w = BlockWriter::create(path, "f.rows", None).unwrap();
        for i in 0..n {
            w.push(
                &i.to_be_bytes(),
                format!("value {i} {}", "x".repeat(40)).as_bytes(),
            )
            .unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn entries_round_trip_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.rows");
        let written = write(&path, 40_000);
        let mut seen = Vec::new();
        let read = read_file(&path, "f.rows", None, |k, v| {
            seen.push((k.to_vec(), v.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!(read.entries, 40_000);
        assert_eq!(read.bytes, written.bytes);
        assert_eq!(read.bytes, fs::metadata(&path).unwrap().len());
        assert!(read.raw_bytes > 2 * BLOCK_RAW as u64, "several blocks");
        assert!(read.bytes < read.raw_bytes / 4, "zstd compresses");
        assert_eq!(seen[123].0, 123u32.to_be_bytes());
    }

    #[test]
    fn a_flipped_byte_names_the_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.rows");
        write(&path, 40_000);
        let mut bytes = fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        match read_file(&path, "f.rows", None, |_, _| Ok(())) {
            Err(StorageError::Corruption { file, offset, .. }) => {
                assert_eq!(file, path);
                assert!(offset <= at as u64 && offset > 0, "{offset} vs {at}");
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn a_cut_off_file_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.rows");
        let s = write(&path, 100);
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..s.bytes as usize - 20]).unwrap();
        assert!(matches!(
            read_file(&path, "f.rows", None, |_, _| Ok(())),
            Err(StorageError::Corruption { .. })
        ));
    }

    #[test]
    fn manifest_round_trips_with_its_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog {
            version: 7,
            ..Default::default()
        };
        let m = Manifest {
            format: FORMAT,
            id: "x".into(),
            cluster: "c".into(),
            created: "2026-01-01T00:00:00Z".into(),
            snapshot: 42,
            ring: RingLayout {
                shards: 2,
                vnodes: 10,
                version: 1,
            },
            shards: vec![ShardCut {
                shard: 0,
                wal_after: 3,
                wal_through: 5,
                peer_files: Vec::new(),
                tables: vec![],
            }],
            catalog,
            sealed: false,
        };
        m.write(dir.path(), None).unwrap();
        assert_eq!(Manifest::read(dir.path(), None).unwrap(), m);
        assert_eq!(verify(dir.path(), None).unwrap().snapshot, 42);
    }

    #[test]
    fn sealed_files_need_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.rows");
        let key = Arc::new(Cipher::new(&[3; 32]));
        let mut w = BlockWriter::create(&path, "f.rows", Some(key.clone())).unwrap();
        for i in 0..1000u32 {
            w.push(&i.to_be_bytes(), b"secret row").unwrap();
        }
        w.finish().unwrap();
        let bytes = fs::read(&path).unwrap();
        assert!(!bytes.windows(10).any(|w| w == b"secret row"));
        let n = read_file(&path, "f.rows", Some(&key), |_, v| {
            assert_eq!(v, b"secret row");
            Ok(())
        })
        .unwrap();
        assert_eq!(n.entries, 1000);
        assert!(matches!(
            read_file(&path, "f.rows", None, |_, _| Ok(())),
            Err(StorageError::Encryption { .. })
        ));
        let other = Cipher::new(&[4; 32]);
        match read_file(&path, "f.rows", Some(&other), |_, _| Ok(())) {
            Err(StorageError::Encryption { reason, .. }) => {
                assert!(reason.contains("not the key"), "{reason}")
            }
            other => panic!("expected a key error, got {other:?}"),
        }
    }
}
