//! Statements run in-process, without a client connection: the admin API's
//! query and transaction endpoints. Each call gets a session of its own
//! (with the server's session defaults, so `statement_timeout` holds), and
//! each statement runs under the same [`Guard`] a wire statement does.
//! Work is spawned onto the runtime, so a caller that goes away (an HTTP
//! client hanging up) cannot drop a write half way.

use std::sync::Arc;

use futures::StreamExt;
use sqlparser::ast::Statement;

use crate::cluster::Cluster;
use crate::error::{ProxyError, Result};
use crate::exec::{execute, QueryResult};
use crate::plan::OutputColumn;
use crate::session::Session;
use crate::sql::bind::Binder;
use crate::sql::parse;
use crate::wire::guard::Guard;
use fortress_storage::{DataType, Row, Value};

/// What one statement returned.
#[derive(Debug)]
pub struct Answer {
    /// The command tag a client would see (`SELECT 2`, `INSERT 0 1`).
    pub tag: String,
    /// Result columns; empty for a command.
    pub columns: Vec<OutputColumn>,
    pub rows: Vec<Row>,
    /// More rows were produced than the caller's `max_rows`; the rest were
    /// not read.
    pub truncated: bool,
}

impl Answer {
    /// The answer to an empty query: no tag, no rows.
    fn empty() -> Answer {
        Answer {
            tag: String::new(),
            columns: Vec::new(),
            rows: Vec::new(),
            truncated: false,
        }
    }
}

/// A failed transaction: which statement (0-based, in its list; `None`
/// for the BEGIN or COMMIT around them) and why.
#[derive(Debug)]
pub struct Failure {
    pub statement: Option<usize>,
    pub error: ProxyError,
}

/// Statements one transaction may carry.
pub const MAX_STATEMENTS: usize = 1_000;
/// In-process calls running at once; more wait their turn (each may hold
/// a statement's memory, bounded by the work limits).
const MAX_CALLS: usize = 8;

/// Runs in-process statements against one cluster.
#[derive(Clone)]
pub struct Direct {
    cluster: Arc<Cluster>,
    /// Settings each session starts with (the server's `--statement-timeout`).
    defaults: Vec<(String, String)>,
    calls: Arc<tokio::sync::Semaphore>,
}

impl Direct {
    pub fn new(cluster: Arc<Cluster>, defaults: Vec<(String, String)>) -> Direct {
        Direct {
            cluster,
            defaults,
            calls: Arc::new(tokio::sync::Semaphore::new(MAX_CALLS)),
        }
    }

    async fn turn(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.calls
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    fn session(&self) -> Arc<Session> {
        Arc::new(Session::with_defaults(
            "fortress",
            "fortress",
            self.defaults.clone(),
        ))
    }

    /// Runs one statement with `params` in PostgreSQL's text format
    /// (`None` is NULL) for `$1`, `$2`...; at most `max_rows` rows are kept.
    pub async fn query(
        &self,
        sql: String,
        params: Vec<Option<String>>,
        max_rows: usize,
    ) -> Result<Answer> {
        let this = self.clone();
        let turn = self.turn().await;
        spawn(async move {
            let _turn = turn;
            let session = this.session();
            match one_statement(&sql)? {
                Some(stmt) => this.run(&session, &stmt, &params, max_rows).await,
                None => Ok(Answer::empty()),
            }
        })
        .await
    }

    /// Runs `statements` (each one statement, no parameters) as one
    /// transaction: all of them commit, or, when one fails, none does. At
    /// most `max_rows` rows come back in all, each statement getting what
    /// the ones before it left.
    pub async fn transaction(
        &self,
        statements: Vec<String>,
        max_rows: usize,
    ) -> std::result::Result<Vec<Answer>, Failure> {
        if statements.len() > MAX_STATEMENTS {
            return Err(Failure {
                statement: None,
                error: ProxyError::new(
                    "54000",
                    format!(
                        "{} statements in one transaction; at most {MAX_STATEMENTS}",
                        statements.len()
                    ),
                ),
            });
        }
        let this = self.clone();
        let turn = self.turn().await;
        let work = async move {
            let _turn = turn;
            let session = this.session();
            let fail = |statement, error| Failure {
                statement: Some(statement),
                error,
            };
            let around = |error| Failure {
                statement: None,
                error,
            };
            let mut parsed = Vec::with_capacity(statements.len());
            for (i, sql) in statements.iter().enumerate() {
                let stmt = one_statement(sql).map_err(|e| fail(i, e))?;
                if stmt.as_ref().is_some_and(is_txn_control) {
                    let why = "transaction control is not allowed here: the statements \
                               already run as one transaction";
                    return Err(fail(i, ProxyError::new("25000", why)));
                }
                parsed.push(stmt);
            }
            let control = |text: &str| parse(text).map(|mut s| s.remove(0));
            let begin = control("BEGIN").map_err(around)?;
            this.run(&session, &begin, &[], 0).await.map_err(around)?;
            let mut answers = Vec::with_capacity(parsed.len());
            let mut rows_left = max_rows;
            for (i, stmt) in parsed.iter().enumerate() {
                let Some(stmt) = stmt else {
                    answers.push(Answer::empty());
                    continue;
                };
                match this.run(&session, stmt, &[], rows_left).await {
                    Ok(a) => {
                        rows_left -= a.rows.len();
                        answers.push(a)
                    }
                    Err(e) => {
                        this.rollback(&session).await;
                        return Err(fail(i, e));
                    }
                }
            }
            let commit = control("COMMIT").map_err(around)?;
            match this.run(&session, &commit, &[], 0).await {
                // COMMIT of a failed block reports ROLLBACK; it cannot be
                // here (every failure above returned), but say so if it is.
                Ok(a) if a.tag == "COMMIT" => Ok(answers),
                Ok(a) => Err(around(ProxyError::new(
                    "40000",
                    format!("the transaction ended in {}", a.tag),
                ))),
                Err(e) => Err(around(e)),
            }
        };
        match tokio::spawn(work).await {
            Ok(r) => r,
            Err(e) => Err(Failure {
                statement: None,
                error: panicked(e),
            }),
        }
    }

    async fn rollback(&self, session: &Arc<Session>) {
        if let Ok(mut s) = parse("ROLLBACK") {
            let _ = self.run(session, &s.remove(0), &[], 0).await;
        }
    }

    /// Binds and executes one statement under a guard, reading at most
    /// `max_rows` of its rows.
    async fn run(
        &self,
        session: &Arc<Session>,
        stmt: &Statement,
        params: &[Option<String>],
        max_rows: usize,
    ) -> Result<Answer> {
        let mut guard = Guard::new(session, None, false);
        let work = async {
            let answered = async {
                let catalog = self.cluster.catalog();
                let (values, declared) = bind_params(&catalog, session, stmt, params)?;
                let plan = Binder::new(&catalog, session, Some(&values), declared).bind(stmt)?;
                let result = execute(&self.cluster, session, plan).await?;
                answer(result, max_rows).await
            }
            .await;
            if answered.is_err() {
                crate::stop::note_failure();
            }
            answered
        };
        let result = match guard.run(work).await {
            Some(r) => r,
            None => Err(guard.stopped(session)),
        };
        if result.is_err() {
            session.fail_txn();
        }
        result
    }
}

/// Runs `work` as its own task: dropping the caller's future leaves it
/// running to its end.
async fn spawn<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    tokio::spawn(work).await.map_err(panicked)?
}

