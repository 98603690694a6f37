//! Publish/subscribe on a simulated ring: every subscriber gets every
//! publication, each publisher's in order; subscriptions survive the crash
//! of the topic's owner and move to a node that joins in front of it;
//! unsubscribing and dying end delivery.

use chordal_core::{Config, Id, Outcome};
use chordal_sim::{Sim, SimConfig};
use std::time::Duration;

fn ring(seed: u64, n: usize, node: Config) -> Sim {
    let mut s = Sim::new(SimConfig {
        seed,
        node,
        ..SimConfig::default()
    });
    s.build_converged(n, 1);
    s
}

/// Index of the live node owning `key`.
fn owner_of(s: &Sim, key: &[u8]) -> usize {
    let owner = s.joined_oracle().successor(&Id::of_key(key));
    (0..s.len())
        .find(|i| s.is_alive(*i) && s.node(*i).primary().me().id == owner)
        .unwrap()
}

/// The payloads node `i` received on `topic`, in order.
fn received(s: &Sim, i: usize, topic: &[u8]) -> Vec<String> {
    s.publications
        .iter()
        .filter(|(at, t, _, _)| *at == i && t == topic)
        .map(|(_, _, _, p)| String::from_utf8(p.clone()).unwrap())
        .collect()
}

#[test]
fn every_subscriber_gets_every_publication_in_publisher_order() {
    let mut s = ring(21, 30, Config::default());
    let subscribers: Vec<usize> = (0..30).step_by(3).collect();
    for &i in &subscribers {
        assert_eq!(s.subscribe(i, b"news"), Ok(Outcome::Delivered));
    }
    // Three publishers, 20 publications each, all started at once.
    let mut ops = Vec::new();
    for p in [1usize, 2, 4] {
        for k in 0..20 {
            let payload = format!("{p}:{k}");
            ops.push((p, s.start_publish(p, b"news", payload.as_bytes())));
        }
    }
    s.run_for(Duration::from_secs(3));
    for (p, op) in ops {
        assert_eq!(
            s.kv_result(p, op),
            Some(&Ok(Outcome::Published { subscribers: 10 }))
        );
    }
    for &i in &subscribers {
        let got = received(&s, i, b"news");
        assert_eq!(got.len(), 60, "subscriber {i}: {got:?}");
        for p in [1, 2, 4] {
            let from_p: Vec<&String> = got
                .iter()
                .filter(|m| m.starts_with(&format!("{p}:")))
                .collect();
            let want: Vec<String> = (0..20).map(|k| format!("{p}:{k}")).collect();
            assert_eq!(from_p, want.iter().collect::<Vec<_>>(), "at {i}");
        }
    }
    // Nobody else got anything.
    assert_eq!(s.publications.len(), 600);
}

#[test]
fn subscriptions_survive_the_crash_of_the_topics_owner() {
    // Renewals far apart: only the owner's replicas can explain delivery
    // right after the crash.
    let config = Config {
        topic_renew: Duration::from_secs(600),
        ..Config::default()
    };
    let mut s = ring(22, 24, config);
    let topic = b"alerts";
    let owner = owner_of(&s, topic);
    let subscribers: Vec<usize> = (0..24).filter(|i| *i != owner).step_by(2).collect();
    for &i in &subscribers {
        assert_eq!(s.subscribe(i, topic), Ok(Outcome::Delivered));
    }
    let publisher = (owner + 1) % 24;
    assert!(s.publish(publisher, topic, b"before").is_ok());
    s.kill(owner);
    // At once: the publisher's retries find the next owner, which already
    // knows every subscriber.
    let n = subscribers.len() as u32;
    assert_eq!(
        s.publish(publisher, topic, b"after"),
        Ok(Outcome::Published { subscribers: n })
    );
    s.run_for(Duration::from_secs(1));
    assert_ne!(owner_of(&s, topic), owner);
    for &i in &subscribers {
        assert_eq!(received(&s, i, topic), ["before", "after"], "at {i}");
    }
}

