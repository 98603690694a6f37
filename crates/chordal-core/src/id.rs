//! 160-bit identifiers on the Chord ring and their modular arithmetic.
//!
//! Every node and every key has an [`Id`]: a big-endian 160-bit number, the
//! SHA-1 of some bytes (Stoica et al., §4.1). Ids live on a circle modulo
//! 2^160, so every interval test here wraps around zero.

use sha1::{Digest, Sha1};
use std::fmt;
use std::str::FromStr;

/// Number of bits in an identifier (`m` in the Chord paper).
pub const ID_BITS: usize = 160;
/// Number of bytes in an identifier.
pub const ID_BYTES: usize = ID_BITS / 8;

/// A point on the identifier circle, big-endian.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Id(pub [u8; ID_BYTES]);

/// Ordered as the 160-bit number it is (the byte order, compared as two
/// integers rather than by `memcmp`: routing compares ids on every hop).
impl Ord for Id {
    fn cmp(&self, other: &Id) -> std::cmp::Ordering {
        self.parts().cmp(&other.parts())
    }
}

impl PartialOrd for Id {
    fn partial_cmp(&self, other: &Id) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Why a string is not an [`Id`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseIdError {
    /// The string is not exactly 40 characters long.
    #[error("an id is 40 hex digits, got {0} characters")]
    Length(usize),
    /// A character outside `0-9a-fA-F`.
    #[error("an id is hex digits only, found {0:?}")]
    NotHex(char),
}

/// Number of hash slots, Redis Cluster's: the top 14 bits of a key's id.
pub const SLOTS: u16 = 16384;

/// The Redis Cluster hash slot of `key`: CRC16 (XMODEM) of its hash tag
/// if it has one, else of the whole key, modulo [`SLOTS`] — what a Redis
/// Cluster client computes (`CLUSTER KEYSLOT`). Equal to
/// `Id::of_key(key).slot()`.
pub fn slot_of(key: &[u8]) -> u16 {
    crc16_xmodem(placed_bytes(key)) % SLOTS
}

/// The bytes of `key` that decide where it lives: its collection's key
/// for a collection's element, then the hash tag if there is one.
fn placed_bytes(key: &[u8]) -> &[u8] {
    let key = crate::collection::key::collection_of(key).unwrap_or(key);
    hash_tag(key).unwrap_or(key)
}

fn crc16_xmodem(bytes: &[u8]) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(bytes)
}

/// The hash tag of `key` (see [`Id::of_key`]), if it has one.
pub fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let rest = &key[open + 1..];
    let close = rest.iter().position(|&b| b == b'}')?;
    (close > 0).then(|| &rest[..close])
}

impl Id {
    /// The id 0.
    pub const ZERO: Id = Id([0; ID_BYTES]);
    /// The largest id, 2^160 - 1.
    pub const MAX: Id = Id([0xff; ID_BYTES]);

    /// SHA-1 of `bytes`: the id of a key, or of a node's advertised address.
    pub fn hash(bytes: &[u8]) -> Id {
        let digest = Sha1::digest(bytes);
        let mut out = [0u8; ID_BYTES];
        out.copy_from_slice(&digest);
        Id(out)
    }

    /// Where key `key` lives on the ring. The key's *placed bytes* are its
    /// hash tag if it has one, else the whole key. The hash tag is Redis
    /// Cluster's: the bytes between the first `{` and the first `}` after
    /// it, if there are any (`{user:42}:cart` and `{user:42}:profile` both
    /// place `user:42`, so one owner decides for both; `{}x` and `x{` have
    /// none). The id's top 14 bits are the placed bytes' Redis Cluster
    /// hash slot ([`slot_of`]), the other 146 bits their SHA-1's: keys are
    /// as evenly spread as SHA-1 spreads them (consistent hashing, Chord
    /// §4.2), and every key of one slot lies on one arc of 1/16384 of the
    /// ring, so a Redis Cluster client that sends a slot's keys to the
    /// slot's owner reaches the key's owner (`CLUSTER SLOTS`, see
    /// docs/client-protocols.md). Use this for every key of the store;
    /// [`Id::hash`] is for node addresses, topics and other names.
    ///
    /// An element of a collection (see `crate::collection`) gets its
    /// collection's id, so that it lives wherever the collection does.
    pub fn of_key(key: &[u8]) -> Id {
        let placed = placed_bytes(key);
        let mut id = Id::hash(placed);
        let slot = crc16_xmodem(placed) % SLOTS;
        // The slot replaces the top 14 bits; the SHA-1's lower 146 stay.
        id.0[0] = (slot >> 6) as u8;
        id.0[1] = ((slot as u8 & 0x3f) << 2) | (id.0[1] & 0x03);
        id
    }

