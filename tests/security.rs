//! Users, SCRAM-SHA-256 and TLS against the real binary, with tokio-postgres
//! and psql: the right password gets in, a wrong one or an unknown user is
//! 28P01, TLS with sslmode=require and verify-full against a CA made here,
//! --tls-required refusing plaintext, trust refused beyond loopback, and no
//! secret in any log line or error message.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use common::{code, Server};
use tokio_postgres::NoTls;

const ALICE_PW: &str = "alice-pw-Kq8#2vX";
const BOB_PW: &str = "bob-pw-Zt5!9wLm";
const TOKEN: &str = "admin-token-6f1c0d9b2e7a4c58";
const ENCRYPTION_KEY: &str = "7e3a9c1f5b2d8e4a6c0f1b3d5e7a9c2e4f6a8b0c1d3e5f7a9b2c4d6e8f0a1b3c";

/// GETs an admin path over HTTPS with the test CA not checked (the TLS test
/// checks verification separately): (status, body).
fn admin_get(server: &Server, path: &str, token: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .disable_verification(true)
                .build(),
        )
        .build()
        .into();
    let mut r = agent
        .get(format!("https://localhost:{}{path}", server.admin_port))
        .header("Authorization", format!("Bearer {token}"))
        .call()
        .unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

fn fortress(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fortress"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn add_user(data: &Path, name: &str, password: &str) {
    let out = fortress(
        &[
            "user",
            "add",
            name,
            "--password-stdin",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        Some(&format!("{password}\n")),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn url(server: &Server, user: &str, password: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user={user} password={password} dbname=app",
        server.port
    )
}

async fn login(conn: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(conn, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// psql's output (stdout and stderr) and success, with `password` in PGPASSWORD.
fn psql(conninfo: &str, password: &str, sql: &str) -> (bool, String) {
    let out = Command::new("psql")
        .args([conninfo, "-X", "-A", "-t", "-w", "-c", sql])
        .env("PGPASSWORD", password)
        .output()
        .expect("psql");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn have_psql() -> bool {
    let found = Command::new("psql").arg("--version").output().is_ok();
    if !found && std::env::var_os("FORTRESS_REQUIRE_PSQL").is_some() {
        panic!("psql is required (FORTRESS_REQUIRE_PSQL) but not found");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_lets_in_the_right_password_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    add_user(&data, "alice", ALICE_PW);
    let verifiers = std::fs::read_to_string(data.join("users")).unwrap();
    assert!(
        verifiers.starts_with("alice:SCRAM-SHA-256$4096:"),
        "{verifiers}"
    );
    assert!(!verifiers.contains(ALICE_PW));
    // With users, the admin API (which runs SQL) needs a token too.
    let out = fortress(
        &[
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{}", common::free_port()),
            "--admin-listen",
            &format!("127.0.0.1:{}", common::free_port()),
        ],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs a token too"), "{err}");
    let server = Server::launch(data.clone(), 4, &[("FORTRESS_ADMIN_TOKEN", TOKEN)]);

    let c = login(&url(&server, "alice", ALICE_PW)).await.unwrap();
    let n: i32 = c.query_one("SELECT 41 + 1", &[]).await.unwrap().get(0);
    assert_eq!(n, 42);
    // A wrong password and an unknown user get the same answer.
    for (user, pw) in [("alice", "not-her-password"), ("mallory", ALICE_PW)] {
        let e = login(&url(&server, user, pw)).await.expect_err("refused");
        assert_eq!(code(&e), "28P01", "{user}: {e}");
        let msg = e.as_db_error().unwrap().message().to_string();
        assert_eq!(
            msg,
            format!("password authentication failed for user \"{user}\"")
        );
    }
    // No password at all: the client cannot answer the challenge.
    let no_pw = format!("host=127.0.0.1 port={} user=alice dbname=app", server.port);
    assert!(login(&no_pw).await.is_err());

    // A user added while the server runs gets in at once; one removed no
    // longer does, while connections already open stay.
    add_user(&data, "bob", BOB_PW);
    let bob = login(&url(&server, "bob", BOB_PW)).await.unwrap();
    let out = fortress(
        &[
            "user",
            "remove",
            "alice",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success());
    let e = login(&url(&server, "alice", ALICE_PW))
        .await
        .expect_err("removed");
    assert_eq!(code(&e), "28P01");
    c.query_one("SELECT 1", &[]).await.unwrap();
    bob.query_one("SELECT 1", &[]).await.unwrap();
    let out = fortress(
        &["user", "list", "--data-dir", data.to_str().unwrap()],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "bob\n");

    if have_psql() {
        let conninfo = format!("host=127.0.0.1 port={} user=bob dbname=app", server.port);
        let (ok, text) = psql(&conninfo, BOB_PW, "SELECT 'in as ' || current_user");
        assert!(ok, "{text}");
        assert_eq!(text.trim(), "in as bob");
        let (ok, text) = psql(&conninfo, "wrong-password", "SELECT 1");
        assert!(!ok);
        assert!(
            text.contains("password authentication failed for user \"bob\""),
            "{text}"
        );
    }
    // Short passwords and odd names are refused by `user add`.
    let out = fortress(
        &[
            "user",
            "add",
            "carol",
            "--password-stdin",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        Some("short\n"),
    );
    assert!(!out.status.success());
    let out = fortress(
        &[
            "user",
            "add",
            "x:y",
            "--password-stdin",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        Some("long-enough-password\n"),
    );
    assert!(!out.status.success());
    let log = server.log();
    for secret in [ALICE_PW, BOB_PW, "not-her-password", "wrong-password"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

/// A CA and a server certificate it signed, for localhost and 127.0.0.1:
/// (CA PEM, server chain PEM, server key PEM).
fn test_pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "fortress test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A tokio-postgres TLS connector trusting `ca_pem` only.
fn tls_connector(ca_pem: &str) -> tokio_postgres_rustls::MakeRustlsConnect {
    use rustls_pki_types::pem::PemObject;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_encrypts_sessions_and_can_be_required() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, chain, key) = test_pki();
    let (ca_path, cert_path, key_path) = (
        dir.path().join("ca.pem"),
        dir.path().join("server.pem"),
        dir.path().join("server.key"),
    );
    std::fs::write(&ca_path, &ca).unwrap();
    std::fs::write(&cert_path, &chain).unwrap();
    write_private(&key_path, &key);
    let data = dir.path().join("data");
    add_user(&data, "alice", ALICE_PW);
    let tls_args = [
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ];
    let server = Server::launch_args(
        data.clone(),
        4,
        &[("FORTRESS_ADMIN_TOKEN", TOKEN)],
        &tls_args,
    );

    // tokio-postgres over rustls, verifying the server against the test CA.
    let conn = format!(
        "host=localhost port={} user=alice password={ALICE_PW} dbname=app sslmode=require",
        server.port
    );
    let (client, connection) = tokio_postgres::connect(&conn, tls_connector(&ca))
        .await
        .unwrap();
    tokio::spawn(connection);
    let n: i64 = client
        .query_one("SELECT 6::int8 * 7", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 42);
    // Plaintext is still served when not required.
    login(&url(&server, "alice", ALICE_PW)).await.unwrap();

    if have_psql() {
        for mode in ["require", "verify-full"] {
            let conninfo = format!(
                "host=localhost port={} user=alice dbname=app sslmode={mode} sslrootcert={}",
                server.port,
                ca_path.display()
            );
            let (ok, text) = psql(&conninfo, ALICE_PW, "SELECT 1");
            assert!(ok, "{mode}: {text}");
            let out = Command::new("psql")
                .args([&conninfo, "-X", "-w", "-c", "\\conninfo"])
                .env("PGPASSWORD", ALICE_PW)
                .output()
                .unwrap();
            let info = String::from_utf8_lossy(&out.stdout);
            assert!(
                info.contains("SSL connection (protocol: TLSv1.3"),
                "{mode}: {info}"
            );
        }
        // Channel binding: over TLS the server offers SCRAM-SHA-256-PLUS,
        // binding the proof to its certificate; without TLS there is
        // nothing to bind to, and a client requiring it gives up.
        for (ssl, binding, gets_in) in [
            ("require", "require", true),
            ("require", "disable", true),
            ("disable", "require", false),
        ] {
            let conninfo = format!(
                "host=localhost port={} user=alice dbname=app sslmode={ssl} channel_binding={binding}",
                server.port
            );
            let (ok, text) = psql(&conninfo, ALICE_PW, "SELECT 1");
            assert_eq!(
                ok, gets_in,
                "sslmode={ssl} channel_binding={binding}: {text}"
            );
        }
        // verify-full trusts only the CA it is given: another CA's, and
        // the server's certificate is refused.

        let other_ca = dir.path().join("other-ca.pem");
        std::fs::write(&other_ca, test_pki().0).unwrap();
        let conninfo = format!(
            "host=localhost port={} user=alice dbname=app sslmode=verify-full sslrootcert={}",
            server.port,
            other_ca.display()
        );
        let (ok, text) = psql(&conninfo, ALICE_PW, "SELECT 1");
        // (OpenSSL finds an issuer of the same name whose key does not
        // verify the signature: "certificate verify failed" or "EVP lib".)
        assert!(!ok && text.contains("SSL error"), "{text}");
    }

    // The admin API serves HTTPS with the same certificate; `fortress
    // status` reaches it trusting the CA.
    let out = Command::new(env!("CARGO_BIN_EXE_fortress"))
        .args([
            "status",
            "--admin",
            &format!("https://localhost:{}", server.admin_port),
            "--admin-ca",
            ca_path.to_str().unwrap(),
        ])
        .env("FORTRESS_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.lines().filter(|l| l.contains(" yes ")).count(),
        4,
        "{text}"
    );
    // Without the CA the certificate is not trusted.
    let out = Command::new(env!("CARGO_BIN_EXE_fortress"))
        .args([
            "status",
            "--admin",
            &format!("https://localhost:{}", server.admin_port),
        ])
        .env("FORTRESS_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(!out.status.success());
    drop(client);
    let mut server = server;
    server.stop();

    // --tls-required: plaintext startups are refused with 28000. This run
    // uses every secret at once (password, admin token, TLS key, encryption
    // key), logs as JSON at debug level, and none may reach its log.
    let mut args = tls_args.to_vec();
    args.extend(["--tls-required", "--log-format", "json"]);
    let server = Server::launch_args(
        data,
        4,
        &[
            ("FORTRESS_ADMIN_TOKEN", TOKEN),
            ("FORTRESS_KEY", ENCRYPTION_KEY),
            ("FORTRESS_LOG", "debug"),
        ],
        &args,
    );
    let e = login(&url(&server, "alice", ALICE_PW))
        .await
        .expect_err("plaintext refused");
    assert_eq!(code(&e), "28000", "{e}");
    let (client, connection) = tokio_postgres::connect(
        &format!(
            "host=localhost port={} user=alice password={ALICE_PW} dbname=app sslmode=require",
            server.port
        ),
        tls_connector(&ca),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    client.query_one("SELECT 1", &[]).await.unwrap();
    if have_psql() {
        let conninfo = format!(
            "host=127.0.0.1 port={} user=alice dbname=app sslmode=disable",
            server.port
        );
        let (ok, text) = psql(&conninfo, ALICE_PW, "SELECT 1");
        assert!(!ok && text.contains("only encrypted connections"), "{text}");
    }
    // The admin API and a failed login, logged too.
    let (status, _) = admin_get(&server, "/api/v1/status", TOKEN);
    assert_eq!(status, 200);
    let (status, _) = admin_get(&server, "/api/v1/status", "not-the-token-0123456789");
    assert_eq!(status, 401);
    let wrong = format!(
        "host=localhost port={} user=alice password=wrong-password-x dbname=app sslmode=require",
        server.port
    );
    let e = match tokio_postgres::connect(&wrong, tls_connector(&ca)).await {
        Ok(_) => panic!("a wrong password got in"),
        Err(e) => e,
    };
    assert_eq!(code(&e), "28P01");
    // Every line is a JSON object; no secret reached one.
    let log = server.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with('{')).collect();
    assert!(lines.len() > 5, "{log}");
    for line in &lines {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    assert!(log.contains("password authentication failed"), "{log}");
    for secret in [
        ALICE_PW,
        "wrong-password-x",
        TOKEN,
        "not-the-token",
        ENCRYPTION_KEY,
        key.lines().nth(1).unwrap(),
    ] {
        assert!(!log.contains(secret), "a secret in the log:\n{log}");
    }
}

/// Runs `fortress serve` (admin API off) with `args`, expecting it to
/// refuse to start; its stderr.
fn serve_refused(data: &Path, args: &[&str]) -> String {
    let mut all = vec![
        "serve",
        "--admin-listen",
        "off",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let out = fortress(&all, None);
    assert!(!out.status.success(), "it started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn without_users_the_server_stays_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let public = format!("0.0.0.0:{}", common::free_port());
    let err = serve_refused(&data, &["--listen", &public]);
    assert!(err.contains("fortress user add"), "{err}");
    // A key file others can read is refused, naming the file only.
    let (_, chain, key) = test_pki();
    let cert_path = dir.path().join("server.pem");
    let key_path = dir.path().join("server.key");
    std::fs::write(&cert_path, chain).unwrap();
    std::fs::write(&key_path, &key).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let local = format!("127.0.0.1:{}", common::free_port());
    let err = serve_refused(
        &data,
        &[
            "--listen",
            &local,
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
    );
    assert!(err.contains("server.key"), "{err}");
    assert!(!err.contains(key.lines().nth(1).unwrap()), "{err}");
}
