//! Redis Cluster's view of the ring: `CLUSTER SLOTS`, `CLUSTER NODES`,
//! `CLUSTER KEYSLOT`, `CLUSTER INFO`, `CLUSTER MYID`.
//!
//! A key's id carries its Redis hash slot in its top 14 bits
//! (`chordal_core::Id::of_key`), so the keys of a slot lie on one arc of
//! the ring and a slot has one owner: the node responsible for the arc's
//! first id (a node id inside the arc splits it; the keys past the split
//! are forwarded, as any request to a node that does not own its key is).
//! So a node's first slot in the map is never split: clients that pick
//! one slot per node for their keys, as `redis-benchmark --cluster` picks
//! each node's first, reach the owner with every key (the middle, as
//! before 2026-12-08, gave each node the slot its predecessor splits,
//! and redis-benchmark's keys of such a slot went to the wrong side about
//! one time in three). A
//! cluster-aware client (`redis-cli -c`, `redis-benchmark --cluster`,
//! redis-py's `RedisCluster`) asks once and then sends each key to its
//! owner, which answers without a forward. Every node still answers every
//! key, so a client with a stale map is slow, never wrong.
//!
//! A "Redis node" here is a process: its id is the lowest id of its
//! virtual nodes (40 hex digits, like Redis's), its address the Redis
//! address it announced in its Hello. A process whose Redis address this
//! node does not know (it serves none, or never connected) is replaced by
//! this node for its slots, which forwards.

use crate::reply::Reply;
use bytes::Bytes;
use chordal_core::{Id, NodeRef, SLOTS};
use chordal_node::Node;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Most processes asked to connect (so that they say their Redis address)
/// by one `CLUSTER` command.
const MAX_PROBES: usize = 64;
/// How long those probes may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Most vnodes a walk of a ring without one-hop membership collects.
const MAX_WALK: usize = 4096;

/// One Redis node: a process of the ring that serves the Redis protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    /// The lowest id of its virtual nodes.
    pub id: Id,
    /// Its peer address (how the ring knows it).
    pub peer: SocketAddr,
    /// Its Redis protocol address.
    pub resp: SocketAddr,
}

/// Consecutive slots with one owner and the same replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotRange {
    /// First slot.
    pub first: u16,
    /// Last slot, included.
    pub last: u16,
    /// Index of the owner in [`SlotMap::processes`].
    pub owner: usize,
    /// Indexes of the processes holding replicas, nearest first.
    pub replicas: Vec<usize>,
}

/// Which process owns each hash slot, as `CLUSTER SLOTS` says it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotMap {
    /// Every process named, this one included.
    pub processes: Vec<Process>,
    /// Every slot, in order, in ranges.
    pub ranges: Vec<SlotRange>,
    /// Index of this process.
    pub me: usize,
}

