//! TLS: the certificate and key (`--tls-cert`, `--tls-key`, PEM) loaded
//! into one rustls configuration that both the PostgreSQL listener and the
//! admin API serve. The key file must be private (PostgreSQL's rule for
//! `ssl_key_file`).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

/// The server's TLS: its rustls configuration and the certificate's PEM
/// (what SCRAM-SHA-256-PLUS binds to).
#[derive(Clone)]
pub struct Tls {
    pub config: Arc<rustls::ServerConfig>,
    pub cert_pem: Arc<Vec<u8>>,
}

/// Makes ring the process's default rustls provider, which HTTPS to
/// object stores (reqwest, for archives) uses: the same one the listeners
/// use, and no second crypto library.
pub fn install_default_provider() {
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The server's TLS for `cert` (a chain, leaf first) and `key`.
pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Tls> {
    crate::perms::check_secret(key)?;
    let pem = std::fs::read(cert)
        .with_context(|| format!("reading the certificate {}", cert.display()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing the certificate {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{} holds no PEM certificate", cert.display());
    }
    // The key's bytes are secret: an error names the file, never its text.
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("reading the private key {}: {e}", key.display()))?;
    // ring, as pgwire's SCRAM already uses: it builds with a C compiler
    // alone (aws-lc-rs, rustls' other provider, wants cmake on some
    // targets). rustls deprecates it only for lacking post-quantum key
    // exchange, which PostgreSQL clients do not offer yet.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate and the key do not match")?;
    Ok(Tls {
        config: Arc::new(config),
        cert_pem: Arc::new(pem),
    })
}
