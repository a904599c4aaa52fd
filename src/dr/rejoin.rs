//! A replaced primary rejoining as a standby of its successor, by itself
//! (`--rejoin auto`, the default): once it has saved its report of what
//! it had that the successor lacks, it replaces its own process (same
//! pid, environment and settings) with `fortress standby --primary
//! SUCCESSOR --rebuild`, which sets its copy aside (it followed another
//! history) and makes a new one from the successor. This is what
//! pg_rewind plus a restart as a replica does for PostgreSQL.

use std::ffi::{OsStr, OsString};

use fortress_proxy::Cluster;

/// The arguments of `fortress standby` following `primary` as `name`,
/// from those this process was started with (`serve ...`, or `standby
/// ...` for a standby promoted before): every setting kept, the command,
/// `--primary`, `--name` and `--rebuild` replaced.
pub fn standby_args(args: &[OsString], primary: &str, name: &str) -> Vec<OsString> {
    let mut out: Vec<OsString> = vec!["standby".into()];
    let mut rest = args.iter().skip(1).peekable();
    // The command itself (the first argument) is replaced.
    if rest
        .peek()
        .is_some_and(|a| *a == OsStr::new("serve") || *a == OsStr::new("standby"))
    {
        rest.next();
    }
    while let Some(a) = rest.next() {
        let text = a.to_string_lossy();
        match text.as_ref() {
            "--primary" | "--name" => {
                rest.next();
            }
            "--rebuild" => {}
            t if t.starts_with("--primary=") || t.starts_with("--name=") => {}
            _ => out.push(a.clone()),
        }
    }
    out.extend(["--primary", primary, "--name", name, "--rebuild"].map(OsString::from));
    out
}

/// Becomes a standby of `primary` in place: flushes the stores (a
/// courtesy: the copy is set aside whole either way) and executes
/// `fortress standby` with this process's settings. Returns only if the
/// exec failed.
pub fn exec_as_standby(cluster: &Cluster, primary: &str, name: &str) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    cluster.flush();
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return e.into(),
    };
    let args: Vec<OsString> = std::env::args_os().collect();
    let args = standby_args(&args, primary, name);
    tracing::warn!(%primary, "rejoining as a standby of the new primary: this process becomes `fortress standby --rebuild`");
    // Files, sockets and the data directory's lock are opened
    // close-on-exec: the new image starts with none of them.
    std::process::Command::new(exe).args(args).exec().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_serve_command_becomes_a_standby_of_the_successor_with_every_setting_kept() {
        let got = standby_args(
            &args(&[
                "/bin/fortress",
                "serve",
                "--data-dir",
                "P",
                "--name",
                "old",
                "--archive",
                "a=file:///x",
            ]),
            "10.0.0.2:6433",
            "old",
        );
        assert_eq!(
            got,
            args(&[
                "standby",
                "--data-dir",
                "P",
                "--archive",
                "a=file:///x",
                "--primary",
                "10.0.0.2:6433",
                "--name",
                "old",
                "--rebuild",
            ])
        );
        // A standby promoted before: its old primary and --rebuild go.
        let got = standby_args(
            &args(&[
                "fortress",
                "standby",
                "--primary=10.0.0.1:6433",
                "--rebuild",
                "--name=dr1",
                "--listen",
                "127.0.0.1:7000",
            ]),
            "10.0.0.3:6433",
            "dr1",
        );
        assert_eq!(
            got,
            args(&[
                "standby",
                "--listen",
                "127.0.0.1:7000",
                "--primary",
                "10.0.0.3:6433",
                "--name",
                "dr1",
                "--rebuild",
            ])
        );
    }
}
