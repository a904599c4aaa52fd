//! The operators' dashboard in a real browser: headless Chromium loads `/`
//! from a running server, and the rendered page must show what
//! `/api/v1/status` says (shard count, rows, connections).

mod common;

use std::process::Command;

use common::Server;

const TOKEN: &str = "dashboard-token-3b9e41c07d";

fn chromium() -> Option<&'static str> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    if found.is_none() && std::env::var_os("FORTRESS_REQUIRE_CHROMIUM").is_some() {
        panic!("chromium is required (FORTRESS_REQUIRE_CHROMIUM) but not found");
    }
    found
}

/// The page at `url` as Chromium rendered it, after its scripts ran.
fn render(browser: &str, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=8000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the element with `data-testid="id"` (no nested elements).
fn testid(dom: &str, id: &str) -> String {
    let marker = format!("data-testid=\"{id}\"");
    let at = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no {id} in\n{dom}"));
    let rest = &dom[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest[start..].find('<').unwrap();
    rest[start..start + end].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_what_the_api_says() {
    let Some(browser) = chromium() else {
        eprintln!("no chromium: dashboard test skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("offsite=file://{}", dir.path().join("archive").display());
    let server = Server::launch_args(
        dir.path().join("data"),
        4,
        &[("FORTRESS_ADMIN_TOKEN", TOKEN)],
        &["--archive", &spec],
    );
    let c = server.client().await;
    c.batch_execute("CREATE TABLE things (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let values: Vec<String> = (1..=1234).map(|i| format!("({i}, 'x')")).collect();
    c.batch_execute(&format!("INSERT INTO things VALUES {}", values.join(",")))
        .await
        .unwrap();
    let status: serde_json::Value = ureq::get(format!("{}/api/v1/status", server.admin_url()))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    let shards = status["shards"].as_array().unwrap();
    let rows: u64 = shards.iter().map(|s| s["rows"].as_u64().unwrap()).sum();
    assert_eq!(rows, 1234);

    // With the token in the URL fragment, the panels fill from the API.
    let dom = render(browser, &format!("{}/#token={TOKEN}", server.admin_url()));
    assert!(
        dom.contains("data-loaded=\"true\""),
        "the page never loaded:\n{dom}"
    );
    assert_eq!(testid(&dom, "shards"), format!("{0} / {0}", shards.len()));
    assert_eq!(testid(&dom, "rows"), "1,234");
    let active = testid(&dom, "connections");
    assert!(active.ends_with("/ 100"), "{active}");
    // One table row per shard.
    let table = &dom[dom.find("data-testid=\"shard-rows\"").unwrap()..];
    let table = &table[..table.find("</tbody>").unwrap()];
    assert_eq!(table.matches("<tr>").count(), shards.len(), "{table}");
    // The archive, with its state.
    let archives = &dom[dom.find("data-testid=\"archives\"").unwrap()..];
    let archives = &archives[..archives.find("</tbody>").unwrap()];
    assert!(archives.contains("offsite (file://"), "{archives}");
    assert!(archives.contains("healthy"), "{archives}");

    // Without it, the page asks for the token and shows no data.
    let dom = render(browser, &server.admin_url());
    assert!(dom.contains("token needed"), "{dom}");
    assert!(!dom.contains("data-loaded=\"true\""));
    assert_eq!(testid(&dom, "rows"), "–");
}
