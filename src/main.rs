//! `fortress`: one binary serving a sharded, PostgreSQL-compatible store.

mod admin;
mod checkpoint;
mod cli;
mod config;
mod control;
mod dr;
mod key;
mod lock;
mod perms;
mod restore;
mod status;
mod tls;
mod user;

use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use fortress_proxy::{Cluster, ClusterOptions};
use fortress_storage::wal::WalOptions;
use fortress_storage::ShardOptions;
use tokio::net::TcpListener;

use cli::{Cli, Command, ServeArgs};

/// mimalloc returns freed memory to the system, where glibc's allocator
/// keeps what shard threads freed after a large scan or sort.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    perms::owner_only();
    tls::install_default_provider();
    let (cli, from_file) = parse_command_line()?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("FORTRESS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match &cli.command {
        Command::Serve(args) if args.log_format == cli::LogFormat::Json => log.json().init(),
        Command::Standby(args) if args.serve.log_format == cli::LogFormat::Json => {
            log.json().init()
        }
        _ => log
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    match cli.command {
        Command::Serve(args) => serve(args, None),
        Command::Checkpoint(args) => checkpoint::run(args.action),
        Command::Restore(args) => restore::run(args),
        Command::Status(args) => status::run(args),
        Command::User(args) => user::run(args.action),
        Command::Dr(args) => dr::cli::run(args.action),
        Command::Standby(args) => {
            let name = args.serve.name.clone().unwrap_or_else(|| "standby".into());
            serve(
                args.serve,
                Some(dr::replication::standby::Upstream {
                    primary: args.primary,
                    name,
                    id: String::new(),
                    timeout: args.primary_timeout,
                    rebuild: args.rebuild,
                    dir: std::path::PathBuf::new(),
                    epoch: 0,
                    archives: Vec::new(),
                }),
            )
        }
        Command::Config(_) => {
            let e = from_file.expect("config print has serve's settings");
            print!("{}", config::print(&e.command, &e.matches, &e.from_file));
            Ok(())
        }
    }
}

/// The serve settings as parsed: for `fortress config print`.
struct Effective {
    command: clap::Command,
    matches: clap::ArgMatches,
    /// Keys the configuration file set.
    from_file: std::collections::BTreeSet<String>,
}

/// Parses the command line; where `serve` or `config print` names a
/// configuration file, its settings join the command line (see [`config`]).
fn parse_command_line() -> anyhow::Result<(Cli, Option<Effective>)> {
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let command = Cli::command();
    let serve = command
        .find_subcommand("serve")
        .expect("a serve command")
        .clone();
    let settings = |m: &clap::ArgMatches| match m.subcommand() {
        Some(("serve" | "standby", m)) => Some(m.clone()),
        Some(("config", m)) => m.subcommand_matches("print").cloned(),
        _ => None,
    };
    let mut matches = command.clone().get_matches_from(&argv);
    let mut from_file = Default::default();
    if let Some(sub) = settings(&matches) {
        if let Some(file) = sub.get_one::<std::path::PathBuf>("config") {
            let (extra, keys) = config::file_args(file, &serve, &sub)?;
            argv.extend(extra);
            from_file = keys;
            matches = command.get_matches_from(&argv);
        }
    }
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let effective = settings(&matches).map(|matches| Effective {
        command: serve,
        matches,
        from_file,
    });
    Ok((cli, effective))
}

/// Opens an existing data directory with the layout it was created with and
/// default settings: for commands that work on a directory no server holds.
pub fn open_existing(
    dir: &std::path::Path,
    cipher: Option<Arc<fortress_storage::cipher::Cipher>>,
) -> anyhow::Result<Cluster> {
    let identity = fortress_proxy::cluster::read_identity(dir)?
        .with_context(|| format!("{} is not a fortress data directory", dir.display()))?;
    let (shards, vnodes) = (identity.shards, identity.vnodes);
    let opts = ClusterOptions {
        data_dir: dir.to_path_buf(),
        shards,
        vnodes,
        shard: ShardOptions {
            wal: WalOptions {
                cipher,
                ..WalOptions::default()
            },
            ..ShardOptions::default()
        },
        cache_ttl: std::time::Duration::ZERO,
        work_rows: 1_000_000,
        work_bytes: 1 << 30,
        standby: false,
    };
    Cluster::open(opts).with_context(|| format!("opening {}", dir.display()))
}

