//! Multi-version rows: each write adds a version keyed `pk ++ !commit_ts`, so
//! a key's versions sort newest first and a reader at snapshot `S` takes the
//! first version with `ts <= S`. A delete writes a tombstone version. Garbage
//! collection drops versions no snapshot at or above the horizon can see.

use crate::error::{Result, StorageError};
use crate::keycodec::split_versioned;
use crate::value::Row;

const TOMBSTONE: u8 = 0;
const ROW: u8 = 1;

/// Reads every visible version at this snapshot.
pub const LATEST: u64 = u64::MAX;

/// Stored form of a version: a tag byte, then the row for live versions.
pub fn encode_version(row: Option<&Row>) -> Result<Vec<u8>> {
    match row {
        None => Ok(vec![TOMBSTONE]),
        Some(r) => {
            let mut out = vec![ROW];
            out.extend(postcard::to_stdvec(r).map_err(|e| StorageError::Codec(e.to_string()))?);
            Ok(out)
        }
    }
}

/// True if a stored version holds a row (is not a tombstone).
pub fn is_row(version: &[u8]) -> bool {
    version.first() == Some(&ROW)
}

/// Decodes a stored version; `None` for a tombstone.
pub fn decode_version(bytes: &[u8]) -> Result<Option<Row>> {
    match bytes.split_first() {
        Some((&TOMBSTONE, _)) => Ok(None),
        Some((&ROW, rest)) => postcard::from_bytes(rest)
            .map(Some)
            .map_err(|e| StorageError::Codec(e.to_string())),
        _ => Err(StorageError::Codec("unknown version tag".into())),
    }
}

/// Walks `(key, value)` pairs in key order and yields, per primary key, the
/// version visible at `snapshot`, skipping tombstones.
pub fn visible<I>(iter: I, snapshot: u64) -> impl Iterator<Item = Result<(Vec<u8>, Row)>>
where
    I: Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
{
    let mut until_check = crate::interrupt::EVERY;
    visible_versions(iter, snapshot).map(move |item| {
        // Reads and the planning of writes are where a cancelled or timed
        // out statement stops (never a rewrite or a checkpoint, which use
        // `visible_versions` and must finish).
        until_check -= 1;
        if until_check == 0 {
            until_check = crate::interrupt::EVERY;
            crate::interrupt::check()?;
        }
        let (k, v) = item?;
        let bad = || StorageError::Codec("bad stored version".into());
        let (pk, _) = split_versioned(&k).ok_or_else(bad)?;
        let row = decode_version(&v)?.ok_or_else(bad)?;
        Ok((pk.to_vec(), row))
    })
}

/// The newest stored version of the row keyed `pk` at or below `snapshot`
/// (a tombstone included), with its timestamp, in one seek: versions sort
/// newest first, so it is the first key at or past `pk ++ !snapshot`. A
/// point read does not walk the older versions a hot row piles up.
pub fn version_at(
    tree: &sled::Tree,
    pk: &[u8],
    snapshot: u64,
) -> Result<Option<(u64, sled::IVec)>> {
    let from = crate::keycodec::versioned_key(pk, snapshot);
    let Some(item) = tree.range(from..).next() else {
        return Ok(None);
    };
    let (k, v) = item?;
    Ok(match split_versioned(&k) {
        Some((found, ts)) if found == pk => Some((ts, v)),
        _ => None,
    })
}

/// The row keyed `pk` visible at `snapshot` (see [`version_at`]).
pub fn visible_at(tree: &sled::Tree, pk: &[u8], snapshot: u64) -> Result<Option<Row>> {
    match version_at(tree, pk, snapshot)? {
        Some((_, v)) => decode_version(&v),
        None => Ok(None),
    }
}

/// Like [`visible`], but yields the stored `(versioned key, version)` pairs
/// undecoded: what a checkpoint copies.
pub fn visible_versions<I>(
    iter: I,
    snapshot: u64,
) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec)>>
where
    I: Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
{
    let mut done_pk: Option<Vec<u8>> = None;
    iter.filter_map(move |item| {
        let (k, v) = match item {
            Ok(kv) => kv,
            Err(e) => return Some(Err(e.into())),
        };
        let (pk, ts) = split_versioned(&k)?;
        if done_pk.as_deref() == Some(pk) || ts > snapshot {
            return None;
        }
        done_pk = Some(pk.to_vec());
        match v.first() {
            Some(&TOMBSTONE) => None,
            Some(&ROW) => Some(Ok((k, v))),
            _ => Some(Err(StorageError::Codec("unknown version tag".into()))),
        }
    })
}

