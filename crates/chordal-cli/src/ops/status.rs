//! `chordal status`, `chordal health` and `chordal leave`.

use super::Session;
use crate::{CliError, Target};
use anyhow::Result;
use chordal_http::NodeStatusJson;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// What `chordal status` learnt of one process.
struct Process {
    api: String,
    node: Option<NodeStatusJson>,
    health: String,
    under_replicated: Option<f64>,
}

/// `chordal status`: one screen on the ring's health — members and their
/// releases, ranges under R, storage, the ring-size estimate — from a ring
/// walk and each process's `/v1/node`, `/v1/health` and `/metrics`.
pub async fn status(target: &Target) -> Result<()> {
    let session = Session::new(target, Duration::from_secs(10))?;
    let ring = session.ring().await?;
    let mut apis: Vec<String> = ring.nodes.iter().filter_map(|n| n.api.clone()).collect();
    apis.sort();
    apis.dedup();
    let processes: Vec<Process> = futures_util::future::join_all(apis.iter().map(|api| {
        let session = &session;
        async move {
            let t = session.at(api);
            let node: Option<NodeStatusJson> = session.get(&t, "/v1/node").await.ok();
            let health = match session.get::<Value>(&t, "/v1/health").await {
                Ok(h) => h["status"].as_str().unwrap_or("?").to_string(),
                Err(_) => "unreachable".into(),
            };
            let under_replicated = match session
                .send(&t, reqwest::Method::GET, "/metrics", None)
                .await
            {
                Ok(resp) => resp.text().await.ok().and_then(|text| {
                    text.lines()
                        .find(|l| l.starts_with("chordal_ranges_under_replicated "))
                        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
                }),
                Err(_) => None,
            };
            Process {
                api: api.clone(),
                node,
                health,
                under_replicated,
            }
        }
    }))
    .await;
    let under: f64 = processes.iter().filter_map(|p| p.under_replicated).sum();
    let healthy = processes.iter().filter(|p| p.health == "ok").count();
    // Processes per release, in release order.
    let mut tally: std::collections::BTreeMap<String, usize> = Default::default();
    for n in processes.iter().filter_map(|p| p.node.as_ref()) {
        let release = format!(
            "{} (protocol {}-{})",
            n.version, n.protocol[0], n.protocol[1]
        );
        *tally.entry(release).or_default() += 1;
    }
    let estimate = processes
        .iter()
        .find_map(|p| p.node.as_ref()?.ring_size_estimate);
    let keys: u64 = processes
        .iter()
        .filter_map(|p| p.node.as_ref().map(|n| n.keys_stored))
        .sum();
    if target.json {
        let per: Vec<Value> = processes
            .iter()
            .map(|p| {
                json!({
                    "api": p.api,
                    "id": p.node.as_ref().map(|n| n.id.clone()),
                    "version": p.node.as_ref().map(|n| n.version.clone()),
                    "health": p.health,
                    "keys_stored": p.node.as_ref().map(|n| n.keys_stored),
                    "ranges_under_replicated": p.under_replicated,
                    "storage_problem": p.node.as_ref().and_then(|n| n.storage_problem.clone()),
                })
            })
            .collect();
        println!(
            "{}",
            json!({
                "members": ring.count, "processes": processes.len(), "healthy": healthy,
                "ranges_under_replicated": under, "ring_size_estimate": estimate,
                "keys_stored": keys, "versions": tally.iter().map(|(v, n)| json!({"version": v, "processes": n})).collect::<Vec<_>>(),
                "problems": ring.problems, "nodes": per, "down": ring.down,
            })
        );
        return Ok(());
    }
    let mut s = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(
        s,
        "ring       {} members in {} processes, {healthy} healthy; size estimate {}",
        ring.count,
        processes.len(),
        estimate.map_or("-".into(), |e| format!("{e:.0}"))
    );
    let _ = writeln!(
        s,
        "releases   {}",
        tally
            .iter()
            .map(|(v, n)| format!("{v} on {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        s,
        "under R    {under} ranges with fewer copies than R{}",
        if under == 0.0 {
            ""
        } else {
            " (re-replication under way, or too few processes)"
        }
    );
    let _ = writeln!(
        s,
        "records    {keys} stored, replicas and uncollected tombstones included"
    );
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::UTF8_BORDERS_ONLY);
    table.set_header([
        "api", "id", "release", "health", "records", "under R", "storage",
    ]);
    for p in &processes {
        let n = p.node.as_ref();
        table.add_row([
            p.api.clone(),
            n.map_or("-".into(), |n| n.id[..8].to_string()),
            n.map_or("-".into(), |n| n.version.clone()),
            p.health.clone(),
            n.map_or("-".into(), |n| n.keys_stored.to_string()),
            p.under_replicated.map_or("-".into(), |u| u.to_string()),
            n.and_then(|n| n.storage_problem.clone())
                .unwrap_or_else(|| "ok".into()),
        ]);
    }
    // Processes seen to go lately, that the walk did not find: down (or
    // gone by a graceful leave), rather than just no longer listed.
    for d in &ring.down {
        let how = match d.left {
            Some(true) => "left",
            Some(false) => "down",
            None => "gone",
        };
        table.add_row([
            d.api.clone().unwrap_or_else(|| d.addr.clone()),
            d.id[..8.min(d.id.len())].to_string(),
            "-".into(),
            format!("{how} ({} s ago)", d.seconds_ago),
            "-".into(),
            "-".into(),
            "-".into(),
        ]);
    }
    let _ = writeln!(s, "{table}");
    if ring.problems.is_empty() {
        let _ = writeln!(s, "no problems seen");
    } else {
        for p in &ring.problems {
            let _ = writeln!(s, "problem: {p}");
        }
    }
    print!("{s}");
    Ok(())
}

/// `chordal health`: the node's `/v1/health` in one line (JSON with
/// `--json`); unreachable or not joined is exit 3.
pub async fn health(target: &Target) -> Result<()> {
    let session = Session::new(target, Duration::from_secs(5))?;
    let v: Value = session.get(target, "/v1/health").await?;
    if target.json {
        println!("{v}");
    } else {
        let status = v["status"].as_str().unwrap_or("?");
        let id = v["id"].as_str().unwrap_or("?");
        match v["storage"].as_str() {
            Some(problem) => println!("{status} {id} (storage: {problem})"),
            None => println!("{status} {id}"),
        }
    }
    Ok(())
}

/// `chordal leave`: asks the node to leave the ring gracefully (it hands
/// its ranges over, then its process stops); unless `no_wait`, waits until
/// its API stops answering, at most `wait` long.
pub async fn leave(target: &Target, no_wait: bool, wait: Duration) -> Result<()> {
    let session = Session::new(target, Duration::from_secs(10))?;
    let resp = session
        .send(target, reqwest::Method::POST, "/v1/admin/leave", None)
        .await?;
    let v: Value = resp.json().await.unwrap_or_default();
    let id = v["id"].as_str().unwrap_or("?").to_string();
    if no_wait {
        println!("node {id} at {} is leaving", target.node);
        return Ok(());
    }
    // Gone when its API refuses connections: while it drains it still
    // answers.
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let probe = session.client.get(target.url("/v1/health")).send().await;
        if probe.is_err() {
            println!("node {id} at {} has left", target.node);
            return Ok(());
        }
    }
    Err(CliError::Failed(format!(
        "node {id} at {} still answers after {} s",
        target.node,
        wait.as_secs()
    ))
    .into())
}
