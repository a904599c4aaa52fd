//! Archives: a data directory's logs and checkpoints kept in an object
//! store (a local directory, S3, GCS or Azure, through `object_store`),
//! enough to restore it anywhere.
//!
//! **Layout** under the URL's path:
//! - `fortress.archive`: whose archive this is (JSON: format, cluster id,
//!   shards, vnodes, sealed), written once, checked by every shipper;
//! - `wal/<log>/<first:020>-<last:020>.wal`: records `first..=last` of one
//!   log (`shard-000`, ..., `coordinator`), exactly as the log holds them;
//! - `checkpoints/<id>/<file>`: a checkpoint's files, `MANIFEST` last, so a
//!   checkpoint whose manifest is listed is whole;
//! - `positions`: where shipping stands and up to which time the archive is
//!   consistent across logs (rewritten every round; see [`Positions`]);
//! - `timelines/<epoch:010>/`: the same layout again for each primary that
//!   took over by a failover or handover (its write lease epoch, 2 and
//!   up), like PostgreSQL's timelines: its logs followed the replaced
//!   primary's only up to the takeover, so it never ships into the
//!   replaced one's objects. The first primary's (epoch 0 or 1) is the
//!   top level. Readers take the newest timeline with a complete round
//!   (see [`Provider::newest_timeline`]), or the one asked for;
//! - `lease` and `failovers/`: the write lease and the failovers' records
//!   (`dr::lease`, `dr::failover`), at the top level only.
//!
//! **Objects** are enveloped: `"FORTARC1" | flags:u8 | raw_len:u64 |
//! raw_crc:u32 | stored_len:u64 | stored | crc:u32`, little-endian, where
//! flag 1 says `stored` is zstd of the raw bytes, `raw_crc` is the CRC-32
//! of the raw bytes (checked after decompression: end to end) and `crc`
//! covers every byte before it. A WAL object's records also keep their own
//! CRCs (and, with encryption at rest, their sealed payloads).
//!
//! **Durability rule.** An object is written whole or not at all (a put is
//! atomic in every store); a log's next object starts right after the last
//! one listed, so a shipper that restarts, or failed half way, resumes from
//! the listing and never writes the same records into a different object.
//! **Recovery rule.** A restore lists a log's objects and requires them to
//! be contiguous from the point it replays after; a gap or a failed
//! checksum stops it with the object's name.

use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 8] = b"FORTARC1";
const FLAG_ZSTD: u8 = 1;
const HEADER: usize = 8 + 1 + 8 + 4 + 8;
/// The archive's identity object.
pub const IDENTITY: &str = "fortress.archive";
/// The shipping positions object.
pub const POSITIONS: &str = "positions";
/// Where the timelines of later primaries are.
pub const TIMELINES: &str = "timelines";

/// The URL of the timeline of the primary holding write lease `epoch` in
/// the archive at `url`: the archive itself for the first primary.
pub fn timeline_url(url: &str, epoch: u64) -> String {
    match epoch {
        0 | 1 => url.to_string(),
        e => format!("{}/{TIMELINES}/{e:010}", url.trim_end_matches('/')),
    }
}
const ZSTD_LEVEL: i32 = 3;

/// How shipped bytes are compressed.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    Zstd,
    None,
}

