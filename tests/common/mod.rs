//! Test harness: starts the real `fortress` binary on a free loopback port in
//! a temporary data directory and stops it when dropped.

#![allow(dead_code)]

pub mod cli;
pub mod net;
pub mod postgres;
pub mod rawpg;
pub mod s3;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

/// A running fortress server.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    /// The admin HTTP API's port.
    pub admin_port: u16,
    pub data_dir: PathBuf,
    log: PathBuf,
    shards: u32,
    /// Extra environment for the server process (e.g. FORTRESS_FAULTS).
    pub env: Vec<(String, String)>,
    /// Extra arguments of `fortress serve`.
    pub args: Vec<String>,
    /// The subcommand and its own arguments: `serve`, or `standby
    /// --primary ...`.
    command: Vec<String>,
}

/// Resident set size of process `pid` in KiB (Linux /proc).
pub fn rss_kib_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Waits (up to 30 s) until something listens on loopback `port`.
pub fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local addr")
        .port()
}

impl Server {
    /// Starts a server on a fresh data directory inside `root`.
    pub fn start(root: &Path) -> Server {
        Self::start_with(root.join("data"), 4)
    }

    /// Starts a server on a fresh data directory inside `root` with extra
    /// environment (e.g. FORTRESS_WORK_ROWS).
    pub fn start_env(root: &Path, env: &[(&str, &str)]) -> Server {
        Self::launch(root.join("data"), 4, env)
    }

    /// Starts a server on `data_dir` with `shards` shards.
    pub fn start_with(data_dir: PathBuf, shards: u32) -> Server {
        Self::launch(data_dir, shards, &[])
    }

    /// Starts a server on `data_dir` with `shards` shards and extra environment.
    pub fn launch(data_dir: PathBuf, shards: u32, env: &[(&str, &str)]) -> Server {
        Self::launch_args(data_dir, shards, env, &[])
    }

