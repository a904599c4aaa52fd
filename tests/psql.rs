//! psql script tests: `psql -f tests/sql/NAME.sql` against fortress must print
//! exactly `tests/sql/NAME.out`, which PostgreSQL 15 printed for the same file.

mod common;

use std::path::Path;
use std::process::Command;

use common::Server;

fn psql_available() -> bool {
    Command::new("psql")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn psql_script_matches_postgres_output() {
    run_script("basic");
}

#[test]
fn psql_describe_commands_match_postgres_output() {
    run_script("describe");
}

/// Runs `tests/sql/NAME.sql` with psql against a fresh fortress and compares
/// what psql prints with `NAME.out`, printed by PostgreSQL 15.
fn run_script(name: &str) {
    if !psql_available() {
        assert!(
            std::env::var_os("FORTRESS_REQUIRE_PSQL").is_none(),
            "psql is required (FORTRESS_REQUIRE_PSQL is set) but not installed"
        );
        eprintln!("SKIPPED: psql is not installed (apt-get install postgresql-client)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let sql_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql");
    let out = Command::new("psql")
        .current_dir(&sql_dir)
        .args([
            "-X",
            "-a",
            "-v",
            "ON_ERROR_STOP=0",
            "-f",
            &format!("{name}.sql"),
        ])
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .env("LC_ALL", "C")
        .env_remove("PGOPTIONS")
        .env_remove("PGPASSWORD")
        .output()
        .expect("run psql");
    let mut got = String::from_utf8_lossy(&out.stdout).to_string();
    got.push_str(&String::from_utf8_lossy(&out.stderr));
    // psql echoes statements and prints results on stdout and messages on
    // stderr; basic.out holds both as a terminal shows them, so split it.
    let want = std::fs::read_to_string(sql_dir.join(format!("{name}.out"))).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let want_err: Vec<&str> = want.lines().filter(|l| is_stderr_line(l)).collect();
    let want_out: Vec<&str> = want.lines().filter(|l| !is_stderr_line(l)).collect();
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        want_out,
        "psql stdout differs from PostgreSQL's\n--- got ---\n{got}"
    );
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        want_err,
        "psql messages differ from PostgreSQL's\n--- got ---\n{got}"
    );
}

/// Lines psql writes to stderr: messages and their DETAIL / LINE / caret lines.
fn is_stderr_line(l: &str) -> bool {
    l.starts_with("psql:")
        || l.starts_with("DETAIL:")
        || l.starts_with("LINE ")
        || (l.trim_start().starts_with('^') && l.trim() == "^")
}
