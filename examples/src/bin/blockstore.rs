//! blockstore — a distributed file store in the spirit of CFS/DHash:
//! files cut into self-certifying blocks named by their SHA-1, plus a
//! manifest whose hash is the file's root (see `chordal_examples::blockstore`).
//!
//! ```sh
//! cargo run -p chordal-examples --bin blockstore -- demo [FILE]
//! ```
//! starts a 6-node ring in this process, stores FILE (or 1 MiB of generated
//! bytes), kills the nodes holding the manifest and the first block, and
//! fetches the file back through a survivor.
//!
//! Against a running ring (say `chordal cluster`, peers from 127.0.0.1:7000):
//! ```sh
//! cargo run -p chordal-examples --bin blockstore -- put FILE            # prints the root
//! cargo run -p chordal-examples --bin blockstore -- get ROOT OUT
//! ```

use anyhow::{Context, Result, bail};
use chordal_examples::blockstore::{self, DEFAULT_BLOCK_SIZE};
use chordal_node::Id;
use chordal_node::local::{Check, LocalRing, quick};
use chordal_node::{Client, ClientConfig};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "blockstore",
    about = "A CFS-style file store on a Chordal ring"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Store a file; print its root.
    Put {
        file: PathBuf,
        /// Block size in bytes.
        #[arg(long, default_value_t = DEFAULT_BLOCK_SIZE)]
        block_size: usize,
        /// Peer address of any ring member.
        #[arg(long, default_value = "127.0.0.1:7000")]
        join: String,
    },
    /// Fetch the file named by ROOT into OUT, checking every block.
    Get {
        root: String,
        out: PathBuf,
        #[arg(long, default_value = "127.0.0.1:7000")]
        join: String,
    },
    /// Everything in one process: a 6-node ring, store, kill two nodes, fetch.
    Demo { file: Option<PathBuf> },
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Put {
            file,
            block_size,
            join,
        } => {
            let data =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let client = connect(&join).await?;
            let root = blockstore::put_file(&client, &data, block_size).await?;
            println!("{}", root.to_hex());
        }
        Command::Get { root, out, join } => {
            let root = blockstore::parse_root(&root)?;
            let client = connect(&join).await?;
            let data = blockstore::get_file(&client, &root).await?;
            std::fs::write(&out, &data).with_context(|| format!("writing {}", out.display()))?;
            eprintln!(
                "{} bytes verified and written to {}",
                data.len(),
                out.display()
            );
        }
        Command::Demo { file } => demo(file).await?,
    }
    Ok(())
}

async fn connect(join: &str) -> Result<Client> {
    let config = ClientConfig::new(vec![join.to_string()]);
    Client::connect(config)
        .await
        .with_context(|| format!("connecting to the ring at {join}"))
}

async fn demo(file: Option<PathBuf>) -> Result<()> {
    let data = match file {
        Some(f) => std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?,
        // 1 MiB that does not compress to a few distinct blocks.
        None => (0..1u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect(),
    };
    // The demo kills two nodes right after the file is stored: every
    // block must then be on all R = 3 nodes, not just a majority (W = 2
    // survives one failure at the moment of the acknowledgement, R - 1 only
    // once the last copy has landed a moment later).
    // Without authority: blocks are immutable and self-certifying (a
    // block is checked against its hash on every read), so any copy is
    // as good as the owner's — DHash's design. Two crashes leave some
    // ranges below a majority of their copies, which authority would
    // refuse to decide for.
    let config = quick().core_with(|c| {
        c.write_quorum = Some(c.replicas);
        c.authority = false;
    });
    let ring = LocalRing::start_settled(6, config, Duration::from_secs(20))
        .await?
        .context("the ring did not settle")?;
    // With W = R a write needs R processes in its owner's successor list:
    // wait until every list has filled (writes answer 503
    // quorum_unavailable until then).
    ring.settle(Check::SuccessorLists)
        .await
        .context("the successor lists never filled")?;
    let root = blockstore::put_file(&ring.nodes[0], &data, DEFAULT_BLOCK_SIZE).await?;
    println!("stored {} bytes; root {}", data.len(), root.to_hex());
    // Kill the owners of the manifest and of the first block.
    let first_block = Id::hash(&data[..data.len().min(DEFAULT_BLOCK_SIZE)]);
    let oracle = ring.oracle();
    let mut victims: Vec<usize> = [root, first_block]
        .iter()
        .map(|h| oracle.successor(&Id::of_key(&blockstore::block_key(h))))
        .map(|owner| ring.nodes.iter().position(|n| n.ids()[0] == owner).unwrap())
        .collect();
    victims.dedup();
    if victims.len() < 2 {
        victims.push((victims[0] + 1) % ring.nodes.len());
    }
    for v in &victims {
        ring.nodes[*v].abort().await;
        println!("killed node {}", ring.nodes[*v].ids()[0].to_hex());
    }
    let survivor = (0..ring.nodes.len())
        .find(|i| !victims.contains(i))
        .unwrap();
    // The survivors notice the crashes within a few stabilization rounds;
    // until then reads of the dead owners' keys may be refused (never
    // answered wrongly), so wait for the ring to heal, then read.
    let survivors = LocalRing {
        nodes: (0..ring.nodes.len())
            .filter(|i| !victims.contains(i))
            .map(|i| ring.nodes[i].clone())
            .collect(),
    };
    survivors
        .settle(Check::Neighbours)
        .await
        .context("the ring did not heal")?;
    let back = blockstore::get_file(&ring.nodes[survivor], &root).await?;
    if back != data {
        bail!("fetched file differs from the stored one");
    }
    println!("fetched {} bytes through a survivor: verified", back.len());
    Ok(())
}