/// Removes versions invisible to every snapshot at or above `horizon`: all
/// but the newest version at or below it, and that one too if a tombstone.
/// Walks the whole tree. Returns how many versions were removed and the
/// keys that still have versions above the horizon.
pub fn collect_garbage(tree: &sled::Tree, horizon: u64) -> Result<Collected> {
    let mut out = Collected::default();
    collect_versions(tree, tree.range(&[0x01u8][..]..), horizon, &mut out)?;
    Ok(out)
}

/// [`collect_garbage`] for the versions of one key only.
pub fn collect_key_garbage(
    tree: &sled::Tree,
    pk: &[u8],
    horizon: u64,
    out: &mut Collected,
) -> Result<()> {
    let newest = crate::keycodec::versioned_key(pk, u64::MAX);
    let oldest = crate::keycodec::versioned_key(pk, 0);
    collect_versions(tree, tree.range(newest..=oldest), horizon, out)
}

/// What a garbage collection pass did.
#[derive(Debug, Default)]
pub struct Collected {
    pub removed: u64,
    /// Keys that will hold garbage once the horizon reaches the timestamp
    /// beside them (the version superseding their oldest one). At most
    /// [`MAX_YOUNG_KEYS`]; past that `young_overflow` is set instead.
    pub young: Vec<(Vec<u8>, u64)>,
    /// More young keys than are kept: the next collection walks everything.
    pub young_overflow: bool,
}

/// Bound on the young keys one collection remembers, so that a walk over a
/// freshly loaded table does not hold a copy of every key.
pub const MAX_YOUNG_KEYS: usize = 200_000;

/// One key's versions as a collection walks them, newest first.
struct KeyWalk {
    pk: Vec<u8>,
    /// Oldest version above the horizon so far, and if it is a tombstone.
    oldest_young: Option<(u64, bool)>,
    /// The young version just newer than that one.
    next_young: Option<u64>,
    /// A live version at or below the horizon stays.
    kept_live: bool,
    /// The newest version at or below the horizon has been seen.
    kept_below: bool,
}

impl KeyWalk {
    fn new(pk: &[u8]) -> KeyWalk {
        KeyWalk {
            pk: pk.to_vec(),
            oldest_young: None,
            next_young: None,
            kept_live: false,
            kept_below: false,
        }
    }

    /// When the horizon makes garbage of this key's versions that remain:
    /// at the version superseding the oldest one, or at the oldest one if it
    /// is a tombstone. `None` when only one live version remains.
    fn next_garbage(&self) -> Option<u64> {
        let (oldest, tombstone) = self.oldest_young?;
        if self.kept_live || tombstone {
            Some(oldest)
        } else {
            self.next_young
        }
    }

    fn finish(self, out: &mut Collected) {
        if let Some(ts) = self.next_garbage() {
            if out.young.len() < MAX_YOUNG_KEYS {
                out.young.push((self.pk, ts));
            } else {
                out.young_overflow = true;
            }
        }
    }
}

/// Collects over versions in key order. Plain removes, not a sled batch:
/// garbage collection is not logged and needs no atomicity.
fn collect_versions<I>(tree: &sled::Tree, iter: I, horizon: u64, out: &mut Collected) -> Result<()>
where
    I: Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
{
    let mut key: Option<KeyWalk> = None;
    for item in iter {
        let (k, v) = item?;
        let Some((pk, ts)) = split_versioned(&k) else {
            continue;
        };
        let walk = match &mut key {
            Some(w) if w.pk == pk => w,
            _ => {
                if let Some(done) = key.replace(KeyWalk::new(pk)) {
                    done.finish(out);
                }
                key.as_mut().expect("just set")
            }
        };
        let tombstone = v.first() == Some(&TOMBSTONE);
        if ts > horizon {
            walk.next_young = walk.oldest_young.map(|(t, _)| t);
            walk.oldest_young = Some((ts, tombstone));
            continue;
        }
        if !walk.kept_below {
            walk.kept_below = true;
            if !tombstone {
                walk.kept_live = true;
                continue;
            }
        }
        tree.remove(&k)?;
        out.removed += 1;
    }
    if let Some(done) = key {
        done.finish(out);
    }
    Ok(())
}

