//! Streamed scatter-gather: each shard pushes batches of rows into a small
//! bounded channel from its own thread, and the proxy merges them (k-way by
//! the sort keys, or as they come) into the rows it sends. A slow client
//! holds back the merge, the merge holds back the shards: memory stays at a
//! few batches per shard whatever the result size.

use std::collections::VecDeque;
use std::sync::Arc;

use fortress_storage::expr::{compare_keys, sort_values};
use fortress_storage::{Fragment, Row, Shard, SortKey, Value};
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::error::{ProxyError, Result};

/// Rows of a result, produced as the client reads them.
pub struct RowStream(pub BoxStream<'static, Result<Row>>);

impl std::fmt::Debug for RowStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RowStream")
    }
}

impl RowStream {
    /// A stream over rows already computed.
    pub fn ready(rows: Vec<Row>) -> RowStream {
        RowStream(futures::stream::iter(rows.into_iter().map(Ok)).boxed())
    }

    /// Reads the whole stream.
    pub async fn collect(mut self) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        while let Some(r) = self.0.next().await {
            rows.push(r?);
        }
        Ok(rows)
    }
}

/// Batches in flight per shard.
const CHANNEL_BATCHES: usize = 2;

/// What a shard's producer sends: batches of rows, then `End`. A channel
/// that closes without `End` means the producer died.
pub enum Msg {
    Rows(Vec<Row>),
    End,
}

/// One shard's part of a scatter-gather.
pub enum ShardRows {
    /// Produced as they are read, by a thread of its own.
    Streaming(mpsc::Receiver<Result<Msg>>),
    /// Computed beforehand (when no producer thread is free).
    Ready(Vec<Row>),
}

/// Starts `fragment` (a scan) on `shard` in a thread of its own, which
/// holds `permit` until it ends; its batches arrive in order. `None` if
/// the thread cannot start.
pub fn start(
    shard: Arc<dyn Shard>,
    fragment: Fragment,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Option<ShardRows> {
    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
    let interrupt = crate::stop::interrupt();
    let spawned = std::thread::Builder::new()
        .name("fortress-stream".into())
        .stack_size(crate::limits::THREAD_STACK_BYTES)
        .spawn(move || {
            let _permit = permit;
            // An empty batch asks whether the reader is still there.
            let mut sink = |batch: Vec<Row>| {
                if batch.is_empty() {
                    !tx.is_closed()
                } else {
                    tx.blocking_send(Ok(Msg::Rows(batch))).is_ok()
                }
            };
            let streamed = fortress_storage::interrupt::scope(interrupt, || {
                shard.stream(&fragment, &mut sink)
            });
            let last = match streamed {
                Ok(()) => Ok(Msg::End),
                Err(e) => Err(e.into()),
            };
            let _ = tx.blocking_send(last);
        });
    spawned.ok().map(|_| ShardRows::Streaming(rx))
}

/// What the proxy does to merged rows before sending them.
pub struct Finish {
    /// The order the shards sorted their rows in; empty: any order.
    pub order_by: Vec<SortKey>,
    pub offset: u64,
    pub limit: Option<u64>,
    /// Output columns; columns past these are hidden sort keys.
    pub visible: usize,
}

struct Input {
    /// `None` once the input has no more batches to receive.
    rx: Option<mpsc::Receiver<Result<Msg>>>,
    batch: VecDeque<Row>,
    /// Sort values of `batch.front()`.
    head: Option<Vec<Value>>,
}

struct Merge {
    inputs: Vec<Input>,
    finish: Finish,
    skipped: u64,
    sent: u64,
    failed: bool,
}

impl Merge {
    /// Refills `input` from its channel when its batch is empty.
    async fn fill(input: &mut Input, keys: &[SortKey]) -> Result<()> {
        while input.batch.is_empty() {
            let Some(rx) = input.rx.as_mut() else { break };
            match rx.recv().await {
                Some(Ok(Msg::Rows(rows))) => input.batch = rows.into(),
                Some(Ok(Msg::End)) => input.rx = None,
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(ProxyError::new(
                        "XX000",
                        "a shard stopped producing rows before the end of its scan",
                    ))
                }
            }
        }
        input.head = match input.batch.front() {
            Some(r) if !keys.is_empty() => Some(sort_values(keys, r)?),
            _ => None,
        };
        Ok(())
    }

    /// The next merged row, before OFFSET and LIMIT.
    async fn next_row(&mut self) -> Result<Option<Row>> {
        let keys = &self.finish.order_by;
        for input in &mut self.inputs {
            // Refill an empty input; give a ready one its first head.
            let headless = input.head.is_none() && !keys.is_empty();
            if input.batch.is_empty() || headless {
                Self::fill(input, keys).await?;
            }
        }
        let pick = if keys.is_empty() {
            self.inputs.iter().position(|i| !i.batch.is_empty())
        } else {
            let mut best: Option<usize> = None;
            for (i, input) in self.inputs.iter().enumerate() {
                let Some(h) = &input.head else { continue };
                let better = best.is_none_or(|b| {
                    let bh = self.inputs[b].head.as_deref().unwrap_or_default();
                    compare_keys(keys, h, bh).is_lt()
                });
                if better {
                    best = Some(i);
                }
            }
            best
        };
        let Some(i) = pick else { return Ok(None) };
        let row = self.inputs[i].batch.pop_front();
        if !keys.is_empty() {
            let input = &mut self.inputs[i];
            input.head = match input.batch.front() {
                Some(r) => Some(sort_values(keys, r)?),
                None => None,
            };
        }
        Ok(row)
    }

    /// The next row to send, hidden sort keys dropped.
    async fn next(&mut self) -> Option<Result<Row>> {
        if self.failed || self.finish.limit.is_some_and(|l| self.sent >= l) {
            return None;
        }
        loop {
            let mut row = match self.next_row().await {
                Ok(Some(r)) => r,
                Ok(None) => return None,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            };
            if self.skipped < self.finish.offset {
                self.skipped += 1;
                continue;
            }
            self.sent += 1;
            row.truncate(self.finish.visible);
            return Some(Ok(row));
        }
    }
}

