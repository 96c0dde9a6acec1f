//! The fuzz targets (`fuzz/`, cargo-fuzz) run as a plain deterministic test: over their seed
//! corpus (`fuzz/corpus/<target>/`) and 10 000 inputs mutated from it with a fixed seed. This
//! runs everywhere `cargo test` does; libFuzzer explores further where nightly Rust is available.
//!
//! `write_seed_corpus` (ignored) regenerates the corpus from the committed fixtures and hand-laid
//! files: `cargo test --lib write_seed_corpus -- --ignored`.

use std::path::{Path, PathBuf};

use super::builder::{
    bucket_entry, bucket_value, entry, inline_bucket, leaf, EtcdDb, FileBuilder, Order, XorShift,
};
use super::{manifest_dir, read_snapshot};
use crate::bolt::fuzz_targets::{bolt_open, bolt_roundtrip, bolt_stream, kv_decode};
use crate::bolt::{etcd, Db};

const TARGETS: [&str; 3] = ["bolt_open", "bolt_stream", "kv_decode"];
/// Mutated inputs, over all targets.
const MUTATIONS: usize = 10_000;

fn corpus_dir(target: &str) -> PathBuf {
    manifest_dir().join("fuzz/corpus").join(target)
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: no seeds", dir.display());
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

fn run(target: &str, input: &[u8]) {
    match target {
        "bolt_open" => bolt_open(input),
        "bolt_stream" => bolt_stream(input),
        _ => kv_decode(input),
    }
}

/// One mutation of `input`, in the spirit of libFuzzer's: bit flips, interesting integers over
/// header-sized fields, truncation, a block copied over another, bytes inserted or removed.
fn mutate(input: &[u8], rng: &mut XorShift, page_size: usize) -> Vec<u8> {
    let mut out = input.to_vec();
    if out.is_empty() {
        out.push(rng.next() as u8);
    }
    let rounds = 1 + rng.next() % 4;
    for _ in 0..rounds {
        let len = out.len();
        // Offsets near the start of a page (headers, element tables) half the time.
        let at = if rng.next().is_multiple_of(2) && len > page_size {
            let page = (rng.next() % (len / page_size) as u64) as usize;
            (page * page_size + (rng.next() % 96) as usize).min(len - 1)
        } else {
            (rng.next() % len as u64) as usize
        };
        match rng.next() % 7 {
            0 => out[at] ^= 1 << (rng.next() % 8),
            1 => out[at] = rng.next() as u8,
            2 => {
                const INTERESTING: [u64; 10] = [
                    0,
                    1,
                    2,
                    3,
                    0x7F,
                    0xFF,
                    0xFFFF,
                    0x8000_0000,
                    u32::MAX as u64,
                    u64::MAX,
                ];
                let v = INTERESTING[(rng.next() % 10) as usize]
                    .wrapping_add(rng.next() % 3)
                    .to_le_bytes();
                let w = [2usize, 4, 8][(rng.next() % 3) as usize].min(len - at);
                out[at..at + w].copy_from_slice(&v[..w]);
            }
            3 => out.truncate(at.max(1)),
            4 if len >= 2 * page_size => {
                let pages = len / page_size;
                let from = (rng.next() % pages as u64) as usize * page_size;
                let to = (rng.next() % pages as u64) as usize * page_size;
                let block = out[from..from + page_size].to_vec();
                out[to..to + page_size].copy_from_slice(&block);
            }
            5 => {
                let n = 1 + (rng.next() % 8) as usize;
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                out.splice(at..at, bytes);
            }
            _ => {
                let end = (at + 1 + (rng.next() % 8) as usize).min(len);
                if len > 1 {
                    out.drain(at..end);
                }
            }
        }
        if out.is_empty() {
            out.push(0);
        }
    }
    out
}

#[test]
fn fuzz_targets_over_corpus_and_mutations() {
    let mut rng = XorShift::new(0xf022);
    let mut total = 0;
    for target in TARGETS {
        let seeds = corpus(target);
        for s in &seeds {
            run(target, s);
        }
        // Most of the budget to the bbolt targets: they have the most structure to get wrong.
        let share = match target {
            "bolt_open" => MUTATIONS * 6 / 10,
            "bolt_stream" => MUTATIONS * 2 / 10,
            _ => MUTATIONS * 2 / 10,
        };
        for i in 0..share {
            let seed = &seeds[i % seeds.len()];
            let page_size = if seed.len() >= 4096 && i % 3 != 0 {
                4096
            } else {
                512
            };
            let input = mutate(seed, &mut rng, page_size);
            run(target, &input);
            total += 1;
        }
    }
    assert_eq!(total, MUTATIONS);
}

#[test]
fn seed_corpus_is_committed_and_small() {
    for target in TARGETS {
        let seeds = corpus(target);
        let bytes: usize = seeds.iter().map(Vec::len).sum();
        assert!(bytes < 512 * 1024, "{target}: {bytes} bytes of seeds");
        if target != "kv_decode" {
            // Every bbolt seed opens: they are starting points, not failures.
            for s in &seeds {
                assert!(Db::open(s.as_slice()).is_ok());
            }
        }
    }
}

/// Small bbolt files for the seed corpus: the small real snapshots (db bytes only) and hand-laid
/// files with 512-byte pages (nested and inline buckets, overflow, a stored freelist).
fn bolt_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for name in [
        "etcd-3.5.30-small",
        "etcd-3.5.30-auth",
        "etcd-3.4.23-auth",
        "etcd-3.5.30-leases",
    ] {
        let db = read_snapshot(
            &manifest_dir()
                .join("fixtures")
                .join(name)
                .join("snapshot.db"),
        );
        seeds.push((name.to_string(), db));
    }
    let small = EtcdDb {
        page_size: 512,
        revisions: (1..=24)
            .map(|m| (m, 0, m % 6 == 0, vec![b'v'; 20]))
            .collect(),
        meta_tree: true,
        order: Order::Shuffled(5),
        ..EtcdDb::default()
    };
    seeds.push(("synthetic-512-tree".into(), small.build()));
    let inline = EtcdDb {
        page_size: 512,
        key_inline: true,
        revisions: (1..=3).map(|m| (m, 0, false, vec![b'v'; 8])).collect(),
        ..EtcdDb::default()
    };
    seeds.push(("synthetic-512-inline".into(), inline.build()));
    let overflow = EtcdDb {
        page_size: 512,
        revisions: vec![
            (1, 0, false, vec![b'o'; 1500]),
            (2, 0, false, vec![b'p'; 700]),
        ],
        ..EtcdDb::default()
    };
    seeds.push(("synthetic-512-overflow".into(), overflow.build()));
    // Nested buckets: a tree bucket holding an inline one.
    let mut b = FileBuilder::new(512);
    let nested: Vec<_> = (0..12u8)
        .map(|i| entry(&[b'n', i], b"value"))
        .chain([bucket_entry(b"z", inline_bucket(&[entry(b"in", b"side")]))])
        .collect();
    let nested_root = b.tree(&nested, 4, 3, Order::ParentsFirst);
    let root = b.next_id();
    b.place(
        root,
        leaf(
            0,
            &[
                bucket_entry(b"key", inline_bucket(&[])),
                bucket_entry(b"nested", bucket_value(nested_root)),
            ],
        ),
    );
    seeds.push(("synthetic-512-nested".into(), b.build(root, 7)));
    // A stored freelist.
    let mut b = FileBuilder::new(512);
    let root = EtcdDb {
        page_size: 512,
        revisions: (1..=6).map(|m| (m, 0, false, vec![b'v'; 10])).collect(),
        ..EtcdDb::default()
    }
    .lay_out(&mut b);
    let free: Vec<u64> = (b.next_id()..b.next_id() + 3).collect();
    let freelist = b.next_id() + 3;
    b.place(
        freelist,
        crate::bolt::freelist::encode_freelist(0, &free, 512),
    );
    b.freelist = freelist;
    seeds.push(("synthetic-512-freelist".into(), b.build(root, 9)));
    seeds
}

