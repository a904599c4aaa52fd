//! The primary's side: `--replication-listen`, one stream per standby,
//! and what each standby has acknowledged (its lag).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use fortress_proxy::standby::ReplicationRow;
use fortress_proxy::Cluster;
use fortress_storage::tail::Tail;
use subtle::ConstantTimeEq;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// Rounds remembered per standby before the oldest are merged.
const MAX_UNACKED: usize = 1 << 14;

/// Every standby that has connected since start, by name.
#[derive(Default)]
pub struct Standbys {
    links: Mutex<BTreeMap<String, Arc<Link>>>,
}

/// One standby's stream, live or ended.
pub struct Link {
    name: String,
    addr: String,
    state: Mutex<LinkState>,
}

#[derive(Default)]
struct LinkState {
    /// `None` while streaming; why it ended otherwise.
    ended: Option<String>,
    /// Rounds sent and not yet acknowledged, oldest first.
    unacked: VecDeque<Sent>,
    /// Each log's last LSN the standby has applied.
    acked: Vec<u64>,
}

struct Sent {
    ends: Vec<u64>,
    bytes: u64,
    at: Instant,
}

impl Link {
    fn sent(&self, ends: Vec<u64>, bytes: u64) {
        let mut st = self.state.lock().expect("link");
        if st.unacked.len() >= MAX_UNACKED {
            // A standby that stopped acknowledging: keep the oldest time
            // and every byte, in fewer entries.
            let first = st.unacked.pop_front().expect("not empty");
            let second = st.unacked.front_mut().expect("not empty");
            second.bytes += first.bytes;
            second.at = first.at;
        }
        st.unacked.push_back(Sent {
            ends,
            bytes,
            at: Instant::now(),
        });
    }

    fn acked(&self, positions: Vec<u64>) {
        let mut st = self.state.lock().expect("link");
        while st.unacked.front().is_some_and(|s| {
            s.ends.len() == positions.len() && s.ends.iter().zip(&positions).all(|(e, p)| e <= p)
        }) {
            st.unacked.pop_front();
        }
        st.acked = positions;
    }

    fn end(&self, why: String) {
        self.state.lock().expect("link").ended = Some(why);
    }

    fn row(&self) -> ReplicationRow {
        let st = self.state.lock().expect("link");
        ReplicationRow {
            name: self.name.clone(),
            role: "standby".into(),
            state: match &st.ended {
                None => "streaming".into(),
                Some(why) => format!("disconnected: {why}"),
            },
            mode: "async".into(),
            positions: format_positions(&st.acked),
            lag_bytes: st.unacked.iter().map(|s| s.bytes).sum(),
            lag_seconds: st
                .unacked
                .front()
                .map_or(0.0, |s| s.at.elapsed().as_secs_f64()),
        }
    }
}

impl Standbys {
    /// What `SHOW fortress.replication` and the API report of them.
    pub fn rows(&self) -> Vec<ReplicationRow> {
        let links = self.links.lock().expect("links");
        links.values().map(|l| l.row()).collect()
    }

    fn connect(&self, name: &str, addr: String) -> Arc<Link> {
        let link = Arc::new(Link {
            name: name.to_string(),
            addr,
            state: Mutex::default(),
        });
        let mut links = self.links.lock().expect("links");
        if let Some(old) = links.get(name) {
            if old.state.lock().expect("link").ended.is_none() {
                tracing::warn!(
                    standby = name,
                    old = %old.addr,
                    new = %link.addr,
                    "two standbys stream under one name; only the newer is reported"
                );
            }
        }
        links.insert(name.to_string(), link.clone());
        link
    }
}

/// Serves standbys on `listener` for as long as the server runs; reports
/// them to `SHOW fortress.replication`.
pub fn serve(listener: TcpListener, cluster: Arc<Cluster>, token: Option<String>) -> Arc<Standbys> {
    let standbys = Arc::new(Standbys::default());
    let report = standbys.clone();
    cluster.set_replication_report(Arc::new(move || report.rows()));
    let registry = standbys.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let (cluster, token, registry) = (cluster.clone(), token.clone(), registry.clone());
            tokio::spawn(async move {
                if let Err(e) = stream_to(stream, cluster, token.as_deref(), &registry).await {
                    tracing::info!(%peer, error = %format!("{e:#}"), "standby stream ended");
                }
            });
        }
    });
    standbys
}

/// One standby's stream: the handshake, then rounds until it goes away.
async fn stream_to(
    mut s: TcpStream,
    cluster: Arc<Cluster>,
    token: Option<&str>,
    standbys: &Standbys,
) -> anyhow::Result<()> {
    s.set_nodelay(true)?;
    let peer = s.peer_addr()?.to_string();
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
    } else if cluster.is_standby() {
        Some("this node is a standby itself (cascading replication is not supported)".into())
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
    tracing::info!(standby = %hello.name, %peer, "standby connected; streaming the WAL");
    let link = standbys.connect(&hello.name, peer);
    link.acked(hello.positions.clone());
    let (mut rd, mut wr) = s.into_split();
    let acks: tokio::task::JoinHandle<anyhow::Result<()>> = {
        let link = link.clone();
        tokio::spawn(async move {
            loop {
                let (kind, payload) = read_frame(&mut rd, MAX_ACK).await?;
                if kind != ACK {
                    bail!("expected ACK, got frame kind {kind}");
                }
                let ack: Ack = serde_json::from_slice(&payload).context("a malformed ACK")?;
                link.acked(ack.positions);
            }
        })
    };
    let streamed = tokio::select! {
        r = rounds(&mut wr, &cluster, &hello.positions, &link) => r,
        r = acks => match r {
            Ok(Err(e)) => Err(e),
            _ => Err(anyhow::anyhow!("the standby's acknowledgements stopped")),
        },
    };
    let why = match &streamed {
        Ok(()) => "closed".to_string(),
        Err(e) => format!("{e:#}"),
    };
    link.end(why);
    streamed
}

/// Sends rounds from `positions` on, every [`ROUND_EVERY`], until the
/// connection fails.
async fn rounds(
    wr: &mut OwnedWriteHalf,
    cluster: &Arc<Cluster>,
    positions: &[u64],
    link: &Link,
) -> anyhow::Result<()> {
    let logs = cluster.logs();
    let mut tails: Vec<Option<Tail>> = logs
        .iter()
        .zip(positions)
        .map(|(l, &p)| Some(Tail::new(l.dir(), p)))
        .collect();
    loop {
        let c = cluster.clone();
        let (ends, ts) = tokio::task::spawn_blocking(move || c.log_cut()).await?;
        let mut bytes = 0u64;
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
                        let _ = write_frame(wr, ERROR, &[why.as_bytes()]).await;
                        bail!(why);
                    }
                };
                bytes += chunk.bytes.len() as u64;
                let log = (i as u16).to_le_bytes();
                write_frame(wr, RECORDS, &[&log, &chunk.bytes]).await?;
            }
        }
        let cut = serde_json::to_vec(&Cut {
            ends: ends.clone(),
            ts: ts.0,
        })?;
        link.sent(ends, bytes);
        write_frame(wr, CUT, &[&cut]).await?;
        tokio::time::sleep(ROUND_EVERY).await;
    }
}
