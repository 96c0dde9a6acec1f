//! The random-access reader, its check and etcd's schema on top: against every committed snapshot
//! made by real etcd (etcdutl's status field by field, the oracle, the streaming scanner), and on
//! hand-laid files for what etcd does not produce (other page sizes, nested buckets, a stored
//! freelist, a multi-gigabyte file).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::builder::{
    bucket_entry, bucket_value, entry, inline_bucket, leaf, revision_key, Entry, EtcdDb,
    FileBuilder, Order,
};
use super::oracle::oracle;
use super::{manifest_dir, read_json, read_snapshot, scan};
use crate::bolt::crc32c::Crc32c;
use crate::bolt::etcd::{self, EtcdStatus};
use crate::bolt::freelist::encode_freelist;
use crate::bolt::meta::{encode_meta_page, Meta, NO_FREELIST};
use crate::bolt::{
    check, check_visiting, Bucket, CheckReport, Db, OpenOptions, PageSource, ProblemKind, Visit,
    Visitor,
};

/// Every fixture directory holding a snapshot and etcdutl's status of it.
pub(super) fn fixture_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(manifest_dir().join("fixtures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("snapshot.db").is_file() && p.join("snapshot.status.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// Opens the snapshot in `dir` as a file (its sha256 trailer beyond the high-water mark), checks
/// it, and compares etcdutl's status (and etcdctl 3.4's, when recorded) field by field.
pub(super) fn check_against_etcdutl(dir: &Path) -> EtcdStatus {
    let name = dir.display();
    let db = Db::open(File::open(dir.join("snapshot.db")).unwrap())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(db.file_len(), db.data_size() + 32, "{name}: db + sha256");
    let report = check(&db);
    assert!(report.is_ok(), "{name}: {report:#?}");
    assert_eq!(
        report.pages_reachable + report.pages_free,
        report.pages_total,
        "{name}"
    );
    let status = etcd::status(&db).unwrap_or_else(|e| panic!("{name}: {e}"));
    // etcdutl's status is required (a fixture or a generated snapshot without it proves
    // nothing); etcdctl 3.4's is compared when recorded.
    assert!(
        dir.join("snapshot.status.json").is_file(),
        "{name}: no snapshot.status.json to compare with"
    );
    let mut compared = 0;
    for file in ["snapshot.status.json", "snapshot.status-etcdctl.json"] {
        let path = dir.join(file);
        if file != "snapshot.status.json" && !path.is_file() {
            continue;
        }
        compared += 1;
        let want = read_json(&path);
        assert_eq!(
            Some(u64::from(status.hash)),
            want["hash"].as_u64(),
            "{name} {file}: hash"
        );
        assert_eq!(
            Some(status.revision),
            want["revision"].as_i64(),
            "{name} {file}: revision"
        );
        assert_eq!(
            Some(status.total_key),
            want["totalKey"].as_u64(),
            "{name} {file}: totalKey"
        );
        assert_eq!(
            Some(status.total_size),
            want["totalSize"].as_u64(),
            "{name} {file}: totalSize"
        );
        match want.get("version") {
            Some(v) => assert_eq!(
                status.version.as_deref().unwrap_or(""),
                v.as_str().unwrap(),
                "{name} {file}: version"
            ),
            None => assert_eq!(status.version, None, "{name} {file}: version"),
        }
        // The same JSON, byte for byte in meaning.
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            want,
            "{name} {file}"
        );
    }
    assert!(compared >= 1, "{name}: nothing compared");
    status
}

/// Decodes the whole `key` bucket: every entry a revision key and a KeyValue consistent with it.
/// Returns the number of revisions.
pub(super) fn check_revisions<S: PageSource>(db: &Db<S>) -> u64 {
    let entries = db.bucket(b"key").unwrap().unwrap().iter().count() as u64;
    let mut n = 0u64;
    let mut prev = None;
    for r in etcd::revisions(db).unwrap() {
        let (rev, kv) = r.unwrap();
        assert!(prev < Some((rev.main, rev.sub)), "revisions in order");
        prev = Some((rev.main, rev.sub));
        assert!(!kv.key.is_empty(), "{rev:?}: a KeyValue names its key");
        if rev.tombstone {
            // etcd writes a tombstone as a KeyValue with the key only.
            assert_eq!(
                (
                    kv.create_revision,
                    kv.mod_revision,
                    kv.version,
                    kv.value.len()
                ),
                (0, 0, 0, 0),
                "{rev:?}"
            );
        } else {
            assert_eq!(kv.mod_revision, rev.main, "{rev:?}");
            assert!(kv.create_revision <= kv.mod_revision && kv.create_revision > 0);
            assert!(kv.version >= 1);
            if kv.version == 1 {
                assert_eq!(kv.create_revision, kv.mod_revision);
            }
        }
        n += 1;
    }
    assert_eq!(n, entries, "every entry decoded");
    n
}

/// Every key of every top-level bucket is found again by a point lookup, with its value.
fn check_lookups<S: PageSource>(db: &Db<S>) {
    for name in db.buckets().unwrap() {
        let bucket = db.bucket(&name).unwrap().unwrap();
        for e in bucket.iter() {
            let e = e.unwrap();
            let found = db.get(&name, &e.key).unwrap();
            if e.is_bucket {
                assert_eq!(found, None);
            } else {
                assert_eq!(found.as_deref(), Some(&e.value[..]));
            }
        }
        assert_eq!(db.get(&name, b"\xff\xff no such key").unwrap(), None);
    }
    assert!(db.bucket(b"no such bucket").unwrap().is_none());
    assert_eq!(db.get(b"no such bucket", b"k").unwrap(), None);
}

#[test]
fn every_fixture_matches_etcdutl_and_passes_the_check() {
    let dirs = fixture_dirs();
    assert!(dirs.len() >= 7, "{dirs:?}");
    for dir in &dirs {
        let status = check_against_etcdutl(dir);
        let db_bytes = read_snapshot(&dir.join("snapshot.db"));
        // From memory, without the trailer, too; and against the oracle and the scanner.
        let db = Db::open(db_bytes.as_slice()).unwrap();
        assert_eq!(etcd::status(&db).unwrap(), status);
        let o = oracle(&db_bytes);
        assert_eq!((o.hash, o.total_key), (status.hash, status.total_key));
        let facts = scan(&db_bytes, 4096).unwrap();
        assert_eq!(facts.revision.unwrap_or(0), status.revision);
        let meta = etcd::meta(&db).unwrap();
        assert_eq!(
            (meta.consistent_index, meta.term),
            (facts.consistent_index, facts.term)
        );
        assert_eq!(
            check(&db).pages_reachable,
            o.live_pages.len() as u64 + 2,
            "{}: reachable = live tree pages + metas",
            dir.display()
        );
        check_revisions(&db);
        check_lookups(&db);
        // Everything etcd keeps decodes.
        let members = etcd::members(&db).unwrap();
        assert_eq!(members.members.len(), 1, "{}", dir.display());
        assert!(!members.members[0].peer_urls.is_empty());
        etcd::leases(&db).unwrap();
        etcd::alarms(&db).unwrap();
        etcd::auth(&db).unwrap();
        let cluster = etcd::cluster(&db).unwrap();
        let version = if dir.to_string_lossy().contains("3.4.23") {
            "3.4.0"
        } else {
            "3.5.0"
        };
        assert_eq!(cluster.cluster_version.as_deref(), Some(version));
    }
}

fn open_fixture(name: &str) -> Db<Vec<u8>> {
    Db::open(read_snapshot(
        &manifest_dir()
            .join("fixtures")
            .join(name)
            .join("snapshot.db"),
    ))
    .unwrap()
}

#[test]
fn meta_bucket_of_3_5_and_3_4() {
    let m = etcd::meta(&open_fixture("etcd-3.5.30-tree")).unwrap();
    assert_eq!(m.term, Some(2));
    assert_eq!(
        (m.scheduled_compact_revision, m.finished_compact_revision),
        (Some(12), Some(12))
    );
    let cs = m.conf_state.unwrap();
    assert_eq!((cs.voters.len(), cs.auto_leave), (1, false));
    assert_eq!(m.storage_version, None, "3.6+ only");
    let m = etcd::meta(&open_fixture("etcd-3.4.23-tree")).unwrap();
    assert_eq!((m.term, m.conf_state), (None, None), "3.5+ only");
    assert!(m.consistent_index.is_some());
}

#[test]
fn leases_fixture() {
    let db = open_fixture("etcd-3.5.30-leases");
    let leases = etcd::leases(&db).unwrap();
    // Three granted, one revoked.
    let mut ttls: Vec<i64> = leases.iter().map(|l| l.ttl).collect();
    ttls.sort();
    assert_eq!(ttls, [600, 1200]);
    // The live keys attached to a lease name one of them; the revoked lease's key is deleted.
    let mut attached = std::collections::BTreeMap::new();
    for r in etcd::revisions(&db).unwrap() {
        let (rev, kv) = r.unwrap();
        if rev.tombstone {
            attached.remove(&kv.key);
        } else {
            attached.insert(kv.key.clone(), kv.lease);
        }
    }
    let ids: Vec<i64> = leases.iter().map(|l| l.id).collect();
    let with_lease: Vec<_> = attached.iter().filter(|(_, l)| **l != 0).collect();
    assert_eq!(with_lease.len(), 4, "{with_lease:?}");
    assert!(with_lease.iter().all(|(_, l)| ids.contains(l)));
    assert!(!attached.contains_key(b"/registry/events/default/e2".as_slice()));
}

#[test]
fn auth_fixtures() {
    for name in ["etcd-3.5.30-auth", "etcd-3.4.23-auth"] {
        let auth = etcd::auth(&open_fixture(name)).unwrap();
        assert!(auth.enabled, "{name}");
        assert!(auth.revision.is_some_and(|r| r > 1));
        let users: Vec<_> = auth
            .users
            .iter()
            .map(|u| (u.name.as_str(), u.roles.clone(), u.has_password))
            .collect();
        assert_eq!(
            users,
            [
                ("alice", vec!["reader".to_string()], true),
                ("root", vec!["root".to_string()], true)
            ],
            "{name}"
        );
        let reader = auth.roles.iter().find(|r| r.name == "reader").unwrap();
        let perms: Vec<_> = reader
            .permissions
            .iter()
            .map(|p| (p.perm_type, p.key.as_slice(), p.range_end.as_slice()))
            .collect();
        // READ 0 over the prefix /registry/ (range end /registry0), READWRITE 2 over a range.
        assert_eq!(
            perms,
            [
                (0, &b"/registry/"[..], &b"/registry0"[..]),
                (2, b"/scratch", b"/scratch0")
            ],
            "{name}"
        );
    }
}

#[test]
fn defrag_fixture_is_compact() {
    let db = open_fixture("etcd-3.5.30-defrag");
    let report = check(&db);
    // Defrag rewrote the file with only live pages; the one put after it copied a few.
    assert!(report.pages_free * 4 < report.pages_total, "{report:?}");
    let key = db.bucket(b"key").unwrap().unwrap();
    assert!(key.root_page().is_some(), "the key bucket has its own tree");
    // Puts at 2 (one txn), 3, 4, 5, a delete at 6, compacted at 6.
    assert_eq!(etcd::meta(&db).unwrap().finished_compact_revision, Some(6));
}

#[test]
fn file_and_memory_sources_agree_with_small_caches() {
    let dir = manifest_dir().join("fixtures/etcd-3.5.30-tree");
    let options = OpenOptions {
        cache_bytes: 0,
        ..OpenOptions::default()
    };
    let from_file = Db::open_with(File::open(dir.join("snapshot.db")).unwrap(), options).unwrap();
    let from_memory = open_fixture("etcd-3.5.30-tree");
    assert_eq!(from_file.info().data_size, from_memory.info().data_size);
    assert_eq!(
        etcd::status(&from_file).unwrap(),
        etcd::status(&from_memory).unwrap()
    );
    let a: Vec<_> = from_file.bucket(b"key").unwrap().unwrap().iter().collect();
    let b: Vec<_> = from_memory
        .bucket(b"key")
        .unwrap()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(a.len(), 206);
    assert!(a
        .iter()
        .zip(&b)
        .all(|(x, y)| x.as_ref().unwrap() == y.as_ref().unwrap()));
    // A file path, a &[u8], a Box and an Arc all serve.
    let bytes = read_snapshot(&dir.join("snapshot.db"));
    let boxed: Box<dyn PageSource> = Box::new(bytes.clone());
    assert_eq!(Db::open(boxed).unwrap().buckets().unwrap().len(), 10);
    let shared = std::sync::Arc::new(bytes);
    assert_eq!(Db::open(shared).unwrap().buckets().unwrap().len(), 10);
}

// ---------------------------------------------------------------------------------------------
// Hand-laid files.

/// Status computed by hand, as etcdutl computes it, over (bucket, entries) where a nested bucket's
/// value is not hashed.
fn expected_status(top: &[(&[u8], Vec<Entry>)], total_size: u64) -> (u32, u64) {
    let mut crc = Crc32c::new();
    let mut n = 0;
    for (name, entries) in top {
        crc.update(name);
        for (flags, k, v) in entries {
            crc.update(k);
            if flags & 1 == 0 {
                crc.update(v);
            }
            n += 1;
        }
    }
    let _ = total_size;
    (crc.sum(), n)
}

#[test]
fn page_sizes_other_than_4096() {
    for page_size in [512, 1024, 2048, 8192, 16384, 65536] {
        let layout = EtcdDb {
            page_size,
            revisions: (1..=300)
                .map(|m| (m, 0, m % 5 == 0, vec![b'v'; 70]))
                .collect(),
            order: Order::Shuffled(page_size as u64),
            ..EtcdDb::default()
        };
        let bytes = layout.build();
        let o = oracle(&bytes);
        let db = Db::open(bytes.as_slice()).unwrap();
        assert_eq!(db.page_size() as usize, page_size);
        let report = check(&db);
        assert!(report.is_ok(), "{page_size}: {report:?}");
        assert_eq!(report.pages_reachable, o.live_pages.len() as u64 + 2);
        let status = etcd::status(&db).unwrap();
        assert_eq!(
            (
                status.hash,
                status.total_key,
                status.revision,
                status.total_size
            ),
            (o.hash, o.total_key, 300, bytes.len() as u64)
        );
        let keys: Vec<_> = db
            .bucket(b"key")
            .unwrap()
            .unwrap()
            .iter()
            .map(|e| e.unwrap().key)
            .collect();
        assert_eq!(keys.len(), 300);
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            db.get(b"meta", b"consistent_index").unwrap(),
            Some(77u64.to_be_bytes().to_vec())
        );
    }
}

