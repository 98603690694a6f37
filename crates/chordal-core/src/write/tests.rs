use super::*;
use crate::Id;

fn version(hlc: u64) -> Version {
    Version {
        term: 0,
        hlc,
        node: Id::from_u64(1),
    }
}

fn record(value: Option<&str>, hlc: u64, expires: Option<u64>) -> Record {
    Record::new(
        b"k".to_vec(),
        version(hlc),
        value.map(|v| v.as_bytes().to_vec()),
    )
    .expiring(expires.map(Time::from_micros))
}

fn put(condition: Condition) -> Intent {
    Intent::Put {
        value: b"new".to_vec(),
        opts: WriteOptions {
            condition,
            ..WriteOptions::default()
        },
    }
}

const NOW: Time = Time::from_micros(1_000);

fn written(d: &Decision) -> bool {
    matches!(d, Decision::Write { .. })
}

#[test]
fn create_only_writes_only_when_nothing_live_is_there() {
    let live = record(Some("old"), 5, None);
    let dead = record(None, 5, None);
    let expired = record(Some("old"), 5, Some(1_000));
    assert!(written(&decide(put(Condition::Absent), None, NOW, 10)));
    assert!(written(&decide(
        put(Condition::Absent),
        Some(&dead),
        NOW,
        10
    )));
    assert!(written(&decide(
        put(Condition::Absent),
        Some(&expired),
        NOW,
        10
    )));
    let refused = OpResult::PreconditionFailed {
        current: Some(version(5)),
    };
    assert_eq!(
        decide(put(Condition::Absent), Some(&live), NOW, 10),
        Decision::Answer(refused)
    );
}

/// A backup's terms are another ring's: a restore is older or newer
/// than the key's record by the clock alone.
#[test]
fn a_restore_is_compared_by_its_clock_not_by_a_foreign_term() {
    let mut current = record(Some("now"), 2_000, None);
    current.version.term = 2;
    let backup = |hlc: u64| {
        Intent::Update(Change::Restore {
            version: Version {
                term: 9,
                hlc,
                node: Id::from_u64(1),
            },
            value: Some(b"backed up".to_vec()),
            expires: None,
            kind: crate::Kind::String,
        })
    };
    let older = decide(backup(1_000), Some(&current), NOW, 100);
    assert_eq!(
        older,
        Decision::Answer(OpResult::PreconditionFailed {
            current: Some(current.version)
        }),
        "a higher term does not make an older backup win"
    );
    assert!(written(&decide(backup(3_000), Some(&current), NOW, 100)));
    // The same clock and writer: the same write, written again.
    assert!(written(&decide(backup(2_000), Some(&current), NOW, 100)));
}

#[test]
fn compare_version_needs_exactly_the_current_version() {
    let live = record(Some("old"), 5, None);
    assert!(written(&decide(
        put(Condition::Version(version(5))),
        Some(&live),
        NOW,
        10
    )));
    assert_eq!(
        decide(put(Condition::Version(version(4))), Some(&live), NOW, 10),
        Decision::Answer(OpResult::PreconditionFailed {
            current: Some(version(5))
        })
    );
    assert_eq!(
        decide(put(Condition::Present), None, NOW, 10),
        Decision::Answer(OpResult::PreconditionFailed { current: None })
    );
}

#[test]
fn increments_parse_keep_the_expiry_and_refuse_overflow() {
    let n = record(Some("41"), 5, Some(9_000));
    assert_eq!(
        decide(Intent::Update(Change::IncrBy(1)), Some(&n), NOW, 10),
        Decision::Write {
            value: Some(b"42".to_vec()),
            expires: Some(Time::from_micros(9_000)),
            then: Then::Updated(42),
        }
    );
    let absent = decide(Intent::Update(Change::IncrBy(-3)), None, NOW, 10);
    assert!(matches!(
        absent,
        Decision::Write {
            then: Then::Updated(-3),
            ..
        }
    ));
    let text = record(Some("4x"), 5, None);
    assert_eq!(
        decide(Intent::Update(Change::IncrBy(1)), Some(&text), NOW, 10),
        Decision::Answer(OpResult::NotAnInteger)
    );
    let max = record(Some(&i64::MAX.to_string()), 5, None);
    assert_eq!(
        decide(Intent::Update(Change::IncrBy(1)), Some(&max), NOW, 10),
        Decision::Answer(OpResult::Overflow)
    );
    assert_eq!(parse_integer(b"+1"), None);
    assert_eq!(parse_integer(b" 1"), None);
    assert_eq!(parse_integer(b"-12"), Some(-12));
}

