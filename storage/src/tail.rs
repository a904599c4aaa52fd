//! Reading a live log as it grows, for shipping it elsewhere (archives,
//! standbys).
//!
//! A [`Tail`] keeps its place in the log (segment file and offset) between
//! reads, so each read costs only the bytes it returns, where
//! [`crate::wal::read_from`] reads whole segments. It hands out records
//! exactly as encoded in the segment (sealed payloads stay sealed, each
//! record's CRC is checked on the way), so what is shipped is byte for byte
//! what the log holds.
//!
//! The caller bounds each read by an LSN the writer has made durable
//! ([`crate::wal::Wal::shippable_lsn`]): every record up to it is whole in
//! the files, so anything that does not decode below it is damage, reported
//! with the file and offset, never skipped.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};
use crate::wal::{decode, list_segments, segment_name, Decoded, Lsn, HEADER, MAX_PAYLOAD, TRAILER};

/// Bytes read from a segment at a time.
const WINDOW: usize = 256 << 10;

/// Consecutive records read by [`Tail::read`], as encoded in the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chunk {
    pub first: Lsn,
    pub last: Lsn,
    pub bytes: Vec<u8>,
}

struct Open {
    file: File,
    path: PathBuf,
    /// Offset of record `Tail::next` in the file.
    offset: u64,
    /// Bytes of the file read at `start`, valid for one [`Tail::read`].
    window: Vec<u8>,
    start: u64,
}

impl Open {
    fn new(path: PathBuf) -> Result<Open> {
        let file = File::open(&path).map_err(|e| StorageError::io(&path, e))?;
        Ok(Open {
            file,
            path,
            offset: 0,
            window: Vec::new(),
            start: 0,
        })
    }

    /// Up to `n` bytes at `offset`, fewer at the end of the file.
    fn bytes_at(&mut self, offset: u64, n: usize) -> Result<&[u8]> {
        let end = offset + n as u64;
        if offset < self.start || end > self.start + self.window.len() as u64 {
            self.window.resize(n.max(WINDOW), 0);
            let mut got = 0;
            while got < self.window.len() {
                match self
                    .file
                    .read_at(&mut self.window[got..], offset + got as u64)
                {
                    Ok(0) => break,
                    Ok(k) => got += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(StorageError::io(&self.path, e)),
                }
            }
            self.window.truncate(got);
            self.start = offset;
        }
        let lo = (offset - self.start) as usize;
        let hi = (lo + n).min(self.window.len());
        Ok(&self.window[lo..hi])
    }
}

/// A reader that follows one log from a position.
pub struct Tail {
    dir: PathBuf,
    /// LSN of the next record to read.
    next: Lsn,
    at: Option<Open>,
}

impl Tail {
    /// A reader of the log in `dir` whose first record will be `after + 1`.
    pub fn new(dir: &Path, after: Lsn) -> Tail {
        Tail {
            dir: dir.to_path_buf(),
            next: after + 1,
            at: None,
        }
    }

    /// LSN of the next record [`Tail::read`] returns.
    pub fn next_lsn(&self) -> Lsn {
        self.next
    }

    /// Opens the segment holding record `next` and finds its offset by
    /// walking the record headers before it.
    fn seek(&mut self) -> Result<()> {
        let segs = list_segments(&self.dir)?;
        let Some(i) = segs.iter().rposition(|(first, _)| *first <= self.next) else {
            return Err(match segs.first() {
                Some((first, _)) => StorageError::Recycled {
                    dir: self.dir.clone(),
                    starts: *first,
                    wanted: self.next,
                },
                None => StorageError::Corruption {
                    file: self.dir.clone(),
                    offset: 0,
                    reason: "the log has no segments".into(),
                },
            });
        };
        let (mut lsn, path) = segs[i].clone();
        let mut open = Open::new(path)?;
        while lsn < self.next {
            let header = open.bytes_at(open.offset, HEADER)?;
            if header.len() < HEADER {
                return Err(StorageError::Corruption {
                    file: open.path.clone(),
                    offset: open.offset,
                    reason: format!("the segment ends before LSN {}", self.next),
                });
            }
            let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
            let at = u64::from_le_bytes(header[4..12].try_into().expect("8 bytes"));
            if at != lsn || len > MAX_PAYLOAD {
                return Err(StorageError::Corruption {
                    file: open.path.clone(),
                    offset: open.offset,
                    reason: format!("expected the header of LSN {lsn}"),
                });
            }
            open.offset += (HEADER + len + TRAILER) as u64;
            lsn += 1;
        }
        self.at = Some(open);
        Ok(())
    }

