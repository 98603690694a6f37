//! The coordinator's decisions, tested on the request machine alone (a
//! fixed ring of one vnode, a fake clock): where an operation goes, when
//! it tries again, when it gives up.

use super::*;
use crate::io::Serve;
use crate::testkit::{Fixture, key_in, key_outside, node};
use crate::{KeyRange, LookupResult, Message, Outcome, Target, Version};

fn put_op(key: &[u8]) -> Operation {
    Operation::Put {
        key: key.to_vec(),
        value: b"v".to_vec(),
        opts: crate::WriteOptions::default(),
    }
}

/// Starts operation `id` on `requests`.
fn start(requests: &mut Requests, fx: &mut Fixture, id: u64, op: Operation) {
    let now = fx.now;
    requests.start(&mut fx.cx(), now, id, op, None, 0);
}

/// The lookups the ring sent for us (recursive: `FindSuccessor`s).
fn lookups_sent(fx: &mut Fixture) -> usize {
    let mut n = 0;
    let now = fx.now;
    fx.ring.drain(now, |env| {
        if matches!(env.msg, Message::FindSuccessor { .. }) {
            n += 1;
        }
    });
    n
}

/// The lookup finished: `owner` owns the key.
fn lookup_found(requests: &mut Requests, fx: &mut Fixture, lookup: u64, owner: NodeRef) {
    let now = fx.now;
    let result = Ok(LookupResult {
        key: Id::ZERO,
        owner,
        successors: vec![],
        hops: 2,
        path: vec![],
    });
    requests.lookup_done(&mut fx.cx(), now, LookupId(lookup), result);
}

/// The `Request`s sent: (destination, req, op_id, timeout_ms).
fn requests_sent(fx: &mut Fixture) -> Vec<(NodeRef, u64, u64, u32)> {
    fx.sent()
        .into_iter()
        .filter_map(|e| match e.msg {
            Message::Request {
                req,
                op_id,
                timeout_ms,
                ..
            } => Some((NodeRef::new(e.to.id?, e.to.addr), req, op_id, timeout_ms)),
            _ => None,
        })
        .collect()
}

fn reply(
    requests: &mut Requests,
    fx: &mut Fixture,
    owner: NodeRef,
    req: u64,
    result: OpResult,
    range: Option<KeyRange>,
) {
    let now = fx.now;
    requests.handle_reply(&mut fx.cx(), now, owner, req, result, range);
}

fn stored() -> OpResult {
    OpResult::Stored {
        version: Version {
            term: 0,
            hlc: 1,
            node: node(200, 2).id,
        },
        acked: 2,
    }
}

#[test]
fn a_key_our_vnode_owns_is_served_here_without_a_message() {
    let mut fx = Fixture::three_processes();
    let mut requests = Requests::new(1000);
    let key = key_in(&fx);
    start(&mut requests, &mut fx, 1, put_op(&key));
    let serve: Vec<_> = fx.io.serve.drain(..).collect();
    assert_eq!(serve.len(), 1);
    assert_eq!(serve[0].vnode, fx.me);
    assert!(matches!(serve[0].reply, ReplyTo::Local(1)));
    assert!(fx.sent().is_empty());
    assert_eq!(lookups_sent(&mut fx), 0);
}

#[test]
fn another_key_is_looked_up_then_sent_to_its_owner_named_and_with_its_deadline() {
    let mut fx = Fixture::three_processes();
    let mut requests = Requests::new(1000);
    let key = key_outside(&fx);
    start(&mut requests, &mut fx, 1, put_op(&key));
    assert!(requests.owns_lookup(&LookupId(1)));
    assert_eq!(lookups_sent(&mut fx), 1);
    let owner = node(300, 3);
    lookup_found(&mut requests, &mut fx, 1, owner);
    let sent = requests_sent(&mut fx);
    let wait = fx.config.kv_timeout * 3 / 5;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, owner);
    assert_eq!(sent[0].2, 1000 + 1, "op id = per-incarnation base + number");
    assert_eq!(sent[0].3 as u128, wait.as_millis());
    // The owner answers: the operation is over.
    reply(&mut requests, &mut fx, owner, sent[0].1, stored(), None);
    let done: Vec<_> = fx.io.done.drain(..).collect();
    assert!(matches!(
        done[..],
        [(1, Ok(Outcome::Stored { acked: 2, .. }))]
    ));
    assert_eq!(requests.in_flight(), 0);
}

