//! `chordal repl`: an interactive shell on one node, like the interactive
//! nodes of the Go/gRPC Chord report (`getloc`, fingers, ...).

use crate::{Target, client};
use anyhow::Result;
use rustyline::error::ReadlineError;

const HELP: &str = r#"commands (a word in "double" or 'single' quotes may hold spaces; inside
double quotes \" and \\ stand for " and \):
  put KEY VALUE | add KEY VALUE   store VALUE (the rest of the line) under KEY
  get KEY                   print KEY's value
  del KEY                   delete KEY
  locate KEY | getloc KEY   where KEY lives (owner, replicas, hops)
  info                      this node: id, predecessor, successors, fingers
  fingers                   the finger table
  ring                      every node in ring order
  help                      this text
  quit | exit               leave the shell
"#;

/// Runs the shell until `quit` or end of input. A failed command prints
/// its error and the shell goes on.
pub fn run(runtime: &tokio::runtime::Runtime, target: &Target) -> Result<()> {
    let mut rl = rustyline::DefaultEditor::new()?;
    // Say whether the node answers, rather than claim a connection: every
    // command is its own HTTP request.
    match runtime.block_on(client::get_json::<serde_json::Value>(target, "/v1/node")) {
        Ok((_, node)) => println!(
            "node {} at {} answers (id {}) — type help for commands",
            node["addr"].as_str().unwrap_or("?"),
            target.node,
            node["id"].as_str().map_or("?", |id| &id[..id.len().min(8)]),
        ),
        Err(e) => println!(
            "{} does not answer now ({e:#}); commands will try it again — type help for commands",
            target.node
        ),
    }
    loop {
        let line = match rl.readline("chordal> ") {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) | Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let words = match split(&line) {
            Ok(words) => words,
            Err(e) => {
                println!("{e}");
                continue;
            }
        };
        let Some((cmd, args)) = words.split_first() else {
            continue;
        };
        let _ = rl.add_history_entry(line.as_str());
        let texts: Vec<&str> = args.iter().map(|w| w.text.as_str()).collect();
        let result = match (cmd.text.as_str(), texts.as_slice()) {
            ("quit" | "exit", _) => break,
            ("help", _) => {
                print!("{HELP}");
                Ok(())
            }
            ("put" | "add", [key, ..]) if args.len() >= 2 => {
                // The value is the rest of the line after the key, spaces
                // kept — or one quoted word.
                let value = match &args[1..] {
                    [one] if one.quoted => one.text.clone(),
                    _ => line[args[1].start..].trim_end().to_string(),
                };
                let flags = client::WriteFlags::default();
                runtime.block_on(client::put(target, key, value.into_bytes(), None, &flags))
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

/// One word of a command line.
#[derive(Debug, PartialEq, Eq)]
struct Word {
    /// The word, quotes removed and escapes applied.
    text: String,
    /// Where it starts in the line (its opening quote, if any).
    start: usize,
    /// Was it (all) one quoted string?
    quoted: bool,
}

/// Splits a command line into words: runs of non-space characters, or
/// strings in double quotes (with `\"` and `\\`) or single quotes (taken
/// as they are). An unclosed quote is an error.
fn split(line: &str) -> Result<Vec<Word>, String> {
    let mut words = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut text = String::new();
        let quoted = c == '"' || c == '\'';
        if quoted {
            chars.next();
            let mut closed = false;
            while let Some((_, ch)) = chars.next() {
                match ch {
                    _ if ch == c => {
                        closed = true;
                        break;
                    }
                    '\\' if c == '"' => match chars.next() {
                        Some((_, e @ ('"' | '\\'))) => text.push(e),
                        Some((_, e)) => {
                            text.push('\\');
                            text.push(e);
                        }
                        None => break,
                    },
                    _ => text.push(ch),
                }
            }
            if !closed {
                return Err(format!("unclosed {c} in {line:?}"));
            }
        } else {
            while let Some(&(_, ch)) = chars.peek() {
                if ch.is_whitespace() {
                    break;
                }
                text.push(ch);
                chars.next();
            }
        }
        words.push(Word {
            text,
            start,
            quoted,
        });
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &str) -> Vec<String> {
        split(line).unwrap().into_iter().map(|w| w.text).collect()
    }

    #[test]
    fn words_split_on_spaces_and_quotes_hold_them() {
        assert_eq!(texts("  get  key "), ["get", "key"]);
        assert_eq!(texts(r#"put "my key" 'a  b'"#), ["put", "my key", "a  b"]);
        assert_eq!(
            texts(r#"put k "say \"hi\" \\ \n""#),
            ["put", "k", r#"say "hi" \ \n"#]
        );
        assert_eq!(texts(r#"get """#), ["get", ""]);
        let words = split(r#"put k "v""#).unwrap();
        assert!(words[2].quoted && !words[1].quoted);
        assert_eq!(words[2].start, 6);
        assert!(split(r#"get "open"#).unwrap_err().contains("unclosed"));
        assert!(split("get 'open").is_err());
    }
}