/// `fortress serve`, or with `upstream` `fortress standby`: the same server
/// on a copy that follows a primary, serving reads only.
fn serve(
    args: ServeArgs,
    upstream: Option<dr::replication::standby::Upstream>,
) -> anyhow::Result<()> {
    if upstream.is_none() && !args.standby_modes.is_empty() && args.replication_listen.is_none() {
        anyhow::bail!("--standby-mode names standbys, but no --replication-listen accepts them");
    }
    if args.sync_timeout.is_zero() {
        anyhow::bail!("--sync-timeout must be above zero");
    }
    if let Some(up) = &upstream {
        if up.timeout.is_zero() {
            anyhow::bail!("--primary-timeout must be above zero");
        }
    }
    if !args.peers.is_empty() {
        if upstream.is_some() {
            anyhow::bail!("a standby has no --peer: its primary's peers are the primary's");
        }
        if args.replication_listen.is_none() || args.name.is_none() {
            anyhow::bail!("--peer needs --name (this node among its peers) and --replication-listen (where the peers pull from)");
        }
    }
    if args.shards == 0 || args.shards > 1024 {
        anyhow::bail!("--shards must be between 1 and 1024");
    }
    if args.vnodes == 0 {
        anyhow::bail!("--vnodes must be at least 1");
    }
    if args.statement_timeout.as_millis() > i32::MAX as u128 {
        anyhow::bail!("--statement-timeout must be at most 24 days (PostgreSQL's bound)");
    }
    if upstream.as_ref().is_some_and(|u| u.rebuild) {
        set_aside(&args.data_dir)?;
    }
    let _lock = lock::DirLock::try_acquire(&args.data_dir)?.with_context(|| {
        format!(
            "another fortress process holds {} (its lock file)",
            args.data_dir.display()
        )
    })?;
    let node_id = dr::node_id(&args.data_dir)?;
    let upstream = match upstream {
        None => None,
        Some(u) => Some(dr::replication::standby::Upstream {
            id: node_id.clone(),
            dir: args.data_dir.clone(),
            archives: args
                .archives
                .iter()
                .map(|spec| dr::archive::parse_spec(spec).map(|(_, url)| url))
                .collect::<anyhow::Result<_>>()?,
            ..u
        }),
    };
    let dirs = args.dirs();
    for dir in [&args.data_dir, &dirs.checkpoints()] {
        if dir.exists() {
            let changed = perms::tighten(dir)?;
            if changed > 0 {
                tracing::warn!(
                    dir = %dir.display(),
                    entries = changed,
                    "took group and other access off files of the data directory"
                );
            }
        }
    }
    if let Ok(spec) = std::env::var("FORTRESS_FAULTS") {
        fortress_storage::fault::configure(&spec).map_err(anyhow::Error::msg)?;
        tracing::warn!(faults = %spec, "fault points armed");
    }
    let cipher = key::load(args.key_file.as_deref())?;
    let users = Arc::new(
        fortress_proxy::users::Users::open(&args.data_dir)
            .with_context(|| format!("reading the users of {}", args.data_dir.display()))?,
    );
    check_trust(&args.listen, &users, &args.data_dir)?;
    let admin_token = admin::token_from_env()?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::load(cert, key)?),
        _ => None,
    };
    let archives = dr::open_archives(&args.archives)?;
    let lease_archive = dr::lease_archive(&args, upstream.is_some())?;
    if lease_archive
        .as_ref()
        .is_some_and(|_| args.lease_ttl < std::time::Duration::from_millis(100))
    {
        anyhow::bail!("--lease-ttl must be at least 100ms");
    }
    // A standby's archives hold its primary's logs and the lease: it
    // reads them, and ships nothing into them.
    let archives = if upstream.is_some() {
        Vec::new()
    } else {
        archives
    };
    let node_name = args
        .name
        .clone()
        .or_else(|| upstream.as_ref().map(|u| u.name.clone()))
        .unwrap_or_else(|| "primary".into());
    let admin_addr = match args.admin_listen.as_str() {
        "off" => None,
        addr => {
            let addr: std::net::SocketAddr = addr
                .parse()
                .with_context(|| format!("--admin-listen {addr:?} is not an address (or `off`)"))?;
            admin::check_exposure(&addr, admin_token.as_deref(), users.required())?;
            Some(addr)
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("fortress")
        .thread_stack_size(fortress_proxy::limits::THREAD_STACK_BYTES)
        .build()?;
    runtime.block_on(async move {
        // Before the cluster opens: handles taken earlier record nothing.
        let exporter = match admin_addr {
            Some(_) => Some(admin::prometheus::Exporter::install()?),
            None => None,
        };
        // A standby takes its layout from the primary (asked for once,
        // when its copy is new).
        let (shards, vnodes) = match &upstream {
            None => (args.shards, args.vnodes),
            Some(up) => match fortress_proxy::cluster::read_identity(&args.data_dir)? {
                Some(id) => (id.shards, id.vnodes),
                None => {
                    let boot =
                        dr::replication::standby::bootstrap(&args.data_dir, up, cipher.clone());
                    let id = tokio::select! {
                        id = boot => id?,
                        _ = shutdown_signal() => return Ok(()),
                    };
                    (id.shards, id.vnodes)
                }
            },
        };
        let opts = ClusterOptions {
            data_dir: args.data_dir.clone(),
            shards,
            vnodes,
            shard: ShardOptions {
                wal: WalOptions {
                    sync: args.sync,
                    cipher,
                    segment_bytes: args.wal_segment_mb << 20,
                    ..WalOptions::default()
                },
                cache_bytes: args.page_cache_mb << 20,
                head_cache_bytes: args.row_cache_mb << 20,
                sort_budget: args.sort_mem_mb << 20,
                disk_reserve: args.disk_reserve_mb << 20,
                // A deleted row's tombstone must outlive any peer's older
                // version of it still on its way, or that version would
                // bring the row back: multi-master keeps old versions
                // for --peer-max-lag.
                gc_grace: match args.peers.is_empty() {
                    true => ShardOptions::default().gc_grace,
                    false => args.peer_max_lag.max(ShardOptions::default().gc_grace),
                },
                ..ShardOptions::default()
            },
            cache_ttl: std::time::Duration::from_secs(args.cache_ttl),
            work_rows: args.work_rows,
            work_bytes: args.work_mem_mb << 20,
            standby: upstream.is_some(),
        };
        let cluster = tokio::task::spawn_blocking(move || Cluster::open(opts))
            .await?
            .with_context(|| format!("opening {}", args.data_dir.display()))?;
        let cluster = Arc::new(cluster);
        control::listen(&args.data_dir, cluster.clone())?;
        let follower = upstream
            .clone()
            .map(|up| dr::replication::standby::spawn(cluster.clone(), up));
        let peers = match args.peers.is_empty() {
            true => None,
            false => {
                let list = args
                    .peers
                    .iter()
                    .map(|p| dr::replication::peer::parse_peer(p).map_err(anyhow::Error::msg))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                cluster.set_peer_name(&node_name);
                Some(dr::replication::peer::spawn(
                    cluster.clone(),
                    &args.data_dir,
                    &node_name,
                    args.conflict,
                    list,
                    args.peer_max_lag,
                )?)
            }
        };
        let mut standbys = None;
        if let Some(addr) = &args.replication_listen {
            let token = dr::replication::token_from_env();
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the replication port {addr}"))?;
            let local = listener.local_addr()?;
            if token.is_none() && !local.ip().is_loopback() {
                anyhow::bail!(
                    "--replication-listen {addr} is beyond loopback: set FORTRESS_REPLICATION_TOKEN (standbys present it)"
                );
            }
            tracing::info!(replication = %local, token = token.is_some(), "standbys may stream the WAL");
            let serving = dr::replication::primary::serve(
                listener,
                cluster.clone(),
                token,
                args.sync_policy(),
                peers.clone(),
                std::path::absolute(args.dirs().checkpoints())?,
            );
            if let Some(p) = &peers {
                let (p, s) = (p.clone(), serving.clone());
                cluster.set_replication_report(Arc::new(move || {
                    let mut rows = s.rows();
                    rows.extend(p.rows());
                    rows
                }));
            }
            standbys = Some(serving);
        }
        let failover = match lease_archive {
            None => None,
            Some(archive) => {
                let lease = dr::lease::Lease::open(
                    archive,
                    &node_name,
                    &node_id,
                    args.lease_ttl,
                    &args.data_dir,
                )?
                .advertising(advertised(&args)?);
                Some(
                    dr::failover::Manager::start(
                        cluster.clone(),
                        args.data_dir.clone(),
                        lease,
                        follower.clone(),
                        standbys.clone(),
                        dr::failover::Policy {
                            auto: args.failover == cli::FailoverMode::Auto,
                            min_score: args.failover_score,
                            rejoin: args.rejoin == cli::FailoverMode::Auto,
                        },
                    )
                    .await,
                )
            }
        };
        // A node replaced by a failover ships nothing: its logs went on
        // past the point its successor took over at.
        let replaced = failover
            .as_ref()
            .is_some_and(|f| f.status().replaced.is_some());
        if replaced && !archives.is_empty() {
            tracing::error!("this node was replaced by a failover: it ships nothing to its archives");
        }
        // A primary that took over (write lease epoch 2 and up) ships into
        // its own timeline of each archive.
        let epoch = failover.as_ref().map_or(0, |f| f.epoch());
        let archives = match (replaced, epoch) {
            (true, _) => Vec::new(),
            (false, 0 | 1) => archives,
            (false, e) => archives
                .iter()
                .map(|p| dr::archive::Provider::open(&p.name, &dr::archive::timeline_url(&p.url, e)))
                .collect::<anyhow::Result<_>>()?,
        };
        let dr = Arc::new(dr::Dr::start(
            archives,
            &cluster,
            std::path::absolute(args.dirs().checkpoints())?,
            args.ship_compression,
            args.ship_interval,
            &args.health(),
        ));
        if let Some(f) = &follower {
            f.after_promote(after_promotion(
                cluster.clone(),
                standbys.clone(),
                dr.clone(),
                failover.clone(),
                args.archives.clone(),
                std::path::absolute(args.dirs().checkpoints())?,
            ));
        }
        // A standby's logs are its primary's: it neither checkpoints nor
        // recycles them on its own.
        let primary = upstream.is_none();
        if primary {
            dr::recycle::spawn(
                cluster.clone(),
                dr.clone(),
                standbys,
                peers.clone(),
                std::path::absolute(args.dirs().checkpoints())?,
                args.wal_keep_segments,
                args.wal_recycle_interval,
            );
        }
        if primary && !args.checkpoint_interval.is_zero() {
            let root = std::path::absolute(args.dirs().checkpoints())?;
            checkpoint::spawn_automatic(
                cluster.clone(),
                root,
                args.checkpoint_interval,
                args.checkpoint_keep,
            );
        }
        let listener = TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let session_defaults = match args.statement_timeout.as_millis() {
            0 => Vec::new(),
            ms => vec![("statement_timeout".into(), format!("{ms}ms"))],
        };
        let connections = Arc::new(fortress_proxy::wire::ConnectionStats::default());
        if let (Some(addr), Some(exporter)) = (admin_addr, exporter) {
            let admin_listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the admin API to {addr}"))?;
            tracing::info!(
                admin = %admin_listener.local_addr()?,
                https = tls.is_some(),
                token = admin_token.is_some(),
                "admin API listening"
            );
            let state = admin::AdminState {
                direct: fortress_proxy::direct::Direct::new(
                    cluster.clone(),
                    session_defaults.clone(),
                ),
                cluster: cluster.clone(),
                connections: connections.clone(),
                checkpoints: args.dirs().checkpoints(),
                settings: admin::Settings::of(&args),
                started: std::time::Instant::now(),
                token: admin_token,
                metrics: exporter,
                shard_counts: Default::default(),
                dr: dr.clone(),
                follower,
                failover,
            };
            admin::spawn(
                admin_listener,
                Arc::new(state),
                tls.as_ref().map(|t| t.config.clone()),
            )?;
        }
        tracing::info!(
            listen = %listener.local_addr()?,
            data_dir = %args.data_dir.display(),
            shards = args.shards,
            sync = ?args.sync,
            tls = tls.is_some(),
            users = users.required(),
            "fortress is ready"
        );
        let workers = match args.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let opts = fortress_proxy::wire::ServeOptions {
            threads: workers,
            max_connections: args.max_connections,
            auth_timeout: args.auth_timeout,
            session_defaults,
            stats: connections,
            users: Some(users),
            tls: tls.map(|tls| fortress_proxy::wire::tls::TlsPolicy {
                acceptor: tokio_rustls::TlsAcceptor::from(tls.config),
                required: args.tls_required,
                cert_pem: tls.cert_pem,
            }),
        };
        fortress_proxy::wire::serve(listener, cluster.clone(), opts, shutdown_signal())
            .await
            .context("serving connections")?;
        tracing::info!("shutting down");
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || c.flush()).await?;
        anyhow::Ok(())
    })
}

