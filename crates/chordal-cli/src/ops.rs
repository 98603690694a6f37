//! Day-two operations on a running ring: `chordal backup`, `chordal
//! restore`, `chordal status` and `chordal leave` (docs/operations.md).
//!
//! A backup file is JSON lines: a header (`{"chordal_backup":1,…}`), one
//! record per line as `GET /v1/admin/records` gives them (key and value in
//! base64, the version, the expiry), and a trailer (`{"end":{"records":N}}`)
//! whose absence marks a file cut short.

use crate::client::NodeUrl;
use crate::{CliError, Target};
use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chordal_core::Id;
use chordal_http::admin::{MAX_PAGE_BYTES, MAX_RESTORE_RECORDS, RecordJson, cursor};
use chordal_http::{NodeStatusJson, RingJson, RingNodeJson};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};

/// The backup format's version, in every file's header.
const FORMAT: u64 = 1;
/// Longest line a restore reads: a 1 MiB value in base64 with room to spare.
const MAX_LINE: usize = 16 * 1024 * 1024;
/// Restore requests in flight at once.
const RESTORE_IN_FLIGHT: usize = 4;

/// One HTTP client for many requests to the nodes of one ring, with the
/// target's token and CA.
struct Session {
    target: Target,
    client: reqwest::Client,
}

impl Session {
    fn new(target: &Target, timeout: Duration) -> Result<Session> {
        let client = target.http(reqwest::Client::builder().timeout(timeout))?;
        Ok(Session {
            target: target.clone(),
            client,
        })
    }

    /// For long streams: no bound on a whole request, only on connecting
    /// and on each read (a node that stops sending for `idle`).
    fn streaming(target: &Target, idle: Duration) -> Result<Session> {
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(idle);
        Ok(Session {
            target: target.clone(),
            client: target.http(builder)?,
        })
    }

    /// The target, pointed at another node's API (same scheme and token).
    fn at(&self, api: &str) -> Target {
        let mut t = self.target.clone();
        t.node = NodeUrl {
            tls: self.target.node.tls,
            authority: api.to_string(),
        };
        t
    }

    /// Sends a request to `node`'s API; an error answer becomes its message
    /// (503/504 and transport errors count as unreachable).
    async fn send(
        &self,
        node: &Target,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::Response> {
        let mut req = self.client.request(method, node.url(path));
        if let Some(token) = &node.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| CliError::Unreachable(format!("node {} unreachable: {e}", node.node)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body: Value = resp.json().await.unwrap_or_default();
        let msg = format!(
            "node {}: {}",
            node.node,
            body["error"].as_str().unwrap_or("unknown error")
        );
        Err(match status.as_u16() {
            503 | 504 => CliError::Unreachable(msg),
            _ => CliError::Failed(msg),
        }
        .into())
    }

    async fn get<T: DeserializeOwned>(&self, node: &Target, path: &str) -> Result<T> {
        let resp = self.send(node, reqwest::Method::GET, path, None).await?;
        resp.json().await.map_err(|e| {
            CliError::Unreachable(format!("bad answer from {}: {e}", node.node)).into()
        })
    }

    /// The ring as the target node walks it, in ring order.
    async fn ring(&self) -> Result<RingJson> {
        self.get(&self.target, "/v1/ring").await
    }
}

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
    let file = tokio::fs::File::create(&partial)
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
    for i in 0..ranges.len() {
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
            let read = read_range(&session, &session.at(source), &path, &mut w, &mut after).await;
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
                            eprintln!("{e:#}; reading range {i} on from {next}");
                            source = next;
                        }
                        None => return Err(e.context(format!("range {i} could not be read"))),
                    }
                }
            }
        }
    }
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
async fn read_range(
    session: &Session,
    node: &Target,
    path: &str,
    w: &mut BufWriter<tokio::fs::File>,
    after: &mut Option<String>,
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
            *after = Some(cursor(&Id::hash(&key), &key));
            records += 1;
            bytes += line.len() as u64;
        }
    }
}

/// Percent-encodes a query value (cursors hold `+`, `/` and `=`).
fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Reads a backup file a batch of records at a time.
struct BackupReader {
    lines: BufReader<tokio::fs::File>,
    line: String,
    name: String,
    /// Records read so far.
    read: u64,
    /// The trailer's count, once read.
    trailer: Option<u64>,
}

impl BackupReader {
    /// Opens `path` and checks its header.
    async fn open(path: &Path) -> Result<BackupReader> {
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut r = BackupReader {
            lines: BufReader::with_capacity(1 << 20, file),
            line: String::new(),
            name: path.display().to_string(),
            read: 0,
            trailer: None,
        };
        r.next_line().await?;
        let header: Value = serde_json::from_str(&r.line).unwrap_or_default();
        if header["chordal_backup"].as_u64() != Some(FORMAT) {
            return Err(CliError::Failed(format!(
                "{} is not a chordal backup (format {FORMAT})",
                r.name
            ))
            .into());
        }
        Ok(r)
    }

    /// The next line into `self.line`; false at the end of the file.
    async fn next_line(&mut self) -> Result<bool> {
        self.line.clear();
        let n = (&mut self.lines)
            .take(MAX_LINE as u64 + 1)
            .read_line(&mut self.line)
            .await?;
        if self.line.len() > MAX_LINE {
            anyhow::bail!("{}: a line longer than {MAX_LINE} bytes", self.name);
        }
        Ok(n > 0)
    }