#[test]
fn nested_buckets_inline_and_with_trees() {
    // top: a (plain values, tree), b (inline, holding an inline bucket), c (tree, holding a
    // tree bucket which holds an inline bucket), d (empty inline).
    let mut b = FileBuilder::new(1024);
    let a_entries: Vec<Entry> = (0..50u32)
        .map(|i| entry(format!("a-{i:03}").as_bytes(), &[b'x'; 40]))
        .collect();
    let a_root = b.tree(&a_entries, 6, 4, Order::Shuffled(3));
    let deep_inline = inline_bucket(&[entry(b"deepest", b"1")]);
    let c1_entries: Vec<Entry> = (0..30u32)
        .map(|i| entry(format!("c1-{i:03}").as_bytes(), &[b'y'; 30]))
        .chain([bucket_entry(b"zz-inline", deep_inline)])
        .collect();
    let c1_root = b.tree(&c1_entries, 5, 3, Order::ParentsFirst);
    let c_entries: Vec<Entry> = vec![
        bucket_entry(b"c1", bucket_value(c1_root)),
        entry(b"c2", b"plain"),
    ];
    let c_root = b.tree(&c_entries, 8, 8, Order::ChildrenFirst);
    let b_entries: Vec<Entry> = vec![
        entry(b"b1", b"one"),
        bucket_entry(b"b2", inline_bucket(&[entry(b"in", b"side")])),
    ];
    let top: Vec<(&[u8], Vec<Entry>)> = vec![
        (b"a", a_entries.clone()),
        (b"b", b_entries.clone()),
        (b"c", c_entries.clone()),
        (b"d", Vec::new()),
    ];
    let root_entries = vec![
        bucket_entry(b"a", bucket_value(a_root)),
        bucket_entry(b"b", inline_bucket(&b_entries)),
        bucket_entry(b"c", bucket_value(c_root)),
        bucket_entry(b"d", inline_bucket(&[])),
    ];
    let root = b.next_id();
    b.place(root, leaf(0, &root_entries));
    let bytes = b.build(root, 4);
    let db = Db::open(bytes.as_slice()).unwrap();

    assert_eq!(db.buckets().unwrap(), [b"a", b"b", b"c", b"d"]);
    let a = db.bucket(b"a").unwrap().unwrap();
    assert_eq!(a.root_page(), Some(a_root));
    assert_eq!(a.iter().count(), 50);
    assert_eq!(a.get(b"a-017").unwrap(), Some(vec![b'x'; 40]));
    let bb = db.bucket(b"b").unwrap().unwrap();
    assert!(bb.is_inline());
    assert_eq!(bb.buckets().unwrap(), [b"b2"]);
    assert_eq!(
        bb.bucket(b"b2").unwrap().unwrap().get(b"in").unwrap(),
        Some(b"side".to_vec())
    );
    assert_eq!(bb.get(b"b2").unwrap(), None, "a bucket is not a value");
    assert!(
        bb.bucket(b"b1").unwrap().is_none(),
        "a value is not a bucket"
    );
    let c1 = db
        .bucket(b"c")
        .unwrap()
        .unwrap()
        .bucket(b"c1")
        .unwrap()
        .unwrap();
    assert_eq!(c1.root_page(), Some(c1_root));
    assert_eq!(c1.iter().count(), 31);
    let deepest = c1.bucket(b"zz-inline").unwrap().unwrap();
    assert_eq!(deepest.get(b"deepest").unwrap(), Some(b"1".to_vec()));
    assert_eq!(db.bucket(b"d").unwrap().unwrap().iter().count(), 0);

    // The check follows nested buckets: every placed page is reachable.
    let report = check(&db);
    assert!(report.is_ok(), "{report:#?}");
    assert_eq!(report.pages_free, 0);
    assert_eq!(report.pages_reachable, report.pages_total);

    // Status, as etcdutl: one level per top-level bucket, nested buckets' keys only.
    let status = etcd::status(&db);
    // Not an etcd file (no `key` bucket), but status does not need one.
    let status = status.unwrap();
    let (hash, total) = expected_status(&top, bytes.len() as u64);
    assert_eq!(
        (status.hash, status.total_key, status.revision),
        (hash, total, 0)
    );
    assert_eq!(visited(&db), cursor_walk(&db));
}

