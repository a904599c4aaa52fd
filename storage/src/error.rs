//! Storage errors. Each carries a stable SQLSTATE so the wire layer can report
//! it without guessing; storage itself never formats SQL.

use std::path::PathBuf;

/// Errors raised while evaluating expressions or converting values.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("division by zero")]
    DivisionByZero,
    #[error("{0}")]
    OutOfRange(String),
    #[error("invalid input syntax for type {ty}: \"{text}\"")]
    InvalidText { ty: String, text: String },
    #[error("value too long for type {0}")]
    TooLong(String),
    #[error("numeric field overflow")]
    NumericOverflow,
    #[error("operator does not exist: {0}")]
    NoOperator(String),
    #[error("cannot cast type {from} to {to}")]
    CannotCast { from: String, to: String },
    #[error("argument of {context} must be type boolean, not type {ty}")]
    NotBoolean { context: String, ty: String },
    /// Any other condition, with its SQLSTATE.
    #[error("{1}")]
    Invalid(&'static str, String),
}

impl EvalError {
    /// The SQLSTATE PostgreSQL reports for this condition.
    pub fn sql_state(&self) -> &'static str {
        match self {
            EvalError::DivisionByZero => "22012",
            EvalError::OutOfRange(_) | EvalError::NumericOverflow => "22003",
            EvalError::InvalidText { .. } => "22P02",
            EvalError::TooLong(_) => "22001",
            EvalError::NoOperator(_) => "42883",
            EvalError::CannotCast { .. } => "42846",
            EvalError::NotBoolean { .. } => "42804",
            EvalError::Invalid(code, _) => code,
        }
    }
}

/// Everything a shard operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corruption in {file} at offset {offset}: {reason}")]
    Corruption {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("encryption: {file} at offset {offset}: {reason}")]
    Encryption {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("codec: {0}")]
    Codec(String),
    #[error("relation \"{0}\" does not exist")]
    UnknownTable(String),
    #[error("duplicate key value violates unique constraint \"{constraint}\"")]
    DuplicateKey { constraint: String, detail: String },
    #[error(
        "null value in column \"{column}\" of relation \"{table}\" violates not-null constraint"
    )]
    NotNull {
        table: String,
        column: String,
        detail: String,
    },
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error("could not serialize access due to concurrent update")]
    SerializationFailure { reason: String },
    #[error("snapshot too old: versions at {snapshot} were garbage collected")]
    SnapshotTooOld { snapshot: u64 },
    #[error("shard {shard} is unavailable: {reason}")]
    Unavailable { shard: u32, reason: String },
    #[error("could not obtain lock on relation \"{table}\": {reason}")]
    Locked { table: String, reason: String },
    /// The disk holding `path` is (nearly) full: the write was refused
    /// before it was logged (see [`crate::space`]).
    #[error("could not write to {path}: the disk is full (fewer than {reserve} bytes free)")]
    DiskFull { path: PathBuf, reserve: u64 },
    /// A log reader wanted records that were removed once archived (see
    /// [`crate::tail`]): they must come from an archive instead.
    #[error("the log in {dir} starts at LSN {starts}; LSN {wanted} is no longer in it")]
    Recycled {
        dir: PathBuf,
        starts: u64,
        wanted: u64,
    },
    /// The statement was cancelled or timed out (see [`crate::interrupt`]).
    #[error("{}", .0.message())]
    Interrupted(crate::interrupt::Reason),
}

impl StorageError {
    /// The SQLSTATE reported to clients.
    pub fn sql_state(&self) -> &'static str {
        match self {
            StorageError::UnknownTable(_) => "42P01",
            StorageError::Locked { .. } => "55P03",
            StorageError::Interrupted(_) => "57014",
            StorageError::DiskFull { .. } => "53100",
            // Out of space on a write that was not foreseen.
            e if e.is_disk_full() => "53100",
            StorageError::DuplicateKey { .. } => "23505",
            StorageError::NotNull { .. } => "23502",
            StorageError::Eval(e) => e.sql_state(),
            StorageError::Corruption { .. } => "XX001",
            StorageError::Encryption { .. } => "XX000",
            StorageError::Unavailable { .. } => "58000",
            StorageError::Recycled { .. } => "58P01",
            StorageError::SnapshotTooOld { .. } => "72000",
            StorageError::SerializationFailure { .. } => "40001",
            StorageError::Io { .. } => "58030",
            StorageError::Sled(_) | StorageError::Codec(_) => "XX000",
        }
    }

    /// True for an I/O error that says the disk is full (ENOSPC, EDQUOT).
    pub fn is_disk_full(&self) -> bool {
        let io = match self {
            StorageError::DiskFull { .. } => return true,
            StorageError::Io { source, .. } => source,
            StorageError::Sled(sled::Error::Io(e)) => e,
            _ => return false,
        };
        matches!(io.raw_os_error(), Some(28) | Some(122))
    }

    /// Optional DETAIL line for the client.
    pub fn detail(&self) -> Option<&str> {
        match self {
            StorageError::DuplicateKey { detail, .. } | StorageError::NotNull { detail, .. } => {
                Some(detail)
            }
            _ => None,
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
