//! The encryption-at-rest key: from the environment (`FORTRESS_KEY`, 64 hex
//! digits) or a key file, never from flags' values, the config or the logs.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use fortress_storage::cipher::Cipher;

/// The configured key, if any. A key from the environment is then taken
/// out of it, so child processes do not inherit it; callers run this before
/// they start threads.
pub fn load(key_file: Option<&Path>) -> anyhow::Result<Option<Arc<Cipher>>> {
    let from_env = std::env::var_os("FORTRESS_KEY");
    if from_env.is_some() {
        std::env::remove_var("FORTRESS_KEY");
    }
    let key = match (from_env, key_file) {
        (Some(_), Some(_)) => bail!("set FORTRESS_KEY or --key-file, not both"),
        // Hex only: a 32-character passphrase is not a key.
        (Some(k), None) => Cipher::parse_hex_key(&k.to_string_lossy())?,
        (None, Some(path)) => {
            crate::perms::check_secret(path)?;
            Cipher::parse_key(
                &std::fs::read(path)
                    .with_context(|| format!("reading the key file {}", path.display()))?,
            )?
        }
        (None, None) => return Ok(None),
    };
    let cipher = Cipher::new(&key);
    tracing::info!(
        key = cipher.id(),
        "WAL records and checkpoints are encrypted"
    );
    tracing::warn!(
        "encryption at rest covers the WAL and checkpoints only: each shard's sled files \
         hold its rows in plaintext, so keep the data directory on an encrypted volume"
    );
    Ok(Some(Arc::new(cipher)))
}
