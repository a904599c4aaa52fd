//! The PostgreSQL wire front end (pgwire): startup, simple and extended
//! query, and the mapping of errors to ErrorResponse with their SQLSTATE.

pub mod auth;
pub mod conn;
pub mod encode;
pub mod frame;
pub mod guard;
pub mod homes;
pub mod listen;
pub mod tls;

pub use listen::{serve, ConnectionStats, ServeOptions};

use std::fmt::Debug;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
    DefaultServerParameterProvider, StartupHandler,
};
use pgwire::api::copy::{send_copy_in_response, send_copy_out_response, CopyHandler};
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{
    send_execution_response, send_query_response, send_ready_for_query, ExtendedQueryHandler,
    SimpleQueryHandler,
};
use pgwire::api::results::{
    CopyResponse, DataRowEncoder, DescribePortalResponse, DescribeStatementResponse, FieldFormat,
    FieldInfo, QueryResponse, Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::Entry;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, PgWireConnectionState, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator, Type, DEFAULT_NAME, METADATA_DATABASE, METADATA_USER,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::data::{NoData, ParameterDescription, RowDescription};
use pgwire::messages::extendedquery::Execute;
use pgwire::messages::extendedquery::Sync as PgSync;
use pgwire::messages::extendedquery::{
    Close, CloseComplete, Describe, Parse, ParseComplete, TARGET_TYPE_BYTE_PORTAL,
    TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::response::{
    EmptyQueryResponse, NoticeResponse, ReadyForQuery, TransactionStatus,
};
use pgwire::messages::simplequery::Query;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use sqlparser::ast::Statement;

use crate::cluster::Cluster;
use crate::copy::{PendingCopy, MAX_COPY_BYTES};
use crate::error::ProxyError;
use crate::exec::{copy_in, execute, Notice, QueryResult};
use crate::pgcatalog;
use crate::plan::{OutputColumn, Plan};
use crate::session::{Session, SERVER_VERSION};
use crate::sql::bind::Binder;
use crate::sql::shape::{self, Lookup};
use crate::sql::template::Template;
use crate::sql::{lex, parse, types};
use crate::stream::RowStream;
use fortress_storage::interrupt::Reason;
use fortress_storage::{Catalog, DataType, Value};
use guard::{cancel_receiver, Guard};

/// Converts an error into the ErrorResponse fields sent to the client;
/// `query` is the text the error's position refers to.
pub fn error_info(e: &ProxyError, query: &str) -> ErrorInfo {
    crate::metrics::recorded().error(e.sql_state());
    crate::stop::note_failure();
    let mut info = ErrorInfo::new("ERROR".into(), e.sql_state().into(), e.to_string());
    info.detail = e.detail().map(str::to_string);
    info.position = e.position_in(query).map(|p| p.to_string());
    info
}

/// [`error_info`] for an error in one statement of a query string, its
/// position counted from the start of the string.
fn error_info_in(e: &ProxyError, piece: lex::Piece<'_>) -> ErrorInfo {
    let mut info = error_info(e, piece.text);
    info.position = e
        .position_in(piece.text)
        .map(|p| (p + piece.chars_before).to_string());
    info
}

fn user_error(e: ProxyError, query: &str) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(&e, query)))
}

/// Sends a NOTICE ahead of the statement's completion.
async fn send_notice<C>(client: &mut C, notice: Option<Notice>) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    if let Some(n) = notice {
        let info = ErrorInfo::new(n.severity.into(), n.code.into(), n.message);
        client
            .feed(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(
                info,
            )))
            .await?;
    }
    Ok(())
}

/// A statement prepared with Parse: its AST, parameter and result types.
#[derive(Debug, Clone)]
pub struct Prepared {
    sql: String,
    stmt: Statement,
    param_types: Vec<DataType>,
    columns: Vec<OutputColumn>,
    /// `columns` described in text format, the format nearly every
    /// execution asks for: built once here, not per Describe and Execute.
    text_fields: Arc<Vec<FieldInfo>>,
    /// Its bound plan, shared by the executions while the catalog stays.
    reuse: Arc<Mutex<Reuse>>,
}

impl Prepared {
    /// The result's fields in `format`, shared when they are the ones
    /// prepared (all text, and `columns` those of the statement: a catalog
    /// change since Parse can change what `SELECT *` returns).
    fn fields(&self, columns: &[OutputColumn], format: &Format) -> Arc<Vec<FieldInfo>> {
        let text = (0..columns.len()).all(|i| format.format_for(i) == FieldFormat::Text);
        if text && columns == self.columns.as_slice() {
            return self.text_fields.clone();
        }
        Arc::new(encode::fields(columns, |i| format.format_for(i)))
    }
}

/// What executing a prepared statement learned about its plan.
#[derive(Debug, Default)]
enum Reuse {
    #[default]
    Unknown,
    Plan(Arc<Template>),
    /// The plan holds for one execution only, under this catalog.
    Never(Arc<Catalog>),
}

/// Handles every connection: startup, queries, prepared statements.
pub struct Handler {
    cluster: Arc<Cluster>,
    /// Connections by (pid, secret key), for CancelRequest.
    conns: Arc<ConnectionManager>,
    parser: Arc<Parser>,
    pids: RandomPidSecretKeyGenerator,
    params: DefaultServerParameterProvider,
    /// Settings every session starts with (`--statement-timeout`).
    session_defaults: Vec<(String, String)>,
    /// Who may connect; `None` (or no users) admits every client.
    users: Option<Arc<crate::users::Users>>,
    scram: auth::Scram,
}

