//! Fortress front end: pgwire sessions, SQL binding, planning, routing over
//! the hash ring and scatter-gather execution against shard stores.
//!
//! Data flows one way: `wire` -> `sql` (parse, bind) -> `plan` -> `route` ->
//! [`fortress_storage::Shard`] -> `exec` (merge) -> `wire`.

pub mod cache;
pub mod cluster;
pub mod coordinator;
pub mod copy;
pub mod ddl;
pub mod direct;
pub mod error;
pub mod exec;
pub mod explain;
pub mod limits;
pub mod locks;
pub mod metrics;
pub mod pgcatalog;
pub mod plan;
pub mod pushdown;
pub mod recovery;
pub mod route;
pub mod select;
pub mod session;
pub mod sql;
pub mod standby;
pub mod stop;
pub mod stream;
pub mod txn;
pub mod users;
pub mod wire;

pub use cluster::{Cluster, ClusterOptions};
pub use error::ProxyError;