    /// The hash slot this id lies in: its top 14 bits. For a key's id,
    /// the key's [`slot_of`].
    pub fn slot(&self) -> u16 {
        (u16::from(self.0[0]) << 6) | u16::from(self.0[1] >> 2)
    }

    /// The first id of hash slot `slot` (below [`SLOTS`]): the slot's arc
    /// is `[Id::slot_start(s), Id::slot_start(s + 1))`.
    pub fn slot_start(slot: u16) -> Id {
        let mut out = [0u8; ID_BYTES];
        out[0] = (slot >> 6) as u8;
        out[1] = (slot as u8 & 0x3f) << 2;
        Id(out)
    }

    /// The id in the middle of hash slot `slot`'s arc (tests place nodes
    /// there, where no slot boundary is near).
    pub fn slot_middle(slot: u16) -> Id {
        let mut id = Id::slot_start(slot);
        id.0[1] |= 0x02;
        id
    }

    /// Builds an id from a slice; `None` unless it has exactly 20 bytes.
    /// Use this on bytes that came from the network.
    pub fn from_slice(bytes: &[u8]) -> Option<Id> {
        <[u8; ID_BYTES]>::try_from(bytes).ok().map(Id)
    }

    /// The id whose lowest 64 bits are `v` (handy in tests and the simulator).
    pub fn from_u64(v: u64) -> Id {
        let mut out = [0u8; ID_BYTES];
        out[ID_BYTES - 8..].copy_from_slice(&v.to_be_bytes());
        Id(out)
    }

    /// The top 64 bits, for plotting and for cheap approximate arithmetic.
    pub fn high_u64(&self) -> u64 {
        u64::from_be_bytes(self.0[..8].try_into().expect("8 bytes"))
    }

    /// The first id whose top 64 bits are `high` (`high` followed by
    /// zeros): where a scan resumes from a 64-bit cursor.
    pub fn from_high_u64(high: u64) -> Id {
        let mut out = [0u8; ID_BYTES];
        out[..8].copy_from_slice(&high.to_be_bytes());
        Id(out)
    }

    /// The last id sharing this id's top 64 bits (they, then ones): where
    /// a scan page that takes this id's whole group ends.
    pub fn end_of_high_u64(&self) -> Id {
        let mut out = [0xffu8; ID_BYTES];
        out[..8].copy_from_slice(&self.0[..8]);
        Id(out)
    }

    /// The id as a 128-bit high part and a 32-bit low part (for fast
    /// arithmetic).
    fn parts(&self) -> (u128, u32) {
        let hi = u128::from_be_bytes(self.0[..16].try_into().expect("16 bytes"));
        let lo = u32::from_be_bytes(self.0[16..].try_into().expect("4 bytes"));
        (hi, lo)
    }

    fn from_parts(hi: u128, lo: u32) -> Id {
        let mut out = [0u8; ID_BYTES];
        out[..16].copy_from_slice(&hi.to_be_bytes());
        out[16..].copy_from_slice(&lo.to_be_bytes());
        Id(out)
    }

    /// `self + other (mod 2^160)`.
    pub fn wrapping_add(&self, other: &Id) -> Id {
        let ((ah, al), (bh, bl)) = (self.parts(), other.parts());
        let (lo, carry) = al.overflowing_add(bl);
        Id::from_parts(ah.wrapping_add(bh).wrapping_add(carry as u128), lo)
    }

    /// `self - other (mod 2^160)`.
    pub fn wrapping_sub(&self, other: &Id) -> Id {
        let ((ah, al), (bh, bl)) = (self.parts(), other.parts());
        let (lo, borrow) = al.overflowing_sub(bl);
        Id::from_parts(ah.wrapping_sub(bh).wrapping_sub(borrow as u128), lo)
    }

    /// `self XOR other`: how range-sync digests combine (order-free, and
    /// its own inverse).
    pub fn xor(&self, other: &Id) -> Id {
        let mut out = self.0;
        for (o, x) in out.iter_mut().zip(other.0) {
            *o ^= x;
        }
        Id(out)
    }

    /// How many bits the id needs as a number: 0 for 0, `i + 1` when its
    /// highest set bit is bit `i` (so `x < 2^i` exactly when `x.bits() <= i`).
    pub fn bits(&self) -> usize {
        let (hi, lo) = self.parts();
        if hi != 0 {
            160 - hi.leading_zeros() as usize
        } else {
            32 - lo.leading_zeros() as usize
        }
    }

    /// `2^i` for `i < 160`.
    pub fn pow2(i: usize) -> Id {
        assert!(i < ID_BITS, "2^{i} does not fit in an id");
        let mut out = [0u8; ID_BYTES];
        out[ID_BYTES - 1 - i / 8] = 1 << (i % 8);
        Id(out)
    }

