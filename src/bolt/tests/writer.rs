//! The fresh-file writer (`bolt::writer`), checked through the reader: every file written is opened
//! with `Db::open`, passes `check` with no problem and no free page, is a contiguous run of pages,
//! and gives back exactly the buckets, sequences and pairs written. Real etcd snapshots are
//! rewritten and must keep etcdutl's hash, revision and key count.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{manifest_dir, read_json, read_snapshot, tool_dir};
use crate::bolt::element::{BranchPage, LeafPage};
use crate::bolt::meta::Meta;
use crate::bolt::page::{PageHeader, PageKind};
use crate::bolt::writer::{MAX_KEY_SIZE, MAX_VALUE_SIZE};
use crate::bolt::{
    check, etcd, status, BoltWriter, Db, PageSource, WriteError, WriteSummary, WriterOptions,
};

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A top-level bucket to write: name, sequence, pairs in key order.
#[derive(Debug, Clone)]
struct Spec {
    name: Vec<u8>,
    sequence: u64,
    pairs: Pairs,
}

fn spec(name: &str, sequence: u64, pairs: Pairs) -> Spec {
    Spec {
        name: name.as_bytes().to_vec(),
        sequence,
        pairs,
    }
}

fn options(page_size: u32, fill: f64) -> WriterOptions {
    WriterOptions { page_size, fill }
}

/// Writes `specs` into a temporary file and returns its bytes.
fn write(specs: &[Spec], options: WriterOptions) -> (Vec<u8>, WriteSummary) {
    let mut file = tempfile::tempfile().unwrap();
    let mut w = BoltWriter::create(file.try_clone().unwrap(), options).unwrap();
    for s in specs {
        w.begin_bucket(&s.name, s.sequence).unwrap();
        for (k, v) in &s.pairs {
            w.put(k, v).unwrap();
        }
        w.end_bucket().unwrap();
    }
    let summary = w.finish().unwrap();
    (read_all(&mut file), summary)
}

fn read_all(file: &mut File) -> Vec<u8> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.read_to_end(&mut bytes).unwrap();
    bytes
}

/// The page at `id` with its overflow pages.
fn page(bytes: &[u8], page_size: u32, id: u64) -> &[u8] {
    let ps = page_size as usize;
    let at = id as usize * ps;
    let h = PageHeader::decode(&bytes[at..]).unwrap();
    &bytes[at..at + h.span(page_size) as usize]
}

/// Levels of the tree rooted at `root`, leaves included (1 = a single leaf), following child 0.
fn depth(bytes: &[u8], page_size: u32, mut id: u64) -> usize {
    let mut levels = 1;
    loop {
        let p = page(bytes, page_size, id);
        match PageHeader::decode(p).unwrap().kind() {
            PageKind::Leaf => return levels,
            PageKind::Branch => id = BranchPage::new(p).unwrap().element(0).unwrap().1,
            other => panic!("page {id} is {other:?} inside a tree"),
        }
        levels += 1;
    }
}

/// What a written file's pages are: (leaves, branches, largest overflow).
#[derive(Debug, Default, PartialEq, Eq)]
struct Shape {
    leaves: u64,
    branches: u64,
    max_overflow: u32,
}

