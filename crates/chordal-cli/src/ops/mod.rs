//! Day-two operations on a running ring (docs/operations.md): `chordal
//! backup` and `restore` (`backup.rs`, `restore.rs`; the file format is
//! described in `backup.rs`), and `chordal status`, `health` and `leave`
//! (`status.rs`). All of them talk to the ring's HTTP APIs through one
//! [`Session`].

mod backup;
mod restore;
mod status;

pub use backup::backup;
pub use restore::restore;
pub use status::{health, leave, status};

use crate::client::NodeUrl;
use crate::{CliError, Target};
use anyhow::Result;
use chordal_http::RingJson;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// The backup format's version, in every file's header.
const FORMAT: u64 = 1;
/// Longest line a backup holds or a restore reads: a 1 MiB value in
/// base64 with room to spare.
const MAX_LINE: usize = 16 * 1024 * 1024;

/// A line on standard error that says how far a long command got, redrawn
/// a few times a second: only when standard error is a terminal and the
/// output is not `--json`, so pipes, files and scripts see nothing of it.
pub(super) fn progress(target: &Target, template: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    if target.json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// One HTTP client for many requests to the nodes of one ring, with the
/// target's token and CA.
pub(super) struct Session {
    pub(super) target: Target,
    pub(super) client: reqwest::Client,
}

impl Session {
    pub(super) fn new(target: &Target, timeout: Duration) -> Result<Session> {
        let client = target.http(reqwest::Client::builder().timeout(timeout))?;
        Ok(Session {
            target: target.clone(),
            client,
        })
    }

    /// For long streams: no bound on a whole request, only on connecting
    /// and on each read (a node that stops sending for `idle`).
    pub(super) fn streaming(target: &Target, idle: Duration) -> Result<Session> {
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(idle);
        Ok(Session {
            target: target.clone(),
            client: target.http(builder)?,
        })
    }

    /// The target, pointed at another node's API (same scheme and token).
    pub(super) fn at(&self, api: &str) -> Target {
        let mut t = self.target.clone();
        t.node = NodeUrl {
            tls: self.target.node.tls,
            authority: api.to_string(),
        };
        t
    }

    /// Sends a request to `node`'s API on this session's client; an error
    /// answer becomes its message after the node's address
    /// ([`crate::client::checked`]).
    pub(super) async fn send(
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
        crate::client::checked(req, node, true).await
    }

    pub(super) async fn get<T: DeserializeOwned>(&self, node: &Target, path: &str) -> Result<T> {
        let resp = self.send(node, reqwest::Method::GET, path, None).await?;
        resp.json().await.map_err(|e| {
            CliError::Unreachable(format!("bad answer from {}: {e}", node.node)).into()
        })
    }

    /// The ring as the target node walks it, in ring order.
    pub(super) async fn ring(&self) -> Result<RingJson> {
        self.get(&self.target, "/v1/ring").await
    }
}
