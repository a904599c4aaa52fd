//! WAL streaming to standbys: the primary's `--replication-listen` port and
//! `fortress standby`, which keeps a copy of the data directory LSN for LSN.
//!
//! **Frames** on the TCP stream: `len:u32 | kind:u8 | payload[len]`,
//! little-endian. The standby opens with HELLO (JSON: token, name, each
//! log's last LSN); the primary answers WELCOME (JSON: the cluster's
//! identity) or ERROR (text), then sends rounds: RECORDS frames
//! (`log:u16 | encoded records`) for each log up to a cut taken at one
//! instant ([`fortress_proxy::Cluster::log_cut`]), then CUT (JSON: the ends
//! and the cut's time). A round with nothing new is a CUT alone: the
//! heartbeat.
//!
//! **Durability rule.** The standby holds a round's records in memory and
//! logs and applies them ([`fortress_storage::ShardStore::follow`]) only
//! when the round's CUT arrives, so its logs stand at a cut of the
//! primary's: started as a server (promotion), it never holds half of a
//! multi-shard transaction. **Recovery rule.** A standby that reconnects,
//! or restarts, says where its logs end, and the primary streams from
//! there; if the primary no longer has those records (recycled), it says
//! so and the standby must be rebuilt from an archive.
//!
//! Authentication: FORTRESS_REPLICATION_TOKEN on both sides (compared as
//! SHA-256 digests in constant time); without one the primary listens on
//! loopback only.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use fortress_proxy::Cluster;
use fortress_storage::tail::Tail;
use fortress_storage::wal::{Wal, WalOptions};
use fortress_storage::{ShardOptions, ShardStore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HELLO: u8 = 1;
const WELCOME: u8 = 2;
const RECORDS: u8 = 3;
const CUT: u8 = 4;
const ERROR: u8 = 5;
/// Largest HELLO accepted from a standby, before it is authenticated.
const MAX_HELLO: usize = 64 << 10;
/// Largest frame a standby accepts: a RECORDS frame holds at least one
/// record, which may be as large as the WAL allows.
const MAX_FRAME: usize = fortress_storage::wal::MAX_PAYLOAD + (1 << 20);
/// Bytes of records read per log for one frame.
const FRAME_RECORDS: usize = 8 << 20;
/// How often the primary takes a cut and sends what it gained.
const ROUND_EVERY: Duration = Duration::from_millis(20);

#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    token: String,
    name: String,
    /// Each log's last LSN, in [`Cluster::logs`] order.
    positions: Vec<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Welcome {
    cluster: String,
    shards: u32,
    vnodes: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct Cut {
    ends: Vec<u64>,
    ts: u64,
}

/// Writes one frame whose payload is `parts`, one after another.
async fn write_frame(s: &mut TcpStream, kind: u8, parts: &[&[u8]]) -> std::io::Result<()> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut head = [0u8; 5];
    head[..4].copy_from_slice(&(len as u32).to_le_bytes());
    head[4] = kind;
    s.write_all(&head).await?;
    for part in parts {
        s.write_all(part).await?;
    }
    Ok(())
}

async fn read_frame(s: &mut TcpStream, max: usize) -> anyhow::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).await?;
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    if len > max {
        bail!("a replication frame of {len} bytes is over the limit");
    }
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).await?;
    Ok((head[4], payload))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The replication token from the environment.
pub fn token_from_env() -> Option<String> {
    std::env::var("FORTRESS_REPLICATION_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
}

/// Serves standbys on `listener` for as long as the server runs.
pub fn serve(listener: TcpListener, cluster: Arc<Cluster>, token: Option<String>) {
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let (cluster, token) = (cluster.clone(), token.clone());
            tokio::spawn(async move {
                if let Err(e) = stream_to(stream, cluster, token.as_deref()).await {
                    tracing::info!(%peer, error = %format!("{e:#}"), "standby stream ended");
                }
            });
        }
    });
}