/// Checks everything a fresh file must be and returns its shape.
fn verify(bytes: &[u8], specs: &[Spec], options: WriterOptions, summary: &WriteSummary) -> Shape {
    let ps = options.page_size;
    assert_eq!(bytes.len() as u64, summary.bytes, "file length");
    assert_eq!(summary.bytes, summary.pages * u64::from(ps));
    assert_eq!(summary.buckets, specs.len() as u64);
    assert_eq!(
        summary.keys,
        specs.iter().map(|s| s.pairs.len() as u64).sum::<u64>()
    );

    // Two metas, identical but for txid (0, 1) and checksum; the empty freelist on page 2.
    let m0 = Meta::decode(bytes).unwrap();
    let m1 = Meta::decode(&bytes[ps as usize..]).unwrap();
    assert_eq!((m0.txid, m1.txid), (0, 1));
    let same = |m: Meta| Meta {
        txid: 0,
        checksum: 0,
        ..m
    };
    assert_eq!(same(m0), same(m1));
    assert_eq!(
        (
            m0.page_size,
            m0.flags,
            m0.sequence,
            m0.freelist(),
            m0.high_water
        ),
        (ps, 0, 0, Some(2), summary.pages)
    );
    for id in [0u64, 1] {
        let h = PageHeader::decode(&bytes[(id * u64::from(ps)) as usize..]).unwrap();
        assert_eq!(
            (h.id, h.kind(), h.count, h.overflow),
            (id, PageKind::Meta, 0, 0)
        );
    }
    let h = PageHeader::decode(&bytes[2 * ps as usize..]).unwrap();
    assert_eq!(
        (h.id, h.kind(), h.count, h.overflow),
        (2, PageKind::Freelist, 0, 0)
    );

    // Pages 3 … high-water are a contiguous run of tree pages, each id at its position.
    let mut shape = Shape::default();
    let mut id = 3;
    while id < summary.pages {
        let p = page(bytes, ps, id);
        let h = PageHeader::decode(p).unwrap();
        assert_eq!(h.id, id);
        match h.kind() {
            PageKind::Leaf => shape.leaves += 1,
            PageKind::Branch => {
                shape.branches += 1;
                assert!(h.count >= 1, "empty branch page {id}");
            }
            other => panic!("page {id} is {other:?}"),
        }
        shape.max_overflow = shape.max_overflow.max(h.overflow);
        id += 1 + u64::from(h.overflow);
    }
    assert_eq!(
        id, summary.pages,
        "the last page ends at the high-water mark"
    );

    // The reader's view.
    let db = Db::open(bytes).unwrap();
    let info = db.info();
    assert_eq!(
        (info.meta_page, info.txid, info.freelist, info.meta_note),
        (1, 1, Some(2), None)
    );
    let report = check(&db);
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.pages_total, summary.pages);
    assert_eq!(
        report.pages_reachable, summary.pages,
        "every page is in use"
    );
    assert_eq!(report.pages_free, 0);
    assert!(report.freelist_stored);
    assert_eq!(
        db.buckets().unwrap(),
        specs.iter().map(|s| s.name.clone()).collect::<Vec<_>>()
    );
    for s in specs {
        let b = db.bucket(&s.name).unwrap().unwrap();
        assert_eq!(b.sequence(), s.sequence, "sequence of {:?}", s.name);
        assert_eq!(
            b.is_inline(),
            inline_expected(s, options),
            "inline {:?}",
            s.name
        );
        for (n, (e, (k, v))) in b.iter().zip(&s.pairs).enumerate() {
            let e = e.unwrap();
            assert!(!e.is_bucket);
            assert!(e.key == *k && e.value == *v, "pair {n} of {:?}", s.name);
        }
        assert_eq!(b.iter().count(), s.pairs.len(), "pairs in {:?}", s.name);
        // Point lookups route through the branch pages as bbolt's seek does.
        let step = (s.pairs.len() / 500).max(1);
        for (k, v) in s.pairs.iter().step_by(step) {
            assert_eq!(b.get(k).unwrap().as_ref(), Some(v));
        }
    }
    shape
}

/// Whether bbolt's rule (and the writer) inlines this bucket: its single leaf takes at most a quarter
/// of a page — and, with a fill below a quarter, no more than a page is filled to.
fn inline_expected(s: &Spec, options: WriterOptions) -> bool {
    let leaf: usize = 16
        + s.pairs
            .iter()
            .map(|(k, v)| 16 + k.len() + v.len())
            .sum::<usize>();
    let budget = (options.fill * f64::from(options.page_size)) as usize;
    // One leaf (a single entry always makes one), small enough for bbolt to inline.
    leaf <= options.page_size as usize / 4 && (s.pairs.len() <= 1 || leaf <= budget)
}

fn write_and_verify(specs: &[Spec], options: WriterOptions) -> (Vec<u8>, Shape) {
    let (bytes, summary) = write(specs, options);
    let shape = verify(&bytes, specs, options, &summary);
    (bytes, shape)
}

/// The root page of top-level bucket `name`.
fn bucket_root(bytes: &[u8], name: &[u8]) -> u64 {
    Db::open(bytes)
        .unwrap()
        .bucket(name)
        .unwrap()
        .unwrap()
        .root_page()
        .unwrap()
}

/// Deterministic xorshift64* (no dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn numbered(n: usize, key_len: usize, value_len: usize) -> Pairs {
    (0..n)
        .map(|i| {
            let mut k = format!("{i:08}").into_bytes();
            k.resize(key_len.max(8), b'k');
            (
                k,
                format!("value-{i}-").repeat(value_len / 8 + 1)[..value_len].into(),
            )
        })
        .collect()
}

#[test]
fn empty_file_is_metas_freelist_and_an_empty_root_leaf() {
    let opts = WriterOptions::default();
    let (bytes, shape) = write_and_verify(&[], opts);
    assert_eq!(bytes.len(), 4 * 4096);
    assert_eq!(shape.leaves, 1);
    let root = Meta::decode(&bytes).unwrap().root;
    assert_eq!(root, 3);
    assert!(LeafPage::new(page(&bytes, 4096, 3)).unwrap().is_empty());
}