/// Wraps `raw` in an object envelope.
pub fn seal(raw: &[u8], compression: Compression) -> Vec<u8> {
    let (flags, stored) = match compression {
        Compression::Zstd => (
            FLAG_ZSTD,
            zstd::bulk::compress(raw, ZSTD_LEVEL).expect("zstd compresses in memory"),
        ),
        Compression::None => (0, raw.to_vec()),
    };
    let mut out = Vec::with_capacity(HEADER + stored.len() + 4);
    out.extend_from_slice(MAGIC);
    out.push(flags);
    out.extend_from_slice(&(raw.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(raw).to_le_bytes());
    out.extend_from_slice(&(stored.len() as u64).to_le_bytes());
    out.extend_from_slice(&stored);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The raw bytes of an object envelope, every checksum verified; `name`
/// is for the error.
pub fn open(name: &str, object: &[u8]) -> anyhow::Result<Vec<u8>> {
    let bad = |why: &str| anyhow::anyhow!("archived object {name} is damaged: {why}");
    if object.len() < HEADER + 4 || &object[..8] != MAGIC {
        return Err(bad("not an archive object"));
    }
    let (body, crc) = object.split_at(object.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(bad("checksum mismatch"));
    }
    let flags = body[8];
    let raw_len = u64::from_le_bytes(body[9..17].try_into().expect("8 bytes"));
    let raw_crc = u32::from_le_bytes(body[17..21].try_into().expect("4 bytes"));
    let stored_len = u64::from_le_bytes(body[21..29].try_into().expect("8 bytes"));
    let stored = &body[HEADER..];
    if stored.len() as u64 != stored_len || raw_len > 1 << 32 {
        return Err(bad("lengths do not match"));
    }
    let raw = if flags & FLAG_ZSTD != 0 {
        zstd::bulk::decompress(stored, raw_len as usize).map_err(|e| bad(&e.to_string()))?
    } else {
        stored.to_vec()
    };
    if raw.len() as u64 != raw_len || crc32fast::hash(&raw) != raw_crc {
        return Err(bad("the content's checksum does not match"));
    }
    Ok(raw)
}

/// Whose archive it is: refused by a data directory of another cluster.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Identity {
    pub format: u32,
    pub cluster: String,
    pub shards: u32,
    pub vnodes: usize,
    /// Whether records and checkpoints are encrypted at rest.
    pub sealed: bool,
}

/// Where shipping stood at the end of a round.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Positions {
    /// Each log's last archived LSN.
    pub logs: std::collections::BTreeMap<String, u64>,
    /// Every transaction committed at or before this hybrid-clock time is
    /// whole in the archived logs (see `ship::consistent_through`).
    pub consistent_ts: u64,
    /// Wall-clock time of the round, RFC 3339.
    pub at: String,
}

/// The name of the object holding records `first..=last` of `log`.
pub fn wal_object(log: &str, first: u64, last: u64) -> String {
    format!("wal/{log}/{first:020}-{last:020}.wal")
}

/// The LSN range a WAL object's file name stands for.
pub fn parse_wal_object(file: &str) -> Option<(u64, u64)> {
    let (first, last) = file.strip_suffix(".wal")?.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

/// One archive: a name and an object store location.
pub struct Provider {
    pub name: String,
    /// The URL as given, for status and logs (it carries no credentials:
    /// those come from the environment).
    pub url: String,
    store: Arc<dyn ObjectStore>,
    root: ObjectPath,
    /// For `file://`, the directory (whose disk the capacity check reads).
    pub local_dir: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.name, self.url)
    }
}

/// Splits `NAME=URL`.
pub fn parse_spec(spec: &str) -> anyhow::Result<(String, String)> {
    let (name, url) = spec
        .split_once('=')
        .with_context(|| format!("--archive {spec:?} is not NAME=URL"))?;
    let name = name.trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("archive name {name:?} must be letters, digits, '-' or '_'");
    }
    Ok((name.to_string(), url.trim().to_string()))
}