#[test]
fn wrong_owner_retries_at_once_then_after_a_pause_then_gives_up() {
    let mut fx = Fixture::three_processes();
    let mut requests = Requests::new(0);
    let key = key_outside(&fx);
    let owner = node(300, 3);
    start(&mut requests, &mut fx, 1, put_op(&key));
    let mut lookup = 1;
    lookup_found(&mut requests, &mut fx, lookup, owner);
    for attempt in 1..=6 {
        let sent = requests_sent(&mut fx);
        assert_eq!(sent.len(), 1, "attempt {attempt}");
        reply(
            &mut requests,
            &mut fx,
            owner,
            sent[0].1,
            OpResult::WrongOwner,
            None,
        );
        lookup += 1;
        if attempt >= 2 {
            // From the second retry on, a stabilization round in between.
            assert!(!requests.owns_lookup(&LookupId(lookup)));
            let at = requests.poll_timeout().expect("a retry is scheduled");
            assert_eq!(at, fx.now + fx.config.request_timeout);
            fx.now = at;
            let now = fx.now;
            requests.handle_timeout(&mut fx.cx(), now);
        }
        if attempt < 6 {
            assert!(requests.owns_lookup(&LookupId(lookup)), "attempt {attempt}");
            lookup_found(&mut requests, &mut fx, lookup, owner);
        }
    }
    // Six attempts spent: ownership kept moving.
    let done: Vec<_> = fx.io.done.drain(..).collect();
    assert_eq!(done, vec![(1, Err(OpError::Redirects))]);
}

#[test]
fn a_silent_owner_is_presumed_dead_and_the_key_looked_up_again() {
    let mut fx = Fixture::three_processes();
    let mut requests = Requests::new(0);
    let key = key_outside(&fx);
    start(&mut requests, &mut fx, 1, put_op(&key));
    lookup_found(&mut requests, &mut fx, 1, node(300, 3));
    assert_eq!(requests_sent(&mut fx).len(), 1);
    // No answer within 3/5 of the operation's time.
    fx.advance(fx.config.kv_timeout * 3 / 5);
    let now = fx.now;
    requests.handle_timeout(&mut fx.cx(), now);
    assert!(requests.owns_lookup(&LookupId(2)), "looked up again");
    // And the whole operation times out at its own deadline.
    fx.advance(fx.config.kv_timeout * 2 / 5);
    let now = fx.now;
    requests.handle_timeout(&mut fx.cx(), now);
    let done: Vec<_> = fx.io.done.drain(..).collect();
    assert_eq!(done, vec![(1, Err(OpError::Timeout))]);
    assert!(
        !requests.owns_lookup(&LookupId(2)),
        "its lookup is forgotten"
    );
}

#[test]
fn an_overloaded_owner_is_tried_again_after_a_growing_pause() {
    let mut fx = Fixture::three_processes();
    let mut requests = Requests::new(0);
    let key = key_outside(&fx);
    let owner = node(300, 3);
    start(&mut requests, &mut fx, 1, put_op(&key));
    lookup_found(&mut requests, &mut fx, 1, owner);
    let sent = requests_sent(&mut fx);
    reply(
        &mut requests,
        &mut fx,
        owner,
        sent[0].1,
        OpResult::Overloaded,
        None,
    );
    // Attempt 1: back off one request timeout (attempts × request_timeout).
    assert_eq!(
        requests.poll_timeout(),
        Some(fx.now + fx.config.request_timeout)
    );
    assert!(fx.io.done.is_empty(), "not a failure yet");
}

/// Node 300's range (after node 200) and two keys in it.
fn owner_range_and_two_keys() -> (NodeRef, KeyRange, Vec<Vec<u8>>) {
    let owner = node(300, 3);
    let range = KeyRange {
        start: node(200, 2).id,
        end: owner.id,
    };
    let in_range: Vec<Vec<u8>> = (0..100_000)
        .map(|i| format!("k{i}").into_bytes())
        .filter(|k| range.contains(&Id::of_key(k)))
        .take(2)
        .collect();
    (owner, range, in_range)
}

#[test]
fn an_owners_range_is_cached_and_the_next_key_in_it_skips_the_lookup() {
    let mut fx = Fixture::three_processes();
    let mut requests = Requests::new(0);
    let (owner, range, in_range) = owner_range_and_two_keys();
    start(&mut requests, &mut fx, 1, put_op(&in_range[0]));
    lookup_found(&mut requests, &mut fx, 1, owner);
    let sent = requests_sent(&mut fx);
    reply(
        &mut requests,
        &mut fx,
        owner,
        sent[0].1,
        stored(),
        Some(range),
    );
    lookups_sent(&mut fx);
    // The second key of that range goes straight to its owner.
    start(&mut requests, &mut fx, 2, put_op(&in_range[1]));
    assert!(!requests.owns_lookup(&LookupId(2)));
    assert_eq!(lookups_sent(&mut fx), 0);
    let sent = requests_sent(&mut fx);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, owner);
    // Once the owner says it is not the owner any more, the cache forgets it.
    reply(
        &mut requests,
        &mut fx,
        owner,
        sent[0].1,
        OpResult::WrongOwner,
        None,
    );
    assert!(requests.owns_lookup(&LookupId(2)), "looked up after all");
}