/// Merges the shards' batches into one stream of finished rows.
pub fn merge(inputs: Vec<ShardRows>, finish: Finish) -> RowStream {
    let merge = Merge {
        inputs: inputs
            .into_iter()
            .map(|part| match part {
                ShardRows::Streaming(rx) => Input {
                    rx: Some(rx),
                    batch: VecDeque::new(),
                    head: None,
                },
                ShardRows::Ready(rows) => Input {
                    rx: None,
                    batch: rows.into(),
                    head: None,
                },
            })
            .collect(),
        finish,
        skipped: 0,
        sent: 0,
        failed: false,
    };
    RowStream(
        futures::stream::unfold(merge, |mut m| async move {
            let item = m.next().await?;
            Some((item, m))
        })
        .boxed(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ProxyError;
    use fortress_storage::Expr;

    /// A shard that has already sent `batches` and its end.
    fn sent(batches: Vec<Vec<i32>>) -> ShardRows {
        let (tx, rx) = mpsc::channel(batches.len() + 1);
        for b in batches {
            let rows = b.into_iter().map(|v| vec![Value::Int4(v)]).collect();
            tx.try_send(Ok(Msg::Rows(rows))).unwrap();
        }
        tx.try_send(Ok(Msg::End)).unwrap();
        ShardRows::Streaming(rx)
    }

    fn finish(order: bool, offset: u64, limit: Option<u64>) -> Finish {
        Finish {
            order_by: if order {
                vec![SortKey {
                    expr: Expr::Column(0),
                    descending: false,
                    nulls_first: false,
                }]
            } else {
                Vec::new()
            },
            offset,
            limit,
            visible: 1,
        }
    }

    async fn values(s: RowStream) -> Vec<i32> {
        let rows = s.collect().await.unwrap();
        rows.into_iter()
            .map(|r| match r[0] {
                Value::Int4(v) => v,
                _ => panic!("not an int"),
            })
            .collect()
    }

    #[tokio::test]
    async fn k_way_merge_across_batches_with_offset_and_limit() {
        let inputs = || {
            vec![
                sent(vec![vec![1, 4], vec![7, 10]]),
                sent(vec![vec![2], vec![3, 8]]),
                sent(vec![]),
                sent(vec![vec![5, 6, 9]]),
            ]
        };
        assert_eq!(
            values(merge(inputs(), finish(true, 0, None))).await,
            (1..=10).collect::<Vec<_>>()
        );
        assert_eq!(
            values(merge(inputs(), finish(true, 3, Some(4)))).await,
            vec![4, 5, 6, 7]
        );
        let mut any = values(merge(inputs(), finish(false, 0, None))).await;
        any.sort_unstable();
        assert_eq!(any, (1..=10).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn ready_inputs_merge_in_order_too() {
        let ready = |v: &[i32]| ShardRows::Ready(v.iter().map(|&x| vec![Value::Int4(x)]).collect());
        let inputs = vec![ready(&[2, 5]), sent(vec![vec![1, 4]]), ready(&[3, 6])];
        assert_eq!(
            values(merge(inputs, finish(true, 0, None))).await,
            (1..=6).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn a_shard_error_ends_the_stream_with_it() {
        let (tx, rx) = mpsc::channel(2);
        tx.try_send(Ok(Msg::Rows(vec![vec![Value::Int4(1)]])))
            .unwrap();
        tx.try_send(Err(ProxyError::new("XX000", "disk on fire")))
            .unwrap();
        let mut s = merge(vec![ShardRows::Streaming(rx)], finish(false, 0, None)).0;
        assert!(s.next().await.unwrap().is_ok());
        let e = s.next().await.unwrap().unwrap_err();
        assert_eq!(e.sql_state(), "XX000");
        assert!(s.next().await.is_none());
    }

    #[tokio::test]
    async fn a_producer_that_dies_is_an_error_not_a_short_result() {
        let (tx, rx) = mpsc::channel(2);
        tx.try_send(Ok(Msg::Rows(vec![vec![Value::Int4(1)]])))
            .unwrap();
        drop(tx);
        let inputs = vec![
            ShardRows::Streaming(rx),
            ShardRows::Ready(vec![vec![Value::Int4(2)]]),
        ];
        let e = merge(inputs, finish(false, 0, None))
            .collect()
            .await
            .unwrap_err();
        assert_eq!(e.sql_state(), "XX000");
    }
}
