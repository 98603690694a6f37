//! Versions that dominate (docs/design.md §5): every node has its own wall clock,
//! off by up to an hour and stepped back and forward, and still every
//! acknowledged write stays readable until a later acknowledged write or
//! delete replaces it — through joins, graceful leaves, crashes and
//! restarts.

use chordal_core::{OpError, Outcome};
use chordal_sim::{Clock, Sim, SimConfig};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);
const HOUR_US: i64 = 3_600_000_000;
/// Every clock reads at least this much ahead of virtual time, so that an
/// hour behind still reads positive.
const BASE_US: i64 = 2 * HOUR_US;

/// What a test step does.
#[derive(Clone, Debug)]
enum Step {
    /// A put of key `k` at the `at`-th live node.
    Put {
        k: usize,
        at: usize,
    },
    Delete {
        k: usize,
        at: usize,
    },
    /// The `which`-th live node's clock steps to `offset` (µs from BASE).
    Clock {
        which: usize,
        offset: i64,
    },
    /// The `which`-th live node crashes; it restarts later with the clock
    /// `offset`.
    Crash {
        which: usize,
        offset: i64,
    },
    /// The `which`-th live node restarts at once (a reboot) with the clock
    /// `offset`.
    Reboot {
        which: usize,
        offset: i64,
    },
    /// A new node with clock `offset` joins.
    Join {
        offset: i64,
    },
    /// The `which`-th live node leaves gracefully.
    Leave {
        which: usize,
    },
}

fn any_offset() -> impl Strategy<Value = i64> {
    -HOUR_US..=HOUR_US
}

fn any_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..KEYS, any::<usize>()).prop_map(|(k, at)| Step::Put { k, at }),
        2 => (0..KEYS, any::<usize>()).prop_map(|(k, at)| Step::Delete { k, at }),
        2 => (any::<usize>(), any_offset()).prop_map(|(which, offset)| Step::Clock { which, offset }),
        1 => (any::<usize>(), any_offset()).prop_map(|(which, offset)| Step::Crash { which, offset }),
        2 => (any::<usize>(), any_offset()).prop_map(|(which, offset)| Step::Reboot { which, offset }),
        1 => any_offset().prop_map(|offset| Step::Join { offset }),
        1 => any::<usize>().prop_map(|which| Step::Leave { which }),
    ]
}

const KEYS: usize = 12;

fn key(k: usize) -> Vec<u8> {
    format!("clock-key-{k}").into_bytes()
}

/// What a key may read as: the last acknowledged write, plus any write
/// after it that failed (it may or may not have taken effect).
#[derive(Clone, Debug, Default)]
struct Expect {
    acked: Option<Vec<u8>>,
    maybe: Vec<Option<Vec<u8>>>,
}

fn clock(offset: i64) -> Clock {
    Clock::offset(BASE_US + offset)
}

