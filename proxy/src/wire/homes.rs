//! Connection threads: each runs a single-threaded tokio runtime and owns the
//! connections it is handed for their whole life, so a statement's wake-ups
//! stay on one thread instead of bouncing between work-stealing workers.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// How long stopping waits for a connection's blocking shard task to end.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// One connection thread: its runtime's handle and how many connections live
/// on it.
struct Home {
    handle: tokio::runtime::Handle,
    live: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// The connection threads; dropping this stops them, closing their
/// connections.
pub struct Homes {
    homes: Vec<Home>,
}

/// Counts a connection as live on its home until dropped.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Homes {
    /// Starts `threads` connection threads (at least one).
    pub fn start(threads: usize) -> io::Result<Homes> {
        let homes = (0..threads.max(1))
            .map(|i| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .thread_stack_size(crate::limits::THREAD_STACK_BYTES)
                    .build()?;
                let handle = runtime.handle().clone();
                let (stop, stopped) = oneshot::channel::<()>();
                let thread = std::thread::Builder::new()
                    .name(format!("fortress-conn-{i}"))
                    .stack_size(crate::limits::THREAD_STACK_BYTES)
                    .spawn(move || {
                        runtime.block_on(async {
                            let _ = stopped.await;
                        });
                        runtime.shutdown_timeout(STOP_GRACE);
                    })?;
                Ok(Home {
                    handle,
                    live: Arc::default(),
                    stop: Some(stop),
                    thread: Some(thread),
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Homes { homes })
    }

    /// Moves `socket` to the thread with the fewest live connections and runs
    /// `serve` on it there.
    pub fn run<F, Fut>(&self, socket: TcpStream, serve: F) -> io::Result<()>
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let home = self
            .homes
            .iter()
            .min_by_key(|h| h.live.load(Ordering::Relaxed))
            .expect("at least one connection thread");
        // Leave this runtime's reactor; the home's registers it anew.
        let socket = socket.into_std()?;
        home.live.fetch_add(1, Ordering::Relaxed);
        let live = Live(home.live.clone());
        home.handle.spawn(async move {
            let _live = live;
            match TcpStream::from_std(socket) {
                Ok(socket) => serve(socket).await,
                Err(e) => tracing::warn!(error = %e, "could not adopt a connection"),
            }
        });
        Ok(())
    }

    /// Live connections per thread, in thread order.
    pub fn live(&self) -> Vec<usize> {
        self.homes
            .iter()
            .map(|h| h.live.load(Ordering::Relaxed))
            .collect()
    }
}

impl Drop for Homes {
    fn drop(&mut self) {
        for home in &mut self.homes {
            if let Some(stop) = home.stop.take() {
                let _ = stop.send(());
            }
        }
        for home in &mut self.homes {
            if let Some(thread) = home.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Connections spread over the threads and are served there; a closed
    /// one stops counting.
    #[tokio::test]
    async fn connections_are_spread_and_served() {
        let homes = Homes::start(2).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        for _ in 0..4 {
            let client = TcpStream::connect(addr).await.unwrap();
            let (socket, _) = listener.accept().await.unwrap();
            homes
                .run(socket, |mut s| async move {
                    let name = std::thread::current().name().unwrap_or("").to_string();
                    let mut byte = [0u8; 1];
                    while s.read_exact(&mut byte).await.is_ok() {
                        let reply = format!("{}{}\n", byte[0] as char, name);
                        if s.write_all(reply.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                })
                .unwrap();
            clients.push(client);
        }
        assert_eq!(homes.live(), vec![2, 2]);
        let mut threads = std::collections::BTreeSet::new();
        for (i, c) in clients.iter_mut().enumerate() {
            let b = b'a' + i as u8;
            c.write_all(&[b]).await.unwrap();
            let mut buf = vec![0u8; 64];
            let n = c.read(&mut buf).await.unwrap();
            let reply = String::from_utf8_lossy(&buf[..n]).to_string();
            assert!(reply.starts_with(b as char), "{reply}");
            threads.insert(reply.trim()[1..].to_string());
        }
        assert_eq!(
            threads.into_iter().collect::<Vec<_>>(),
            vec!["fortress-conn-0", "fortress-conn-1"]
        );
        drop(clients.pop());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while homes.live().iter().sum::<usize>() != 3 {
            assert!(std::time::Instant::now() < deadline, "{:?}", homes.live());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
