//! One client connection: pgwire's message handling over a socket that
//! holds replies until the client's pending input has been read. pgwire
//! flushes after each reply; a pipelined Bind/Describe/Execute/Sync then
//! costs four `send`s, where PostgreSQL sends one packet. Here the replies go
//! out together when the server next waits for input (or past 64 KiB).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pgwire::api::{
    ClientInfo, DefaultClient, ErrorHandler, PgWireConnectionState, PgWireServerHandlers,
};
use pgwire::messages::response::{GssEncResponse, SslResponse};
use pgwire::messages::SslNegotiationMetaMessage;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{process_error, process_message, PgWireMessageServerCodec};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// Replies held past this are written at once (large results stream).
const WRITE_THROUGH: usize = 64 * 1024;

/// A client that has not finished its startup by then is dropped.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A stream whose flushes wait for the next read (or shutdown).
pub struct Corked<S> {
    inner: S,
    out: Vec<u8>,
    written: usize,
}

impl<S: AsyncWrite + Unpin> Corked<S> {
    pub fn new(inner: S) -> Corked<S> {
        Corked {
            inner,
            out: Vec::new(),
            written: 0,
        }
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
        Pin::new(&mut me.inner).poll_read(cx, buf)
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

/// Serves one connection: SSL and GSS encryption requests are refused, then
/// startup and queries go through pgwire's `process_message`, as its own
/// `process_socket` does, over a [`Corked`] socket.
pub async fn process<H: PgWireServerHandlers>(tcp: TcpStream, handlers: H) -> io::Result<()> {
    let peer = tcp.peer_addr()?;
    tcp.set_nodelay(true)?;
    let codec = PgWireMessageServerCodec::new(DefaultClient::new(peer, false));
    let mut socket = Framed::new(Corked::new(tcp), codec);
    let startup = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup);
    loop {
        let msg = tokio::select! {
            _ = &mut startup => return Ok(()),
            msg = socket.next() => msg,
        };
        let refusal = match msg {
            Some(Ok(PgWireFrontendMessage::SslNegotiation(
                SslNegotiationMetaMessage::PostgresSsl(_),
            ))) => PgWireBackendMessage::SslResponse(SslResponse::Refuse),
            Some(Ok(PgWireFrontendMessage::SslNegotiation(
                SslNegotiationMetaMessage::PostgresGss(_),
            ))) => PgWireBackendMessage::GssEncResponse(GssEncResponse::Refuse),
            // Anything else is left unread: the startup (or a cancel).
            Some(Ok(_)) => break,
            _ => return Ok(()),
        };
        socket.send(refusal).await?;
    }
    socket.set_state(PgWireConnectionState::AwaitingStartup);

    let startup_handler = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();
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
            socket.next().await
        };
        let Some(Ok(msg)) = msg else { break };
        if matches!(msg, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended_query) => extended_query,
            _ => msg.is_extended_query(),
        };
        let is_cancel = matches!(msg, PgWireFrontendMessage::CancelRequest(_));
        let handled = process_message(
            msg,
            &mut socket,
            startup_handler.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await;
        if let Err(mut e) = handled {
            errors.on_error(&socket, &mut e);
            let fatal = e.is_fatal();
            process_error(&mut socket, e, extended_query).await?;
            if fatal {
                break;
            }
        }
        if is_cancel {
            break;
        }
    }
    // Whatever is still held (a FATAL error, say) goes out before closing;
    // the client may be gone already.
    let _ = std::future::poll_fn(|cx| Pin::new(socket.get_mut()).poll_shutdown(cx)).await;
    Ok(())
}
