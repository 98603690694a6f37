use super::*;

fn r(a: u64, b: u64) -> KeyRange {
    KeyRange {
        start: Id::from_u64(a),
        end: Id::from_u64(b),
    }
}

/// A config of two: its holder left gracefully and handed its term
/// to us. Its grant is counted, and we read nobody first (our store
/// took its records) — only from the holder that handed over, and only
/// for that term; anyone else still reads a read quorum of the config.
#[test]
fn a_handed_over_term_needs_no_catch_up_from_its_config() {
    let node = |port: u16, at: u64| {
        NodeRef::new(Id::from_u64(at), SocketAddr::from(([127, 0, 0, 1], port)))
    };
    let (me, leaver) = (node(1, 10), node(2, 20));
    let range = r(10, 20);
    let settled = Settled {
        term: 5,
        holder: leaver,
        config: vec![leaver, me],
        pending: Vec::new(),
    };
    let mut learned = RingMap::default();
    learned.set(range, Some(settled));
    // Our grant and the leaver's, given ahead in its handover.
    let a = Attempt {
        req: 1,
        deadline: Time::from_millis(0),
        asked: vec![me, leaver],
        granted: vec![me.addr, leaver.addr],
        grantors: vec![me, leaver],
        refused: 0,
        learned,
        wait: None,
    };
    let config = [me];
    let handover = |term: u64| Handover {
        from: leaver,
        range,
        term,
        known: Vec::new(),
        until: Time::from_millis(60_000),
    };
    let clean = VecDeque::new();
    let handed = VecDeque::from([handover(5)]);
    let done = complete(&me, (range, &config), &a, (&clean, &handed), 0).expect("granted");
    assert!(
        done.catch_up.is_empty(),
        "read the config of a handed-over term"
    );
    assert_eq!(done.pending.len(), 1, "the next holder must still read it");
    let older = VecDeque::from([handover(4)]);
    let done = complete(&me, (range, &config), &a, (&clean, &older), 0).expect("granted");
    assert_eq!(
        done.catch_up.len(),
        1,
        "another term's handover is not this one's"
    );
}

/// A lone survivor: the last term there was settled by a config whose
/// other two processes are gone. It takes nothing — unless told to
/// re-form the ring above that term, and then it reads nobody first.
#[test]
fn only_a_forced_term_skips_a_predecessor_whose_majority_is_gone() {
    let node = |port: u16, at: u64| {
        NodeRef::new(Id::from_u64(at), SocketAddr::from(([127, 0, 0, 1], port)))
    };
    let (me, dead1, dead2) = (node(1, 10), node(2, 20), node(3, 30));
    let range = r(30, 10);
    let mut learned = RingMap::default();
    let old = Settled {
        term: 7,
        holder: dead1,
        config: vec![dead1, dead2, me],
        pending: Vec::new(),
    };
    learned.set(range, Some(old));
    let a = Attempt {
        req: 1,
        deadline: Time::from_millis(0),
        asked: vec![me, dead1, dead2],
        granted: vec![me.addr],
        grantors: vec![me],
        refused: 0,
        learned,
        wait: None,
    };
    let clean = (&VecDeque::new(), &VecDeque::new());
    let config = [me];
    assert!(complete(&me, (range, &config), &a, clean, 0).is_none());
    assert!(
        complete(&me, (range, &config), &a, clean, 7).is_none(),
        "a term settled at the force point is not given up"
    );
    let done = complete(&me, (range, &config), &a, clean, 8).expect("forced");
    assert!(done.catch_up.is_empty() && done.pending.is_empty());
    // A point nobody knows a term for: taken only when forced.
    let mut a = a;
    a.learned = RingMap::default();
    assert!(complete(&me, (range, &config), &a, clean, 0).is_none());
    assert!(complete(&me, (range, &config), &a, clean, 8).is_some());
}

#[test]
fn within_follows_the_ring() {
    assert!(within(&r(10, 20), &r(10, 20)));
    assert!(within(&r(12, 20), &r(10, 20)));
    assert!(within(&r(10, 15), &r(10, 20)));
    assert!(!within(&r(5, 15), &r(10, 20)));
    assert!(!within(&r(15, 25), &r(10, 20)));
    assert!(within(&r(90, 5), &r(80, 10)));
    assert!(!within(&r(20, 10), &r(10, 20)));
    assert!(within(&r(20, 10), &r(7, 7)));
    assert!(!within(&r(7, 7), &r(10, 20)));
}