#[test]
fn small_buckets_are_inline_as_bbolt_stores_them() {
    for ps in [512, 4096, 16384] {
        let p = ps as usize;
        // A leaf of exactly a quarter page: header, one element, key "q" and the value.
        let quarter = vec![(b"q".to_vec(), vec![7u8; p / 4 - 16 - 16 - 1])];
        let mut over = quarter.clone();
        over[0].1.push(7);
        let specs = [
            spec("a", 0, vec![]),
            spec("b", u64::MAX, vec![(b"k".to_vec(), b"v".to_vec())]),
            spec("c", 7, vec![(b"only".to_vec(), Vec::new())]),
            spec("d", 1, quarter),
            spec("e", 2, over),
        ];
        let (bytes, shape) = write_and_verify(&specs, options(ps, 1.0));
        // 0, 1 metas; 2 freelist; 3 the leaf of `e`; 4 the root leaf holding a … d inline.
        assert_eq!(bytes.len(), 5 * p);
        assert_eq!(
            shape,
            Shape {
                leaves: 2,
                branches: 0,
                max_overflow: 0
            }
        );
        assert_eq!(bucket_root(&bytes, b"e"), 3);
        assert_eq!(Meta::decode(&bytes).unwrap().root, 4);
        // An empty inline bucket is 32 bytes, as bbolt makes it: root 0, sequence, empty leaf.
        let root = LeafPage::new(page(&bytes, ps, 4)).unwrap();
        let a = root.element(0).unwrap();
        let mut empty = [0u8; 32];
        empty[24..26].copy_from_slice(&2u16.to_le_bytes());
        assert_eq!(
            (a.key, a.value, a.is_bucket()),
            (&b"a"[..], &empty[..], true)
        );
    }
}

#[test]
fn thousands_of_keys_build_multi_level_branch_trees() {
    for (ps, key_len) in [(4096u32, 30usize), (16384, 200)] {
        let specs = [
            spec("first", 1, numbered(30_000, key_len, 8)),
            spec("second", 2, numbered(3, 10, 10)),
        ];
        let (bytes, shape) = write_and_verify(&specs, options(ps, 1.0));
        assert!(
            depth(&bytes, ps, bucket_root(&bytes, b"first")) >= 3,
            "{shape:?}"
        );
        assert!(Db::open(bytes.as_slice())
            .unwrap()
            .bucket(b"second")
            .unwrap()
            .unwrap()
            .is_inline());
        assert_eq!(shape.max_overflow, 0, "small entries never overflow");
    }
}

#[test]
fn many_buckets_give_the_root_bucket_a_branch_tree() {
    let specs: Vec<Spec> = (0..2000)
        .map(|i| {
            spec(
                &format!("bucket-{i:05}"),
                i,
                numbered(i as usize % 3, 12, 5),
            )
        })
        .collect();
    let (bytes, _) = write_and_verify(&specs, options(4096, 1.0));
    assert!(depth(&bytes, 4096, Meta::decode(&bytes).unwrap().root) >= 2);
}

#[test]
fn values_bigger_than_a_page_get_overflow_pages() {
    for ps in [4096u32, 16384] {
        let p = ps as usize;
        let sizes = [
            1,
            p - 40,
            p - 32 - 1,
            p,
            p + 1,
            3 * p + 7,
            10 * p,
            5,
            0,
            2 * p,
        ];
        let pairs: Pairs = sizes
            .iter()
            .enumerate()
            .flat_map(|(i, &n)| {
                let big = (format!("big-{i:02}").into_bytes(), vec![i as u8 + 1; n]);
                let small = (format!("big-{i:02}-small").into_bytes(), b"x".to_vec());
                [big, small]
            })
            .collect();
        let specs = [spec("values", 3, pairs)];
        let (_, shape) = write_and_verify(&specs, options(ps, 1.0));
        // 10 pages of value + header + element + key: at least 10 overflow pages (more when
        // its neighbours share its leaf), never past a 16-page leaf.
        assert!((10..16).contains(&shape.max_overflow), "{shape:?}");
        // An entry of exactly a page (header + element + key + value) shares nothing.
        let exact = (b"exact".to_vec(), vec![9u8; p - 32 - 5]);
        let specs = [spec("v", 0, vec![exact])];
        let (_, shape) = write_and_verify(&specs, options(ps, 1.0));
        assert_eq!(shape.max_overflow, 0);
    }
}

