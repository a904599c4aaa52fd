//! Sorting with bounded memory: rows are sorted in memory up to a byte
//! budget, then written out as sorted runs to anonymous temporary files and
//! merged when read back, as PostgreSQL's external sort does past work_mem.
//! With a small LIMIT only the best rows are kept, so nothing spills.

use std::cmp::Ordering;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};
use crate::expr::{compare_keys, sort_values, SortKey};
use crate::value::{row_bytes, Row, Value};

/// Memory a shard's sort may use before it spills, unless configured.
pub const DEFAULT_SORT_BUDGET: usize = 16 << 20;

/// Runs kept open at once; past it they are merged into one (a multi-pass
/// merge), so a huge sort never runs out of file descriptors.
const MAX_RUNS: usize = 64;

type Keyed = (Vec<Value>, Row);

/// Memory a buffered row costs: its slot in the buffer, the key and row
/// vectors and what their values own.
fn keyed_size((k, r): &Keyed) -> usize {
    row_bytes(k) + row_bytes(r)
}

/// One sorted run on disk: length-prefixed postcard records.
struct Run {
    reader: BufReader<File>,
    head: Option<Keyed>,
}

impl Run {
    fn next(&mut self) -> Result<Option<Keyed>> {
        let mut len = [0u8; 4];
        match self.reader.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(io(e)),
        }
        let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
        self.reader.read_exact(&mut buf).map_err(io)?;
        postcard::from_bytes(&buf)
            .map(Some)
            .map_err(|e| StorageError::Codec(e.to_string()))
    }
}

fn io(e: std::io::Error) -> StorageError {
    StorageError::Io {
        path: PathBuf::from("<sort spill file>"),
        source: e,
    }
}

/// Collects rows, then hands them back in `keys` order.
pub struct Sorter<'a> {
    keys: &'a [SortKey],
    /// Keep only this many rows (LIMIT + OFFSET).
    limit: Option<usize>,
    budget: usize,
    spill_dir: PathBuf,
    buf: Vec<Keyed>,
    buf_bytes: usize,
    runs: Vec<Run>,
}

impl<'a> Sorter<'a> {
    pub fn new(keys: &'a [SortKey], limit: Option<u64>, budget: usize, spill_dir: &Path) -> Self {
        Sorter {
            keys,
            limit: limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
            budget: budget.max(1),
            spill_dir: spill_dir.to_path_buf(),
            buf: Vec::new(),
            buf_bytes: 0,
            runs: Vec::new(),
        }
    }

    /// Files written so far (for tests and metrics).
    pub fn spilled_runs(&self) -> usize {
        self.runs.len()
    }

    pub fn push(&mut self, row: Row) -> Result<()> {
        let keyed = (sort_values(self.keys, &row)?, row);
        self.buf_bytes += keyed_size(&keyed);
        self.buf.push(keyed);
        match self.limit {
            // A top-N sort keeps the best `limit` rows of twice as many.
            Some(l) if self.buf.len() >= l.saturating_mul(2).max(64) => {
                self.sort_buf();
                self.buf.truncate(l);
                self.buf_bytes = self.buf.iter().map(keyed_size).sum();
            }
            _ => {}
        }
        if self.buf_bytes > self.budget {
            self.spill()?;
        }
        Ok(())
    }

    fn sort_buf(&mut self) {
        let keys = self.keys;
        self.buf.sort_by(|a, b| compare_keys(keys, &a.0, &b.0));
    }

    /// Writes the buffer out as one sorted run.
    fn spill(&mut self) -> Result<()> {
        self.sort_buf();
        let keep = self.limit.unwrap_or(usize::MAX);
        let mut w = RunWriter::new(&self.spill_dir)?;
        for keyed in self.buf.drain(..).take(keep) {
            w.push(&keyed)?;
        }
        self.buf_bytes = 0;
        self.runs.push(w.finish()?);
        if self.runs.len() >= MAX_RUNS {
            let runs = std::mem::take(&mut self.runs);
            let mut w = RunWriter::new(&self.spill_dir)?;
            merge_runs(self.keys, runs, keep, |keyed| {
                w.push(&keyed)?;
                Ok(true)
            })?;
            self.runs.push(w.finish()?);
        }
        Ok(())
    }