/// The replication address written into the lease this node holds:
/// `--replication-advertise`, or `--replication-listen` unless it names
/// every interface (which others cannot dial).
fn advertised(args: &ServeArgs) -> anyhow::Result<Option<String>> {
    if let Some(a) = &args.replication_advertise {
        return Ok(Some(a.clone()));
    }
    let Some(listen) = &args.replication_listen else {
        return Ok(None);
    };
    let unspecified = listen
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_unspecified());
    if unspecified {
        tracing::warn!(listen = %listen, "--replication-listen names every interface: give --replication-advertise so other standbys can follow this node after a failover");
        return Ok(None);
    }
    Ok(Some(listen.clone()))
}

/// What a standby starts once promoted in place: streaming to its own
/// standbys, and, holding the write lease (epoch 2 and up), shipping to
/// its archives' timeline of that epoch, from a checkpoint taken at once
/// (so the timeline restores and starts standbys by itself). Automatic
/// checkpoints and recycling wait for a restart as `fortress serve`.
fn after_promotion(
    cluster: Arc<Cluster>,
    standbys: Option<Arc<dr::replication::primary::Standbys>>,
    dr: Arc<dr::Dr>,
    failover: Option<Arc<dr::failover::Manager>>,
    archives: Vec<String>,
    checkpoints: std::path::PathBuf,
) -> impl Fn() + Send + Sync + 'static {
    move || {
        if let Some(s) = &standbys {
            s.install(&cluster);
        }
        if archives.is_empty() {
            return;
        }
        let Some(epoch) = failover.as_ref().map(|f| f.epoch()).filter(|&e| e >= 2) else {
            tracing::warn!("promoted without the write lease: nothing is shipped to the archives (their timelines follow lease epochs)");
            return;
        };
        let (c, dr, archives, root) = (
            cluster.clone(),
            dr.clone(),
            archives.clone(),
            checkpoints.clone(),
        );
        tokio::spawn(async move {
            match c.checkpoint(&root).await {
                Ok(m) => tracing::info!(checkpoint = %m.id, "the new timeline's first checkpoint"),
                Err(e) => tracing::warn!(error = %e, "the new timeline's first checkpoint failed"),
            }
            for spec in &archives {
                let added = dr::archive::parse_spec(spec).and_then(|(name, url)| {
                    dr.add(&name, &dr::archive::timeline_url(&url, epoch))
                        .map_err(|e| anyhow::anyhow!("{e}"))
                });
                if let Err(e) = added {
                    tracing::warn!(archive = %spec, error = %format!("{e:#}"), "not shipping to this archive");
                }
            }
        });
    }
}