/// Parses and describes statements for the extended protocol.
pub struct Parser {
    cluster: Arc<Cluster>,
}

/// A session for the user and database the client's startup named.
fn new_session<C: ClientInfo>(client: &C, defaults: Vec<(String, String)>) -> Session {
    let user = client
        .metadata()
        .get(METADATA_USER)
        .cloned()
        .unwrap_or_else(|| "fortress".into());
    let db = client
        .metadata()
        .get(METADATA_DATABASE)
        .cloned()
        .unwrap_or_else(|| user.clone());
    Session::with_defaults(&user, &db, defaults)
}

/// The client's session (made at startup).
fn session_of<C: ClientInfo>(client: &C) -> Arc<Session> {
    client
        .session_extensions()
        .get_or_insert_with(|| new_session(client, Vec::new()))
}

impl Handler {
    pub fn new(
        cluster: Arc<Cluster>,
        session_defaults: Vec<(String, String)>,
        users: Option<Arc<crate::users::Users>>,
        tls_cert_pem: Option<&[u8]>,
    ) -> Handler {
        let mut params = DefaultServerParameterProvider::default();
        params.server_version = SERVER_VERSION.to_string();
        params.date_style = "ISO, MDY".into();
        params.time_zone = "UTC".into();
        params.client_encoding = Some("UTF8".into());
        Handler {
            parser: Arc::new(Parser {
                cluster: cluster.clone(),
            }),
            cluster,
            conns: Arc::new(ConnectionManager::new()),
            pids: RandomPidSecretKeyGenerator::default(),
            params,
            session_defaults,
            users,
            scram: auth::Scram::new(tls_cert_pem),
        }
    }

    /// Admits an authenticated (or trusted) client: its session, its cancel
    /// key, and the parameters and ReadyForQuery that end the startup.
    async fn admit<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (pid, key) = self.pids.generate(client);
        client.set_pid_and_secret_key(pid, key.clone());
        let (handle, guard) = self.conns.register(pid, key);
        client.session_extensions().insert(guard);
        let session = new_session(client, self.session_defaults.clone());
        let _ = session.cancels.set(handle);
        client.session_extensions().insert(session);
        finish_authentication(client, &self.params).await
    }

    async fn run_one(
        &self,
        session: &Session,
        stmt: &Statement,
    ) -> Result<QueryResult, ProxyError> {
        check_aborted(session, stmt)?;
        let catalog = self.cluster.catalog();
        let mut binder = Binder::new(&catalog, session, Some(&[]), Vec::new());
        let plan = binder.bind(stmt)?;
        execute(&self.cluster, session, plan).await
    }

    /// The plan of `query` from the connection's shape cache, when its shape
    /// has a reusable plan; `None` binds it as usual. A failed transaction
    /// block goes the usual way, which refuses all but its end.
    fn shaped_plan(&self, session: &Session, query: &str) -> Option<Result<Plan, ProxyError>> {
        if session.txn_status() == b'E' {
            return None;
        }
        let shape = shape::of(query)?;
        let catalog = self.cluster.catalog();
        let lookup = session
            .shapes
            .lock()
            .expect("shapes")
            .lookup(&shape, &catalog);
        match lookup {
            Lookup::Reuse(t) => {
                self.cluster.metrics().record_plan_reuse();
                Some(t.instantiate(&shape.values, || session.statement_now()))
            }
            Lookup::Bind => None,
            Lookup::Learn => {
                let template = shape_template(&catalog, session, query, &shape);
                let plan = template
                    .as_ref()
                    .map(|t| t.instantiate(&shape.values, || session.statement_now()));
                session
                    .shapes
                    .lock()
                    .expect("shapes")
                    .learn(&shape, &catalog, template);
                plan
            }
        }
    }

    /// Sends a statement's notices and turns its result into the response;
    /// false when the rest of the query must not run (an error, or COPY
    /// FROM STDIN, whose data comes next). Only the `last` statement streams:
    /// an earlier one is read out before the next runs.
    async fn answer<C>(
        &self,
        client: &mut C,
        session: &Arc<Session>,
        at: lex::Piece<'_>,
        result: Result<QueryResult, ProxyError>,
        last: bool,
    ) -> PgWireResult<(Response, bool)>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let result = match result {
            Ok(mut r) => {
                send_notice(client, r.take_notice()).await?;
                match begin_copy_in(session, r) {
                    Ok(copy) => return Ok((copy, false)),
                    Err(r) => Ok(*r),
                }
            }
            Err(e) => Err(e),
        };
        let result = match result {
            Ok(QueryResult::Stream { columns, rows }) if !last => {
                rows.collect().await.map(|rows| QueryResult::Rows {
                    tag: "SELECT",
                    columns,
                    rows,
                })
            }
            other => other,
        };
        let result = result.map(|r| failing_txn_on_error(r, session));
        match result.and_then(|r| respond(r, &Format::UnifiedText)) {
            Ok(r) => Ok((r, true)),
            Err(e) => {
                tracing::debug!(code = e.sql_state(), error = %e, "statement failed");
                session.fail_txn();
                Ok((Response::Error(Box::new(error_info_in(&e, at))), false))
            }
        }
    }
}

