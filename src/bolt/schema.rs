//! What etcd keeps inside bbolt, as far as cpkeep reads it: bucket names, revision keys and the
//! integers of the `meta` bucket.

/// The MVCC key-value bucket: key = revision, value = mvccpb.KeyValue.
pub const KEY_BUCKET: &[u8] = b"key";
/// etcd's bookkeeping bucket: consistent_index, term, compaction revisions, confState…
pub const META_BUCKET: &[u8] = b"meta";
/// `meta` key: index of the last raft entry applied to this backend (8-byte big-endian).
pub const CONSISTENT_INDEX_KEY: &[u8] = b"consistent_index";
/// `meta` key: raft term of that entry (8-byte big-endian; etcd 3.5 and later).
pub const TERM_KEY: &[u8] = b"term";

// Revision key in the `key` bucket, 17 bytes (18 for a tombstone):
//
// | offset | size | field | meaning                                  |
// |--------|------|-------|------------------------------------------|
// | 0      | 8    | main  | main revision, big-endian                |
// | 8      | 1    | '_'   | separator                                |
// | 9      | 8    | sub   | sub revision within the txn, big-endian  |
// | 17     | 1    | 't'   | present only on a tombstone (a delete)   |
const MAIN_OFFSET: usize = 0;
const SEPARATOR_OFFSET: usize = MAIN_OFFSET + size_of::<u64>();
const SUB_OFFSET: usize = SEPARATOR_OFFSET + 1;
/// Length of a revision key without the tombstone mark.
pub const REVISION_KEY_LEN: usize = SUB_OFFSET + size_of::<u64>();
/// Length of a tombstone's revision key.
pub const TOMBSTONE_KEY_LEN: usize = REVISION_KEY_LEN + 1;

/// A revision decoded from a `key` bucket key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
    pub tombstone: bool,
}

impl Revision {
    /// Decodes a revision key; `None` if `key` is not one (wrong length, separator or mark, or a
    /// revision that does not fit etcd's int64).
    pub fn from_key(key: &[u8]) -> Option<Revision> {
        let tombstone = match key.len() {
            REVISION_KEY_LEN => false,
            TOMBSTONE_KEY_LEN if key.get(REVISION_KEY_LEN) == Some(&b't') => true,
            _ => return None,
        };
        if key.get(SEPARATOR_OFFSET) != Some(&b'_') {
            return None;
        }
        let be = |at: usize| -> Option<i64> {
            let b: [u8; 8] = key.get(at..at + 8)?.try_into().ok()?;
            i64::try_from(u64::from_be_bytes(b)).ok()
        };
        Some(Revision {
            main: be(MAIN_OFFSET)?,
            sub: be(SUB_OFFSET)?,
            tombstone,
        })
    }
}

impl Revision {
    /// The `key` bucket key for this revision (18 bytes with the tombstone mark). Negative parts
    /// never occur in etcd; they are written as their two's complement bits, as Go does.
    pub fn to_key(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(TOMBSTONE_KEY_LEN);
        k.extend_from_slice(&self.main.to_be_bytes());
        k.push(b'_');
        k.extend_from_slice(&self.sub.to_be_bytes());
        if self.tombstone {
            k.push(b't');
        }
        k
    }
}

/// Decodes an 8-byte big-endian integer (consistent_index, term, compaction revisions).
pub fn decode_be_u64(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn revision_key(main: u64, sub: u64, tombstone: bool) -> Vec<u8> {
        let mut k = main.to_be_bytes().to_vec();
        k.push(b'_');
        k.extend_from_slice(&sub.to_be_bytes());
        if tombstone {
            k.push(b't');
        }
        k
    }

    #[test]
    fn revision_keys() {
        assert_eq!(
            Revision::from_key(&revision_key(8, 0, false)),
            Some(Revision {
                main: 8,
                sub: 0,
                tombstone: false
            })
        );
        assert_eq!(
            Revision::from_key(&revision_key(9, 2, true)).map(|r| (r.main, r.tombstone)),
            Some((9, true))
        );
        let mut k = revision_key(9, 2, false);
        k[8] = b'-';
        assert_eq!(Revision::from_key(&k), None);
        assert_eq!(Revision::from_key(&revision_key(1 << 63, 0, false)), None);
        assert_eq!(Revision::from_key(b"consistent_index"), None);
        let mut k = revision_key(9, 2, false);
        k.push(b'x');
        assert_eq!(Revision::from_key(&k), None);
    }

    #[test]
    fn integers() {
        assert_eq!(decode_be_u64(&[0, 0, 0, 0, 0, 0, 1, 2]), Some(258));
        assert_eq!(decode_be_u64(&[1, 2]), None);
    }
}