    /// Calls `f` on each row in order (at most `limit`); `f` returns false
    /// to stop.
    pub fn finish(mut self, mut f: impl FnMut(Row) -> Result<bool>) -> Result<()> {
        self.sort_buf();
        let limit = self.limit.unwrap_or(usize::MAX);
        if self.runs.is_empty() {
            for (_, row) in self.buf.drain(..).take(limit) {
                if !f(row)? {
                    break;
                }
            }
            return Ok(());
        }
        if !self.buf.is_empty() {
            self.spill()?;
        }
        merge_runs(
            self.keys,
            std::mem::take(&mut self.runs),
            limit,
            |(_, row)| f(row),
        )
    }
}

/// Writes one sorted run to an anonymous temporary file.
struct RunWriter(BufWriter<File>);

impl RunWriter {
    fn new(dir: &Path) -> Result<RunWriter> {
        Ok(RunWriter(BufWriter::new(
            tempfile::tempfile_in(dir).map_err(io)?,
        )))
    }

    fn push(&mut self, keyed: &Keyed) -> Result<()> {
        let bytes = postcard::to_stdvec(keyed).map_err(|e| StorageError::Codec(e.to_string()))?;
        self.0
            .write_all(&(bytes.len() as u32).to_le_bytes())
            .map_err(io)?;
        self.0.write_all(&bytes).map_err(io)
    }

    fn finish(self) -> Result<Run> {
        let mut file = self.0.into_inner().map_err(|e| io(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        Ok(Run {
            reader: BufReader::new(file),
            head: None,
        })
    }
}

/// Calls `f` on the rows of sorted `runs` in order, at most `limit` of
/// them; `f` returns false to stop.
fn merge_runs(
    keys: &[SortKey],
    mut runs: Vec<Run>,
    limit: usize,
    mut f: impl FnMut(Keyed) -> Result<bool>,
) -> Result<()> {
    for run in &mut runs {
        run.head = run.next()?;
    }
    for _ in 0..limit {
        // Runs are few (at most MAX_RUNS): a linear pick of the least head.
        let mut best: Option<usize> = None;
        for (i, run) in runs.iter().enumerate() {
            let Some((k, _)) = &run.head else { continue };
            let better = match best {
                None => true,
                Some(b) => {
                    let bk = &runs[b].head.as_ref().expect("head").0;
                    compare_keys(keys, k, bk) == Ordering::Less
                }
            };
            if better {
                best = Some(i);
            }
        }
        let Some(b) = best else { break };
        let next = runs[b].next()?;
        let keyed = std::mem::replace(&mut runs[b].head, next).expect("head");
        if !f(keyed)? {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::Expr;

    fn sorted(rows: &[i64], limit: Option<u64>, budget: usize) -> (Vec<i64>, usize) {
        let keys = [SortKey {
            expr: Expr::Column(0),
            descending: false,
            nulls_first: false,
        }];
        let dir = tempfile::tempdir().unwrap();
        let mut s = Sorter::new(&keys, limit, budget, dir.path());
        for &r in rows {
            s.push(vec![Value::Int8(r), Value::Text(format!("row {r}"))])
                .unwrap();
        }
        let runs = s.spilled_runs();
        let mut out = Vec::new();
        s.finish(|row| {
            out.push(row[0].as_i64().unwrap());
            Ok(true)
        })
        .unwrap();
        (out, runs)
    }

    fn shuffled(n: i64) -> Vec<i64> {
        (0..n).map(|i| (i * 7919) % n).collect()
    }

    #[test]
    fn spills_past_the_budget_and_merges_in_order() {
        let rows = shuffled(10_000);
        let (out, runs) = sorted(&rows, None, 64 << 10);
        assert!(
            runs > 3,
            "a 64 KiB budget must spill 10,000 rows: {runs} runs"
        );
        assert_eq!(out, (0..10_000).collect::<Vec<_>>());
    }

    #[test]
    fn many_runs_are_merged_into_fewer_files() {
        // About 14 rows per run: some 400 runs, merged down as they come.
        let rows = shuffled(6_000);
        let (out, runs) = sorted(&rows, None, 2 << 10);
        assert!(runs <= MAX_RUNS, "{runs} runs open");
        assert_eq!(out, (0..6_000).collect::<Vec<_>>());
    }

    #[test]
    fn in_memory_when_it_fits_and_top_n_with_a_limit() {
        let rows = shuffled(5_000);
        let (out, runs) = sorted(&rows, None, 64 << 20);
        assert_eq!(runs, 0);
        assert_eq!(out.len(), 5_000);
        let (top, runs) = sorted(&rows, Some(10), 64 << 10);
        assert_eq!(runs, 0, "a top-10 sort keeps few rows and never spills");
        assert_eq!(top, (0..10).collect::<Vec<_>>());
    }
}