fn panicked(e: tokio::task::JoinError) -> ProxyError {
    tracing::error!(error = %e, "an in-process statement panicked");
    ProxyError::new("XX000", "the statement failed unexpectedly")
}

/// The one statement of `sql`; `None` for an empty query (which
/// PostgreSQL answers without error); 42601 for several, as PostgreSQL says
/// of a prepared statement.
fn one_statement(sql: &str) -> Result<Option<Statement>> {
    let mut stmts = parse(sql)?;
    match stmts.len() {
        0 => Ok(None),
        1 => Ok(Some(stmts.remove(0))),
        _ => Err(ProxyError::new(
            "42601",
            "cannot insert multiple commands into a prepared statement",
        )),
    }
}

fn is_txn_control(stmt: &Statement) -> bool {
    matches!(
        stmt,
        Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
    )
}

/// `params` as values of the types the statement gives its parameters
/// (text where it does not say), as a Bind in text format is read; and
/// those types.
fn bind_params(
    catalog: &fortress_storage::Catalog,
    session: &Session,
    stmt: &Statement,
    params: &[Option<String>],
) -> Result<(Vec<Value>, Vec<Option<DataType>>)> {
    if params.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut describe = Binder::new(catalog, session, None, Vec::new());
    describe.bind(stmt)?;
    let types: Vec<Option<DataType>> = describe
        .param_types
        .iter()
        .map(|t| Some(t.unwrap_or(DataType::Text)))
        .collect();
    if types.len() != params.len() {
        return Err(ProxyError::new(
            "08P01",
            format!(
                "{} parameters given, but the statement takes {}",
                params.len(),
                types.len()
            ),
        ));
    }
    let values = params
        .iter()
        .zip(&types)
        .map(|(p, ty)| match (p, ty) {
            (Some(text), Some(ty)) => Ok(Value::parse(ty, text)?),
            _ => Ok(Value::Null),
        })
        .collect::<Result<_>>()?;
    Ok((values, types))
}

/// A statement's result as an [`Answer`]; a row stream is read up to
/// `max_rows`.
async fn answer(result: QueryResult, max_rows: usize) -> Result<Answer> {
    let command = |tag: String| Answer {
        tag,
        columns: Vec::new(),
        rows: Vec::new(),
        truncated: false,
    };
    match result {
        QueryResult::Command { tag, .. } | QueryResult::TxnEnd { tag, .. } => Ok(command(tag)),
        QueryResult::TxnStart { tag, .. } => Ok(command(tag.to_string())),
        QueryResult::Rows {
            tag,
            columns,
            mut rows,
        } => {
            // A write's tag counts the rows it wrote, returned or not; a
            // read's, the rows returned (as for a stream cut short).
            let truncated = rows.len() > max_rows;
            let written = rows.len();
            rows.truncate(max_rows);
            let tag = match tag {
                "SELECT" => format!("SELECT {}", rows.len()),
                _ => format!("{tag} {written}"),
            };
            Ok(Answer {
                tag,
                columns,
                rows,
                truncated,
            })
        }
        QueryResult::Stream { columns, mut rows } => {
            let mut out = Vec::new();
            let mut truncated = false;
            while let Some(row) = rows.0.next().await {
                if out.len() == max_rows {
                    truncated = true;
                    break;
                }
                out.push(row?);
            }
            Ok(Answer {
                tag: format!("SELECT {}", out.len()),
                columns,
                rows: out,
                truncated,
            })
        }
        QueryResult::CopyIn { .. } | QueryResult::CopyOut { .. } => Err(ProxyError::new(
            "0A000",
            "COPY needs a client connection (psql's \\copy, or COPY over the wire protocol)",
        )),
    }
}
