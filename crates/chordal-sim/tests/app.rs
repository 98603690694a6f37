//! Application messages on a simulated ring: `send` and `request` reach the
//! application of the key's owner, from every node, and survive the
//! owner's failure; refusals and silence come back as `Refused`.

use chordal_core::{Id, OpError, Outcome};
use chordal_sim::{Sim, SimConfig};
use std::time::Duration;

fn ring(seed: u64, n: usize) -> Sim {
    let mut s = Sim::new(SimConfig {
        seed,
        ..SimConfig::default()
    });
    s.build_converged(n, 1);
    s
}

/// Index of the live node owning `key`.
fn owner_of(s: &Sim, key: &[u8]) -> usize {
    let owner = s.oracle().successor(&Id::of_key(key));
    (0..s.len())
        .find(|i| s.is_alive(*i) && s.node(*i).primary().me().id == owner)
        .unwrap()
}

#[test]
fn send_reaches_the_owner_from_every_node() {
    let mut s = ring(11, 20);
    s.set_app_handler(|_, _, _| Some(Vec::new()));
    for from in 0..20 {
        for k in 0..10 {
            let key = format!("key-{from}-{k}");
            let got = s.send(from, key.as_bytes(), b"hello");
            assert_eq!(got, Ok(Outcome::Delivered), "{key} from {from}");
            let (at, delivered) = s.app_received.last().unwrap().clone();
            assert_eq!(delivered, key.as_bytes());
            assert_eq!(at, owner_of(&s, key.as_bytes()), "{key} from {from}");
        }
    }
    // Exactly one delivery per message.
    assert_eq!(s.app_received.len(), 200);
}

#[test]
fn request_gets_the_owners_answer() {
    let mut s = ring(12, 16);
    s.set_app_handler(|node, key, payload| {
        let mut answer = format!("node {node} got ").into_bytes();
        answer.extend_from_slice(payload);
        answer.extend_from_slice(b" for ");
        answer.extend_from_slice(key);
        Some(answer)
    });
    for k in 0..40 {
        let key = format!("k{k}");
        let owner = owner_of(&s, key.as_bytes());
        let got = s.request(k % 16, key.as_bytes(), b"ping").unwrap();
        assert_eq!(
            got,
            Outcome::Replied {
                payload: format!("node {owner} got ping for {key}").into_bytes()
            }
        );
    }
}

#[test]
fn refusing_or_silent_applications_give_refused_and_the_node_keeps_serving() {
    let mut s = ring(13, 10);
    // An application that refuses odd payload lengths.
    s.set_app_handler(|_, _, payload| (payload.len() % 2 == 0).then(Vec::new));
    assert_eq!(s.send(0, b"a", b"odd"), Err(OpError::Refused));
    assert_eq!(s.send(0, b"a", b"even"), Ok(Outcome::Delivered));
    // No application at all: nobody answers, the owner refuses in time.
    let mut silent = ring(14, 10);
    let started = silent.now();
    assert_eq!(silent.request(3, b"b", b"x"), Err(OpError::Refused));
    assert!(silent.now() - started < SimConfig::default().node.kv_timeout);
    // ... and the ring still works for the store.
    assert!(silent.put(3, b"b", b"v").is_ok());
}

#[test]
fn messages_follow_the_key_when_its_owner_dies() {
    let mut s = ring(15, 20);
    s.set_app_handler(|_, _, _| Some(Vec::new()));
    let key = b"moving-key";
    let first = owner_of(&s, key);
    assert_eq!(s.send(0, key, b"1"), Ok(Outcome::Delivered));
    s.kill(first);
    // Right away: the sender finds out the owner is gone and retries.
    let from = (first + 1) % 20;
    assert_eq!(s.send(from, key, b"2"), Ok(Outcome::Delivered));
    s.run_for(Duration::from_secs(5));
    let second = owner_of(&s, key);
    assert_ne!(first, second);
    assert_eq!(s.app_received.last().unwrap().0, second);
}

#[test]
fn send_to_reaches_that_node_and_a_dead_one_is_unreachable() {
    let mut s = ring(16, 12);
    s.set_app_handler(|node, _, _| Some(node.to_string().into_bytes()));
    for to in 0..12 {
        assert_eq!(s.send_to(3, to, b"direct"), Ok(Outcome::Delivered));
        // Delivered to `to` itself, with no key.
        assert_eq!(s.app_received.last().unwrap(), &(to, Vec::new()));
    }
    s.kill(7);
    let started = s.now();
    assert_eq!(s.send_to(3, 7, b"anyone?"), Err(OpError::Unreachable));
    assert!(s.now() - started <= SimConfig::default().node.kv_timeout);
}
