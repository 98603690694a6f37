//! pubsub (the chat room): three participants (three processes, each a ring member) see
//! every message of the room, each sender's in order; the room goes on
//! after the process owning its topic is killed.

use chordal_node::{Id, Oracle};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Participant {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// Everything printed so far.
    seen: Vec<String>,
    addr: String,
    id: Id,
}

impl Participant {
    fn start(name: &str, join: Option<&str>) -> Participant {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pubsub"));
        cmd.arg(name);
        if let Some(j) = join {
            cmd.args(["--join", j]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut p = Participant {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            addr: String::new(),
            id: Id::from_u64(0),
        };
        let first = p.wait_for(|l| l.starts_with("node ")).expect("node line");
        let mut parts = first.split(' ').skip(1);
        p.addr = parts.next().unwrap().to_string();
        p.id = parts.next().unwrap().parse().unwrap();
        p.wait_for(|l| l == "joined room lobby")
            .expect("joined the room");
        p
    }

    fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Reads output until a line matches (10 s at most); returns it.
    fn wait_for(&mut self, want: impl Fn(&str) -> bool) -> Option<String> {
        if let Some(l) = self.seen.iter().find(|l| want(l)) {
            return Some(l.clone());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let line = self.lines.recv_timeout(left).ok()?;
            self.seen.push(line.clone());
            if want(&line) {
                return Some(line);
            }
        }
        None
    }

    /// The room's messages from `name`, in the order they were printed.
    fn from(&self, name: &str) -> Vec<String> {
        let prefix = format!("[lobby] {name}: ");
        self.seen
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
            .collect()
    }
}

impl Drop for Participant {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn everyone_sees_every_message_in_order_even_after_the_topic_owner_dies() {
    let alice = Participant::start("alice", None);
    let seed = alice.addr.clone();
    let bob = Participant::start("bob", Some(&seed));
    let carol = Participant::start("carol", Some(&seed));
    let mut people = vec![alice, bob, carol];
    let names = ["alice", "bob", "carol"];

    // The ring of three settles and everyone's subscription reaches the
    // topic's final owner within a renewal period: alice says hello until
    // everybody hears one.
    let mut k = 0;
    'settle: loop {
        people[0].say(&format!("hello {k}"));
        std::thread::sleep(Duration::from_millis(200));
        k += 1;
        assert!(k < 50, "the room never formed");
        for p in people.iter_mut() {
            let heard = p.wait_for(|l| l.starts_with("[lobby] alice: hello"));
            if heard.is_none() {
                continue 'settle;
            }
        }
        break;
    }

    for round in 0..10 {
        for (i, p) in people.iter_mut().enumerate() {
            p.say(&format!("{} says {round}", names[i]));
        }
    }
    for p in people.iter_mut() {
        for name in names {
            assert!(
                p.wait_for(|l| l == format!("[lobby] {name}: {name} says 9"))
                    .is_some()
            );
        }
        for name in names {
            let said: Vec<String> = p
                .from(name)
                .into_iter()
                .filter(|m| m.contains(" says "))
                .collect();
            let want: Vec<String> = (0..10).map(|r| format!("{name} says {r}")).collect();
            assert_eq!(said, want, "{name} as seen by a participant");
        }
    }

    // The process owning the room's topic dies; the other two go on.
    let oracle = Oracle::new(people.iter().map(|p| p.id).collect());
    let owner_id = oracle.successor(&Id::of_key(b"chat/lobby"));
    let owner = people.iter().position(|p| p.id == owner_id).unwrap();
    let _ = people[owner].child.kill();
    let mut rest: Vec<(usize, Participant)> = people
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != owner)
        .collect();
    for round in 0..5 {
        for (i, p) in rest.iter_mut() {
            p.say(&format!("{} after {round}", names[*i]));
        }
    }
    let speakers: Vec<usize> = rest.iter().map(|(i, _)| *i).collect();
    for (_, p) in rest.iter_mut() {
        for &s in &speakers {
            let name = names[s];
            assert!(
                p.wait_for(|l| l == format!("[lobby] {name}: {name} after 4"))
                    .is_some(),
                "{name}'s last message did not arrive: {:?}",
                p.seen
            );
            let said: Vec<String> = p
                .from(name)
                .into_iter()
                .filter(|m| m.contains(" after "))
                .collect();
            let want: Vec<String> = (0..5).map(|r| format!("{name} after {r}")).collect();
            assert_eq!(said, want);
        }
    }
    // End of input: they leave and exit cleanly.
    for (_, p) in rest.iter_mut() {
        drop(p.stdin.take());
        let status = wait(&mut p.child, Duration::from_secs(10)).expect("pubsub did not exit");
        assert!(status.success());
    }
}

fn wait(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
