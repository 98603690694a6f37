//! `chordal restore --in FILE`: a backup's records back into a ring.

use super::{FORMAT, MAX_LINE, Session};
use crate::{CliError, Target};
use anyhow::{Context, Result};
use chordal_http::admin::{MAX_PAGE_BYTES, MAX_RESTORE_RECORDS, RecordJson};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// Restore requests in flight at once.
const RESTORE_IN_FLIGHT: usize = 4;

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
    let bar = super::progress(
        target,
        "{spinner} restoring: {pos} records read ({elapsed})",
    );
    // A few requests in flight while the file is read on.
    let mut in_flight = futures_util::stream::FuturesUnordered::new();
    while let Some(batch) = file.next_batch().await? {
        in_flight.push(restore_batch(&session, batch));
        bar.set_position(file.read);
        if in_flight.len() >= RESTORE_IN_FLIGHT
            && let Some(answer) = in_flight.next().await
        {
            tally(answer)?;
        }
    }
    while let Some(answer) = in_flight.next().await {
        tally(answer)?;
    }
    bar.finish_and_clear();
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
