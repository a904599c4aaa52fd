//! WAL streaming from a primary's `--replication-listen` port to hot
//! standbys (`fortress standby`), which keep a copy of its data directory
//! LSN for LSN and serve reads from it. The same port serves a new
//! standby's copy ([`base`]) and multi-master peers ([`peer`]); a copy may
//! also come from an archive ([`from_archive`]).
//!
//! **Frames** on the TCP stream: `len:u32 | kind:u8 | payload[len]`,
//! little-endian. The standby opens with HELLO (JSON: token, name, each
//! log's last LSN); the primary answers WELCOME (JSON: the cluster's
//! identity) or ERROR (text), then sends rounds: RECORDS frames
//! (`log:u16 | encoded records`) for each log up to a cut taken at one
//! instant ([`fortress_proxy::Cluster::log_cut`]), then CUT (JSON: the ends
//! and the cut's time). A round with nothing new is a CUT alone: the
//! heartbeat. The standby answers each round it has logged durably with
//! ACK (JSON: each log's last LSN), which is how the primary knows its lag
//! and when a synchronous commit may be acknowledged.
//!
//! **Durability rule.** The standby holds a round's records in memory
//! until the round's CUT arrives, then logs them durably
//! ([`fortress_proxy::Cluster::follow_log`]), acknowledges, and applies
//! them ([`fortress_proxy::Cluster::follow_apply`]); its reads move to the
//! cut only once every log stands there, applied, so they never see half
//! of a multi-shard transaction.
//! **Recovery rule.** A standby that reconnects, or restarts, says where
//! its logs end, and the primary streams from there; if the primary no
//! longer has those records (recycled), it says so (GONE, text) and the
//! standby takes them from an archive ([`from_archive`]), then streams
//! again from the archive's cut.
//!
//! Authentication: FORTRESS_REPLICATION_TOKEN on both sides (compared as
//! SHA-256 digests in constant time); without one the primary listens on
//! loopback only.

pub mod base;
pub mod from_archive;
pub mod peer;
pub mod primary;
pub mod standby;

use std::time::Duration;

use anyhow::bail;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const HELLO: u8 = 1;
const WELCOME: u8 = 2;
const RECORDS: u8 = 3;
const CUT: u8 = 4;
const ERROR: u8 = 5;
const ACK: u8 = 6;
/// The records a standby needs are recycled: it must take them from an
/// archive (payload: text).
const GONE: u8 = 7;
/// Multi-master (see [`peer`]): a peer's hello, the answer, a batch of
/// row versions, a round's end, and how far the puller got.
const PEER_HELLO: u8 = 8;
const PEER_WELCOME: u8 = 9;
const PEER_BATCH: u8 = 10;
const PEER_TICK: u8 = 11;
const PEER_ACK: u8 = 12;
/// A new standby's copy from its primary (see [`base`]): a piece of a
/// checkpoint's file, and the end.
const BASE_FILE: u8 = 13;
const BASE_END: u8 = 14;
/// Largest HELLO accepted from a standby, before it is authenticated.
const MAX_HELLO: usize = 64 << 10;
/// Largest ACK: a few numbers per log.
const MAX_ACK: usize = 64 << 10;
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
    /// The standby's data directory id (empty from older versions).
    #[serde(default)]
    id: String,
    /// The lease epoch of the primary it last followed (0: none known).
    #[serde(default)]
    epoch: u64,
    /// Each log's last LSN, in [`fortress_proxy::Cluster::logs`] order;
    /// empty from a standby with no copy yet, which asks for the identity.
    positions: Vec<u64>,
    /// With no positions: the standby asks for a copy (see [`base`]).
    #[serde(default)]
    base: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Welcome {
    cluster: String,
    shards: u32,
    vnodes: usize,
    /// How the primary acknowledges commits with this standby: `async`
    /// or `sync`.
    #[serde(default)]
    mode: String,
    /// The write lease epoch the primary holds (0 without a lease).
    #[serde(default)]
    epoch: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Cut {
    ends: Vec<u64>,
    ts: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Ack {
    positions: Vec<u64>,
}

/// Writes one frame whose payload is `parts`, one after another.
async fn write_frame<W: AsyncWrite + Unpin>(
    s: &mut W,
    kind: u8,
    parts: &[&[u8]],
) -> std::io::Result<()> {
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

async fn read_frame<R: AsyncRead + Unpin>(s: &mut R, max: usize) -> anyhow::Result<(u8, Vec<u8>)> {
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

/// Whether `given` is the token `expected`, compared in constant time.
fn tokens_match(expected: &str, given: &str) -> bool {
    bool::from(digest(expected).ct_eq(&digest(given)))
}

/// The replication token from the environment.
pub fn token_from_env() -> Option<String> {
    std::env::var("FORTRESS_REPLICATION_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
}

/// Positions as `SHOW fortress.replication` prints them: `log:lsn,...`,
/// the shards by number and the coordinator as `c`.
fn format_positions(positions: &[u64]) -> String {
    let n = positions.len();
    positions
        .iter()
        .enumerate()
        .map(|(i, p)| match i + 1 == n {
            true => format!("c:{p}"),
            false => format!("{i}:{p}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}
