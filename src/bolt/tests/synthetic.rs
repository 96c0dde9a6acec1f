//! Hand-laid files: what real etcd does not produce on demand.

use super::builder::{
    bucket_entry, bucket_value, entry, inline_bucket, leaf, revision_key, EtcdDb, FileBuilder,
    Order,
};
use super::oracle::oracle;
use super::scan_all;
use crate::bolt::SnapshotScanner;

/// Scans with every chunk size and checks the facts against the oracle and the layout.
fn check(db: &[u8], expected_revision: Option<i64>) -> crate::bolt::SnapshotFacts {
    let facts = scan_all(db).unwrap_or_else(|e| panic!("{e}"));
    let o = oracle(db);
    assert_eq!(facts.revision, expected_revision, "revision");
    assert_eq!(o.revision, expected_revision, "oracle revision");
    assert_eq!(facts.consistent_index, o.consistent_index);
    assert_eq!(facts.term, o.term);
    facts
}

#[test]
fn page_sizes_other_than_4096() {
    for page_size in [512, 1024, 2048, 8192, 16384, 65536] {
        let db = EtcdDb {
            page_size,
            ..EtcdDb::default()
        };
        let facts = check(&db.build(), db.expected_revision());
        assert_eq!(facts.page_size as usize, page_size);
        assert_eq!((facts.consistent_index, facts.term), (Some(77), Some(3)));
        assert_eq!(facts.data_size, facts.db_size);
    }
}

#[test]
fn children_before_or_after_their_parents() {
    let revisions: Vec<_> = (1..=600)
        .map(|m| (m, m % 3, m % 7 == 0, vec![b'x'; 40]))
        .collect();
    for order in [
        Order::ChildrenFirst,
        Order::ParentsFirst,
        Order::Shuffled(1),
        Order::Shuffled(0xdead_beef),
    ] {
        let db = EtcdDb {
            revisions: revisions.clone(),
            per_leaf: 5,
            fanout: 4,
            order,
            meta_tree: true,
            extra_buckets: 20,
            ..EtcdDb::default()
        };
        let bytes = db.build();
        let o = oracle(&bytes);
        assert!(o.key_depth >= 5, "{order:?}: depth {}", o.key_depth);
        check(&bytes, Some(600));
    }
}

#[test]
fn inline_and_empty_key_buckets() {
    // bbolt inlines a bucket only while it is at most a quarter page: 7 small revisions.
    let inline = EtcdDb {
        key_inline: true,
        revisions: (2..=8).map(|m| (m, 0, false, vec![b'v'; 100])).collect(),
        ..EtcdDb::default()
    };
    check(&inline.build(), Some(8));
    let empty_inline = EtcdDb {
        key_inline: true,
        revisions: Vec::new(),
        ..EtcdDb::default()
    };
    check(&empty_inline.build(), None);
    let empty_tree = EtcdDb {
        revisions: Vec::new(),
        ..EtcdDb::default()
    };
    check(&empty_tree.build(), None);
}

#[test]
fn tombstone_as_last_key() {
    let mut db = EtcdDb::default();
    db.revisions.push((41, 0, true, Vec::new()));
    check(&db.build(), Some(41));
}

#[test]
fn meta_bucket_with_its_own_tree_and_without_term() {
    let db = EtcdDb {
        meta_tree: true,
        term: None,
        ..EtcdDb::default()
    };
    let facts = check(&db.build(), Some(40));
    assert_eq!((facts.consistent_index, facts.term), (Some(77), None));
    let db = EtcdDb {
        consistent_index: None,
        term: None,
        ..EtcdDb::default()
    };
    let facts = check(&db.build(), Some(40));
    assert_eq!((facts.consistent_index, facts.term), (None, None));
}

#[test]
fn root_bucket_with_a_branch_tree() {
    for extra_buckets in [10, 200] {
        let db = EtcdDb {
            extra_buckets,
            order: Order::Shuffled(extra_buckets as u64),
            ..EtcdDb::default()
        };
        let facts = check(&db.build(), Some(40));
        assert_eq!(facts.consistent_index, Some(77));
    }
}