/// Builds the slot map from every member vnode (any order): `me` is this
/// process's primary vnode, `resp_of` the Redis address of each process
/// known to serve one (this process's included), `replicas` the ring's R.
/// A slot whose owner's Redis address is unknown goes to `me`; a replica
/// whose address is unknown is left out.
pub fn slot_map(
    vnodes: &[NodeRef],
    me: NodeRef,
    resp_of: &HashMap<SocketAddr, SocketAddr>,
    replicas: usize,
) -> SlotMap {
    let (me, my_id) = (me.addr, me.id);
    let mut ring: Vec<NodeRef> = vnodes.to_vec();
    ring.sort_by_key(|n| n.id);
    ring.dedup_by_key(|n| n.id);
    // Processes: lowest vnode id first seen wins (the ring is sorted).
    let mut processes: Vec<Process> = Vec::new();
    let mut index: HashMap<SocketAddr, usize> = HashMap::new();
    for n in &ring {
        if let (None, Some(resp)) = (index.get(&n.addr), resp_of.get(&n.addr)) {
            index.insert(n.addr, processes.len());
            processes.push(Process {
                id: n.id,
                peer: n.addr,
                resp: *resp,
            });
        }
    }
    let me_index = match index.get(&me) {
        Some(i) => *i,
        None => {
            // Not a member yet (joining), or without a vnode: still named.
            processes.push(Process {
                id: my_id,
                peer: me,
                resp: resp_of.get(&me).copied().unwrap_or(me),
            });
            index.insert(me, processes.len() - 1);
            processes.len() - 1
        }
    };
    let mut ranges: Vec<SlotRange> = Vec::new();
    for slot in 0..SLOTS {
        let (owner, reps) = if ring.is_empty() {
            (me_index, Vec::new())
        } else {
            let first = Id::slot_start(slot);
            let at = ring.partition_point(|n| n.id < first) % ring.len();
            let owner_addr = ring[at].addr;
            let owner = index.get(&owner_addr).copied().unwrap_or(me_index);
            // The next distinct processes clockwise hold the replicas.
            let mut seen = vec![owner_addr];
            let mut reps = Vec::new();
            for k in 1..ring.len() {
                if seen.len() >= replicas {
                    break;
                }
                let n = ring[(at + k) % ring.len()];
                if seen.contains(&n.addr) {
                    continue;
                }
                seen.push(n.addr);
                if let Some(&i) = index.get(&n.addr)
                    && i != owner
                    && !reps.contains(&i)
                {
                    reps.push(i);
                }
            }
            (owner, reps)
        };
        match ranges.last_mut() {
            Some(r) if r.owner == owner && r.replicas == reps => r.last = slot,
            _ => ranges.push(SlotRange {
                first: slot,
                last: slot,
                owner,
                replicas: reps,
            }),
        }
    }
    SlotMap {
        processes,
        ranges,
        me: me_index,
    }
}

impl SlotMap {
    /// `CLUSTER SLOTS`: per range, its first and last slot, then the owner
    /// and the replicas as `[ip, port, id]`.
    pub fn slots_reply(&self) -> Reply {
        let node = |i: usize| {
            let p = &self.processes[i];
            Reply::Array(vec![
                Reply::text(p.resp.ip().to_string()),
                Reply::Integer(i64::from(p.resp.port())),
                Reply::text(p.id.to_hex()),
            ])
        };
        Reply::Array(
            self.ranges
                .iter()
                .map(|r| {
                    let mut entry = vec![
                        Reply::Integer(i64::from(r.first)),
                        Reply::Integer(i64::from(r.last)),
                        node(r.owner),
                    ];
                    entry.extend(r.replicas.iter().map(|&i| node(i)));
                    Reply::Array(entry)
                })
                .collect(),
        )
    }

