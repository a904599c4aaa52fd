//! The users who may connect, with their SCRAM-SHA-256 verifiers.
//!
//! Format: the file `users` in the data directory, one user per line,
//! `NAME:VERIFIER`, where the verifier is PostgreSQL's own form of
//! `pg_authid.rolpassword`:
//! `SCRAM-SHA-256$ITERATIONS:SALT$STOREDKEY:SERVERKEY` (base64). The
//! password itself is never stored, and the verifier alone cannot log in:
//! it proves a client knows the password without letting the server (or
//! anyone reading the file) replay it.
//!
//! Durability: the whole file is rewritten to `users.tmp`, fsynced,
//! renamed over `users`, and the directory fsynced, so a crash leaves the
//! old list or the new one. Recovery: a `users.tmp` left behind is ignored
//! (and replaced by the next change). The file is private to its owner.
//!
//! Trust: with no users (no file, or an empty one) the server admits every
//! client, as before users existed; the binary refuses that beyond
//! loopback. A running server notices a changed file at the next startup.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramSecret};

/// The file's name in the data directory.
pub const USERS_FILE: &str = "users";
/// PBKDF2 iterations of new verifiers (PostgreSQL's default; RFC 7677's
/// minimum).
pub const ITERATIONS: usize = 4096;

/// A user name fortress accepts: what PostgreSQL accepts unquoted, which
/// also keeps the file's `NAME:` lines unambiguous.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        && name.len() <= 63
}

/// The PostgreSQL-form SCRAM-SHA-256 verifier of `password`, with a fresh
/// random salt.
pub fn verifier(password: &str) -> std::io::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| std::io::Error::other(e.to_string()))?;
    let salted = gen_salted_password(password, &salt, ITERATIONS);
    match ScramSecret::verifier_from_salted_password(salt.to_vec(), salted, ITERATIONS) {
        ScramSecret::Verifier {
            salt,
            iterations,
            stored_key,
            server_key,
        } => Ok(format!(
            "SCRAM-SHA-256${iterations}:{}${}:{}",
            STANDARD.encode(salt),
            STANDARD.encode(stored_key),
            STANDARD.encode(server_key)
        )),
        ScramSecret::SaltedPassword { .. } => unreachable!("a verifier was asked for"),
    }
}

/// A verifier as the SCRAM exchange uses it; `None` if malformed.
pub fn parse_verifier(text: &str) -> Option<ScramSecret> {
    let rest = text.strip_prefix("SCRAM-SHA-256$")?;
    let (params, keys) = rest.split_once('$')?;
    let (iterations, salt) = params.split_once(':')?;
    let (stored, server) = keys.split_once(':')?;
    let iterations: usize = iterations.parse().ok()?;
    let stored_key = STANDARD.decode(stored).ok()?;
    let server_key = STANDARD.decode(server).ok()?;
    (iterations >= ITERATIONS && stored_key.len() == 32 && server_key.len() == 32).then_some(())?;
    Some(ScramSecret::Verifier {
        salt: STANDARD.decode(salt).ok()?,
        iterations,
        stored_key,
        server_key,
    })
}

