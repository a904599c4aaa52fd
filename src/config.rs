//! The configuration file: `fortress serve --config FILE` (or
//! FORTRESS_CONFIG), TOML, one key per serve flag, named as the flag in
//! snake_case (`--page-cache-mb 512` is `page_cache_mb = 512`).
//!
//! Precedence is flag > environment > file > default: the file's values go
//! to clap as if given on the command line, but only for settings neither
//! the command line nor the environment set, so clap parses and checks
//! every value the same way wherever it came from. An unknown key, a value
//! of the wrong kind, or one clap refuses stops start-up with an error
//! naming the file and the key. Secrets (the encryption key, the admin
//! token, passwords) are never read from the file: it may only name files
//! that hold them (`key_file`), or leave them to the environment.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};

/// Keys that would put a secret in the file, and where it goes instead.
const SECRETS: &[(&str, &str)] = &[
    (
        "key",
        "FORTRESS_KEY, or key_file naming a file that holds it",
    ),
    (
        "encryption_key",
        "FORTRESS_KEY, or key_file naming a file that holds it",
    ),
    (
        "admin_token",
        "FORTRESS_ADMIN_TOKEN or FORTRESS_ADMIN_TOKEN_FILE",
    ),
    ("token", "FORTRESS_ADMIN_TOKEN or FORTRESS_ADMIN_TOKEN_FILE"),
    (
        "password",
        "`fortress user add` (SCRAM verifiers in the data directory)",
    ),
];

/// Arguments of `command` that a file may set: those with a long flag,
/// but not the file itself, help or version.
fn settable(command: &Command) -> impl Iterator<Item = &clap::Arg> {
    command.get_arguments().filter(|a| {
        a.get_long().is_some() && !matches!(a.get_id().as_str(), "config" | "help" | "version")
    })
}

/// The command-line arguments `file` adds for `command` (the serve
/// arguments), given what `matches` already has from the command line and
/// the environment; and the keys whose values come from the file.
pub fn file_args(
    file: &Path,
    command: &Command,
    matches: &ArgMatches,
) -> anyhow::Result<(Vec<OsString>, BTreeSet<String>)> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the configuration file {}", file.display()))?;
    // toml's own message quotes the offending line, which may hold a
    // secret put there by mistake: only its position and the reason.
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        let at = e.span().map_or(String::new(), |span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(" at line {line}, column {column}")
        });
        anyhow::anyhow!("{}: not valid TOML{at}: {}", file.display(), e.message())
    })?;
    let mut args = Vec::new();
    let mut set = BTreeSet::new();
    for (key, value) in &table {
        let at = || format!("{}: key `{key}`", file.display());
        if let Some((_, instead)) = SECRETS.iter().find(|(k, _)| k == key) {
            anyhow::bail!(
                "{}: secrets are never read from the configuration file; use {instead}",
                at()
            );
        }
        let Some(arg) = settable(command).find(|a| a.get_id() == key.as_str()) else {
            let known: Vec<&str> = settable(command).map(|a| a.get_id().as_str()).collect();
            anyhow::bail!("{}: no such setting (known: {})", at(), known.join(", "));
        };
        let long = format!(
            "--{}",
            arg.get_long().expect("settable args have a long flag")
        );
        let values: Vec<String> = match value {
            toml::Value::String(s) => vec![s.clone()],
            toml::Value::Integer(n) => vec![n.to_string()],
            toml::Value::Float(f) => vec![f.to_string()],
            toml::Value::Boolean(b) => vec![b.to_string()],
            toml::Value::Array(items) if matches!(arg.get_action(), ArgAction::Append) => items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s.clone()),
                    toml::Value::Integer(n) => Ok(n.to_string()),
                    other => Err(anyhow::anyhow!("{}: {other} is not a string", at())),
                })
                .collect::<anyhow::Result<_>>()?,
            other => anyhow::bail!("{}: expected a single value, found {other}", at()),
        };
        // Each value checked on its own, so an error names the key it came
        // from; rules between flags (tls_cert needs tls_key) are left to the
        // parse of everything together.
        let mut one = vec![OsString::from("fortress")];
        match arg.get_action() {
            ArgAction::SetTrue => match value {
                toml::Value::Boolean(true) => one.push(long.clone().into()),
                toml::Value::Boolean(false) => {}
                other => anyhow::bail!("{}: expected true or false, found {other}", at()),
            },
            _ => {
                for v in &values {
                    one.push(long.clone().into());
                    one.push(v.into());
                }
            }
        }
        match command.clone().try_get_matches_from(&one) {
            Err(e) if e.kind() != clap::error::ErrorKind::MissingRequiredArgument => {
                let why = e.render().to_string();
                let why = why
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("error: ");
                anyhow::bail!("{}: {why}", at());
            }
            _ => {}
        }
        let given = matches!(
            matches.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if !given {
            set.insert(key.clone());
            args.extend(one.into_iter().skip(1));
        }
    }
    Ok((args, set))
}

