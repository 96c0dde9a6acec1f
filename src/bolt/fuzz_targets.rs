//! Bodies of the fuzz targets in `fuzz/` (cargo-fuzz), kept in the library so that a plain
//! deterministic test runs them too (over the seed corpus and mutated inputs). Each must never
//! panic and must stay bounded in time and memory, whatever the input; the few assertions are
//! properties that hold for every input the decoders accept.

use super::check::check;
use super::etcd::{self, Alarm, KeyValue, Lease, Role, User};
use super::proto::Fields;
use super::reader::{Bucket, Db, OpenOptions};
use super::source::PageSource;
use super::stream::SnapshotScanner;

/// Entries visited per input, over all buckets.
const MAX_ENTRIES: usize = 200_000;
/// Nested bucket levels entered.
const MAX_NESTING: usize = 8;

/// `bolt_open`: open the bytes as a bbolt file, check it, iterate every bucket (nested ones
/// too), read each one's rightmost path, and read etcd's schema. When the check finds no problem,
/// every key iterated must be found again by a point lookup, with the same value, and the rightmost
/// path must end at the last key.
pub fn bolt_open(data: &[u8]) {
    let options = OpenOptions {
        cache_bytes: 1 << 20,
        max_page_bytes: 16 << 20,
    };
    let Ok(db) = Db::open_with(data, options) else {
        return;
    };
    let report = check(&db);
    assert!(report.pages_reachable <= report.pages_total);
    assert!(report.problems.len() as u64 <= report.problem_count);
    let mut budget = MAX_ENTRIES;
    walk(&db.root(), report.is_ok(), 0, &mut budget);
    let _ = etcd::status(&db);
    let _ = etcd::meta(&db);
    let _ = etcd::leases(&db);
    let _ = etcd::alarms(&db);
    let _ = etcd::members(&db);
    let _ = etcd::auth(&db);
    let _ = etcd::cluster(&db);
    if let Ok(mut revs) = etcd::revisions(&db) {
        while let Some(r) = revs.next_revision() {
            if r.is_err() || budget == 0 {
                break;
            }
            budget -= 1;
        }
    }
}

fn walk<S: PageSource>(bucket: &Bucket<'_, S>, sound: bool, depth: usize, budget: &mut usize) {
    let mut nested = Vec::new();
    let mut checked = Vec::new();
    let mut c = bucket.cursor();
    let mut prev: Option<Vec<u8>> = None;
    while let Some(e) = c.next_entry() {
        let Ok(e) = e else { return };
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        if sound {
            // A file that passes the check iterates in strictly increasing key order.
            assert!(
                prev.as_deref() < Some(e.key),
                "keys out of order in a checked file"
            );
            prev = Some(e.key.to_vec());
            if checked.len() < 64 {
                checked.push((e.key.to_vec(), (!e.is_bucket()).then(|| e.value.to_vec())));
            }
        }
        if e.is_bucket() && nested.len() < 64 {
            nested.push(e.key.to_vec());
        }
    }
    // A bump copies the rightmost path: in a checked file it ends at the last key iterated.
    if let Ok(Some(spine)) = bucket.spine() {
        if let (true, Some((_, last, _))) = (sound, spine.leaf.last()) {
            assert_eq!(
                Some(last),
                prev.as_ref(),
                "the rightmost leaf ends elsewhere"
            );
        }
    }
    for (key, value) in checked {
        let found = bucket.get(&key);
        assert!(
            matches!(&found, Ok(v) if *v == value),
            "lookup disagrees with iteration in a checked file"
        );
    }
    if depth >= MAX_NESTING {
        return;
    }
    for name in nested {
        if let Ok(Some(b)) = bucket.bucket(&name) {
            walk(&b, sound, depth + 1, budget);
        }
    }
}

/// `bolt_stream`: feed the bytes to the streaming scanner, whole and in chunks (sizes taken from
/// the first byte); both must give the same answer.
pub fn bolt_stream(data: &[u8]) {
    let chunk = usize::from(data.first().copied().unwrap_or(1)).max(1) * 13;
    let whole = scan(data, usize::MAX);
    let chunked = scan(data, chunk);
    match (&whole, &chunked) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "chunked scan differs"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "chunked scan differs"),
        _ => panic!("chunked scan differs: {whole:?} vs {chunked:?}"),
    }
}

fn scan(data: &[u8], chunk: usize) -> Result<super::stream::SnapshotFacts, super::BoltError> {
    let mut s = SnapshotScanner::new();
    for c in data.chunks(chunk.clamp(1, data.len().max(1))) {
        s.feed(c)?;
    }
    s.finish()
}

