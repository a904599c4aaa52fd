//! One client connection: pgwire's message handling over a socket that
//! holds replies until the client's pending input has been read. pgwire
//! flushes after each reply; a pipelined Bind/Describe/Execute/Sync then
//! costs four `send`s, where PostgreSQL sends one packet. Here the replies go
//! out together when the server next waits for input (or past 64 KiB).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pgwire::api::{
    ClientInfo, DefaultClient, ErrorHandler, PgWireConnectionState, PgWireServerHandlers,
};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::response::{GssEncResponse, SslResponse};
use pgwire::messages::SslNegotiationMetaMessage;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{process_error, process_message, PgWireMessageServerCodec};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use super::frame::{Frames, Malformed};
use super::tls::{MaybeTls, TlsPolicy};
use crate::session::{Session, Timeout};

/// Replies held past this are written at once (large results stream).
const WRITE_THROUGH: usize = 64 * 1024;

/// A stream whose flushes wait for the next read (or shutdown), and whose
/// reads end before a message with an impossible length (see [`Frames`]).
pub struct Corked<S> {
    pub(super) inner: S,
    out: Vec<u8>,
    written: usize,
    frames: Frames,
    malformed: Option<Malformed>,
}

impl<S: AsyncWrite + Unpin> Corked<S> {
    pub fn new(inner: S) -> Corked<S> {
        Corked {
            inner,
            out: Vec::new(),
            written: 0,
            frames: Frames::default(),
            malformed: None,
        }
    }

    /// Why the input stopped early: a message whose length no message can
    /// have. The messages before it were read as usual.
    pub fn malformed(&self) -> Option<Malformed> {
        self.malformed
    }

    /// Writes out everything held.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.out.clear();
        self.written = 0;
        Pin::new(&mut self.inner).poll_flush(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Corked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        // About to wait for the client: it must have every reply first.
        if !me.out.is_empty() {
            ready!(me.poll_drain(cx))?;
        }
        if me.malformed.is_some() {
            // The end of the input, as far as the decoder is concerned.
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut me.inner).poll_read(cx, buf))?;
        if let Err((valid, why)) = me.frames.feed(&buf.filled()[before..]) {
            me.malformed = Some(why);
            buf.set_filled(before + valid);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Corked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if me.out.len() >= WRITE_THROUGH {
            ready!(me.poll_drain(cx))?;
        }
        me.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        ready!(me.poll_drain(cx))?;
        Pin::new(&mut me.inner).poll_shutdown(cx)
    }
}

/// How a connection is taken in.
#[derive(Debug, Clone, Copy)]
pub struct Admission {
    /// A client that has not finished its startup by then is closed.
    pub auth_timeout: Duration,
    /// The server is at its connection limit: the startup is answered with
    /// 53300 and the connection closed (a cancel request is still served).
    pub full: bool,
}

type Socket<S> = Framed<Corked<MaybeTls>, PgWireMessageServerCodec<S>>;

/// What the client asked before its startup message.
enum Negotiated {
    /// The startup (or a cancel request) is next, unread.
    Startup,
    /// TLS: the handshake is next.
    Tls,
    /// The client left, or its input ended at an impossible length.
    Closed,
}

/// Reads the SSL and GSS encryption requests before the startup message:
/// GSS is always refused (`N`), and so is SSL without a certificate (or
/// once the socket is encrypted); an SSL request to accept is handed back.
async fn negotiate<S>(socket: &mut Socket<S>, tls: Option<&TlsPolicy>) -> io::Result<Negotiated> {
    loop {
        let answer = match socket.next().await {
            Some(Ok(PgWireFrontendMessage::SslNegotiation(
                SslNegotiationMetaMessage::PostgresSsl(_),
            ))) => match tls {
                Some(_) if !socket.get_ref().inner.is_tls() => return Ok(Negotiated::Tls),
                _ => PgWireBackendMessage::SslResponse(SslResponse::Refuse),
            },
            Some(Ok(PgWireFrontendMessage::SslNegotiation(
                SslNegotiationMetaMessage::PostgresGss(_),
            ))) => PgWireBackendMessage::GssEncResponse(GssEncResponse::Refuse),
            // Anything else is left unread: the startup (or a cancel).
            Some(Ok(_)) => return Ok(Negotiated::Startup),
            Some(Err(e)) => return Err(undecodable(e)),
            None => return Ok(Negotiated::Closed),
        };
        socket.send(answer).await.map_err(io::Error::other)?;
    }
}

