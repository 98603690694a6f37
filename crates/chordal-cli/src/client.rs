//! Talking to a node's HTTP API: `locate`, `info`, `ring` (and the REPL).

use crate::{CliError, Target, output};
use anyhow::Result;
use chordal_http::{LocateJson, NodeStatusJson, RingJson};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Where a node's API is: `HOST:PORT` or `http://HOST:PORT` (plain), or
/// `https://HOST:PORT` (`--api-tls`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeUrl {
    /// `https`?
    pub tls: bool,
    /// `HOST:PORT` as given (a name is kept: the certificate is checked
    /// against it).
    pub authority: String,
}

impl std::str::FromStr for NodeUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<NodeUrl, String> {
        let (tls, rest) = if let Some(rest) = s.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = s.strip_prefix("http://") {
            (false, rest)
        } else if s.contains("://") {
            return Err(format!("{s:?}: only http:// and https:// are spoken"));
        } else {
            (false, s)
        };
        let authority = rest.trim_end_matches('/');
        let port_ok = authority
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok || authority.contains('/') {
            return Err(format!("{s:?} is not HOST:PORT"));
        }
        Ok(NodeUrl {
            tls,
            authority: authority.to_string(),
        })
    }
}

impl std::fmt::Display for NodeUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.tls {
            write!(f, "https://{}", self.authority)
        } else {
            f.write_str(&self.authority)
        }
    }
}

impl Target {
    /// The URL of `path` on the node.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.node.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.node.authority)
    }

    /// An HTTP client for the node: for https, trusting `--cacert` only.
    pub fn http(&self, builder: reqwest::ClientBuilder) -> Result<reqwest::Client> {
        let builder = match (&self.cacert, self.node.tls) {
            (Some(ca), _) => {
                let config = chordal_tls::https_client_config(ca)
                    .map_err(|e| CliError::Failed(format!("--cacert: {e}")))?;
                builder.tls_backend_preconfigured((*config).clone())
            }
            (None, true) => {
                return Err(CliError::Failed(format!(
                    "{} is https: give the CA to trust with --cacert (the cluster's ca.crt)",
                    self.node
                ))
                .into());
            }
            (None, false) => builder,
        };
        Ok(builder
            .build()
            .map_err(|e| CliError::Failed(format!("http client: {e}")))?)
    }
}

/// Characters kept as they are in a key's path segment; everything else is
/// percent-encoded (RFC 3986 unreserved).
pub fn encode_key(key: &str) -> String {
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

/// Sends one request to the node. Transport errors and timeouts are
/// `Unreachable`; an error answer is turned into the node's message (404 is
/// a plain failure, 503/504 count as unreachable).
pub async fn send(
    target: &Target,
    method: reqwest::Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<reqwest::Response> {
    send_with(target, method, path, body, &[]).await
}

/// [`send`] with extra request headers (conditions, expiries).
pub async fn send_with(
    target: &Target,
    method: reqwest::Method,
    path: &str,
    body: Option<Vec<u8>>,
    headers: &[(&str, String)],
) -> Result<reqwest::Response> {
    let client = target.http(reqwest::Client::builder().timeout(Duration::from_secs(15)))?;
    let url = target.url(path);
    let mut req = client.request(method, &url);
    if let Some(token) = &target.token {
        req = req.bearer_auth(token);
    }
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    if let Some(body) = body {
        req = req.body(body);
    }
    checked(req, target, false).await
}

/// Sends `req` to `target`'s node and returns its answer if it succeeded.
/// Transport errors and timeouts are `Unreachable`; an error answer
/// becomes the node's message (404 a plain failure, 503/504 unreachable),
/// after the node's address when `name_node` (a command that asks many
/// nodes).
pub async fn checked(
    req: reqwest::RequestBuilder,
    target: &Target,
    name_node: bool,
) -> Result<reqwest::Response> {
    let resp = req
        .send()
        .await
        .map_err(|e| CliError::Unreachable(format!("node {} unreachable: {e}", target.node)))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let mut msg = body["error"]
        .as_str()
        .unwrap_or("unknown error")
        .to_string();
    if status.as_u16() == 412 {
        match body["version"].as_str() {
            Some(v) => msg = format!("{msg} (current version {v})"),
            None => msg = format!("{msg} (the key has no value)"),
        }
    }
    if name_node {
        msg = format!("node {}: {msg}", target.node);
    }
    Err(match status.as_u16() {
        503 | 504 => CliError::Unreachable(msg),
        _ => CliError::Failed(msg),
    }
    .into())
}

/// GETs `path` from the node and parses the JSON answer.
pub async fn get_json<T: DeserializeOwned>(
    target: &Target,
    path: &str,
) -> Result<(T, serde_json::Value)> {
    let resp = send(target, reqwest::Method::GET, path, None).await?;
    let body: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| CliError::Unreachable(format!("bad answer from {}: {e}", target.node)))?;
    let parsed = serde_json::from_value(body.clone())
        .map_err(|e| CliError::Failed(format!("unexpected answer from {}: {e}", target.node)))?;
    Ok((parsed, body))
}

/// Prints a JSON answer: as is with `--json`, else as `human` renders it.
pub async fn print_answer(
    target: &Target,
    resp: reqwest::Response,
    human: impl FnOnce(&serde_json::Value) -> String,
) -> Result<()> {
    let v: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| CliError::Unreachable(format!("bad answer from {}: {e}", target.node)))?;
    if target.json {
        println!("{v}");
    } else {
        println!("{}", human(&v));
    }
    Ok(())
}