#[test]
fn objects_a_little_bigger_than_a_page_share_leaves() {
    // etcd's typical value: a Kubernetes object of a few KiB. Alone, each takes 2 pages and
    // wastes most of the second; two share 3 pages, as bbolt lays them out.
    let pairs = numbered(1000, 17, 6000);
    let (bytes, shape) = write_and_verify(&[spec("key", 0, pairs)], options(4096, 1.0));
    assert_eq!(shape.max_overflow, 2, "{shape:?}");
    assert_eq!(shape.leaves, 500 + 1, "{shape:?}");
    let pages = bytes.len() / 4096;
    assert!(pages < 1000 * 3 / 2 + 20, "{pages} pages for 1000 objects");
    // A small entry after a big one fills the big one's overflow slack.
    let mut pairs = numbered(1, 17, 6000);
    pairs.push((b"zz-small".to_vec(), vec![1u8; 100]));
    let (_, shape) = write_and_verify(&[spec("key", 0, pairs)], options(4096, 1.0));
    assert_eq!((shape.leaves, shape.max_overflow), (1 + 1, 1), "{shape:?}");
}

#[test]
fn keys_of_every_length_up_to_bbolts_maximum() {
    let mut rng = Rng(7);
    let lens = [1, 2, 17, 100, 1000, 4095, 4096, 4097, 10_000, MAX_KEY_SIZE];
    for ps in [4096u32, 16384] {
        // Many long keys: branch elements bigger than a page, branch pages with overflow.
        let mut pairs: Pairs = (0..300)
            .map(|i| {
                let mut k = format!("{i:04}").into_bytes();
                k.extend(rng.bytes(lens[i % lens.len()].saturating_sub(4)));
                (k, rng.bytes(i % 50))
            })
            .collect();
        pairs.sort();
        let specs = [spec("long", 0, pairs)];
        let (bytes, shape) = write_and_verify(&specs, options(ps, 1.0));
        // A leaf holding a 32 KiB key spans 32 KiB and a bit; a branch page holding two long
        // keys, more.
        assert!(shape.max_overflow >= MAX_KEY_SIZE as u32 / ps, "{shape:?}");
        assert!(depth(&bytes, ps, bucket_root(&bytes, b"long")) >= 3);
        // Every key oversized. With 4 KiB pages two of them exceed a 16-page leaf: one entry per
        // leaf, two children per branch page. With 16 KiB pages seven share a 15-page leaf
        // (apart they would take 21 pages): 10 leaves, and the root bucket's.
        let pairs: Pairs = (0..64u8)
            .map(|i| (vec![i; MAX_KEY_SIZE], vec![i]))
            .collect();
        let specs = [spec("huge-keys", 1, pairs)];
        let (bytes, shape) = write_and_verify(&specs, options(ps, 1.0));
        assert_eq!(shape.leaves, if ps == 4096 { 64 + 1 } else { 10 + 1 });
        assert!(depth(&bytes, ps, bucket_root(&bytes, b"huge-keys")) <= 7);
    }
    // A bucket name of the maximum length.
    let name = "n".repeat(MAX_KEY_SIZE);
    write_and_verify(&[spec(&name, 0, numbered(5, 10, 10))], options(4096, 1.0));
}

#[test]
fn fill_leaves_room_in_each_page() {
    let specs = [spec("k", 0, numbered(5000, 20, 60))];
    let (_, full) = write_and_verify(&specs, options(4096, 1.0));
    let (bytes, half) = write_and_verify(&specs, options(4096, 0.5));
    assert!(half.leaves > full.leaves * 19 / 10, "{half:?} vs {full:?}");
    let db = Db::open(bytes.as_slice()).unwrap();
    let mut id = 3;
    while id < db.high_water_mark() {
        let p = page(&bytes, 4096, id);
        if let Ok(leaf) = LeafPage::new(p) {
            let used: usize = leaf
                .entries()
                .map(|e| e.map(|e| 16 + e.key.len() + e.value.len()).unwrap())
                .sum();
            assert!(16 + used <= 2048, "leaf {id} holds {used} bytes");
        }
        id += 1 + u64::from(PageHeader::decode(p).unwrap().overflow);
    }
    let (_, tenth) = write_and_verify(&specs, options(512, 0.1));
    assert_eq!(
        tenth.leaves,
        5000 + 1,
        "every entry exceeds 51 bytes: a leaf each"
    );
}

