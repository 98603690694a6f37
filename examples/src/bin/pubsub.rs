//! pubsub — a chat room over Chordal's pub/sub: every participant is a ring
//! member, a room is the topic `chat/<room>`, and each line you type is
//! published there.
//!
//! ```sh
//! cargo run -p chordal-examples --bin pubsub -- alice                 # creates a ring
//! cargo run -p chordal-examples --bin pubsub -- bob --join ADDR       # ADDR from alice's first line
//! ```
//!
//! Output: first `node <peer address> <id>`, then `joined room <room>`
//! once subscribed, then every message of the room as `[<room>] <name>:
//! <text>` (your own included, in the order each participant sent them).
//! Type `/room NAME` to change rooms; end of input leaves the ring.

use anyhow::{Context, Result};
use chordal_node::local::quick;
use chordal_node::{Node, Subscription};
use clap::Parser;
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Parser)]
#[command(name = "pubsub", about = "A chat room on a Chordal ring")]
struct Args {
    /// Your name in the room.
    name: String,
    /// Peer address of any participant; without it, a new ring starts.
    #[arg(long)]
    join: Option<String>,
    #[arg(long, default_value = "lobby")]
    room: String,
    /// Peer address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
}

fn topic(room: &str) -> Vec<u8> {
    format!("chat/{room}").into_bytes()
}

async fn enter(node: &Node, room: &str) -> Result<Subscription> {
    let sub = node
        .subscribe(topic(room))
        .await
        .with_context(|| format!("joining room {room}"))?;
    println!("joined room {room}");
    Ok(sub)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let node = quick()
        .listen(args.listen)
        .seeds(args.join.into_iter().collect())
        .start()
        .await
        .context("starting the node")?;
    println!("node {} {}", node.addr(), node.ids()[0].to_hex());
    let mut room = args.room;
    let mut sub = enter(&node, &room).await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                if let Some(next) = line.strip_prefix("/room ") {
                    room = next.trim().to_string();
                    // Dropping the old stream ends that subscription.
                    sub = enter(&node, &room).await?;
                    continue;
                }
                let message = format!("{}: {line}", args.name);
                if let Err(e) = node.publish(topic(&room), message.into_bytes()).await {
                    eprintln!("not sent ({e}); try again");
                }
            }
            p = sub.next() => {
                let Some(p) = p else { break };
                println!("[{room}] {}", String::from_utf8_lossy(&p.payload));
            }
        }
    }
    node.leave().await;
    Ok(())
}
