//! Row locks for READ COMMITTED transactions. An UPDATE or DELETE inside a
//! block locks the rows it changes until the transaction ends, so a second
//! writer of the same row waits and then works on the committed row, as
//! with PostgreSQL's row locks, instead of failing with 40001 at COMMIT.
//! Every session goes through this process, so one table sees every lock
//! and a wait that would close a cycle fails at once with 40P01.

use std::sync::{Arc, Mutex};

use fortress_storage::{FastMap, TableId};

use crate::error::{ProxyError, Result};

/// A row: its table and encoded primary key.
pub type LockKey = (TableId, Vec<u8>);

/// The locks held and the waits between transactions.
#[derive(Default)]
pub struct LockTable {
    state: Mutex<State>,
    released: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    owners: FastMap<LockKey, u64>,
    /// Each waiting transaction and the one it waits for.
    waits: FastMap<u64, u64>,
}

impl LockTable {
    /// Locks `key` for transaction `owner`, waiting while another holds it.
    /// Returns whether it had to wait (what it read before may be stale).
    /// A wait ends early with 55P03 past the statement's `lock_timeout`,
    /// or with 57014 when the statement is cancelled or times out.
    pub async fn lock(&self, owner: u64, key: &LockKey) -> Result<bool> {
        let mut waited = false;
        let deadline = crate::stop::lock_timeout().map(|t| tokio::time::Instant::now() + t);
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            {
                let mut st = self.state.lock().expect("locks");
                let holder = match st.owners.get(key) {
                    None => {
                        st.owners.insert(key.clone(), owner);
                        st.waits.remove(&owner);
                        return Ok(waited);
                    }
                    Some(&h) if h == owner => return Ok(waited),
                    Some(&h) => h,
                };
                let mut at = holder;
                while let Some(&next) = st.waits.get(&at) {
                    if next == owner {
                        st.waits.remove(&owner);
                        return Err(ProxyError::new("40P01", "deadlock detected"));
                    }
                    at = next;
                }
                st.waits.insert(owner, holder);
            }
            let _waiting = Waiting { table: self, owner };
            let timeout = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = released => {}
                e = crate::stop::stopped() => return Err(e),
                _ = timeout => {
                    return Err(ProxyError::new(
                        "55P03",
                        "canceling statement due to lock timeout",
                    ))
                }
            }
            waited = true;
        }
    }

    /// Releases `keys` held by `owner` and wakes the waiters.
    fn release(&self, owner: u64, keys: &[LockKey]) {
        let mut st = self.state.lock().expect("locks");
        for k in keys {
            if st.owners.get(k) == Some(&owner) {
                st.owners.remove(k);
            }
        }
        st.waits.remove(&owner);
        drop(st);
        self.released.notify_waiters();
    }

    /// Rows locked now (metrics, tests).
    pub fn held(&self) -> usize {
        self.state.lock().expect("locks").owners.len()
    }
}

/// Clears a wait edge when its waiter stops waiting (or is dropped).
struct Waiting<'a> {
    table: &'a LockTable,
    owner: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut st = self.table.state.lock().expect("locks");
        st.waits.remove(&self.owner);
    }
}

/// The locks of one transaction, released when the last handle on it is
/// dropped: after COMMIT has applied everywhere, at ROLLBACK, or when the
/// session goes away.
pub struct HeldLocks {
    table: Arc<LockTable>,
    owner: u64,
    keys: Mutex<Vec<LockKey>>,
}

impl HeldLocks {
    pub fn new(table: Arc<LockTable>, owner: u64) -> HeldLocks {
        HeldLocks {
            table,
            owner,
            keys: Mutex::new(Vec::new()),
        }
    }

    /// Locks `key` for this transaction; true if it had to wait.
    pub async fn lock(&self, key: LockKey) -> Result<bool> {
        let waited = self.table.lock(self.owner, &key).await?;
        self.keys.lock().expect("held locks").push(key);
        Ok(waited)
    }

    /// Releases every lock held now, as dropping the last handle does: a
    /// commit's phase two releases them the moment its writes are applied.
    pub fn release(&self) {
        let keys = std::mem::take(&mut *self.keys.lock().expect("held locks"));
        self.table.release(self.owner, &keys);
    }
}

impl Drop for HeldLocks {
    fn drop(&mut self) {
        self.release();
    }
}

impl std::fmt::Debug for HeldLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.keys.lock().map(|k| k.len()).unwrap_or(0);
        write!(f, "HeldLocks(txn {}, {n} rows)", self.owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_locker_waits_until_release() {
        let table = Arc::new(LockTable::default());
        let a = HeldLocks::new(table.clone(), 1);
        let b = Arc::new(HeldLocks::new(table.clone(), 2));
        assert!(!a.lock((1, vec![7])).await.unwrap());
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.lock((1, vec![7])).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(a);
        assert!(waiter.await.unwrap().unwrap(), "it waited");
        assert_eq!(table.held(), 1);
        drop(b);
        assert_eq!(table.held(), 0);
    }

    #[tokio::test]
    async fn release_frees_the_rows_while_handles_remain() {
        let table = Arc::new(LockTable::default());
        let a = Arc::new(HeldLocks::new(table.clone(), 1));
        a.lock((1, vec![7])).await.unwrap();
        let other_handle = a.clone();
        a.release();
        assert_eq!(table.held(), 0);
        let b = HeldLocks::new(table.clone(), 2);
        assert!(!b.lock((1, vec![7])).await.unwrap(), "no wait");
        drop(other_handle);
        drop(a);
        assert_eq!(table.held(), 1, "the new holder keeps its lock");
    }

    #[tokio::test]
    async fn a_wait_that_closes_a_cycle_is_a_deadlock() {
        let table = Arc::new(LockTable::default());
        let a = Arc::new(HeldLocks::new(table.clone(), 1));
        let b = HeldLocks::new(table.clone(), 2);
        a.lock((1, vec![1])).await.unwrap();
        b.lock((1, vec![2])).await.unwrap();
        let a_waits = {
            let a = a.clone();
            tokio::spawn(async move { a.lock((1, vec![2])).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let e = b.lock((1, vec![1])).await.unwrap_err();
        assert_eq!(e.sql_state(), "40P01");
        drop(b);
        assert!(a_waits.await.unwrap().unwrap());
    }
}