#[test]
fn stale_pages_with_newer_revisions_are_ignored() {
    // A live database, then, on free pages after it, what an uncommitted or concurrent write
    // transaction leaves behind: a newer copy of the last leaf, a newer root leaf whose `key`
    // bucket (inline) ends at a much higher revision, and a branch pointing at the stale leaf.
    let db = EtcdDb::default();
    let mut b = FileBuilder::new(4096);
    let root = db.lay_out(&mut b);
    let stale_leaf = b.next_id();
    b.place(
        stale_leaf,
        leaf(
            0,
            &[
                entry(&revision_key(41, 0, false), b"new"),
                entry(&revision_key(999, 0, false), b"newer"),
            ],
        ),
    );
    let stale_root = b.next_id();
    b.place(
        stale_root,
        leaf(
            0,
            &[
                bucket_entry(
                    b"key",
                    inline_bucket(&[entry(&revision_key(5000, 0, false), b"x")]),
                ),
                bucket_entry(
                    b"meta",
                    inline_bucket(&[entry(b"consistent_index", &9999u64.to_be_bytes())]),
                ),
            ],
        ),
    );
    let stale_branch = b.next_id();
    b.place(
        stale_branch,
        super::builder::branch(0, &[(revision_key(41, 0, false), stale_leaf)]),
    );
    // And a stale root leaf before the live pages' ids would not matter either: id order is not
    // liveness. Garbage after everything:
    b.place_raw(b.next_id(), vec![0xAB; 4096 * 3]);
    let bytes = b.build(root, 10);
    let facts = check(&bytes, Some(40));
    assert_eq!(facts.consistent_index, Some(77));
    // The same file with meta 0 pointing at the stale root: then that root is live.
    let other = b.build_metas((stale_root, 12), (root, 11));
    let facts = scan_all(&other).unwrap();
    assert_eq!(
        (facts.revision, facts.consistent_index, facts.meta_page),
        (Some(5000), Some(9999), 0)
    );
    // Meta 1 with the higher txid wins (a raw copy of a live member/snap/db).
    let other = b.build_metas((stale_root, 11), (root, 12));
    let facts = scan_all(&other).unwrap();
    assert_eq!((facts.revision, facts.meta_page), (Some(40), 1));
}

#[test]
fn overflow_pages_everywhere() {
    // Values of several pages in the key bucket, the last leaf included; a 512-byte page size so
    // that the root leaf and the element tables of leaves and branches span several pages too.
    for page_size in [512usize, 4096] {
        let mut revisions: Vec<_> = (1..=200).map(|m| (m, 0, false, vec![b'v'; 8])).collect();
        revisions.push((201, 0, false, vec![b'B'; 20_000]));
        revisions.push((202, 0, false, vec![b'C'; 70_000]));
        let db = EtcdDb {
            page_size,
            revisions,
            per_leaf: 60,
            fanout: 40,
            order: Order::Shuffled(7),
            ..EtcdDb::default()
        };
        let bytes = db.build();
        assert!(oracle(&bytes).overflowed_leaves > 0);
        check(&bytes, Some(202));
    }
}

#[test]
fn a_stale_page_whose_overflow_spans_live_pages() {
    // Page 2: a stale leaf claiming 40 overflow pages (ids 3..=42). The live tree starts at 3:
    // each of those pages must still be summarised as a page of its own.
    let db = EtcdDb {
        revisions: (1..=200).map(|m| (m, 0, false, vec![b'v'; 300])).collect(),
        ..EtcdDb::default()
    };
    let mut b = FileBuilder::new(4096);
    let mut stale = leaf(2, &[entry(&revision_key(7777, 0, false), b"x")]);
    stale[12..16].copy_from_slice(&40u32.to_le_bytes());
    b.place_raw(2, stale);
    let root = db.lay_out(&mut b);
    let bytes = b.build(root, 10);
    assert!(bytes.len() / 4096 > 43, "the stale span is inside the file");
    check(&bytes, Some(200));
}

#[test]
fn longer_than_the_high_water_mark() {
    // A copy of a live db file: pages past the high-water mark are not part of the database.
    let mut bytes = EtcdDb::default().build();
    let data = bytes.len() as u64;
    bytes.extend_from_slice(&[0x5A; 4096 * 2]);
    let facts = scan_all(&bytes).unwrap();
    assert_eq!((facts.data_size, facts.db_size), (data, data + 8192));
    assert_eq!(facts.revision, Some(40));
}

#[test]
fn memory_stays_small() {
    // 20 000 revisions of 200 bytes (~1 200 leaf pages): the scanner keeps 8 bytes per page, a
    // summary per branch page and one page buffer.
    let db = EtcdDb {
        revisions: (1..=20_000)
            .map(|m| (m, 0, false, vec![b'v'; 200]))
            .collect(),
        per_leaf: 16,
        fanout: 100,
        ..EtcdDb::default()
    };
    let bytes = db.build();
    let mut s = SnapshotScanner::new();
    for c in bytes.chunks(32 * 1024) {
        s.feed(c).unwrap();
    }
    let held = s.retained_bytes();
    let pages = bytes.len() / 4096;
    assert!(
        held < 4096 + pages * 8 + (pages / 16 + 16) * 200,
        "{held} bytes for {pages} pages"
    );
    assert!(
        held * 100 < bytes.len(),
        "{held} bytes for {} bytes",
        bytes.len()
    );
    assert_eq!(s.finish().unwrap().revision, Some(20_000));
}

#[test]
fn bucket_value_helper_is_what_bbolt_writes() {
    assert_eq!(bucket_value(7).len(), 16);
    assert_eq!(inline_bucket(&[]).len(), 32);
}