/// (depth, key, value or nothing for a bucket).
type Seen = (usize, Vec<u8>, Option<Vec<u8>>);

/// Every entry as the check's visitor sees them.
fn visited<S: PageSource>(db: &Db<S>) -> Vec<Seen> {
    struct Collect(Vec<Seen>);
    impl Visitor for Collect {
        fn visit(&mut self, e: Visit<'_>) {
            let value = (!e.is_bucket).then(|| e.value.to_vec());
            self.0.push((e.depth, e.key.to_vec(), value));
        }
    }
    let mut c = Collect(Vec::new());
    assert!(check_visiting(db, &mut c).is_ok());
    c.0
}

/// The same, from cursors: each bucket's entry, then its contents, then the next entry.
fn cursor_walk<S: PageSource>(db: &Db<S>) -> Vec<Seen> {
    fn walk<S: PageSource>(b: &Bucket<'_, S>, depth: usize, out: &mut Vec<Seen>) {
        for e in b.iter() {
            let e = e.unwrap();
            if e.is_bucket {
                out.push((depth, e.key.clone(), None));
                walk(&b.bucket(&e.key).unwrap().unwrap(), depth + 1, out);
            } else {
                out.push((depth, e.key, Some(e.value)));
            }
        }
    }
    let mut out = Vec::new();
    walk(&db.root(), 0, &mut out);
    out
}

