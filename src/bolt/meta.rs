//! The meta pages (pages 0 and 1): decoding, validation, and choosing the one to use.
//!
//! bbolt alternates commits between the two meta pages, so a torn write can only damage one of
//! them; a reader uses the valid meta with the higher txid (meta 0 on a tie). A snapshot written by
//! `Tx.WriteTo` carries the same root in both, meta 1 with txid − 1.

use super::error::{BoltError, MetaDefect};
use super::page::{read_u32, read_u64, MAX_PAGE_SIZE, MIN_PAGE_SIZE, PAGE_HEADER_SIZE};

// Meta, 64 bytes, right after the page header of pages 0 and 1 (offsets below are from the meta's
// start; add PAGE_HEADER_SIZE for the offset in the page):
//
// | offset | size | field       | meaning                                                   |
// |--------|------|-------------|-----------------------------------------------------------|
// | 0      | 4    | magic       | 0xED0CDAED                                                |
// | 4      | 4    | version     | 2                                                         |
// | 8      | 4    | page_size   | bytes per page, for the whole file                        |
// | 12     | 4    | flags       | unused (0)                                                |
// | 16     | 8    | root.root   | page id of the root bucket's root page                    |
// | 24     | 8    | root.seq    | the root bucket's sequence                                |
// | 32     | 8    | freelist    | page id of the freelist, 0xFFFF_FFFF_FFFF_FFFF = not stored |
// | 40     | 8    | pgid        | high-water mark: first page id past the end of the data   |
// | 48     | 8    | txid        | id of the transaction that wrote this meta                |
// | 56     | 8    | checksum    | FNV-1a 64 of bytes 0..56                                  |
const MAGIC_OFFSET: usize = 0;
const VERSION_OFFSET: usize = MAGIC_OFFSET + size_of::<u32>();
const PAGE_SIZE_OFFSET: usize = VERSION_OFFSET + size_of::<u32>();
const FLAGS_OFFSET: usize = PAGE_SIZE_OFFSET + size_of::<u32>();
const ROOT_OFFSET: usize = FLAGS_OFFSET + size_of::<u32>();
const SEQUENCE_OFFSET: usize = ROOT_OFFSET + size_of::<u64>();
const FREELIST_OFFSET: usize = SEQUENCE_OFFSET + size_of::<u64>();
const HIGH_WATER_OFFSET: usize = FREELIST_OFFSET + size_of::<u64>();
const TXID_OFFSET: usize = HIGH_WATER_OFFSET + size_of::<u64>();
const CHECKSUM_OFFSET: usize = TXID_OFFSET + size_of::<u64>();
/// Size of the meta structure.
pub const META_SIZE: usize = CHECKSUM_OFFSET + size_of::<u64>();
/// Bytes of a meta page that hold anything: header + meta.
pub const META_PAGE_USED: usize = PAGE_HEADER_SIZE + META_SIZE;
/// Offset of the root bucket's root pgid in a meta page (where errors about the root point).
pub const ROOT_FIELD_IN_PAGE: usize = PAGE_HEADER_SIZE + ROOT_OFFSET;

pub const MAGIC: u32 = 0xED0C_DAED;
pub const VERSION: u32 = 2;
/// The freelist page id meaning "no freelist stored" (etcd runs with NoFreelistSync).
pub const NO_FREELIST: u64 = u64::MAX;

/// A decoded, validated meta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub page_size: u32,
    pub flags: u32,
    /// Root page of the root bucket (the bucket holding the top-level buckets).
    pub root: u64,
    pub sequence: u64,
    /// Raw freelist page id; see [`Meta::freelist`].
    pub freelist_pgid: u64,
    /// High-water mark: pages `0..high_water` are the database.
    pub high_water: u64,
    pub txid: u64,
    pub checksum: u64,
}

