//! Glob patterns as Redis reads them in `KEYS` and `SCAN … MATCH`: `*`
//! any run of bytes, `?` one byte, `[abc]`, `[^abc]` and `[a-z]` one byte
//! of (or not of) a set, `\x` the byte `x` itself. Bytes, not characters,
//! and case-sensitive.
//!
//! Matched in O(pattern × key) at worst (one backtracking point, the last
//! `*`), so a hostile pattern costs no more than a long one.

/// Does `key` match `pattern`?
pub fn matches(pattern: &[u8], key: &[u8]) -> bool {
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
    let not = pattern.get(1) == Some(&b'^');
    let mut i = if not { 2 } else { 1 };
    let mut hit = false;
    loop {
        match pattern.get(i) {
            None => break,
            Some(b']') => {
                i += 1;
                break;
            }
            Some(b'\\') if i + 1 < pattern.len() => {
                hit |= pattern[i + 1] == c;
                i += 2;
            }
            Some(&a) if pattern.get(i + 1) == Some(&b'-') && i + 2 < pattern.len() => {
                let b = pattern[i + 2];
                let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                hit |= (lo..=hi).contains(&c);
                i += 3;
            }
            Some(&a) => {
                hit |= a == c;
                i += 1;
            }
        }
    }
    (hit != not).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::matches;
    use proptest::prelude::*;

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