#[test]
fn the_checks_visitor_sees_every_pair_in_cursor_order() {
    for dir in fixture_dirs() {
        let db = Db::open(File::open(dir.join("snapshot.db")).unwrap()).unwrap();
        let seen = visited(&db);
        assert!(seen.len() > 10, "{}", dir.display());
        assert_eq!(seen, cursor_walk(&db), "{}", dir.display());
    }
}

#[test]
fn empty_buckets_and_an_empty_root() {
    let mut b = FileBuilder::new(4096);
    b.place(2, leaf(0, &[]));
    let bytes = b.build(2, 3);
    let db = Db::open(bytes.as_slice()).unwrap();
    assert!(db.buckets().unwrap().is_empty());
    assert!(check(&db).is_ok());
    let s = etcd::status(&db).unwrap();
    assert_eq!((s.hash, s.revision, s.total_key), (0, 0, 0));
    assert!(matches!(
        etcd::revisions(&db),
        Err(etcd::EtcdError::MissingBucket { .. })
    ));
}

#[test]
fn storage_version_is_reported_as_etcdutl_3_6_does() {
    let mut b = FileBuilder::new(4096);
    let meta = inline_bucket(&[
        entry(b"consistent_index", &5u64.to_be_bytes()),
        entry(b"storageVersion", b"3.6.0"),
    ]);
    b.place(
        2,
        leaf(
            0,
            &[
                bucket_entry(
                    b"key",
                    inline_bucket(&[entry(&revision_key(3, 0, false), b"")]),
                ),
                bucket_entry(b"meta", meta),
            ],
        ),
    );
    let db = Db::open(b.build(2, 3)).unwrap();
    let s = etcd::status(&db).unwrap();
    assert_eq!((s.version.as_deref(), s.revision), (Some("3.6.0"), 3));
    assert_eq!(
        serde_json::to_value(&s).unwrap()["version"],
        serde_json::json!("3.6.0")
    );
}

