//! The gateway's picture of the ring: members in id order with the
//! service beside each, walked with the native client (the gateway speaks
//! Chord but is not a member), refreshed periodically and after failures.

use axum::http::Uri;
use chordal_core::{Id, NodeRef, replica_set, successor_index};
use chordal_node::{Client, Error};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// One ring member as the gateway sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The (virtual) node: its id decides which clients it owns.
    pub node: NodeRef,
    /// Its service's base URL (`scheme://authority`), if it declared one
    /// that parses.
    pub service: Option<Uri>,
}

/// Members in id order, suspects, and the client that walks the ring.
pub struct RingView {
    client: Client,
    members: RwLock<Arc<Vec<Member>>>,
    /// Processes whose service failed recently, until when.
    suspects: Mutex<HashMap<SocketAddr, Instant>>,
    suspect_for: Duration,
}

impl RingView {
    /// A view of the ring `client` reaches, complete before it returns: a
    /// gateway that served from a partial view would send some clients to
    /// the wrong instance. Complete means every member walked answered
    /// (its service is known) and two walks in a row found the same
    /// members; after `COMPLETE_WITHIN` the view is taken as it is (a ring
    /// with a dead member still listed never gets there), with a warning.
    pub async fn new(client: Client, suspect_for: Duration) -> Result<RingView, Error> {
        const COMPLETE_WITHIN: Duration = Duration::from_secs(10);
        let view = RingView {
            client,
            members: RwLock::new(Arc::new(Vec::new())),
            suspects: Mutex::new(HashMap::new()),
            suspect_for,
        };
        let start = Instant::now();
        let mut last: Option<Vec<Id>> = None;
        loop {
            let all_answered = view.refresh().await?;
            let ids: Vec<Id> = view.members().iter().map(|m| m.node.id).collect();
            if all_answered && last.as_ref() == Some(&ids) {
                break;
            }
            if start.elapsed() > COMPLETE_WITHIN {
                warn!(
                    members = ids.len(),
                    "serving from a ring view that is not settled"
                );
                break;
            }
            last = Some(ids);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(view)
    }

    /// Walks the ring again and learns the services of new members.
    /// Returns whether every member walked answered.
    pub async fn refresh(&self) -> Result<bool, Error> {
        self.client.refresh().await?;
        let mut members = Vec::new();
        let mut all_answered = true;
        for node in self.client.ring() {
            let service = match self.client.service_of(node.addr).await {
                Ok(s) => s.and_then(|url| parse_base(&url)),
                Err(e) => {
                    // Listed but unreachable: a node that just died.
                    debug!(node = %node.addr, error = %e, "member unreachable; left out");
                    all_answered = false;
                    continue;
                }
            };
            members.push(Member { node, service });
        }
        members.sort_by_key(|m| m.node.id);
        *self.members.write().expect("view lock") = Arc::new(members);
        Ok(all_answered)
    }

    /// Every member, in id order.
    pub fn members(&self) -> Arc<Vec<Member>> {
        self.members.read().expect("view lock").clone()
    }

    /// Where to send the client whose key id is `key`: the key's owner,
    /// then the next members on distinct processes (the replica holders)
    /// — `n` in all, those with a service only — healthy ones first, in
    /// ring order, suspects after them.
    pub fn candidates(&self, key: &Id, n: usize) -> Vec<Member> {
        let members = self.members();
        if members.is_empty() {
            return Vec::new();
        }
        // The owner, then where its replicas are (the members after it are
        // its successor list).
        let start = successor_index(&members, key, |m| m.node.id);
        let successors: Vec<NodeRef> = (1..members.len())
            .map(|i| members[(start + i) % members.len()].node)
            .collect();
        let mut picked = vec![members[start].clone()];
        for r in replica_set(&members[start].node, &successors, n) {
            picked.extend(members.iter().find(|m| m.node == r).cloned());
        }
        picked.retain(|m| m.service.is_some());
        let now = Instant::now();
        let suspects = self.suspects.lock().expect("suspects lock");
        let suspect = |m: &Member| suspects.get(&m.node.addr).is_some_and(|until| *until > now);
        let (healthy, doubtful): (Vec<Member>, Vec<Member>) =
            picked.into_iter().partition(|m| !suspect(m));
        healthy.into_iter().chain(doubtful).collect()
    }

    /// The service beside `addr` failed: try others first for a while.
    pub fn suspect(&self, addr: SocketAddr) {
        let mut suspects = self.suspects.lock().expect("suspects lock");
        let now = Instant::now();
        suspects.retain(|_, until| *until > now);
        suspects.insert(addr, now + self.suspect_for);
    }

    /// Refreshes every `every` until the view is dropped elsewhere.
    pub fn spawn_refresher(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(view) = weak.upgrade() else { break };
                if let Err(e) = view.refresh().await {
                    warn!(error = %e, "ring refresh failed; keeping the last view");
                }
            }
        });
    }
}

/// `scheme://authority` of a service URL, if it is an absolute http or
/// https URL.
fn parse_base(url: &str) -> Option<Uri> {
    let uri: Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    format!("{scheme}://{authority}").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls_reduce_to_their_base() {
        assert_eq!(
            parse_base("http://127.0.0.1:9000/ignored?x"),
            Some("http://127.0.0.1:9000".parse().unwrap())
        );
        assert_eq!(parse_base("127.0.0.1:9000"), None);
        assert_eq!(
            parse_base("https://example.org/x"),
            Some("https://example.org".parse().unwrap())
        );
        assert_eq!(parse_base("ftp://example.org"), None);
        assert_eq!(parse_base("not a url"), None);
    }
}
