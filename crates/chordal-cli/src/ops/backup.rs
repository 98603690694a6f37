//! `chordal backup --out FILE`.
//!
//! A backup file is JSON lines: a header (`{"chordal_backup":1,…}`), one
//! record per line as `GET /v1/admin/records` gives them (key and value in
//! base64, the version, the expiry), and a trailer (`{"end":{"records":N}}`)
//! whose absence marks a file cut short.

use super::{FORMAT, MAX_LINE, Session};
use crate::{CliError, Target};
use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chordal_core::Id;
use chordal_http::admin::cursor;
use chordal_http::{RingJson, RingNodeJson};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, BufWriter};

/// The ring's members sorted by id, each with the range it owns: `(the
/// previous member's id, its id]`.
fn ranges(ring: &RingJson) -> Vec<(String, &RingNodeJson)> {
    let mut nodes: Vec<&RingNodeJson> = ring.nodes.iter().collect();
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    nodes.dedup_by(|a, b| a.id == b.id);
    (0..nodes.len())
        .map(|i| {
            let prev = nodes[(i + nodes.len() - 1) % nodes.len()];
            (prev.id.clone(), nodes[i])
        })
        .collect()
}

/// Where range `i` of `ranges` can be read: its owner's API first, then
/// the APIs of the next distinct processes in ring order (its replicas).
fn readers<'a>(ranges: &[(String, &'a RingNodeJson)], i: usize) -> Vec<&'a str> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for k in 0..ranges.len() {
        let n = ranges[(i + k) % ranges.len()].1;
        if seen.contains(&&n.addr) {
            continue;
        }
        seen.push(&n.addr);
        if let Some(api) = &n.api {
            out.push(api.as_str());
        }
    }
    out
}

/// `chordal backup --out FILE`: every record of the ring (tombstones,
/// versions and expiries included), range by range from each range's
/// owner, each range streamed as one moment saw it — or, if the owner
/// fails mid-range, from its replicas, resuming after the last record
/// written. Written to `FILE.partial`, renamed to FILE once
/// complete.
pub async fn backup(target: &Target, out: &Path) -> Result<()> {
    let session = Session::streaming(target, Duration::from_secs(60))?;
    let ring = session.ring().await?;
    let ranges = ranges(&ring);
    if ranges.is_empty() {
        return Err(CliError::Failed("the ring walk found no members".into()).into());
    }
    let partial = out.with_extension(match out.extension() {
        Some(e) => format!("{}.partial", e.to_string_lossy()),
        None => "partial".into(),
    });
    // Owner only: a backup holds every value of the ring.
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .await
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let header = json!({
        "chordal_backup": FORMAT,
        "created_unix": created,
        "ranges": ranges.len(),
        "nodes": ring.count,
    });
    w.write_all(format!("{header}\n").as_bytes()).await?;
    let started = Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    let bar = super::progress(
        target,
        "{spinner} backing up: range {pos}/{len}, {msg} ({elapsed})",
    );
    bar.set_length(ranges.len() as u64);
    bar.set_message("0 records");
    for i in 0..ranges.len() {
        bar.set_position(i as u64 + 1);
        let (start, owner) = (&ranges[i].0, ranges[i].1);
        let range = if ranges.len() == 1 {
            String::new()
        } else {
            format!("start={start}&end={}", owner.id)
        };
        let mut after: Option<String> = None;
        let mut sources = readers(&ranges, i).into_iter();
        let mut source = sources.next().ok_or_else(|| {
            CliError::Failed(format!("no API is known for range ending at {}", owner.id))
        })?;
        loop {
            let mut path = format!("/v1/admin/records?{range}");
            if let Some(a) = &after {
                path.push_str(&format!("&after={}", urlencode(a)));
            }
            let read = read_range(
                &session,
                &session.at(source),
                &path,
                (&mut w, &mut after),
                (&bar, records, bytes),
            )
            .await;
            match read {
                Ok((n, b)) => {
                    records += n;
                    bytes += b;
                    break;
                }
                // A node that fails mid-range: its replicas hold the same
                // range; read on from the last record written.
                Err((n, b, e)) => {
                    records += n;
                    bytes += b;
                    match sources.next() {
                        Some(next) => {
                            bar.suspend(|| eprintln!("{e:#}; reading range {i} on from {next}"));
                            source = next;
                        }
                        None => return Err(e.context(format!("range {i} could not be read"))),
                    }
                }
            }
        }
    }
    bar.finish_and_clear();
    let trailer = json!({"end": {"records": records}});
    w.write_all(format!("{trailer}\n").as_bytes()).await?;
    w.flush().await?;
    w.into_inner().sync_all().await?;
    tokio::fs::rename(&partial, out)
        .await
        .with_context(|| format!("cannot rename {} to {}", partial.display(), out.display()))?;
    if target.json {
        println!(
            "{}",
            json!({"records": records, "bytes": bytes, "ranges": ranges.len(), "file": out.display().to_string(), "seconds": started.elapsed().as_secs_f64()})
        );
    } else {
        println!(
            "backed up {records} records ({:.1} MB) of {} ranges to {} in {:.1} s",
            bytes as f64 / 1e6,
            ranges.len(),
            out.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Reads one range's stream from `node` into `w`, a record per line;
/// `after` follows the last record written. `Ok((records, bytes))` once
/// the end line came; `Err` with what was written if the stream broke off.
/// `bar` shows the backup's totals so far (`before` these).
async fn read_range(
    session: &Session,
    node: &Target,
    path: &str,
    (w, after): (&mut BufWriter<tokio::fs::File>, &mut Option<String>),
    (bar, before_records, before_bytes): (&indicatif::ProgressBar, u64, u64),
) -> Result<(u64, u64), (u64, u64, anyhow::Error)> {
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut resp = match session.send(node, reqwest::Method::GET, path, None).await {
        Ok(resp) => resp,
        Err(e) => return Err((0, 0, e)),
    };
    let mut pending: Vec<u8> = Vec::new();
    let broke = |records, bytes, e: String| {
        Err((
            records,
            bytes,
            CliError::Unreachable(format!("node {}: {e}", node.node)).into(),
        ))
    };
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(chunk)) => chunk,
            Err(e) => return broke(records, bytes, format!("the stream broke off: {e}")),
            Ok(None) => {
                return broke(
                    records,
                    bytes,
                    "the stream ended without its end line".into(),
                );
            }
        };
        pending.extend_from_slice(&chunk);
        if pending.len() > MAX_LINE {
            return broke(
                records,
                bytes,
                format!("a line longer than {MAX_LINE} bytes"),
            );
        }
        while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            let v: Value = match serde_json::from_slice(&line) {
                Ok(v) => v,
                Err(e) => return broke(records, bytes, format!("not a record line: {e}")),
            };
            if v.get("end").is_some() {
                return Ok((records, bytes));
            }
            let key = v["key_b64"].as_str().and_then(|k| B64.decode(k).ok());
            let Some(key) = key else {
                return broke(records, bytes, "a record without its key".into());
            };
            if let Err(e) = w.write_all(&line).await {
                return Err((records, bytes, e.into()));
            }
            *after = Some(cursor(&Id::of_key(&key), &key));
            records += 1;
            bytes += line.len() as u64;
            if records.is_multiple_of(1024) {
                bar.set_message(format!(
                    "{} records, {:.1} MB",
                    before_records + records,
                    (before_bytes + bytes) as f64 / 1e6
                ));
            }
        }
    }
}

/// Percent-encodes a query value (cursors hold `+`, `/` and `=`).
fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
