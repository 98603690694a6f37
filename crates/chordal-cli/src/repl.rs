//! `chordal repl`: an interactive shell on one node, like the interactive
//! nodes of seed 000 (`getloc`, fingers, ...).

use crate::{Target, client};
use anyhow::Result;
use rustyline::error::ReadlineError;

const HELP: &str = "\
commands:
  put KEY VALUE | add KEY VALUE   store VALUE (the rest of the line) under KEY
  get KEY                   print KEY's value
  del KEY                   delete KEY
  locate KEY | getloc KEY   where KEY lives (owner, replicas, hops)
  info                      this node: id, predecessor, successors, fingers
  fingers                   the finger table
  ring                      every node in ring order
  help                      this text
  quit | exit               leave the shell
";

/// Runs the shell until `quit` or end of input. A failed command prints
/// its error and the shell goes on.
pub fn run(runtime: &tokio::runtime::Runtime, target: &Target) -> Result<()> {
    let mut rl = rustyline::DefaultEditor::new()?;
    println!("connected to {} — type help for commands", target.node);
    loop {
        let line = match rl.readline("chordal> ") {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) | Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some((&cmd, args)) = words.split_first() else {
            continue;
        };
        let _ = rl.add_history_entry(line.as_str());
        let result = match (cmd, args) {
            ("quit" | "exit", _) => break,
            ("help", _) => {
                print!("{HELP}");
                Ok(())
            }
            ("put" | "add", [key, _, ..]) => {
                // The value is the rest of the line after the key, spaces kept.
                let value = line.trim_start()[cmd.len()..].trim_start()[key.len()..].trim_start();
                let value = value.as_bytes().to_vec();
                let flags = client::WriteFlags::default();
                runtime.block_on(client::put(target, key, value, None, &flags))
            }
            ("get", [key]) => runtime.block_on(async {
                client::get(target, key, None).await?;
                println!();
                Ok(())
            }),
            ("del", [key]) => {
                runtime.block_on(client::del(target, key, &client::WriteFlags::default()))
            }
            ("locate" | "getloc", [key]) => runtime.block_on(client::locate(target, key, false)),
            ("info", []) => runtime.block_on(client::info(target)),
            ("fingers", []) => runtime.block_on(client::fingers(target)),
            ("ring", []) => runtime.block_on(client::ring(target)),
            _ => {
                println!("unknown command or wrong arguments: {line:?} (try help)");
                Ok(())
            }
        };
        if let Err(e) = result {
            println!("error: {e:#}");
        }
    }
    Ok(())
}
