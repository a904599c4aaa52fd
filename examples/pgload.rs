//! Small latency/throughput probe for any PostgreSQL-speaking server:
//! single-client INSERT rows/s (one autocommit row per statement) and point
//! SELECT latency, through tokio-postgres with prepared statements.
//!
//! `cargo run --release --example pgload -- "host=127.0.0.1 port=6432 user=fortress" [rows]`
//! Run it against fortress and PostgreSQL on the same machine to compare.

use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "host=127.0.0.1 port=6432 user=fortress".into());
    let rows: i64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await?;
    tokio::spawn(conn);
    client
        .batch_execute("DROP TABLE IF EXISTS pgload_kv")
        .await?;
    client
        .batch_execute("CREATE TABLE pgload_kv (k bigint PRIMARY KEY, v text NOT NULL)")
        .await?;

    let insert = client
        .prepare("INSERT INTO pgload_kv (k, v) VALUES ($1, $2)")
        .await?;
    let started = Instant::now();
    for k in 0..rows {
        client.execute(&insert, &[&k, &"value"]).await?;
    }
    let elapsed = started.elapsed();
    println!(
        "insert: {rows} rows in {:.2?} = {:.0} rows/s (1 client, autocommit)",
        elapsed,
        rows as f64 / elapsed.as_secs_f64()
    );

    let get = client
        .prepare("SELECT v FROM pgload_kv WHERE k = $1")
        .await?;
    let mut lat = Vec::with_capacity(rows as usize * 2);
    for i in 0..rows * 2 {
        let k = (i * 7919) % rows;
        let t = Instant::now();
        let r = client.query_one(&get, &[&k]).await?;
        lat.push(t.elapsed());
        assert_eq!(r.get::<_, String>(0), "value");
    }
    lat.sort();
    let mean = lat.iter().sum::<Duration>() / lat.len() as u32;
    println!(
        "point select: {} queries, mean {:.1?}, p50 {:.1?}, p99 {:.1?}",
        lat.len(),
        mean,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    client.batch_execute("DROP TABLE pgload_kv").await?;
    Ok(())
}