    /// Up to half a restore request's records (or a page's bytes); `None`
    /// at the end of the file.
    async fn next_batch(&mut self) -> Result<Option<Vec<RecordJson>>> {
        let (mut batch, mut bytes) = (Vec::new(), 0usize);
        while batch.len() < MAX_RESTORE_RECORDS / 2 && bytes < MAX_PAGE_BYTES {
            if !self.next_line().await? {
                break;
            }
            let at = self.read + 1;
            let v: Value = serde_json::from_str(self.line.trim_end())
                .with_context(|| format!("{}: record {at} is not JSON", self.name))?;
            if let Some(end) = v.get("end") {
                self.trailer = end["records"].as_u64();
                continue;
            }
            let r: RecordJson = serde_json::from_value(v)
                .with_context(|| format!("{}: record {at} is not a record", self.name))?;
            self.read += 1;
            bytes += self.line.len();
            batch.push(r);
        }
        Ok((!batch.is_empty()).then_some(batch))
    }
}

/// `chordal restore --in FILE`: puts every record of a backup back through
/// the target node, each with its own version unless the ring holds a
/// newer one (newest wins: restoring over newer writes leaves them, and
/// restoring twice ends where once did). Fails (exit 1) if any record failed or the file is cut short.
pub async fn restore(target: &Target, input: &Path) -> Result<()> {
    let session = Session::new(target, Duration::from_secs(120))?;
    let mut file = BackupReader::open(input).await?;
    let started = Instant::now();
    let (mut restored, mut kept, mut failed) = (0u64, 0u64, Vec::<String>::new());
    let mut tally = |answer: Result<(u64, u64, Vec<String>)>| -> Result<()> {
        let (r, k, f) = answer?;
        restored += r;
        kept += k;
        failed.extend(f);
        Ok(())
    };
    // A few requests in flight while the file is read on.
    let mut in_flight = futures_util::stream::FuturesUnordered::new();
    while let Some(batch) = file.next_batch().await? {
        in_flight.push(restore_batch(&session, batch));
        if in_flight.len() >= RESTORE_IN_FLIGHT
            && let Some(answer) = in_flight.next().await
        {
            tally(answer)?;
        }
    }
    while let Some(answer) = in_flight.next().await {
        tally(answer)?;
    }
    let (read, complete) = (file.read, file.trailer == Some(file.read));
    if target.json {
        println!(
            "{}",
            json!({"records": read, "restored": restored, "skipped": kept, "failed": failed.len(), "complete": complete, "seconds": started.elapsed().as_secs_f64()})
        );
    } else {
        println!(
            "restored {restored} of {read} records ({kept} skipped: the ring holds a newer version; {} failed) from {} in {:.1} s",
            failed.len(),
            input.display(),
            started.elapsed().as_secs_f64()
        );
    }
    for f in failed.iter().take(10) {
        eprintln!("failed: {f}");
    }
    if !complete {
        return Err(CliError::Failed(format!(
            "{} is cut short: its trailer says {} records, {read} were read",
            input.display(),
            file.trailer
                .map_or("nothing (it is missing)".into(), |n| n.to_string())
        ))
        .into());
    }
    if !failed.is_empty() {
        return Err(CliError::Failed(format!("{} records failed", failed.len())).into());
    }
    Ok(())
}

/// Times a restore batch is sent before its failures are final.
const RESTORE_ATTEMPTS: u32 = 5;

/// Sends one batch to `POST /v1/admin/restore`: (restored, skipped,
/// failures as text). Records that failed for a passing reason (a quorum
/// not reached in time, an overloaded node) are sent again, up to
/// [`RESTORE_ATTEMPTS`] times with growing pauses: a restore is
/// idempotent, each record keeping its own version.
async fn restore_batch(
    session: &Session,
    mut records: Vec<RecordJson>,
) -> Result<(u64, u64, Vec<String>)> {
    let (mut restored, mut skipped) = (0u64, 0u64);
    for attempt in 1..=RESTORE_ATTEMPTS {
        let body = serde_json::to_vec(&json!({ "records": records }))?;
        let resp = session
            .send(
                &session.target,
                reqwest::Method::POST,
                "/v1/admin/restore",
                Some(body),
            )
            .await?;
        let v: Value = resp.json().await.context("bad restore answer")?;
        restored += v["restored"].as_u64().unwrap_or(0);
        skipped += v["skipped"].as_u64().unwrap_or(0);
        let failed: Vec<(String, String)> = v["failed"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                let key = f["key_b64"].as_str().unwrap_or("").to_string();
                (key, f["error"].as_str().unwrap_or("?").to_string())
            })
            .collect();
        if failed.is_empty() {
            return Ok((restored, skipped, Vec::new()));
        }
        if attempt == RESTORE_ATTEMPTS {
            let failed = failed
                .into_iter()
                .map(|(key, error)| format!("key {key} ({error})"))
                .collect();
            return Ok((restored, skipped, failed));
        }
        records.retain(|r| failed.iter().any(|(key, _)| *key == r.key_b64));
        tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
    }
    unreachable!("the last attempt returns")
}

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
    let mut versions: Vec<String> = processes
        .iter()
        .filter_map(|p| p.node.as_ref())
        .map(|n| {
            format!(
                "{} (protocol {}-{})",
                n.version, n.protocol[0], n.protocol[1]
            )
        })
        .collect();
    versions.sort();
    let mut tally: Vec<(String, usize)> = Vec::new();
    for v in versions {
        match tally.iter_mut().find(|(x, _)| *x == v) {
            Some((_, n)) => *n += 1,
            None => tally.push((v, 1)),
        }
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
                "problems": ring.problems, "nodes": per,
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
    let _ = writeln!(s, "records    {keys} stored, copies included");
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::UTF8_BORDERS_ONLY);
    table.set_header([
        "api", "id", "release", "health", "keys", "under R", "storage",
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