/// The users of a data directory: (name, verifier), in file order.
pub fn read(dir: &Path) -> std::io::Result<Vec<(String, String)>> {
    let path = dir.join(USERS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} line {}: not NAME:SCRAM-VERIFIER", path.display(), i + 1),
            )
        };
        let (name, v) = line.split_once(':').ok_or_else(bad)?;
        if !valid_name(name) || parse_verifier(v).is_none() {
            return Err(bad());
        }
        out.push((name.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Replaces the users of `dir`, durably (see the module notes). The caller
/// serialises writers.
pub fn write(dir: &Path, users: &[(String, String)]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join(format!("{USERS_FILE}.tmp"));
    let mut text = String::new();
    for (name, v) in users {
        text += &format!("{name}:{v}\n");
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(USERS_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// The users a running server checks startups against, re-read when the
/// file changes.
pub struct Users {
    dir: PathBuf,
    cached: Mutex<Cached>,
    /// Authentication is required even with no users (then nobody gets
    /// in): a server listening beyond loopback must never fall back to
    /// trust because its last user was removed.
    always: std::sync::atomic::AtomicBool,
}

/// Names the directory only: verifiers stay out of logs.
impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").field("dir", &self.dir).finish()
    }
}

/// (inode, modified, change time ns, length): every rewrite renames a new
/// file into place, so its inode and change time differ even when a new
/// password leaves the length and the modified time's tick the same.
type Stamp = (u64, SystemTime, i64, u64);

#[derive(Default)]
struct Cached {
    /// The file's identity when read; `None`: no file.
    stamp: Option<Stamp>,
    users: Vec<(String, String)>,
    /// The file could not be read: nobody gets in until it is.
    broken: bool,
}

impl Users {
    /// The users of data directory `dir` (read at once, so a malformed file
    /// stops start-up).
    pub fn open(dir: &Path) -> std::io::Result<Users> {
        let users = Users {
            dir: dir.to_path_buf(),
            cached: Mutex::new(Cached::default()),
            always: std::sync::atomic::AtomicBool::new(false),
        };
        users.refresh(&mut users.cached.lock().expect("users"))?;
        Ok(users)
    }

    /// The file's identity; `None` when there is no file.
    fn stamp(&self) -> std::io::Result<Option<Stamp>> {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(self.dir.join(USERS_FILE)) {
            Ok(m) => Ok(Some((m.ino(), m.modified()?, m.ctime_nsec(), m.len()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Re-reads the file if it changed since it was last read (or that
    /// read failed). No file is no users, without opening anything (the
    /// default state: nothing read, no file).
    fn refresh(&self, cached: &mut Cached) -> std::io::Result<()> {
        let result = self.stamp().and_then(|stamp| {
            if !cached.broken && cached.stamp == stamp {
                return Ok(());
            }
            cached.users = match stamp {
                Some(_) => read(&self.dir)?,
                None => Vec::new(),
            };
            cached.stamp = stamp;
            Ok(())
        });
        cached.broken = result.is_err();
        if result.is_err() {
            cached.users.clear();
        }
        result
    }

    /// Makes authentication required from now on, whatever the file says.
    pub fn require_always(&self) {
        self.always
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether clients must authenticate. A file that became unreadable
    /// fails closed: authentication is required and nobody passes until
    /// it is fixed (never a fall back to trust).
    pub fn required(&self) -> bool {
        let mut cached = self.cached.lock().expect("users");
        let was_broken = cached.broken;
        if let Err(e) = self.refresh(&mut cached) {
            // Once per episode, not per login attempt.
            if !was_broken {
                tracing::error!(error = %e, "the users file is unreadable: every login fails until it is fixed");
            }
        }
        cached.broken
            || !cached.users.is_empty()
            || self.always.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The verifier of `name`, if that user exists.
    pub fn secret(&self, name: &str) -> Option<ScramSecret> {
        let cached = self.cached.lock().expect("users");
        let (_, v) = cached.users.iter().find(|(n, _)| n == name)?;
        parse_verifier(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifiers_are_postgres_form_salted_and_never_the_password() {
        let a = verifier("correct horse").unwrap();
        let b = verifier("correct horse").unwrap();
        assert!(a.starts_with("SCRAM-SHA-256$4096:"), "{a}");
        assert_ne!(a, b, "each verifier has its own salt");
        assert!(!a.contains("correct horse"));
        assert!(parse_verifier(&a).is_some());
        assert!(parse_verifier("SCRAM-SHA-256$1000:c2FsdA==$AAAA:AAAA").is_none());
        assert!(parse_verifier("md5abc").is_none());
    }

    #[test]
    fn the_file_round_trips_and_a_change_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::open(dir.path()).unwrap();
        assert!(!users.required());
        write(dir.path(), &[("alice".into(), verifier("pw").unwrap())]).unwrap();
        assert!(users.required());
        assert!(users.secret("alice").is_some());
        assert!(users.secret("bob").is_none());
        write(dir.path(), &[]).unwrap();
        assert!(!users.required());
        // Beyond loopback, no users means nobody, never everybody.
        let public = Users::open(dir.path()).unwrap();
        public.require_always();
        assert!(public.required());
        assert!(public.secret("alice").is_none());
        std::fs::write(dir.path().join(USERS_FILE), "alice:plaintext\n").unwrap();
        assert!(read(dir.path()).is_err());
        // Unreadable fails closed: required, and nobody's secret is known.
        assert!(users.required());
        assert!(users.secret("alice").is_none());
        assert!(Users::open(dir.path()).is_err());
    }

    #[test]
    fn names_are_what_postgres_takes_unquoted() {
        for ok in ["alice", "_x", "app-1", "svc.reader"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "1a", "a:b", "a b", &"x".repeat(64)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