impl Provider {
    /// The archive at `url`: `file:///dir`, `s3://bucket/path`,
    /// `gs://bucket/path` or `az://container/path`, with credentials (and
    /// `AWS_ENDPOINT_URL`, `AZURE_STORAGE_USE_EMULATOR`, ...) from the
    /// standard environment. Nothing is contacted yet.
    pub fn open(name: &str, url: &str) -> anyhow::Result<Provider> {
        let parsed = url::Url::parse(url)
            .map_err(|e| anyhow::anyhow!("archive {name}: the URL does not parse ({e})"))?;
        if !parsed.username().is_empty()
            || parsed.password().is_some()
            || parsed.query().is_some()
            || parsed.fragment().is_some()
        {
            bail!(
                "archive {name}: the URL may hold no credentials, query or fragment: put credentials in the environment (AWS_ACCESS_KEY_ID, ...)"
            );
        }
        let path = parsed.path().trim_matches('/');
        let built: anyhow::Result<(Arc<dyn ObjectStore>, ObjectPath)> = match parsed.scheme() {
            "file"
                if parsed
                    .host_str()
                    .is_some_and(|h| !h.is_empty() && h != "localhost") =>
            {
                bail!("archive {name}: {url:?} names a host; a file URL is file:///absolute/dir")
            }
            "file" => {
                let dir = std::path::PathBuf::from(parsed.path());
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating archive directory {}", dir.display()))?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir)?;
                Ok((Arc::new(fs), ObjectPath::default()))
            }
            "s3" | "s3a" => {
                let mut b = object_store::aws::AmazonS3Builder::from_env().with_url(url);
                // An endpoint written as http:// is a choice to talk plain
                // HTTP (a local S3 server); object_store otherwise refuses.
                let endpoint = std::env::var("AWS_ENDPOINT_URL")
                    .or_else(|_| std::env::var("AWS_ENDPOINT"))
                    .unwrap_or_default();
                if endpoint.starts_with("http://") {
                    b = b.with_allow_http(true);
                }
                Ok((Arc::new(b.build()?), ObjectPath::from(path)))
            }
            "gs" => {
                let b = object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url);
                Ok((Arc::new(b.build()?), ObjectPath::from(path)))
            }
            "az" | "azure" | "abfs" | "abfss" => {
                let b = object_store::azure::MicrosoftAzureBuilder::from_env().with_url(url);
                Ok((Arc::new(b.build()?), ObjectPath::from(path)))
            }
            other => bail!("unknown scheme {other:?} (file, s3, gs, az)"),
        };
        let (store, root) = built.with_context(|| format!("archive {name} ({url})"))?;
        Ok(Provider {
            name: name.to_string(),
            url: url.to_string(),
            store,
            root,
            local_dir: (parsed.scheme() == "file").then(|| parsed.path().into()),
        })
    }

    fn path(&self, rel: &str) -> ObjectPath {
        let mut p = self.root.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    /// Writes object `rel` (replacing it).
    pub async fn put(&self, rel: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.store
            .put(&self.path(rel), PutPayload::from(Bytes::from(bytes)))
            .await
            .with_context(|| format!("archive {}: writing {rel}", self.name))?;
        Ok(())
    }

    /// Writes object `rel` unless it exists: false if it did.
    pub async fn create(&self, rel: &str, bytes: Bytes) -> anyhow::Result<bool> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&self.path(rel), PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("archive {}: creating {rel}", self.name)),
        }
    }

    /// Copies local file `from` into object `rel`, streaming (multipart
    /// for large files), without holding it in memory.
    pub async fn upload(&self, rel: &str, from: &std::path::Path) -> anyhow::Result<u64> {
        use tokio::io::AsyncWriteExt;
        let ctx = || {
            format!(
                "archive {}: uploading {} as {rel}",
                self.name,
                from.display()
            )
        };
        let mut file = tokio::fs::File::open(from).await.with_context(ctx)?;
        let mut out = object_store::buffered::BufWriter::new(self.store.clone(), self.path(rel));
        let copied = tokio::io::copy(&mut file, &mut out).await;
        match copied {
            Ok(n) => {
                out.shutdown().await.with_context(ctx)?;
                Ok(n)
            }
            Err(e) => {
                let _ = out.abort().await;
                Err(e).with_context(ctx)
            }
        }
    }

    /// Copies object `rel` into local file `to`, streaming.
    pub async fn download(&self, rel: &str, to: &std::path::Path) -> anyhow::Result<u64> {
        use tokio::io::AsyncWriteExt;
        let ctx = || format!("archive {}: downloading {rel}", self.name);
        let got = self.store.get(&self.path(rel)).await.with_context(ctx)?;
        let mut stream = got.into_stream();
        let mut file = tokio::fs::File::create(to)
            .await
            .with_context(|| format!("creating {}", to.display()))?;
        let mut n = 0u64;
        while let Some(piece) = stream.try_next().await.with_context(ctx)? {
            file.write_all(&piece).await?;
            n += piece.len() as u64;
        }
        file.sync_all().await?;
        Ok(n)
    }

    /// Writes object `rel`, which must not exist with other content: a
    /// WAL object is written once (a retry after a lost answer finds its
    /// own bytes); different bytes under its name mean another copy of
    /// the data directory writes to this archive.
    pub async fn put_once(&self, rel: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        // Shared, not copied: the comparison below is the rare case.
        let bytes = Bytes::from(bytes);
        if self.create(rel, bytes.clone()).await? {
            return Ok(());
        }
        match self.get(rel).await? {
            Some(found) if found[..] == bytes[..] => Ok(()),
            _ => bail!(
                "archive {}: {rel} exists with other content: another copy of this data directory ships to it",
                self.name
            ),
        }
    }

    /// Object `rel`, or `None` if there is none.
    pub async fn get(&self, rel: &str) -> anyhow::Result<Option<Bytes>> {
        match self.store.get(&self.path(rel)).await {
            Ok(r) => {
                Ok(Some(r.bytes().await.with_context(|| {
                    format!("archive {}: reading {rel}", self.name)
                })?))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("archive {}: reading {rel}", self.name)),
        }
    }

    /// The objects under `prefix/` with their sizes, names relative to it,
    /// in name order; only those after `after` (a relative name) if given.
    pub async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
    ) -> anyhow::Result<Vec<(String, u64)>> {
        let base = self.path(prefix);
        let stream = match after {
            Some(a) => self
                .store
                .list_with_offset(Some(&base), &self.path(&format!("{prefix}/{a}"))),
            None => self.store.list(Some(&base)),
        };
        let metas: Vec<_> = stream
            .try_collect()
            .await
            .with_context(|| format!("archive {}: listing {prefix}", self.name))?;
        let mut out: Vec<(String, u64)> = metas
            .into_iter()
            .filter_map(|m| {
                let full = m.location.as_ref().to_string();
                let rel = full.strip_prefix(base.as_ref())?.trim_start_matches('/');
                Some((rel.to_string(), m.size))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// The epoch of the newest timeline under `timelines/` holding a
    /// complete shipping round (its `positions`); `None` if there is none
    /// (the top level is then the newest).
    pub async fn newest_timeline(&self) -> anyhow::Result<Option<u64>> {
        let listed = self
            .store
            .list_with_delimiter(Some(&self.path(TIMELINES)))
            .await
            .with_context(|| format!("archive {}: listing {TIMELINES}", self.name))?;
        let mut epochs: Vec<u64> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename()?.parse().ok())
            .collect();
        epochs.sort_unstable_by(|a, b| b.cmp(a));
        for e in epochs {
            if self
                .get(&format!("{TIMELINES}/{e:010}/{POSITIONS}"))
                .await?
                .is_some()
            {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    /// Object `rel` with the version a conditional write compares
    /// against, or `None` if there is none.
    pub async fn get_versioned(&self, rel: &str) -> anyhow::Result<Option<(Bytes, Version)>> {
        if self.local_dir.is_some() {
            // The local store cannot replace on a version; its writes
            // compare content instead (see `put_if`).
            return Ok(self
                .get(rel)
                .await?
                .map(|b| (b.clone(), Version::Content(b))));
        }
        match self.store.get(&self.path(rel)).await {
            Ok(r) => {
                let version = Version::Tag(UpdateVersion {
                    e_tag: r.meta.e_tag.clone(),
                    version: r.meta.version.clone(),
                });
                let bytes = r
                    .bytes()
                    .await
                    .with_context(|| format!("archive {}: reading {rel}", self.name))?;
                Ok(Some((bytes, version)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("archive {}: reading {rel}", self.name)),
        }
    }

    /// Writes object `rel` only if it is as last read: absent when
    /// `expected` is `None`, else still at that version. `Ok(None)` if it
    /// changed meanwhile (someone else wrote it); the new version if
    /// written. Object stores do this with conditional puts; a local
    /// directory under an exclusive lock on a file beside the object.
    pub async fn put_if(
        &self,
        rel: &str,
        bytes: Vec<u8>,
        expected: Option<&Version>,
    ) -> anyhow::Result<Option<Version>> {
        let bytes = Bytes::from(bytes);
        if let Some(dir) = &self.local_dir {
            let (dir, rel2, expected) = (dir.clone(), rel.to_string(), expected.cloned());
            return tokio::task::spawn_blocking(move || {
                local_put_if(&dir, &rel2, bytes, expected.as_ref())
            })
            .await?
            .with_context(|| format!("archive {}: writing {rel}", self.name));
        }
        let mode = match expected {
            None => PutMode::Create,
            Some(Version::Tag(v)) => PutMode::Update(v.clone()),
            Some(Version::Content(_)) => bail!(
                "archive {}: a content version on an object store",
                self.name
            ),
        };
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&self.path(rel), PutPayload::from(bytes), opts)
            .await
        {
            Ok(r) => Ok(Some(Version::Tag(UpdateVersion {
                e_tag: r.e_tag,
                version: r.version,
            }))),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(None),
            // Replacing an object that is gone (Azure says so this way).
            Err(object_store::Error::NotFound { .. }) if expected.is_some() => Ok(None),
            Err(e) => Err(e).with_context(|| format!("archive {}: writing {rel}", self.name)),
        }
    }

    /// Checks that the archive is this cluster's (claiming it when new).
    pub async fn claim(&self, me: &Identity) -> anyhow::Result<()> {
        let body = serde_json::to_vec_pretty(me)?;
        if self.create(IDENTITY, body.into()).await? {
            return Ok(());
        }
        let found = self
            .get(IDENTITY)
            .await?
            .with_context(|| format!("archive {}: {IDENTITY} vanished", self.name))?;
        let found: Identity = serde_json::from_slice(&found)
            .with_context(|| format!("archive {}: {IDENTITY} is damaged", self.name))?;
        if found.cluster != me.cluster {
            bail!(
                "archive {} ({}) holds another data directory's archive (cluster {}); give each data directory its own archive path",
                self.name,
                self.url,
                found.cluster
            );
        }
        Ok(())
    }
}

/// The version of an object as read, for [`Provider::put_if`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Version {
    /// An object store's ETag and version.
    Tag(UpdateVersion),
    /// A local object: its whole content.
    Content(Bytes),
}

/// `put_if` in a local directory: compare and replace under an exclusive
/// `flock` of `<object>.lock`, which every writer through this function
/// takes; the new content lands by rename, synced.
fn local_put_if(
    dir: &std::path::Path,
    rel: &str,
    bytes: Bytes,
    expected: Option<&Version>,
) -> anyhow::Result<Option<Version>> {
    use std::os::fd::AsRawFd;
    let path = dir.join(rel);
    let parent = path.parent().context("an object path has a parent")?;
    std::fs::create_dir_all(parent)?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.with_extension("lock"))?;
    // SAFETY: flock on a descriptor this function owns; released on close.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let current = match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let unchanged = match (expected, &current) {
        (None, None) => true,
        (Some(Version::Content(want)), Some(have)) => want[..] == have[..],
        _ => false,
    };
    if !unchanged {
        return Ok(None);
    }
    super::replace_file(&path, &bytes)?;
    Ok(Some(Version::Content(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_catch_any_flipped_byte() {
        let raw: Vec<u8> = (0..5000u32).flat_map(|i| (i % 97).to_le_bytes()).collect();
        for c in [Compression::Zstd, Compression::None] {
            let obj = seal(&raw, c);
            assert_eq!(open("x", &obj).unwrap(), raw);
            for i in [0, 8, 12, 20, 30, obj.len() / 2, obj.len() - 1] {
                let mut bad = obj.clone();
                bad[i] ^= 0x10;
                assert!(open("x", &bad).is_err(), "flip at {i} ({c:?}) not caught");
            }
        }
        assert!(seal(&raw, Compression::Zstd).len() < raw.len() / 2);
    }

    #[test]
    fn names_and_specs() {
        let n = wal_object("shard-001", 5, 17);
        assert_eq!(
            n,
            "wal/shard-001/00000000000000000005-00000000000000000017.wal"
        );
        assert_eq!(
            parse_wal_object(n.rsplit('/').next().unwrap()),
            Some((5, 17))
        );
        assert_eq!(
            parse_spec("offsite=s3://b/p").unwrap(),
            ("offsite".into(), "s3://b/p".into())
        );
        assert!(parse_spec("s3://b").is_err());
        assert!(parse_spec("a b=file:///x").is_err());
        assert!(Provider::open("x", "ftp://h/p").is_err());
        assert!(Provider::open("x", "s3://key:secret@bucket/p")
            .unwrap_err()
            .to_string()
            .contains("environment"));
    }
}