    /// [`Server::launch`] with extra arguments of `fortress serve`.
    pub fn launch_args(
        data_dir: PathBuf,
        shards: u32,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Server {
        let mut s = Server {
            args: args.iter().map(|a| a.to_string()).collect(),
            command: vec!["serve".into()],
            child: None,
            port: free_port(),
            admin_port: free_port(),
            log: data_dir.with_extension("log"),
            data_dir,
            shards,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        s.spawn();
        s
    }

    /// Starts `fortress standby` on `data_dir`, named `name`, following the
    /// primary's replication address `primary`, serving reads on its own
    /// port; ready once it is (a new copy first asks the primary for its
    /// layout).
    pub fn standby(
        data_dir: PathBuf,
        primary: &str,
        name: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Server {
        let mut s = Server {
            args: args.iter().map(|a| a.to_string()).collect(),
            command: ["standby", "--primary", primary, "--name", name]
                .map(String::from)
                .to_vec(),
            child: None,
            port: free_port(),
            admin_port: free_port(),
            log: data_dir.with_extension("log"),
            data_dir,
            shards: 4,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        s.spawn();
        s
    }

    /// Starts the server and waits until it says it is ready. A port taken
    /// since `free_port` chose it (another test's server or client) makes
    /// it fail to bind: then it is started again on another port.
    fn spawn(&mut self) {
        for _ in 0..5 {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .expect("open server log");
            let log_start = log.metadata().expect("log metadata").len() as usize;
            let child = Command::new(env!("CARGO_BIN_EXE_fortress"))
                .args(&self.command)
                .arg("--data-dir")
                .arg(&self.data_dir)
                .args(["--listen", &format!("127.0.0.1:{}", self.port)])
                .args(["--shards", &self.shards.to_string()])
                .args(["--admin-listen", &format!("127.0.0.1:{}", self.admin_port)])
                .args(&self.args)
                .env(
                    "FORTRESS_LOG",
                    std::env::var("FORTRESS_TEST_LOG").unwrap_or_else(|_| "info".into()),
                )
                .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("start fortress");
            self.child = Some(child);
            if self.wait_ready(log_start) {
                return;
            }
            self.child = None;
            self.port = free_port();
            self.admin_port = free_port();
        }
        panic!("fortress could not bind a free port:\n{}", self.log());
    }

    /// Waits until this start of the server logs that it is ready and
    /// accepts a connection; false if it exited because its port was taken.
    fn wait_ready(&mut self, log_start: usize) -> bool {
        // The ready line is logged at info, the tests' default level.
        let logs_ready = std::env::var("FORTRESS_TEST_LOG").is_err()
            && !self.env.iter().any(|(k, _)| k == "FORTRESS_LOG");
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let this_start = self.log_since(log_start);
            if (this_start.contains("fortress is ready") || !logs_ready)
                && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return true;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                if this_start.contains("Address already in use") {
                    return false;
                }
                panic!("fortress exited with {status} during start-up:\n{this_start}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("fortress did not start listening:\n{}", self.log());
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    /// Resident set size of the server process in KiB (Linux /proc).
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib_of(self.child.as_ref()?.id())
    }

    /// What the server logged from byte `start` of its log on (an earlier
    /// run's output comes before it).
    fn log_since(&self, start: usize) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(bytes.get(start..).unwrap_or_default()).into_owned()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The admin API's base URL.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    pub fn url(&self) -> String {
        format!("host=127.0.0.1 port={} user=fortress dbname=app", self.port)
    }

    /// A connected tokio-postgres client.
    pub async fn client(&self) -> Client {
        let (client, conn) = tokio_postgres::connect(&self.url(), NoTls)
            .await
            .expect("connect to fortress");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// Waits for the server to exit by itself (e.g. at an injected crash).
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if c.try_wait().ok().flatten().is_some() {
                    self.child = None;
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Stops the server with SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server with SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match c.try_wait() {
                    Ok(Some(status)) => {
                        assert!(
                            status.success(),
                            "fortress exited with {status}:\n{}",
                            self.log()
                        );
                        return;
                    }
                    _ if Instant::now() > deadline => {
                        let _ = c.kill();
                        let _ = c.wait();
                        panic!("fortress did not stop on SIGTERM:\n{}", self.log());
                    }
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }

    /// Starts the server again on the same directory and port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the server first");
        self.spawn();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Moves `amount` from account `from` to `to` of table `acct (id int,
/// balance bigint)` in one transaction (two shards when they differ).
pub async fn transfer(
    c: &mut Client,
    from: i32,
    to: i32,
    amount: i64,
) -> Result<(), tokio_postgres::Error> {
    let t = c.transaction().await?;
    t.execute(
        "UPDATE acct SET balance = balance - $1 WHERE id = $2",
        &[&amount, &from],
    )
    .await?;
    t.execute(
        "UPDATE acct SET balance = balance + $1 WHERE id = $2",
        &[&amount, &to],
    )
    .await?;
    t.commit().await
}

/// A bank of `accounts` rows `acct (id, balance)` holding `start` each,
/// and four clients moving 1 between them until `stop` is set (or 40 s);
/// each task returns the transfers it made (40001 conflicts are retried
/// by the next one).
pub async fn bank_under_transfers(
    server: &Server,
    accounts: i32,
    start: i64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<u64>> {
    let c = server.client().await;
    c.batch_execute("CREATE TABLE acct (id int PRIMARY KEY, balance bigint NOT NULL)")
        .await
        .unwrap();
    let values: Vec<String> = (0..accounts).map(|i| format!("({i}, {start})")).collect();
    c.batch_execute(&format!("INSERT INTO acct VALUES {}", values.join(",")))
        .await
        .unwrap();
    let mut workers = Vec::new();
    for w in 0..4i32 {
        let mut c = server.client().await;
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let (mut done, mut i) = (0u64, w);
            let deadline = Instant::now() + Duration::from_secs(40);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                i = (i * 7 + 3) % accounts;
                match transfer(&mut c, i, (i + 1 + w) % accounts, 1).await {
                    Ok(()) => done += 1,
                    Err(e) if code(&e) == "40001" => {}
                    // Stopped, perhaps by killing the server.
                    Err(_) if stop.load(std::sync::atomic::Ordering::Relaxed) => break,
                    Err(e) => panic!("transfer failed: {e}"),
                }
            }
            done
        }));
    }
    workers
}

/// A REPEATABLE READ block: one snapshot throughout, first committer wins.
pub async fn snapshot_txn(
    c: &mut Client,
) -> Result<tokio_postgres::Transaction<'_>, tokio_postgres::Error> {
    c.build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await
}

/// The lines of `EXPLAIN sql`, joined.
pub async fn explain(c: &Client, sql: &str) -> String {
    c.simple_query(&format!("EXPLAIN {sql}"))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The SQLSTATE of a failed statement.
pub fn code(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

/// A protocol-3.0 StartupMessage with these `key\0value\0` parameters.
pub fn startup_message(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196608i32.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    msg
}

/// Reads one backend message from a raw connection: (type, body).
pub fn read_message(s: &mut std::net::TcpStream) -> (u8, Vec<u8>) {
    use std::io::Read;
    let mut head = [0u8; 5];
    s.read_exact(&mut head).unwrap();
    let len = i32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len - 4];
    s.read_exact(&mut body).unwrap();
    (head[0], body)
}

/// Inserts a row for each of `ids` into `table`, 400 to a statement, each
/// row the VALUES tuple `row(id)`: megabytes of WAL in a few statements.
pub async fn insert_chunked(
    c: &Client,
    table: &str,
    ids: std::ops::Range<i32>,
    row: impl Fn(i32) -> String,
) {
    for chunk in ids.collect::<Vec<i32>>().chunks(400) {
        let values: Vec<String> = chunk.iter().map(|&i| row(i)).collect();
        c.batch_execute(&format!("INSERT INTO {table} VALUES {}", values.join(",")))
            .await
            .unwrap();
    }
}

/// Waits up to `secs` until `server`'s log says `what`.
pub async fn wait_for_log(server: &Server, what: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !server.log().contains(what) {
        assert!(
            Instant::now() < deadline,
            "the log never said {what:?}:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits up to 10 s until `table` is there to read on `server` (a standby
/// that replicated its creation).
pub async fn wait_for_table(server: &Server, table: &str) {
    let c = server.client().await;
    let sql = format!("SELECT count(*) FROM {table}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.query_one(&sql, &[]).await.is_err() {
        assert!(Instant::now() < deadline, "{table} never appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