/// Runs `steps` on a 5-node ring with random clocks; panics (with the
/// seed) if a read ever disagrees with what was acknowledged.
/// Each step is followed by a pause (milliseconds).
fn run(seed: u64, offsets: &[i64], steps: &[(Step, u64)]) {
    let mut s = Sim::new(SimConfig {
        seed,
        ..SimConfig::default()
    });
    let first = s.add_node(1);
    s.set_clock(first, clock(offsets[0]));
    s.create(first);
    for &o in &offsets[1..] {
        let i = s.add_node(1);
        s.set_clock(i, clock(o));
        s.join(i, first);
        s.run_for(Duration::from_millis(50));
    }
    s.run_until_true(Duration::from_millis(100), 60 * SEC, |s| {
        s.ring_errors(true) == 0
    })
    .unwrap_or_else(|| panic!("seed {seed}: ring did not converge"));
    s.run_for(10 * SEC);

    let mut expect: BTreeMap<usize, Expect> = BTreeMap::new();
    let mut crashed: Vec<(usize, i64)> = Vec::new();
    let mut counter = 0u64;
    for (n, (step, pause)) in steps.iter().enumerate() {
        let alive = s.alive();
        let pick = |x: usize| alive[x % alive.len()];
        match step.clone() {
            Step::Put { k, at } => {
                counter += 1;
                let value = format!("v{counter}").into_bytes();
                let r = s.put(pick(at), &key(k), &value);
                let e = expect.entry(k).or_default();
                match r {
                    Ok(Outcome::Stored { .. }) => {
                        e.acked = Some(value);
                        e.maybe.clear();
                    }
                    _ => e.maybe.push(Some(value)),
                }
            }
            Step::Delete { k, at } => {
                let r = s.delete(pick(at), &key(k));
                let e = expect.entry(k).or_default();
                match r {
                    Ok(Outcome::Stored { .. }) | Ok(Outcome::NotFound) => {
                        e.acked = None;
                        e.maybe.clear();
                    }
                    _ => e.maybe.push(None),
                }
            }
            Step::Clock { which, offset } => s.set_clock(pick(which), clock(offset)),
            Step::Crash { which, offset } => {
                // Fewer than R = 3 processes down at once, and a ring
                // large enough to hold R copies.
                if crashed.is_empty() && alive.len() > 3 {
                    let i = pick(which);
                    s.kill(i);
                    crashed.push((i, offset));
                }
            }
            Step::Reboot { which, offset } => {
                if crashed.is_empty() {
                    let i = pick(which);
                    s.kill(i);
                    s.set_clock(i, clock(offset));
                    s.restart_via(i, &others(&alive, i));
                }
            }
            Step::Join { offset } => {
                if s.len() < 9 {
                    let i = s.add_node(1);
                    s.set_clock(i, clock(offset));
                    s.join_via(i, &alive);
                }
            }
            Step::Leave { which } => {
                if alive.len() > 3 {
                    s.leave(pick(which));
                }
            }
        }
        s.run_for(Duration::from_millis(*pause));
        // A crashed node comes back a few steps later, with its disk and a
        // new clock reading (as after a reboot).
        if n % 4 == 3
            && let Some((i, offset)) = crashed.pop()
        {
            s.run_for(10 * SEC); // its replicas are re-made meanwhile
            s.set_clock(i, clock(offset));
            s.restart_via(i, &others(&s.alive(), i));
            s.run_for(2 * SEC);
        }
        check(&mut s, seed, n, &expect, false);
    }
    s.run_for(20 * SEC);
    check(&mut s, seed, steps.len(), &expect, true);
}

/// The seeds a (re)starting node is given: every other running node, as
/// an operator lists the ring's members. (With one seed, a seed that
/// leaves or restarts meanwhile fails the join for good — the process
/// would exit with "join failed" — and the test would read at a node that
/// is not in the ring.)
fn others(alive: &[usize], me: usize) -> Vec<usize> {
    alive.iter().copied().filter(|a| *a != me).collect()
}

/// Reads every key at some live node, in key order (each read runs the
/// simulation, so the order is part of the seed's history): it must be the acknowledged value
/// or one of the failed writes after it. While the ring is in flux a read
/// may fail (that loses nothing); once settled (`settled`) it may not.
fn check(s: &mut Sim, seed: u64, step: usize, expect: &BTreeMap<usize, Expect>, settled: bool) {
    let alive = s.alive();
    for (&k, e) in expect {
        let at = alive[(k + step) % alive.len()];
        let got = match s.get(at, &key(k)) {
            Ok(Outcome::Found { value, .. }) => Some(value),
            Ok(Outcome::NotFound) => None,
            Err(err) if !settled => {
                let _: OpError = err;
                continue;
            }
            other => panic!("seed {seed} step {step}: get {k}: {other:?}"),
        };
        let fine = got == e.acked || e.maybe.contains(&got);
        assert!(
            fine,
            "seed {seed} step {step}: key {k} read {:?}, acknowledged {:?} (maybe {:?})",
            got.map(|v| String::from_utf8_lossy(&v).into_owned()),
            e.acked
                .as_ref()
                .map(|v| String::from_utf8_lossy(v).into_owned()),
            e.maybe
        );
    }
}

/// `default` cases, or `PROPTEST_CASES` when set.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
}

