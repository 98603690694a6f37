//! How long a key's writes are unavailable under `--authority` (the
//! figures): a 5-node ring, one writer per key setting it in a loop
//! through two nodes that stay, while one node is `kill -9`'d, one leaves
//! gracefully (SIGTERM) and a fresh one joins, 8 s apart. For each event,
//! each key's longest gap between two acknowledged writes around it; the
//! keys the event moved show the gap, the others stay at a few ms.
//!
//! A measurement, not a check: ignored in the suite. Run it on a quiet box
//! (release build) and read the figures it prints:
//!
//! ```sh
//! cargo test --release -p chordal-cli --test unavailability -- --ignored --nocapture
//! ```

mod common;

use common::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Keys, one writer each.
const KEYS: usize = 64;
/// A gap longer than this counts as the event's doing.
const AFFECTED: Duration = Duration::from_millis(100);

/// The longest gap between consecutive acknowledged writes of `acks`
/// (sorted) that overlaps `[from, to]`.
fn gap_around(acks: &[Duration], from: Duration, to: Duration) -> Duration {
    acks.windows(2)
        .filter(|w| w[1] >= from && w[0] <= to)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(to - from)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture (see the file's docs)"]
fn write_unavailability_during_kill_leave_and_join() {
    let args = [
        "--stabilize-ms",
        "100",
        "--resp",
        "127.0.0.1:0",
        "--authority",
    ];
    let mut nodes = vec![NodeProc::start(None, &args)];
    for _ in 1..5 {
        let seed = nodes[0].addr;
        nodes.push(NodeProc::start(Some(seed), &args));
    }
    let all: Vec<&NodeProc> = nodes.iter().collect();
    eventually(Duration::from_secs(30), || successor_lists_correct(&all, 4)).expect("ring");
    let resps: Vec<_> = nodes[..2].iter().map(|n| n.served("resp")).collect();
    let epoch = Instant::now();
    let run = Duration::from_secs(30);
    let acks: Arc<Mutex<Vec<Vec<Duration>>>> = Arc::new(Mutex::new(vec![Vec::new(); KEYS]));
    let writers: Vec<_> = (0..KEYS)
        .map(|k| {
            let addr = resps[k % resps.len()];
            let acks = acks.clone();
            std::thread::spawn(move || {
                let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
                let mut con = None;
                let mut mine = Vec::new();
                while epoch.elapsed() < run {
                    if con.is_none() {
                        con = client
                            .get_connection_with_timeout(Duration::from_secs(2))
                            .ok();
                        if let Some(c) = &con {
                            c.set_read_timeout(Some(Duration::from_secs(5))).ok();
                        }
                    }
                    let Some(c) = con.as_mut() else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    let r: redis::RedisResult<()> =
                        redis::cmd("SET").arg(format!("u-{k}")).arg(1).query(c);
                    match r {
                        Ok(()) => mine.push(epoch.elapsed()),
                        Err(e) if e.is_io_error() => con = None,
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
                acks.lock().unwrap()[k] = mine;
            })
        })
        .collect();
    let mut events = Vec::new();
    std::thread::sleep(Duration::from_secs(4));
    events.push(("kill -9", epoch.elapsed()));
    nodes[4].kill9();
    std::thread::sleep(Duration::from_secs(8));
    events.push(("graceful leave", epoch.elapsed()));
    nodes[3].terminate();
    std::thread::sleep(Duration::from_secs(8));
    events.push(("join", epoch.elapsed()));
    let seed = nodes[0].addr;
    nodes.push(NodeProc::start(Some(seed), &args));
    for w in writers {
        w.join().unwrap();
    }
    let acks = acks.lock().unwrap();
    println!("event,keys_affected,p50_ms,p99_ms,max_ms");
    for (name, at) in events {
        let mut gaps: Vec<Duration> = acks
            .iter()
            .map(|a| gap_around(a, at, at + Duration::from_secs(6)))
            .filter(|g| *g > AFFECTED)
            .collect();
        gaps.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{name},{}/{KEYS},{:.0},{:.0},{:.0}",
            gaps.len(),
            ms(percentile(&gaps, 0.5)),
            ms(percentile(&gaps, 0.99)),
            ms(gaps.last().copied().unwrap_or_default()),
        );
    }
    let writes: usize = acks.iter().map(Vec::len).sum();
    println!("{writes} writes acknowledged");
    assert!(writes > 1000, "only {writes} writes");
}
