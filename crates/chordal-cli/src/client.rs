//! Talking to a node's HTTP API: `locate`, `info`, `ring` (and the REPL).

use crate::{CliError, Target, output};
use anyhow::Result;
use chordal_http::{LocateJson, NodeStatusJson, RingJson};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Characters kept as they are in a key's path segment; everything else is
/// percent-encoded (RFC 3986 unreserved).
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// GETs `path` from the node and parses the JSON answer. Transport errors
/// and timeouts are `Unreachable`; API errors carry the node's message.
pub async fn get_json<T: DeserializeOwned>(
    target: &Target,
    path: &str,
) -> Result<(T, serde_json::Value)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| CliError::Failed(format!("http client: {e}")))?;
    let url = format!("http://{}{}", target.node, path);
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| CliError::Unreachable(format!("node {} unreachable: {e}", target.node)))?;
    let status = resp.status();
    let body: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| CliError::Unreachable(format!("bad answer from {}: {e}", target.node)))?;
    if !status.is_success() {
        let msg = body["error"]
            .as_str()
            .unwrap_or("unknown error")
            .to_string();
        let err = if status.as_u16() == 504 || status.as_u16() == 503 {
            CliError::Unreachable(msg)
        } else {
            CliError::Failed(msg)
        };
        return Err(err.into());
    }
    let parsed = serde_json::from_value(body.clone())
        .map_err(|e| CliError::Failed(format!("unexpected answer from {}: {e}", target.node)))?;
    Ok((parsed, body))
}

/// Fetches `path`, then prints `json_part` of the answer (with `--json`)
/// or `render`ed for people.
async fn show<T: DeserializeOwned>(
    target: &Target,
    path: &str,
    json_part: fn(&serde_json::Value) -> &serde_json::Value,
    render: fn(&T) -> String,
) -> Result<()> {
    let (parsed, raw): (T, _) = get_json(target, path).await?;
    if target.json {
        println!("{}", json_part(&raw));
    } else {
        print!("{}", render(&parsed));
    }
    Ok(())
}

fn whole(v: &serde_json::Value) -> &serde_json::Value {
    v
}

pub async fn locate(target: &Target, key: &str, iterative: bool) -> Result<()> {
    let mode = if iterative { "?mode=iterative" } else { "" };
    let path = format!("/v1/locate/{}{mode}", encode_key(key));
    show::<LocateJson>(target, &path, whole, output::locate).await
}

pub async fn info(target: &Target) -> Result<()> {
    show::<NodeStatusJson>(target, "/v1/node", whole, output::info).await
}

pub async fn fingers(target: &Target) -> Result<()> {
    show::<NodeStatusJson>(target, "/v1/node", |v| &v["fingers"], output::fingers).await
}

pub async fn ring(target: &Target) -> Result<()> {
    show::<RingJson>(target, "/v1/ring", whole, output::ring).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_percent_encoded() {
        assert_eq!(encode_key("abc-1.2_~"), "abc-1.2_~");
        assert_eq!(encode_key("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(encode_key("é"), "%C3%A9");
    }
}