proptest! {
    // 12 cases per run; a deeper search: `PROPTEST_CASES=30000 cargo test
    // --release -p chordal-sim --test clocks` (about 2 minutes).
    #![proptest_config(ProptestConfig { cases: cases(12), ..ProptestConfig::default() })]

    #[test]
    fn acknowledged_writes_survive_clock_offsets_and_steps(
        seed in 0u64..1_000_000,
        offsets in proptest::collection::vec(any_offset(), 5),
        steps in proptest::collection::vec((any_step(), 0u64..1500), 10..40),
    ) {
        run(seed, &offsets, &steps);
    }
}

/// The case, exactly: a node's clock is an hour fast while it
/// takes a write; it restarts with the right clock and takes another
/// write of the same key, which must win.
#[test]
fn a_write_after_a_clock_step_back_wins() {
    let mut s = Sim::new(SimConfig {
        seed: 5,
        ..SimConfig::default()
    });
    let fast = s.add_node(1);
    s.set_clock(fast, clock(HOUR_US));
    s.create(fast);
    s.run_for(SEC);
    assert!(matches!(
        s.put(fast, b"k", b"first"),
        Ok(Outcome::Stored { .. })
    ));
    s.kill(fast);
    s.set_clock(fast, clock(0));
    s.restart_alone(fast);
    s.run_for(SEC);
    assert!(matches!(
        s.put(fast, b"k", b"second"),
        Ok(Outcome::Stored { .. })
    ));
    match s.get(fast, b"k") {
        Ok(Outcome::Found { value, version, .. }) => {
            assert_eq!(value, b"second");
            assert!(version.hlc > (BASE_US + HOUR_US) as u64, "{version:?}");
        }
        other => panic!("{other:?}"),
    }
}