/// Protobuf seeds: real KeyValues, leases and auth records, and a few hand-made messages.
fn kv_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for name in ["etcd-3.5.30-leases", "etcd-3.5.30-auth"] {
        let db = Db::open(read_snapshot(
            &manifest_dir()
                .join("fixtures")
                .join(name)
                .join("snapshot.db"),
        ))
        .unwrap();
        for (bucket, n) in [
            (&b"key"[..], 6),
            (b"lease", 2),
            (b"authUsers", 2),
            (b"authRoles", 2),
        ] {
            let Some(b) = db.bucket(bucket).unwrap() else {
                continue;
            };
            for (i, e) in b.iter().take(n).enumerate() {
                let bucket = String::from_utf8_lossy(bucket).into_owned();
                seeds.push((format!("{name}-{bucket}-{i}"), e.unwrap().value));
            }
        }
    }
    seeds.push(("alarm-nospace".into(), vec![0x08, 0x96, 0x01, 0x10, 0x01]));
    seeds.push(("varint-max".into(), {
        let mut v = vec![0x10];
        v.extend_from_slice(&[0xFF; 9]);
        v.push(0x01);
        v
    }));
    seeds.push(("semver".into(), b"3.6.0-rc.1+build.5".to_vec()));
    seeds
}

fn write_dir(dir: &Path, seeds: &[(String, Vec<u8>)]) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap();
    }
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// The committed seed corpus is exactly what the seeds generate; `CPKEEP_WRITE_CORPUS=1` rewrites it
/// when the seeds change.
#[test]
fn seed_corpus_is_current() {
    let bolt = bolt_seeds();
    for s in &bolt {
        assert!(Db::open(s.1.as_slice()).is_ok(), "{}", s.0);
        let _ = etcd::status(&Db::open(s.1.as_slice()).unwrap());
    }
    let sets = [
        ("bolt_open", bolt.clone()),
        ("bolt_stream", bolt),
        ("kv_decode", kv_seeds()),
    ];
    let write = std::env::var_os("CPKEEP_WRITE_CORPUS").is_some();
    for (target, seeds) in &sets {
        let dir = corpus_dir(target);
        if write {
            write_dir(&dir, seeds);
            continue;
        }
        for (name, bytes) in seeds {
            let on_disk = std::fs::read(dir.join(name)).unwrap_or_else(|e| {
                panic!("fuzz/corpus/{target}/{name}: {e}; rerun with CPKEEP_WRITE_CORPUS=1")
            });
            assert!(
                on_disk == *bytes,
                "fuzz/corpus/{target}/{name} is stale; rerun with CPKEEP_WRITE_CORPUS=1"
            );
        }
    }
}

/// The writer → reader round trip over its seeds (small pairs, overflow, low fill, one bucket,
/// nothing) and 1 000 mutations of them: every database the bytes describe is written, checked and
/// read back equal to the model.
#[test]
fn bolt_roundtrip_over_corpus_and_mutations() {
    let seeds = corpus("bolt_roundtrip");
    assert!(seeds.len() >= 4);
    for s in &seeds {
        bolt_roundtrip(s);
    }
    let mut rng = XorShift::new(0xb017);
    for i in 0..1_000 {
        let input = mutate(&seeds[i % seeds.len()], &mut rng, 512);
        bolt_roundtrip(&input);
    }
}