/// Snapshots pinned for longer than one read (open transactions). Every
/// shard of a process shares one set; garbage collection keeps the versions
/// the oldest pinned snapshot can see.
#[derive(Debug, Default)]
pub struct SnapshotPins {
    active: std::sync::Mutex<std::collections::BTreeMap<u64, usize>>,
}

/// Keeps a snapshot pinned until dropped.
#[derive(Debug)]
pub struct PinGuard {
    pins: std::sync::Arc<SnapshotPins>,
    ts: u64,
}

impl SnapshotPins {
    /// Pins `ts` until the returned guard is dropped.
    pub fn pin(self: &std::sync::Arc<Self>, ts: u64) -> PinGuard {
        *self.active.lock().expect("pins").entry(ts).or_default() += 1;
        PinGuard {
            pins: self.clone(),
            ts,
        }
    }

    /// The oldest pinned snapshot.
    pub fn oldest(&self) -> Option<u64> {
        self.active.lock().expect("pins").keys().next().copied()
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        let mut active = self.pins.active.lock().expect("pins");
        if let Some(n) = active.get_mut(&self.ts) {
            *n -= 1;
            if *n == 0 {
                active.remove(&self.ts);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keycodec::versioned_key;

    #[test]
    fn a_walk_remembers_a_bounded_number_of_young_keys() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        let row = encode_version(Some(&vec![])).unwrap();
        let young = MAX_YOUNG_KEYS as u32 + 10;
        for i in 0..young {
            let pk = [&[0x01u8][..], &i.to_be_bytes()].concat();
            tree.insert(versioned_key(&pk, 100), row.clone()).unwrap();
            tree.insert(versioned_key(&pk, 110), row.clone()).unwrap();
        }
        let c = collect_garbage(&tree, 50).unwrap();
        assert_eq!(c.removed, 0);
        assert_eq!(c.young.len(), MAX_YOUNG_KEYS);
        assert!(c.young_overflow);
        let c = collect_garbage(&tree, 200).unwrap();
        assert_eq!(c.removed, young as u64);
        assert!(c.young.is_empty() && !c.young_overflow);
    }

    #[test]
    fn young_keys_say_when_they_next_hold_garbage() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        let row = encode_version(Some(&vec![])).unwrap();
        let dead = encode_version(None).unwrap();
        let put = |pk: &[u8], ts, v: &Vec<u8>| {
            tree.insert(versioned_key(&[&[0x01u8], pk].concat(), ts), v.clone())
                .unwrap();
        };
        put(b"a", 10, &row);
        put(b"a", 20, &row); // supersedes 10 at 20
        put(b"b", 30, &row); // one live version: never garbage by itself
        put(b"c", 5, &row);
        put(b"c", 30, &dead); // the tombstone and what it hides go at 30
        put(b"d", 20, &row);
        put(b"d", 30, &row); // all young: 20 goes once 30 is below
        put(b"e", 20, &dead); // a lone tombstone goes at its own timestamp
        let c = collect_garbage(&tree, 15).unwrap();
        assert_eq!(c.removed, 0);
        let young: Vec<(Vec<u8>, u64)> = c
            .young
            .into_iter()
            .map(|(pk, ts)| (pk[1..].to_vec(), ts))
            .collect();
        assert_eq!(
            young,
            vec![
                (b"a".to_vec(), 20),
                (b"c".to_vec(), 30),
                (b"d".to_vec(), 30),
                (b"e".to_vec(), 20)
            ]
        );
        let c = collect_garbage(&tree, 100).unwrap();
        assert_eq!(c.removed, 5);
        assert!(c.young.is_empty());
        assert_eq!(tree.len(), 3);
    }
}