/// A case the property above found: a node restarts (step 10) holding
/// `v3` of key 2; `v4` is acknowledged by the owner and two other copies
/// (step 11); a read routed to the restarted node — which knows no
/// predecessor yet, so takes every key routed to it — answered `v3` from
/// its own copy. A node whose range is unknown now asks the replicas on
/// a hit too, not only on a miss.
#[test]
fn a_restarted_node_that_knows_no_predecessor_reads_its_replicas() {
    run(
        17763,
        &[0, 41294314, 2227275061, 814455619, -1872355454],
        &[
            (
                Step::Clock {
                    which: 5468589446306933196usize,
                    offset: -1634275132,
                },
                873,
            ),
            (
                Step::Clock {
                    which: 8628041376096680683usize,
                    offset: 3092215283,
                },
                584,
            ),
            (
                Step::Put {
                    k: 6,
                    at: 11822980792466388228usize,
                },
                658,
            ),
            (
                Step::Put {
                    k: 2,
                    at: 9311546012072628145usize,
                },
                1295,
            ),
            (
                Step::Clock {
                    which: 9191172062839215570usize,
                    offset: 1258047850,
                },
                826,
            ),
            (
                Step::Clock {
                    which: 17485943493553378689usize,
                    offset: 266996674,
                },
                73,
            ),
            (
                Step::Clock {
                    which: 14318155728519615413usize,
                    offset: -2001477574,
                },
                1202,
            ),
            (
                Step::Put {
                    k: 2,
                    at: 14724037794227265901usize,
                },
                1088,
            ),
            (
                Step::Reboot {
                    which: 15224135964375142679usize,
                    offset: 2249104344,
                },
                931,
            ),
            (
                Step::Join {
                    offset: -1805357852,
                },
                99,
            ),
            (
                Step::Reboot {
                    which: 11326615272299164137usize,
                    offset: -1465185773,
                },
                751,
            ),
            (
                Step::Put {
                    k: 2,
                    at: 10695311609972224640usize,
                },
                682,
            ),
            (
                Step::Delete {
                    k: 0,
                    at: 51450354572654488usize,
                },
                548,
            ),
            (
                Step::Clock {
                    which: 11045964891145954040usize,
                    offset: -75980640,
                },
                666,
            ),
            (
                Step::Put {
                    k: 10,
                    at: 12546058225979276395usize,
                },
                932,
            ),
            (
                Step::Clock {
                    which: 10372898646176730086usize,
                    offset: 2515331087,
                },
                654,
            ),
            (
                Step::Put {
                    k: 10,
                    at: 6687397445879327011usize,
                },
                365,
            ),
            (
                Step::Put {
                    k: 0,
                    at: 10566276093481849855usize,
                },
                553,
            ),
            (
                Step::Leave {
                    which: 17658447823465982729usize,
                },
                1227,
            ),
            (
                Step::Reboot {
                    which: 17280983621292642926usize,
                    offset: -1097093448,
                },
                337,
            ),
            (
                Step::Clock {
                    which: 16659164701602188890usize,
                    offset: -1066475507,
                },
                1434,
            ),
            (
                Step::Delete {
                    k: 2,
                    at: 897656670395186983usize,
                },
                587,
            ),
            (
                Step::Put {
                    k: 0,
                    at: 7316602768254872026usize,
                },
                1017,
            ),
            (
                Step::Put {
                    k: 1,
                    at: 10279275197802752127usize,
                },
                357,
            ),
            (
                Step::Clock {
                    which: 7652632133408884131usize,
                    offset: -1687465838,
                },
                309,
            ),
            (
                Step::Reboot {
                    which: 9535428041602750681usize,
                    offset: 2824011495,
                },
                1049,
            ),
            (
                Step::Delete {
                    k: 8,
                    at: 8159905694809569958usize,
                },
                1449,
            ),
            (
                Step::Put {
                    k: 4,
                    at: 3080824555594676508usize,
                },
                206,
            ),
            (Step::Join { offset: 1841275347 }, 233),
            (
                Step::Put {
                    k: 10,
                    at: 16640058755668394974usize,
                },
                603,
            ),
            (
                Step::Reboot {
                    which: 11294855382390646788usize,
                    offset: -2891447731,
                },
                467,
            ),
            (
                Step::Put {
                    k: 5,
                    at: 762513166227877675usize,
                },
                432,
            ),
            (
                Step::Put {
                    k: 5,
                    at: 11517572325315333539usize,
                },
                96,
            ),
            (
                Step::Put {
                    k: 3,
                    at: 2098822603073278800usize,
                },
                1451,
            ),
            (
                Step::Put {
                    k: 8,
                    at: 1985111894402156224usize,
                },
                861,
            ),
            (
                Step::Put {
                    k: 8,
                    at: 12498199691875713594usize,
                },
                361,
            ),
            (
                Step::Leave {
                    which: 14609248927461705582usize,
                },
                1401,
            ),
        ],
    );
}

/// A case the property above found: a node restarts (step 5) and, before
/// it hears from a predecessor, a stale route sends it a put of key 6 that
/// belongs to its predecessor. Taking every key while its range was
/// unknown, it acknowledged the put with copies on its own successors, and
/// the owner's read missed it (step 6). Such a vnode now answers
/// `NotReady` to writes, and the coordinator asks again shortly.
#[test]
fn a_restarted_node_that_knows_no_predecessor_takes_no_writes() {
    use Step::*;
    run(
        192483,
        &[0, 2651834424, 513981907, -2007672717, 2505420466],
        &[
            (
                Delete {
                    k: 10,
                    at: 5359124783999354248,
                },
                772,
            ),
            (
                Reboot {
                    which: 17427364036086631461,
                    offset: -2948156244,
                },
                851,
            ),
            (
                Reboot {
                    which: 689395709262934342,
                    offset: -1013225213,
                },
                884,
            ),
            (
                Put {
                    k: 8,
                    at: 3529060127680554455,
                },
                1431,
            ),
            (
                Clock {
                    which: 6326922901110533551,
                    offset: 2878309774,
                },
                850,
            ),
            (
                Reboot {
                    which: 734323001755706017,
                    offset: -3575338355,
                },
                94,
            ),
            (
                Put {
                    k: 6,
                    at: 8924878449918470690,
                },
                1168,
            ),
            (
                Reboot {
                    which: 17533321035671901828,
                    offset: -1620878806,
                },
                1020,
            ),
        ],
    );
}
