//! `fortress standby` against the real binary: a copy of a primary's data
//! directory kept LSN for LSN over --replication-listen while clients
//! write, promoted by starting `fortress serve` on it after the primary is
//! killed; it holds whole transactions only, and everything the primary
//! acknowledged before a quiet moment.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{bank_under_transfers, free_port, Server};

const TOKEN: &str = "replication-token-0123456789";
const ACCOUNTS: i32 = 16;
const START: i64 = 1000;

/// A `fortress standby` process, stopped (SIGTERM) when dropped.
struct Standby {
    child: Child,
}

impl Standby {
    fn start(dir: &std::path::Path, primary: &str, token: &str) -> Standby {
        let log = std::fs::File::create(dir.with_extension("log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_fortress"))
            .args(["standby", "--data-dir"])
            .arg(dir)
            .args(["--primary", primary, "--name", "dr1"])
            .env("FORTRESS_REPLICATION_TOKEN", token)
            .env("FORTRESS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start fortress standby");
        Standby { child }
    }

    fn stop(&mut self) {
        // SAFETY: the child's pid, signalled once.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn balances(server: &Server) -> Vec<(i32, i64)> {
    let c = server.client().await;
    let mut b: Vec<(i32, i64)> = c
        .query("SELECT id, balance FROM acct", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    b.sort();
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_follows_under_load_and_is_promoted_whole_after_the_primary_is_killed() {
    let root = tempfile::tempdir().unwrap();
    let repl = free_port();
    let listen = format!("127.0.0.1:{repl}");
    let mut primary = Server::launch_args(
        root.path().join("primary"),
        4,
        &[("FORTRESS_REPLICATION_TOKEN", TOKEN)],
        &["--replication-listen", &listen],
    );
    let copy = root.path().join("standby");
    // A wrong token is refused, and the copy is not made.
    let mut wrong = Standby::start(&copy, &listen, "not-the-token-at-all");
    tokio::time::sleep(Duration::from_millis(800)).await;
    wrong.stop();
    let log = std::fs::read_to_string(copy.with_extension("log")).unwrap();
    assert!(log.contains("token does not match"), "{log}");
    assert!(!copy.join("fortress.cluster").exists());

    let mut standby = Standby::start(&copy, &listen, TOKEN);
    let stop = Arc::new(AtomicBool::new(false));
    let workers = bank_under_transfers(&primary, ACCOUNTS, START, stop.clone()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The standby restarts mid-load and catches up from where it was.
    standby.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut standby = Standby::start(&copy, &listen, TOKEN);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // A quiet moment: everything acknowledged reaches the standby.
    stop.store(true, Ordering::Relaxed);
    let mut transfers = 0;
    for w in workers {
        transfers += w.await.unwrap();
    }
    assert!(transfers > 20, "only {transfers} transfers ran");
    let acknowledged = balances(&primary).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    primary.kill();
    standby.stop();
    // Promotion: the copy started as a server.
    let mut promoted = Server::launch_args(copy.clone(), 4, &[], &[]);
    let got = balances(&promoted).await;
    assert_eq!(got.len(), ACCOUNTS as usize);
    assert_eq!(
        got, acknowledged,
        "the standby lacks acknowledged transfers"
    );
    let c = promoted.client().await;
    c.batch_execute("UPDATE acct SET balance = balance + 1 WHERE id = 0")
        .await
        .unwrap();
    drop(c);
    promoted.stop();
    let _ = std::fs::remove_file(copy.with_extension("log"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_promoted_after_a_kill_under_load_holds_no_half_transfer() {
    let root = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut primary = Server::launch_args(
        root.path().join("primary"),
        4,
        &[],
        &["--replication-listen", &listen],
    );
    let copy = root.path().join("standby");
    let mut standby = Standby::start(&copy, &listen, "");
    let stop = Arc::new(AtomicBool::new(false));
    let workers = bank_under_transfers(&primary, ACCOUNTS, START, stop.clone()).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    // Killed with transfers in flight.
    stop.store(true, Ordering::Relaxed);
    primary.kill();
    for w in workers {
        w.await.unwrap();
    }
    standby.stop();
    let mut promoted = Server::launch_args(copy, 4, &[], &[]);
    let got = balances(&promoted).await;
    assert_eq!(got.len(), ACCOUNTS as usize);
    let total: i64 = got.iter().map(|(_, b)| b).sum();
    assert_eq!(total, ACCOUNTS as i64 * START, "a transfer was cut in half");
    assert!(
        got.iter().any(|(_, b)| *b != START),
        "the standby followed none of the transfers"
    );
    promoted.stop();
}