/// True for a single SELECT: a statement dropped at once when it is
/// cancelled or times out (see [`Guard`]).
fn read_only_text(sql: &str) -> bool {
    let t = sql.trim_start();
    let one_statement = !t.trim_end().trim_end_matches(';').contains(';');
    one_statement && t.get(..6).is_some_and(|h| h.eq_ignore_ascii_case("select"))
}

/// A reusable plan for `shape`, when binding its text gives one and that
/// plan, filled with the shape's values, is the plan `query` itself binds
/// to: the values then play no part in the plan beyond being its constants.
fn shape_template(
    catalog: &Arc<Catalog>,
    session: &Session,
    query: &str,
    shape: &shape::Shape,
) -> Option<Template> {
    let [stmt]: [Statement; 1] = parse(query).ok()?.try_into().ok()?;
    let plan = Binder::new(catalog, session, Some(&[]), Vec::new())
        .bind(&stmt)
        .ok()?;
    let reusable = matches!(
        plan,
        Plan::Select(_)
            | Plan::Insert { .. }
            | Plan::Update { .. }
            | Plan::Delete { .. }
            | Plan::Begin { .. }
            | Plan::Commit
            | Plan::Rollback
    );
    if !reusable {
        return None;
    }
    let [shaped]: [Statement; 1] = parse(&shape.text).ok()?.try_into().ok()?;
    let template = Template::bind(catalog, session, &shaped, &shape.values, shape.declared())?;
    let now = || session.statement_now();
    (template.instantiate(&shape.values, now).ok()? == plan).then_some(template)
}

/// In a failed transaction block only COMMIT and ROLLBACK run (25P02).
fn check_aborted(session: &Session, stmt: &Statement) -> Result<(), ProxyError> {
    let ends_block = matches!(stmt, Statement::Commit { .. } | Statement::Rollback { .. });
    if session.txn_status() == b'E' && !ends_block {
        return Err(ProxyError::new(
            "25P02",
            "current transaction is aborted, commands ignored until end of transaction block",
        ));
    }
    Ok(())
}

/// The wire form of the session's transaction status.
fn wire_status(session: &Session) -> TransactionStatus {
    match session.txn_status() {
        b'T' => TransactionStatus::Transaction,
        b'E' => TransactionStatus::Error,
        _ => TransactionStatus::Idle,
    }
}

/// A streamed result whose error, when it comes mid-stream, still aborts
/// the session's transaction block as any failed statement does.
fn failing_txn_on_error(result: QueryResult, session: &Arc<Session>) -> QueryResult {
    match result {
        QueryResult::Stream { columns, rows } => {
            let session = session.clone();
            let rows = rows.0.inspect(move |r| {
                if r.is_err() {
                    session.fail_txn();
                }
            });
            QueryResult::Stream {
                columns,
                rows: RowStream(rows.boxed()),
            }
        }
        other => other,
    }
}

/// A Describe's answer about result rows: their fields, or NoData for a
/// statement that returns none (as PostgreSQL answers, and pgjdbc needs).
fn row_description(fields: &[FieldInfo]) -> PgWireBackendMessage {
    if fields.is_empty() {
        PgWireBackendMessage::NoData(NoData::new())
    } else {
        PgWireBackendMessage::RowDescription(RowDescription::new(
            fields.iter().map(Into::into).collect(),
        ))
    }
}

/// Turns a query result into a pgwire response in the requested formats.
fn respond(result: QueryResult, format: &Format) -> Result<Response, ProxyError> {
    respond_with(result, &|columns: &[OutputColumn]| {
        Arc::new(encode::fields(columns, |i| format.format_for(i)))
    })
}

/// [`respond`], with the result's fields from `fields`.
fn respond_with(
    result: QueryResult,
    fields: &dyn Fn(&[OutputColumn]) -> Arc<Vec<FieldInfo>>,
) -> Result<Response, ProxyError> {
    match result {
        QueryResult::Command { tag, .. } => Ok(Response::Execution(Tag::new(&tag))),
        QueryResult::TxnStart { tag, .. } => Ok(Response::TransactionStart(Tag::new(tag))),
        QueryResult::TxnEnd { tag, .. } => Ok(Response::TransactionEnd(Tag::new(&tag))),
        QueryResult::Rows { tag, columns, rows } => {
            let fields = fields(&columns);
            let mut enc = DataRowEncoder::new(fields.clone());
            let encoded: Vec<PgWireResult<_>> = rows
                .iter()
                .map(|r| encode::encode_row(&mut enc, &fields, &columns, r))
                .collect();
            let mut response = QueryResponse::new(fields, stream::iter(encoded));
            response.set_command_tag(tag);
            Ok(Response::Query(response))
        }
        QueryResult::Stream { columns, rows } => {
            let fields = fields(&columns);
            let mut enc = DataRowEncoder::new(fields.clone());
            let row_fields = fields.clone();
            let encoded = rows.0.map(move |r| match r {
                Ok(row) => encode::encode_row(&mut enc, &row_fields, &columns, &row),
                Err(e) => Err(user_error(e, "")),
            });
            let mut response = QueryResponse::new(fields, encoded);
            response.set_command_tag("SELECT");
            Ok(Response::Query(response))
        }
        QueryResult::CopyOut { lines, columns } => {
            let data = lines
                .into_iter()
                .map(|l| Ok(CopyData::new(bytes::Bytes::from(l))));
            Ok(Response::CopyOut(CopyResponse::new(
                0,
                columns,
                stream::iter(data.collect::<Vec<_>>()),
            )))
        }
        QueryResult::CopyIn { .. } => Err(ProxyError::new(
            "XX000",
            "COPY FROM STDIN must be started by the session",
        )),
    }
}

