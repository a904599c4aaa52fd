//! Streamed scatter-gather through a real client: an ORDER BY on a non-key
//! column over every shard arrives complete and in order while the shards
//! sort past their memory budget, LIMIT/OFFSET apply after the merge, and a
//! slowly read result of two million rows keeps the server's memory bounded.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use futures::{SinkExt, StreamExt};
use tokio_postgres::Client;

/// `k` is a scrambled non-key column (a permutation of the ids), `pad` makes
/// rows wide enough that the sort budget matters.
async fn load(c: &Client, rows: i64, chunk: i64) {
    c.batch_execute("CREATE TABLE s (id bigint PRIMARY KEY, k bigint NOT NULL, pad text)")
        .await
        .unwrap();
    let mut start = 0;
    while start < rows {
        let end = (start + chunk).min(rows);
        let mut data = String::with_capacity(((end - start) * 64) as usize);
        for i in start..end {
            let k = (i * 7_919 + 13) % rows;
            data.push_str(&format!("{i}\t{k}\tpadding-{i:0>40}\n"));
        }
        let sink = c.copy_in("COPY s FROM STDIN").await.unwrap();
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::from(data)).await.unwrap();
        assert_eq!(sink.finish().await.unwrap(), (end - start) as u64);
        start = end;
    }
}

#[tokio::test]
async fn ordered_scatter_gather_spills_and_arrives_in_order() {
    let dir = tempfile::tempdir().unwrap();
    // A 1 MiB sort budget per shard: 60,000 rows spill to several runs.
    let server = Server::start_env(dir.path(), &[("FORTRESS_SORT_MEM_MB", "1")]);
    let c = server.client().await;
    let n = 60_000;
    load(&c, n, 20_000).await;
    let rows = c
        .query("SELECT k, id FROM s ORDER BY k", &[])
        .await
        .unwrap();
    assert_eq!(rows.len() as i64, n);
    let ks: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ks, (0..n).collect::<Vec<_>>(), "a permutation, sorted");
    let page = c
        .query("SELECT k FROM s ORDER BY k DESC LIMIT 5 OFFSET 10", &[])
        .await
        .unwrap();
    let page: Vec<i64> = page.iter().map(|r| r.get(0)).collect();
    assert_eq!(page, (n - 15..n - 10).rev().collect::<Vec<_>>());
    // Through the simple protocol too, with a filter pushed to the shards.
    let msgs = c
        .simple_query("SELECT k FROM s WHERE k % 1000 = 7 ORDER BY k")
        .await
        .unwrap();
    let got: Vec<i64> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(|v| v.parse().unwrap()),
            _ => None,
        })
        .collect();
    assert_eq!(got, (0..n).filter(|k| k % 1000 == 7).collect::<Vec<_>>());
    // A client that stops reading early (dropping the portal) leaves the
    // server serving.
    {
        let it = c
            .query_raw("SELECT id FROM s ORDER BY k", Vec::<i64>::new())
            .await
            .unwrap();
        futures::pin_mut!(it);
        assert!(it.next().await.is_some());
    }
    let one: i64 = c
        .query_one("SELECT count(*) FROM s", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(one, n);
}

/// A cancel request reaches a SELECT while its rows stream: the client
/// gets 57014 after some of the rows, and the session goes on.
#[tokio::test]
async fn cancel_stops_a_streaming_select() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client().await;
    // Wide rows (about 20 MB in all) so the result cannot sit in socket
    // buffers before the cancel arrives.
    c.batch_execute("CREATE TABLE w (id int PRIMARY KEY, pad text)")
        .await
        .unwrap();
    let sink = c.copy_in("COPY w FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    let pad = "x".repeat(1_000);
    let data: String = (0..20_000).map(|i| format!("{i}\t{pad}\n")).collect();
    sink.send(bytes::Bytes::from(data)).await.unwrap();
    sink.finish().await.unwrap();
    let sql = "SELECT id, pad FROM w ORDER BY pad, id";
    let stream = c.simple_query_raw(sql).await.unwrap();
    futures::pin_mut!(stream);
    let mut rows = 0;
    while rows < 10 {
        let msg = stream.next().await.unwrap().unwrap();
        if let tokio_postgres::SimpleQueryMessage::Row(_) = msg {
            rows += 1;
        }
    }
    c.cancel_token()
        .cancel_query(tokio_postgres::NoTls)
        .await
        .unwrap();
    let err = loop {
        match stream.next().await {
            Some(Ok(tokio_postgres::SimpleQueryMessage::Row(_))) => rows += 1,
            Some(Ok(_)) => {}
            Some(Err(e)) => break e,
            None => panic!("{sql}: completed ({rows} rows) despite the cancel"),
        }
    };
    assert_eq!(common::code(&err), "57014");
    assert!(rows < 20_000, "{rows} rows");
    let n: i64 = c
        .query_one("SELECT count(*) FROM w", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 20_000, "the session survives the cancel");

    // Through the extended protocol, inside a transaction block: the cancel
    // fails the block, so its earlier insert is rolled back.
    c.batch_execute("BEGIN; INSERT INTO w VALUES (-1, 'in the block')")
        .await
        .unwrap();
    let it = c
        .query_raw("SELECT id, pad FROM w ORDER BY pad, id", Vec::<i32>::new())
        .await
        .unwrap();
    futures::pin_mut!(it);
    for _ in 0..10 {
        it.next().await.unwrap().unwrap();
    }
    c.cancel_token()
        .cancel_query(tokio_postgres::NoTls)
        .await
        .unwrap();
    let err = loop {
        match it.next().await {
            Some(Ok(_)) => {}
            Some(Err(e)) => break e,
            None => panic!("the extended-protocol SELECT completed despite the cancel"),
        }
    };
    assert_eq!(common::code(&err), "57014");
    // COMMIT of a failed block rolls it back.
    c.batch_execute("COMMIT").await.unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM w WHERE id = -1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the cancelled block's insert must not commit");
}

