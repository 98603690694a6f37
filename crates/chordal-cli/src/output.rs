//! Human-readable renderings of API answers.

use chordal_http::{LocateJson, NodeJson, NodeStatusJson, RingJson};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use std::fmt::Write;

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

fn node(n: &NodeJson) -> String {
    match &n.api {
        Some(api) => format!("{}  {} (api {})", short(&n.id), n.addr, api),
        None => format!("{}  {}", short(&n.id), n.addr),
    }
}

pub fn locate(l: &LocateJson) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "key       {}", l.key);
    let _ = writeln!(s, "key id    {}", l.key_id);
    let _ = writeln!(s, "owner     {}", node(&l.owner));
    for (i, r) in l.replicas.iter().enumerate() {
        let label = if i == 0 { "replicas" } else { "" };
        let _ = writeln!(s, "{label:<9} {}", node(r));
    }
    let _ = writeln!(s, "hops      {}", l.hops);
    s
}

pub fn info(st: &NodeStatusJson) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "id           {}", st.id);
    let _ = writeln!(s, "addr         {}", st.addr);
    let _ = writeln!(s, "api          {}", st.api.as_deref().unwrap_or("-"));
    let _ = writeln!(s, "cluster      {}", st.cluster);
    let pred = st
        .predecessor
        .as_ref()
        .map(node)
        .unwrap_or_else(|| "(none)".into());
    let _ = writeln!(s, "predecessor  {pred}");
    let _ = writeln!(s, "successors");
    let mut t = Table::new();
    t.load_style(UTF8_BORDERS_ONLY)
        .set_header(["#", "id", "addr", "api"]);
    for (i, n) in st.successors.iter().enumerate() {
        t.add_row([
            i.to_string(),
            short(&n.id).to_string(),
            n.addr.clone(),
            n.api.clone().unwrap_or_default(),
        ]);
    }
    let _ = writeln!(s, "{t}");
    s.push_str(&fingers(st));
    if st.vnodes.len() > 1 {
        let _ = writeln!(
            s,
            "virtual nodes: {}",
            st.vnodes
                .iter()
                .map(|v| short(&v.id))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    s
}

/// The finger table: one row per distinct finger (a run of equal entries).
pub fn fingers(st: &NodeStatusJson) -> String {
    let mut t = Table::new();
    t.load_style(UTF8_BORDERS_ONLY)
        .set_header(["finger i", "start (n + 2^i)", "node", "addr"]);
    for f in &st.fingers {
        t.add_row([
            f.index.to_string(),
            short(&f.start).to_string(),
            short(&f.node.id).to_string(),
            f.node.addr.clone(),
        ]);
    }
    format!("fingers ({} distinct)\n{t}\n", st.fingers.len())
}

pub fn ring(r: &RingJson) -> String {
    let mut t = Table::new();
    t.load_style(UTF8_BORDERS_ONLY)
        .set_header(["#", "id", "addr", "api", "records"]);
    for (i, n) in r.nodes.iter().enumerate() {
        t.add_row([
            i.to_string(),
            n.id.clone(),
            n.addr.clone(),
            n.api.clone().unwrap_or_default(),
            n.keys_stored.to_string(),
        ]);
    }
    let mut out = format!(
        "{t}\n{} nodes (records: every copy a node stores — its own keys, its replicas — and tombstones not yet collected)\n",
        r.count
    );
    for d in &r.down {
        let how = match d.left {
            Some(true) => "left gracefully",
            Some(false) => "stopped answering",
            None => "gone (the ring's news)",
        };
        out.push_str(&format!(
            "down: {} {} {how} {} s ago\n",
            &d.id[..8.min(d.id.len())],
            d.addr,
            d.seconds_ago
        ));
    }
    if r.problems.is_empty() {
        out.push_str("no problems seen\n");
    } else {
        out.push_str(&format!("{} problem(s):\n", r.problems.len()));
        for p in &r.problems {
            out.push_str(&format!("  - {p}\n"));
        }
    }
    out
}