/// Answers an SSL request `S` and runs the TLS handshake on the socket.
async fn handshake<S>(
    socket: Socket<S>,
    peer: std::net::SocketAddr,
    policy: &TlsPolicy,
) -> io::Result<Socket<S>> {
    let mut socket = socket;
    socket
        .send(PgWireBackendMessage::SslResponse(SslResponse::Accept))
        .await
        .map_err(io::Error::other)?;
    let parts = socket.into_parts();
    if !parts.read_buf.is_empty() {
        // Bytes the client sent after its request and before the
        // handshake would be read as if encrypted.
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "received unencrypted data after SSL request",
        ));
    }
    let mut corked = parts.io;
    std::future::poll_fn(|cx| corked.poll_drain(cx)).await?;
    let MaybeTls::Plain(tcp) = std::mem::replace(&mut corked.inner, MaybeTls::Taken) else {
        return Err(io::Error::other("TLS requested twice"));
    };
    let tls = policy.acceptor.accept(tcp).await?;
    let codec = PgWireMessageServerCodec::new(DefaultClient::new(peer, true));
    Ok(Framed::new(
        Corked::new(MaybeTls::Tls(Box::new(tls))),
        codec,
    ))
}

/// Ends a connection with a FATAL error, as PostgreSQL does.
async fn fatal<S>(socket: &mut Socket<S>, code: &str, message: String) -> io::Result<()> {
    let info = ErrorInfo::new("FATAL".into(), code.into(), message);
    socket
        .send(PgWireBackendMessage::ErrorResponse(info.into()))
        .await
        .map_err(io::Error::other)
}