#[test]
fn a_node_joining_in_front_of_the_owner_takes_the_topic_with_its_subscribers() {
    let config = Config {
        topic_renew: Duration::from_secs(600),
        ..Config::default()
    };
    let mut s = ring(23, 16, config);
    let topic = b"weather";
    let topic_id = Id::of_key(topic);
    for i in 0..16 {
        assert!(s.subscribe(i, topic).is_ok());
    }
    // A node whose id is just after the topic's: it becomes the owner.
    let newcomer = s.add_node_with_ids(&[topic_id.wrapping_add(&Id::from_u64(1))]);
    s.join(newcomer, 0);
    let took_over = s.run_until_true(Duration::from_millis(50), Duration::from_secs(10), |s| {
        s.node(newcomer).is_joined() && owner_of(s, topic) == newcomer
    });
    assert!(took_over.is_some(), "the newcomer never owned the topic");
    s.run_for(Duration::from_secs(1));
    assert_eq!(
        s.publish(3, topic, b"sunny"),
        Ok(Outcome::Published { subscribers: 16 })
    );
    s.run_for(Duration::from_secs(1));
    for i in 0..16 {
        assert_eq!(received(&s, i, topic), ["sunny"], "at {i}");
    }
}

#[test]
fn unsubscribing_or_dying_ends_delivery() {
    let mut s = ring(24, 12, Config::default());
    let topic = b"chat";
    for i in [2, 5, 8] {
        assert!(s.subscribe(i, topic).is_ok());
    }
    s.unsubscribe(5, topic);
    s.run_for(Duration::from_millis(200));
    assert_eq!(
        s.publish(0, topic, b"one"),
        Ok(Outcome::Published { subscribers: 2 })
    );
    // A dead subscriber's lease lapses after three renewal periods.
    s.kill(8);
    let owner = owner_of(&s, topic);
    s.run_for(Config::default().topic_renew * 4);
    let left: Vec<usize> = s
        .node(owner)
        .topic_subscribers(topic)
        .iter()
        .map(|(n, _)| (0..12).find(|i| s.node(*i).addr() == n.addr).unwrap())
        .collect();
    assert_eq!(left, [2]);
    assert_eq!(
        s.publish(0, topic, b"two"),
        Ok(Outcome::Published { subscribers: 1 })
    );
    s.run_for(Duration::from_millis(200));
    assert_eq!(received(&s, 2, topic), ["one", "two"]);
    assert!(received(&s, 5, topic).is_empty());
}

#[test]
fn subscriptions_made_while_the_ring_forms_survive_the_owners_crash() {
    // The topic's owner is the first node; the last one joins right after
    // it and subscribes at once, before the owner's successor list names
    // it: the owner pushes its subscribers to the then next owners, not
    // to the newcomer, which is the one to take over after the crash.
    // Renewals are far apart, so only a push made when the owner's next
    // owners changed can save the subscriptions.
    let config = Config {
        topic_renew: Duration::from_secs(600),
        ..Config::default()
    };
    let mut s = Sim::new(SimConfig {
        seed: 25,
        node: config,
        ..SimConfig::default()
    });
    let topic = b"forming";
    let t = Id::of_key(topic);
    let first = s.add_node_with_ids(&[t.wrapping_add(&Id::from_u64(100))]);
    s.create(first);
    assert!(s.subscribe(first, topic).is_ok());
    let mut nodes = vec![first];
    for k in 0..4 {
        let n = if k < 3 {
            s.add_node(1)
        } else {
            s.add_node_with_ids(&[t.wrapping_add(&Id::from_u64(200))])
        };
        s.join(n, first);
        let joined = s.run_until_true(Duration::from_millis(1), Duration::from_secs(10), |s| {
            s.node(n).is_joined()
        });
        assert!(joined.is_some());
        assert!(s.subscribe(n, topic).is_ok());
        nodes.push(n);
    }
    s.run_for(Duration::from_secs(3));
    assert_eq!(owner_of(&s, topic), first);
    s.kill(first);
    // Let the ring notice (nothing refuses here, silence must time out).
    s.run_for(Duration::from_secs(5));
    assert_eq!(owner_of(&s, topic), nodes[4]);
    // Four live subscribers, and the dead owner itself until a
    // notification to it fails.
    assert_eq!(
        s.publish(nodes[1], topic, b"still here"),
        Ok(Outcome::Published { subscribers: 5 }),
        "the next owner did not know every subscriber"
    );
    s.run_for(Duration::from_secs(1));
    for &i in &nodes[1..] {
        assert_eq!(received(&s, i, topic), ["still here"], "at {i}");
    }
}
