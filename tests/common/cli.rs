//! Running the `fortress` command line (restore, checkpoint, dr, ...) from
//! tests, and the table `t (id int PRIMARY KEY, v text)` the restore tests
//! write and compare.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

/// Runs the fortress CLI and returns its output.
pub fn fortress(args: &[&str]) -> Output {
    fortress_env::<&str, &str>(args, &[])
}

/// Runs the fortress CLI with `env` (and no key unless `env` gives one).
pub fn fortress_env<K: AsRef<OsStr>, V: AsRef<OsStr>>(args: &[&str], env: &[(K, V)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fortress"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .env("FORTRESS_LOG", "warn")
        .env_remove("FORTRESS_KEY")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run fortress")
}

/// The standard output of a run that must succeed.
pub fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "fortress failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The standard error of a run that must fail.
pub fn failed(out: Output) -> String {
    assert!(
        !out.status.success(),
        "fortress should have failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// What table `t` holds: id to v.
pub type Model = BTreeMap<i32, String>;

/// Inserts ids `from..to` tagged `tag` into `t`, and into `model`.
pub async fn insert_range(
    c: &tokio_postgres::Client,
    model: &mut Model,
    from: i32,
    to: i32,
    tag: &str,
) {
    for chunk in (from..to).collect::<Vec<_>>().chunks(500) {
        let values: Vec<String> = chunk.iter().map(|i| format!("({i}, '{tag}{i}')")).collect();
        c.batch_execute(&format!("INSERT INTO t VALUES {}", values.join(",")))
            .await
            .unwrap();
        for i in chunk {
            model.insert(*i, format!("{tag}{i}"));
        }
    }
}

/// What table `t` holds.
pub async fn rows_of_t(c: &tokio_postgres::Client) -> Model {
    c.query("SELECT id, v FROM t ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}