/// Serves one connection: an SSL request is answered with a TLS handshake
/// when `tls` has a certificate (else refused, as GSS encryption always
/// is), then startup and queries go through pgwire's `process_message`, as
/// its own `process_socket` does, over a [`Corked`] socket.
pub async fn process<H: PgWireServerHandlers>(
    tcp: TcpStream,
    handlers: H,
    admission: Admission,
    tls: Option<TlsPolicy>,
) -> io::Result<()> {
    let peer = tcp.peer_addr()?;
    tcp.set_nodelay(true)?;
    let startup = tokio::time::sleep(admission.auth_timeout);
    tokio::pin!(startup);
    let codec = PgWireMessageServerCodec::new(DefaultClient::new(peer, false));
    let mut socket = Framed::new(Corked::new(MaybeTls::Plain(tcp)), codec);
    // Encryption first, within the startup's time.
    let negotiated = loop {
        let next = tokio::select! {
            _ = &mut startup => Ok(Negotiated::Closed),
            next = negotiate(&mut socket, tls.as_ref()) => next,
        };
        match (next, &tls) {
            (Ok(Negotiated::Tls), Some(policy)) => {
                let handshake = tokio::select! {
                    _ = &mut startup => return Ok(()),
                    done = handshake(socket, peer, policy) => done,
                };
                match handshake {
                    Ok(encrypted) => socket = encrypted,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return Ok(());
                    }
                }
            }
            (next, _) => break next,
        }
    };
    let refuse_plain = tls.as_ref().is_some_and(|t| t.required) && !socket.get_ref().inner.is_tls();
    let result = async {
        let socket = &mut socket;
        match negotiated? {
            Negotiated::Startup => {}
            // Answered below when the input ended at an impossible length.
            Negotiated::Closed | Negotiated::Tls => return Ok(()),
        }
        socket.set_state(PgWireConnectionState::AwaitingStartup);

        let startup_handler = handlers.startup_handler();
        let simple = handlers.simple_query_handler();
        let extended = handlers.extended_query_handler();
        let copy = handlers.copy_handler();
        let cancel = handlers.cancel_handler();
        let errors = handlers.error_handler();
        // The session, once startup made it (looked up once, not per message).
        let mut session: Option<Arc<Session>> = None;
        loop {
            let starting = matches!(
                socket.state(),
                PgWireConnectionState::AwaitingStartup
                    | PgWireConnectionState::AuthenticationInProgress
            );
            let msg = if starting {
                tokio::select! {
                    _ = &mut startup => None,
                    msg = socket.next() => msg,
                }
            } else {
                if session.is_none() {
                    session = socket.session_extensions().get::<Session>();
                }
                let copying = matches!(socket.state(), PgWireConnectionState::CopyInProgress(_));
                let idle = session
                    .as_deref()
                    .filter(|_| !copying)
                    .and_then(idle_in_transaction);
                match idle {
                    Some(limit) => match tokio::time::timeout(limit, socket.next()).await {
                        Ok(msg) => msg,
                        // The session and its transaction (with its row
                        // locks) end with the connection.
                        Err(_) => {
                            let why = "terminating connection due to idle-in-transaction timeout";
                            return fatal(socket, "25P03", why.into()).await;
                        }
                    },
                    None => socket.next().await,
                }
            };
            let msg = match msg {
                Some(Ok(msg)) => msg,
                Some(Err(e)) => return Err(undecodable(e)),
                None => break,
            };
            if matches!(msg, PgWireFrontendMessage::Terminate(_)) {
                break;
            }
            if admission.full && matches!(msg, PgWireFrontendMessage::Startup(_)) {
                let full = "sorry, too many clients already".to_string();
                return fatal(socket, "53300", full).await;
            }
            if refuse_plain && matches!(msg, PgWireFrontendMessage::Startup(_)) {
                let why = "this server accepts only encrypted connections: connect with \
                           sslmode=require (or verify-full)";
                return fatal(socket, "28000", why.into()).await;
            }
            let extended_query = match socket.state() {
                PgWireConnectionState::CopyInProgress(extended_query) => extended_query,
                _ => msg.is_extended_query(),
            };
            let is_cancel = matches!(msg, PgWireFrontendMessage::CancelRequest(_));
            let handled = process_message(
                msg,
                socket,
                startup_handler.clone(),
                simple.clone(),
                extended.clone(),
                copy.clone(),
                cancel.clone(),
            )
            .await;
            if let Err(mut e) = handled {
                errors.on_error(socket, &mut e);
                let fatal = e.is_fatal();
                process_error(socket, e, extended_query).await?;
                if fatal {
                    break;
                }
            }
            if is_cancel {
                break;
            }
        }
        Ok(())
    }
    .await;
    // Input that stopped at an impossible length, or that pgwire could not
    // decode, is answered before closing, as PostgreSQL answers it.
    let why = match &result {
        _ if socket.get_ref().malformed().is_some() => {
            socket.get_ref().malformed().map(str::to_string)
        }
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Some(e.to_string()),
        _ => None,
    };
    if let Some(why) = why {
        let _ = fatal(&mut socket, "08P01", why).await;
    }
    // Whatever is still held (a FATAL error, say) goes out before closing;
    // the client may be gone already.
    let _ = std::future::poll_fn(|cx| Pin::new(socket.get_mut()).poll_shutdown(cx)).await;
    result.or_else(|e| match e.kind() {
        io::ErrorKind::InvalidData => Ok(()),
        _ => Err(e),
    })
}

/// How long the client may stay silent: its session's
/// `idle_in_transaction_session_timeout`, while a transaction block is open
/// (waiting for COPY data is not idle: the caller leaves that out).
fn idle_in_transaction(session: &Session) -> Option<Duration> {
    // The setting first: it is an atomic load, the status takes a lock.
    let limit = session.timeout(Timeout::IdleInTransaction)?;
    (session.txn_status() != b'I').then_some(limit)
}

/// A decoding error of pgwire's, as an error that ends the connection with
/// 08P01.
fn undecodable(e: PgWireError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}
