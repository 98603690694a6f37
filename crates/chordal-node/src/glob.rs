//! Glob patterns as Redis reads them in `KEYS` and `SCAN … MATCH`: `*`
//! any run of bytes, `?` one byte, `[abc]`, `[^abc]` and `[a-z]` one byte
//! of (or not of) a set, `\x` the byte `x` itself. Bytes, not characters,
//! and case-sensitive.
//!
//! Matched in O(pattern × key) at worst (one backtracking point, the last
//! `*`), so a hostile pattern costs no more than a long one.

/// Patterns with more runs of `*` than this match nothing, as in Redis
/// (whose matcher gives up past this depth of nesting).
const MAX_STARS: usize = 1000;

/// Does `key` match `pattern`?
pub fn matches(pattern: &[u8], key: &[u8]) -> bool {
    if star_runs(pattern) > MAX_STARS {
        return false;
    }
    let (mut p, mut k) = (0, 0);
    // After the last `*` seen: where the pattern goes on, and the key
    // position that `*` has swallowed up to.
    let mut star: Option<(usize, usize)> = None;
    while k < key.len() {
        if pattern.get(p) == Some(&b'*') {
            while pattern.get(p) == Some(&b'*') {
                p += 1;
            }
            if p == pattern.len() {
                return true;
            }
            star = Some((p, k));
            continue;
        }
        if p < pattern.len()
            && let Some(len) = one(&pattern[p..], key[k])
        {
            p += len;
            k += 1;
            continue;
        }
        // A mismatch: let the last `*` swallow one more byte.
        match star {
            Some((after, swallowed)) => {
                star = Some((after, swallowed + 1));
                p = after;
                k = swallowed + 1;
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// How many runs of `*` `pattern` has (escaped ones and those inside
/// `[…]` are not stars).
fn star_runs(pattern: &[u8]) -> usize {
    let (mut runs, mut i, mut after_star) = (0, 0, false);
    while i < pattern.len() {
        let star = pattern[i] == b'*';
        if star && !after_star {
            runs += 1;
        }
        after_star = star;
        i += match pattern[i] {
            b'\\' => 2,
            b'[' => class_len(&pattern[i..]),
            _ => 1,
        };
    }
    runs
}

/// The length of the pattern element that starts `pattern`, if it
/// matches the byte `c`.
fn one(pattern: &[u8], c: u8) -> Option<usize> {
    match pattern[0] {
        b'?' => Some(1),
        b'\\' if pattern.len() >= 2 => (pattern[1] == c).then_some(2),
        b'[' => class(pattern, c),
        b => (b == c).then_some(1),
    }
}

/// `[…]` at the start of `pattern`: its length (to its `]`, or to the end
/// of the pattern if it has none, as Redis reads it), if it matches `c`.
fn class(pattern: &[u8], c: u8) -> Option<usize> {
    let mut hit = false;
    let len = scan_class(pattern, |lo, hi| hit |= (lo..=hi).contains(&c));
    let not = pattern.get(1) == Some(&b'^');
    (hit != not).then_some(len)
}

/// The length of the `[…]` at the start of `pattern`.
fn class_len(pattern: &[u8]) -> usize {
    scan_class(pattern, |_, _| {})
}

/// Walks the `[…]` at the start of `pattern`, handing each byte or range
/// it names to `each` as `(low, high)`; returns its length.
fn scan_class(pattern: &[u8], mut each: impl FnMut(u8, u8)) -> usize {
    let mut i = if pattern.get(1) == Some(&b'^') { 2 } else { 1 };
    loop {
        match pattern.get(i) {
            None => return i,
            Some(b']') => return i + 1,
            Some(b'\\') if i + 1 < pattern.len() => {
                each(pattern[i + 1], pattern[i + 1]);
                i += 2;
            }
            Some(&a) if pattern.get(i + 1) == Some(&b'-') && i + 2 < pattern.len() => {
                let b = pattern[i + 2];
                each(a.min(b), a.max(b));
                i += 3;
            }
            Some(&a) => {
                each(a, a);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches;
    use proptest::prelude::*;

    #[test]
    fn a_pattern_of_more_than_a_thousand_stars_matches_nothing() {
        let key = vec![b'a'; 50_000];
        let pattern = b"*?".repeat(50_000);
        assert!(!matches(&pattern, &key));
        // Escaped stars and stars in classes do not count.
        assert!(matches(&b"\\*".repeat(1001), &b"*".repeat(1001)));
        assert!(matches(&b"[*]".repeat(1001), &b"*".repeat(1001)));
        assert!(matches(&b"*a".repeat(1000), &b"a".repeat(1000)));
    }

    #[test]
    fn patterns_match_as_in_redis() {
        let yes: &[(&str, &str)] = &[
            ("*", ""),
            ("*", "anything"),
            ("h?llo", "hello"),
            ("h*llo", "heeeello"),
            ("h*llo", "hllo"),
            ("h[ae]llo", "hallo"),
            ("h[^e]llo", "hallo"),
            ("h[a-b]llo", "hbllo"),
            ("h[b-a]llo", "hallo"),
            ("h\\*llo", "h*llo"),
            ("key:*:end", "key:1:2:end"),
            ("*a*b*c", "xxaxxbxxc"),
            ("a[bc", "ab"),
            ("[\\]]", "]"),
        ];
        for (p, k) in yes {
            assert!(matches(p.as_bytes(), k.as_bytes()), "{p} should match {k}");
        }
        let no: &[(&str, &str)] = &[
            ("h?llo", "hllo"),
            ("h[^e]llo", "hello"),
            ("h[a-b]llo", "hcllo"),
            ("h\\*llo", "hello"),
            ("abc", "abcd"),
            ("*a*b*c", "xxaxxbxxd"),
            ("", "a"),
            ("a?", "a"),
            ("a[", "a"),
        ];
        for (p, k) in no {
            assert!(
                !matches(p.as_bytes(), k.as_bytes()),
                "{p} should not match {k}"
            );
        }
    }

    /// The same question answered by trying every split at each `*` (the
    /// plain recursive reading, exponential but obviously right), for
    /// patterns of literals, `?` and `*`.
    fn reference(p: &[u8], k: &[u8]) -> bool {
        match p.split_first() {
            None => k.is_empty(),
            Some((b'*', rest)) => (0..=k.len()).any(|i| reference(rest, &k[i..])),
            Some((b'?', rest)) => !k.is_empty() && reference(rest, &k[1..]),
            Some((c, rest)) => k.first() == Some(c) && reference(rest, &k[1..]),
        }
    }

    proptest! {
        #[test]
        fn stars_and_question_marks_agree_with_the_recursive_reading(
            p in proptest::collection::vec(prop_oneof![Just(b'*'), Just(b'?'), Just(b'a'), Just(b'b')], 0..8),
            k in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b')], 0..10),
        ) {
            prop_assert_eq!(matches(&p, &k), reference(&p, &k));
        }

        #[test]
        fn an_escaped_key_matches_only_itself(
            key in proptest::collection::vec(any::<u8>(), 0..12),
            other in proptest::collection::vec(any::<u8>(), 0..12),
        ) {
            let pattern: Vec<u8> = key.iter().flat_map(|&b| [b'\\', b]).collect();
            prop_assert!(matches(&pattern, &key));
            prop_assert_eq!(matches(&pattern, &other), other == key);
        }
    }
}