/// Sends a simple-query result: like pgwire's, except that SHOW completes
/// with a bare `SHOW` tag, as PostgreSQL's does.
/// False when the statement failed part way (its error was sent instead of
/// its completion): the rest of the query string must not run.
async fn send_rows<C>(client: &mut C, results: QueryResponse) -> PgWireResult<bool>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let QueryResponse {
        command_tag,
        row_schema,
        mut data_rows,
        ..
    } = results;
    let desc = RowDescription::new(row_schema.iter().map(Into::into).collect());
    client
        .feed(PgWireBackendMessage::RowDescription(desc))
        .await?;
    let mut rows = 0;
    while let Some(row) = data_rows.next().await {
        match row {
            Ok(row) => client.feed(PgWireBackendMessage::DataRow(row)).await?,
            // A statement failing mid-stream ends with its error, and the
            // session goes on to ReadyForQuery.
            Err(PgWireError::UserError(info)) => {
                let info: ErrorInfo = *info;
                client
                    .feed(PgWireBackendMessage::ErrorResponse(info.into()))
                    .await?;
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        rows += 1;
    }
    let tag = if command_tag == "SHOW" {
        Tag::new("SHOW")
    } else {
        Tag::new(&command_tag).with_rows(rows)
    };
    client
        .feed(PgWireBackendMessage::CommandComplete(tag.into()))
        .await?;
    Ok(true)
}

/// `RESET name` / `RESET ALL`, which the SQL parser does not know.
fn reset_target(query: &str) -> Option<String> {
    let t = query.trim().trim_end_matches(';').trim();
    let (head, rest) = t.split_once(char::is_whitespace)?;
    if !head.eq_ignore_ascii_case("reset") || rest.trim().contains(char::is_whitespace) {
        return None;
    }
    Some(rest.trim().to_lowercase())
}

/// Starts a COPY FROM STDIN: the session keeps what the data is for, and
/// the client is told to send it.
fn begin_copy_in(session: &Session, result: QueryResult) -> Result<Response, Box<QueryResult>> {
    let QueryResult::CopyIn {
        table,
        columns,
        format,
    } = result
    else {
        return Err(Box::new(result));
    };
    let n = columns.len();
    *session.copy.lock().expect("copy") = Some(PendingCopy {
        table,
        columns,
        format,
        data: Vec::new(),
    });
    Ok(Response::CopyIn(CopyResponse::new(
        0,
        n,
        stream::empty::<PgWireResult<CopyData>>(),
    )))
}

/// What is left to do after a statement's responses went out.
enum After {
    Next,
    /// The statement failed (or began a COPY): later ones do not run.
    Stop,
    /// COPY FROM STDIN began: its data comes next, ReadyForQuery after it.
    AwaitCopy,
}

/// Drops the prepared statement `name`, counting it off the session's.
fn forget_statement<C>(client: &C, name: &str)
where
    C: ClientInfo + ClientPortalStore,
    C::PortalStore: PortalStore,
{
    if !name.is_empty() && client.portal_store().get_statement(name).is_some() {
        session_of(client).prepared.fetch_sub(1, Ordering::Relaxed);
    }
    client.portal_store().rm_statement(name);
}

/// Sends one statement's responses; rows stream until the statement is
/// stopped (its error then goes out in their place).
async fn send_responses<C>(
    client: &mut C,
    responses: Vec<Response>,
    guard: &mut Guard<'_>,
    session: &Session,
    query: &str,
) -> PgWireResult<After>
where
    C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for r in responses {
        match r {
            Response::Query(q) => match guard.run(send_rows(client, q)).await {
                Some(r) => {
                    if !r? {
                        return Ok(After::Stop);
                    }
                }
                None => {
                    let e = guard.stopped(session);
                    let info = error_info(&e, query);
                    client
                        .feed(PgWireBackendMessage::ErrorResponse(info.into()))
                        .await?;
                    return Ok(After::Stop);
                }
            },
            Response::Execution(tag)
            | Response::TransactionStart(tag)
            | Response::TransactionEnd(tag) => send_execution_response(client, tag).await?,
            Response::Error(e) => {
                client
                    .feed(PgWireBackendMessage::ErrorResponse((*e).into()))
                    .await?
            }
            Response::EmptyQuery => {
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?
            }
            Response::CopyOut(r) => send_copy_out_response(client, r).await?,
            Response::CopyIn(r) => {
                send_copy_in_response(client, r).await?;
                client.set_state(PgWireConnectionState::CopyInProgress(false));
                return Ok(After::AwaitCopy);
            }
            Response::CopyBoth(_) => {}
        }
    }
    Ok(After::Next)
}