    /// The records from the next one through `upto` (a shippable LSN),
    /// stopping once about `max_bytes` are gathered (at least one record
    /// when any is due). `None` when none is due.
    pub fn read(&mut self, upto: Lsn, max_bytes: usize) -> Result<Option<Chunk>> {
        let mut chunk = Chunk {
            first: self.next,
            ..Chunk::default()
        };
        if let Some(open) = &mut self.at {
            // Bytes read earlier may predate records written since.
            open.window.clear();
        }
        while self.next <= upto && chunk.bytes.len() < max_bytes {
            if self.at.is_none() {
                self.seek()?;
            }
            let open = self.at.as_mut().expect("a segment is open");
            let offset = open.offset;
            let header = open.bytes_at(offset, HEADER)?;
            let ended = header.len() < HEADER || header.iter().all(|&b| b == 0);
            if ended {
                // The segment was trimmed at rotation; the next one starts
                // with this record.
                let path = self.dir.join(segment_name(self.next));
                if !path.exists() {
                    return Err(StorageError::Corruption {
                        file: open.path.clone(),
                        offset,
                        reason: format!(
                            "LSN {} is durable but neither this segment nor a next one holds it",
                            self.next
                        ),
                    });
                }
                self.at = Some(Open::new(path)?);
                continue;
            }
            let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
            let total = HEADER + len.min(MAX_PAYLOAD + 1) + TRAILER;
            let path = open.path.clone();
            let bytes = open.bytes_at(offset, total)?;
            let corrupt = |reason: String| StorageError::Corruption {
                file: path.clone(),
                offset,
                reason,
            };
            match decode(bytes) {
                Decoded::Record(rec, n) if rec.lsn == self.next => {
                    chunk.bytes.extend_from_slice(&bytes[..n]);
                    chunk.last = rec.lsn;
                    self.next += 1;
                    open.offset += n as u64;
                }
                Decoded::Record(rec, _) => {
                    return Err(corrupt(format!(
                        "LSN {} where {} was expected",
                        rec.lsn, self.next
                    )))
                }
                Decoded::Incomplete => {
                    return Err(corrupt(format!("durable record {} is cut off", self.next)))
                }
                Decoded::Bad(reason) => return Err(corrupt(reason)),
            }
        }
        // `last` is 0 until a record is read (LSNs start at 1).
        Ok((chunk.last != 0).then_some(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::{Record, Wal, WalOptions};

    fn wal(dir: &Path, segment_bytes: u64) -> Wal {
        let opts = WalOptions {
            segment_bytes,
            ..WalOptions::default()
        };
        Wal::open(dir, opts, 0, |_| Ok(())).unwrap()
    }

    fn append(w: &Wal, n: u64) {
        for i in 0..n {
            let lsn = w.append(i, 100 + i, 1, &[i as u8; 50]).unwrap();
            w.wait_durable(lsn).unwrap();
        }
    }

    fn records(chunk: &Chunk) -> Vec<Record> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < chunk.bytes.len() {
            match decode(&chunk.bytes[pos..]) {
                Decoded::Record(r, n) => {
                    out.push(r);
                    pos += n;
                }
                other => panic!("{other:?}"),
            }
        }
        out
    }

    #[test]
    fn follows_the_log_across_rotations_without_rereading() {
        let dir = tempfile::tempdir().unwrap();
        let w = wal(dir.path(), 1000);
        let mut tail = Tail::new(dir.path(), 0);
        assert_eq!(tail.read(w.shippable_lsn(), 1 << 20).unwrap(), None);
        append(&w, 30);
        assert!(list_segments(dir.path()).unwrap().len() > 2);
        let first = tail.read(w.shippable_lsn(), 1 << 20).unwrap().unwrap();
        assert_eq!((first.first, first.last), (1, 30));
        assert_eq!(records(&first).len(), 30);
        append(&w, 5);
        // Only up to the bound given.
        let next = tail.read(33, 1 << 20).unwrap().unwrap();
        assert_eq!((next.first, next.last), (31, 33));
        let rest = tail.read(w.shippable_lsn(), 1 << 20).unwrap().unwrap();
        assert_eq!((rest.first, rest.last), (34, 35));
        assert_eq!(tail.read(w.shippable_lsn(), 1 << 20).unwrap(), None);
    }

    #[test]
    fn starts_mid_segment_and_splits_at_the_byte_bound() {
        let dir = tempfile::tempdir().unwrap();
        let w = wal(dir.path(), 1 << 20);
        append(&w, 20);
        let mut tail = Tail::new(dir.path(), 7);
        let a = tail.read(20, 200).unwrap().unwrap();
        assert_eq!(a.first, 8);
        assert!(a.last < 20, "stopped at the byte bound: {a:?}");
        let b = tail.read(20, 1 << 20).unwrap().unwrap();
        assert_eq!((b.first, b.last), (a.last + 1, 20));
        let mut whole = records(&a);
        whole.extend(records(&b));
        assert_eq!(
            whole.iter().map(|r| r.lsn).collect::<Vec<_>>(),
            (8..=20).collect::<Vec<_>>()
        );
    }

    #[test]
    fn damage_is_reported_and_recycled_records_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let w = wal(dir.path(), 1 << 20);
        append(&w, 5);
        let (_, seg) = list_segments(dir.path()).unwrap().remove(0);
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&[0xff], 40).unwrap();
        let err = Tail::new(dir.path(), 0).read(5, 1 << 20).unwrap_err();
        assert!(matches!(err, StorageError::Corruption { .. }), "{err}");
        drop(w);

        let dir = tempfile::tempdir().unwrap();
        let w = wal(dir.path(), 200);
        append(&w, 10);
        let segs = list_segments(dir.path()).unwrap();
        std::fs::remove_file(&segs[0].1).unwrap();
        let err = Tail::new(dir.path(), 0).read(10, 1 << 20).unwrap_err();
        assert!(
            matches!(err, StorageError::Recycled { starts, wanted: 1, .. } if starts > 1),
            "{err}"
        );
    }
}
