//! The reader and the check against damaged files: flipped bytes in leaves, branches and metas,
//! truncation, a page pointing to itself, overflow past the end, random flips. Each is reported
//! (a check problem, or an open/iterate error naming the page), never a panic.

use super::builder::{EtcdDb, FileBuilder, XorShift};
use super::oracle::oracle;
use super::{manifest_dir, read_snapshot};
use crate::bolt::element::element_offset;
use crate::bolt::fuzz_targets;
use crate::bolt::{check, etcd, BoltError, CheckReport, Db, Defect, ProblemKind};

fn fixture(name: &str) -> Vec<u8> {
    read_snapshot(
        &manifest_dir()
            .join("fixtures")
            .join(name)
            .join("snapshot.db"),
    )
}

fn report(bytes: &[u8]) -> CheckReport {
    check(&Db::open(bytes).unwrap())
}

/// The problems' (page, kind), in order.
fn problems(r: &CheckReport) -> Vec<(u64, ProblemKind)> {
    r.problems.iter().map(|p| (p.page, p.kind)).collect()
}

/// Iterates every top-level bucket; the first error.
fn iterate_all(bytes: &[u8]) -> Result<u64, BoltError> {
    let db = Db::open(bytes)?;
    let mut n = 0;
    for name in db.buckets()? {
        if let Some(b) = db.bucket(&name)? {
            for e in b.iter() {
                e?;
                n += 1;
            }
        }
    }
    Ok(n)
}