impl Handler {
    /// Answers a query string that is handled whole (RESET, psql's catalog
    /// queries, a repeated shape with a reusable plan); `None` when it is
    /// to be run statement by statement.
    async fn whole_text<C>(
        &self,
        client: &mut C,
        session: &Arc<Session>,
        query: &str,
    ) -> PgWireResult<Option<Vec<Response>>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(name) = reset_target(query) {
            if session.txn_status() == b'E' {
                let e = ProxyError::new(
                    "25P02",
                    "current transaction is aborted, commands ignored until end of transaction block",
                );
                return Ok(Some(vec![Response::Error(Box::new(error_info(&e, query)))]));
            }
            if name == "all" {
                session.reset_all();
            } else if session.get(&name).is_none() {
                session.fail_txn();
                let e = ProxyError::new(
                    "42704",
                    format!("unrecognized configuration parameter \"{name}\""),
                );
                return Ok(Some(vec![Response::Error(Box::new(error_info(&e, query)))]));
            } else {
                session.set(&name, None);
            }
            return Ok(Some(vec![Response::Execution(Tag::new("RESET"))]));
        }
        if let Some(r) = pgcatalog::answer(query, &self.cluster.catalog(), session) {
            return Ok(Some(match respond(r, &Format::UnifiedText) {
                Ok(r) => vec![r],
                Err(e) => vec![Response::Error(Box::new(error_info(&e, query)))],
            }));
        }
        let Some(planned) = self.shaped_plan(session, query) else {
            return Ok(None);
        };
        let result = match planned {
            Ok(plan) => execute(&self.cluster, session, plan).await,
            Err(e) => Err(e),
        };
        let whole = lex::Piece {
            text: query,
            chars_before: 0,
        };
        let (response, _) = self.answer(client, session, whole, result, true).await?;
        Ok(Some(vec![response]))
    }

    /// Parses and runs one statement of a query string (a VACUUM or
    /// ANALYZE naming several tables is several); false when the rest of
    /// the query string must not run.
    async fn run_piece<C>(
        &self,
        client: &mut C,
        session: &Arc<Session>,
        piece: lex::Piece<'_>,
    ) -> PgWireResult<(Vec<Response>, bool)>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let stmts = match parse(piece.text) {
            Ok(s) => s,
            Err(e) => {
                session.fail_txn();
                let info = error_info_in(&e, piece);
                return Ok((vec![Response::Error(Box::new(info))], false));
            }
        };
        let mut out = Vec::with_capacity(stmts.len());
        for stmt in &stmts {
            // DEALLOCATE drops prepared statements, which pgwire keeps per
            // connection; ALL leaves them to be replaced by name on re-Parse.
            if let Statement::Deallocate { name, .. } = stmt {
                let all = name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all");
                if !all {
                    forget_statement(client, &name.value);
                }
                let tag = if all { "DEALLOCATE ALL" } else { "DEALLOCATE" };
                out.push(Response::Execution(Tag::new(tag)));
                continue;
            }
            let result = self.run_one(session, stmt).await;
            let last = std::ptr::eq(stmt, stmts.last().expect("a statement"));
            let (response, go_on) = self.answer(client, session, piece, result, last).await?;
            out.push(response);
            if !go_on {
                return Ok((out, false));
            }
        }
        Ok((out, true))
    }
}