    /// `self + 2^i (mod 2^160)`: the start of finger `i` of node `self`.
    pub fn add_pow2(&self, i: usize) -> Id {
        self.wrapping_add(&Id::pow2(i))
    }

    /// Clockwise distance from `self` to `to`: `to - self (mod 2^160)`.
    pub fn distance(&self, to: &Id) -> Id {
        to.wrapping_sub(self)
    }

    /// Is `self` in the open interval `(a, b)` going clockwise from `a`?
    ///
    /// When `a == b` the interval is the whole ring except `a` (the view of a
    /// node that is alone on the ring).
    pub fn in_open(&self, a: &Id, b: &Id) -> bool {
        if a == b {
            return self != a;
        }
        let d_self = a.distance(self);
        let d_b = a.distance(b);
        d_self != Id::ZERO && d_self < d_b
    }

    /// Is `self` in the half-open interval `(a, b]` going clockwise from `a`?
    ///
    /// When `a == b` the interval is the whole ring: a node that is its own
    /// successor owns every key.
    pub fn in_open_closed(&self, a: &Id, b: &Id) -> bool {
        if a == b {
            return true;
        }
        let d_self = a.distance(self);
        let d_b = a.distance(b);
        d_self != Id::ZERO && d_self <= d_b
    }

    /// Lower-case hex, 40 characters.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(ID_BYTES * 2);
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// The first 8 hex digits: enough to tell nodes apart in logs and tables.
    pub fn short(&self) -> String {
        self.to_hex()[..8].to_string()
    }
}