#[test]
fn a_huge_value_is_one_leaf_with_overflow_pages() {
    let value: Vec<u8> = (0..100usize << 20).map(|i| (i % 251) as u8).collect();
    let pairs = vec![
        (b"a".to_vec(), b"before".to_vec()),
        (b"huge".to_vec(), value),
        (b"z".to_vec(), b"after".to_vec()),
    ];
    let specs = [spec("big", 0, pairs)];
    let (_, shape) = write_and_verify(&specs, options(4096, 1.0));
    let span = (16 + 16 + 4 + (100usize << 20)).div_ceil(4096);
    assert_eq!(shape.max_overflow as usize, span - 1);
    assert_eq!(shape.leaves, 3 + 1, "before, huge, after, root");
}

#[test]
fn random_round_trips() {
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let ps = [512u32, 1024, 4096, 16384][rng.below(4) as usize];
        let fill = [1.0, 0.9, 0.5, 0.1][rng.below(4) as usize];
        let mut names: Vec<Vec<u8>> = (0..1 + rng.below(6))
            .map(|_| {
                let n = 1 + rng.below(12) as usize;
                rng.bytes(n)
            })
            .collect();
        names.sort();
        names.dedup();
        let specs: Vec<Spec> = names
            .into_iter()
            .map(|name| {
                let n = [0, 1, 2, 50, 800, 4000][rng.below(6) as usize];
                let mut pairs: Pairs = (0..n)
                    .map(|_| {
                        let klen = match rng.below(20) {
                            0 => {
                                1 + rng.below(3 * u64::from(ps)).min(MAX_KEY_SIZE as u64 - 1)
                                    as usize
                            }
                            _ => 1 + rng.below(40) as usize,
                        };
                        let vlen = match rng.below(30) {
                            0 => rng.below(5 * u64::from(ps)) as usize,
                            1..=5 => 0,
                            _ => rng.below(200) as usize,
                        };
                        (rng.bytes(klen), rng.bytes(vlen))
                    })
                    .collect();
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
                pairs.dedup_by(|a, b| a.0 == b.0);
                Spec {
                    name,
                    sequence: rng.next() >> rng.below(64),
                    pairs,
                }
            })
            .collect();
        let (bytes, summary) = write(&specs, options(ps, fill));
        verify(&bytes, &specs, options(ps, fill), &summary);
    }
}

fn error_of<T: std::fmt::Debug>(r: Result<T, WriteError>) -> WriteError {
    r.unwrap_err()
}