/// A file with `free` pages (stale garbage) after the live tree, and a freelist page listing
/// `listed` of them.
fn with_freelist(listed: impl Fn(&[u64]) -> Vec<u64>) -> (Vec<u8>, Vec<u64>) {
    let layout = EtcdDb::default();
    let mut b = FileBuilder::new(4096);
    let root = layout.lay_out(&mut b);
    let free: Vec<u64> = (b.next_id()..b.next_id() + 5).collect();
    for id in &free {
        b.place_raw(*id, vec![0xEE; 4096]);
    }
    let freelist = b.next_id();
    b.place(freelist, encode_freelist(0, &listed(&free), 4096));
    b.freelist = freelist;
    (b.build(root, 10), free)
}

fn kinds(r: &CheckReport) -> Vec<(u64, ProblemKind)> {
    r.problems.iter().map(|p| (p.page, p.kind)).collect()
}

#[test]
fn stored_freelist_reachable_xor_free() {
    let (bytes, free) = with_freelist(|f| f.to_vec());
    let db = Db::open(bytes.as_slice()).unwrap();
    let r = check(&db);
    assert!(r.is_ok(), "{r:#?}");
    assert!(r.freelist_stored);
    assert_eq!(r.pages_free, 5);
    assert_eq!(r.pages_reachable + r.pages_free, r.pages_total);

    // A free page missing from the list.
    let (bytes, free2) = with_freelist(|f| f[1..].to_vec());
    let r = check(&Db::open(bytes.as_slice()).unwrap());
    assert_eq!(kinds(&r), [(free2[0], ProblemKind::UnreachableUnfreed)]);

    // A page listed twice, meta page 1, and one beyond the high-water mark.
    let (bytes, _) = with_freelist(|f| {
        let mut l = f.to_vec();
        l.extend([f[0], 1, 10_000]);
        l
    });
    let r = check(&Db::open(bytes.as_slice()).unwrap());
    let k = kinds(&r);
    assert_eq!(k.len(), 3, "{r:#?}");
    assert!(k.iter().all(|(_, kind)| *kind == ProblemKind::Freelist));
    assert!(r.problems[0].reason.contains("already freed"), "{r:#?}");

    // A live page listed as free.
    let o = oracle(&bytes);
    let live = *o.live_pages.iter().next().unwrap();
    let (bytes, _) = with_freelist(|f| {
        let mut l = f.to_vec();
        l.push(live);
        l
    });
    let r = check(&Db::open(bytes.as_slice()).unwrap());
    assert_eq!(kinds(&r), [(live, ProblemKind::ReachableFreed)], "{r:#?}");
    assert_eq!(free, free2);
}

