use super::*;

const MS: Duration = Duration::from_millis(1);

fn node(name: &str, port: u16) -> NodeRef {
    NodeRef::new(Id::hash(name.as_bytes()), ([127, 0, 0, 1], port).into())
}

/// The upkeep of a process at port 1 that knows `known` (verifying
/// or not).
fn onehop(verify: bool, known: &[NodeRef]) -> OneHop {
    let me: SocketAddr = ([127, 0, 0, 1], 1).into();
    let mut o = OneHop::new(true, verify, me, 1 << 16, (100 * MS, 10_000 * MS, 200 * MS));
    for n in known {
        o.learn(Time::ZERO, *n, true);
    }
    o
}

fn drain(o: &mut OneHop) -> Vec<(Target, Message)> {
    std::iter::from_fn(|| o.poll_transmit()).collect()
}

/// The pings among `out`: (to, request number).
fn pings(out: &[(Target, Message)]) -> Vec<(Target, u64)> {
    out.iter()
        .filter_map(|(t, m)| match m {
            Message::Ping { req } => Some((*t, *req)),
            _ => None,
        })
        .collect()
}

fn events_from(sender: NodeRef, list: &[(NodeRef, bool)]) -> Message {
    let _ = sender;
    Message::MemberEvents {
        req: 9,
        until: Id::hash(b"end"),
        events: list
            .iter()
            .map(|(node, joined)| MemberEvent {
                node: *node,
                joined: *joined,
                by: sender.addr,
            })
            .collect(),
    }
}

fn entries(o: &OneHop) -> Vec<NodeRef> {
    o.entries().collect()
}

/// MemberEvents passed on after the next tick.
fn passed_on(o: &mut OneHop, now: Time) -> usize {
    o.handle_timeout(now, None);
    drain(o)
        .iter()
        .filter(|(_, m)| matches!(m, Message::MemberEvents { .. }))
        .count()
}

#[test]
fn a_forged_departure_of_a_live_node_is_disproved_by_its_answer_and_goes_no_further() {
    let (b, c, liar) = (node("b", 2), node("c", 3), node("liar", 4));
    let mut o = onehop(true, &[b, c, liar]);
    drain(&mut o);
    o.handle_message(Time::ZERO, liar, events_from(liar, &[(b, false)]), |_| {
        false
    });
    let out = drain(&mut o);
    let asked = pings(&out);
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].0, Target::from(b));
    // Still there while being asked; an answer from anyone but b is not
    // b's answer.
    assert!(entries(&o).contains(&b));
    o.probe_answered(Time::ZERO + MS, asked[0].1, liar, true);
    assert_eq!(o.stats().claims_false, 0);
    o.probe_answered(Time::ZERO + MS, asked[0].1, b, true);
    assert!(entries(&o).contains(&b));
    assert_eq!(o.stats().claims_false, 1);
    assert_eq!(passed_on(&mut o, Time::ZERO + 1000 * MS), 0);
}

#[test]
fn a_join_enters_and_is_passed_on_only_once_the_node_itself_answered() {
    let (b, liar) = (node("b", 2), node("liar", 4));
    let invented = node("invented", 4);
    let joiner = node("joiner", 5);
    let mut o = onehop(true, &[b, liar]);
    drain(&mut o);
    let claims = [(invented, true), (joiner, true)];
    o.handle_message(Time::ZERO, liar, events_from(liar, &claims), |_| false);
    let asked = pings(&drain(&mut o));
    assert_eq!(asked.len(), 2);
    assert!(!entries(&o).contains(&invented) && !entries(&o).contains(&joiner));
    // The joiner answers itself; the invented id's process says it
    // has no such vnode (NotHere from another of its vnodes).
    for (to, req) in &asked {
        if to.id == Some(joiner.id) {
            o.probe_answered(Time::ZERO + MS, *req, joiner, true);
        } else {
            o.probe_answered(Time::ZERO + MS, *req, liar, false);
        }
    }
    assert!(entries(&o).contains(&joiner));
    assert!(!entries(&o).contains(&invented));
    assert_eq!(o.stats().claims_false, 1);
    assert!(passed_on(&mut o, Time::ZERO + 1000 * MS) >= 1);
}

#[test]
fn a_departure_is_acted_on_once_the_node_does_not_answer() {
    let (b, gone, c) = (node("b", 2), node("gone", 3), node("c", 4));
    let mut o = onehop(true, &[b, gone, c]);
    drain(&mut o);
    o.handle_message(Time::ZERO, c, events_from(c, &[(gone, false)]), |_| false);
    assert_eq!(pings(&drain(&mut o)).len(), 1);
    assert!(entries(&o).contains(&gone));
    // Silent past two ack timeouts: gone, and the news goes on.
    let later = Time::ZERO + 500 * MS;
    o.handle_timeout(later, None);
    assert!(!entries(&o).contains(&gone));
    assert!(passed_on(&mut o, later + 1000 * MS) >= 1);
}

#[test]
fn one_sender_gets_a_bounded_share_of_checks_and_the_rest_are_dropped() {
    let liar = node("liar", 4);
    let mut o = onehop(true, &[liar]);
    drain(&mut o);
    let flood: Vec<(NodeRef, bool)> = (0..MAX_EVENTS_PER_MESSAGE)
        .map(|i| (node(&format!("invented-{i}"), 4), true))
        .collect();
    o.handle_message(Time::ZERO, liar, events_from(liar, &flood), |_| false);
    let stats = o.stats();
    assert_eq!(stats.claims_checked, MAX_CHECKS_PER_SENDER as u64);
    assert_eq!(
        stats.claims_dropped,
        (MAX_EVENTS_PER_MESSAGE - MAX_CHECKS_PER_SENDER) as u64
    );
    // Unanswered, none enters; the false claims still use the share,
    // so a liar flooding slowly gets no more checks...
    let later = Time::ZERO + 1000 * MS;
    o.handle_timeout(later, None);
    assert_eq!(entries(&o), vec![liar]);
    o.handle_message(later, liar, events_from(liar, &flood[..1]), |_| false);
    assert_eq!(o.stats().claims_checked, MAX_CHECKS_PER_SENDER as u64);
    // ...until a refresh period (10 s here) forgives them.
    let forgiven = later + 10_000 * MS;
    o.handle_timeout(forgiven, None);
    o.handle_message(forgiven, liar, events_from(liar, &flood[..1]), |_| false);
    assert_eq!(o.stats().claims_checked, MAX_CHECKS_PER_SENDER as u64 + 1);
}

#[test]
fn without_verification_hearsay_is_taken_as_said() {
    // The plain-mode behaviour the checks above replace: this is what
    // a forging member exploited.
    let (b, liar) = (node("b", 2), node("liar", 4));
    let invented = node("invented", 4);
    let mut o = onehop(false, &[b, liar]);
    o.handle_message(
        Time::ZERO,
        liar,
        events_from(liar, &[(b, false), (invented, true)]),
        |_| false,
    );
    assert!(!entries(&o).contains(&b));
    assert!(entries(&o).contains(&invented));
}
