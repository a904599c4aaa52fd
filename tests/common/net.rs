//! A TCP relay on loopback that a test can cut or block: a link between
//! two processes made to fail on purpose.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

/// Forwards every connection to `to` until cut or blocked.
pub struct Relay {
    pub addr: String,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    blocked: Arc<AtomicBool>,
    accept: JoinHandle<()>,
}

impl Relay {
    pub async fn start(to: String) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let blocked: Arc<AtomicBool> = Arc::default();
        let (held, refusing) = (conns.clone(), blocked.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if refusing.load(Ordering::SeqCst) {
                    // Dropped at once: the peer sees the link fail.
                    continue;
                }
                let to = to.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(&to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                held.lock().unwrap().push(conn);
            }
        });
        Relay {
            addr,
            conns,
            blocked,
            accept,
        }
    }

    /// Cuts every connection through the relay (new ones still pass).
    pub fn cut(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Cuts every connection and refuses new ones until [`Relay::unblock`].
    pub fn block(&self) {
        self.blocked.store(true, Ordering::SeqCst);
        self.cut();
    }

    pub fn unblock(&self) {
        self.blocked.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
