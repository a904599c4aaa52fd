//! Taking connections in: the accept loop, the connection limit and what
//! happens when the process runs out of file descriptors. Each connection
//! is served on one of the connection threads ([`super::homes`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::copy::CopyHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::PgWireServerHandlers;
use tokio::net::TcpListener;

use super::{conn, homes, Handler};
use crate::cluster::Cluster;

/// The handler factory pgwire asks for each connection's handlers.
pub struct Server {
    handler: Arc<Handler>,
}

impl PgWireServerHandlers for Server {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.handler.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.handler.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.handler.clone()
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.handler.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::new(DefaultCancelHandler::new(self.handler.conns.clone()))
    }
}

/// How the server takes in connections.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Connection threads (see [`homes`]).
    pub threads: usize,
    /// Connections served at once; the next client gets 53300.
    pub max_connections: usize,
    /// A client that has not finished its startup by then is closed.
    pub auth_timeout: std::time::Duration,
    /// Settings every session starts with, e.g. `statement_timeout`.
    pub session_defaults: Vec<(String, String)>,
    /// Counts of connections, shared with whoever reports them.
    pub stats: Arc<ConnectionStats>,
    /// Who may connect (SCRAM-SHA-256); `None` admits every client.
    pub users: Option<Arc<crate::users::Users>>,
    /// TLS, when the server has a certificate.
    pub tls: Option<super::tls::TlsPolicy>,
}

/// Client connections: open now, and taken in or refused since start.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    active: AtomicU64,
    accepted: AtomicU64,
    /// Refused with 53300 (the limit, or out of file descriptors).
    refused: AtomicU64,
}

impl ConnectionStats {
    /// (open now, accepted in all, refused in all).
    pub fn read(&self) -> (u64, u64, u64) {
        (
            self.active.load(Ordering::Relaxed),
            self.accepted.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }
}

/// One open connection, counted while it lives.
struct Open(Arc<ConnectionStats>);

impl Open {
    fn new(stats: &Arc<ConnectionStats>) -> Open {
        stats.active.fetch_add(1, Ordering::Relaxed);
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        Open(stats.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// True for the accept errors that mean the process (or system) is out of
/// file descriptors.
fn out_of_files(e: &std::io::Error) -> bool {
    // EMFILE, ENFILE
    matches!(e.raw_os_error(), Some(24) | Some(23))
}

/// The FATAL 53300 ErrorResponse, as bytes.
fn too_many_clients() -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "53300"),
        (b'M', "sorry, too many clients already"),
    ] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = vec![b'E'];
    msg.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    msg.extend_from_slice(&body);
    msg
}

/// Answers a client taken in on the reserved file descriptor: its first
/// packet is read (closing with it unread would reset the connection and
/// lose the answer), then 53300.
async fn refuse_out_of_files(mut socket: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let refuse = async {
        let mut first = [0u8; 1024];
        let _ = socket.read(&mut first).await;
        let _ = socket.write_all(&too_many_clients()).await;
        let _ = socket.shutdown().await;
    };
    // Short: while descriptors are out, this holds up the accept loop.
    let _ = tokio::time::timeout(std::time::Duration::from_millis(200), refuse).await;
}

/// Accepts connections until `shutdown` resolves, serving each on one of
/// the connection threads; returning closes the connections. Past
/// `max_connections`, or when the process runs out of file descriptors
/// (one is kept in reserve to answer with), a new client gets 53300 and
/// the others are not disturbed.
pub async fn serve(
    listener: TcpListener,
    cluster: Arc<Cluster>,
    opts: ServeOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let server = Arc::new(Server {
        handler: Arc::new(Handler::new(
            cluster,
            opts.session_defaults.clone(),
            opts.users.clone(),
            opts.tls.as_ref().map(|t| t.cert_pem.as_slice()),
        )),
    });
    let homes = homes::Homes::start(opts.threads)?;
    let slots = Arc::new(tokio::sync::Semaphore::new(opts.max_connections));
    let mut reserve = std::fs::File::open("/dev/null").ok();
    let mut out_of_fds = false;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(a) => {
                out_of_fds = false;
                a
            }
            Err(e) if out_of_files(&e) => {
                if !out_of_fds {
                    // Logged once per episode, not per refused client.
                    tracing::warn!(
                        error = %e,
                        "out of file descriptors: new clients get 53300 until connections close"
                    );
                    out_of_fds = true;
                }
                // The client that could not be taken in is still queued:
                // take it in on the reserve's descriptor to answer it. (Not
                // waiting: a later client may find descriptors free again.)
                drop(reserve.take());
                match futures::FutureExt::now_or_never(listener.accept()) {
                    Some(Ok((socket, _))) => {
                        opts.stats.refused.fetch_add(1, Ordering::Relaxed);
                        refuse_out_of_files(socket).await
                    }
                    _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                }
                reserve = std::fs::File::open("/dev/null").ok();
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let server = server.clone();
        let slot = slots.clone().try_acquire_owned().ok();
        let admission = conn::Admission {
            auth_timeout: opts.auth_timeout,
            full: slot.is_none(),
        };
        if admission.full {
            opts.stats.refused.fetch_add(1, Ordering::Relaxed);
        }
        let open = slot.is_some().then(|| Open::new(&opts.stats));
        let tls = opts.tls.clone();
        let adopted = homes.run(socket, move |socket| async move {
            let _slot = slot;
            let _open = open;
            // pgwire 0.42 panics decoding some malformed messages (see
            // `frame`): that ends this connection only.
            let session =
                std::panic::AssertUnwindSafe(conn::process(socket, server, admission, tls));
            match futures::FutureExt::catch_unwind(session).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "connection ended with an error")
                }
                Err(_) => tracing::warn!(
                    %peer,
                    "closed a connection whose message the protocol decoder could not read"
                ),
            }
        });
        if let Err(e) = adopted {
            tracing::warn!(%peer, error = %e, "could not hand a connection to its thread");
        }
    }
    // Stopping joins the threads: do it where blocking is allowed.
    tokio::task::spawn_blocking(move || drop(homes))
        .await
        .map_err(std::io::Error::other)
}
