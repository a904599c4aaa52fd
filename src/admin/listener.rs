//! The admin API's listener for `axum::serve`: at most [`MAX_CONNECTIONS`]
//! connections at once (the next wait in the kernel's backlog), so clients
//! of the API cannot take the file descriptors the shards need; and, with a
//! certificate, HTTPS, each handshake in a task of its own and bounded in
//! time, so one slow client cannot hold up the others.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// Admin connections open at once.
pub const MAX_CONNECTIONS: usize = 64;
/// A client's TLS handshake must end within this.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// A connection holding its place among [`MAX_CONNECTIONS`].
pub struct Counted {
    io: Box<dyn Io>,
    _place: OwnedSemaphorePermit,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_shutdown(cx)
    }
}

pub struct AdminListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(Counted, SocketAddr)>,
}

impl AdminListener {
    /// Accepts on `tcp` (HTTPS with `tls`) in a task of its own.
    pub fn new(tcp: TcpListener, tls: Option<Arc<ServerConfig>>) -> io::Result<AdminListener> {
        let local = tcp.local_addr()?;
        let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let acceptor = tls.map(TlsAcceptor::from);
        let (tx, ready) = mpsc::channel(MAX_CONNECTIONS);
        tokio::spawn(async move {
            loop {
                let place = places.clone().acquire_owned().await.expect("never closed");
                let (stream, peer) = match tcp.accept().await {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin API accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let tx = tx.clone();
                match &acceptor {
                    None => {
                        let conn = Counted {
                            io: Box::new(stream),
                            _place: place,
                        };
                        let _ = tx.send((conn, peer)).await;
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => {
                                    let conn = Counted {
                                        io: Box::new(tls),
                                        _place: place,
                                    };
                                    let _ = tx.send((conn, peer)).await;
                                }
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "admin API TLS handshake failed")
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "admin API TLS handshake timed out")
                                }
                            }
                        });
                    }
                }
            }
        });
        Ok(AdminListener { local, ready })
    }
}

impl axum::serve::Listener for AdminListener {
    type Io = Counted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accepting task is gone: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}
