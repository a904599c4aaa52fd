//! `fortress user add|remove|list`: the users who may connect, kept as
//! SCRAM-SHA-256 verifiers in the data directory (see
//! `fortress_proxy::users` for the file and its durability). Works while
//! the server runs: changes are serialised by a lock file, and the server
//! sees the new file at the next startup.

use std::fs::OpenOptions;
use std::io::BufRead;
use std::path::Path;

use anyhow::Context;
use fortress_proxy::users;

use crate::cli::UserAction;

/// Passwords shorter than this are refused.
const MIN_PASSWORD: usize = 8;

pub fn run(action: UserAction) -> anyhow::Result<()> {
    match action {
        UserAction::Add {
            name,
            data_dir,
            password_stdin,
        } => {
            check_name(&name)?;
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("reading the password from standard input")?;
                line.trim_end_matches(['\r', '\n']).to_string()
            } else {
                let first = rpassword::prompt_password(format!("password for {name}: "))?;
                let again = rpassword::prompt_password("again: ")?;
                if first != again {
                    anyhow::bail!("the passwords differ; nothing changed");
                }
                first
            };
            if password.chars().count() < MIN_PASSWORD {
                anyhow::bail!("a password needs at least {MIN_PASSWORD} characters");
            }
            let verifier = users::verifier(&password)?;
            let existed = change(&data_dir, |list| {
                let existed = list.iter().any(|(n, _)| n == &name);
                list.retain(|(n, _)| n != &name);
                list.push((name.clone(), verifier));
                existed
            })?;
            match existed {
                true => println!("password of {name} changed"),
                false => println!("added {name}: clients now authenticate with SCRAM-SHA-256"),
            }
            Ok(())
        }
        UserAction::Remove { name, data_dir } => {
            let removed = change(&data_dir, |list| {
                let before = list.len();
                list.retain(|(n, _)| n != &name);
                before != list.len()
            })?;
            if !removed {
                anyhow::bail!("no user {name}");
            }
            println!("removed {name}");
            if users::read(&data_dir)?.is_empty() {
                println!(
                    "no users left: a server listening on loopback now admits every client; \
                     one listening beyond loopback admits nobody until a user is added"
                );
            }
            Ok(())
        }
        UserAction::List { data_dir } => {
            for (name, _) in users::read(&data_dir)? {
                println!("{name}");
            }
            Ok(())
        }
    }
}

fn check_name(name: &str) -> anyhow::Result<()> {
    if !users::valid_name(name) {
        anyhow::bail!(
            "{name:?} is not a user name fortress takes: a letter or _, then letters, digits, _ - or ., at most 63"
        );
    }
    Ok(())
}

/// Applies `edit` to the user list under the users lock, durably.
fn change<T>(dir: &Path, edit: impl FnOnce(&mut Vec<(String, String)>) -> T) -> anyhow::Result<T> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock_path = dir.join("users.lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    let mut list = users::read(dir)?;
    let out = edit(&mut list);
    users::write(dir, &list).with_context(|| format!("writing the users of {}", dir.display()))?;
    Ok(out)
}