/// One standby's stream: the handshake, then rounds until it goes away.
async fn stream_to(
    mut s: TcpStream,
    cluster: Arc<Cluster>,
    token: Option<&str>,
) -> anyhow::Result<()> {
    s.set_nodelay(true)?;
    let (kind, payload) =
        tokio::time::timeout(Duration::from_secs(10), read_frame(&mut s, MAX_HELLO))
            .await
            .context("no HELLO within 10 s")??;
    let hello: Hello = match kind {
        HELLO => serde_json::from_slice(&payload).context("a malformed HELLO")?,
        _ => bail!("expected HELLO"),
    };
    let logs = cluster.logs();
    let welcome = Welcome {
        cluster: cluster.id().to_string(),
        shards: cluster.shard_count(),
        vnodes: cluster.ring().vnodes(),
    };
    let refusal = if token.is_some_and(|t| !bool::from(digest(t).ct_eq(&digest(&hello.token)))) {
        Some("the replication token does not match".to_string())
    } else if hello.positions.is_empty() {
        // A new standby learns the identity, makes its copy and comes back.
        write_frame(&mut s, WELCOME, &[&serde_json::to_vec(&welcome)?]).await?;
        return Ok(());
    } else if hello.positions.len() != logs.len() {
        Some("the standby has another number of logs (shards)".to_string())
    } else {
        hello
            .positions
            .iter()
            .zip(&logs)
            .find(|(p, l)| **p > l.last_lsn())
            .map(|(p, l)| {
                format!(
                    "the standby's {} ends at LSN {p}, past this primary's {}: it followed another history",
                    l.name,
                    l.last_lsn()
                )
            })
    };
    if let Some(why) = refusal {
        write_frame(&mut s, ERROR, &[why.as_bytes()]).await?;
        bail!("refused standby {}: {why}", hello.name);
    }
    write_frame(&mut s, WELCOME, &[&serde_json::to_vec(&welcome)?]).await?;
    tracing::info!(standby = %hello.name, "standby connected; streaming the WAL");
    let mut tails: Vec<Option<Tail>> = logs
        .iter()
        .zip(&hello.positions)
        .map(|(l, &p)| Some(Tail::new(l.dir(), p)))
        .collect();
    loop {
        let c = cluster.clone();
        let (ends, ts) = tokio::task::spawn_blocking(move || c.log_cut()).await?;
        for (i, (log, &end)) in logs.iter().zip(&ends).enumerate() {
            if tails[i].as_ref().is_some_and(|t| t.next_lsn() > end) {
                // Nothing new on this log: no sync, no read.
                continue;
            }
            let l = log.clone();
            tokio::task::spawn_blocking(move || l.wait_durable(end)).await??;
            loop {
                let mut tail = tails[i].take().expect("a tail per log");
                let (tail, read) = tokio::task::spawn_blocking(move || {
                    let r = tail.read(end, FRAME_RECORDS);
                    (tail, r)
                })
                .await?;
                tails[i] = Some(tail);
                let chunk = match read {
                    Ok(Some(c)) => c,
                    Ok(None) => break,
                    Err(e) => {
                        let why = format!("{e}; rebuild the standby from an archive");
                        let _ = write_frame(&mut s, ERROR, &[why.as_bytes()]).await;
                        bail!(why);
                    }
                };
                let log = (i as u16).to_le_bytes();
                write_frame(&mut s, RECORDS, &[&log, &chunk.bytes]).await?;
            }
        }
        let cut = serde_json::to_vec(&Cut { ends, ts: ts.0 })?;
        write_frame(&mut s, CUT, &[&cut]).await?;
        tokio::time::sleep(ROUND_EVERY).await;
    }
}

/// `fortress standby`: keeps `data_dir` a copy of the primary's, LSN for
/// LSN, until stopped; reconnects after any failure.
pub fn run(args: crate::cli::StandbyArgs) -> anyhow::Result<()> {
    let _lock = crate::lock::DirLock::try_acquire(&args.data_dir)?
        .with_context(|| format!("another fortress process holds {}", args.data_dir.display()))?;
    let cipher = crate::key::load(args.key_file.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // Registered once: a SIGTERM between attempts is not lost.
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut copy: Option<Copy> = None;
        loop {
            tokio::select! {
                r = follow(&args, cipher.clone(), &mut copy) => {
                    if let Err(e) = r {
                        tracing::warn!(error = %format!("{e:#}"), "replication stream lost; reconnecting");
                    }
                }
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
            }
        }
        tracing::info!("standby stopped; start it with `fortress serve --data-dir` to promote it");
        anyhow::Ok(())
    })
}

/// The standby's open logs: each shard's store and the coordinator's log.
struct Copy {
    shards: Vec<ShardStore>,
    coordinator: Wal,
}

