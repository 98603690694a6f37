//! `chordal`: run Chord nodes, look at them, and measure them.
//!
//! Exit codes: 0 success, 1 operation failed, 2 usage error, 3 node
//! unreachable or timed out.

mod bench;
mod ca;
mod client;
mod config;
mod gateway;
mod member;
mod ops;
mod output;
mod repl;
mod sim;
mod topics;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: a node allocates and frees many
/// small blocks per request (see docs/benchmarks.md, "the allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "chordal", version, about = "A Chord distributed hash table")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node (creates a ring, or joins one with --join).
    Node(Box<member::NodeArgs>),
    /// Check a node's settings file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run N nodes in this process on loopback: the zero-setup way to try Chordal.
    Cluster(member::ClusterArgs),
    /// Route each client's requests to the service beside the node owning
    /// it, failing over to the replica holders (needs nodes with --service).
    Gateway(gateway::GatewayArgs),
    /// Store a value under a key (from the argument, or a file).
    Put {
        key: String,
        /// The value; give --file instead to read it from a file.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        value: Option<String>,
        /// Read the value from this file (`-`: standard input).
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// The value expires after this many seconds.
        #[arg(long, value_name = "S")]
        ttl: Option<u64>,
        #[command(flatten)]
        write: client::WriteFlags,
        #[command(flatten)]
        target: Target,
    },
    /// Print a key's value (raw bytes); exit 1 if not found.
    Get {
        key: String,
        /// Read from one copy (the owner's, default), a quorum or all
        /// copies: newest wins, stale copies are repaired.
        #[arg(long, value_parser = ["one", "quorum", "all"])]
        consistency: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a key; exit 1 if it does not exist.
    Del {
        key: String,
        /// Only if the key's current version is V; exit 1 otherwise.
        #[arg(long, value_name = "V")]
        if_version: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Publish a message on a topic (from the argument, or a file).
    Pub {
        topic: String,
        /// The message; give --file instead to read it from a file.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        message: Option<String>,
        /// Read the message from this file (`-`: standard input).
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// Print the messages published on a topic, one per line, as they come.
    Sub {
        topic: String,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
    /// Where a key lives: its id, owner, replicas and the hops it took.
    Locate {
        key: String,
        /// Use an iterative lookup instead of the default recursive one.
        #[arg(long)]
        iterative: bool,
        #[command(flatten)]
        target: Target,
    },
    /// A node's routing state: predecessor, successor list, fingers.
    Info {
        #[command(flatten)]
        target: Target,
    },
    /// Walk the ring: every node, from the queried one along successors
    /// (ring order, starting there).
    Ring {
        #[command(flatten)]
        target: Target,
    },
    /// Is the node at --node up and in a ring? `GET /v1/health`: exit 0
    /// when it is (also "degraded": writes refused for storage, reads
    /// served), 3 when it is unreachable or has not joined. For container
    /// health checks and scripts.
    Health {
        #[command(flatten)]
        target: Target,
    },
    /// One screen on the ring's health: members and their releases, ranges
    /// under R, storage, the ring-size estimate.
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Write every record of the ring (values, versions, expiries,
    /// tombstones) to FILE, range by range from each range's owner.
    Backup {
        /// The backup file (JSON lines; written as FILE.partial, renamed
        /// when complete).
        #[arg(long)]
        out: std::path::PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Put a backup's records back into the ring; newest version wins.
    Restore {
        /// The backup file `chordal backup` wrote.
        #[arg(long = "in")]
        input: std::path::PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Make the node at --node leave the ring gracefully (it hands its data
    /// over, then its process stops); needs the admin role under tokens.
    Leave {
        /// Return at once instead of waiting until the node is gone.
        #[arg(long)]
        no_wait: bool,
        /// Wait at most this many seconds for the node to be gone.
        #[arg(long, default_value_t = 180)]
        wait: u64,
        #[command(flatten)]
        target: Target,
    },
    /// Interactive shell on a node.
    Repl {
        #[command(flatten)]
        target: Target,
    },
    /// Run the Chord papers' experiments in the simulator.
    #[command(subcommand)]
    Sim(sim::SimCommand),
    /// Measure lookups, healing and idle cost on an in-process ring.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// The cluster's certificates: a CA, and members' and clients'
    /// certificates signed by it.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Print a completion script for SHELL, e.g.
    /// `source <(chordal completions zsh)` (docs/cli.md).
    Completions {
        /// bash, elvish, fish, powershell or zsh.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) of chordal and of every subcommand:
    /// `chordal man | man -l -`, or `chordal man --dir DIR` writes
    /// chordal.1, chordal-node.1, … there.
    Man {
        /// Write one page per command into this directory instead.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

/// Which node to talk to, and how to print.
#[derive(Args, Clone)]
pub struct Target {
    /// API address of the node: HOST:PORT, http://HOST:PORT, or
    /// https://HOST:PORT for a node serving --api-tls.
    #[arg(long, env = "CHORDAL_NODE", default_value = "127.0.0.1:8000")]
    node: client::NodeUrl,
    /// Bearer token for a node that demands one (`--api-tokens`).
    #[arg(long, env = "CHORDAL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Trust this CA (PEM, e.g. the cluster's ca.crt) for an https:// node;
    /// nothing else is trusted.
    #[arg(long, env = "CHORDAL_CACERT")]
    cacert: Option<std::path::PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// An error with the exit code it deserves.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The operation ran and failed (exit 1).
    #[error("{0}")]
    Failed(String),
    /// The node could not be reached or did not answer in time (exit 3).
    #[error("{0}")]
    Unreachable(String),
    /// The settings are wrong (exit 2).
    #[error("{0}")]
    Usage(String),
}

/// `chordal config check FILE`: prints the effective settings, or fails
/// (exit 2) where `chordal node --config FILE` would refuse to start.
fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    let usage = |e: anyhow::Error| CliError::Usage(format!("{e:#}"));
    let (text, node) = config::check(Cli::command(), file).map_err(usage)?;
    let args = member::NodeArgs::from_arg_matches(&node).map_err(|e| usage(e.into()))?;
    args.validate().map_err(usage)?;
    print!("{text}");
    Ok(())
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the settings `chordal node --config FILE` would run with (the
    /// file under this environment), each with where it came from; exit 2
    /// on a bad file, as the node would.
    Check {
        /// The settings file (TOML, or VoidPhone .ini).
        file: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    chordal_tls::install_ring_provider();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let matches = Cli::command().get_matches_from(argv.clone());
    // A settings file fills in what neither flags nor the environment set.
    let matches = match config::merge(Cli::command(), argv, matches) {
        Ok((matches, _)) => matches,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let log_format = match &cli.command {
        Command::Node(args) => args.log_format,
        _ => LogFormat::Text,
    };
    init_tracing(log_format);
    let threads = match &cli.command {
        Command::Node(args) => args.threads,
        _ => 0,
    };
    let mut builder = match threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = match cli.command {
        Command::Node(args) => runtime.block_on(member::run_node(*args)),
        Command::Cluster(args) => runtime.block_on(member::run_cluster(args)),
        Command::Gateway(args) => runtime.block_on(gateway::run(args)),
        Command::Locate {
            key,
            iterative,
            target,
        } => runtime.block_on(client::locate(&target, &key, iterative)),
        Command::Put {
            key,
            value,
            file,
            ttl,
            write,
            target,
        } => runtime.block_on(async {
            let bytes = read_arg_or_file(value, file).await?;
            client::put(&target, &key, bytes, ttl, &write).await
        }),
        Command::Pub {
            topic,
            message,
            file,
            target,
        } => runtime.block_on(async {
            let bytes = read_arg_or_file(message, file).await?;
            topics::publish(&target, &topic, bytes).await
        }),
        Command::Sub {
            topic,
            count,
            target,
        } => runtime.block_on(topics::subscribe(&target, &topic, count)),
        Command::Get {
            key,
            consistency,
            target,
        } => runtime.block_on(client::get(&target, &key, consistency.as_deref())),
        Command::Del {
            key,
            if_version,
            target,
        } => {
            let flags = client::WriteFlags {
                if_absent: false,
                if_version,
            };
            runtime.block_on(client::del(&target, &key, &flags))
        }
        Command::Info { target } => runtime.block_on(client::info(&target)),
        Command::Ring { target } => runtime.block_on(client::ring(&target)),
        Command::Status { target } => runtime.block_on(ops::status(&target)),
        Command::Health { target } => runtime.block_on(ops::health(&target)),
        Command::Backup { out, target } => runtime.block_on(ops::backup(&target, &out)),
        Command::Restore { input, target } => runtime.block_on(ops::restore(&target, &input)),
        Command::Leave { .. } if node_defaulted(&matches, "leave") => Err(CliError::Usage(
            "leave takes a node out of the ring: name it with --node (or CHORDAL_NODE)".into(),
        )
        .into()),
        Command::Leave {
            no_wait,
            wait,
            target,
        } => runtime.block_on(ops::leave(
            &target,
            no_wait,
            std::time::Duration::from_secs(wait),
        )),
        Command::Repl { target } => repl::run(&runtime, &target),
        Command::Bench(cmd) => bench::run_blocking(cmd),
        Command::Sim(cmd) => sim::run(cmd),
        Command::Ca(cmd) => ca::run(cmd),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "chordal", &mut script);
            print_all(&script)
        }
        Command::Man { dir } => manual(dir.as_deref()),
        Command::Config(ConfigCommand::Check { file }) => check_config(&file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            match e.downcast_ref::<CliError>() {
                Some(CliError::Unreachable(_)) => ExitCode::from(3),
                Some(CliError::Usage(_)) => ExitCode::from(2),
                _ => ExitCode::from(1),
            }
        }
    }
}

/// Did subcommand `name` get its --node from the default rather than from
/// the user (a flag, the environment, a settings file)? A command that
/// changes the ring must not fall back on 127.0.0.1:8000.
fn node_defaulted(matches: &clap::ArgMatches, name: &str) -> bool {
    matches
        .subcommand_matches(name)
        .and_then(|m| m.value_source("node"))
        .is_some_and(|s| s == clap::parser::ValueSource::DefaultValue)
}

/// The bytes of a value or message given as an argument or a file (clap
/// makes sure there is exactly one).
async fn read_arg_or_file(
    arg: Option<String>,
    file: Option<std::path::PathBuf>,
) -> anyhow::Result<Vec<u8>> {
    match (arg, file) {
        (Some(v), _) => Ok(v.into_bytes()),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut bytes = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut bytes)
                .await
                .map_err(|e| CliError::Failed(format!("cannot read standard input: {e}")))?;
            Ok(bytes)
        }
        (None, Some(path)) => Ok(tokio::fs::read(&path)
            .await
            .map_err(|e| CliError::Failed(format!("cannot read {}: {e}", path.display())))?),
        (None, None) => Err(CliError::Failed("give a value or --file".into()).into()),
    }
}

/// How log lines are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`,
    /// `fields`), for log collectors.
    Json,
}

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings).
fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    // Colours only on a terminal: a log redirected to a file or a pipe
    // gets plain text, not escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// `chordal man`: the manual page of chordal and its subcommands, to
/// standard output (one after the other) or one file each into `dir`.
fn manual(dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let command = Cli::command();
    // Each subcommand (and theirs) named as man names them: chordal-node.
    let mut pages: Vec<(String, clap::Command)> = Vec::new();
    fn walk(name: String, cmd: &clap::Command, pages: &mut Vec<(String, clap::Command)>) {
        let page = cmd.clone().name(name.clone());
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            walk(format!("{name}-{}", sub.get_name()), sub, pages);
        }
        pages.push((name, page));
    }
    walk("chordal".into(), &command, &mut pages);
    pages.reverse();
    for (name, page) in pages {
        let mut roff = Vec::new();
        clap_mangen::Man::new(page).render(&mut roff)?;
        match dir {
            Some(dir) => {
                let path = dir.join(format!("{name}.1"));
                std::fs::write(&path, roff)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            None => print_all(&roff)?,
        }
    }
    Ok(())
}

/// Writes `bytes` to standard output; a reader that stopped early (`| head`)
/// is no error.
fn print_all(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
