//! The control socket: how `fortress checkpoint create` asks the server that
//! holds a data directory to act, since only that process can read its
//! shards. A Unix socket in the data directory, readable by its owner only;
//! one JSON request line, one JSON reply line.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use fortress_proxy::Cluster;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

const SOCKET: &str = "fortress.sock";
/// Longest request line accepted.
const MAX_REQUEST: u64 = 64 << 10;
/// How long a client may take to send its request line.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The socket path of a data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

/// Serves control requests for `cluster` until the task is dropped. The
/// caller holds the directory lock, so a socket file left behind is stale.
pub fn listen(data_dir: &Path, cluster: Arc<Cluster>) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(data_dir);
    let _ = std::fs::remove_file(&path);
    // Socket paths are limited to about 100 bytes: a deep data directory
    // serves without one (checkpoint create then needs the server stopped).
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(socket = %path.display(), error = %e, "no control socket; `fortress checkpoint create` will need the server stopped");
            return Ok(());
        }
    };
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    continue;
                }
            };
            let cluster = cluster.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                let mut read =
                    tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_REQUEST));
                let got = tokio::time::timeout(REQUEST_TIMEOUT, read.read_line(&mut line)).await;
                if !matches!(got, Ok(Ok(_))) {
                    return;
                }
                let reply = handle(&cluster, &line).await;
                let mut out = reply.to_string();
                out.push('\n');
                let _ = write.write_all(out.as_bytes()).await;
            });
        }
    });
    Ok(())
}

async fn handle(cluster: &Arc<Cluster>, line: &str) -> serde_json::Value {
    let request: serde_json::Value = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => return serde_json::json!({"ok": false, "error": format!("bad request: {e}")}),
    };
    match (request["op"].as_str(), request["dir"].as_str()) {
        (Some("checkpoint"), Some(dir)) => {
            tracing::info!(dir, "checkpoint requested on the control socket");
            match cluster.checkpoint(Path::new(dir)).await {
                Ok(m) => {
                    crate::checkpoint::log_created(&m);
                    serde_json::json!({"ok": true, "manifest": m})
                }
                Err(e) => serde_json::json!({"ok": false, "error": e.to_string()}),
            }
        }
        _ => serde_json::json!({"ok": false, "error": "unknown request"}),
    }
}

/// Sends one request to the server holding `data_dir` and returns its reply.
pub fn request(data_dir: &Path, request: serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let path = socket_path(data_dir);
    let mut stream = std::os::unix::net::UnixStream::connect(&path).with_context(|| {
        format!(
            "a server holds {} but its control socket {} does not answer",
            data_dir.display(),
            path.display()
        )
    })?;
    let mut line = request.to_string();
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    let reply: serde_json::Value =
        serde_json::from_str(&reply).context("the server's reply is not JSON")?;
    if reply["ok"].as_bool() != Some(true) {
        anyhow::bail!(
            "the server refused: {}",
            reply["error"].as_str().unwrap_or("no reason given")
        );
    }
    Ok(reply)
}
