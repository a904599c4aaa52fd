//! Authentication at startup: SCRAM-SHA-256 (RFC 5802, 7677) against the
//! verifiers of [`crate::users`], when any user exists; trust otherwise.
//!
//! The exchange is pgwire's SCRAM state machine driven from our startup
//! handler: AuthenticationSASL, the client's first message, the server's
//! first (salt, iterations, nonce), the client's proof, the server's
//! signature. A user that does not exist goes through the same exchange
//! with a made-up verifier (a salt derived from the name, so it is stable
//! across attempts) and fails at the proof with the same 28P01 as a wrong
//! password: the answer does not tell which names exist.

use std::fmt::Debug;
use std::sync::{LazyLock, Mutex};

use futures::{Sink, SinkExt};
use pgwire::api::auth::sasl::scram::{
    ScramSecret, ScramServerAuth, ScramServerAuthWaitingForClientFinal,
};
use pgwire::api::{ClientInfo, PgWireConnectionState, METADATA_USER};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::{Authentication, PasswordMessageFamily};
use pgwire::messages::PgWireBackendMessage;
use sha2::{Digest, Sha256};

use crate::users::{Users, ITERATIONS};

const MECHANISM: &str = "SCRAM-SHA-256";
const MECHANISM_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// The server's SCRAM settings: one for plaintext connections, and one
/// bound to the certificate for TLS ones (when it can be bound to).
#[derive(Clone)]
pub struct Scram {
    plain: ScramServerAuth,
    bound: Option<ScramServerAuth>,
}

impl Scram {
    /// Settings for a server whose TLS certificate, if any, is `cert_pem`.
    pub fn new(cert_pem: Option<&[u8]>) -> Scram {
        let bound = cert_pem.and_then(|pem| {
            let mut auth = ScramServerAuth::new();
            match auth.configure_certificate(pem) {
                Ok(()) => Some(auth),
                Err(e) => {
                    tracing::warn!(error = %e, "SCRAM-SHA-256-PLUS not offered: the certificate cannot be bound to");
                    None
                }
            }
        });
        Scram {
            plain: ScramServerAuth::new(),
            bound,
        }
    }

    /// The exchange for `client`: bound to the certificate over TLS.
    fn for_client<C: ClientInfo>(&self, client: &C) -> &ScramServerAuth {
        match &self.bound {
            Some(bound) if client.is_secure() => bound,
            _ => &self.plain,
        }
    }

    fn mechanisms<C: ClientInfo>(&self, client: &C) -> Vec<String> {
        match &self.bound {
            Some(_) if client.is_secure() => vec![MECHANISM_PLUS.into(), MECHANISM.into()],
            _ => vec![MECHANISM.into()],
        }
    }
}

/// Where a connection's exchange is.
enum Step {
    /// AuthenticationSASL sent; the client's first message comes next.
    First,
    /// The server's first message sent; the client's proof comes next.
    Final(Box<ScramServerAuthWaitingForClientFinal>),
}

/// Kept in the connection's extensions between messages.
struct Exchange(Mutex<Option<Step>>);

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message,
    )))
}

fn user_of<C: ClientInfo>(client: &C) -> PgWireResult<String> {
    client
        .metadata()
        .get(METADATA_USER)
        .cloned()
        .ok_or_else(|| {
            fatal(
                "28000",
                "no PostgreSQL user name specified in startup packet".into(),
            )
        })
}

fn failed(user: &str) -> PgWireError {
    fatal(
        "28P01",
        format!("password authentication failed for user \"{user}\""),
    )
}

/// Asks the client for SCRAM-SHA-256 (and -PLUS over TLS).
pub(super) async fn begin<C>(client: &mut C, scram: &Scram) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    user_of(client)?;
    client
        .session_extensions()
        .insert(Exchange(Mutex::new(Some(Step::First))));
    client.set_state(PgWireConnectionState::AuthenticationInProgress);
    client
        .send(PgWireBackendMessage::Authentication(Authentication::SASL(
            scram.mechanisms(client),
        )))
        .await?;
    Ok(())
}

/// Takes the client's next SCRAM message. `true` once the client has
/// proven it knows the password (the server's final message is sent); an
/// error (FATAL) ends the connection.
pub(super) async fn advance<C>(
    client: &mut C,
    users: &Users,
    scram: &Scram,
    message: PasswordMessageFamily,
) -> PgWireResult<bool>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let user = user_of(client)?;
    let exchange = client
        .session_extensions()
        .get::<Exchange>()
        .ok_or_else(|| fatal("08P01", "unexpected password message".into()))?;
    let step = exchange.0.lock().expect("scram").take();
    let malformed = |e: PgWireError| match e {
        PgWireError::InvalidPassword(_) => failed(&user),
        other => fatal("08P01", format!("malformed SCRAM message: {other}")),
    };
    match step {
        Some(Step::First) => {
            let first = message.into_sasl_initial_response().map_err(malformed)?;
            if !scram.mechanisms(client).contains(&first.auth_method) {
                return Err(fatal(
                    "28000",
                    format!(
                        "SASL authentication mechanism {} is not supported",
                        first.auth_method
                    ),
                ));
            }
            let data = first
                .data
                .ok_or_else(|| fatal("08P01", "malformed SCRAM message: empty".into()))?;
            let secret = users.secret(&user).unwrap_or_else(|| made_up(&user));
            let (server_first, waiting) = scram
                .for_client(client)
                .on_client_first_message_with_secret(&data, secret)
                .map_err(malformed)?;
            *exchange.0.lock().expect("scram") = Some(Step::Final(Box::new(waiting)));
            client
                .send(PgWireBackendMessage::Authentication(
                    Authentication::SASLContinue(server_first.into()),
                ))
                .await?;
            Ok(false)
        }
        Some(Step::Final(waiting)) => {
            let last = message.into_sasl_response().map_err(malformed)?;
            match waiting.on_client_final_message(&last.data) {
                Ok(server_final) => {
                    client
                        .send(PgWireBackendMessage::Authentication(
                            Authentication::SASLFinal(server_final.into()),
                        ))
                        .await?;
                    Ok(true)
                }
                Err(e) => {
                    tracing::info!(%user, "password authentication failed");
                    Err(malformed(e))
                }
            }
        }
        None => Err(fatal("08P01", "unexpected password message".into())),
    }
}

/// A verifier no password matches, for a user that does not exist; its
/// salt is stable per name within this process, as a real user's is.
fn made_up(user: &str) -> ScramSecret {
    static KEY: LazyLock<[u8; 32]> = LazyLock::new(|| {
        let mut k = [0u8; 32];
        let _ = getrandom::fill(&mut k);
        k
    });
    let mut salt = Sha256::new();
    salt.update(*KEY);
    salt.update(user.as_bytes());
    let salt = salt.finalize()[..16].to_vec();
    let mut keys = [0u8; 64];
    let _ = getrandom::fill(&mut keys);
    ScramSecret::Verifier {
        salt,
        iterations: ITERATIONS,
        stored_key: keys[..32].to_vec(),
        server_key: keys[32..].to_vec(),
    }
}