#[async_trait]
impl SimpleQueryHandler for Handler {
    /// Like pgwire's default, but ReadyForQuery reports the session's own
    /// transaction state, which is the one that knows a failed COMMIT ended
    /// the block; and statements run one at a time, each parsed when its
    /// turn comes and answered before the next runs, so a long query string
    /// costs the memory of one statement, not of all.
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let text = &query.query;
        let session = session_of(client);
        // A cancel request stops the statement running when it comes.
        let mut cancel = cancel_receiver(&session).await;
        let mut guard = Guard::new(&session, cancel.as_mut(), read_only_text(text));
        let (mut after, whole) = match guard.run(self.whole_text(client, &session, text)).await {
            None => {
                let e = guard.stopped(&session);
                client
                    .feed(PgWireBackendMessage::ErrorResponse(
                        error_info(&e, text).into(),
                    ))
                    .await?;
                (After::Stop, true)
            }
            Some(r) => match r? {
                Some(responses) => (
                    send_responses(client, responses, &mut guard, &session, text).await?,
                    true,
                ),
                None => {
                    guard.not_a_statement();
                    (After::Next, false)
                }
            },
        };
        // A cancel that came while the text was looked at stops the first
        // statement; later, one that came too late to stop its statement
        // stops the next.
        let mut stopped: Option<Reason> = guard.stops.reason();
        drop(guard);
        let mut answered = whole;
        // As PostgreSQL, a string with a syntax error anywhere runs none of
        // its statements: each is parsed once first (and dropped, so the
        // memory is still one statement's).
        if !whole && lex::statements(text).nth(1).is_some() {
            for piece in lex::statements(text) {
                if let Err(e) = parse(piece.text) {
                    session.fail_txn();
                    let info = error_info_in(&e, piece);
                    client
                        .feed(PgWireBackendMessage::ErrorResponse(info.into()))
                        .await?;
                    (after, answered) = (After::Stop, true);
                    break;
                }
            }
        }
        let mut pieces = lex::statements(text);
        while !whole && matches!(after, After::Next) {
            let Some(piece) = pieces.next() else { break };
            answered = true;
            if let Some(reason) = stopped {
                session.fail_txn();
                let info = error_info(&crate::stop::error(reason), text);
                client
                    .feed(PgWireBackendMessage::ErrorResponse(info.into()))
                    .await?;
                break;
            }
            // Each statement has its own timeout and stops.
            let mut guard = Guard::new(&session, cancel.as_mut(), read_only_text(piece.text));
            let run = guard.run(self.run_piece(client, &session, piece)).await;
            stopped = guard.stops.reason();
            after = match run {
                None => {
                    let e = guard.stopped(&session);
                    let info = error_info_in(&e, piece);
                    client
                        .feed(PgWireBackendMessage::ErrorResponse(info.into()))
                        .await?;
                    After::Stop
                }
                Some(r) => {
                    let (responses, go_on) = r?;
                    match send_responses(client, responses, &mut guard, &session, text).await? {
                        After::Next if !go_on => After::Stop,
                        other => other,
                    }
                }
            };
        }
        match after {
            After::AwaitCopy => return Ok(()),
            // Only blanks, semicolons and comments.
            After::Next if !answered => {
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?;
            }
            After::Next | After::Stop => {}
        }
        let status = wire_status(&session);
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client.set_transaction_status(status);
        send_ready_for_query(client, status).await
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // on_query runs and answers statements one by one; this gathers
        // the answers of all, for callers of the trait.
        let session = session_of(client);
        if let Some(r) = self.whole_text(client, &session, query).await? {
            return Ok(r);
        }
        let mut out = Vec::new();
        for piece in lex::statements(query) {
            let (responses, go_on) = self.run_piece(client, &session, piece).await?;
            out.extend(responses);
            if !go_on {
                break;
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let session = session_of(client);
        if lex::statements(sql).nth(1).is_some() {
            session.fail_txn();
            return Err(user_error(
                ProxyError::syntax("cannot insert multiple commands into a prepared statement"),
                sql,
            ));
        }
        let mut stmts = parse(sql).map_err(|e| {
            session.fail_txn();
            user_error(e, sql)
        })?;
        if stmts.len() > 1 {
            return Err(user_error(
                ProxyError::syntax("cannot insert multiple commands into a prepared statement"),
                sql,
            ));
        }
        let Some(stmt) = stmts.pop() else {
            return Ok(None);
        };
        check_aborted(&session, &stmt).map_err(|e| user_error(e, sql))?;
        let declared = types
            .iter()
            .map(|t| match t {
                None => Ok(None),
                Some(t) if *t == Type::UNKNOWN => Ok(None),
                Some(t) => types::from_pg(t).map(Some).ok_or_else(|| {
                    user_error(ProxyError::unsupported(format!("parameter type {t}")), sql)
                }),
            })
            .collect::<PgWireResult<Vec<_>>>()?;
        let catalog = self.cluster.catalog();
        let mut binder = Binder::new(&catalog, &session, None, declared);
        let plan = binder.bind(&stmt).map_err(|e| {
            session.fail_txn();
            user_error(e, sql)
        })?;
        let param_types = binder
            .param_types
            .iter()
            .map(|t| t.unwrap_or(DataType::Text))
            .collect();
        let columns = plan.output_columns();
        Ok(Some(Prepared {
            sql: sql.to_string(),
            text_fields: Arc::new(encode::fields(&columns, |_| FieldFormat::Text)),
            columns,
            stmt,
            param_types,
            reuse: Arc::default(),
        }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt.param_types.iter().map(types::pg_type).collect())
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(encode::fields(&stmt.columns, |i| {
            format.map(|f| f.format_for(i)).unwrap_or(FieldFormat::Text)
        }))
    }
}

#[async_trait]
impl ExtendedQueryHandler for Handler {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    /// Execute: pgwire gathers a portal's rows in memory before sending
    /// them; a SELECT fetched whole (max_rows 0) streams from here instead,
    /// so a large result never sits in memory. Row-limited fetches keep
    /// pgwire's portal suspension.
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(name) {
            Some(Entry::Value(p))
                if message.max_rows == 0
                    && matches!(p.statement.statement.stmt, Statement::Query(_)) =>
            {
                p
            }
            _ => return self.execute_guarded(client, message).await,
        };
        let fresh = matches!(*portal.state().lock().await, PortalExecutionState::Initial);
        if !fresh || !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return self.execute_guarded(client, message).await;
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let session = session_of(client);
        let mut cancel = cancel_receiver(&session).await;
        // A SELECT: dropped at once when stopped.
        let mut guard = Guard::new(&session, cancel.as_mut(), true);
        let sql = &portal.statement.statement.sql;
        let run = ExtendedQueryHandler::do_query(self, client, portal.as_ref(), 0);
        let response = match guard.run(run).await {
            Some(r) => r?,
            None => return Err(user_error(guard.stopped(&session), sql)),
        };
        *portal.state().lock().await = PortalExecutionState::Finished;
        match response {
            Response::Query(q) => match guard.run(send_query_response(client, q, false)).await {
                Some(r) => r?,
                None => return Err(user_error(guard.stopped(&session), sql)),
            },
            Response::Error(e) => {
                client
                    .feed(PgWireBackendMessage::ErrorResponse((*e).into()))
                    .await?
            }
            Response::Execution(tag) => send_execution_response(client, tag).await?,
            // A SELECT answers rows or an error.
            _ => {}
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client.set_transaction_status(wire_status(&session));
        Ok(())
    }

    /// Parse, as pgwire's, within the session's bound on named statements
    /// (53200 past it); re-parsing a name it holds replaces it.
    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.clone().unwrap_or_default();
        let session = session_of(client);
        let new = !name.is_empty() && client.portal_store().get_statement(&name).is_none();
        let held = session.prepared.load(Ordering::Relaxed);
        if new && held >= crate::limits::MAX_PREPARED_PER_SESSION {
            session.fail_txn();
            let e = ProxyError::new(
                "53200",
                format!(
                    "out of memory: a session holds at most {held} prepared statements; \
                     Close or DEALLOCATE some"
                ),
            );
            return Err(user_error(e, ""));
        }
        let parsed = StoredStatement::parse(client, &message, self.query_parser()).await?;
        match parsed {
            Some(stmt) => client.portal_store().put_statement(Arc::new(stmt)),
            None => client.portal_store().put_empty_statement(&name),
        }
        if new {
            session.prepared.fetch_add(1, Ordering::Relaxed);
        }
        client
            .send(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
            .await?;
        Ok(())
    }

    /// Close, as pgwire's, counting the statements the session still holds.
    async fn on_close<C>(&self, client: &mut C, message: Close) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => forget_statement(client, name),
            TARGET_TYPE_BYTE_PORTAL => client.portal_store().rm_portal(name),
            _ => {}
        }
        client
            .send(PgWireBackendMessage::CloseComplete(CloseComplete::new()))
            .await?;
        Ok(())
    }

