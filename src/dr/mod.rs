//! Disaster recovery: copies of the data directory away from its disk.
//!
//! Built so far: archives ([`archive`]), which receive every shard's WAL
//! and the coordinator's decision log continuously and every checkpoint
//! when taken ([`ship`]), and restore from an archive alone ([`fetch`],
//! `fortress restore --from URL`), and WAL recycling once archived and
//! checkpointed ([`recycle`]), with each archive's health checks and
//! score ([`health`]). Standbys, sync mode, health scores and
//! failover come next (see the README's "Disaster recovery").

pub mod archive;
pub mod cli;
pub mod fetch;
pub mod health;
pub mod recycle;
pub mod ship;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use fortress_proxy::Cluster;

use archive::{Compression, Provider};
use ship::{ShipStatus, Shipper};

/// The DR state of a running server.
#[derive(Default)]
pub struct Dr {
    pub shippers: Vec<Shipper>,
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
        let shippers = archives
            .into_iter()
            .map(|p| {
                tracing::info!(archive = %p.name, url = %p.url, "shipping the WAL and checkpoints");
                Shipper::spawn(
                    p,
                    cluster.clone(),
                    checkpoints.clone(),
                    compression,
                    interval,
                    health,
                )
            })
            .collect();
        Dr { shippers }
    }

    /// The last LSN of `log` that every archive holds; `None` without
    /// archives.
    pub fn archived(&self, log: &str) -> Option<u64> {
        self.shippers.iter().map(|s| s.archived(log)).min()
    }

    pub fn status(&self) -> Vec<ShipStatus> {
        self.shippers.iter().map(|s| s.status()).collect()
    }

    /// Ships everything durable now to every archive; the statuses after.
    pub async fn ship_now(&self, timeout: Duration) -> Vec<ShipStatus> {
        let all = self.shippers.iter().map(|s| s.ship_now(timeout));
        futures::future::join_all(all).await
    }
}
