//! One seed, one run: a scenario with churn, the store under load and
//! pub/sub, run twice in the same process, must produce the same events,
//! the same deliveries and the same traffic, byte for byte. (The core may
//! not iterate anything whose order depends on a random hasher.)

use chordal_sim::{Sim, SimConfig};
use std::fmt::Write;
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);

/// Everything observable about a run, as text.
fn trace(seed: u64) -> String {
    let mut s = Sim::new(SimConfig {
        seed,
        ..SimConfig::default()
    });
    s.record_events(true);
    let first = s.add_node(2);
    s.create(first);
    for _ in 1..10 {
        let i = s.add_node(2);
        s.join(i, first);
        s.run_for(Duration::from_millis(50));
    }
    s.run_for(10 * SEC);
    for i in [1, 4, 7] {
        s.subscribe(i, b"news").ok();
    }
    // Writes and reads in flight from several coordinators while nodes
    // crash and others join: retries and re-routing happen in the core's
    // own order.
    for k in 0..60 {
        let key = format!("det-{k}");
        s.start_put(k % 10, key.as_bytes(), key.as_bytes());
        if k % 10 == 5 {
            s.start_publish(k % 10, b"news", key.as_bytes());
        }
    }
    s.run_for(Duration::from_millis(20));
    s.kill(3);
    s.kill(8);
    for _ in 0..2 {
        let i = s.add_node(1);
        s.join(i, first);
    }
    for k in 0..60 {
        let key = format!("det-{k}");
        s.start_get((k + 3) % 10, key.as_bytes());
    }
    s.run_for(20 * SEC);
    let mut out = String::new();
    for (i, e) in &s.events {
        writeln!(out, "{i} {e:?}").unwrap();
    }
    for p in &s.publications {
        writeln!(out, "pub {p:?}").unwrap();
    }
    writeln!(out, "traffic {:?}", s.traffic).unwrap();
    writeln!(out, "events processed {}", s.events_processed).unwrap();
    for i in 0..s.len() {
        writeln!(
            out,
            "store {i}: {}",
            chordal_store::Store::count(s.store(i)).unwrap()
        )
        .unwrap();
    }
    out
}

#[test]
fn one_seed_gives_one_trace() {
    for seed in [1, 2, 3] {
        let (a, b) = (trace(seed), trace(seed));
        assert!(
            a.lines().count() > 100,
            "seed {seed}: the scenario did little"
        );
        if a != b {
            let at = a
                .lines()
                .zip(b.lines())
                .position(|(x, y)| x != y)
                .unwrap_or(0);
            panic!(
                "seed {seed}: runs differ at line {at}:\n{}\n{}",
                a.lines().nth(at).unwrap_or(""),
                b.lines().nth(at).unwrap_or("")
            );
        }
    }
}