    /// `CLUSTER NODES`: one line per process, `id ip:port@cport flags
    /// master ping pong epoch link slots...`; every process is a master
    /// (replicas are per range here, not per process).
    pub fn nodes_text(&self) -> String {
        let mut out = String::new();
        for (i, p) in self.processes.iter().enumerate() {
            let flags = if i == self.me {
                "myself,master"
            } else {
                "master"
            };
            out.push_str(&format!(
                "{} {}:{}@{} {flags} - 0 0 0 connected",
                p.id.to_hex(),
                p.resp.ip(),
                p.resp.port(),
                p.peer.port()
            ));
            for r in self.ranges.iter().filter(|r| r.owner == i) {
                if r.first == r.last {
                    out.push_str(&format!(" {}", r.first));
                } else {
                    out.push_str(&format!(" {}-{}", r.first, r.last));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// Every member vnode this node knows: the one-hop membership, or a walk
/// of the ring under Chord routing.
async fn members(node: &Node) -> Result<Vec<NodeRef>, chordal_node::Error> {
    let members = node.membership_entries().await?;
    if !members.is_empty() {
        return Ok(members);
    }
    Ok(node
        .walk_ring(MAX_WALK)
        .await?
        .into_iter()
        .map(|m| m.node)
        .collect())
}

/// The slot map as this node sees it now. Processes whose Redis address
/// is not known yet are asked something first (a connection brings their
/// Hello), at most 64 of them for at most a second.
pub async fn current(node: &Node) -> Result<SlotMap, chordal_node::Error> {
    let vnodes = members(node).await?;
    let mut first: HashMap<SocketAddr, NodeRef> = HashMap::new();
    for n in &vnodes {
        first.entry(n.addr).or_insert(*n);
    }
    first.entry(node.addr()).or_insert(node.me());
    let addrs: Vec<SocketAddr> = first.keys().copied().collect();
    let mut infos = node.peer_infos(addrs.clone()).await?;
    let unknown: Vec<NodeRef> = addrs
        .iter()
        .zip(&infos)
        .filter(|(a, i)| i.resp.is_none() && **a != node.addr())
        .map(|(a, _)| first[a])
        .take(MAX_PROBES)
        .collect();
    if !unknown.is_empty() {
        let probes = unknown.into_iter().map(|n| node.neighbors_of(n));
        let _ = tokio::time::timeout(PROBE_TIMEOUT, futures_util::future::join_all(probes)).await;
        infos = node.peer_infos(addrs.clone()).await?;
    }
    let resp_of: HashMap<SocketAddr, SocketAddr> = addrs
        .iter()
        .zip(&infos)
        .filter_map(|(a, i)| i.resp.map(|r| (*a, r)))
        .collect();
    Ok(slot_map(&vnodes, node.me(), &resp_of, node.replicas()))
}

/// `CLUSTER <subcommand> ...`.
pub async fn run(node: &Node, args: &[Bytes]) -> Reply {
    let sub = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    match (sub.as_str(), args.len() - 1) {
        ("keyslot", 1) => Reply::Integer(i64::from(chordal_core::slot_of(&args[1]))),
        ("slots" | "nodes" | "info" | "myid", 0) => match current(node).await {
            Err(e) => Reply::err(format!("cannot see the ring: {e}")),
            Ok(map) => match sub.as_str() {
                "slots" => map.slots_reply(),
                "nodes" => Reply::text(map.nodes_text()),
                "myid" => Reply::text(map.processes[map.me].id.to_hex()),
                _ => Reply::text(format!(
                    "cluster_enabled:1\r\ncluster_state:ok\r\ncluster_slots_assigned:{SLOTS}\r\ncluster_slots_ok:{SLOTS}\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:{}\r\ncluster_size:{}\r\ncluster_current_epoch:0\r\ncluster_my_epoch:0\r\n",
                    map.processes.len(),
                    map.processes
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| map.ranges.iter().any(|r| r.owner == *i))
                        .count(),
                )),
            },
        },
        ("keyslot" | "slots" | "nodes" | "info" | "myid", _) => Reply::err(format!(
            "wrong number of arguments for 'cluster|{sub}' command"
        )),
        _ => Reply::err(format!(
            "unknown subcommand '{sub}' of CLUSTER: this node answers KEYSLOT, SLOTS, NODES, INFO and MYID (the ring moves slots itself)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn vnode(slot: u16, port: u16) -> NodeRef {
        NodeRef::new(Id::slot_middle(slot), addr(port))
    }

    /// Process `port`'s own vnode, as its `Node::me` says.
    fn me(port: u16) -> NodeRef {
        NodeRef::new(Id::hash(&port.to_be_bytes()), addr(port))
    }

    fn resp_all(ports: &[u16]) -> HashMap<SocketAddr, SocketAddr> {
        ports.iter().map(|p| (addr(*p), addr(p + 1000))).collect()
    }

    /// The owner of each slot in the map is the node responsible for
    /// the slot's first id.
    fn owner_of(map: &SlotMap, slot: u16) -> &Process {
        let r = map
            .ranges
            .iter()
            .find(|r| r.first <= slot && slot <= r.last)
            .expect("every slot is covered");
        &map.processes[r.owner]
    }

    #[test]
    fn every_slot_goes_to_the_successor_of_its_first_id() {
        // Three processes at slots 1000, 9000 and 16000 (the middles).
        let vnodes = [vnode(1000, 1), vnode(9000, 2), vnode(16000, 3)];
        let map = slot_map(&vnodes, me(1), &resp_all(&[1, 2, 3]), 3);
        assert_eq!(map.ranges.len(), 4, "{:?}", map.ranges);
        assert_eq!(map.ranges[0].first, 0);
        assert_eq!(map.ranges.last().unwrap().last, SLOTS - 1);
        assert_eq!(owner_of(&map, 0).peer, addr(1));
        assert_eq!(owner_of(&map, 1000).peer, addr(1));
        assert_eq!(owner_of(&map, 1001).peer, addr(2));
        assert_eq!(owner_of(&map, 9000).peer, addr(2));
        assert_eq!(owner_of(&map, 9001).peer, addr(3));
        // Past the last node: around to the first.
        assert_eq!(owner_of(&map, 16001).peer, addr(1));
        // Named by their Redis addresses, with their replicas after them.
        assert_eq!(owner_of(&map, 5000).resp, addr(1002));
        let r = &map.ranges[1];
        let reps: Vec<SocketAddr> = r.replicas.iter().map(|&i| map.processes[i].peer).collect();
        assert_eq!(reps, vec![addr(3), addr(1)]);
        assert_eq!(map.processes[map.me].peer, addr(1));
    }

    #[test]
    fn a_process_id_is_its_lowest_vnode_and_replicas_are_other_processes() {
        // Process 1 has two vnodes side by side: its replicas skip itself.
        let vnodes = [vnode(100, 1), vnode(200, 1), vnode(300, 2), vnode(400, 3)];
        let map = slot_map(&vnodes, me(2), &resp_all(&[1, 2, 3]), 2);
        let one = map.processes.iter().find(|p| p.peer == addr(1)).unwrap();
        assert_eq!(one.id, Id::slot_middle(100));
        let r = map
            .ranges
            .iter()
            .find(|r| r.first <= 150 && 150 <= r.last)
            .unwrap();
        assert_eq!(map.processes[r.owner].peer, addr(1));
        assert_eq!(r.replicas.len(), 1);
        assert_eq!(map.processes[r.replicas[0]].peer, addr(2));
        // Slots of one owner with the same replicas are one range.
        assert!(
            map.ranges
                .windows(2)
                .all(|w| w[0].owner != w[1].owner || w[0].replicas != w[1].replicas)
        );
    }

    #[test]
    fn an_owner_without_a_known_redis_address_is_replaced_by_this_node() {
        let vnodes = [vnode(1000, 1), vnode(9000, 2)];
        // Process 2 never said its Redis address.
        let map = slot_map(&vnodes, me(1), &resp_all(&[1]), 2);
        assert_eq!(owner_of(&map, 5000).peer, addr(1));
        assert_eq!(map.processes.len(), 1);
        assert!(map.ranges.iter().all(|r| r.replicas.is_empty()));
        assert_eq!(map.ranges.len(), 1, "one range for all: {:?}", map.ranges);
    }

    #[test]
    fn a_node_not_in_the_membership_yet_is_named_by_its_own_id() {
        // Joining: the others are members, this process not yet.
        let vnodes = [vnode(1000, 1), vnode(9000, 2)];
        let map = slot_map(&vnodes, me(3), &resp_all(&[1, 2, 3]), 2);
        let mine = &map.processes[map.me];
        assert_eq!(
            (mine.id, mine.peer, mine.resp),
            (me(3).id, addr(3), addr(1003))
        );
        assert!(
            map.ranges.iter().all(|r| r.owner != map.me),
            "it owns no slot yet"
        );
    }

    #[test]
    fn nodes_text_is_what_redis_benchmark_parses() {
        let vnodes = [vnode(1000, 1), vnode(9000, 2)];
        let map = slot_map(&vnodes, me(2), &resp_all(&[1, 2]), 2);
        let text = map.nodes_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        for line in &lines {
            let fields: Vec<&str> = line.split(' ').collect();
            assert_eq!(fields[0].len(), 40, "{line}");
            assert!(fields[2].ends_with("master"), "{line}");
            assert_eq!(fields[3], "-");
            assert!(fields.len() > 8, "a slot range after 8 fields: {line}");
        }
        let mine = lines.iter().find(|l| l.contains("myself")).unwrap();
        assert!(mine.contains("127.0.0.1:1002@2"), "{mine}");
        assert!(mine.contains(" 1001-9000"), "{mine}");
    }
}
