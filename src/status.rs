//! `fortress status`: a running server's `/api/v1/status` as tables, read
//! through its admin API (`--admin URL`; the token from
//! FORTRESS_ADMIN_TOKEN, as the server takes it).

use anyhow::Context;
use serde_json::Value;

use crate::cli::{AdminArgs, StatusArgs};

pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let status = get(&args.admin, "/api/v1/status")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    print!("{}", render(&status));
    Ok(())
}

/// GETs `path` from the admin API as JSON; an error response becomes an
/// error naming its code and message.
pub fn get(admin: &AdminArgs, path: &str) -> anyhow::Result<Value> {
    call(admin, "GET", path)
}

/// [`get`] with another method (a POST without a body).
pub fn call(admin: &AdminArgs, method: &str, path: &str) -> anyhow::Result<Value> {
    send(admin, method, path, None)
}

/// A POST of JSON `body` to `path`; the answer.
pub fn post_json(admin: &AdminArgs, path: &str, body: &Value) -> anyhow::Result<Value> {
    send(admin, "POST", path, Some(body))
}

fn send(
    admin: &AdminArgs,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Value> {
    let url = format!("{}{path}", admin.url.trim_end_matches('/'));
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)));
    if let Some(ca) = &admin.admin_ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        let certs = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("parsing {}", ca.display()))?;
        config = config.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                .build(),
        );
    }
    let agent: ureq::Agent = config.build().into();
    let token = crate::admin::token_from_env()?.map(|t| format!("Bearer {t}"));
    let sent = match method {
        "GET" => {
            let mut request = agent.get(&url);
            if let Some(t) = &token {
                request = request.header("Authorization", t);
            }
            request.call()
        }
        _ => {
            let mut request = agent.post(&url);
            if let Some(t) = &token {
                request = request.header("Authorization", t);
            }
            match body {
                Some(b) => request
                    .header("Content-Type", "application/json")
                    .send(b.to_string()),
                None => request.send_empty(),
            }
        }
    };
    let mut response = sent.with_context(|| format!("reaching the admin API at {}", admin.url))?;
    let status = response.status();
    let body: Value = response
        .body_mut()
        .read_json()
        .with_context(|| format!("reading the answer of {url}"))?;
    if !status.is_success() {
        let code = body["error"]["code"].as_str().unwrap_or("?");
        let message = body["error"]["message"].as_str().unwrap_or("");
        anyhow::bail!("{url} answered {status}: {code}: {message}");
    }
    Ok(body)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// The status as an operator reads it.
fn render(s: &Value) -> String {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let mut out = String::new();
    let uptime = n(&s["uptime_seconds"]);
    out += &format!(
        "fortress {}  cluster {}  up {}h{:02}m{:02}s\n\n",
        s["version"].as_str().unwrap_or("?"),
        s["cluster_id"].as_str().unwrap_or("?"),
        uptime / 3600,
        uptime / 60 % 60,
        uptime % 60
    );
    out += &format!(
        "{:>5}  {:<6}  {:>12}  {:>12}  {:>12}  {:>12}\n",
        "SHARD", "READY", "WAL LSN", "SIZE", "ROWS", "REQUESTS"
    );
    let shards = s["shards"].as_array().cloned().unwrap_or_default();
    for sh in &shards {
        out += &format!(
            "{:>5}  {:<6}  {:>12}  {:>12}  {:>12}  {:>12}\n",
            n(&sh["id"]),
            if sh["ready"].as_bool() == Some(true) {
                "yes"
            } else {
                "NO"
            },
            n(&sh["wal_lsn"]),
            mib(n(&sh["bytes"])),
            n(&sh["rows"]),
            n(&sh["requests"]),
        );
    }
    let total = |k: &str| shards.iter().map(|sh| n(&sh[k])).sum::<u64>();
    out += &format!(
        "{:>5}  {:<6}  {:>12}  {:>12}  {:>12}  {:>12}\n\n",
        "all",
        "",
        "",
        mib(total("bytes")),
        total("rows"),
        total("requests")
    );
    let c = &s["connections"];
    out += &format!(
        "connections: {} open of {} allowed; {} accepted, {} refused since start\n",
        n(&c["active"]),
        n(&c["max"]),
        n(&c["accepted_total"]),
        n(&c["refused_total"])
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_each_shard_and_the_totals() {
        let s = serde_json::json!({
            "version": "0.1.0", "cluster_id": "abc", "uptime_seconds": 3725,
            "shards": [
                {"id": 0, "ready": true, "wal_lsn": 7, "bytes": 1048576, "rows": 10, "requests": 3},
                {"id": 1, "ready": false, "wal_lsn": 9, "bytes": 2097152, "rows": 5, "requests": 4}
            ],
            "connections": {"active": 2, "max": 100, "accepted_total": 9, "refused_total": 1}
        });
        let text = render(&s);
        assert!(text.contains("up 1h02m05s"), "{text}");
        assert!(text.contains("    1  NO"), "{text}");
        assert!(text.contains("3.0 MiB"), "{text}");
        assert!(text.contains("2 open of 100 allowed"), "{text}");
        let all = text
            .lines()
            .find(|l| l.trim_start().starts_with("all"))
            .unwrap();
        assert!(all.contains(" 15 ") && all.ends_with("7"), "{all}");
    }
}
