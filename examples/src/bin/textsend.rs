//! textsend — the seed document's demo: each line of standard input goes to
//! the node its hash maps to, and that node prints it.
//!
//! ```sh
//! cargo run -p chordal-examples --bin textsend -- 4     # a 4-node ring
//! ```
//!
//! It starts an in-process ring on loopback, prints each node's id, then
//! sends every line read from stdin (key = the line itself) through node 0.
//! Each node's application prints what reached it:
//! `<node id> got: <line>`.

use anyhow::{Context, Result};
use chordal_node::local::{LocalRing, quick};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> Result<()> {
    let nodes: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().context("the argument is the number of nodes")?,
        None => 4,
    };
    let ring = LocalRing::start_settled(nodes.max(1), quick(), Duration::from_secs(20))
        .await
        .context("starting the ring")?
        .context("the ring did not settle")?;
    // Every node's application prints what it receives; one printer task
    // keeps the lines whole.
    let (print_tx, mut print_rx) = mpsc::unbounded_channel::<String>();
    for node in &ring.nodes {
        println!("node {} at {}", node.ids()[0].to_hex(), node.addr());
        let mut inbox = node.messages().context("inbox already taken")?;
        let (me, print) = (node.ids()[0].to_hex(), print_tx.clone());
        tokio::spawn(async move {
            while let Some(msg) = inbox.next().await {
                let line = String::from_utf8_lossy(&msg.payload).into_owned();
                let _ = print.send(format!("{me} got: {line}"));
            }
        });
    }
    drop(print_tx);
    let printer = tokio::spawn(async move {
        while let Some(line) = print_rx.recv().await {
            println!("{line}");
        }
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let bytes = line.clone().into_bytes();
        // One at a time, each acknowledged by its owner's application.
        ring.nodes[0]
            .send(bytes.clone(), bytes)
            .await
            .with_context(|| format!("sending {line:?}"))?;
    }
    ring.leave_all().await;
    printer.await?;
    Ok(())
}
