//! `fortress dr status | replicate | promote | failover`: the DR state of
//! a running server, read and changed through its admin API like
//! `fortress status`.

use serde_json::Value;

use crate::cli::DrAction;

pub fn run(action: DrAction) -> anyhow::Result<()> {
    let (status, json) = match action {
        DrAction::Status { admin, json } => {
            (crate::status::get(&admin, "/api/v1/dr/status")?, json)
        }
        DrAction::Replicate { admin, json } => (
            crate::status::call(&admin, "POST", "/api/v1/dr/replicate")?,
            json,
        ),
        DrAction::Promote { admin, json } => (
            crate::status::call(&admin, "POST", "/api/v1/dr/promote")?,
            json,
        ),
        DrAction::Failover { admin, to, json } => (
            crate::status::post_json(
                &admin,
                "/api/v1/dr/failover",
                &serde_json::json!({ "to": to }),
            )?,
            json,
        ),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render(&status));
    }
    Ok(())
}

/// The DR status as an operator reads it.
fn render(s: &Value) -> String {
    let mut out = format!("this node is a {}\n", s["role"].as_str().unwrap_or("?"));
    out += &render_failover(&s["failover"]);
    let peers = s["replication"].as_array().cloned().unwrap_or_default();
    if !peers.is_empty() {
        out += &format!(
            "{:<20} {:<8} {:<26} {:<30} {:>10} {:>9}\n",
            "replication", "is a", "mode", "state", "lag bytes", "lag s"
        );
    }
    for p in peers {
        let lag = p["lag_seconds"]
            .as_f64()
            .map_or("-".to_string(), |s| format!("{s:.3}"));
        out += &format!(
            "{:<20} {:<8} {:<26} {:<30} {:>10} {:>9}\n",
            p["name"].as_str().unwrap_or("?"),
            p["role"].as_str().unwrap_or("?"),
            p["mode"].as_str().unwrap_or("?"),
            p["state"].as_str().unwrap_or("?"),
            p["lag_bytes"].as_u64().unwrap_or(0),
            lag
        );
    }
    let archives = s["archives"].as_array().cloned().unwrap_or_default();
    if archives.is_empty() {
        out += "no archives (serve --archive NAME=URL)\n";
        return out;
    }
    for a in archives {
        let health = match a["healthy"].as_bool() {
            Some(true) => "healthy".to_string(),
            _ => format!(
                "UNHEALTHY: {}",
                a["last_error"].as_str().unwrap_or("not reached yet")
            ),
        };
        out += &format!(
            "archive {}  {}  {}\n",
            a["name"].as_str().unwrap_or("?"),
            a["url"].as_str().unwrap_or("?"),
            health
        );
        let since = a["seconds_since_success"]
            .as_f64()
            .map_or("never".to_string(), |s| format!("{s:.1} s ago"));
        out += &format!(
            "  last shipped {since}; consistent through {}; {:.1} MiB in {} objects; {} checkpoints\n",
            a["consistent_through"].as_str().unwrap_or("-"),
            a["shipped_bytes"].as_f64().unwrap_or(0.0) / (1u64 << 20) as f64,
            a["shipped_objects"].as_u64().unwrap_or(0),
            a["checkpoints"].as_u64().unwrap_or(0),
        );
        let checks: Vec<String> = a["health"]["checks"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|c| {
                let state = match c["ok"].as_bool() {
                    Some(true) => "ok",
                    Some(false) => "FAILING",
                    None => "not run",
                };
                format!(
                    "{} {state} ({})",
                    c["name"].as_str().unwrap_or("?"),
                    c["detail"].as_str().unwrap_or("-")
                )
            })
            .collect();
        out += &format!(
            "  health score {:.2}: {}\n",
            a["health"]["score"].as_f64().unwrap_or(0.0),
            checks.join("; ")
        );
        out += &format!(
            "  {:<12} {:>12} {:>12} {:>10}\n",
            "log", "archived", "durable", "lag"
        );
        for l in a["logs"].as_array().cloned().unwrap_or_default() {
            out += &format!(
                "  {:<12} {:>12} {:>12} {:>10}\n",
                l["log"].as_str().unwrap_or("?"),
                l["archived_lsn"].as_u64().unwrap_or(0),
                l["durable_lsn"].as_u64().unwrap_or(0),
                l["lag_records"].as_u64().unwrap_or(0),
            );
        }
    }
    out
}

/// The write lease and the failovers, if the node has a lease.
fn render_failover(f: &Value) -> String {
    if f.is_null() {
        return "no write lease (serve --lease-archive)\n".into();
    }
    let l = &f["lease"];
    let mut out = format!(
        "node {}: {}; lease in archive {} held by {} (epoch {}); failover {}\n",
        l["node"].as_str().unwrap_or("?"),
        match l["fenced"].as_str() {
            None => "takes writes".to_string(),
            Some(why) => format!("TAKES NO WRITES ({why})"),
        },
        l["archive"].as_str().unwrap_or("?"),
        l["holder"].as_str().unwrap_or("nobody"),
        l["epoch"].as_u64().unwrap_or(0),
        if f["automatic"].as_bool() == Some(true) {
            "automatic"
        } else {
            "manual"
        },
    );
    if let Some(p) = f["primary"].as_object() {
        out += &format!(
            "primary health score {:.2}; {} checks failed in a row; last heard {:.1} s ago\n",
            p["score"].as_f64().unwrap_or(0.0),
            p["consecutive_failures"].as_u64().unwrap_or(0),
            p["seconds_since_heard"].as_f64().unwrap_or(0.0),
        );
    }
    let secs = |v: &Value| v.as_f64().map_or("-".to_string(), |s| format!("{s:.2} s"));
    for fo in f["failovers"].as_array().cloned().unwrap_or_default() {
        let lost = &fo["lost"];
        out += &format!(
            "failover to {} from {} (epoch {}, {}) detected {}: RTO {}, lost {} (RPO {})\n",
            fo["to"].as_str().unwrap_or("?"),
            fo["from"].as_str().unwrap_or("?"),
            fo["epoch"].as_u64().unwrap_or(0),
            fo["kind"].as_str().unwrap_or("?"),
            fo["detected"].as_str().unwrap_or("?"),
            secs(&fo["rto_seconds"]),
            lost["transactions"]
                .as_u64()
                .map_or("not yet reported".to_string(), |n| format!(
                    "{n} transactions"
                )),
            secs(&lost["rpo_seconds"]),
        );
    }
    out
}