/// `fortress standby --rebuild`: an existing copy in `dir` (one that
/// followed another history, such as a primary replaced by a failover) is
/// moved beside it, kept, and the standby starts over from its primary;
/// its users file is copied back (who may connect stays as it was).
fn set_aside(dir: &std::path::Path) -> anyhow::Result<()> {
    if fortress_proxy::cluster::read_identity(dir)?.is_none() {
        return Ok(());
    }
    let held = lock::DirLock::try_acquire(dir)?.with_context(|| {
        format!(
            "another fortress process holds {} (its lock file)",
            dir.display()
        )
    })?;
    let dir = std::path::absolute(dir)?;
    let dir = dir.components().collect::<std::path::PathBuf>();
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
    let mut aside = dir.as_os_str().to_owned();
    aside.push(format!(".old-{stamp}"));
    let aside = std::path::PathBuf::from(aside);
    if aside.exists() {
        anyhow::bail!("{} exists already", aside.display());
    }
    std::fs::rename(&dir, &aside)
        .with_context(|| format!("moving {} to {}", dir.display(), aside.display()))?;
    drop(held);
    // Who may connect is the node's, not the copy's: the users stay.
    let users = aside.join(fortress_proxy::users::USERS_FILE);
    if users.exists() {
        std::fs::create_dir_all(&dir)?;
        std::fs::copy(&users, dir.join(fortress_proxy::users::USERS_FILE))
            .with_context(|| format!("keeping the users of {}", aside.display()))?;
    }
    tracing::warn!(
        kept = %aside.display(),
        "--rebuild: the old copy is kept there; this standby starts over from its primary"
    );
    Ok(())
}