#[test]
fn stored_freelist_with_more_than_65535_ids() {
    // 70 000 free pages of 512 bytes: the freelist's header count is 0xFFFF, the real count the
    // first u64.
    let layout = EtcdDb {
        page_size: 512,
        ..EtcdDb::default()
    };
    let mut b = FileBuilder::new(512);
    let root = layout.lay_out(&mut b);
    let first_free = b.next_id();
    let free: Vec<u64> = (first_free..first_free + 70_000).collect();
    let freelist = first_free + 70_000;
    b.place(freelist, encode_freelist(0, &free, 512));
    b.freelist = freelist;
    let bytes = b.build(root, 10);
    let db = Db::open(bytes.as_slice()).unwrap();
    let r = check(&db);
    assert!(r.is_ok(), "{:#?}", &r.problems[..r.problems.len().min(5)]);
    assert_eq!(r.pages_free, 70_000);
    assert_eq!(r.pages_reachable + r.pages_free, r.pages_total);
    assert_eq!(etcd::status(&db).unwrap().revision, 40);
}

#[test]
fn one_invalid_meta_is_noted_and_etcdutls_status_still_succeeds() {
    let mut bytes = read_snapshot(&manifest_dir().join("fixtures/etcd-3.5.30-tree/snapshot.db"));
    let good = etcd::status(&Db::open(bytes.as_slice()).unwrap()).unwrap();
    bytes[16 + 48] ^= 1; // meta 0's txid: its checksum no longer matches
    let db = Db::open(bytes.as_slice()).unwrap();
    assert_eq!(db.meta_page(), 1);
    assert!(db
        .meta_note()
        .unwrap()
        .starts_with("meta page 0 is invalid"));
    let r = check(&db);
    assert_eq!(kinds(&r), [(0, ProblemKind::Meta)]);
    assert_eq!(etcd::status(&db).unwrap(), good);
}