    /// ReadyForQuery carries the session's transaction state (see on_query).
    async fn on_sync<C>(&self, client: &mut C, _message: PgSync) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        client.portal_store().rm_portal(DEFAULT_NAME);
        let status = wire_status(&session_of(client));
        client.set_transaction_status(status);
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                status,
            )))
            .await?;
        client.flush().await?;
        Ok(())
    }

    /// Describe of a statement: like pgwire's, except that a statement with
    /// parameters but no result columns answers NoData (as PostgreSQL does,
    /// and as pgjdbc requires) rather than an empty RowDescription.
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        if message.target_type == TARGET_TYPE_BYTE_STATEMENT {
            if let Some(Entry::Value(stmt)) = client.portal_store().get_statement(name) {
                let p = &stmt.statement;
                let params = self.parser.get_parameter_types(p)?;
                client
                    .send(PgWireBackendMessage::ParameterDescription(
                        ParameterDescription::new(params.iter().map(|t| t.oid()).collect()),
                    ))
                    .await?;
                // A statement's results are described in text format.
                client.send(row_description(&p.text_fields)).await?;
                return Ok(());
            }
        }
        if message.target_type == TARGET_TYPE_BYTE_PORTAL {
            if let Some(Entry::Value(portal)) = client.portal_store().get_portal(name) {
                // pgbench and drivers describe the portal on every
                // execution: answer from the fields built at Parse.
                let p = &portal.statement.statement;
                let fields = p.fields(&p.columns, &portal.result_column_format);
                client.send(row_description(&fields)).await?;
                return Ok(());
            }
        }
        self._on_describe(client, message).await
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        target: &StoredStatement<Prepared>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let p = &target.statement;
        Ok(DescribeStatementResponse::new(
            self.parser.get_parameter_types(p)?,
            self.parser.get_result_schema(p, None)?,
        ))
    }

    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Prepared>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let p = &portal.statement.statement;
        Ok(DescribePortalResponse::new(self.parser.get_result_schema(
            p,
            Some(&portal.result_column_format),
        )?))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(client);
        let p = &portal.statement.statement;
        let run = async {
            if portal.parameters.len() != p.param_types.len() {
                return Err(ProxyError::new(
                    "08P01",
                    format!(
                        "bind message supplies {} parameters, but prepared statement requires {}",
                        portal.parameters.len(),
                        p.param_types.len()
                    ),
                ));
            }
            let mut values: Vec<Value> = Vec::with_capacity(p.param_types.len());
            for (i, ty) in p.param_types.iter().enumerate() {
                let pg_ty = types::pg_type(ty);
                values.push(encode::decode_param(
                    portal.parameters[i].as_ref(),
                    portal.parameter_format.is_binary(i),
                    ty,
                    &pg_ty,
                )?);
            }
            let plan = bind_prepared(&self.cluster.catalog(), &session, p, &values)?;
            execute(&self.cluster, &session, plan).await
        };
        let result = match run.await {
            Ok(mut r) => {
                send_notice(client, r.take_notice()).await?;
                Ok(r)
            }
            Err(e) => Err(e),
        };
        let result = match result.map(|r| begin_copy_in(&session, r)) {
            Ok(Ok(copy)) => return Ok(copy),
            Ok(Err(r)) => Ok(*r),
            Err(e) => Err(e),
        };
        result
            .map(|r| failing_txn_on_error(r, &session))
            .and_then(|r| {
                respond_with(r, &|columns: &[OutputColumn]| {
                    p.fields(columns, &portal.result_column_format)
                })
            })
            .map_err(|e| {
                tracing::debug!(code = e.sql_state(), error = %e, "statement failed");
                session.fail_txn();
                user_error(e, &p.sql)
            })
    }
}

