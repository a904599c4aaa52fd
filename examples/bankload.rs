//! Transfer throughput against a running fortress: 8 clients doing one-unit
//! transfers in explicit transactions for a fixed time, on one shard per
//! transaction (both accounts share a branch, the shard key) and across
//! shards (accounts keyed by id), plus a contended run on 16 accounts.
//!
//! `cargo run --release --example bankload -- "host=127.0.0.1 port=6432 user=fortress" [seconds]`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

const CLIENTS: u64 = 8;

async fn connect(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(conn);
    c
}

/// Runs `CLIENTS` transfer loops for `secs`; returns (commits, 40001 aborts).
async fn run(url: &str, secs: u64, pick: fn(u64) -> (i32, i32, i32, i32)) -> (u64, u64) {
    let commits = Arc::new(AtomicU64::new(0));
    let aborts = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for w in 0..CLIENTS {
        let mut c = connect(url).await;
        let (commits, aborts) = (commits.clone(), aborts.clone());
        tasks.push(tokio::spawn(async move {
            let mut seed = w.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            while Instant::now() < deadline {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let (bf, from, bt, to) = pick(seed);
                let r = async {
                    let t = c.transaction().await?;
                    t.execute(
                        "UPDATE acct SET balance = balance - 1 WHERE branch = $1 AND id = $2",
                        &[&bf, &from],
                    )
                    .await?;
                    t.execute(
                        "UPDATE acct SET balance = balance + 1 WHERE branch = $1 AND id = $2",
                        &[&bt, &to],
                    )
                    .await?;
                    t.commit().await
                }
                .await;
                match r {
                    Ok(()) => commits.fetch_add(1, Ordering::Relaxed),
                    Err(e) if e.code().map(|c| c.code()) == Some("40001") => {
                        aborts.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(e) => panic!("{e:?}"),
                };
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (
        commits.load(Ordering::Relaxed),
        aborts.load(Ordering::Relaxed),
    )
}

/// The sum of all balances, which transfers must never change.
async fn total(c: &tokio_postgres::Client) -> i64 {
    c.query("SELECT balance FROM acct", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .sum()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "host=127.0.0.1 port=6432 user=fortress".into());
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let c = connect(&url).await;
    c.batch_execute("DROP TABLE IF EXISTS acct").await.unwrap();
    // branch is the shard key; 64 branches x 16 accounts.
    c.batch_execute(
        "CREATE TABLE acct (branch int, id int, balance bigint NOT NULL, PRIMARY KEY (branch, id))",
    )
    .await
    .unwrap();
    for b in 0..64 {
        let v: Vec<String> = (0..16).map(|i| format!("({b}, {i}, 1000)")).collect();
        c.batch_execute(&format!("INSERT INTO acct VALUES {}", v.join(",")))
            .await
            .unwrap();
    }
    let report = |name: &str, (commits, aborts): (u64, u64)| {
        println!(
            "{name:<28} {:>8.0} transfers/s  abort rate {:>5.1}%  ({commits} commits, {aborts} aborts)",
            commits as f64 / secs as f64,
            100.0 * aborts as f64 / (commits + aborts).max(1) as f64
        );
    };
    type Pick = fn(u64) -> (i32, i32, i32, i32);
    let scenarios: [(&str, Pick); 3] = [
        ("single-shard (same branch)", |s| {
            let b = ((s >> 40) % 64) as i32;
            let from = ((s >> 20) % 16) as i32;
            (b, from, b, (from + 1 + ((s >> 10) % 15) as i32) % 16)
        }),
        ("cross-shard (two branches)", |s| {
            let bf = ((s >> 40) % 64) as i32;
            let bt = (bf + 1 + ((s >> 30) % 63) as i32) % 64;
            (bf, ((s >> 20) % 16) as i32, bt, ((s >> 10) % 16) as i32)
        }),
        ("contended (one branch)", |s| {
            let from = ((s >> 20) % 16) as i32;
            (0, from, 0, (from + 1 + ((s >> 10) % 15) as i32) % 16)
        }),
    ];
    for (name, pick) in scenarios {
        report(name, run(&url, secs, pick).await);
        assert_eq!(
            total(&c).await,
            64 * 16 * 1000,
            "money was created or destroyed"
        );
    }
    println!("total balance intact after every run");
}