/// Prints the answer of a stored put or delete.
async fn print_stored(target: &Target, resp: reqwest::Response, verb: &str) -> Result<()> {
    print_answer(target, resp, |v| {
        format!(
            "{verb} {} (version {}; write quorum reached: {} of {} copies so far)",
            v["key"].as_str().unwrap_or("?"),
            v["version"].as_str().unwrap_or("?"),
            v["replicas_acked"],
            v["replicas"]
        )
    })
    .await
}

/// How `chordal put` and `chordal del` condition a write.
#[derive(clap::Args, Debug, Default)]
pub struct WriteFlags {
    /// Create only: fail (exit 1) if the key already has a value.
    #[arg(long, conflicts_with = "if_version")]
    pub if_absent: bool,
    /// Only if the key's current version is V (as `chordal get --json`
    /// or the X-Chordal-Version header gives it); exit 1 otherwise.
    #[arg(long, value_name = "V")]
    pub if_version: Option<String>,
}

impl WriteFlags {
    fn headers(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.if_absent {
            out.push(("if-none-match", "*".to_string()));
        }
        if let Some(v) = &self.if_version {
            out.push(("if-match", v.clone()));
        }
        out
    }
}

/// Stores `value` under `key`, expiring after `ttl` seconds if given.
pub async fn put(
    target: &Target,
    key: &str,
    value: Vec<u8>,
    ttl: Option<u64>,
    flags: &WriteFlags,
) -> Result<()> {
    let mut path = format!("/v1/kv/{}", encode_key(key));
    if let Some(ttl) = ttl {
        path.push_str(&format!("?ttl={ttl}"));
    }
    let resp = send_with(
        target,
        reqwest::Method::PUT,
        &path,
        Some(value),
        &flags.headers(),
    )
    .await?;
    print_stored(target, resp, "stored").await
}

pub async fn del(target: &Target, key: &str, flags: &WriteFlags) -> Result<()> {
    let path = format!("/v1/kv/{}", encode_key(key));
    let resp = send_with(
        target,
        reqwest::Method::DELETE,
        &path,
        None,
        &flags.headers(),
    )
    .await?;
    print_stored(target, resp, "deleted").await
}

/// Prints the value: raw bytes (a newline added only on a terminal, when
/// the value lacks one, so pipes get the bytes exactly), or JSON with
/// `--json` (with its version and expiry). `consistency`: one, quorum or
/// all.
pub async fn get(target: &Target, key: &str, consistency: Option<&str>) -> Result<()> {
    let mut path = format!("/v1/kv/{}", encode_key(key));
    if let Some(c) = consistency {
        path.push_str(&format!("?consistency={c}"));
    }
    let resp = send(target, reqwest::Method::GET, &path, None).await?;
    let expires: Option<u64> = resp
        .headers()
        .get(chordal_http::EXPIRES_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let version = resp
        .headers()
        .get(chordal_http::VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let value = resp
        .bytes()
        .await
        .map_err(|e| CliError::Unreachable(format!("bad answer from {}: {e}", target.node)))?;
    if target.json {
        let text = String::from_utf8_lossy(&value);
        println!(
            "{}",
            serde_json::json!({"key": key, "value": text, "version": version, "expires": expires})
        );
    } else {
        use std::io::{IsTerminal, Write};
        let mut out = std::io::stdout().lock();
        out.write_all(&value)?;
        if out.is_terminal() && !value.ends_with(b"\n") {
            out.write_all(b"\n")?;
        }
        out.flush()?;
    }
    Ok(())
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
