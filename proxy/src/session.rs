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
    ("integer_datetimes", "on"),
    ("intervalstyle", "postgres"),
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
    txn: Mutex<TxnState>,
    /// A COPY FROM STDIN in progress.
    pub copy: Mutex<Option<PendingCopy>>,
    /// Plans of the simple queries this connection repeats.
    pub shapes: Mutex<ShapeCache>,
}

impl Session {
    pub fn new(user: &str, database: &str) -> Session {
        let settings = DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Session {
            user: user.to_string(),
            database: database.to_string(),
            settings: Mutex::new(settings),
            txn: Mutex::new(TxnState::Idle),
            copy: Mutex::new(None),
            shapes: Mutex::default(),
        }
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
            None => match DEFAULTS.iter().find(|(k, _)| *k == name) {
                Some((_, d)) => {
                    s.insert(name, d.to_string());
                }
                None => {
                    s.remove(&name);
                }
            },
        }
    }

    /// RESET ALL: every setting back to its default.
    pub fn reset_all(&self) {
        let mut s = self.settings.lock().expect("settings");
        *s = DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
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