fn corrupted(r: Result<u64, BoltError>) -> (u64, Defect) {
    match r {
        Err(BoltError::Corrupted { page, reason, .. }) => (page, reason),
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

/// The tree fixture's `key` bucket: its root (a branch) and that branch's children.
fn key_tree(bytes: &[u8]) -> (u64, Vec<u64>) {
    let db = Db::open(bytes).unwrap();
    let root = db.bucket(b"key").unwrap().unwrap().root_page().unwrap();
    let page = &bytes[root as usize * 4096..][..4096];
    let count = u16::from_le_bytes([page[10], page[11]]) as usize;
    assert_eq!(page[8], 1, "the key bucket's root is a branch");
    let children = (0..count)
        .map(|i| {
            let at = element_offset(i) + 8;
            u64::from_le_bytes(page[at..at + 8].try_into().unwrap())
        })
        .collect();
    (root, children)
}

fn set_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn truncated_files_do_not_open() {
    let db = fixture("etcd-3.5.30-tree");
    for len in [
        0,
        1,
        79,
        80,
        4095,
        4096,
        8191,
        8192,
        8193,
        db.len() / 2,
        db.len() - 1,
    ] {
        let r = Db::open(&db[..len]);
        assert!(r.is_err(), "{len} bytes opened");
        if len >= 8192 {
            assert!(
                matches!(r, Err(BoltError::Truncated { expected, actual })
                    if expected == db.len() as u64 && actual == len as u64),
                "{len}: {r:?}"
            );
        }
    }
    assert!(Db::open(db.as_slice()).is_ok());
}

#[test]
fn flipped_bytes_in_a_leaf() {
    let good = fixture("etcd-3.5.30-tree");
    let (_, children) = key_tree(&good);
    let leaf = children[1] as usize;
    let at = leaf * 4096;

    // Element 1's key size: its key runs past the page.
    let mut bad = good.clone();
    bad[at + element_offset(1) + 8 + 3] ^= 0x40;
    assert_eq!(
        corrupted(iterate_all(&bad)),
        (leaf as u64, Defect::ElementOutOfBounds)
    );
    let r = report(&bad);
    assert!(
        problems(&r).contains(&(leaf as u64, ProblemKind::Page)),
        "{r:#?}"
    );
    assert!(etcd::status(&Db::open(bad.as_slice()).unwrap()).is_err());

    // The first key's top byte: out of order with the next key and above the parent's bound.
    let mut bad = good.clone();
    let pos = u32::from_le_bytes(bad[at + 16 + 4..at + 16 + 8].try_into().unwrap()) as usize;
    bad[at + 16 + pos] = 0x7F;
    assert!(iterate_all(&bad).is_ok(), "the cursor does not judge order");
    let r = report(&bad);
    assert!(!r.problems.is_empty());
    assert!(r
        .problems
        .iter()
        .all(|p| p.page == leaf as u64 && p.kind == ProblemKind::KeyOrder));
    let err = etcd::status(&Db::open(bad.as_slice()).unwrap()).unwrap_err();
    assert!(err.to_string().contains(&format!("page {leaf}")), "{err}");

    // The flags: a meta page inside the tree.
    let mut bad = good.clone();
    bad[at + 8] = 0x04;
    assert_eq!(
        corrupted(iterate_all(&bad)),
        (leaf as u64, Defect::NotATreePage)
    );
    assert_eq!(
        problems(&report(&bad)),
        [(leaf as u64, ProblemKind::UnexpectedPageType)]
    );
    // A branch flag where a leaf belongs: its "children" are garbage, and its depth is wrong.
    let mut bad = good.clone();
    bad[at + 8] = 0x01;
    assert!(!report(&bad).is_ok());
}

#[test]
fn flipped_bytes_in_a_branch() {
    let good = fixture("etcd-3.5.30-tree");
    let (branch, children) = key_tree(&good);
    let at = branch as usize * 4096;
    let pgid_of = |i: usize| at + element_offset(i) + 8;
    let hwm = (good.len() / 4096) as u64;

    // Child 1 → child 0: a page referenced twice.
    let mut bad = good.clone();
    set_u64(&mut bad, pgid_of(1), children[0]);
    assert_eq!(
        corrupted(iterate_all(&bad)),
        (branch, Defect::PageReachedTwice)
    );
    let r = report(&bad);
    assert!(
        problems(&r).contains(&(children[0], ProblemKind::MultipleReferences)),
        "{r:#?}"
    );

    // To a meta page; beyond the high-water mark.
    for (target, defect) in [
        (1, Defect::PointerToMeta),
        (hwm + 5, Defect::PointerBeyondHighWater),
    ] {
        let mut bad = good.clone();
        set_u64(&mut bad, pgid_of(2), target);
        assert_eq!(corrupted(iterate_all(&bad)), (branch, defect));
        let r = report(&bad);
        assert_eq!(problems(&r)[0], (branch, ProblemKind::BadPointer), "{r:#?}");
        assert!(etcd::status(&Db::open(bad.as_slice()).unwrap()).is_err());
    }

    // A key byte: branch keys out of order.
    let mut bad = good.clone();
    let pos = u32::from_le_bytes(bad[at + 16..at + 20].try_into().unwrap()) as usize;
    bad[at + 16 + pos] = 0x7F;
    let r = report(&bad);
    assert!(
        problems(&r).contains(&(branch, ProblemKind::KeyOrder)),
        "{r:#?}"
    );

    // Its id: no longer its position.
    let mut bad = good.clone();
    bad[at] ^= 0x01;
    assert_eq!(corrupted(iterate_all(&bad)), (branch, Defect::IdMismatch));
    assert_eq!(problems(&report(&bad)), [(branch, ProblemKind::Page)]);
}

#[test]
fn a_page_pointing_to_itself() {
    let mut bad = fixture("etcd-3.5.30-tree");
    let (branch, _) = key_tree(&bad);
    set_u64(
        &mut bad,
        branch as usize * 4096 + element_offset(0) + 8,
        branch,
    );
    assert_eq!(
        corrupted(iterate_all(&bad)),
        (branch, Defect::PageReachedTwice)
    );
    let r = report(&bad);
    assert!(
        problems(&r).contains(&(branch, ProblemKind::MultipleReferences)),
        "{r:#?}"
    );
    // A lookup routed through it loops until the depth cap, naming the page.
    let db = Db::open(bad.as_slice()).unwrap();
    let first_key = {
        let mut k = 1u64.to_be_bytes().to_vec();
        k.push(b'_');
        k.extend_from_slice(&0u64.to_be_bytes());
        k
    };
    let err = db.get(b"key", &first_key).unwrap_err();
    assert!(
        matches!(err, BoltError::Corrupted { page, reason: Defect::TooDeep, .. } if page == branch),
        "{err}"
    );

    // Two pages pointing at each other, in a hand-laid file.
    let mut b = FileBuilder::new(4096);
    b.place(2, super::builder::branch(0, &[(b"a".to_vec(), 3)]));
    b.place(3, super::builder::branch(0, &[(b"a".to_vec(), 2)]));
    let bytes = b.build(2, 5);
    assert_eq!(
        corrupted(iterate_all(&bytes)),
        (3, Defect::PageReachedTwice)
    );
    let r = report(&bytes);
    assert_eq!(problems(&r), [(2, ProblemKind::MultipleReferences)]);
}

#[test]
fn overflow_past_the_end() {
    let good = fixture("etcd-3.5.30-tree");
    let (_, children) = key_tree(&good);
    let leaf = children[0];
    for overflow in [
        1_000_000u32,
        u32::MAX,
        (good.len() / 4096) as u32 - leaf as u32,
    ] {
        let mut bad = good.clone();
        let at = leaf as usize * 4096 + 12;
        bad[at..at + 4].copy_from_slice(&overflow.to_le_bytes());
        assert_eq!(
            corrupted(iterate_all(&bad)),
            (leaf, Defect::OverflowBeyondHighWater)
        );
        assert_eq!(problems(&report(&bad)), [(leaf, ProblemKind::Page)]);
    }
    // Overflow into the next live pages: those are then reached twice.
    let mut bad = good.clone();
    let at = leaf as usize * 4096 + 12;
    bad[at..at + 4].copy_from_slice(&3u32.to_le_bytes());
    let r = report(&bad);
    assert!(
        r.problems
            .iter()
            .any(|p| p.kind == ProblemKind::MultipleReferences),
        "{r:#?}"
    );
}

#[test]
fn flipped_meta_pages() {
    let good = fixture("etcd-3.5.30-small");
    let mut bad = good.clone();
    bad[16 + 20] ^= 0x01; // meta 0's root
    let db = Db::open(bad.as_slice()).unwrap();
    assert_eq!(db.meta_page(), 1);
    assert!(db
        .meta_note()
        .unwrap()
        .contains("meta page 0 is invalid (checksum"));
    assert_eq!(problems(&check(&db)), [(0, ProblemKind::Meta)]);
    bad[4096 + 16] ^= 0x01; // meta 1's magic
    assert!(matches!(
        Db::open(bad.as_slice()),
        Err(BoltError::NoValidMeta { .. })
    ));
}

#[test]
fn every_live_page_with_a_wrong_id_is_named() {
    for name in ["etcd-3.5.30-tree", "etcd-3.4.23-auth"] {
        let good = fixture(name);
        // Pages that start with a header (not overflow continuation pages).
        let starts = oracle(&good).live_pages.into_iter().filter(|p| {
            let at = *p as usize * 4096;
            u64::from_le_bytes(good[at..at + 8].try_into().unwrap()) == *p
        });
        for page in starts {
            let mut bad = good.clone();
            bad[page as usize * 4096] ^= 0x80;
            let r = report(&bad);
            assert_eq!(
                problems(&r),
                [(page, ProblemKind::Page)],
                "{name} page {page}"
            );
            assert!(r.problems[0]
                .reason
                .contains("id is not the page's position"));
        }
    }
}

#[test]
fn problem_list_is_capped_and_everything_counted() {
    // A stored freelist that lists none of the 300 free pages.
    let layout = EtcdDb::default();
    let mut b = FileBuilder::new(512);
    let root = layout.lay_out(&mut b);
    let freelist = b.next_id() + 300;
    b.place(
        freelist,
        crate::bolt::freelist::encode_freelist(0, &[], 512),
    );
    b.freelist = freelist;
    let r = report(&b.build(root, 10));
    assert_eq!(r.problems.len(), crate::bolt::check::MAX_PROBLEMS);
    assert_eq!(r.problem_count, 300);
}

/// Flips `n` random bytes, at offsets chosen by `pick`.
fn flip(db: &mut [u8], rng: &mut XorShift, n: u64, pick: &dyn Fn(&mut XorShift) -> usize) {
    for _ in 0..n {
        let at = pick(rng);
        db[at] ^= (rng.next() % 255 + 1) as u8;
    }
}

#[test]
fn random_flips_never_panic() {
    let mut rng = XorShift::new(0xb01d);
    for (name, rounds) in [
        ("etcd-3.5.30-small", 1500),
        ("etcd-3.5.30-auth", 500),
        ("etcd-3.5.30-tree", 150),
    ] {
        let db = fixture(name);
        let live: Vec<u64> = oracle(&db).live_pages.into_iter().chain([0, 1]).collect();
        // Mostly live pages' headers and element tables, where decisions are made.
        let pick = |rng: &mut XorShift| {
            let page = live[(rng.next() % live.len() as u64) as usize] as usize;
            let within = match rng.next() % 3 {
                0 => rng.next() % 64,
                1 => rng.next() % 400,
                _ => rng.next() % 4096,
            };
            page * 4096 + within as usize
        };
        let mut reported = 0;
        for _ in 0..rounds {
            let mut bad = db.clone();
            let n = 1 + rng.next() % 6;
            flip(&mut bad, &mut rng, n, &pick);
            fuzz_targets::bolt_open(&bad);
            let problems = Db::open(bad.as_slice()).map(|d| check(&d).problem_count);
            if !matches!(problems, Ok(0)) {
                reported += 1;
            }
        }
        // Most flips land in structure; some only in key or value bytes (no checksum to see).
        assert!(
            reported * 3 > rounds,
            "{name}: {reported} of {rounds} reported"
        );
    }
}

#[test]
fn flips_in_free_pages_change_nothing() {
    let mut rng = XorShift::new(11);
    for name in ["etcd-3.5.30-small", "etcd-3.5.30-tree", "etcd-3.4.23-tree"] {
        let db = fixture(name);
        let good_status = etcd::status(&Db::open(db.as_slice()).unwrap()).unwrap();
        let good_report = report(&db);
        let o = oracle(&db);
        let free: Vec<usize> = (2..db.len() / 4096)
            .filter(|p| !o.live_pages.contains(&(*p as u64)))
            .collect();
        let pick = |rng: &mut XorShift| {
            free[(rng.next() % free.len() as u64) as usize] * 4096 + (rng.next() % 4096) as usize
        };
        for _ in 0..100 {
            let mut bad = db.clone();
            let n = 1 + rng.next() % 64;
            flip(&mut bad, &mut rng, n, &pick);
            let d = Db::open(bad.as_slice()).unwrap();
            assert_eq!(etcd::status(&d).unwrap(), good_status);
            assert_eq!(check(&d), good_report);
        }
    }
}