/// A term held over two adjacent intervals (a vnode's range grew
/// while it held the first) covers a promise over their union: the
/// promise table merges the pieces. Seen as a leave that counted on
/// itself and waited its full 30 s.
#[test]
fn a_term_held_over_two_adjacent_intervals_covers_their_union() {
    let me = NodeRef::new(Id::from_u64(30), SocketAddr::from(([127, 0, 0, 1], 1)));
    let held = |range: KeyRange| Hold {
        vnode: me,
        range,
        term: 5,
        config: vec![me],
        replicas: Vec::new(),
        above: 0,
        wide: false,
        state: State::Held(Held {
            valid_until: Time::ZERO,
            catch_up: Vec::new(),
            pending: Vec::new(),
            settling: Vec::new(),
            renewal: None,
            renew_at: Time::ZERO,
            last: None,
            pending_told: Vec::new(),
            caught_up_at: None,
            since: 5,
            grantors: vec![me],
            asked: vec![me],
            reask: None,
        }),
        previous: None,
    };
    let mut holds = Holds::default();
    holds.holds.insert(1, held(r(10, 20)));
    holds.holds.insert(2, held(r(20, 30)));
    assert!(holds.holds_term(&me, 5, r(10, 30)));
    assert!(holds.holds_term(&me, 5, r(15, 25)));
    assert!(!holds.holds_term(&me, 5, r(5, 30)), "(5, 10] is not held");
    assert!(!holds.holds_term(&me, 4, r(10, 20)), "another term");
}

/// A part given up while its term is still being prepared (a joiner
/// came) is released to everyone the prepare asked, not only to the
/// config: a process asked because it knew an older term there may
/// have granted, and its promise would otherwise keep refusing the
/// joiner until its lease ran out.
#[test]
fn a_release_goes_to_everyone_the_prepare_asked() {
    let node = |i: u64| NodeRef::new(Id::from_u64(i), SocketAddr::from(([127, 0, 0, i as u8], 1)));
    let (me, replica, old_holder) = (node(30), node(40), node(10));
    let attempt = Attempt {
        req: 9,
        deadline: Time::from_millis(2_000),
        asked: vec![me, replica, old_holder],
        granted: vec![me.addr, replica.addr],
        grantors: vec![me, replica],
        refused: 0,
        learned: RingMap::default(),
        wait: None,
    };
    let h = Hold {
        vnode: me,
        range: r(10, 30),
        term: 4,
        config: vec![me, replica],
        replicas: vec![replica],
        above: 0,
        wide: false,
        state: State::Preparing(attempt),
        previous: None,
    };
    let given_up = releasing(&h, r(10, 20));
    assert_eq!(given_up.terms, vec![4]);
    for n in [me, replica, old_holder] {
        assert!(given_up.to.contains(&n), "{n:?} is not told");
    }
}

/// Make-before-break: while the next term of a new config is
/// prepared, the term before decides (its lease, its old replicas);
/// once the next is held, writes of both may still be acknowledged —
/// unless the run broke (the next began after the old had lapsed).
#[test]
fn the_term_before_a_new_config_decides_until_the_next_is_held() {
    let at = Time::from_millis;
    let me = NodeRef::new(Id::from_u64(30), SocketAddr::from(([127, 0, 0, 1], 1)));
    let old_replica = NodeRef::new(Id::from_u64(40), SocketAddr::from(([127, 0, 0, 2], 1)));
    let key = Id::from_u64(25);
    let mut holds = Holds::default();
    let attempt = Attempt {
        req: 9,
        deadline: at(2_000),
        asked: Vec::new(),
        granted: Vec::new(),
        grantors: Vec::new(),
        refused: 0,
        learned: RingMap::default(),
        wait: None,
    };
    holds.holds.insert(
        1,
        Hold {
            vnode: me,
            range: r(10, 30),
            term: 6,
            config: vec![me],
            replicas: Vec::new(),
            above: 0,
            wide: false,
            state: State::Preparing(attempt),
            previous: Some(Previous {
                term: 5,
                replicas: vec![old_replica],
                valid_until: at(1_000),
                since: 3,
            }),
        },
    );
    let lease = holds
        .lease(&me, &key, at(500))
        .expect("the old term decides");
    assert_eq!((lease.term, lease.replicas), (5, &[old_replica][..]));
    assert!(holds.decides_in(&me, &key, 5, at(500)));
    assert!(
        holds.decides_in(&me, &key, 3, at(500)),
        "the run began at 3"
    );
    assert!(!holds.decides_in(&me, &key, 2, at(500)), "before the run");
    assert!(
        holds.lease(&me, &key, at(1_000)).is_none(),
        "its lease ended"
    );
    assert!(!holds.decides_in(&me, &key, 5, at(1_000)));

    // The next term is held, continuing the run (or not).
    for (since, old_counts) in [(3, true), (6, false)] {
        let h = holds.holds.get_mut(&1).unwrap();
        h.previous = None;
        h.state = State::Held(Held {
            valid_until: at(3_000),
            catch_up: Vec::new(),
            pending: Vec::new(),
            settling: Vec::new(),
            renewal: None,
            renew_at: at(2_000),
            last: None,
            pending_told: Vec::new(),
            caught_up_at: Some(at(900)),
            since,
            grantors: vec![me],
            asked: vec![me],
            reask: None,
        });
        assert_eq!(holds.lease(&me, &key, at(1_500)).map(|l| l.term), Some(6));
        assert!(holds.decides_in(&me, &key, 6, at(1_500)));
        assert_eq!(holds.decides_in(&me, &key, 5, at(1_500)), old_counts);
        assert!(!holds.decides_in(&me, &key, 5, at(3_000)), "lapsed");
    }
}
