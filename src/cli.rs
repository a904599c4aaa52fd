//! Command-line interface.

use std::path::PathBuf;
use std::time::Duration;

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
    /// Create, list, verify or prune checkpoints of a data directory.
    Checkpoint(CheckpointArgs),
    /// Write a new data directory from a checkpoint, optionally replaying the
    /// WAL to a later point (point-in-time recovery).
    Restore(RestoreArgs),
    /// Show a running server's shards, WAL positions, sizes and
    /// connections (through its admin API).
    Status(StatusArgs),
    /// The configuration `serve` would run with.
    Config(ConfigArgs),
    /// Add, remove or list the users who may connect (SCRAM-SHA-256).
    User(UserArgs),
    /// Disaster recovery of a running server: its archives, how far each
    /// log is shipped (through its admin API).
    Dr(DrArgs),
    /// A hot standby: keeps a copy of a primary's data directory, LSN for
    /// LSN, from its --replication-listen port, and serves reads from it;
    /// `fortress serve` on the copy promotes it.
    Standby(StandbyArgs),
}

#[derive(Args, Debug)]
pub struct StandbyArgs {
    /// The primary's --replication-listen address.
    #[arg(long)]
    pub primary: String,
    /// The primary is declared lost when nothing (not even the heartbeat
    /// it sends every 20 ms when idle) has come from it for this long; the
    /// standby then reconnects, and says so.
    #[arg(long, env = "FORTRESS_PRIMARY_TIMEOUT", default_value = "5s", value_parser = parse_duration_ms)]
    pub primary_timeout: Duration,
    /// Start over: an existing copy in --data-dir (one that followed
    /// another history, such as a primary replaced by a failover) is moved
    /// to DIR.old-TIME and kept, and the copy is made anew from the
    /// primary.
    #[arg(long)]
    pub rebuild: bool,
    /// Every `serve` setting: the standby serves reads on --listen (writes
    /// get 25006) and its admin API like a primary.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Args, Debug)]
pub struct DrArgs {
    #[command(subcommand)]
    pub action: DrAction,
}

#[derive(Subcommand, Debug)]
pub enum DrAction {
    /// Each archive: reachable or why not, how far each log is archived,
    /// the time through which the archive is consistent.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the API's JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Ship what the logs hold now to every archive, then show the status.
    Replicate {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        json: bool,
    },
    /// Promote the standby at --admin to a primary, in place. With a write
    /// lease this is `failover`; without one, stop the old primary first.
    Promote {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        json: bool,
    },
    /// Make standby --to the primary. Sent to the primary (--admin): a
    /// planned handover (writes stop, the standby catches up, the lease
    /// goes to it). Sent to the standby itself: it takes over if the
    /// primary's lease expired.
    Failover {
        #[command(flatten)]
        admin: AdminArgs,
        /// The standby to make the primary.
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct UserArgs {
    #[command(subcommand)]
    pub action: UserAction,
}

#[derive(Subcommand, Debug)]
pub enum UserAction {
    /// Add a user, or set a new password for one (asked for at the
    /// terminal; its SCRAM verifier is stored, never the password).
    Add {
        name: String,
        /// Data directory.
        #[arg(long, env = "FORTRESS_DATA_DIR", default_value = "./fortress-data")]
        data_dir: PathBuf,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user (their open connections stay; new ones are refused).
    Remove {
        name: String,
        #[arg(long, env = "FORTRESS_DATA_DIR", default_value = "./fortress-data")]
        data_dir: PathBuf,
    },
    /// List the users.
    List {
        #[arg(long, env = "FORTRESS_DATA_DIR", default_value = "./fortress-data")]
        data_dir: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub action: ConfigAction,
}

#[derive(Subcommand, Debug)]
pub enum ConfigAction {
    /// Print the effective configuration (flags, environment, --config
    /// file and defaults, each value with where it came from; secrets
    /// redacted) as TOML that `--config` takes.
    Print(ServeArgs),
}

/// How to reach a running server's admin API.
#[derive(Args, Debug, Clone)]
pub struct AdminArgs {
    /// The admin API's address (the token comes from FORTRESS_ADMIN_TOKEN).
    #[arg(
        long = "admin",
        env = "FORTRESS_ADMIN",
        default_value = "http://127.0.0.1:7070"
    )]
    pub url: String,
    /// A CA certificate (PEM) to trust for an https admin URL (a server
    /// certificate of your own CA); without it, the public roots.
    #[arg(long, env = "FORTRESS_ADMIN_CA")]
    pub admin_ca: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Print the API's JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Where a data directory and its checkpoints are.
#[derive(Args, Debug, Clone)]
pub struct DirArgs {
    /// Data directory.
    #[arg(long, env = "FORTRESS_DATA_DIR", default_value = "./fortress-data")]
    pub data_dir: PathBuf,
    /// Checkpoint directory (default: DATA_DIR/checkpoints).
    #[arg(long, env = "FORTRESS_CHECKPOINT_DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// File holding the encryption key (32 raw bytes or 64 hex digits);
    /// the key may instead come from FORTRESS_KEY.
    #[arg(long, env = "FORTRESS_KEY_FILE")]
    pub key_file: Option<PathBuf>,
}

impl DirArgs {
    pub fn checkpoints(&self) -> PathBuf {
        self.checkpoint_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("checkpoints"))
    }
}

#[derive(Args, Debug)]
pub struct CheckpointArgs {
    #[command(subcommand)]
    pub action: CheckpointAction,
}

#[derive(Subcommand, Debug)]
pub enum CheckpointAction {
    /// Take a checkpoint: through the running server when one holds the
    /// directory, otherwise by opening it here.
    Create {
        #[command(flatten)]
        dirs: DirArgs,
    },
    /// List the checkpoints, oldest first.
    List {
        #[command(flatten)]
        dirs: DirArgs,
    },
    /// Re-read every block of the named checkpoints (all without IDs); exits
    /// non-zero naming the file and offset of a bad block.
    Verify {
        #[command(flatten)]
        dirs: DirArgs,
        ids: Vec<String>,
    },
    /// Remove old checkpoints; the newest is always kept.
    Prune {
        #[command(flatten)]
        dirs: DirArgs,
        /// Keep the newest N.
        #[arg(long)]
        keep: Option<usize>,
        /// Remove those older than this (e.g. 90m, 12h, 7d).
        #[arg(long, value_parser = parse_duration)]
        older_than: Option<Duration>,
    },
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub dirs: DirArgs,
    /// New data directory to write.
    #[arg(long)]
    pub to: PathBuf,
    /// Checkpoint to start from (default: the newest that fits the target).
    #[arg(long)]
    pub checkpoint: Option<String>,
    /// Replay each shard's WAL through this LSN: `N` for every shard, or
    /// `SHARD:N,...` listing every shard.
    #[arg(long, group = "target")]
    pub lsn: Option<String>,
    /// Replay every transaction committed at or before this time (RFC 3339,
    /// or PostgreSQL timestamptz text such as `2026-01-02 03:04:05.678+00`).
    #[arg(long, group = "target")]
    pub time: Option<String>,
    /// Replay the whole WAL.
    #[arg(long, group = "target")]
    pub latest: bool,
    /// Restore from this archive (a URL as for `serve --archive`) instead
    /// of a data directory: its checkpoint and WAL objects are downloaded,
    /// in parallel, and every checksum verified. `--latest` then means the
    /// archive's last consistent point.
    #[arg(long)]
    pub from: Option<String>,
    /// Write into a non-empty directory, deleting what it holds.
    #[arg(long)]
    pub force: bool,
}

/// How log lines are written.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Parses `30s`, `90m`, `12h`, `7d` (or plain seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 30s, 90m, 12h, 7d)"))?;
    let secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown duration unit {unit:?} (s, m, h, d)")),
    };
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Configuration file (TOML; one key per flag, e.g. `page_cache_mb =
    /// 512`). Flags and the environment override it.
    #[arg(long, env = "FORTRESS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (created if missing).
    #[arg(long, env = "FORTRESS_DATA_DIR", default_value = "./fortress-data")]
    pub data_dir: PathBuf,
    /// Address for PostgreSQL clients.
    #[arg(long, env = "FORTRESS_LISTEN", default_value = "127.0.0.1:6432")]
    pub listen: String,
    /// Certificate (PEM, leaf first) for TLS: clients that ask for TLS
    /// (sslmode=require) get it, and the admin API serves HTTPS.
    #[arg(long, env = "FORTRESS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM; readable by its owner only).
    #[arg(long, env = "FORTRESS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Refuse clients that do not switch to TLS (28000).
    #[arg(long, env = "FORTRESS_TLS_REQUIRED", requires = "tls_cert")]
    pub tls_required: bool,
    /// Log lines as text, or as JSON objects (one per line) for a log
    /// pipeline.
    #[arg(long, env = "FORTRESS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Address of the admin HTTP API (`off` turns it off). Beyond loopback
    /// it needs FORTRESS_ADMIN_TOKEN.
    #[arg(long, env = "FORTRESS_ADMIN_LISTEN", default_value = "127.0.0.1:7070")]
    pub admin_listen: String,
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
    /// Memory one statement's join result may hold, at the proxy or on a
    /// shard, in MiB; beyond it the statement fails with 53200.
    #[arg(long, env = "FORTRESS_WORK_MEM_MB", default_value_t = 256)]
    pub work_mem_mb: usize,
    /// Page cache of each shard's sled tree, in MiB.
    #[arg(long, env = "FORTRESS_PAGE_CACHE_MB", default_value_t = 64)]
    pub page_cache_mb: u64,
    /// Newest versions of recently read rows kept per shard for point
    /// reads, in MiB (0 turns the cache off).
    #[arg(long, env = "FORTRESS_ROW_CACHE_MB", default_value_t = 64)]
    pub row_cache_mb: u64,
    /// Threads serving client connections, each owning the connections it
    /// is given (0: one per core).
    #[arg(long, env = "FORTRESS_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// Memory a shard's sort may use before it spills to temporary files,
    /// in MiB (PostgreSQL's work_mem, per shard).
    #[arg(long, env = "FORTRESS_SORT_MEM_MB", default_value_t = 16)]
    pub sort_mem_mb: usize,
    /// Clients served at once; the next one gets 53300 (too many
    /// connections) and those connected are not disturbed.
    #[arg(long, env = "FORTRESS_MAX_CONNECTIONS", default_value_t = 100)]
    pub max_connections: usize,
    /// A client that has not completed its startup within this is closed
    /// (PostgreSQL's authentication_timeout).
    #[arg(long, env = "FORTRESS_AUTH_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub auth_timeout: Duration,
    /// Default statement_timeout of every session (e.g. 30s; 0 is none):
    /// a statement running longer is stopped with 57014, a write rolled
    /// back whole. Sessions may SET their own.
    #[arg(long, env = "FORTRESS_STATEMENT_TIMEOUT", default_value = "0", value_parser = parse_duration)]
    pub statement_timeout: Duration,
    /// Space kept free on the data directory's disk, in MiB: below it
    /// writes get 53100 (disk full) before they are logged, so the shards
    /// can always apply what they logged and restart; reads go on, and
    /// writes resume by themselves when space is freed (0: no reserve).
    #[arg(long, env = "FORTRESS_DISK_RESERVE_MB", default_value_t = 64)]
    pub disk_reserve_mb: u64,
    /// WAL durability: always (fdatasync per commit group), batch, or off.
    #[arg(long, env = "FORTRESS_SYNC", default_value = "always")]
    pub sync: SyncMode,
    /// Checkpoint directory (default: DATA_DIR/checkpoints).
    #[arg(long, env = "FORTRESS_CHECKPOINT_DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// Take a checkpoint this often (e.g. 1h); 0 turns automatic
    /// checkpoints off.
    #[arg(long, env = "FORTRESS_CHECKPOINT_INTERVAL", default_value = "0", value_parser = parse_duration)]
    pub checkpoint_interval: Duration,
    /// Automatic checkpoints to keep (older ones are pruned).
    #[arg(long, env = "FORTRESS_CHECKPOINT_KEEP", default_value_t = 24)]
    pub checkpoint_keep: usize,
    /// File holding the key that encrypts the WAL and checkpoints
    /// (AES-256-GCM; 32 raw bytes or 64 hex digits); the key may instead
    /// come from FORTRESS_KEY.
    #[arg(long, env = "FORTRESS_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// An archive the WAL and checkpoints are shipped to, as NAME=URL
    /// (repeatable; in the config file a list): `file:///dir`,
    /// `s3://bucket/path`, `gs://bucket/path`, `az://container/path`.
    /// Credentials and endpoints come from the standard environment
    /// (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, GOOGLE_APPLICATION_CREDENTIALS,
    /// AZURE_STORAGE_ACCOUNT_NAME, ...), never from the URL.
    #[arg(long = "archive", env = "FORTRESS_ARCHIVE", value_delimiter = ',', action = clap::ArgAction::Append)]
    pub archives: Vec<String>,
    /// How often each archive's connectivity is checked (critical).
    #[arg(long, env = "FORTRESS_HEALTH_CONNECTIVITY_EVERY", default_value = "30s", value_parser = parse_duration_ms)]
    pub health_connectivity_every: Duration,
    /// How often each archive's latency is checked.
    #[arg(long, env = "FORTRESS_HEALTH_LATENCY_EVERY", default_value = "60s", value_parser = parse_duration_ms)]
    pub health_latency_every: Duration,
    /// The latency check fails above this (a write and a read back).
    #[arg(long, env = "FORTRESS_HEALTH_LATENCY_MAX", default_value = "500ms", value_parser = parse_duration_ms)]
    pub health_latency_max: Duration,
    /// How often each archive's capacity is checked.
    #[arg(long, env = "FORTRESS_HEALTH_CAPACITY_EVERY", default_value = "300s", value_parser = parse_duration_ms)]
    pub health_capacity_every: Duration,
    /// The capacity check fails above this share of the disk used, in %.
    #[arg(long, env = "FORTRESS_HEALTH_CAPACITY_MAX_PCT", default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub health_capacity_max_pct: u8,
    /// How often each archive's replication lag is checked (critical).
    #[arg(long, env = "FORTRESS_HEALTH_LAG_EVERY", default_value = "30s", value_parser = parse_duration_ms)]
    pub health_lag_every: Duration,
    /// The lag check fails when the last successful shipping round is
    /// older than this.
    #[arg(long, env = "FORTRESS_HEALTH_LAG_MAX", default_value = "10s", value_parser = parse_duration_ms)]
    pub health_lag_max: Duration,
    /// Sealed WAL segments kept on disk beyond what recycling could remove
    /// (see the README's "Disaster recovery").
    #[arg(long, env = "FORTRESS_WAL_KEEP_SEGMENTS", default_value_t = 2)]
    pub wal_keep_segments: usize,
    /// How often recycling looks for WAL segments it may remove.
    #[arg(long, env = "FORTRESS_WAL_RECYCLE_INTERVAL", default_value = "10s", value_parser = parse_duration_ms)]
    pub wal_recycle_interval: Duration,
    /// Size at which a shard's WAL starts a new segment, in MiB (the unit
    /// recycling removes).
    #[arg(long, env = "FORTRESS_WAL_SEGMENT_MB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub wal_segment_mb: u64,
    /// Address standbys stream the WAL from (`fortress standby --primary`);
    /// off unless given. Beyond loopback it needs FORTRESS_REPLICATION_TOKEN.
    #[arg(long, env = "FORTRESS_REPLICATION_LISTEN")]
    pub replication_listen: Option<String>,
    /// The replication address other nodes reach this one at, written
    /// into the write lease it holds so that, after a failover, the other
    /// standbys follow it (default: --replication-listen).
    #[arg(long, env = "FORTRESS_REPLICATION_ADVERTISE")]
    pub replication_advertise: Option<String>,
    /// How commits are acknowledged with a standby: NAME=async (at local
    /// durability, the default) or NAME=sync (only once the standby named
    /// NAME holds the commit durably: RPO 0). Repeatable.
    #[arg(long = "standby-mode", env = "FORTRESS_STANDBY_MODE", value_delimiter = ',', action = clap::ArgAction::Append, value_parser = parse_standby_mode)]
    pub standby_modes: Vec<(String, bool)>,
    /// How long a commit waits for a synchronous standby before
    /// --sync-fallback applies.
    #[arg(long, env = "FORTRESS_SYNC_TIMEOUT", default_value = "10s", value_parser = parse_duration_ms)]
    pub sync_timeout: Duration,
    /// When a synchronous standby has not acknowledged within
    /// --sync-timeout: `wait` on (as PostgreSQL does), or `degrade` to
    /// async until it has caught up.
    #[arg(long, env = "FORTRESS_SYNC_FALLBACK", value_enum, default_value_t = crate::dr::replication::primary::Fallback::Wait)]
    pub sync_fallback: crate::dr::replication::primary::Fallback,
    /// How shipped WAL is compressed.
    #[arg(long, env = "FORTRESS_SHIP_COMPRESSION", value_enum, default_value_t = crate::dr::archive::Compression::Zstd)]
    pub ship_compression: crate::dr::archive::Compression,
    /// How often each archive receives what the WAL gained (its recovery
    /// point under load).
    #[arg(long, env = "FORTRESS_SHIP_INTERVAL", default_value = "1s", value_parser = parse_duration_ms)]
    pub ship_interval: Duration,
    /// This node's name: the write lease's holder, and what its primary
    /// calls a standby. Default `primary` (`standby` for `fortress
    /// standby`).
    #[arg(long, env = "FORTRESS_NODE_NAME")]
    pub name: Option<String>,
    /// A multi-master peer, NAME=ADDR (its --replication-listen);
    /// repeatable. Every peer takes writes and pulls every other's; give
    /// each node --name and --replication-listen, and every peer the same
    /// tables and --conflict.
    #[arg(long = "peer", env = "FORTRESS_PEER", value_delimiter = ',', action = clap::ArgAction::Append)]
    pub peers: Vec<String>,
    /// How multi-master peers choose between two versions of a row:
    /// `timestamp` (the greater hybrid-clock commit time), `lww` (the
    /// greater wall-clock time), `version-vector` (concurrent versions kept
    /// as siblings, listed in fortress_conflicts until a later write).
    #[arg(long, env = "FORTRESS_CONFLICT", default_value = "timestamp", value_parser = parse_resolver)]
    pub conflict: fortress_storage::conflict::Resolver,
    /// With peers: how long old row versions and deleted rows' tombstones
    /// are kept, so that a peer's version written before a delete and
    /// arriving up to this late is still decided against it (later, it
    /// would bring the row back).
    #[arg(long, env = "FORTRESS_PEER_MAX_LAG", default_value = "1h", value_parser = parse_duration_ms)]
    pub peer_max_lag: Duration,
    /// The archive (by its --archive name) holding the write lease, which
    /// decides the one node that takes writes; `off` for none. Default:
    /// the first --archive, on a node with standbys (--replication-listen)
    /// or on a standby.
    #[arg(long, env = "FORTRESS_LEASE_ARCHIVE")]
    pub lease_archive: Option<String>,
    /// The write lease's time to live: its holder renews it every fifth of
    /// this and stops taking writes at four fifths without a renewal; a
    /// standby takes it once it saw it unchanged this long.
    #[arg(long, env = "FORTRESS_LEASE_TTL", default_value = "5s", value_parser = parse_duration_ms)]
    pub lease_ttl: Duration,
    /// On a standby with the lease: `auto` takes over by itself once the
    /// primary is lost (--primary-timeout) and its lease expired; `manual`
    /// only by `fortress dr failover`.
    #[arg(long, env = "FORTRESS_FAILOVER", value_enum, default_value_t = FailoverMode::Auto)]
    pub failover: FailoverMode,
    /// A standby also counts its primary lost when the health score of its
    /// check of it (heard from each second; EMA, alpha 0.3) falls below
    /// this: a primary heard only now and then.
    #[arg(long, env = "FORTRESS_FAILOVER_SCORE", default_value_t = 0.2, value_parser = parse_score)]
    pub failover_score: f64,
    /// A primary replaced by a failover or a handover: `auto` rejoins as a
    /// standby of its successor by itself once its lost-transactions report
    /// is saved (its copy set aside, as `fortress standby --rebuild` does);
    /// `manual` stays fenced until started that way.
    #[arg(long, env = "FORTRESS_REJOIN", value_enum, default_value_t = FailoverMode::Auto)]
    pub rejoin: FailoverMode,
}

fn parse_resolver(text: &str) -> Result<fortress_storage::conflict::Resolver, String> {
    text.parse()
}

fn parse_score(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        // A score back at 1 is never quite reached after one miss: 1 would
        // count every primary that ever missed a check as lost.
        Ok(s) if (0.0..1.0).contains(&s) => Ok(s),
        _ => Err(format!(
            "{text:?} is not a score from 0 up to (not including) 1"
        )),
    }
}

