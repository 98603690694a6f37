//! One vnode alone, fed failures directly.

use super::VNode;
use crate::config::Config;
use crate::testkit::node;
use crate::{Event, KeyRange, Time};

/// A vnode `me` converged on the ring `me → b → c → me`.
fn three_ring() -> (VNode, [crate::NodeRef; 3]) {
    let (me, b, c) = (node(100, 1), node(400, 2), node(700, 3));
    let mut v = VNode::new(Config::default(), me, 7);
    v.start_converged(Time::from_millis(0), c, &[b, c, me], |_| b);
    (v, [me, b, c])
}

/// The last survivor owns every key, even when its predecessor was
/// dropped while a dead successor was still listed (the order a real
/// node often notices deaths in: the predecessor check fails first).
#[test]
fn a_survivor_that_loses_its_predecessor_first_still_takes_the_whole_ring() {
    let (mut v, [me, b, c]) = three_ring();
    let now = Time::from_millis(1_000);
    v.handle_unreachable(now, c.addr);
    assert_eq!(v.table().predecessor(), None);
    assert_eq!(v.table().successor(), b);
    assert_eq!(
        v.range().map(|r| r.start),
        Some(c.id),
        "nothing changes yet"
    );
    v.handle_unreachable(now, b.addr);
    assert_eq!(v.table().successor(), me);
    let whole = KeyRange {
        start: me.id,
        end: me.id,
    };
    assert_eq!(v.range(), Some(whole));
    let told = std::iter::from_fn(|| v.poll_event())
        .any(|e| matches!(e, Event::RangeChanged { new, .. } if new == whole));
    assert!(told, "the application hears of the new range");
}

/// While a live successor remains, a lost predecessor leaves the range
/// alone: the keys between are not ours until a new predecessor says so.
#[test]
fn a_lost_predecessor_alone_keeps_the_range() {
    let (mut v, [_, b, c]) = three_ring();
    v.handle_unreachable(Time::from_millis(1_000), c.addr);
    assert_eq!(v.table().successor(), b);
    assert_eq!(v.range().map(|r| (r.start, r.end)), Some((c.id, v.me().id)));
}