impl Meta {
    /// Decodes and validates the meta of the meta page starting at `page[0]`: magic, version and
    /// checksum as bbolt checks them, then a plausible page size (ours: we size buffers by it).
    pub fn decode(page: &[u8]) -> Result<Meta, MetaDefect> {
        let meta = page
            .get(PAGE_HEADER_SIZE..META_PAGE_USED)
            .ok_or(MetaDefect::Missing)?;
        let u32_at = |at| read_u32(meta, at).ok_or(MetaDefect::Missing);
        let u64_at = |at| read_u64(meta, at).ok_or(MetaDefect::Missing);
        let magic = u32_at(MAGIC_OFFSET)?;
        if magic != MAGIC {
            return Err(MetaDefect::BadMagic(magic));
        }
        let version = u32_at(VERSION_OFFSET)?;
        if version != VERSION {
            return Err(MetaDefect::BadVersion(version));
        }
        let stored = u64_at(CHECKSUM_OFFSET)?;
        let computed = fnv1a64(meta.get(..CHECKSUM_OFFSET).ok_or(MetaDefect::Missing)?);
        if stored != computed {
            return Err(MetaDefect::BadChecksum { stored, computed });
        }
        let page_size = u32_at(PAGE_SIZE_OFFSET)?;
        if !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
            return Err(MetaDefect::PageSize(page_size));
        }
        Ok(Meta {
            page_size,
            flags: u32_at(FLAGS_OFFSET)?,
            root: u64_at(ROOT_OFFSET)?,
            sequence: u64_at(SEQUENCE_OFFSET)?,
            freelist_pgid: u64_at(FREELIST_OFFSET)?,
            high_water: u64_at(HIGH_WATER_OFFSET)?,
            txid: u64_at(TXID_OFFSET)?,
            checksum: stored,
        })
    }

    /// The page size field, read without validating anything: where to look for meta 1 when meta 0
    /// is damaged but its page size may not be.
    pub fn claimed_page_size(page: &[u8]) -> Option<u32> {
        read_u32(page, PAGE_HEADER_SIZE + PAGE_SIZE_OFFSET)
    }

    /// The freelist page id, or `None` when the freelist is not stored.
    pub fn freelist(&self) -> Option<u64> {
        (self.freelist_pgid != NO_FREELIST).then_some(self.freelist_pgid)
    }

    /// Bytes of the database: high-water mark × page size (etcdutl's "totalSize").
    pub fn data_size(&self) -> Option<u64> {
        self.high_water.checked_mul(u64::from(self.page_size))
    }
}

/// FNV-1a, 64 bits.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET_BASIS, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// The meta to use, which page it came from, and, when the other one was invalid, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaChoice {
    pub meta: Meta,
    /// 0 or 1.
    pub page: u64,
    /// Set when one meta page was invalid: which, why, and which one is used instead.
    pub note: Option<String>,
}

/// bbolt's rule: the valid meta with the higher txid; meta 0 on a tie; an error if neither is valid.
pub fn choose(
    meta0: Result<Meta, MetaDefect>,
    meta1: Result<Meta, MetaDefect>,
) -> Result<MetaChoice, BoltError> {
    match (meta0, meta1) {
        (Ok(m0), Ok(m1)) => Ok(if m1.txid > m0.txid {
            MetaChoice {
                meta: m1,
                page: 1,
                note: None,
            }
        } else {
            MetaChoice {
                meta: m0,
                page: 0,
                note: None,
            }
        }),
        (Ok(m0), Err(why)) => Ok(MetaChoice {
            meta: m0,
            page: 0,
            note: Some(format!(
                "meta page 1 is invalid ({why}); using meta page 0 (txid {})",
                m0.txid
            )),
        }),
        (Err(why), Ok(m1)) => Ok(MetaChoice {
            meta: m1,
            page: 1,
            note: Some(format!(
                "meta page 0 is invalid ({why}); using meta page 1 (txid {})",
                m1.txid
            )),
        }),
        (Err(meta0), Err(meta1)) => Err(BoltError::NoValidMeta { meta0, meta1 }),
    }
}

/// Where reading the metas from the first bytes of a file stands.
#[derive(Debug)]
pub enum MetaRead {
    /// Call again with at least this many bytes from the start of the file (or with `at_end`).
    NeedMore(usize),
    Decided(MetaChoice),
}