/// Refuses to admit every client on an address beyond loopback: with no
/// users, whoever reaches the port could read and change everything. Once
/// serving there, authentication stays required even if every user is
/// removed (then nobody gets in until one is added).
fn check_trust(
    listen: &str,
    users: &fortress_proxy::users::Users,
    data_dir: &std::path::Path,
) -> anyhow::Result<()> {
    let loopback = std::net::ToSocketAddrs::to_socket_addrs(listen)
        .map(|mut addrs| addrs.all(|a| a.ip().is_loopback()))
        .unwrap_or(false);
    if loopback {
        return Ok(());
    }
    if !users.required() {
        anyhow::bail!(
            "fortress has no users, so it would admit any client that reaches {listen}: add one \
             first (`fortress user add NAME --data-dir {}`; clients then log in with \
             SCRAM-SHA-256), or listen on a loopback address",
            data_dir.display()
        );
    }
    users.require_always();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_rebuild_sets_the_copy_aside_and_keeps_the_users() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("node");
        std::fs::create_dir_all(&dir).unwrap();
        fortress_proxy::cluster::write_identity(&dir, 2, 16).unwrap();
        let users = fortress_proxy::users::USERS_FILE;
        std::fs::write(dir.join(users), "alice:x\n").unwrap();
        std::fs::write(dir.join("other"), "copy").unwrap();
        super::set_aside(&dir).unwrap();
        let aside: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().contains("node.old-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert!(aside[0].join("other").exists());
        assert_eq!(
            std::fs::read_to_string(dir.join(users)).unwrap(),
            "alice:x\n"
        );
        assert!(!dir.join("other").exists());
        assert!(fortress_proxy::cluster::read_identity(&dir)
            .unwrap()
            .is_none());
    }
}