#[test]
fn operations_are_refused_at_once_when_over_the_limits() {
    let mut fx = Fixture::three_processes();
    let mut requests = Requests::new(0);
    let now = fx.now;
    let max = fx.config.max_kv_ops;
    let big = vec![0u8; fx.config.max_key + 1];
    requests.start(&mut fx.cx(), now, 1, put_op(&big), None, 0);
    requests.start(&mut fx.cx(), now, 2, put_op(b"k"), None, max);
    let done: Vec<_> = fx.io.done.drain(..).collect();
    assert!(matches!(done[0], (1, Err(OpError::TooLarge { .. }))));
    assert_eq!(done[1], (2, Err(OpError::Overloaded)));
    assert_eq!(requests.in_flight(), 0);
}

#[test]
fn only_the_process_asked_may_answer_and_no_one_else_claims_a_range() {
    let mut fx = Fixture::three_processes();
    let mut requests = Requests::new(0);
    let (owner, range, in_range) = owner_range_and_two_keys();
    let liar = node(250, 4);
    start(&mut requests, &mut fx, 1, put_op(&in_range[0]));
    lookup_found(&mut requests, &mut fx, 1, owner);
    let sent = requests_sent(&mut fx);
    // Another member answers the request number it guessed, claiming the
    // range for itself: dropped, the operation still waits for the owner.
    let liars_range = KeyRange {
        start: node(200, 2).id,
        end: liar.id,
    };
    reply(
        &mut requests,
        &mut fx,
        liar,
        sent[0].1,
        stored(),
        Some(liars_range),
    );
    assert!(fx.io.done.is_empty());
    assert_eq!(requests.in_flight(), 1);
    reply(
        &mut requests,
        &mut fx,
        owner,
        sent[0].1,
        stored(),
        Some(range),
    );
    assert_eq!(fx.io.done.drain(..).count(), 1);
    // The owner cache holds the owner's range, not the liar's: the next
    // key goes to the owner.
    lookups_sent(&mut fx);
    start(&mut requests, &mut fx, 2, put_op(&in_range[1]));
    let sent = requests_sent(&mut fx);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, owner);
}

#[test]
fn an_owner_never_ready_ends_not_ready_at_the_deadline() {
    // Under authority an owner that holds no lease answers `NotReady`
    // (nothing done); asked again until the deadline, the operation then
    // ends `NotReady` — definite — not `Timeout`, which would say the
    // write may have happened.
    assert_eq!(
        refused_to_the_end(OpResult::NotReady, false),
        OpError::NotReady
    );
    // Unless an earlier attempt went unanswered: it may have been applied
    // (the retries were refused, not the write).
    assert_eq!(
        refused_to_the_end(OpResult::NotReady, true),
        OpError::Timeout
    );
}

#[test]
fn an_owner_overloaded_to_the_end_ends_overloaded() {
    // An overloaded owner refuses unstored: an operation refused until it
    // ends did nothing, and says so (the client may retry safely) ...
    assert_eq!(
        refused_to_the_end(OpResult::Overloaded, false),
        OpError::Overloaded
    );
    // ... unless an earlier attempt went unanswered.
    assert_eq!(
        refused_to_the_end(OpResult::Overloaded, true),
        OpError::Timeout
    );
}

/// A put whose owner answers `answer` (`NotReady` or `Overloaded`) to
/// every request until the operation ends (after leaving the first
/// unanswered if `first_lost`): how it ends.
fn refused_to_the_end(answer: OpResult, first_lost: bool) -> OpError {
    let mut fx = Fixture::three_processes();
    fx.config.authority = true;
    let mut requests = Requests::new(0);
    let key = key_outside(&fx);
    let owner = node(300, 3);
    start(&mut requests, &mut fx, 1, put_op(&key));
    lookup_found(&mut requests, &mut fx, 1, owner);
    if first_lost {
        assert_eq!(requests_sent(&mut fx).len(), 1);
        fx.advance(fx.config.kv_timeout * 3 / 5);
        let now = fx.now;
        requests.handle_timeout(&mut fx.cx(), now);
    }
    let (mut lookup, mut asked) = (1, 0);
    while fx.io.done.is_empty() {
        for (_, req, _, _) in requests_sent(&mut fx) {
            asked += 1;
            reply(&mut requests, &mut fx, owner, req, answer.clone(), None);
        }
        if requests.owns_lookup(&LookupId(lookup + 1)) {
            lookup += 1;
            lookup_found(&mut requests, &mut fx, lookup, owner);
            continue;
        }
        let at = requests.poll_timeout().expect("a retry or the deadline");
        fx.now = at;
        let now = fx.now;
        requests.handle_timeout(&mut fx.cx(), now);
    }
    // (Less time is left after a lost first attempt; an overloaded owner
    // is asked less and less often.)
    let least = match (&answer, first_lost) {
        (OpResult::NotReady, true) => 3,
        (OpResult::NotReady, false) => 6,
        _ => 1,
    };
    assert!(
        asked > least,
        "asked only {asked} times: NotReady is not bounded by attempts"
    );
    let mut done: Vec<_> = fx.io.done.drain(..).collect();
    assert_eq!(done.len(), 1);
    match done.pop() {
        Some((1, Err(e))) => e,
        other => panic!("{other:?}"),
    }
}

