//! A history checker over a list-append workload (in the spirit of Elle).
//! Transactions append unique elements to lists and read lists; afterwards
//! the recorded history is checked for dirty writes (G0), aborted reads
//! (G1a), intermediate reads (G1b), circular information flow (G1c) and lost
//! updates. Under snapshot isolation all of these must be absent.

mod common;

use std::collections::{HashMap, HashSet};

use common::Server;

const KEYS: i32 = 6;

#[derive(Debug, Clone)]
enum Op {
    /// Appended these elements (one or two) to the key, in order.
    Append(i32, Vec<i64>),
    /// Observed this list.
    Read(i32, Vec<i64>),
}

#[derive(Debug, Clone)]
struct Txn {
    ops: Vec<Op>,
    committed: bool,
}

fn parse_list(s: &str) -> Vec<i64> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().unwrap())
        .collect()
}

async fn run_client(mut c: tokio_postgres::Client, client: i64, txns: usize) -> Vec<Txn> {
    let mut history = Vec::new();
    let mut seed = (client as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = |m: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % m
    };
    let mut element = client * 1_000_000;
    for _ in 0..txns {
        let mut ops = Vec::new();
        let t = common::snapshot_txn(&mut c).await.unwrap();
        let mut ok = true;
        for _ in 0..1 + next(3) {
            let k = next(KEYS as u64) as i32;
            if next(2) == 0 {
                let mut els = vec![element];
                if next(4) == 0 {
                    els.push(element + 1); // a pair: readers must see both or neither
                }
                element += 2;
                let mut r = Ok(0);
                for e in &els {
                    r = t
                        .execute(
                            "UPDATE lists SET v = v || $1 WHERE k = $2",
                            &[&format!(",{e}"), &k],
                        )
                        .await;
                    if r.is_err() {
                        break;
                    }
                }
                match r {
                    Ok(_) => ops.push(Op::Append(k, els)),
                    Err(_) => {
                        ok = false;
                        ops.push(Op::Append(k, els));
                        break;
                    }
                }
            } else {
                match t.query_one("SELECT v FROM lists WHERE k = $1", &[&k]).await {
                    Ok(row) => ops.push(Op::Read(k, parse_list(row.get(0)))),
                    Err(_) => {
                        ok = false;
                        break;
                    }
                }
            }
        }
        let committed = ok && t.commit().await.is_ok();
        history.push(Txn { ops, committed });
    }
    history
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_append_history_has_no_anomalies() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client().await;
    c.batch_execute("CREATE TABLE lists (k int PRIMARY KEY, v text NOT NULL)")
        .await
        .unwrap();
    for k in 0..KEYS {
        c.execute("INSERT INTO lists VALUES ($1, '')", &[&k])
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for client in 0..4 {
        let cl = server.client().await;
        tasks.push(tokio::spawn(run_client(cl, client, 40)));
    }
    let mut history: Vec<Txn> = Vec::new();
    for t in tasks {
        history.extend(t.await.unwrap());
    }
    let mut finals = HashMap::new();
    for r in c.query("SELECT k, v FROM lists", &[]).await.unwrap() {
        finals.insert(r.get::<_, i32>(0), parse_list(r.get(1)));
    }

    // Who appended each element, and whether that transaction committed.
    let mut writer: HashMap<i64, (usize, bool)> = HashMap::new();
    for (i, t) in history.iter().enumerate() {
        for op in &t.ops {
            if let Op::Append(_, els) = op {
                for e in els {
                    writer.insert(*e, (i, t.committed));
                }
            }
        }
    }
    let committed: Vec<usize> = (0..history.len())
        .filter(|&i| history[i].committed)
        .collect();
    assert!(
        committed.len() > 20,
        "too few commits to judge: {}",
        committed.len()
    );

    // Lost updates and aborted writes: the final lists hold every committed
    // append exactly once, and nothing from an aborted transaction.
    for (k, list) in &finals {
        let mut seen = HashSet::new();
        for e in list {
            assert!(seen.insert(*e), "key {k}: element {e} appears twice");
            assert!(
                writer.get(e).is_some_and(|w| w.1),
                "key {k}: element {e} from an aborted transaction (G0/G1a)"
            );
        }
    }
    for &i in &committed {
        for op in &history[i].ops {
            if let Op::Append(k, els) = op {
                for e in els {
                    assert!(
                        finals[k].contains(e),
                        "lost update: committed element {e} missing from key {k}"
                    );
                }
            }
        }
    }

    // Reads: every committed read is a prefix of the final list (one version
    // order per key, no dirty or aborted reads), never ends inside a pair
    // (G1b), and sees the transaction's own earlier appends.
    let mut wr_edges: Vec<(usize, usize)> = Vec::new();
    for &i in &committed {
        let mut own: HashMap<i32, Vec<i64>> = HashMap::new();
        for op in &history[i].ops {
            match op {
                Op::Append(k, els) => own.entry(*k).or_default().extend(els),
                Op::Read(k, list) => {
                    let fin = &finals[k];
                    let theirs: Vec<i64> = list
                        .iter()
                        .copied()
                        .filter(|e| !own.get(k).is_some_and(|o| o.contains(e)))
                        .collect();
                    assert!(
                        fin.starts_with(&theirs),
                        "txn {i}: read {list:?} of key {k} is not a prefix of {fin:?}"
                    );
                    if let Some(mine) = own.get(k) {
                        assert!(
                            list.ends_with(mine),
                            "txn {i}: read {list:?} misses its own appends {mine:?}"
                        );
                    }
                    if let Some(last) = theirs.last() {
                        let (w, ok) = writer[last];
                        assert!(
                            ok,
                            "txn {i} read element {last} of an aborted transaction (G1a)"
                        );
                        let els: &Vec<i64> = history[w]
                            .ops
                            .iter()
                            .find_map(|o| match o {
                                Op::Append(kk, els) if kk == k && els.contains(last) => Some(els),
                                _ => None,
                            })
                            .unwrap();
                        assert_eq!(
                            els.last(),
                            Some(last),
                            "txn {i} saw an intermediate state of txn {w} (G1b)"
                        );
                        if w != i {
                            wr_edges.push((w, i));
                        }
                    }
                }
            }
        }
    }

    // G1c: no cycle in write-write (final list order) plus write-read edges.
    let mut edges: HashMap<usize, HashSet<usize>> = HashMap::new();
    for list in finals.values() {
        for pair in list.windows(2) {
            let (a, b) = (writer[&pair[0]].0, writer[&pair[1]].0);
            if a != b {
                edges.entry(a).or_default().insert(b);
            }
        }
    }
    for (a, b) in wr_edges {
        edges.entry(a).or_default().insert(b);
    }
    // Depth-first search with colours: grey on the stack means a cycle.
    let mut colour: HashMap<usize, u8> = HashMap::new();
    fn visit(
        n: usize,
        edges: &HashMap<usize, HashSet<usize>>,
        colour: &mut HashMap<usize, u8>,
    ) -> bool {
        match colour.get(&n) {
            Some(1) => return true,
            Some(2) => return false,
            _ => {}
        }
        colour.insert(n, 1);
        for &m in edges.get(&n).into_iter().flatten() {
            if visit(m, edges, colour) {
                return true;
            }
        }
        colour.insert(n, 2);
        false
    }
    for &n in edges.keys() {
        assert!(
            !visit(n, &edges, &mut colour),
            "G1c: circular information flow through txn {n}"
        );
    }
    eprintln!(
        "history: {} transactions, {} committed, {} elements in final lists",
        history.len(),
        committed.len(),
        finals.values().map(Vec::len).sum::<usize>()
    );
}
