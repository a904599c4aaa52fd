//! Disaster recovery: copies of the data directory away from its disk.
//!
//! - Archives ([`archive`]) receive every shard's WAL and the
//!   coordinator's decision log continuously and every checkpoint when
//!   taken ([`ship`]), one timeline per primary; restore reads them alone
//!   ([`fetch`], `fortress restore --from URL`). WAL is recycled once
//!   archived, checkpointed and pulled by every standby and peer
//!   ([`recycle`]). Each archive has health checks and a score
//!   ([`health`]), and archives can be added while the server runs
//!   ([`Dr::add`]).
//! - Hot standbys, async or sync, and multi-master peers
//!   ([`replication`]), whose copies start from an archive or from a
//!   checkpoint their primary takes for them.
//! - The write lease that fences every node but one ([`lease`]); failover,
//!   automatic or asked for, with its RTO and RPO recorded ([`failover`]),
//!   to the standby that holds the most of the log ([`candidates`]); and
//!   the replaced primary rejoining as a standby ([`rejoin`]).

pub mod archive;
pub mod candidates;
pub mod cli;
pub mod failover;
pub mod fetch;
pub mod health;
pub mod lease;
pub mod recycle;
pub mod rejoin;
pub mod replication;
pub mod ship;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use fortress_proxy::Cluster;

use archive::{Compression, Provider};
use ship::{ShipStatus, Shipper};

/// The DR state of a running server.
pub struct Dr {
    shippers: std::sync::RwLock<Vec<Arc<Shipper>>>,
    /// What a shipper needs, for archives added at runtime.
    cluster: Arc<Cluster>,
    checkpoints: PathBuf,
    compression: Compression,
    interval: Duration,
    health: health::Settings,
}

/// The archives named on the command line, opened (not yet contacted):
/// a malformed spec or URL stops start-up here.
pub fn open_archives(specs: &[String]) -> anyhow::Result<Vec<Provider>> {
    let mut out: Vec<Provider> = Vec::new();
    for spec in specs {
        let (name, url) = archive::parse_spec(spec)?;
        if out.iter().any(|p| p.name == name) {
            bail!("archive {name} is named twice");
        }
        out.push(Provider::open(&name, &url)?);
    }
    Ok(out)
}

/// This data directory's id (16 hex digits in `node.id`, made at its
/// first start): tells apart nodes given the same name.
pub fn node_id(dir: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Read;
    let path = dir.join("node.id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(dir)?;
    replace_file(&path, id.as_bytes())?;
    Ok(id)
}

/// Replaces `path` with `body` durably: written beside it, synced,
/// renamed over it, its directory synced. A crash leaves the old file or
/// the new one, whole.
pub fn replace_file(path: &std::path::Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// `t` as RFC 3339 in UTC, to the millisecond: how DR status and records
/// write times.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Now, as [`rfc3339`] writes it.
pub fn now_rfc3339() -> String {
    rfc3339(std::time::SystemTime::now())
}

/// The archive holding the write lease (see [`lease`]), opened: the one
/// `--lease-archive` names, or by default the first `--archive` of a node
/// with standbys or of a standby; `None` with `--lease-archive off`.
pub fn lease_archive(
    args: &crate::cli::ServeArgs,
    standby: bool,
) -> anyhow::Result<Option<Provider>> {
    if !args.peers.is_empty() {
        // Peers all take writes: a lease would fence all but one.
        return match args.lease_archive.as_deref() {
            None | Some("off") => Ok(None),
            Some(_) => bail!("--lease-archive and --peer: multi-master peers all take writes, and a write lease would fence all but one"),
        };
    }
    let spec = match args.lease_archive.as_deref() {
        Some("off") => return Ok(None),
        Some(name) => args
            .archives
            .iter()
            .find(|s| archive::parse_spec(s).is_ok_and(|(n, _)| n == name))
            .with_context(|| format!("--lease-archive {name}: no --archive has that name"))?,
        None if standby || args.replication_listen.is_some() => match args.archives.first() {
            Some(spec) => spec,
            None => return Ok(None),
        },
        None => return Ok(None),
    };
    let (name, url) = archive::parse_spec(spec)?;
    Ok(Some(Provider::open(&name, &url)?))
}

impl Dr {
    /// Starts shipping to every archive.
    pub fn start(
        archives: Vec<Provider>,
        cluster: &Arc<Cluster>,
        checkpoints: PathBuf,
        compression: Compression,
        interval: Duration,
        health: &health::Settings,
    ) -> Dr {
        let dr = Dr {
            shippers: Default::default(),
            cluster: cluster.clone(),
            checkpoints,
            compression,
            interval,
            health: health.clone(),
        };
        for p in archives {
            dr.spawn(p);
        }
        dr
    }

    fn spawn(&self, p: Provider) -> Arc<Shipper> {
        let shipper = self.make(p);
        self.shippers
            .write()
            .expect("shippers")
            .push(shipper.clone());
        shipper
    }

    fn make(&self, p: Provider) -> Arc<Shipper> {
        tracing::info!(archive = %p.name, url = %p.url, "shipping the WAL and checkpoints");
        Arc::new(Shipper::spawn(
            p,
            self.cluster.clone(),
            self.checkpoints.clone(),
            self.compression,
            self.interval,
            &self.health,
        ))
    }

    fn all(&self) -> Vec<Arc<Shipper>> {
        self.shippers.read().expect("shippers").clone()
    }

    /// Whether any archive is configured.
    pub fn has_archives(&self) -> bool {
        !self.shippers.read().expect("shippers").is_empty()
    }

    /// The shipper of archive `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Shipper>> {
        self.all().into_iter().find(|s| s.name() == name)
    }

    /// Adds archive `name` at `url` while the server runs (until it
    /// stops: archives on the command line or in the config file are
    /// the lasting ones). Its first round starts at once.
    pub fn add(&self, name: &str, url: &str) -> Result<Arc<Shipper>, AddError> {
        if self.cluster.is_standby() {
            return Err(AddError::Invalid(anyhow::anyhow!(
                "a standby does not ship to archives: add the archive to its primary"
            )));
        }
        archive::parse_spec(&format!("{name}={url}")).map_err(AddError::Invalid)?;
        let provider = Provider::open(name, url).map_err(AddError::Invalid)?;
        // Checked and pushed under one lock: two requests cannot both add it.
        let mut shippers = self.shippers.write().expect("shippers");
        if shippers.iter().any(|s| s.name() == name) {
            return Err(AddError::Exists(name.to_string()));
        }
        let shipper = self.make(provider);
        shippers.push(shipper.clone());
        Ok(shipper)
    }

    /// The last LSN of `log` that every archive holds; `None` without
    /// archives.
    pub fn archived(&self, log: &str) -> Option<u64> {
        self.all().iter().map(|s| s.archived(log)).min()
    }

    pub fn status(&self) -> Vec<ShipStatus> {
        self.all().iter().map(|s| s.status()).collect()
    }

    /// Ships everything durable now to every archive; the statuses after.
    pub async fn ship_now(&self, timeout: Duration) -> Vec<ShipStatus> {
        let all = self.all();
        futures::future::join_all(all.iter().map(|s| s.ship_now(timeout))).await
    }
}

/// Why an archive could not be added.
#[derive(Debug)]
pub enum AddError {
    /// A malformed name or URL.
    Invalid(anyhow::Error),
    /// The name is taken.
    Exists(String),
}

impl std::fmt::Display for AddError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddError::Invalid(e) => write!(f, "{e:#}"),
            AddError::Exists(name) => write!(f, "there is already an archive named {name}"),
        }
    }
}