impl FromStr for Id {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(c) = s.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(ParseIdError::NotHex(c));
        }
        if s.len() != ID_BYTES * 2 {
            return Err(ParseIdError::Length(s.len()));
        }
        let mut out = [0u8; ID_BYTES];
        // All characters are ASCII hex digits, so bytes and characters agree.
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            let digit = |b: u8| (b as char).to_digit(16).expect("checked above") as u8;
            out[i] = digit(pair[0]) * 16 + digit(pair[1]);
        }
        Ok(Id(out))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigUint;
    use proptest::prelude::*;

    fn big(id: &Id) -> BigUint {
        BigUint::from_bytes_be(&id.0)
    }

    fn modulus() -> BigUint {
        BigUint::from(1u8) << ID_BITS
    }

    fn from_big(v: &BigUint) -> Id {
        let bytes = (v % modulus()).to_bytes_be();
        let mut out = [0u8; ID_BYTES];
        out[ID_BYTES - bytes.len()..].copy_from_slice(&bytes);
        Id(out)
    }

    fn any_id() -> impl Strategy<Value = Id> {
        prop_oneof![
            any::<[u8; ID_BYTES]>().prop_map(Id),
            // Small ids and ids near the top exercise the wrap-around.
            any::<u8>().prop_map(|v| Id::from_u64(v as u64)),
            any::<u8>().prop_map(|v| Id::MAX.wrapping_sub(&Id::from_u64(v as u64))),
        ]
    }

    /// Oracle for `(a, b)`: walk clockwise from a, i.e. compare distances as big integers.
    fn oracle_open(x: &Id, a: &Id, b: &Id) -> bool {
        let m = modulus();
        let dx = (big(x) + &m - big(a)) % &m;
        let db = (big(b) + &m - big(a)) % &m;
        if a == b {
            return x != a;
        }
        dx > BigUint::from(0u8) && dx < db
    }

    fn oracle_open_closed(x: &Id, a: &Id, b: &Id) -> bool {
        if a == b {
            return true;
        }
        oracle_open(x, a, b) || x == b
    }

    proptest! {
        #[test]
        fn add_and_sub_match_big_integers(a in any_id(), b in any_id()) {
            prop_assert_eq!(a.wrapping_add(&b), from_big(&(big(&a) + big(&b))));
            prop_assert_eq!(a.wrapping_sub(&b), from_big(&(big(&a) + modulus() - big(&b))));
        }

        #[test]
        fn add_pow2_matches_big_integers(a in any_id(), i in 0usize..ID_BITS) {
            let expected = from_big(&(big(&a) + (BigUint::from(1u8) << i)));
            prop_assert_eq!(a.add_pow2(i), expected);
        }

        #[test]
        fn intervals_match_oracle(x in any_id(), a in any_id(), b in any_id()) {
            prop_assert_eq!(x.in_open(&a, &b), oracle_open(&x, &a, &b));
            prop_assert_eq!(x.in_open_closed(&a, &b), oracle_open_closed(&x, &a, &b));
        }

        #[test]
        fn endpoints_are_tested_exactly(a in any_id(), b in any_id()) {
            // x equal to an endpoint is where off-by-one mistakes live.
            prop_assert_eq!(a.in_open(&a, &b), oracle_open(&a, &a, &b));
            prop_assert_eq!(b.in_open(&a, &b), oracle_open(&b, &a, &b));
            prop_assert_eq!(b.in_open_closed(&a, &b), oracle_open_closed(&b, &a, &b));
        }

        #[test]
        fn order_is_numeric(a in any_id(), b in any_id()) {
            prop_assert_eq!(a.cmp(&b), big(&a).cmp(&big(&b)));
            prop_assert_eq!(a.cmp(&b), a.0.cmp(&b.0));
        }

        #[test]
        fn hex_round_trips(a in any_id()) {
            prop_assert_eq!(a.to_hex().parse::<Id>(), Ok(a));
        }
    }

    #[test]
    fn interval_edge_cases() {
        let a = Id::from_u64(10);
        let b = Id::from_u64(20);
        // Plain interval.
        assert!(Id::from_u64(15).in_open(&a, &b));
        assert!(!a.in_open(&a, &b));
        assert!(!b.in_open(&a, &b));
        assert!(b.in_open_closed(&a, &b));
        assert!(!a.in_open_closed(&a, &b));
        // Wrap-around: (20, 10) contains 0 and MAX but not 15.
        assert!(Id::ZERO.in_open(&b, &a));
        assert!(Id::MAX.in_open(&b, &a));
        assert!(!Id::from_u64(15).in_open(&b, &a));
        // a == b: one-node ring. (a, a) is everything but a; (a, a] is everything.
        assert!(!a.in_open(&a, &a));
        assert!(b.in_open(&a, &a));
        assert!(a.in_open_closed(&a, &a));
        assert!(b.in_open_closed(&a, &a));
    }

    #[test]
    fn hash_is_sha1() {
        // SHA-1("abc") from FIPS 180-1.
        assert_eq!(
            Id::hash(b"abc").to_hex(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn a_hash_tag_is_the_first_braced_part() {
        let tag = hash_tag;
        assert_eq!(tag(b"{user:42}:cart"), Some(&b"user:42"[..]));
        assert_eq!(tag(b"a{b}c{d}"), Some(&b"b"[..]));
        // Redis Cluster's cases: the first `}` after the first `{`.
        assert_eq!(tag(b"foo{{bar}}zap"), Some(&b"{bar"[..]));
        assert_eq!(tag(b"foo{bar}{zap}"), Some(&b"bar"[..]));
        // Empty or unclosed braces: no tag, the whole key is hashed.
        assert_eq!(tag(b"foo{}{bar}"), None);
        assert_eq!(tag(b"foo{bar"), None);
        assert_eq!(tag(b"plain"), None);
        assert_eq!(Id::of_key(b"{u}:a"), Id::of_key(b"{u}:b"));
        assert_eq!(Id::of_key(b"{u}:a"), Id::of_key(b"u"));
        assert_eq!(slot_of(b"foo{}{bar}"), crc16_xmodem(b"foo{}{bar}") % SLOTS);
        assert_ne!(Id::of_key(b"a"), Id::of_key(b"b"));
    }

    #[test]
    fn a_key_id_is_its_redis_slot_above_its_sha1() {
        // CRC16/XMODEM's check value, and Redis Cluster's documented slots.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31c3);
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        let id = Id::of_key(b"foo");
        assert_eq!(id.slot(), 12182);
        // Below the slot: SHA-1("foo")'s bits.
        let sha = Id::hash(b"foo");
        assert_eq!(id.0[1] & 0x03, sha.0[1] & 0x03);
        assert_eq!(id.0[2..], sha.0[2..]);
        // The slot's arc holds the id, and its middle.
        assert!(Id::slot_start(12182) <= id && id < Id::slot_start(12183));
        let mid = Id::slot_middle(12182);
        assert!(Id::slot_start(12182) < mid && mid < Id::slot_start(12183));
        assert_eq!(Id::slot_start(SLOTS - 1).slot(), SLOTS - 1);
    }

    proptest::proptest! {
        #[test]
        fn every_key_lies_in_its_slot(key in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            let id = Id::of_key(&key);
            proptest::prop_assert_eq!(id.slot(), slot_of(&key));
            proptest::prop_assert!(Id::slot_start(id.slot()) <= id);
            if id.slot() + 1 < SLOTS {
                proptest::prop_assert!(id < Id::slot_start(id.slot() + 1));
            }
        }
    }

    #[test]
    fn parse_errors_are_precise() {
        assert_eq!("abc".parse::<Id>(), Err(ParseIdError::Length(3)));
        let bad = format!("{}g", "0".repeat(39));
        assert_eq!(bad.parse::<Id>(), Err(ParseIdError::NotHex('g')));
    }
}