/// Two million rows ordered by a non-key column, read slowly. The storage
/// engine keeps memory in proportion to the data it has touched (a sled
/// property: its cache bound counts on-disk bytes), so the bound is on what
/// the statement adds over a warmed store: shard sorts within their budget,
/// a few batches per shard in flight, nothing proportional to the result
/// (over 500 MiB here). Runs measured +79 to +134 MiB on 2026-11-25 and
/// +209 to +337 MiB on 2026-12-02 before the garbage collector's bound on
/// young keys, +39 to +315 after it: the excess is anonymous
/// memory held by the four shard producer threads (sled pages they pulled,
/// freed elsewhere, kept in their allocator heaps) and returned when they
/// exit. The bound leaves room for that and stays under the result's size,
/// which buffering it would add on top.
/// Slow in a debug build; CI runs it with `--ignored`.
#[tokio::test]
#[ignore]
async fn two_million_row_ordered_scan_streams_in_bounded_memory() {
    const ROWS: i64 = 2_000_000;
    const BOUND_KIB: u64 = 448 * 1024;
    let dir = tempfile::tempdir().unwrap();
    // 8 MiB of sort memory per shard: 32 MiB across the four shards, while
    // the rows to sort take over 500 MiB in memory.
    let env = [
        ("FORTRESS_PAGE_CACHE_MB", "16"),
        ("FORTRESS_SORT_MEM_MB", "8"),
        ("FORTRESS_SYNC", "off"),
    ];
    let mut server = Server::start_env(dir.path(), &env);
    let c = server.client().await;
    let t = Instant::now();
    load(&c, ROWS, 50_000).await;
    eprintln!("loaded {ROWS} rows in {:.1}s", t.elapsed().as_secs_f64());
    // Measure the read alone: a fresh process, its store warmed by a scan.
    drop(c);
    server.stop();
    server.restart();
    let c = server.client().await;
    let fresh = server.rss_kib().expect("RSS");
    let n: i64 = c
        .query_one("SELECT count(*) FROM s", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, ROWS);
    let warm = server.rss_kib().expect("RSS");
    let t = Instant::now();
    let it = c
        .query_raw("SELECT k, pad FROM s ORDER BY k", Vec::<i64>::new())
        .await
        .unwrap();
    futures::pin_mut!(it);
    let (mut seen, mut peak) = (0i64, warm);
    while let Some(row) = it.next().await {
        let k: i64 = row.unwrap().get(0);
        assert_eq!(k, seen, "rows arrive in k order");
        seen += 1;
        if seen % 20_000 == 0 {
            peak = peak.max(server.rss_kib().expect("RSS"));
            // A slow reader: the server must wait, not buffer.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "streamed {seen} rows in {secs:.1}s ({:.0} rows/s); RSS MiB: fresh {}, after a warming scan {}, peak {} (+{})",
        seen as f64 / secs,
        fresh / 1024,
        warm / 1024,
        peak / 1024,
        (peak - warm) / 1024
    );
    assert_eq!(seen, ROWS);
    assert!(
        peak - warm < BOUND_KIB,
        "the ordered scan added {} MiB to RSS",
        (peak - warm) / 1024
    );
}