/// `kv_decode`: decode the bytes as every etcd protobuf message; what decodes as a KeyValue or a
/// Lease must decode to the same after re-encoding.
pub fn kv_decode(data: &[u8]) {
    for f in Fields::new(data) {
        if f.is_err() {
            break;
        }
    }
    if let Ok(kv) = KeyValue::decode(data) {
        let again = encode_key_value(&kv);
        assert_eq!(
            KeyValue::decode(&again),
            Ok(kv),
            "KeyValue re-encoding differs"
        );
    }
    if let Ok(l) = Lease::decode(data) {
        let mut again = Vec::new();
        for (field, v) in [(1, l.id), (2, l.ttl), (3, l.remaining_ttl)] {
            put_int(&mut again, field, v);
        }
        assert_eq!(Lease::decode(&again), Ok(l), "Lease re-encoding differs");
    }
    let _ = Alarm::decode(data);
    let _ = User::decode(data);
    let _ = Role::decode(data);
    let _ = etcd::semver(data);
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_int(out: &mut Vec<u8>, field: u64, v: i64) {
    put_varint(out, field << 3);
    put_varint(out, v as u64);
}

fn put_bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn encode_key_value(kv: &KeyValue<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    put_bytes(&mut out, 1, kv.key);
    put_int(&mut out, 2, kv.create_revision);
    put_int(&mut out, 3, kv.mod_revision);
    put_int(&mut out, 4, kv.version);
    put_bytes(&mut out, 5, kv.value);
    put_int(&mut out, 6, kv.lease);
    out
}

/// Pairs a `bolt_roundtrip` input may describe, and bytes of values over all of them: bounds that
/// keep one run in milliseconds while reaching branch pages and overflow.
const ROUNDTRIP_MAX_PAIRS: usize = 3_000;
const ROUNDTRIP_MAX_BYTES: usize = 4 << 20;

/// `bolt_roundtrip`: the bytes describe a database (page size, fill, then records choosing a bucket,
/// a key and a value length); it is written by the fresh-file writer and read back. The file must
/// pass the check with no problem and no free page, and give back exactly the model: the same
/// buckets with their sequences, and in each the same pairs in the same order.
pub fn bolt_roundtrip(data: &[u8]) {
    use super::writer::{BoltWriter, WriterOptions, MAX_FILL, MIN_FILL};
    use std::collections::BTreeMap;
    use std::io::{Read, Seek, SeekFrom};

    let (Some(&p), Some(&f)) = (data.first(), data.get(1)) else {
        return;
    };
    let page_size = 512u32 << (p % 4);
    let fill = MIN_FILL + (MAX_FILL - MIN_FILL) * f64::from(f) / 255.0;
    let mut model: BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>> = BTreeMap::new();
    let mut value_bytes = 0;
    for (n, rec) in data[2..].chunks(4).enumerate() {
        let [b, k, hi, lo] = rec else { break };
        if n >= ROUNDTRIP_MAX_PAIRS {
            break;
        }
        let bucket = vec![b'b', b'0' + b % 5];
        // Keys of 1-24 bytes drawn from the input, so that inputs share and collide on keys.
        let klen = 1 + usize::from(k % 24);
        let key: Vec<u8> = (0..klen)
            .map(|i| data[(2 + n * 4 + i) % data.len()])
            .collect();
        let vlen = (usize::from(*hi) << 8 | usize::from(*lo)) % (3 * page_size as usize);
        value_bytes += vlen;
        if value_bytes > ROUNDTRIP_MAX_BYTES {
            break;
        }
        let value = vec![*lo; vlen];
        model.entry(bucket).or_default().insert(key, value);
    }
    let Ok(mut file) = tempfile::tempfile() else {
        return;
    };
    let Ok(clone) = file.try_clone() else { return };
    let options = WriterOptions { page_size, fill };
    let mut w = BoltWriter::create(clone, options).unwrap_or_else(|e| panic!("create: {e}"));
    for (i, (name, pairs)) in model.iter().enumerate() {
        w.begin_bucket(name, i as u64)
            .unwrap_or_else(|e| panic!("begin_bucket: {e}"));
        for (k, v) in pairs {
            w.put(k, v).unwrap_or_else(|e| panic!("put: {e}"));
        }
        w.end_bucket().unwrap_or_else(|e| panic!("end_bucket: {e}"));
    }
    let summary = w.finish().unwrap_or_else(|e| panic!("finish: {e}"));
    let mut bytes = Vec::new();
    let read = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes));
    assert!(read.is_ok(), "read back: {read:?}");
    assert_eq!(
        bytes.len() as u64,
        summary.bytes,
        "file length = pages × page size"
    );
    let db = Db::open(bytes.as_slice()).unwrap_or_else(|e| panic!("open: {e}"));
    let report = check(&db);
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.pages_free, 0, "a fresh file has no free page");
    let names = db.buckets().unwrap_or_else(|e| panic!("buckets: {e}"));
    assert_eq!(names, model.keys().cloned().collect::<Vec<_>>());
    let mut keys = 0u64;
    for (i, (name, pairs)) in model.iter().enumerate() {
        let bucket = db
            .bucket(name)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("bucket {name:?}"));
        assert_eq!(bucket.sequence(), i as u64);
        let mut c = bucket.cursor();
        let mut want = pairs.iter();
        while let Some(e) = c.next_entry() {
            let e = e.unwrap_or_else(|err| panic!("cursor: {err}"));
            let (k, v) = want
                .next()
                .unwrap_or_else(|| panic!("an extra key {:?}", e.key));
            assert_eq!((e.key, e.value), (k.as_slice(), v.as_slice()));
            keys += 1;
        }
        assert!(want.next().is_none(), "a key of bucket {name:?} is missing");
    }
    assert_eq!(summary.keys, keys);
}
