//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use fortress_storage::SyncMode;

#[derive(Parser, Debug)]
#[command(
    name = "fortress",
    version,
    about = "Embedded, sharded, PostgreSQL-compatible store"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the PostgreSQL wire protocol from a data directory.
    Serve(ServeArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Data directory (created if missing).
    #[arg(long, env = "FORTRESS_DATA_DIR", default_value = "./fortress-data")]
    pub data_dir: PathBuf,
    /// Address for PostgreSQL clients.
    #[arg(long, env = "FORTRESS_LISTEN", default_value = "127.0.0.1:6432")]
    pub listen: String,
    /// Number of shards (fixed when the data directory is created).
    #[arg(long, env = "FORTRESS_SHARDS", default_value_t = 4)]
    pub shards: u32,
    /// Virtual nodes per shard on the hash ring.
    #[arg(long, env = "FORTRESS_VNODES", default_value_t = 150)]
    pub vnodes: usize,
    /// Seconds a cached result of a read-only statement stays valid (0 turns
    /// the result cache off); any write to a table it read ends it sooner.
    #[arg(long, env = "FORTRESS_CACHE_TTL", default_value_t = 300)]
    pub cache_ttl: u64,
    /// Rows one statement may hold at the proxy for joins, grouping and
    /// sorting; beyond it the statement fails with 53200, not the process.
    #[arg(long, env = "FORTRESS_WORK_ROWS", default_value_t = 5_000_000)]
    pub work_rows: usize,
    /// Page cache of each shard's sled tree, in MiB.
    #[arg(long, env = "FORTRESS_PAGE_CACHE_MB", default_value_t = 64)]
    pub page_cache_mb: u64,
    /// Memory a shard's sort may use before it spills to temporary files,
    /// in MiB (PostgreSQL's work_mem, per shard).
    #[arg(long, env = "FORTRESS_SORT_MEM_MB", default_value_t = 16)]
    pub sort_mem_mb: usize,
    /// WAL durability: always (fdatasync per commit group), batch, or off.
    #[arg(long, env = "FORTRESS_SYNC", default_value = "always")]
    pub sync: SyncMode,
}