#[test]
fn appends_grow_up_to_the_value_limit() {
    let v = record(Some("abc"), 5, None);
    let d = decide(
        Intent::Update(Change::Append(b"de".to_vec())),
        Some(&v),
        NOW,
        5,
    );
    assert!(matches!(
        d,
        Decision::Write {
            then: Then::Updated(5),
            ..
        }
    ));
    let d = decide(
        Intent::Update(Change::Append(b"def".to_vec())),
        Some(&v),
        NOW,
        5,
    );
    assert_eq!(
        d,
        Decision::Answer(OpResult::TooLarge { size: 6, limit: 5 })
    );
}

#[test]
fn deletes_and_expiry_changes_need_a_live_value() {
    let v = record(Some("abc"), 5, None);
    let delete = || Intent::Delete {
        opts: WriteOptions {
            return_old: true,
            ..WriteOptions::default()
        },
    };
    assert_eq!(
        decide(delete(), None, NOW, 10),
        Decision::Answer(OpResult::NotFound)
    );
    assert_eq!(
        decide(delete(), Some(&v), NOW, 10),
        Decision::Write {
            value: None,
            expires: None,
            then: Then::Replaced(Some(b"abc".to_vec())),
        }
    );
    let persist = decide(Intent::Update(Change::Expire(None)), Some(&v), NOW, 10);
    assert!(matches!(
        persist,
        Decision::Answer(OpResult::Updated { number: 0, .. })
    ));
    let at = Some(Time::from_micros(5_000));
    assert!(written(&decide(
        Intent::Update(Change::Expire(at)),
        Some(&v),
        NOW,
        10
    )));
    assert_eq!(
        decide(Intent::Update(Change::Expire(at)), None, NOW, 10),
        Decision::Answer(OpResult::NotFound)
    );
}

#[test]
fn keep_ttl_takes_the_current_expiry() {
    let v = record(Some("abc"), 5, Some(7_000));
    let intent = Intent::Put {
        value: b"x".to_vec(),
        opts: PutOptions {
            expiry: Expiry::Keep,
            ..PutOptions::default()
        }
        .at(NOW),
    };
    assert!(matches!(
        decide(intent, Some(&v), NOW, 10),
        Decision::Write { expires: Some(t), .. } if t == Time::from_micros(7_000)
    ));
    assert_eq!(
        Expiry::After(Duration::from_micros(5)).resolve(NOW),
        Some(Time::from_micros(1_005))
    );
}

#[test]
fn consistency_counts_copies() {
    assert_eq!(Consistency::Owner.copies_needed(3, 3), 1);
    assert_eq!(Consistency::Quorum.copies_needed(3, 3), 2);
    assert_eq!(Consistency::All.copies_needed(3, 3), 3);
    assert_eq!(Consistency::All.copies_needed(3, 2), 2);
    assert_eq!(Consistency::Quorum.copies_needed(5, 5), 3);
}

fn update(change: Change, current: Option<&Record>) -> Decision {
    decide(Intent::Update(change), current, NOW, 100)
}

fn wrote(d: Decision) -> (Vec<u8>, Then) {
    match d {
        Decision::Write { value, then, .. } => (value.unwrap_or_default(), then),
        other => panic!("wrote nothing: {other:?}"),
    }
}

#[test]
fn setrange_pads_overwrites_and_keeps_the_expiry() {
    let r = record(Some("Hello World"), 1, Some(5_000));
    let d = update(
        Change::SetRange {
            offset: 6,
            bytes: b"Redis".to_vec(),
        },
        Some(&r),
    );
    let Decision::Write {
        value,
        expires,
        then,
    } = d
    else {
        panic!("a write")
    };
    assert_eq!(value.as_deref(), Some(&b"Hello Redis"[..]));
    assert_eq!(expires, r.expires);
    assert_eq!(then, Then::Updated(11));
    // A missing key: zero bytes up to the offset.
    let (v, then) = wrote(update(
        Change::SetRange {
            offset: 3,
            bytes: b"ab".to_vec(),
        },
        None,
    ));
    assert_eq!((v, then), (b"\0\0\0ab".to_vec(), Then::Updated(5)));
    // Nothing to write: the length, nothing written.
    let empty = |r| {
        update(
            Change::SetRange {
                offset: 50,
                bytes: vec![],
            },
            r,
        )
    };
    assert!(matches!(
        empty(Some(&r)),
        Decision::Answer(OpResult::Updated { number: 11, .. })
    ));
    assert!(matches!(
        empty(None),
        Decision::Answer(OpResult::Updated { number: 0, .. })
    ));
    // Past the value limit (100 here).
    let big = update(
        Change::SetRange {
            offset: 99,
            bytes: b"xy".to_vec(),
        },
        None,
    );
    assert!(matches!(
        big,
        Decision::Answer(OpResult::TooLarge {
            size: 101,
            limit: 100
        })
    ));
}