impl Copy {
    fn open(
        dir: &Path,
        shards: u32,
        cipher: Option<Arc<fortress_storage::cipher::Cipher>>,
    ) -> anyhow::Result<Copy> {
        let wal = WalOptions {
            cipher,
            ..WalOptions::default()
        };
        let stores = (0..shards)
            .map(|i| {
                let opts = ShardOptions {
                    wal: wal.clone(),
                    ..ShardOptions::default()
                };
                ShardStore::open(i, &dir.join(format!("shard-{i:03}")), opts)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let coordinator = Wal::open(&dir.join("coordinator"), wal, 0, |_| Ok(()))?;
        Ok(Copy {
            shards: stores,
            coordinator,
        })
    }

    fn positions(&self) -> Vec<u64> {
        self.shards
            .iter()
            .map(|s| s.last_lsn())
            .chain(std::iter::once(self.coordinator.last_lsn()))
            .collect()
    }

    /// Logs and applies one round, shards first, then the decisions.
    fn apply(&self, round: &[(usize, Vec<u8>)]) -> anyhow::Result<()> {
        for (log, bytes) in round {
            match self.shards.get(*log) {
                Some(s) => {
                    s.follow(bytes)?;
                }
                None => {
                    let last = self.coordinator.append_encoded(bytes)?;
                    self.coordinator.wait_durable(last)?;
                }
            }
        }
        Ok(())
    }
}

async fn follow(
    args: &crate::cli::StandbyArgs,
    cipher: Option<Arc<fortress_storage::cipher::Cipher>>,
    copy: &mut Option<Copy>,
) -> anyhow::Result<()> {
    let mut s = TcpStream::connect(&args.primary)
        .await
        .with_context(|| format!("connecting to the primary at {}", args.primary))?;
    s.set_nodelay(true)?;
    let identity = fortress_proxy::cluster::read_identity(&args.data_dir)
        .ok()
        .flatten();
    let positions = match (copy.as_ref(), &identity) {
        (Some(c), _) => c.positions(),
        (None, Some(id)) => {
            let c = open_copy(&args.data_dir, id.shards, cipher.clone()).await?;
            let p = c.positions();
            *copy = Some(c);
            p
        }
        (None, None) => Vec::new(),
    };
    let hello = Hello {
        token: token_from_env().unwrap_or_default(),
        name: args.name.clone(),
        positions: positions.clone(),
    };
    write_frame(&mut s, HELLO, &[&serde_json::to_vec(&hello)?]).await?;
    let (kind, payload) = read_frame(&mut s, MAX_FRAME).await?;
    if kind == ERROR {
        bail!("the primary refused: {}", String::from_utf8_lossy(&payload));
    }
    let welcome: Welcome = serde_json::from_slice(&payload).context("a malformed WELCOME")?;
    match &identity {
        Some(id) if id.id != welcome.cluster => bail!(
            "{} is a copy of cluster {}, and the primary is {}",
            args.data_dir.display(),
            id.id,
            welcome.cluster
        ),
        Some(_) => {}
        None if positions.is_empty() => {
            // A new standby: the primary's identity, then logs from the start.
            std::fs::create_dir_all(&args.data_dir)?;
            fortress_proxy::cluster::write_identity_as(
                &args.data_dir,
                &fortress_proxy::cluster::Identity {
                    shards: welcome.shards,
                    vnodes: welcome.vnodes,
                    id: welcome.cluster.clone(),
                },
            )?;
            *copy = Some(open_copy(&args.data_dir, welcome.shards, cipher.clone()).await?);
            // The primary streams from what HELLO said: nothing yet. Start
            // again, now with positions.
            bail!(
                "initialised {}; reconnecting with its positions",
                args.data_dir.display()
            );
        }
        None => {}
    }
    tracing::info!(primary = %args.primary, "following the primary");
    let mut round: Vec<(usize, Vec<u8>)> = Vec::new();
    loop {
        let (kind, payload) = read_frame(&mut s, MAX_FRAME).await?;
        match kind {
            RECORDS if payload.len() >= 2 => {
                let log = u16::from_le_bytes([payload[0], payload[1]]) as usize;
                round.push((log, payload[2..].to_vec()));
            }
            CUT => {
                let cut: Cut = serde_json::from_slice(&payload).context("a malformed CUT")?;
                let take = std::mem::take(&mut round);
                let c = copy.take().context("no open copy")?;
                let (c, applied) = tokio::task::spawn_blocking(move || {
                    let r = c.apply(&take);
                    (c, r)
                })
                .await?;
                *copy = Some(c);
                applied?;
                tracing::debug!(ends = ?cut.ends, "applied a round");
            }
            ERROR => bail!("the primary: {}", String::from_utf8_lossy(&payload)),
            k => bail!("unexpected frame kind {k}"),
        }
    }
}

async fn open_copy(
    dir: &Path,
    shards: u32,
    cipher: Option<Arc<fortress_storage::cipher::Cipher>>,
) -> anyhow::Result<Copy> {
    let dir: PathBuf = dir.to_path_buf();
    tokio::task::spawn_blocking(move || Copy::open(&dir, shards, cipher)).await?
}
