//! Crash safety: SIGKILL the server while clients insert; after a restart,
//! every acknowledged row is there exactly once.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Server;

const CLIENTS: i32 = 8;
const MAX_PER_CLIENT: i32 = 2_000;

async fn load_until_killed(
    server: &mut Server,
    round: i32,
    kill_after: Duration,
) -> HashSet<(i32, i32)> {
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let mut tasks = Vec::new();
    for client_id in 0..CLIENTS {
        let c = server.client().await;
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let stmt = c
                .prepare("INSERT INTO ledger (round, client, seq, note) VALUES ($1, $2, $3, $4)")
                .await
                .unwrap();
            for seq in 0..MAX_PER_CLIENT {
                let note = format!("r{round}c{client_id}s{seq}");
                match c.execute(&stmt, &[&round, &client_id, &seq, &note]).await {
                    Ok(1) => {
                        acked.lock().unwrap().insert((client_id, seq));
                    }
                    Ok(n) => panic!("INSERT reported {n} rows"),
                    Err(_) => break, // the server is gone
                }
            }
        }));
    }
    tokio::time::sleep(kill_after).await;
    server.kill();
    for t in tasks {
        t.await.unwrap();
    }
    let set = acked.lock().unwrap().clone();
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_inserts_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    server
        .client()
        .await
        .batch_execute("CREATE TABLE ledger (round int, client int, seq int, note text NOT NULL, PRIMARY KEY (round, client, seq))")
        .await
        .unwrap();
    let started = Instant::now();
    // Kill at different moments of the load; bounded in rounds and time.
    let kill_points = [300u64, 700, 1100];
    for (round, ms) in kill_points.iter().enumerate() {
        let round = round as i32;
        let acked = load_until_killed(&mut server, round, Duration::from_millis(*ms)).await;
        assert!(
            !acked.is_empty(),
            "round {round}: no insert was acknowledged before the kill"
        );
        server.restart();
        let c = server.client().await;
        let rows = c
            .query(
                "SELECT client, seq, note FROM ledger WHERE round = $1",
                &[&round],
            )
            .await
            .unwrap();
        let mut found = HashSet::new();
        for r in &rows {
            let key: (i32, i32) = (r.get(0), r.get(1));
            assert!(
                found.insert(key),
                "round {round}: row {key:?} returned twice"
            );
            assert_eq!(
                r.get::<_, String>(2),
                format!("r{round}c{}s{}", key.0, key.1)
            );
        }
        let lost: Vec<_> = acked.difference(&found).collect();
        assert!(
            lost.is_empty(),
            "round {round}: {} acknowledged rows lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
        // At most one in-flight, unacknowledged insert per client may have landed.
        assert!(found.len() <= acked.len() + CLIENTS as usize);
        eprintln!(
            "round {round}: killed after {ms} ms, {} acknowledged, {} present",
            acked.len(),
            found.len()
        );
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "crash test ran too long"
        );
    }
    server.stop();
}