impl Handler {
    /// pgwire's Execute (portal suspension and all) as a statement a cancel
    /// request or its timeout stops: told to stop, never dropped, so a
    /// write stops before it commits or not at all.
    async fn execute_guarded<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(client);
        let mut cancel = cancel_receiver(&session).await;
        let mut guard = Guard::new(&session, cancel.as_mut(), false);
        let run = self._on_execute(client, message);
        guard.run(run).await.expect("a statement not dropped ends")
    }
}

/// The plan of one execution: the statement's reusable plan with `values`
/// filled in, bound on first use; or, where the plan holds for one
/// execution only, the statement bound with `values` as literals.
fn bind_prepared(
    catalog: &Arc<Catalog>,
    session: &Session,
    p: &Prepared,
    values: &[Value],
) -> Result<Plan, ProxyError> {
    let declared = || p.param_types.iter().map(|t| Some(*t)).collect();
    let template = {
        let mut reuse = p.reuse.lock().expect("prepared plan");
        match &*reuse {
            Reuse::Plan(t) if t.fits(catalog) => Some(t.clone()),
            Reuse::Never(c) if Arc::ptr_eq(c, catalog) => None,
            _ => match Template::bind(catalog, session, &p.stmt, values, declared()) {
                Some(t) => {
                    let t = Arc::new(t);
                    *reuse = Reuse::Plan(t.clone());
                    Some(t)
                }
                None => {
                    *reuse = Reuse::Never(catalog.clone());
                    None
                }
            },
        }
    };
    match template {
        Some(t) => t.instantiate(values, || session.statement_now()),
        None => Binder::new(catalog, session, Some(values), declared()).bind(&p.stmt),
    }
}

#[async_trait]
impl StartupHandler for Handler {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let users = self.users.as_deref();
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                match users.filter(|u| u.required()) {
                    Some(_) => auth::begin(client, &self.scram).await,
                    None => self.admit(client).await,
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(m) if users.is_some() => {
                if auth::advance(client, users.expect("checked"), &self.scram, m).await? {
                    self.admit(client).await?;
                }
                Ok(())
            }
            // Anything else before the login ends, as PostgreSQL answers it.
            _ => Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "08P01".into(),
                "expected the startup or an authentication message".into(),
            )))),
        }
    }
}

#[async_trait]
impl CopyHandler for Handler {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(client);
        let mut pending = session.copy.lock().expect("copy");
        if let Some(p) = pending.as_mut() {
            if p.data.len() + copy_data.data.len() > MAX_COPY_BYTES {
                *pending = None;
                drop(pending);
                session.fail_txn();
                return Err(user_error(
                    ProxyError::new("54000", "COPY data exceeds the 1 GB limit of one statement"),
                    "",
                ));
            }
            p.data.extend_from_slice(&copy_data.data);
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(client);
        let pending = session.copy.lock().expect("copy").take();
        let result = match pending {
            None => Err(ProxyError::new(
                "08P01",
                "CopyDone without a COPY in progress",
            )),
            Some(p) => match String::from_utf8(p.data) {
                Err(_) => Err(ProxyError::new(
                    "22021",
                    "invalid byte sequence for encoding \"UTF8\"",
                )),
                Ok(text) => {
                    copy_in(
                        &self.cluster,
                        &session,
                        p.table,
                        &p.columns,
                        &p.format,
                        &text,
                    )
                    .await
                }
            },
        };
        match result {
            Ok(n) => {
                client
                    .send(PgWireBackendMessage::CommandComplete(
                        Tag::new("COPY").with_rows(n as usize).into(),
                    ))
                    .await?;
                client.set_transaction_status(wire_status(&session));
                Ok(())
            }
            Err(e) => {
                session.fail_txn();
                client.set_transaction_status(wire_status(&session));
                Err(user_error(e, ""))
            }
        }
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(client);
        session.copy.lock().expect("copy").take();
        session.fail_txn();
        client.set_transaction_status(wire_status(&session));
        user_error(
            ProxyError::new("57014", format!("COPY from stdin failed: {}", fail.message)),
            "",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(columns: Vec<OutputColumn>) -> Prepared {
        let stmt = crate::sql::parse("SELECT 1").unwrap().remove(0);
        Prepared {
            sql: "SELECT 1".into(),
            stmt,
            param_types: Vec::new(),
            text_fields: Arc::new(encode::fields(&columns, |_| FieldFormat::Text)),
            columns,
            reuse: Arc::default(),
        }
    }

    fn column(name: &str, ty: DataType) -> OutputColumn {
        OutputColumn {
            name: name.into(),
            ty,
        }
    }

    #[test]
    fn prepared_fields_are_shared_only_for_the_prepared_columns_in_text() {
        let p = prepared(vec![column("a", DataType::Int4)]);
        let same = p.fields(&p.columns, &Format::UnifiedText);
        assert!(Arc::ptr_eq(&same, &p.text_fields));

        let binary = p.fields(&p.columns, &Format::UnifiedBinary);
        assert!(!Arc::ptr_eq(&binary, &p.text_fields));
        assert_eq!(binary[0].format(), FieldFormat::Binary);

        // SELECT * after ALTER TABLE ADD COLUMN returns more columns than
        // were prepared: the fields follow the rows.
        let wider = [column("a", DataType::Int4), column("b", DataType::Text)];
        let fields = p.fields(&wider, &Format::UnifiedText);
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[1].name(), "b");
    }
}
