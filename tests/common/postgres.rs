//! A throwaway PostgreSQL 15 for differential tests: `initdb` into a temp
//! dir, started on a free loopback port, stopped (immediate) when dropped.
//! Debian keeps the server binaries in /usr/lib/postgresql/15/bin; when the
//! tests run as root, the server runs as the `postgres` user.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::free_port;

pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
    as_postgres: bool,
}

/// The directory holding PostgreSQL 15's initdb and pg_ctl, if installed.
pub fn pg15_bin() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("FORTRESS_PG_BIN").map(PathBuf::from),
        Some(PathBuf::from("/usr/lib/postgresql/15/bin")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Postgres {
    /// Starts PostgreSQL 15, or returns `None` when it is not installed and
    /// `FORTRESS_REQUIRE_PG` is unset (CI sets it, so CI never skips).
    pub fn start() -> Option<Postgres> {
        let Some(bin) = pg15_bin() else {
            assert!(
                std::env::var_os("FORTRESS_REQUIRE_PG").is_none(),
                "PostgreSQL 15 is required (FORTRESS_REQUIRE_PG is set) but not installed"
            );
            eprintln!("SKIPPED: PostgreSQL 15 is not installed (apt-get install postgresql-15)");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let as_postgres = is_root();
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown the PostgreSQL temp dir to user postgres");
        }
        let pg = Postgres {
            bin,
            dir,
            port: free_port(),
            as_postgres,
        };
        let data = pg.data_dir();
        pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c timezone=UTC",
            pg.port,
            pg.dir.path().display()
        );
        let log = pg.dir.path().join("pg.log").display().to_string();
        pg.run(
            "pg_ctl",
            &["-D", &data, "-o", &opts, "-l", &log, "-w", "start"],
        );
        Some(pg)
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// A command running one of the server's tools as the right user.
    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("run {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("pg.log")).unwrap_or_default()
        );
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .output();
    }
}
