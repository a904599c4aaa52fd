//! Distributed-query probe for any PostgreSQL-speaking server: loads `rows`
//! rows by COPY, then measures a full ORDER BY on a non-key column read as a
//! stream (rows/s), a split aggregate, and the latency of one read-only
//! statement when its result is cached (a repeat) and when it is not (the
//! first run after a write to its table).
//!
//! `cargo run --release --example scanbench -- "host=127.0.0.1 port=6432 user=fortress" [rows]`

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio_postgres::NoTls;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "host=127.0.0.1 port=6432 user=fortress".into());
    let rows: i64 = args
        .get(2)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let (c, conn) = tokio_postgres::connect(&url, NoTls).await?;
    tokio::spawn(conn);
    c.batch_execute("DROP TABLE IF EXISTS scanbench").await?;
    c.batch_execute("CREATE TABLE scanbench (id bigint PRIMARY KEY, k bigint NOT NULL, pad text)")
        .await?;
    let t = Instant::now();
    let chunk = 100_000;
    let mut start = 0;
    while start < rows {
        let end = (start + chunk).min(rows);
        let mut data = String::new();
        for i in start..end {
            let k = (i * 7_919 + 13) % rows;
            data.push_str(&format!("{i}\t{k}\tpadding-{i:0>40}\n"));
        }
        let sink = c.copy_in("COPY scanbench FROM STDIN").await?;
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::from(data)).await?;
        sink.finish().await?;
        start = end;
    }
    let load = t.elapsed();
    println!(
        "load: {rows} rows by COPY in {load:.2?} = {:.0} rows/s",
        rows as f64 / load.as_secs_f64()
    );

    for round in 1..=2 {
        let t = Instant::now();
        let it = c
            .query_raw(
                "SELECT id, k, pad FROM scanbench ORDER BY k",
                Vec::<i64>::new(),
            )
            .await?;
        futures::pin_mut!(it);
        let mut n = 0i64;
        while let Some(row) = it.next().await {
            let k: i64 = row?.get(1);
            assert_eq!(k, n, "rows arrive in k order");
            n += 1;
        }
        let d = t.elapsed();
        println!(
            "order by non-key, streamed (run {round}): {n} rows in {d:.2?} = {:.0} rows/s",
            n as f64 / d.as_secs_f64()
        );
    }
    let t = Instant::now();
    let r = c
        .query_one(
            "SELECT count(*), sum(k), avg(k), count(DISTINCT k % 1000) FROM scanbench",
            &[],
        )
        .await?;
    let n: i64 = r.get(0);
    println!("split aggregate over {n} rows: {:.2?}", t.elapsed());

    // Cache: the same statement after a write to its table (a miss) and
    // right after that (a hit).
    let read = "SELECT count(*) FROM scanbench WHERE k < 5000";
    let (mut miss, mut hit) = (Vec::new(), Vec::new());
    for i in 0..15i64 {
        c.execute("UPDATE scanbench SET pad = 'x' WHERE id = $1", &[&i])
            .await?;
        let t = Instant::now();
        c.simple_query(read).await?;
        miss.push(t.elapsed());
        let t = Instant::now();
        c.simple_query(read).await?;
        hit.push(t.elapsed());
    }
    let (m, h) = (median(miss), median(hit));
    println!(
        "cache: `{read}` median miss {m:.2?}, hit {h:.2?} ({:.0}x)",
        m.as_secs_f64() / h.as_secs_f64()
    );
    c.batch_execute("DROP TABLE scanbench").await?;
    Ok(())
}
