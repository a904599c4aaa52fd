//! Per-connection session state: who is connected and the run-time settings
//! that SET, SHOW and current_setting() read and write.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::copy::PendingCopy;
use crate::sql::shape::ShapeCache;
use crate::txn::TxnState;

/// The server version reported to clients (PostgreSQL 15 compatible).
pub const SERVER_VERSION: &str = concat!("15.0 (fortress ", env!("CARGO_PKG_VERSION"), ")");

/// Defaults of the settings clients commonly read.
const DEFAULTS: &[(&str, &str)] = &[
    ("application_name", ""),
    ("client_encoding", "UTF8"),
    ("datestyle", "ISO, MDY"),
    ("default_transaction_isolation", "read committed"),
    ("extra_float_digits", "1"),
    ("idle_in_transaction_session_timeout", "0"),
    ("integer_datetimes", "on"),
    ("intervalstyle", "postgres"),
    ("lock_timeout", "0"),
    ("search_path", "\"$user\", public"),
    ("server_encoding", "UTF8"),
    ("server_version", SERVER_VERSION),
    ("server_version_num", "150000"),
    ("standard_conforming_strings", "on"),
    ("statement_timeout", "0"),
    ("timezone", "UTC"),
    ("transaction_isolation", "read committed"),
    ("transaction_read_only", "off"),
];

/// The settings that hold a duration (PostgreSQL's units, 0 is off); SET
/// checks their values (see `stop::parse_setting`), and the session keeps
/// them parsed, in this order, for every statement to read.
pub const DURATION_SETTINGS: &[&str] = &[
    "idle_in_transaction_session_timeout",
    "lock_timeout",
    "statement_timeout",
];

/// A duration setting, by its place in [`DURATION_SETTINGS`].
#[derive(Debug, Clone, Copy)]
pub enum Timeout {
    IdleInTransaction = 0,
    Lock = 1,
    Statement = 2,
}

/// The spelling SHOW uses for settings whose names are mixed case.
pub fn display_name(name: &str) -> String {
    match name {
        "datestyle" => "DateStyle",
        "timezone" => "TimeZone",
        "intervalstyle" => "IntervalStyle",
        other => other,
    }
    .to_string()
}

/// State of one client session.
#[derive(Debug)]
pub struct Session {
    pub user: String,
    pub database: String,
    settings: Mutex<BTreeMap<String, String>>,
    /// [`DURATION_SETTINGS`] parsed, in microseconds (0: off), kept with
    /// `settings` so a statement reads them without parsing text.
    timeouts: [std::sync::atomic::AtomicU64; 3],
    /// The server's own defaults (`--statement-timeout`), over [`DEFAULTS`]:
    /// what RESET returns to.
    server_defaults: Vec<(String, String)>,
    txn: Mutex<TxnState>,
    /// A COPY FROM STDIN in progress.
    pub copy: Mutex<Option<PendingCopy>>,
    /// Plans of the simple queries this connection repeats.
    pub shapes: Mutex<ShapeCache>,
    /// Named prepared statements held (see
    /// `limits::MAX_PREPARED_PER_SESSION`).
    pub prepared: std::sync::atomic::AtomicUsize,
    /// Where the connection's cancel requests arrive (set at startup).
    pub cancels: std::sync::OnceLock<std::sync::Arc<pgwire::api::ConnectionHandle>>,
}

impl Session {
    pub fn new(user: &str, database: &str) -> Session {
        Session::with_defaults(user, database, Vec::new())
    }

    /// A session whose settings start from `server_defaults` where they
    /// name one, else from PostgreSQL's defaults.
    pub fn with_defaults(
        user: &str,
        database: &str,
        server_defaults: Vec<(String, String)>,
    ) -> Session {
        let mut settings: BTreeMap<String, String> = DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        settings.extend(server_defaults.iter().cloned());
        let session = Session {
            user: user.to_string(),
            database: database.to_string(),
            timeouts: Default::default(),
            settings: Mutex::new(settings),
            server_defaults,
            txn: Mutex::new(TxnState::Idle),
            copy: Mutex::new(None),
            shapes: Mutex::default(),
            prepared: Default::default(),
            cancels: Default::default(),
        };
        session.parse_timeouts(&session.settings.lock().expect("settings"));
        session
    }