#[test]
fn setbit_answers_the_old_bit_and_writes_only_a_change() {
    let (v, then) = wrote(update(
        Change::SetBit {
            offset: 7,
            bit: true,
        },
        None,
    ));
    assert_eq!((v, then), (vec![0x01], Then::Updated(0)));
    let r = record(Some("\u{1}"), 1, None);
    // Already set: answered, nothing written.
    let same = update(
        Change::SetBit {
            offset: 7,
            bit: true,
        },
        Some(&r),
    );
    assert!(matches!(
        same,
        Decision::Answer(OpResult::Updated { number: 1, .. })
    ));
    let (v, then) = wrote(update(
        Change::SetBit {
            offset: 7,
            bit: false,
        },
        Some(&r),
    ));
    assert_eq!((v, then), (vec![0x00], Then::Updated(1)));
    // A 0 past the end still grows the value (Redis does).
    let (v, _) = wrote(update(
        Change::SetBit {
            offset: 17,
            bit: false,
        },
        Some(&r),
    ));
    assert_eq!(v, vec![0x01, 0, 0]);
    let big = update(
        Change::SetBit {
            offset: 800,
            bit: true,
        },
        None,
    );
    assert!(matches!(big, Decision::Answer(OpResult::TooLarge { .. })));
}

#[test]
fn incrbyfloat_adds_and_writes_the_shortest_text() {
    let add = |cur: Option<&str>, by: &str| {
        let r = cur.map(|c| record(Some(c), 1, None));
        update(Change::IncrByFloat(by.as_bytes().to_vec()), r.as_ref())
    };
    // Redis's examples.
    assert_eq!(
        wrote(add(Some("10.50"), "0.1")),
        (b"10.6".to_vec(), Then::Written)
    );
    assert_eq!(
        wrote(add(Some("5.0e3"), "2.0e2")),
        (b"5200".to_vec(), Then::Written)
    );
    assert_eq!(wrote(add(None, "-0.5")).0, b"-0.5".to_vec());
    assert_eq!(wrote(add(Some("1"), "-1")).0, b"0".to_vec());
    for bad in ["abc", " 1", "1 ", "inf", "nan", ""] {
        assert_eq!(
            add(Some(bad), "1"),
            Decision::Answer(OpResult::NotAFloat),
            "{bad:?}"
        );
        assert_eq!(
            add(Some("1"), bad),
            Decision::Answer(OpResult::NotAFloat),
            "{bad:?}"
        );
    }
    assert_eq!(
        add(Some("1.7e308"), "1.7e308"),
        Decision::Answer(OpResult::Overflow)
    );
}

#[test]
fn getex_and_conditional_expiries() {
    let persistent = record(Some("v"), 1, None);
    let expiring = record(Some("v"), 1, Some(5_000));
    let t = |us| Some(Time::from_micros(us));
    // GETEX: a new expiry is written and answered with the value.
    let (v, then) = wrote(update(Change::GetEx(t(9_000)), Some(&persistent)));
    assert_eq!((v, then), (b"v".to_vec(), Then::Written));
    assert!(matches!(
        update(Change::GetEx(t(5_000)), Some(&expiring)),
        Decision::Answer(OpResult::Found { .. })
    ));
    assert_eq!(
        update(Change::GetEx(None), None),
        Decision::Answer(OpResult::NotFound)
    );
    // EXPIRE NX / XX / GT / LT, with "never" later than any time.
    let cases = [
        (ExpireWhen::Nx, &persistent, t(9_000), true),
        (ExpireWhen::Nx, &expiring, t(9_000), false),
        (ExpireWhen::Xx, &persistent, t(9_000), false),
        (ExpireWhen::Xx, &expiring, t(9_000), true),
        (ExpireWhen::Gt, &expiring, t(9_000), true),
        (ExpireWhen::Gt, &expiring, t(2_000), false),
        (ExpireWhen::Gt, &persistent, t(9_000), false),
        (ExpireWhen::Lt, &expiring, t(2_000), true),
        (ExpireWhen::Lt, &expiring, t(9_000), false),
        (ExpireWhen::Lt, &persistent, t(9_000), true),
        (ExpireWhen::LtExisting, &persistent, t(9_000), false),
        (ExpireWhen::LtExisting, &expiring, t(2_000), true),
        (ExpireWhen::LtExisting, &expiring, t(9_000), false),
        (ExpireWhen::Lt, &expiring, None, false),
    ];
    for (when, r, expires, sets) in cases {
        let d = update(Change::ExpireIf { expires, when }, Some(r));
        assert_eq!(
            written(&d),
            sets,
            "{when:?} on {:?} to {expires:?}",
            r.expires
        );
        if !sets {
            assert!(matches!(
                d,
                Decision::Answer(OpResult::Updated { number: 0, .. })
            ));
        }
    }
    let missing = update(
        Change::ExpireIf {
            expires: t(1),
            when: ExpireWhen::Xx,
        },
        None,
    );
    assert_eq!(missing, Decision::Answer(OpResult::NotFound));
}