// ---------------------------------------------------------------------------------------------
// A multi-gigabyte file that exists only as a function of the offset.

/// A bbolt file of `leaves` leaves, each holding two revisions with values of `value_len` bytes
/// (so spanning several pages), under a branch tree of fanout `fanout`, in a `key` bucket of a
/// root leaf. Pages are generated on demand; the source counts what it is asked for.
struct VirtualDb {
    page_size: u64,
    leaves: u64,
    value_len: usize,
    fanout: u64,
    leaf_pages: u64,
    /// Per branch level (bottom first): first page id and node count.
    levels: Vec<(u64, u64)>,
    root_leaf: u64,
    high_water: u64,
    bytes_read: AtomicU64,
    largest_read: AtomicU64,
    value_a: Vec<u8>,
    value_b: Vec<u8>,
}

const LEAF_HEADER: usize = 16 + 2 * 16;

impl VirtualDb {
    fn new(leaves: u64, value_len: usize, fanout: u64) -> VirtualDb {
        let page_size = 4096u64;
        let leaf_bytes = (LEAF_HEADER + 2 * (17 + value_len)) as u64;
        let leaf_pages = leaf_bytes.div_ceil(page_size);
        let mut next = 2 + leaves * leaf_pages;
        let mut levels = Vec::new();
        let mut count = leaves;
        while count > 1 {
            count = count.div_ceil(fanout);
            levels.push((next, count));
            next += count;
        }
        VirtualDb {
            page_size,
            leaves,
            value_len,
            fanout,
            leaf_pages,
            levels,
            root_leaf: next,
            high_water: next + 1,
            bytes_read: AtomicU64::new(0),
            largest_read: AtomicU64::new(0),
            value_a: vec![b'a'; value_len],
            value_b: vec![b'b'; value_len],
        }
    }

    fn key(i: u64) -> Vec<u8> {
        revision_key(i + 1, 0, false)
    }

    /// First page id of node `index` at `level` (0 = leaves).
    fn node_id(&self, level: usize, index: u64) -> u64 {
        match level {
            0 => 2 + index * self.leaf_pages,
            l => self.levels[l - 1].0 + index,
        }
    }

    /// Entries covered by one node at `level`.
    fn span_entries(&self, level: usize) -> u64 {
        2 * self.fanout.pow(level as u32)
    }