/// Where each setting of `matches` came from, for `fortress config print`.
fn source(matches: &ArgMatches, id: &str, from_file: &BTreeSet<String>) -> &'static str {
    match matches.value_source(id) {
        Some(ValueSource::EnvVariable) => "environment",
        Some(ValueSource::CommandLine) if from_file.contains(id) => "file",
        Some(ValueSource::CommandLine) => "flag",
        Some(ValueSource::DefaultValue) => "default",
        _ => "unset",
    }
}

/// The effective configuration as TOML, each line saying where its value
/// came from; secrets appear only as whether they are set.
pub fn print(command: &Command, matches: &ArgMatches, from_file: &BTreeSet<String>) -> String {
    let mut out = String::from("# fortress serve: the effective configuration\n");
    for arg in settable(command) {
        let id = arg.get_id().as_str();
        let from = source(matches, id, from_file);
        let values: Vec<String> = matches
            .get_raw(id)
            .map(|vs| vs.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let line = match (arg.get_action(), values.as_slice()) {
            (ArgAction::SetTrue, _) => {
                let on = matches.get_flag(id);
                format!("{id} = {on}")
            }
            (_, []) => format!("# {id} is not set"),
            (ArgAction::Append, vs) => format!("{id} = {}", toml::Value::from(vs.to_vec())),
            (_, [v]) => match v.parse::<i64>() {
                Ok(n) => format!("{id} = {n}"),
                Err(_) => format!("{id} = {}", toml::Value::from(v.as_str())),
            },
            (_, vs) => format!("{id} = {}", toml::Value::from(vs.to_vec())),
        };
        out += &format!("{line:<48} # {from}\n");
    }
    let secret = |name: &str| match std::env::var_os(name) {
        Some(_) => "set (redacted)",
        None => "not set",
    };
    out += &format!("# FORTRESS_KEY: {}\n", secret("FORTRESS_KEY"));
    out += &format!(
        "# FORTRESS_ADMIN_TOKEN: {}\n",
        secret("FORTRESS_ADMIN_TOKEN")
    );
    out += &format!(
        "# FORTRESS_ADMIN_TOKEN_FILE: {}\n",
        std::env::var("FORTRESS_ADMIN_TOKEN_FILE").unwrap_or_else(|_| "not set".into())
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    fn serve_command() -> Command {
        crate::cli::Cli::command()
            .find_subcommand("serve")
            .expect("serve")
            .clone()
    }

    fn with_file(text: &str, argv: &[&str]) -> anyhow::Result<crate::cli::ServeArgs> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fortress.toml");
        std::fs::write(&path, text).unwrap();
        let command = serve_command();
        let mut full: Vec<OsString> = std::iter::once("serve".into())
            .chain(argv.iter().map(OsString::from))
            .collect();
        let matches = command.clone().try_get_matches_from(&full)?;
        let (extra, _) = file_args(&path, &command, &matches)?;
        full.extend(extra);
        let matches = command.try_get_matches_from(&full)?;
        Ok(crate::cli::ServeArgs::from_arg_matches(&matches)?)
    }

    #[test]
    fn flags_that_need_each_other_can_both_come_from_the_file() {
        let args = with_file(
            "tls_cert = \"/etc/cert.pem\"\ntls_key = \"/etc/key.pem\"\ntls_required = true\n",
            &[],
        )
        .unwrap();
        assert!(args.tls_required);
        assert_eq!(
            args.tls_key.as_deref(),
            Some(std::path::Path::new("/etc/key.pem"))
        );
        let e = with_file("tls_cert = \"/etc/cert.pem\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("tls-key"), "{e}");
    }

    #[test]
    fn a_flag_beats_the_file_and_the_file_beats_the_default() {
        let args = with_file("shards = 8\npage_cache_mb = 512\n", &["--shards", "2"]).unwrap();
        assert_eq!(args.shards, 2);
        assert_eq!(args.page_cache_mb, 512);
        assert_eq!(args.row_cache_mb, 64);
        let args = with_file("statement_timeout = \"30s\"\nsync = \"batch\"\n", &[]).unwrap();
        assert_eq!(args.statement_timeout, std::time::Duration::from_secs(30));
        assert_eq!(args.sync, fortress_storage::SyncMode::Batch);
    }

    #[test]
    fn unknown_keys_bad_values_and_secrets_are_errors_naming_the_key() {
        let e = with_file("shard = 8\n", &[]).unwrap_err().to_string();
        assert!(e.contains("key `shard`: no such setting"), "{e}");
        assert!(e.contains("shards"), "{e}");
        let e = with_file("shards = \"many\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("key `shards`") && e.contains("many"), "{e}");
        let e = with_file("sync = \"sometimes\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("key `sync`"), "{e}");
        let e = with_file("[shards]\nn = 1\n", &[]).unwrap_err().to_string();
        assert!(e.contains("key `shards`: expected a single value"), "{e}");
        let e = with_file("admin_token = \"hunter2hunter2hunter2\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("never read from the configuration file"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = with_file("shards = [", &[]).unwrap_err().to_string();
        assert!(e.contains("not valid TOML at line 1"), "{e}");
        // A broken line is placed, never quoted: it may hold a secret.
        let e = with_file("shards = 4\nkey = \"d3adb33f\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && !e.contains("d3adb33f"), "{e}");
    }
}
