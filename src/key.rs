//! The encryption-at-rest key: from the environment (`FORTRESS_KEY`, 64 hex
//! digits) or a key file, never from flags' values, the config or the logs.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use fortress_storage::cipher::Cipher;

/// The configured key, if any.
pub fn load(key_file: Option<&Path>) -> anyhow::Result<Option<Arc<Cipher>>> {
    let from_env = std::env::var_os("FORTRESS_KEY");
    let bytes = match (from_env, key_file) {
        (Some(_), Some(_)) => bail!("set FORTRESS_KEY or --key-file, not both"),
        (Some(k), None) => k.into_encoded_bytes(),
        (None, Some(path)) => std::fs::read(path)
            .with_context(|| format!("reading the key file {}", path.display()))?,
        (None, None) => return Ok(None),
    };
    let key = Cipher::parse_key(&bytes)?;
    let cipher = Cipher::new(&key);
    tracing::info!(key = cipher.id(), "encryption at rest is on");
    Ok(Some(Arc::new(cipher)))
}