/// Whether a standby takes over by itself.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailoverMode {
    Auto,
    Manual,
}

/// `NAME=async` or `NAME=sync`: (name, synchronous).
fn parse_standby_mode(text: &str) -> Result<(String, bool), String> {
    let (name, mode) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=async or NAME=sync"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("{text:?} names no standby"));
    }
    match mode.trim() {
        "async" => Ok((name.to_string(), false)),
        "sync" => Ok((name.to_string(), true)),
        other => Err(format!("standby mode {other:?} is not async or sync")),
    }
}

/// Like [`parse_duration`], also taking milliseconds (`250ms`).
pub fn parse_duration_ms(text: &str) -> Result<Duration, String> {
    match text.trim().strip_suffix("ms") {
        Some(ms) => ms
            .trim()
            .parse()
            .map(Duration::from_millis)
            .map_err(|_| format!("{text:?} is not a duration")),
        None => parse_duration(text),
    }
}

impl ServeArgs {
    /// Which standbys commits wait for (see --standby-mode).
    pub fn sync_policy(&self) -> crate::dr::replication::primary::SyncPolicy {
        crate::dr::replication::primary::SyncPolicy {
            sync: self
                .standby_modes
                .iter()
                .filter(|(_, sync)| *sync)
                .map(|(name, _)| name.clone())
                .collect(),
            timeout: self.sync_timeout,
            fallback: self.sync_fallback,
        }
    }

    /// The archives' health check settings.
    pub fn health(&self) -> crate::dr::health::Settings {
        crate::dr::health::Settings {
            connectivity_every: self.health_connectivity_every,
            latency_every: self.health_latency_every,
            latency_max: self.health_latency_max,
            capacity_every: self.health_capacity_every,
            capacity_max_pct: self.health_capacity_max_pct,
            lag_every: self.health_lag_every,
            lag_max: self.health_lag_max,
        }
    }

    pub fn dirs(&self) -> DirArgs {
        DirArgs {
            data_dir: self.data_dir.clone(),
            checkpoint_dir: self.checkpoint_dir.clone(),
            key_file: self.key_file.clone(),
        }
    }
}
