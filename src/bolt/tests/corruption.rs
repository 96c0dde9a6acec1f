//! Failure classes: truncation, damaged metas, cycles and bad pointers, garbage, values that are not
//! what etcd writes, and random byte flips. Errors, never panics; damage to free pages changes
//! nothing.

use super::builder::{
    branch, bucket_entry, bucket_value, entry, inline_bucket, leaf, revision_key, EtcdDb,
    FileBuilder, XorShift,
};
use super::oracle::oracle;
use super::{manifest_dir, read_snapshot, scan, scan_all};
use crate::bolt::error::{BoltError, Defect, MetaDefect};
use crate::bolt::SnapshotScanner;

fn small_fixture() -> Vec<u8> {
    read_snapshot(&manifest_dir().join("fixtures/etcd-3.5.30-small/snapshot.db"))
}

fn tree_fixture() -> Vec<u8> {
    read_snapshot(&manifest_dir().join("fixtures/etcd-3.5.30-tree/snapshot.db"))
}

fn defect(r: Result<crate::bolt::SnapshotFacts, BoltError>) -> (u64, Defect) {
    match r {
        Err(BoltError::Corrupted { page, reason, .. }) => (page, reason),
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

#[test]
fn truncated_input() {
    let db = tree_fixture();
    for len in [
        0,
        1,
        15,
        79,
        80,
        4095,
        4096,
        4096 + 80,
        8191,
        8192,
        8193,
        100_000,
    ] {
        let r = scan_all(&db[..len]);
        assert!(r.is_err(), "{len} bytes: {r:?}");
    }
    for cut in [1, 100, 4096, 4097, db.len() / 2] {
        let r = scan_all(&db[..db.len() - cut]);
        assert!(
            matches!(r, Err(BoltError::Truncated { expected, actual })
                if expected == db.len() as u64 && actual == (db.len() - cut) as u64),
            "cut {cut}: {r:?}"
        );
    }
    assert!(matches!(
        scan_all(&[]),
        Err(BoltError::NoValidMeta {
            meta0: MetaDefect::Missing,
            meta1: MetaDefect::Missing
        })
    ));
}

#[test]
fn one_bad_meta_falls_back_to_the_other_and_says_so() {
    let good = scan_all(&small_fixture()).unwrap();
    // Meta 0 (txid 9): a flipped txid byte breaks its checksum.
    let mut db = small_fixture();
    db[16 + 48] ^= 0x01;
    let facts = scan_all(&db).unwrap();
    assert_eq!((facts.meta_page, facts.txid), (1, 8));
    let note = facts.meta_note.clone().unwrap();
    assert!(
        note.starts_with("meta page 0 is invalid (checksum mismatch"),
        "{note}"
    );
    assert!(note.ends_with("using meta page 1 (txid 8)"), "{note}");
    assert_eq!(facts.revision, good.revision, "same root in both metas");
    // Meta 0's page size field damaged too: meta 1 is still found.
    db[16 + 8] ^= 0x10;
    assert_eq!(scan_all(&db).unwrap().meta_page, 1);
    // Meta 1 bad: meta 0 is used (it has the higher txid anyway), with a note.
    let mut db = small_fixture();
    db[4096 + 16] ^= 0xFF;
    let facts = scan_all(&db).unwrap();
    assert_eq!(facts.meta_page, 0);
    assert!(facts
        .meta_note
        .unwrap()
        .contains("meta page 1 is invalid (bad magic"));
}

#[test]
fn both_metas_bad_is_an_error_from_feed_and_finish() {
    let mut db = small_fixture();
    db[16 + 4] = 9; // meta 0 version
    db[4096 + 16 + 56] ^= 1; // meta 1 checksum
    let err = scan_all(&db).unwrap_err();
    assert!(
        matches!(
            err,
            BoltError::NoValidMeta {
                meta0: MetaDefect::BadVersion(9),
                meta1: MetaDefect::BadChecksum { .. }
            }
        ),
        "{err}"
    );
    // With meta 0 unreadable, meta 1 is looked for at every usual page size, so feed can tell
    // only after 64 KiB + 80 bytes; this 20 KB file fails at finish.
    let mut s = SnapshotScanner::new();
    s.feed(&db).unwrap();
    assert!(s.finish().is_err());
    // A bigger file fails in feed, and stays failed.
    let mut db = tree_fixture();
    db[16 + 4] = 9;
    db[4096 + 16 + 56] ^= 1;
    let mut s = SnapshotScanner::new();
    let failed_at = db.chunks(1000).position(|c| s.feed(c).is_err()).unwrap();
    assert_eq!(failed_at, (64 * 1024 + 80) / 1000);
    assert!(s.feed(b"more").is_err(), "the error is final");
    assert!(s.finish().is_err());
}

/// A file whose `key` bucket's tree is made by `key_tree(builder)` → root id.
fn with_key_tree(key_tree: impl FnOnce(&mut FileBuilder) -> u64) -> Vec<u8> {
    let mut b = FileBuilder::new(4096);
    let key_root = key_tree(&mut b);
    let root = b.next_id();
    b.place(
        root,
        leaf(
            0,
            &[
                bucket_entry(b"key", bucket_value(key_root)),
                bucket_entry(b"meta", inline_bucket(&[])),
            ],
        ),
    );
    b.build(root, 10)
}

#[test]
fn cycles_end_in_an_error() {
    // A branch that is its own last child.
    let db = with_key_tree(|b| {
        let id = b.next_id();
        b.place(id, branch(0, &[(b"a".to_vec(), id)]));
        id
    });
    assert_eq!(defect(scan_all(&db)), (2, Defect::TooDeep));
    // Two branches pointing at each other.
    let db = with_key_tree(|b| {
        let (x, y) = (b.next_id(), b.next_id() + 1);
        b.place(x, branch(0, &[(b"a".to_vec(), y)]));
        b.place(y, branch(0, &[(b"a".to_vec(), x)]));
        x
    });
    assert_eq!(defect(scan_all(&db)).1, Defect::TooDeep);
    // The root bucket's tree pointing at itself (the search for `key` loops).
    let mut b = FileBuilder::new(4096);
    b.place(2, branch(0, &[(b"key".to_vec(), 2)]));
    assert_eq!(defect(scan_all(&b.build(2, 10))), (2, Defect::TooDeep));
}

#[test]
fn bad_pointers() {
    let to = |target: u64| {
        with_key_tree(|b| {
            let id = b.next_id();
            b.place(id, branch(0, &[(b"a".to_vec(), target)]));
            id
        })
    };
    assert_eq!(defect(scan_all(&to(1))), (2, Defect::PointerToMeta));
    assert_eq!(
        defect(scan_all(&to(99))),
        (2, Defect::PointerBeyondHighWater)
    );
    // To a page that is garbage.
    let db = with_key_tree(|b| {
        let id = b.next_id();
        b.place_raw(id, vec![0xEE; 4096]);
        id
    });
    assert_eq!(defect(scan_all(&db)), (2, Defect::IdMismatch));
    // To a freelist page.
    let db = with_key_tree(|b| {
        let id = b.next_id();
        let mut p = leaf(0, &[]);
        p[8..10].copy_from_slice(&0x10u16.to_le_bytes());
        b.place(id, p);
        id
    });
    assert_eq!(defect(scan_all(&db)), (2, Defect::NotATreePage));
    // The meta's root beyond the high-water mark.
    let b = FileBuilder::new(4096);
    assert!(matches!(
        scan_all(&b.build(7, 10)),
        Err(BoltError::Corrupted {
            page: 0,
            offset: 32,
            reason: Defect::PointerBeyondHighWater
        })
    ));
}

#[test]
fn values_etcd_would_not_write() {
    let build = |top: Vec<super::builder::Entry>| {
        let mut b = FileBuilder::new(4096);
        b.place(2, leaf(0, &top));
        b.build(2, 10)
    };
    let meta = || bucket_entry(b"meta", inline_bucket(&[]));
    // No `key` bucket.
    let r = scan_all(&build(vec![meta()]));
    assert!(
        matches!(r, Err(BoltError::MissingBucket { name: "key" })),
        "{r:?}"
    );
    // `key` is a plain value, not a bucket.
    let r = scan_all(&build(vec![entry(b"key", b"x"), meta()]));
    assert_eq!(defect(r), (2, Defect::NotABucket));
    // The last key of `key` is not a revision.
    let r = scan_all(&build(vec![
        bucket_entry(b"key", inline_bucket(&[entry(b"not-a-revision", b"")])),
        meta(),
    ]));
    assert_eq!(defect(r), (2, Defect::NotARevision));
    // consistent_index of 4 bytes.
    let r = scan_all(&build(vec![
        bucket_entry(b"key", inline_bucket(&[])),
        bucket_entry(
            b"meta",
            inline_bucket(&[entry(b"consistent_index", &[0, 0, 0, 1])]),
        ),
    ]));
    assert_eq!(defect(r), (2, Defect::NotAnInteger));
    // A bucket value of 10 bytes.
    let r = scan_all(&build(vec![bucket_entry(b"key", vec![0; 10]), meta()]));
    assert_eq!(defect(r), (2, Defect::ShortBucketValue));
    // An "inline" bucket bigger than a page (bbolt inlines only up to a quarter page).
    let big: Vec<_> = (1..=60)
        .map(|m| entry(&revision_key(m, 0, false), &[b'v'; 100]))
        .collect();
    let r = scan_all(&build(vec![
        bucket_entry(b"key", inline_bucket(&big)),
        meta(),
    ]));
    assert_eq!(defect(r), (2, Defect::ValueTooLarge));
    // A leaf in the `key` tree whose last key is not a revision.
    let db = with_key_tree(|b| {
        let id = b.next_id();
        b.place(
            id,
            leaf(
                0,
                &[entry(&revision_key(1, 0, false), b""), entry(b"zz", b"")],
            ),
        );
        id
    });
    assert_eq!(defect(scan_all(&db)), (2, Defect::NotARevision));
}

#[test]
fn element_out_of_bounds_on_a_live_page() {
    let mut db = EtcdDb::default().build();
    let o = oracle(&db);
    // The live root leaf: make its first element's key run past the page.
    let root = *o.live_pages.iter().max().unwrap() as usize;
    db[root * 4096 + 16 + 8..root * 4096 + 16 + 12].copy_from_slice(&5000u32.to_le_bytes());
    let (page, reason) = defect(scan_all(&db));
    assert_eq!(
        (page, reason),
        (root as u64, Defect::ElementOutOfBounds),
        "{:?}",
        o.live_pages
    );
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let mut rng = XorShift::new(42);
    for len in [0usize, 1, 16, 80, 511, 4096, 8192, 8192 + 1, 40_000, 70_000] {
        for _ in 0..20 {
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let r = scan(&bytes, 1 + (rng.next() % 5000) as usize);
            assert!(r.is_err(), "{len} random bytes gave {r:?}");
        }
    }
    // Valid metas over garbage pages.
    let mut b = FileBuilder::new(4096);
    b.fill = 0xC3;
    b.place_raw(9, vec![0xC3; 4096]);
    let r = scan_all(&b.build(5, 10));
    assert_eq!(defect(r), (5, Defect::IdMismatch));
}

/// Flips `n` random bytes, at offsets chosen by `pick`.
fn flip(db: &mut [u8], rng: &mut XorShift, n: u64, pick: &dyn Fn(&mut XorShift) -> usize) {
    for _ in 0..n {
        let at = pick(rng);
        db[at] ^= (rng.next() % 255 + 1) as u8;
    }
}

#[test]
fn random_byte_flips_never_panic() {
    let mut rng = XorShift::new(0x5eed);
    for (db, rounds) in [(small_fixture(), 2000), (tree_fixture(), 200)] {
        let len = db.len();
        // Half the flips in headers and element tables, where decoding decisions are made.
        let pick = move |rng: &mut XorShift| {
            let page = (rng.next() % (len as u64 / 4096)) as usize;
            let within = if rng.next().is_multiple_of(2) {
                rng.next() % 160
            } else {
                rng.next() % 4096
            };
            page * 4096 + within as usize
        };
        for _ in 0..rounds {
            let mut bad = db.clone();
            let n = 1 + rng.next() % 8;
            flip(&mut bad, &mut rng, n, &pick);
            let chunk = [1, 7, 4096, 32 * 1024, usize::MAX][(rng.next() % 5) as usize];
            // Whatever the result, it comes back.
            let _ = scan(&bad, chunk);
        }
    }
}

#[test]
fn flips_in_free_pages_change_nothing() {
    let mut rng = XorShift::new(7);
    for db in [small_fixture(), tree_fixture()] {
        let good = scan_all(&db).unwrap();
        let o = oracle(&db);
        let free: Vec<usize> = (2..db.len() / 4096)
            .filter(|p| !o.live_pages.contains(&(*p as u64)))
            .collect();
        assert!(!free.is_empty());
        let pick = |rng: &mut XorShift| {
            free[(rng.next() % free.len() as u64) as usize] * 4096 + (rng.next() % 4096) as usize
        };
        for _ in 0..200 {
            let mut bad = db.clone();
            let n = 1 + rng.next() % 64;
            flip(&mut bad, &mut rng, n, &pick);
            assert_eq!(scan(&bad, 4096).unwrap(), good);
        }
    }
}
