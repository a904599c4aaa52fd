//! The configuration file against the real binary: flag > environment >
//! file > default, seen in what the running server does and reports, and a
//! bad file stopping start-up with an error naming the key.

mod common;

use common::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_beat_the_environment_which_beats_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fortress.toml");
    std::fs::write(
        &file,
        "# every serve flag has a key\n\
         work_mem_mb = 100\n\
         max_connections = 7\n\
         statement_timeout = \"45s\"\n\
         cache_ttl = 9\n",
    )
    .unwrap();
    let server = Server::launch_args(
        dir.path().join("data"),
        4,
        &[
            ("FORTRESS_MAX_CONNECTIONS", "8"),
            ("FORTRESS_CACHE_TTL", "10"),
        ],
        &["--config", file.to_str().unwrap(), "--cache-ttl", "11"],
    );
    // The file's statement_timeout is every session's default.
    let c = server.client().await;
    let t: String = c
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(t, "45000ms");
    let status: serde_json::Value = ureq::get(format!("{}/api/v1/status", server.admin_url()))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    let s = &status["settings"];
    assert_eq!(s["work_mem_mb"], 100, "file over default: {s}");
    assert_eq!(s["max_connections"], 8, "environment over file: {s}");
    assert_eq!(s["cache_ttl_s"], 11, "flag over environment and file: {s}");
    assert_eq!(s["statement_timeout_ms"], 45_000, "{s}");
    assert_eq!(s["row_cache_mb"], 64, "default: {s}");
    // The connection limit from the environment is the one enforced.
    let mut clients = vec![c];
    for _ in 1..8 {
        clients.push(server.client().await);
    }
    let refused = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls).await;
    assert_eq!(
        refused
            .err()
            .and_then(|e| e.code().map(|c| c.code().to_string())),
        Some("53300".to_string())
    );

    // `config print` shows the same, with where each value came from.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fortress"))
        .args([
            "config",
            "print",
            "--config",
            file.to_str().unwrap(),
            "--cache-ttl",
            "11",
        ])
        .env("FORTRESS_MAX_CONNECTIONS", "8")
        .env("FORTRESS_KEY", "00".repeat(32))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} =")))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(line("work_mem_mb"), "work_mem_mb = 100 # file");
    assert_eq!(line("max_connections"), "max_connections = 8 # environment");
    assert_eq!(line("cache_ttl"), "cache_ttl = 11 # flag");
    assert_eq!(line("row_cache_mb"), "row_cache_mb = 64 # default");
    assert!(text.contains("FORTRESS_KEY: set (redacted)"), "{text}");
    assert!(!text.contains(&"00".repeat(32)), "{text}");
}

#[test]
fn a_bad_file_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("page_cach_mb = 5\n", "key `page_cach_mb`: no such setting"),
        ("shards = \"four\"\n", "key `shards`"),
        ("sync = \"sometimes\"\n", "key `sync`"),
        ("key = \"0011\"\n", "never read from the configuration file"),
        ("shards = \n", "not valid TOML"),
    ];
    for (text, expected) in cases {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fortress"))
            .args([
                "serve",
                "--admin-listen",
                "off",
                "--config",
                file.to_str().unwrap(),
            ])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{}", common::free_port())])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text} started");
        assert!(
            err.contains(expected) && err.contains("bad.toml"),
            "{text}: {err}"
        );
        assert!(!err.contains("0011"), "{err}");
    }
}