/// Under authority a write whose owner refuses the connection (a node
/// restarted on another address) goes to the next owner: it never
/// arrived. Once a connection that may have carried it closed, it may
/// have: it goes as a retry (the same id, flagged), which the next owner
/// answers from the record's log rather than apply twice.
#[test]
fn a_write_to_a_refusing_owner_goes_again_as_a_retry_if_a_closed_connection_carried_it() {
    for carried in [false, true] {
        let mut fx = Fixture::three_processes();
        fx.config.authority = true;
        let mut requests = Requests::new(0);
        let key = key_outside(&fx);
        start(&mut requests, &mut fx, 1, put_op(&key));
        let gone = node(300, 3);
        lookup_found(&mut requests, &mut fx, 1, gone);
        assert_eq!(requests_sent(&mut fx).len(), 1);
        if carried {
            requests.connection_closed(gone.addr);
        }
        let now = fx.now;
        requests.peers_failed(&mut fx.cx(), now, true, |n| n.addr == gone.addr);
        let done: Vec<_> = fx.io.done.drain(..).collect();
        assert!(done.is_empty(), "{done:?}");
        assert!(requests.owns_lookup(&LookupId(2)), "looked up again");
        lookup_found(&mut requests, &mut fx, 2, node(400, 4));
        let sent: Vec<(u64, bool)> = fx
            .sent()
            .into_iter()
            .filter_map(|e| match e.msg {
                Message::Request { op_id, retry, .. } => Some((op_id, retry)),
                _ => None,
            })
            .collect();
        assert_eq!(
            sent,
            vec![(1, carried)],
            "the same operation, a retry iff carried"
        );
    }
}

/// The serving side: a retry of a named operation that arrives while its
/// first attempt is still being served is told to come back (`Overloaded`,
/// not served twice); once answered, a retry gets that answer again.
#[test]
fn a_retry_arriving_while_the_first_attempt_is_served_is_not_served_twice() {
    let mut fx = Fixture::three_processes();
    let mut requests = Requests::new(0);
    let key = key_in(&fx);
    let coordinator = node(300, 3);
    let to = Target::from(fx.me);
    let arrive = |requests: &mut Requests, fx: &mut Fixture, req: u64| {
        let now = fx.now;
        let request = (req, put_op(&key), 42, 1000, req > 1);
        requests.handle_request(&mut fx.cx(), now, (coordinator, to), request, 0);
    };
    let replies = |fx: &mut Fixture| -> Vec<(u64, OpResult)> {
        fx.sent()
            .into_iter()
            .filter_map(|e| match e.msg {
                Message::Reply { req, result, .. } => Some((req, result)),
                _ => None,
            })
            .collect()
    };
    arrive(&mut requests, &mut fx, 1);
    let served: Vec<Serve> = fx.io.serve.drain(..).collect();
    assert_eq!(served.len(), 1);
    assert_eq!(
        served[0].name,
        Some(OpName {
            id: 42,
            retry: false
        })
    );
    // The retry while the first is served: come back later.
    arrive(&mut requests, &mut fx, 2);
    assert!(fx.io.serve.is_empty(), "served twice");
    assert_eq!(replies(&mut fx), vec![(2, OpResult::Overloaded)]);
    // The first is answered; the next retry gets that answer.
    let now = fx.now;
    let reply = served.into_iter().next().expect("served").reply;
    requests.answer(&mut fx.cx(), now, reply, stored());
    assert_eq!(replies(&mut fx), vec![(1, stored())]);
    arrive(&mut requests, &mut fx, 3);
    assert!(fx.io.serve.is_empty());
    assert_eq!(replies(&mut fx), vec![(3, stored())]);
}