    fn page(&self, pgid: u64) -> Vec<u8> {
        let ps = self.page_size as usize;
        let meta = |id: u64| {
            let mut p = vec![0u8; ps];
            let root = self.root_leaf;
            let m = Meta {
                page_size: ps as u32,
                flags: 0,
                root,
                sequence: 0,
                freelist_pgid: NO_FREELIST,
                high_water: self.high_water,
                txid: 10 - id,
                checksum: 0,
            };
            encode_meta_page(&mut p, id, &m);
            p
        };
        if pgid < 2 {
            return meta(pgid);
        }
        if pgid == self.root_leaf {
            let key_root = match self.levels.last() {
                Some((first, _)) => *first,
                None => 2,
            };
            let mut p = leaf(pgid, &[bucket_entry(b"key", bucket_value(key_root))]);
            p.resize(ps, 0);
            return p;
        }
        if pgid < 2 + self.leaves * self.leaf_pages {
            let leaf_index = (pgid - 2) / self.leaf_pages;
            let (k0, k1) = (Self::key(2 * leaf_index), Self::key(2 * leaf_index + 1));
            let v = self.value_len;
            let mut p = vec![0u8; (self.leaf_pages * self.page_size) as usize];
            let header = leaf(pgid, &[entry(&k0, &[]), entry(&k1, &[])]);
            p[..LEAF_HEADER].copy_from_slice(&header[..LEAF_HEADER]);
            // Element 1's key follows element 0's key and value.
            p[16 + 12..16 + 16].copy_from_slice(&(v as u32).to_le_bytes());
            p[32 + 4..32 + 8].copy_from_slice(&((LEAF_HEADER - 32 + 17 + v) as u32).to_le_bytes());
            p[32 + 12..32 + 16].copy_from_slice(&(v as u32).to_le_bytes());
            p[12..16].copy_from_slice(&((self.leaf_pages - 1) as u32).to_le_bytes());
            let mut at = LEAF_HEADER;
            for (k, value) in [(&k0, &self.value_a), (&k1, &self.value_b)] {
                p[at..at + 17].copy_from_slice(k);
                p[at + 17..at + 17 + v].copy_from_slice(value);
                at += 17 + v;
            }
            return p;
        }
        for (l, (first, count)) in self.levels.iter().enumerate() {
            if (*first..first + count).contains(&pgid) {
                let index = pgid - first;
                let below = if l == 0 {
                    self.leaves
                } else {
                    self.levels[l - 1].1
                };
                let children: Vec<(Vec<u8>, u64)> = (index * self.fanout
                    ..((index + 1) * self.fanout).min(below))
                    .map(|c| (Self::key(c * self.span_entries(l)), self.node_id(l, c)))
                    .collect();
                let mut p = super::builder::branch(pgid, &children);
                p.resize(ps, 0);
                return p;
            }
        }
        unreachable!("page {pgid}")
    }
}

impl PageSource for VirtualDb {
    fn len(&self) -> u64 {
        self.high_water * self.page_size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.bytes_read
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.largest_read
            .fetch_max(buf.len() as u64, Ordering::Relaxed);
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let mut pgid = at / self.page_size;
            // Inside a leaf's span: generate the whole leaf.
            if pgid >= 2 && pgid < 2 + self.leaves * self.leaf_pages {
                pgid = 2 + (pgid - 2) / self.leaf_pages * self.leaf_pages;
            }
            let page = self.page(pgid);
            let from = (at - pgid * self.page_size) as usize;
            let n = (page.len() - from).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&page[from..from + n]);
            done += n;
        }
        Ok(())
    }
}

#[test]
fn a_multi_gigabyte_file_in_bounded_memory() {
    // 35 000 leaves of two 30 000-byte values (15 pages each): 2.1 GB, three levels of branches.
    let source = VirtualDb::new(35_000, 30_000, 40);
    let size = source.len();
    assert!(size > 2 << 30, "{size}");
    let cache = 1 << 20;
    let db = Db::open_with(
        &source,
        OpenOptions {
            cache_bytes: cache,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let mut c = db.bucket(b"key").unwrap().unwrap().cursor();
    let mut n = 0u64;
    while let Some(e) = c.next_entry() {
        let e = e.unwrap();
        assert_eq!(e.key, VirtualDb::key(n));
        assert_eq!(e.value.len(), 30_000);
        n += 1;
    }
    assert_eq!(n, 70_000);
    assert!(db.cached_bytes() <= cache);
    // Each page read about once (the leaves' first pages twice: header, then the rest), never
    // more than one leaf's span at a time.
    let read = source.bytes_read.load(Ordering::Relaxed);
    assert!(read < size + size / 10, "{read} bytes read for {size}");
    assert_eq!(
        source.largest_read.load(Ordering::Relaxed),
        (source.leaf_pages - 1) * 4096
    );
    let key = db.get(b"key", &VirtualDb::key(54_321)).unwrap().unwrap();
    assert!(key.iter().all(|b| *b == b'b'));
    let r = check(&db);
    assert!(r.is_ok(), "{r:#?}");
    assert_eq!((r.pages_reachable, r.pages_free), (r.pages_total, 0));
    assert!(db.cached_bytes() <= cache);
}
