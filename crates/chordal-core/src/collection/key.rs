//! Where a collection's elements live: each element is a record of its
//! own at an *element key* built from the collection's key, so that an
//! element write touches one small record whatever the collection's size.
//!
//! An element key is `0xFF 0xFF`, the collection key's length (u32
//! big-endian), the collection key, a family byte and the element's
//! field (or member). [`Id::of_key`](crate::Id::of_key) gives it the key
//! id of its collection, so elements live, replicate, sync, hand off,
//! leave and back up with their collection's header through the paths
//! every record takes. Within the key-id group they sort after every user
//! key (user keys may not start with the prefix: see [`is_reserved`]).

/// The first two bytes of every element key.
pub const PREFIX: [u8; 2] = [0xFF, 0xFF];

/// What part of a collection an element record is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Family {
    /// A hash's field (value: the field's value) or a set's member
    /// (value: empty).
    Member = 0,
    /// A list's element at a position (see [`index_key`]).
    Index = 1,
    /// A sorted set's member (value: its sortable score, 8 bytes).
    Score = 2,
    /// A sorted set's order: the sortable score then the member (value:
    /// empty), so members read in score order.
    Order = 3,
}

/// Is `key` in the reserved element-key space? Clients may not name such
/// keys (only restores, which write back what a backup read).
pub fn is_reserved(key: &[u8]) -> bool {
    key.starts_with(&PREFIX)
}

/// The key prefix shared by every element of `family` in collection `key`.
pub fn family_prefix(key: &[u8], family: Family) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX.len() + 4 + key.len() + 1);
    out.extend_from_slice(&PREFIX);
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.push(family as u8);
    out
}

/// The key prefix shared by every element of collection `key`, of
/// every family.
pub fn elements_prefix(key: &[u8]) -> Vec<u8> {
    let mut out = family_prefix(key, Family::Member);
    out.pop();
    out
}

/// The element key of `field` of `family` in collection `key`.
pub fn element_key(key: &[u8], family: Family, field: &[u8]) -> Vec<u8> {
    let mut out = family_prefix(key, family);
    out.extend_from_slice(field);
    out
}

/// The element key of position `index` of the list at `key`: the index
/// as 8 bytes that sort as the numbers do.
pub fn index_key(key: &[u8], index: i64) -> Vec<u8> {
    let sortable = (index as u64) ^ (1 << 63);
    element_key(key, Family::Index, &sortable.to_be_bytes())
}

/// The collection key an element key belongs to; `None` if `key` is not
/// a well-formed element key.
pub fn collection_of(key: &[u8]) -> Option<&[u8]> {
    let rest = key.strip_prefix(&PREFIX)?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let coll = rest.get(4..4 + len)?;
    // A family byte must follow.
    rest.get(4 + len)?;
    Some(coll)
}

/// The field of an element key, given its family prefix.
pub fn field_of<'a>(element: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    element.strip_prefix(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Id;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn an_element_key_names_its_collection_and_field(
            key in proptest::collection::vec(any::<u8>(), 0..40),
            field in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let e = element_key(&key, Family::Member, &field);
            prop_assert!(is_reserved(&e));
            prop_assert_eq!(collection_of(&e), Some(key.as_slice()));
            let prefix = family_prefix(&key, Family::Member);
            prop_assert_eq!(field_of(&e, &prefix), Some(field.as_slice()));
            prop_assert_eq!(Id::of_key(&e), Id::of_key(&key));
        }
    }

    #[test]
    fn list_positions_sort_as_numbers() {
        let keys: Vec<Vec<u8>> = [-5i64, -1, 0, 1, 7]
            .iter()
            .map(|i| index_key(b"l", *i))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn elements_sort_after_the_user_keys_of_their_group() {
        let e = element_key(b"{t}h", Family::Member, b"f");
        assert!(e.as_slice() > b"{t}zzzz".as_slice());
        assert!(e.as_slice() > [0xFE; 30].as_slice());
        // Not element keys: too short, or no family byte.
        assert_eq!(collection_of(&[0xFF, 0xFF, 0, 0]), None);
        assert_eq!(collection_of(&[0xFF, 0xFF, 0, 0, 0, 1, b'k']), None);
        assert_eq!(collection_of(b"plain"), None);
    }
}