    /// Current value of a setting (names are case-insensitive).
    pub fn get(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            "session_authorization" | "current_user" => Some(self.user.clone()),
            _ => self.settings.lock().expect("settings").get(&name).cloned(),
        }
    }

    /// Sets a setting; `None` resets it to its default.
    pub fn set(&self, name: &str, value: Option<String>) {
        let name = name.to_ascii_lowercase();
        let mut s = self.settings.lock().expect("settings");
        match value {
            Some(v) => {
                s.insert(name, v);
            }
            None => match self.default_of(&name) {
                Some(d) => {
                    s.insert(name, d);
                }
                None => {
                    s.remove(&name);
                }
            },
        }
        self.parse_timeouts(&s);
    }

    /// Keeps [`DURATION_SETTINGS`] parsed after `settings` changed.
    fn parse_timeouts(&self, settings: &BTreeMap<String, String>) {
        for (i, name) in DURATION_SETTINGS.iter().enumerate() {
            let parsed = settings
                .get(*name)
                .and_then(|v| crate::stop::parse_setting(v).ok().flatten())
                .map_or(0, |d| d.as_micros() as u64);
            self.timeouts[i].store(parsed, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// A duration setting's value; `None` when off.
    pub fn timeout(&self, which: Timeout) -> Option<std::time::Duration> {
        let micros = self.timeouts[which as usize].load(std::sync::atomic::Ordering::Relaxed);
        (micros > 0).then(|| std::time::Duration::from_micros(micros))
    }

    /// What RESET gives `name`: the server's default, else PostgreSQL's.
    fn default_of(&self, name: &str) -> Option<String> {
        let server = self.server_defaults.iter().find(|(k, _)| k == name);
        server.map(|(_, v)| v.clone()).or_else(|| {
            DEFAULTS
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    /// RESET ALL: every setting back to its default.
    pub fn reset_all(&self) {
        let mut s = self.settings.lock().expect("settings");
        *s = DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        s.extend(self.server_defaults.iter().cloned());
        self.parse_timeouts(&s);
    }

    /// Installs a new transaction state and returns the old one.
    pub fn replace_txn(&self, new: TxnState) -> TxnState {
        std::mem::replace(&mut *self.txn.lock().expect("txn"), new)
    }

    /// When the open transaction started (its snapshot's wall time), in
    /// Unix microseconds: what now() returns inside a transaction block.
    pub fn txn_start_micros(&self) -> Option<i64> {
        match &*self.txn.lock().expect("txn") {
            TxnState::Active(t) => Some(t.start.wall_micros() as i64),
            _ => None,
        }
    }

    /// What now() returns for a statement starting now: the transaction's
    /// start inside a block, else the current time.
    pub fn statement_now(&self) -> i64 {
        self.txn_start_micros()
            .unwrap_or_else(|| chrono::Utc::now().timestamp_micros())
    }

    /// Tables the open transaction has written (committed by a COMMIT).
    pub fn written_tables(&self) -> Vec<fortress_storage::TableId> {
        match &*self.txn.lock().expect("txn") {
            TxnState::Active(t) => t.tables(),
            _ => Vec::new(),
        }
    }

    /// ReadyForQuery status: `I`, `T` or `E`.
    pub fn txn_status(&self) -> u8 {
        self.txn.lock().expect("txn").status()
    }

    /// An error inside an open transaction block aborts it (25P02 follows).
    pub fn fail_txn(&self) {
        let mut t = self.txn.lock().expect("txn");
        if matches!(*t, TxnState::Active(_)) {
            *t = TxnState::Failed;
        }
    }

    /// Every setting, for SHOW ALL.
    pub fn all(&self) -> Vec<(String, String)> {
        self.settings
            .lock()
            .expect("settings")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
