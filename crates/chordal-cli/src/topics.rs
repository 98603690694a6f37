//! `chordal pub` and `chordal sub`: pub/sub through a node's HTTP API
//! (`POST` / `GET /v1/topics/{topic}`, the latter a server-sent-events
//! stream, parsed here).

use crate::client::{encode_key, print_answer, send};
use crate::{CliError, Target};
use anyhow::Result;
use base64::Engine as _;
use std::io::Write;
use std::time::Duration;

pub async fn publish(target: &Target, topic: &str, message: Vec<u8>) -> Result<()> {
    let path = format!("/v1/topics/{}", encode_key(topic));
    let resp = send(target, reqwest::Method::POST, &path, Some(message)).await?;
    print_answer(target, resp, |v| {
        format!("published to {} subscribed node(s)", v["subscribers"])
    })
    .await
}

/// Prints each message published on `topic` (one line each; `--json`: one
/// JSON object each) until `count` arrived, or forever.
pub async fn subscribe(target: &Target, topic: &str, count: Option<u64>) -> Result<()> {
    let client = target.http(reqwest::Client::builder().connect_timeout(Duration::from_secs(5)))?;
    let url = target.url(&format!("/v1/topics/{}", encode_key(topic)));
    let mut req = client.get(&url);
    if let Some(token) = &target.token {
        req = req.bearer_auth(token);
    }
    let mut resp = req
        .send()
        .await
        .map_err(|e| CliError::Unreachable(format!("node {} unreachable: {e}", target.node)))?;
    if !resp.status().is_success() {
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let msg = body["error"].as_str().unwrap_or("unknown error");
        return Err(CliError::Failed(msg.to_string()).into());
    }
    // Tell scripts the subscription is in place.
    eprintln!("subscribed to {topic:?}");
    let mut parser = SseParser::default();
    let mut seen = 0u64;
    while count.is_none_or(|c| seen < c) {
        let chunk = resp
            .chunk()
            .await
            .map_err(|e| CliError::Unreachable(format!("stream broke: {e}")))?;
        let Some(chunk) = chunk else {
            return Err(CliError::Unreachable("the node ended the stream".into()).into());
        };
        for event in parser.push(&chunk) {
            match event.kind.as_str() {
                "missed" => eprintln!(
                    "({} message(s) missed: this reader fell behind)",
                    event.data
                ),
                "empty" => {
                    print_message(target, topic, b"")?;
                    seen += 1;
                }
                "binary" => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(event.data.as_bytes())
                        .map_err(|e| CliError::Failed(format!("bad base64 from the node: {e}")))?;
                    print_message(target, topic, &bytes)?;
                    seen += 1;
                }
                _ => {
                    print_message(target, topic, event.data.as_bytes())?;
                    seen += 1;
                }
            }
            if count.is_some_and(|c| seen >= c) {
                break;
            }
        }
    }
    Ok(())
}

fn print_message(target: &Target, topic: &str, payload: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if target.json {
        let v = match std::str::from_utf8(payload) {
            Ok(text) => serde_json::json!({"topic": topic, "message": text}),
            Err(_) => serde_json::json!({
                "topic": topic,
                "message_base64": base64::engine::general_purpose::STANDARD.encode(payload),
            }),
        };
        writeln!(out, "{v}")?;
    } else {
        out.write_all(payload)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// One server-sent event.
#[derive(Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `message` when absent.
    pub kind: String,
    /// The `data:` lines joined with newlines.
    pub data: String,
}

/// A server-sent-events parser fed bytes as they come.
#[derive(Default)]
pub struct SseParser {
    buf: Vec<u8>,
    kind: Option<String>,
    data: Option<String>,
}

impl SseParser {
    /// Feeds `bytes`; returns the events they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.is_empty() {
                // Dispatch; unlike browsers, also an event with a type but
                // no data (the node's `event: empty`).
                if self.data.is_some() || self.kind.is_some() {
                    let kind = self.kind.take().unwrap_or_else(|| "message".into());
                    let data = self.data.take().unwrap_or_default();
                    out.push(SseEvent { kind, data });
                }
                continue;
            }
            if line.starts_with(':') {
                continue; // a comment (keep-alive)
            }
            let (field, value) = line.split_once(':').unwrap_or((line.as_str(), ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.kind = Some(value.to_string()),
                "data" => match &mut self.data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => self.data = Some(value.to_string()),
                },
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_anywhere() {
        let stream = b": keep-alive\n\ndata: hello\n\nevent: binary\ndata: AAE=\n\ndata: two\ndata: lines\n\nevent: empty\n\n";
        // Fed in every possible two-piece split, the events are the same.
        for cut in 0..stream.len() {
            let mut p = SseParser::default();
            let mut events = p.push(&stream[..cut]);
            events.extend(p.push(&stream[cut..]));
            assert_eq!(
                events,
                [
                    SseEvent {
                        kind: "message".into(),
                        data: "hello".into()
                    },
                    SseEvent {
                        kind: "binary".into(),
                        data: "AAE=".into()
                    },
                    SseEvent {
                        kind: "message".into(),
                        data: "two\nlines".into()
                    },
                    SseEvent {
                        kind: "empty".into(),
                        data: String::new()
                    },
                ],
                "cut at {cut}"
            );
        }
    }
}