/// Page sizes at which meta 1 is looked for when meta 0 cannot tell the page size: the size meta 0
/// claims (if plausible), then every power of two bbolt is known to use.
fn page_size_candidates(claimed: Option<u32>) -> Vec<u32> {
    let mut sizes: Vec<u32> = claimed
        .filter(|s| (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(s))
        .into_iter()
        .collect();
    let mut s = MIN_PAGE_SIZE;
    while s <= 64 * 1024 {
        if !sizes.contains(&s) {
            sizes.push(s);
        }
        s *= 2;
    }
    sizes
}

/// Reads both metas from `prefix`, the first bytes of a file, and chooses one. With `at_end` false,
/// asks for more bytes until it can decide (never more than `MAX_PAGE_SIZE` + one meta page).
pub fn read_metas(prefix: &[u8], at_end: bool) -> Result<MetaRead, BoltError> {
    if prefix.len() < META_PAGE_USED && !at_end {
        return Ok(MetaRead::NeedMore(META_PAGE_USED));
    }
    let meta0 = Meta::decode(prefix);
    let meta1 = match meta0 {
        Ok(m0) => {
            let at = m0.page_size as usize;
            let need = at + META_PAGE_USED;
            if prefix.len() < need && !at_end {
                return Ok(MetaRead::NeedMore(need));
            }
            meta1_at(prefix, at)
        }
        Err(_) => {
            let candidates = page_size_candidates(Meta::claimed_page_size(prefix));
            let need = candidates.iter().max().map_or(0, |m| *m as usize) + META_PAGE_USED;
            if prefix.len() < need && !at_end {
                return Ok(MetaRead::NeedMore(need));
            }
            let found = candidates
                .iter()
                .map(|c| meta1_at(prefix, *c as usize))
                .find(Result::is_ok);
            match found {
                Some(m1) => m1,
                // Report what is at the most likely place: the claimed size, else 4096.
                None => {
                    let likely = Meta::claimed_page_size(prefix)
                        .filter(|s| (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(s))
                        .unwrap_or(4096);
                    meta1_at(prefix, likely as usize)
                }
            }
        }
    };
    choose(meta0, meta1).map(MetaRead::Decided)
}

fn meta1_at(prefix: &[u8], offset: usize) -> Result<Meta, MetaDefect> {
    let m = Meta::decode(prefix.get(offset..).ok_or(MetaDefect::Missing)?)?;
    if m.page_size as usize != offset {
        return Err(MetaDefect::PageSizeMismatch {
            claimed: m.page_size,
            offset: offset as u64,
        });
    }
    Ok(m)
}

/// Encodes a meta page (header + meta with its checksum; `m.checksum` is ignored) into `page`,
/// which must be at least `META_PAGE_USED` long. Used by the writer and by tests that lay out
/// files by hand.
pub(crate) fn encode_meta_page(page: &mut [u8], id: u64, m: &Meta) {
    use super::page::META_PAGE_FLAG;
    page[..8].copy_from_slice(&id.to_le_bytes());
    page[8..10].copy_from_slice(&META_PAGE_FLAG.to_le_bytes());
    let meta = &mut page[PAGE_HEADER_SIZE..META_PAGE_USED];
    meta[MAGIC_OFFSET..][..4].copy_from_slice(&MAGIC.to_le_bytes());
    meta[VERSION_OFFSET..][..4].copy_from_slice(&VERSION.to_le_bytes());
    meta[PAGE_SIZE_OFFSET..][..4].copy_from_slice(&m.page_size.to_le_bytes());
    meta[FLAGS_OFFSET..][..4].copy_from_slice(&m.flags.to_le_bytes());
    meta[ROOT_OFFSET..][..8].copy_from_slice(&m.root.to_le_bytes());
    meta[SEQUENCE_OFFSET..][..8].copy_from_slice(&m.sequence.to_le_bytes());
    meta[FREELIST_OFFSET..][..8].copy_from_slice(&m.freelist_pgid.to_le_bytes());
    meta[HIGH_WATER_OFFSET..][..8].copy_from_slice(&m.high_water.to_le_bytes());
    meta[TXID_OFFSET..][..8].copy_from_slice(&m.txid.to_le_bytes());
    let sum = fnv1a64(&meta[..CHECKSUM_OFFSET]);
    meta[CHECKSUM_OFFSET..][..8].copy_from_slice(&sum.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(page_size: u32, txid: u64) -> Meta {
        Meta {
            page_size,
            flags: 0,
            root: 3,
            sequence: 0,
            freelist_pgid: NO_FREELIST,
            high_water: 5,
            txid,
            checksum: 0,
        }
    }

    fn file(page_size: u32, tx0: u64, tx1: u64) -> Vec<u8> {
        let ps = page_size as usize;
        let mut f = vec![0u8; 2 * ps];
        encode_meta_page(&mut f[..ps], 0, &meta(page_size, tx0));
        encode_meta_page(&mut f[ps..], 1, &meta(page_size, tx1));
        f
    }

    fn decided(r: MetaRead) -> MetaChoice {
        match r {
            MetaRead::Decided(c) => c,
            MetaRead::NeedMore(n) => panic!("wants {n} more bytes"),
        }
    }

    #[test]
    fn offsets_follow_the_table() {
        assert_eq!(
            [
                MAGIC_OFFSET,
                VERSION_OFFSET,
                PAGE_SIZE_OFFSET,
                FLAGS_OFFSET,
                ROOT_OFFSET,
                SEQUENCE_OFFSET,
                FREELIST_OFFSET,
                HIGH_WATER_OFFSET,
                TXID_OFFSET,
                CHECKSUM_OFFSET,
                META_SIZE
            ],
            [0, 4, 8, 12, 16, 24, 32, 40, 48, 56, 64]
        );
    }

    #[test]
    fn fnv1a64_known_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn chooses_higher_txid_and_meta0_on_tie() {
        let c = decided(read_metas(&file(4096, 9, 8), true).unwrap());
        assert_eq!((c.page, c.meta.txid, c.note), (0, 9, None));
        let c = decided(read_metas(&file(4096, 9, 10), true).unwrap());
        assert_eq!((c.page, c.meta.txid), (1, 10));
        let c = decided(read_metas(&file(4096, 4, 4), true).unwrap());
        assert_eq!(c.page, 0);
    }

    #[test]
    fn asks_for_what_it_needs() {
        let f = file(8192, 9, 8);
        assert!(matches!(
            read_metas(&f[..10], false).unwrap(),
            MetaRead::NeedMore(80)
        ));
        assert!(matches!(
            read_metas(&f[..100], false).unwrap(),
            MetaRead::NeedMore(n) if n == 8192 + 80
        ));
        assert_eq!(decided(read_metas(&f, false).unwrap()).meta.page_size, 8192);
    }

    #[test]
    fn falls_back_to_meta1_and_finds_it_without_meta0s_page_size() {
        for ps in [512u32, 1024, 4096, 16384, 65536] {
            let mut f = file(ps, 9, 8);
            f.resize(70_000.max(2 * ps as usize), 0);
            // Break meta 0's checksum only: its page size still points at meta 1.
            f[PAGE_HEADER_SIZE + TXID_OFFSET] ^= 1;
            let c = decided(read_metas(&f, false).unwrap());
            assert_eq!((c.page, c.meta.txid, c.meta.page_size), (1, 8, ps));
            assert!(c.note.unwrap().contains("meta page 0 is invalid (checksum"));
            // Break its page size too: meta 1 is found by trying the usual sizes.
            f[PAGE_HEADER_SIZE + PAGE_SIZE_OFFSET] ^= 0x5a;
            let c = decided(read_metas(&f, true).unwrap());
            assert_eq!((c.page, c.meta.page_size), (1, ps));
        }
    }

    #[test]
    fn both_invalid_is_an_error() {
        let mut f = file(4096, 9, 8);
        f[PAGE_HEADER_SIZE] ^= 1;
        f[4096 + PAGE_HEADER_SIZE + VERSION_OFFSET] = 3;
        let err = read_metas(&f, true).unwrap_err();
        assert!(matches!(
            err,
            BoltError::NoValidMeta {
                meta0: MetaDefect::BadMagic(_),
                meta1: MetaDefect::BadVersion(3)
            }
        ));
        assert!(matches!(
            read_metas(&[], true).unwrap_err(),
            BoltError::NoValidMeta {
                meta0: MetaDefect::Missing,
                meta1: MetaDefect::Missing
            }
        ));
    }

    #[test]
    fn meta1_must_sit_at_its_page_size() {
        let mut f = file(4096, 9, 8);
        encode_meta_page(&mut f[4096..], 1, &meta(2048, 8));
        let c = decided(read_metas(&f, true).unwrap());
        assert_eq!(c.page, 0);
        assert!(c.note.unwrap().contains("claims page size 2048"));
    }
}
