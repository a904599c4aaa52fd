//! Fortress shard storage: one sled database per shard, fed by our own WAL.
//!
//! The WAL is the source of truth; sled is a materialised cache of it that
//! records, per tree, the last LSN it applied. Nothing here knows SQL text or
//! sockets: the proxy sends typed [`api::Fragment`]s and gets rows back.

pub mod aggregate;
pub mod api;
pub mod bounds;
pub mod checkpoint;
pub mod cipher;
pub mod clock;
pub mod conflict;
pub mod durable;
pub mod error;
pub mod expr;
pub mod fastmap;
pub mod fault;
pub mod func;
pub mod heads;
pub mod index;
pub mod interrupt;
pub mod join;
pub mod keycodec;
pub mod mvcc;
pub mod restore;
pub mod schema;
pub mod shard;
pub mod sort;
pub mod space;
pub mod stack;
pub mod tail;
pub mod value;
pub mod wal;

pub use api::{Fragment, FragmentOutput, LoggedVote, PendingWrite, Shard, TableScan, TxnWrite};
pub use clock::{HybridClock, Timestamp};
pub use error::{EvalError, StorageError};
pub use expr::{BinaryOp, Expr, SortKey};
pub use fastmap::{FastHash, FastMap, FastSet};
pub use func::Func;
pub use mvcc::{PinGuard, SnapshotPins};
pub use schema::{Catalog, ColumnDef, DataType, IndexDef, TableDef, TableId};
pub use shard::{
    DecisionLog, RemoteApplied, RemoteChange, ShardOptions, ShardStore, Sibling, TxnStatus,
};
pub use value::{Row, Value};
pub use wal::{Lsn, SyncMode};

/// Shard numbers are small dense integers: shard-000, shard-001, ...
pub type ShardId = u32;
/// Transaction (for now: statement) identifier carried in every WAL record.
pub type TxnId = u64;