#[test]
fn options_out_of_range_are_refused() {
    for ps in [0, 256, 511, 1000, 4095, 4097, 2 << 20] {
        let e = error_of(BoltWriter::create(
            tempfile::tempfile().unwrap(),
            options(ps, 1.0),
        ));
        assert!(matches!(e, WriteError::PageSize(p) if p == ps), "{e}");
        assert!(e.to_string().contains("power of two from 512 to 1048576"));
    }
    for fill in [0.0, 0.09, 1.01, f64::NAN, f64::INFINITY, -1.0] {
        let e = error_of(BoltWriter::create(
            tempfile::tempfile().unwrap(),
            options(4096, fill),
        ));
        assert!(matches!(e, WriteError::Fill(_)), "{e}");
    }
    // A file that cannot be written: an I/O error naming what was being done.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    std::fs::write(&path, b"old").unwrap();
    let read_only = File::open(&path).unwrap();
    let e = error_of(BoltWriter::create(read_only, WriterOptions::default()));
    assert!(matches!(e, WriteError::Io { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("cannot write the new bbolt file (truncating it)"),
        "{e}"
    );
}

#[test]
fn input_out_of_order_or_out_of_bounds_is_refused_and_the_writer_goes_on() {
    let mut file = tempfile::tempfile().unwrap();
    let mut w = BoltWriter::create(file.try_clone().unwrap(), WriterOptions::default()).unwrap();
    let e = error_of(w.put(b"k", b"v"));
    assert!(matches!(e, WriteError::NoBucket { .. }));
    assert_eq!(e.to_string(), "cannot put a key: no bucket is open");
    assert!(matches!(
        error_of(w.end_bucket()),
        WriteError::NoBucket { .. }
    ));
    assert!(matches!(
        error_of(w.begin_bucket(b"", 0)),
        WriteError::EmptyBucketName
    ));
    let long = vec![b'n'; MAX_KEY_SIZE + 1];
    assert!(matches!(
        error_of(w.begin_bucket(&long, 0)),
        WriteError::BucketNameTooLong { len } if len == MAX_KEY_SIZE + 1
    ));

    w.begin_bucket(b"key", 5).unwrap();
    let e = error_of(w.begin_bucket(b"lease", 0));
    assert!(matches!(e, WriteError::BucketStillOpen { .. }));
    assert_eq!(
        e.to_string(),
        "cannot begin bucket \"lease\": bucket \"key\" is still open"
    );
    assert!(matches!(
        error_of(w.put(b"", b"v")),
        WriteError::EmptyKey { .. }
    ));
    let e = error_of(w.put(&vec![0u8; MAX_KEY_SIZE + 1], b"v"));
    assert!(matches!(e, WriteError::KeyTooLong { len, .. } if len == MAX_KEY_SIZE + 1));
    assert_eq!(
        e.to_string(),
        "bucket \"key\": a key of 32769 bytes is too long: bbolt allows at most 32768"
    );
    // Zeroed memory is mapped lazily: 2 GiB of address space, no 2 GiB of RAM.
    let too_big = vec![0u8; MAX_VALUE_SIZE + 1];
    let e = error_of(w.put(b"k", &too_big));
    drop(too_big);
    assert!(matches!(e, WriteError::ValueTooLong { len, .. } if len == MAX_VALUE_SIZE + 1));
    assert!(
        e.to_string().contains("bbolt allows at most 2147483646"),
        "{e}"
    );

    w.put(&[0, 0, 0, 1], b"one").unwrap();
    w.put(&[0, 0, 0, 2], b"two").unwrap();
    for key in [
        &[0u8, 0, 0, 2][..],
        &[0, 0, 0, 1],
        &[0, 0, 0],
        &[0, 0, 0, 1, 9],
    ] {
        let e = error_of(w.put(key, b"again"));
        assert!(matches!(e, WriteError::KeyOrder { .. }), "{key:?}: {e}");
    }
    let e = error_of(w.put(&[0, 0, 0, 1], b"x"));
    assert_eq!(
        e.to_string(),
        "bucket \"key\": key 0x00000001 comes after key 0x00000002: keys must be written in \
         strictly ascending byte order, each once"
    );
    w.put(&[0, 0, 0, 3], b"three").unwrap();
    let e = error_of(w.finish());
    assert!(
        matches!(e, WriteError::UnfinishedBucket(ref n) if n == b"key"),
        "{e}"
    );

    // finish consumed that writer; the same input again, then bucket order.
    let mut w = BoltWriter::create(file.try_clone().unwrap(), WriterOptions::default()).unwrap();
    w.begin_bucket(b"key", 5).unwrap();
    for k in 1..=3u8 {
        w.put(&[0, 0, 0, k], b"v").unwrap();
    }
    w.end_bucket().unwrap();
    for name in [&b"key"[..], b"alarm", b"ke"] {
        let e = error_of(w.begin_bucket(name, 0));
        assert!(matches!(e, WriteError::BucketOrder { .. }), "{e}");
    }
    assert!(error_of(w.begin_bucket(b"alarm", 0))
        .to_string()
        .starts_with("bucket \"alarm\" comes after bucket \"key\""));
    w.begin_bucket(b"meta", 1).unwrap();
    w.end_bucket().unwrap();
    let summary = w.finish().unwrap();
    let specs = [
        spec(
            "key",
            5,
            (1..=3u8)
                .map(|k| (vec![0, 0, 0, k], b"v".to_vec()))
                .collect(),
        ),
        spec("meta", 1, vec![]),
    ];
    // The refused calls left nothing behind: the file holds exactly what was accepted.
    verify(
        &read_all(&mut file),
        &specs,
        WriterOptions::default(),
        &summary,
    );
}

/// Every top-level bucket of `db` with its pairs, as the native restore will read them.
fn specs_of<S: PageSource>(db: &Db<S>) -> Vec<Spec> {
    let mut specs = Vec::new();
    for name in db.buckets().unwrap() {
        let b = db.bucket(&name).unwrap().unwrap();
        let pairs = b
            .iter()
            .map(|e| {
                let e = e.unwrap();
                assert!(!e.is_bucket, "etcd has no nested buckets");
                (e.key, e.value)
            })
            .collect();
        specs.push(Spec {
            name,
            sequence: b.sequence(),
            pairs,
        });
    }
    specs
}

/// Every committed etcd snapshot, rewritten bucket by bucket, keeps every pair and sequence and
/// etcdutl's hash, revision and key count; only its size changes (a fresh file has no free pages).
#[test]
fn etcd_fixtures_rewritten_keep_their_contents_and_status() {
    let mut dirs: Vec<_> = std::fs::read_dir(manifest_dir().join("fixtures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("etcd-3.5.30-") || n.starts_with("etcd-3.4.23-"))
        })
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 7, "{dirs:?}");
    for dir in dirs {
        let original = read_snapshot(&dir.join("snapshot.db"));
        let src = Db::open(original.as_slice()).unwrap();
        let specs = specs_of(&src);
        for opts in [options(4096, 1.0), options(16384, 0.5)] {
            let (bytes, summary) = write(&specs, opts);
            verify(&bytes, &specs, opts, &summary);
            let rewritten = status(&Db::open(bytes.as_slice()).unwrap()).unwrap();
            let before = status(&src).unwrap();
            let recorded = read_json(&dir.join("snapshot.status.json"));
            assert_eq!(
                (rewritten.hash, rewritten.revision, rewritten.total_key),
                (before.hash, before.revision, before.total_key),
                "{}",
                dir.display()
            );
            assert_eq!(Some(u64::from(rewritten.hash)), recorded["hash"].as_u64());
            assert_eq!(Some(rewritten.revision), recorded["revision"].as_i64());
            assert_eq!(Some(rewritten.total_key), recorded["totalKey"].as_u64());
            assert_eq!(rewritten.total_size, summary.bytes);
            if opts.page_size == 4096 && opts.fill == 1.0 {
                assert!(
                    rewritten.total_size <= before.total_size,
                    "{}: {} > {}",
                    dir.display(),
                    rewritten.total_size,
                    before.total_size
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Real etcd on a written file

/// etcd running on a data directory; killed when dropped.
struct Etcd {
    child: Child,
    bin: PathBuf,
    client: String,
    log: PathBuf,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` (with `input` on stdin), panicking with its output unless it succeeds; its stdout.
fn run(cmd: &mut Command, input: &str) -> String {
    use std::io::Write;
    let mut child = cmd
        .env("ETCDCTL_API", "3")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    /// Starts etcd from `bin` on `data` (restored for member `n` at `peer`) and waits until it is
    /// healthy.
    fn start(bin: &Path, data: &Path, peer: &str) -> Etcd {
        let client = format!("http://127.0.0.1:{}", free_port());
        let log = data.with_extension("log");
        let child = Command::new(bin.join("etcd"))
            .args(["--name", "n", "--data-dir"])
            .arg(data)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
            ])
            .args([
                "--initial-cluster",
                &format!("n={peer}"),
                "--log-level",
                "error",
            ])
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut etcd = Etcd {
            child,
            bin: bin.to_path_buf(),
            client,
            log,
        };
        for _ in 0..200 {
            let healthy = Command::new(etcd.bin.join("etcdctl"))
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &etcd.client, "endpoint", "health"])
                .output()
                .is_ok_and(|o| o.status.success());
            if healthy {
                return etcd;
            }
            if etcd.child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "etcd did not become healthy: {}",
            std::fs::read_to_string(&etcd.log).unwrap_or_default()
        );
    }

    fn ctl(&self, args: &[&str], input: &str) -> String {
        run(
            Command::new(self.bin.join("etcdctl"))
                .args(["--endpoints", &self.client, "--command-timeout", "30s"])
                .args(args),
            input,
        )
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut args = args.to_vec();
        args.extend(["-w", "json"]);
        serde_json::from_str(&self.ctl(&args, "")).unwrap()
    }

    /// (live keys, current revision).
    fn keys(&self) -> (u64, i64) {
        let r = self.json(&["get", "", "--prefix", "--keys-only"]);
        (
            r["count"].as_u64().unwrap_or(0),
            r["header"]["revision"].as_i64().unwrap(),
        )
    }
}

/// Real etcd (bbolt 1.3.x) takes a file the writer made from a committed snapshot: `snapshot
/// restore` opens it and runs bbolt's first write transaction on it, etcd serves it, and keeps
/// writing — puts that split the full leaves, a physical compaction that deletes from them and
/// merges them, a defrag that reads every page, a restart — and saves a snapshot that passes
/// etcdutl's status and this crate's check.
fn real_etcd_keeps_writing(version: &str, fixture: &str) {
    let etcd35 = tool_dir(
        "CPKEEP_ETCD35_DIR",
        "etcd-3.5/bin",
        &["etcd", "etcdctl", "etcdutl"],
    );
    let bin = match version {
        "3.5" => etcd35.clone(),
        _ => tool_dir("CPKEEP_ETCD34_DIR", "etcd-3.4/bin", &["etcd", "etcdctl"]),
    };
    let dir = manifest_dir().join("fixtures").join(fixture);
    let original = read_snapshot(&dir.join("snapshot.db"));
    let src = Db::open(original.as_slice()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let fresh = tmp.path().join("fresh.db");
    let specs = specs_of(&src);
    let mut w =
        BoltWriter::create(File::create(&fresh).unwrap(), WriterOptions::default()).unwrap();
    for s in &specs {
        w.begin_bucket(&s.name, s.sequence).unwrap();
        for (k, v) in &s.pairs {
            w.put(k, v).unwrap();
        }
        w.end_bucket().unwrap();
    }
    w.finish().unwrap();

    // etcdutl's bbolt checks the file and hashes it as the original.
    let recorded = read_json(&dir.join("snapshot.status.json"));
    let st: serde_json::Value = serde_json::from_str(&run(
        Command::new(etcd35.join("etcdutl"))
            .args(["snapshot", "status", "-w", "json"])
            .arg(&fresh),
        "",
    ))
    .unwrap();
    assert_eq!(st["hash"], recorded["hash"]);
    assert_eq!(st["totalKey"], recorded["totalKey"]);

    // What etcd should serve: the live keys of the snapshot, at its last revision.
    let mut latest = std::collections::BTreeMap::new();
    for r in etcd::revisions(&src).unwrap() {
        let (rev, kv) = r.unwrap();
        latest.insert(kv.key, !rev.tombstone);
    }
    let live = latest.values().filter(|l| **l).count() as u64;
    // etcd resumes at the last revision in `key`, or at the compaction's if that is higher (3.4
    // removes the put and tombstone at the compaction revision).
    let compacted = etcd::meta(&src).unwrap().scheduled_compact_revision;
    let revision = status(&src).unwrap().revision.max(compacted.unwrap_or(0));

    let data = tmp.path().join("data");
    let peer = format!("http://127.0.0.1:{}", free_port());
    let restore_tool = match version {
        "3.5" => etcd35.join("etcdutl"),
        _ => bin.join("etcdctl"),
    };
    run(
        Command::new(restore_tool)
            .arg("snapshot")
            .arg("restore")
            .arg(&fresh)
            .args(["--skip-hash-check", "--name", "n", "--data-dir"])
            .arg(&data)
            .args(["--initial-cluster", &format!("n={peer}")])
            .args(["--initial-advertise-peer-urls", &peer]),
        "",
    );
    let etcd = Etcd::start(&bin, &data, &peer);
    assert_eq!(
        etcd.keys(),
        (live, revision),
        "etcd {version} serves the snapshot"
    );

    // 1000 new keys in 10 transactions, a value spanning pages, a lease, then deletes.
    for t in 0..10 {
        let mut ops = String::from("\n");
        for i in t * 100..(t + 1) * 100 {
            ops += &format!("put /writer/{i:05} {}\n", "v".repeat(i % 500 + 1));
        }
        ops += "\n\n";
        etcd.ctl(&["txn"], &ops);
    }
    etcd.ctl(&["put", "/writer/big", &"b".repeat(60_000)], "");
    let lease = etcd.json(&["lease", "grant", "600"])["ID"]
        .as_i64()
        .unwrap();
    etcd.ctl(
        &[
            "put",
            "/writer/leased",
            "x",
            "--lease",
            &format!("{lease:x}"),
        ],
        "",
    );
    etcd.ctl(&["del", "/writer/000", "--prefix"], "");
    let (keys, rev) = etcd.keys();
    assert_eq!(keys, live + 1000 + 2 - 100);
    etcd.ctl(&["compact", &rev.to_string(), "--physical"], "");
    etcd.ctl(&["defrag"], "");
    drop(etcd);

    let etcd = Etcd::start(&bin, &data, &peer);
    assert_eq!(etcd.keys(), (keys, rev));
    etcd.ctl(&["put", "/writer/after-restart", "yes"], "");
    assert_eq!(
        etcd.ctl(&["get", "/writer/big", "--print-value-only"], "")
            .trim_end(),
        "b".repeat(60_000)
    );
    let saved = tmp.path().join("after.db");
    etcd.ctl(&["snapshot", "save", saved.to_str().unwrap()], "");
    drop(etcd);
    let after = read_snapshot(&saved);
    let db = Db::open(after.as_slice()).unwrap();
    assert!(check(&db).is_ok());
    assert_eq!(status(&db).unwrap().revision, rev + 1);
    run(
        Command::new(etcd35.join("etcdutl"))
            .args(["snapshot", "status", "-w", "json"])
            .arg(&saved),
        "",
    );
}

#[test]
fn real_etcd_3_5_restores_and_keeps_writing_a_written_file() {
    real_etcd_keeps_writing("3.5", "etcd-3.5.30-tree");
}

#[test]
fn real_etcd_3_4_restores_and_keeps_writing_a_written_file() {
    real_etcd_keeps_writing("3.4", "etcd-3.4.23-tree");
}
