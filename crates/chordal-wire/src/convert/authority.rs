//! Authority's messages: promises, the terms they know, configs.

use super::*;

pub(super) fn known_to_pb(k: &Known) -> pb::KnownPromise {
    pb::KnownPromise {
        start: k.range.start.0.to_vec(),
        end: k.range.end.0.to_vec(),
        term: k.term,
        holder: Some(node_to_pb(&k.holder)),
        config: k.config.iter().map(node_to_pb).collect(),
        settled_term: k.settled.as_ref().map_or(0, |s| s.term),
        settled_holder: k.settled.as_ref().map(|s| node_to_pb(&s.holder)),
        settled_config: k
            .settled
            .as_ref()
            .map_or_else(Vec::new, |s| s.config.iter().map(node_to_pb).collect()),
        settled_pending: k
            .settled
            .as_ref()
            .map_or_else(Vec::new, |s| configs_to_pb(&s.pending)),
    }
}

pub(super) fn configs_to_pb(configs: &[Vec<NodeRef>]) -> Vec<pb::Config> {
    configs
        .iter()
        .map(|c| pb::Config {
            nodes: c.iter().map(node_to_pb).collect(),
        })
        .collect()
}

pub(super) fn configs_from_pb(
    configs: &[pb::Config],
    field: &'static str,
) -> Result<Vec<Vec<NodeRef>>, WireError> {
    if configs.len() > MAX_PENDING {
        return Err(WireError::Invalid(field));
    }
    configs
        .iter()
        .map(|c| nodes_from_pb(&c.nodes, field))
        .collect()
}

pub(super) fn known_from_pb(k: &pb::KnownPromise) -> Result<Known, WireError> {
    let holder = k.holder.as_ref().ok_or(WireError::Missing("holder"))?;
    Ok(Known {
        range: range_from_pb(&k.start, &k.end)?,
        term: k.term,
        holder: node_from_pb(holder, "holder")?,
        config: nodes_from_pb(&k.config, "config")?,
        settled: match &k.settled_holder {
            _ if k.settled_term == 0 => None,
            None => return Err(WireError::Missing("settled_holder")),
            Some(h) => Some(Settled {
                term: k.settled_term,
                holder: node_from_pb(h, "settled_holder")?,
                config: nodes_from_pb(&k.settled_config, "settled_config")?,
                pending: configs_from_pb(&k.settled_pending, "settled_pending")?,
            }),
        },
    })
}

/// A grant carries the promises it replaced in `known`; a refusal the one
/// promise that refused, as `known`'s only entry.
pub(super) fn promise_to_pb(req: u64, answer: &Result<Vec<Known>, Refusal>) -> pb::Promise {
    let mut out = pb::Promise {
        req,
        ..Default::default()
    };
    match answer {
        Ok(known) => {
            out.granted = true;
            out.known = known.iter().map(known_to_pb).collect();
        }
        Err(Refusal::Outdated { promise }) => {
            out.outdated = true;
            out.known = vec![known_to_pb(promise)];
        }
        Err(Refusal::Held { promise, wait }) => {
            out.known = vec![known_to_pb(promise)];
            out.wait_us = wait.as_micros().min(u64::MAX as u128) as u64;
        }
    }
    out
}

pub(super) fn promise_from_pb(p: &pb::Promise) -> Result<Message, WireError> {
    if p.known.len() > MAX_KNOWN {
        return Err(WireError::Invalid("known"));
    }
    let known = p
        .known
        .iter()
        .map(known_from_pb)
        .collect::<Result<Vec<_>, WireError>>()?;
    let answer = if p.granted {
        Ok(known)
    } else {
        let [promise] = <[Known; 1]>::try_from(known).map_err(|_| WireError::Invalid("known"))?;
        let promise = Box::new(promise);
        if p.outdated {
            Err(Refusal::Outdated { promise })
        } else {
            let wait = std::time::Duration::from_micros(p.wait_us);
            Err(Refusal::Held { promise, wait })
        }
    };
    Ok(Message::Promise { req: p.req, answer })
}
