//! Tests of the revision log format, grouped by failure class: round trips, truncation and flipped
//! bits (every offset of a small segment), refusals by the writer, malformed but checksummed
//! records, manifests and chains.

use chrono::{DateTime, TimeZone, Utc};
use sha2::{Digest, Sha256};

use super::error::{ChainBreak, RevlogError};
use super::manifest::{self, check_chain, Previous, SegmentManifest, StoredObject};
use super::record::{self, Event, EventKind, LeaseEntry, LeaseTable, KIND_END, KIND_LEASES};
use super::segment::{read_segment, SegmentReader, SegmentWriter, HEADER_LEN, MAGIC};
use crate::bolt::etcd::{KeyValue, OwnedKeyValue};
use crate::bolt::schema::Revision;
use crate::snapshot::{CompressionInfo, CompressionKind};

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_780_000_000 + secs, 0).unwrap()
}

fn put(key: &str, value: &str, rev: i64, created: i64, version: i64, lease: i64) -> Event {
    Event {
        kind: EventKind::Put,
        kv: OwnedKeyValue {
            key: key.into(),
            create_revision: created,
            mod_revision: rev,
            version,
            value: value.into(),
            lease,
        },
    }
}

fn del(key: &str, rev: i64) -> Event {
    Event {
        kind: EventKind::Delete,
        kv: OwnedKeyValue {
            key: key.into(),
            mod_revision: rev,
            ..OwnedKeyValue::default()
        },
    }
}

/// Revisions 10 … 13: a put, a transaction of three (two puts and a delete), a put with a lease,
/// a lease revoke's delete; then the lease table.
/// A revision as the writer takes it: revision, time received, events.
type Rev = (i64, DateTime<Utc>, Vec<Event>);

fn sample() -> (Vec<Rev>, LeaseTable) {
    let revs = vec![
        (10, t(0), vec![put("/a", "1", 10, 10, 1, 0)]),
        (
            11,
            t(1),
            vec![
                put("/b", "2", 11, 11, 1, 0),
                put("/a", "3", 11, 10, 2, 0),
                del("/c", 11),
            ],
        ),
        (12, t(1), vec![put("/l", "x", 12, 12, 1, 0x7E57)]),
        (13, t(5), vec![del("/l", 13)]),
    ];
    let leases = LeaseTable {
        taken_at: t(6),
        header_revision: 13,
        leases: vec![LeaseEntry {
            id: 0x7E57,
            granted_ttl: 60,
            remaining_ttl: 54,
            keys: vec![b"/m".to_vec()],
        }],
    };
    (revs, leases)
}

fn write_sample() -> Vec<u8> {
    let (revs, leases) = sample();
    let mut w = SegmentWriter::new(Vec::new()).unwrap();
    for (rev, at, events) in &revs {
        w.append(*rev, *at, events).unwrap();
    }
    w.finish(Some(&leases)).unwrap().0
}

// ---------------------------------------------------------------------------------------------
// Round trips

#[test]
fn round_trip_keeps_every_event_in_order() {
    let (revs, leases) = sample();
    let mut w = SegmentWriter::new(Vec::new()).unwrap();
    for (rev, at, events) in &revs {
        w.append(*rev, *at, events).unwrap();
    }
    assert_eq!(w.last_revision(), Some(13));
    let (bytes, summary) = w.finish(Some(&leases)).unwrap();
    assert_eq!(summary.first_revision, 10);
    assert_eq!(summary.last_revision, 13);
    assert_eq!(summary.event_count, 6);
    assert_eq!(
        (summary.first_event_time, summary.last_event_time),
        (t(0), t(5))
    );
    assert!(summary.has_leases);
    assert_eq!(summary.plaintext_size, bytes.len() as u64);
    assert_eq!(
        summary.plaintext_sha256,
        hex::encode(Sha256::digest(&bytes))
    );
    assert_eq!(&bytes[..MAGIC.len()], MAGIC);

    let seg = read_segment(&bytes[..]).unwrap();
    assert_eq!(seg.summary, summary);
    assert_eq!(seg.leases, Some(leases));
    let got: Vec<_> = seg
        .revisions
        .iter()
        .map(|r| (r.revision, r.received_at, r.events.clone()))
        .collect();
    assert_eq!(got, revs);
}

#[test]
fn reader_reports_progress_while_iterating() {
    let bytes = write_sample();
    let mut r = SegmentReader::new(&bytes[..]).unwrap();
    assert_eq!(r.first_revision(), None);
    let first = r.next().unwrap().unwrap();
    assert_eq!(first.revision, 10);
    assert_eq!(
        (r.first_revision(), r.last_revision(), r.event_count()),
        (Some(10), Some(10), 1)
    );
    assert_eq!(r.by_ref().count(), 3);
    assert_eq!((r.last_revision(), r.event_count()), (Some(13), 6));
    assert!(r.summary().is_some() && r.lease_table().is_some());
    assert!(r.next().is_none());
}

#[test]
fn segment_without_lease_table_reads() {
    let mut w = SegmentWriter::new(Vec::new()).unwrap();
    w.append(1, t(0), &[put("k", "v", 1, 1, 1, 0)]).unwrap();
    let (bytes, summary) = w.finish(None).unwrap();
    let seg = read_segment(&bytes[..]).unwrap();
    assert!(!summary.has_leases && seg.leases.is_none());
}

#[test]
fn key_bucket_entries_are_what_etcd_stores() {
    let (revs, _) = sample();
    let (_, _, txn) = &revs[1];
    let entries: Vec<_> = txn
        .iter()
        .enumerate()
        .map(|(sub, e)| e.key_bucket_entry(sub as i64))
        .collect();
    for (sub, (key, value)) in entries.iter().enumerate() {
        let rev = Revision::from_key(key).unwrap();
        assert_eq!((rev.main, rev.sub), (11, sub as i64));
        assert_eq!(rev.tombstone, sub == 2);
        let kv = KeyValue::decode(value).unwrap().to_owned();
        if sub < 2 {
            assert_eq!(kv, txn[sub].kv);
        } else {
            // A tombstone's value is the key alone.
            assert_eq!(
                kv,
                OwnedKeyValue {
                    key: b"/c".to_vec(),
                    ..Default::default()
                }
            );
        }
    }
    assert_eq!(entries[2].0.len(), 18);
    assert_eq!(entries[2].0[17], b't');
    // Zero fields are left out, as etcd's marshalling does: a tombstone is field 1 only.
    assert_eq!(entries[2].1, [0x0A, 2, b'/', b'c']);
    assert_eq!(
        entries[0].0,
        [0, 0, 0, 0, 0, 0, 0, 11, b'_', 0, 0, 0, 0, 0, 0, 0, 0]
    );
}

// ---------------------------------------------------------------------------------------------
// Truncation and flipped bits

#[test]
fn truncation_at_every_offset_is_an_error() {
    let bytes = write_sample();
    for n in 0..bytes.len() {
        match read_segment(&bytes[..n]) {
            Err(RevlogError::Truncated { offset, .. }) => assert!(offset <= n as u64, "{n}"),
            Err(RevlogError::MissingEnd { offset }) => assert_eq!(offset, n as u64),
            other => panic!("cut at {n}: {other:?}"),
        }
    }
}

#[test]
fn a_flipped_bit_anywhere_is_an_error() {
    let bytes = write_sample();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut bad = bytes.clone();
            bad[i] ^= 1 << bit;
            let r = read_segment(&bad[..]);
            assert!(r.is_err(), "bit {bit} of byte {i} went unnoticed");
            if i >= HEADER_LEN {
                assert!(
                    matches!(
                        r,
                        Err(RevlogError::ChecksumMismatch { .. }
                            | RevlogError::Truncated { .. }
                            | RevlogError::RecordTooLarge { .. })
                    ),
                    "bit {bit} of byte {i}: {r:?}"
                );
            }
        }
    }
}

#[test]
fn header_errors_name_what_is_wrong() {
    let bytes = write_sample();
    assert!(matches!(
        read_segment(&b"PK\x03\x04 not a segment"[..]),
        Err(RevlogError::BadMagic { .. })
    ));
    let mut v2 = bytes.clone();
    v2[MAGIC.len()] = 2;
    let e = read_segment(&v2[..]).unwrap_err();
    assert!(
        matches!(
            e,
            RevlogError::UnsupportedVersion {
                offset: 8,
                version: 2,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("upgrade cpkeep"));
}

#[test]
fn bytes_after_the_end_record_are_refused() {
    let mut bytes = write_sample();
    let len = bytes.len() as u64;
    bytes.push(0);
    assert!(matches!(
        read_segment(&bytes[..]),
        Err(RevlogError::TrailingBytes { offset }) if offset == len
    ));
}

#[test]
fn an_oversized_length_is_refused_before_reading() {
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    bytes.push(1);
    assert!(matches!(
        read_segment(&bytes[..]),
        Err(RevlogError::RecordTooLarge { offset: 12, .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Checksummed but wrong: records a broken writer could have produced

/// The sample's records up to (not including) the lease table, then `tail` framed records.
fn with_tail(tail: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let (revs, _) = sample();
    let mut w = SegmentWriter::new(Vec::new()).unwrap();
    for (rev, at, events) in &revs[..2] {
        w.append(*rev, *at, events).unwrap();
    }
    let (mut bytes, _) = w.finish(None).unwrap();
    // Drop the end record the writer added.
    bytes.truncate(bytes.len() - record::FRAME_OVERHEAD - 24);
    for (kind, body) in tail {
        record::frame(&mut bytes, *kind, body).unwrap();
    }
    bytes
}

fn end(first: i64, last: i64, events: u64) -> (u8, Vec<u8>) {
    let e = record::EndRecord {
        first_revision: first,
        last_revision: last,
        event_count: events,
    };
    (KIND_END, record::encode_end(&e))
}

fn rev(revision: i64, at: DateTime<Utc>, events: &[Event]) -> (u8, Vec<u8>) {
    (
        record::KIND_REVISION,
        record::encode_revision(revision, at, events),
    )
}

#[test]
fn hand_made_tails_read_as_expected() {
    assert!(read_segment(&with_tail(&[end(10, 11, 4)])[..]).is_ok());
}

#[test]
fn end_record_claims_are_checked() {
    for (e, field) in [
        (end(9, 11, 4), "first_revision"),
        (end(10, 12, 4), "last_revision"),
        (end(10, 11, 5), "event_count"),
    ] {
        let r = read_segment(&with_tail(&[e])[..]);
        assert!(
            matches!(r, Err(RevlogError::EndMismatch { field: f, .. }) if f == field),
            "{r:?}"
        );
    }
}

#[test]
fn reader_refuses_revisions_out_of_order() {
    let cases = [
        rev(11, t(2), &[put("/x", "", 11, 11, 1, 0)]),
        rev(9, t(2), &[put("/x", "", 9, 9, 1, 0)]),
    ];
    for case in cases {
        let r = read_segment(&with_tail(&[case, end(10, 12, 5)])[..]);
        assert!(
            matches!(
                r,
                Err(RevlogError::RevisionNotIncreasing { previous: 11, .. })
            ),
            "{r:?}"
        );
    }
    let gap = rev(13, t(2), &[put("/x", "", 13, 13, 1, 0)]);
    let r = read_segment(&with_tail(&[gap, end(10, 13, 5)])[..]);
    assert!(
        matches!(
            r,
            Err(RevlogError::RevisionGap {
                previous: 11,
                revision: 13,
                ..
            })
        ),
        "{r:?}"
    );
    let back = rev(12, t(0), &[put("/x", "", 12, 12, 1, 0)]);
    let r = read_segment(&with_tail(&[back, end(10, 12, 5)])[..]);
    assert!(matches!(r, Err(RevlogError::TimeGoesBack { .. })), "{r:?}");
}

#[test]
fn reader_refuses_events_not_at_their_revision() {
    let wrong = rev(12, t(2), &[put("/x", "", 11, 11, 1, 0)]);
    let r = read_segment(&with_tail(&[wrong, end(10, 12, 5)])[..]);
    assert!(
        matches!(
            r,
            Err(RevlogError::BadEvent {
                revision: 12,
                event: 0,
                ..
            })
        ),
        "{r:?}"
    );
    let empty = rev(12, t(2), &[]);
    let r = read_segment(&with_tail(&[empty, end(10, 12, 4)])[..]);
    assert!(matches!(r, Err(RevlogError::BadEvent { .. })), "{r:?}");
}

#[test]
fn reader_refuses_misplaced_records() {
    let (_, leases) = sample();
    let table = (KIND_LEASES, record::encode_leases(&leases));
    let after = rev(12, t(2), &[put("/x", "", 12, 12, 1, 0)]);
    let r = read_segment(&with_tail(&[table.clone(), after, end(10, 12, 5)])[..]);
    assert!(matches!(r, Err(RevlogError::OutOfOrder { .. })), "{r:?}");
    let r = read_segment(&with_tail(&[table.clone(), table, end(10, 11, 4)])[..]);
    assert!(matches!(r, Err(RevlogError::OutOfOrder { .. })), "{r:?}");
    let r = read_segment(&with_tail(&[(9, vec![])])[..]);
    assert!(
        matches!(r, Err(RevlogError::UnknownRecordKind { kind: 9, .. })),
        "{r:?}"
    );
    let mut padded = record::encode_end(&record::EndRecord {
        first_revision: 10,
        last_revision: 11,
        event_count: 4,
    });
    padded.push(0);
    let r = read_segment(&with_tail(&[(KIND_END, padded)])[..]);
    assert!(matches!(r, Err(RevlogError::Malformed { .. })), "{r:?}");
    // A segment of the header and an end record only holds nothing.
    let mut empty = MAGIC.to_vec();
    empty.extend_from_slice(&1u32.to_le_bytes());
    record::frame(
        &mut empty,
        KIND_END,
        &record::encode_end(&record::EndRecord {
            first_revision: 0,
            last_revision: 0,
            event_count: 0,
        }),
    )
    .unwrap();
    assert!(matches!(
        read_segment(&empty[..]),
        Err(RevlogError::EmptySegment { offset: 12 })
    ));
}

#[test]
fn corrupt_counts_do_not_allocate() {
    let mut body = 12i64.to_le_bytes().to_vec();
    body.extend_from_slice(&0i64.to_le_bytes());
    body.extend_from_slice(&u32::MAX.to_le_bytes());
    let r = read_segment(&with_tail(&[(record::KIND_REVISION, body)])[..]);
    assert!(matches!(r, Err(RevlogError::Malformed { .. })), "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// The writer's refusals

#[test]
fn writer_refuses_what_the_reader_would() {
    let mut w = SegmentWriter::new(Vec::new()).unwrap();
    w.append(10, t(0), &[put("/a", "1", 10, 10, 1, 0)]).unwrap();
    let written = w.bytes_written();
    let refusals = [
        w.append(10, t(1), &[put("/a", "1", 10, 10, 1, 0)]),
        w.append(9, t(1), &[put("/a", "1", 9, 9, 1, 0)]),
        w.append(12, t(1), &[put("/a", "1", 12, 12, 1, 0)]),
        w.append(11, t(1), &[put("/a", "1", 10, 10, 1, 0)]),
        w.append(11, t(1), &[]),
        w.append(11, t(1), &[put("/a", "1", 11, 10, 0, 0)]),
        w.append(11, t(1), &[put("/a", "1", 11, 12, 1, 0)]),
        w.append(11, t(1), &[put("", "1", 11, 11, 1, 0)]),
    ];
    assert!(matches!(
        refusals[0],
        Err(RevlogError::RevisionNotIncreasing {
            previous: 10,
            revision: 10,
            ..
        })
    ));
    assert!(matches!(
        refusals[1],
        Err(RevlogError::RevisionNotIncreasing { .. })
    ));
    assert!(matches!(
        refusals[2],
        Err(RevlogError::RevisionGap {
            previous: 10,
            revision: 12,
            ..
        })
    ));
    for r in &refusals[3..] {
        assert!(
            matches!(r, Err(RevlogError::BadEvent { revision: 11, .. })),
            "{r:?}"
        );
    }
    // Refusals write nothing: the segment goes on.
    assert_eq!(w.bytes_written(), written);
    w.append(11, t(1), &[put("/a", "2", 11, 10, 2, 0)]).unwrap();
    let (bytes, summary) = w.finish(None).unwrap();
    assert_eq!(read_segment(&bytes[..]).unwrap().summary, summary);
}

#[test]
fn writer_records_a_clock_stepping_back_as_no_time_passing() {
    let mut w = SegmentWriter::new(Vec::new()).unwrap();
    w.append(1, t(10), &[put("/a", "1", 1, 1, 1, 0)]).unwrap();
    w.append(2, t(3), &[put("/a", "2", 2, 1, 2, 0)]).unwrap();
    let (bytes, summary) = w.finish(None).unwrap();
    assert_eq!(summary.last_event_time, t(10));
    assert_eq!(
        read_segment(&bytes[..]).unwrap().revisions[1].received_at,
        t(10)
    );
}

#[test]
fn writer_refuses_empty_segments_and_unsorted_leases() {
    let w = SegmentWriter::new(Vec::new()).unwrap();
    assert!(matches!(
        w.finish(None),
        Err(RevlogError::EmptySegment { offset: 12 })
    ));
    let mut w = SegmentWriter::new(Vec::new()).unwrap();
    w.append(1, t(0), &[put("/a", "1", 1, 1, 1, 0)]).unwrap();
    let (_, mut leases) = sample();
    leases.leases.push(leases.leases[0].clone());
    assert!(matches!(
        w.finish(Some(&leases)),
        Err(RevlogError::Malformed { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Manifests and chains

const SNAPSHOT: &str = "20261125T170509Z-r9";

fn manifest(first: i64, last: i64, previous: Previous) -> SegmentManifest {
    let summary = super::SegmentSummary {
        first_revision: first,
        last_revision: last,
        event_count: (last - first + 1) as u64 * 2,
        first_event_time: t(first),
        last_event_time: t(last),
        has_leases: true,
        plaintext_size: 100,
        plaintext_sha256: hex::encode(Sha256::digest(format!("plain {first}"))),
    };
    let stored = StoredObject {
        compression: CompressionInfo {
            algorithm: CompressionKind::Zstd,
            level: Some(3),
        },
        encryption: None,
        stored_size: 60,
        stored_sha256: hex::encode(Sha256::digest(format!("stored {first}"))),
    };
    SegmentManifest::new("c1", &summary, stored, previous)
}

/// Segments 10-19, 20-29, 30-39 after the snapshot, each linked to the one before.
fn chain() -> Vec<SegmentManifest> {
    let mut out: Vec<SegmentManifest> = Vec::new();
    for first in [10, 20, 30] {
        let previous = match out.last() {
            None => Previous::Snapshot(SNAPSHOT.into()),
            Some(p) => Previous::Segment(p.stored_sha256.clone()),
        };
        out.push(manifest(first, first + 9, previous));
    }
    out
}

#[test]
fn keys_sort_as_revisions_and_parse_back() {
    let m = manifest(10, 19, Previous::Snapshot(SNAPSHOT.into()));
    assert_eq!(
        m.object_key,
        "c1/log/0000000000000010-0000000000000019.evlog.zst"
    );
    assert_eq!(m.key(), "c1/log/0000000000000010-0000000000000019.json");
    assert_eq!(
        manifest::object_key_for("c1", 9, 12, CompressionKind::Zstd, true),
        "c1/log/0000000000000009-0000000000000012.evlog.zst.age"
    );
    assert!(manifest::manifest_key_for("c1", 9, 9) < manifest::manifest_key_for("c1", 10, 10));
    assert_eq!(
        manifest::parse_manifest_key(&m.key()),
        Some(("c1".into(), 10, 19))
    );
    assert_eq!(manifest::parse_manifest_key("c1/log/10-19.json"), None);
    assert_eq!(manifest::parse_manifest_key("c1/x.json"), None);
}

#[test]
fn manifest_json_round_trips_and_is_checked() {
    let m = manifest(10, 19, Previous::Snapshot(SNAPSHOT.into()));
    let json = serde_json::to_vec_pretty(&m).unwrap();
    assert_eq!(SegmentManifest::from_json(&m.key(), &json).unwrap(), m);
    let text = String::from_utf8(json).unwrap();
    assert!(text.contains("\"first_event_time\": \"2026-"), "{text}");
    let newer = text.replace("\"format_version\": 1", "\"format_version\": 9");
    let e = SegmentManifest::from_json("k", newer.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("upgrade cpkeep"), "{e}");
    let mut both = m.clone();
    both.previous_sha256 = Some(m.stored_sha256.clone());
    assert!(both.validate().is_err());
    let mut few = m.clone();
    few.event_count = 9;
    assert!(few.validate().is_err());
    let mut renamed = m;
    renamed.object_key = "c1/log/10-19.evlog.zst".into();
    assert!(renamed.validate().is_err());
}

#[test]
fn an_unbroken_chain_is_reported_in_any_order() {
    let mut c = chain();
    c.reverse();
    let report = check_chain(&c, Some(SNAPSHOT)).unwrap();
    assert_eq!((report.first_revision, report.last_revision), (10, 39));
    assert_eq!((report.segments, report.event_count), (3, 60));
    assert_eq!(report.follows_snapshot, SNAPSHOT);
}

fn broken(c: &[SegmentManifest]) -> (String, ChainBreak) {
    match check_chain(c, Some(SNAPSHOT)) {
        Err(RevlogError::ChainBroken { segment, reason }) => (segment, reason),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_missing_segment_is_a_gap_naming_the_next() {
    let mut c = chain();
    c.remove(1);
    let (segment, reason) = broken(&c);
    assert_eq!(segment, c[1].object_key);
    assert_eq!(
        reason,
        ChainBreak::Gap {
            expected_first: 20,
            found_first: 30
        }
    );
    assert!(reason.to_string().contains("20…29"), "{reason}");
}

#[test]
fn a_missing_first_segment_follows_no_snapshot() {
    let c = chain();
    assert_eq!(broken(&c[1..]).1, ChainBreak::NoSnapshot);
    assert!(matches!(
        check_chain(&c, Some("other")),
        Err(RevlogError::ChainBroken {
            reason: ChainBreak::WrongSnapshot { .. },
            ..
        })
    ));
    assert_eq!(broken(&[]).1, ChainBreak::Empty);
}

#[test]
fn a_wrong_previous_hash_is_a_break() {
    let mut c = chain();
    c[2].previous_sha256 = Some(c[0].stored_sha256.clone());
    let (segment, reason) = broken(&c);
    assert_eq!(segment, c[2].object_key);
    assert!(
        matches!(reason, ChainBreak::WrongPrevious { .. }),
        "{reason}"
    );
    let mut c = chain();
    c[1].previous_sha256 = None;
    c[1].follows_snapshot = Some(SNAPSHOT.into());
    assert_eq!(
        broken(&c).1,
        ChainBreak::MissingPrevious { previous_last: 19 }
    );
}

#[test]
fn overlaps_and_foreign_clusters_are_breaks() {
    let mut c = chain();
    let p = c[0].stored_sha256.clone();
    c[1] = manifest(19, 29, Previous::Segment(p));
    assert!(matches!(
        broken(&c).1,
        ChainBreak::Overlap {
            previous_last: 19,
            found_first: 19
        }
    ));
    let mut c = chain();
    c[2].cluster_id = "c2".into();
    c[2].object_key = c[2].object_key.replace("c1/", "c2/");
    assert!(matches!(broken(&c).1, ChainBreak::WrongCluster { .. }));
}

/// The seed corpus of the `revlog_read` fuzz target is what the writer writes today: a format
/// change that forgets the seeds fails here. `CPKEEP_WRITE_SEEDS=1` rewrites them instead.
#[test]
fn the_fuzz_seed_corpus_is_what_the_writer_writes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/revlog_read");
    let mut w = SegmentWriter::new(Vec::new()).unwrap();
    w.append(1, t(0), &[put("k", "v", 1, 1, 1, 0)]).unwrap();
    let seeds = [
        ("sample-with-leases", write_sample()),
        ("one-put", w.finish(None).unwrap().0),
    ];
    for (name, bytes) in seeds {
        let path = dir.join(name);
        if std::env::var_os("CPKEEP_WRITE_SEEDS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{} is stale: rerun with CPKEEP_WRITE_SEEDS=1",
            path.display()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Segments in a store (a real file store in a temporary directory)

mod stored {
    use super::*;
    use crate::revlog::stored::{fetch_segment, list_segments, put_segment, StoredLogError};
    use crate::snapshot::{CompressionKind, Encoding};
    use crate::store::{FileStore, ObjectStore};

    fn summary_of(bytes: &[u8]) -> crate::revlog::SegmentSummary {
        crate::revlog::read_segment(bytes).unwrap().summary
    }

    fn zstd() -> Encoding {
        Encoding {
            compression: CompressionKind::Zstd,
            level: 3,
            threads: 0,
            recipients: Vec::new(),
        }
    }

    #[tokio::test]
    async fn every_encoding_round_trips_and_the_manifest_is_written_last() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let plain = write_sample();
        let summary = summary_of(&plain);
        let identity = age::x25519::Identity::generate();
        let encodings = [
            Encoding::raw(),
            zstd(),
            Encoding {
                recipients: vec![identity.to_public()],
                ..zstd()
            },
        ];
        let ids: Vec<Box<dyn age::Identity + Send + Sync>> = vec![Box::new(identity.clone())];
        for (i, enc) in encodings.iter().enumerate() {
            let cluster = format!("c{i}");
            let m = put_segment(
                &store,
                &cluster,
                plain.clone().into(),
                &summary,
                Previous::Snapshot("snap".into()),
                enc,
            )
            .await
            .unwrap();
            assert_eq!(m.encryption.is_some(), !enc.recipients.is_empty());
            let listed = list_segments(&store, &cluster).await.unwrap();
            assert_eq!(listed.len(), 1, "{listed:?}");
            assert_eq!(listed[0].problem, None);
            assert_eq!(listed[0].manifest.as_ref(), Some(&m));
            let back = fetch_segment(&store, &m, Some(&ids)).await.unwrap();
            assert_eq!(back, crate::revlog::read_segment(plain.as_slice()).unwrap());
            if enc.recipients.is_empty() {
                assert_eq!(
                    store.get(&m.object_key).await.unwrap().len() as u64,
                    m.stored_size
                );
            } else {
                let e = fetch_segment(&store, &m, None).await.unwrap_err();
                assert!(matches!(e, StoredLogError::NeedsIdentity { .. }), "{e}");
            }
        }
    }

    #[tokio::test]
    async fn damage_is_named_and_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let plain = write_sample();
        let summary = summary_of(&plain);
        let m = put_segment(
            &store,
            "c",
            plain.clone().into(),
            &summary,
            Previous::Snapshot("snap".into()),
            &zstd(),
        )
        .await
        .unwrap();
        // A flipped byte in the stored object: refused before decoding, naming the object.
        let mut stored = store.get(&m.object_key).await.unwrap().to_vec();
        let mid = stored.len() / 2;
        stored[mid] ^= 0x40;
        store.put(&m.object_key, stored.into()).await.unwrap();
        let e = fetch_segment(&store, &m, None).await.unwrap_err();
        assert!(e.to_string().contains(&m.object_key), "{e}");
        assert!(e.to_string().contains("corrupt"), "{e}");
        // Missing object: listed with its problem.
        store.delete(&m.object_key).await.unwrap();
        let listed = list_segments(&store, "c").await.unwrap();
        assert!(
            listed[0].problem.as_deref().unwrap().contains("missing"),
            "{listed:?}"
        );
        // An object whose manifest was never written: listed as unfinished, by its revisions.
        store
            .put(
                "c/log/0000000000000020-0000000000000021.evlog.zst",
                vec![1u8].into(),
            )
            .await
            .unwrap();
        let listed = list_segments(&store, "c").await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[1].revisions(), Some((20, 21)));
        assert!(listed[1]
            .problem
            .as_deref()
            .unwrap()
            .contains("no manifest"));
        // A buffer that is not the summarised segment is refused, storing nothing.
        let mut other = plain.clone();
        other.push(0);
        let e = put_segment(
            &store,
            "d",
            other.into(),
            &summary,
            Previous::Snapshot("s".into()),
            &zstd(),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("not the segment"), "{e}");
        assert!(list_segments(&store, "d").await.unwrap().is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// Restorable windows

mod windows {
    use super::*;
    use crate::revlog::{coverage, ListedSegment, SnapshotPoint};

    /// Segments (first, last) chained by their names as sha256s, as `list_segments` lists them.
    fn log(ranges: &[(i64, i64)]) -> Vec<ListedSegment> {
        let mut previous: Option<String> = None;
        ranges
            .iter()
            .map(|&(first, last)| {
                let mut m = manifest(
                    first,
                    last,
                    match previous.take() {
                        None => Previous::Snapshot("s".into()),
                        Some(sha) => Previous::Segment(sha),
                    },
                );
                m.stored_sha256 = format!("{first:x}{last:x}");
                previous = Some(m.stored_sha256.clone());
                ListedSegment {
                    manifest_key: m.key(),
                    manifest: Some(m),
                    problem: None,
                }
            })
            .collect()
    }

    fn snap(revision: i64) -> SnapshotPoint {
        SnapshotPoint {
            id: format!("s{revision}"),
            revision,
            time: Some(t(revision)),
        }
    }

    fn spans(c: &crate::revlog::Coverage) -> Vec<(i64, i64)> {
        c.windows
            .iter()
            .map(|w| (w.from_revision, w.to_revision))
            .collect()
    }

    #[test]
    fn an_unbroken_log_makes_one_window_from_the_oldest_snapshot() {
        let listed = log(&[(101, 110), (111, 150), (151, 152)]);
        let c = coverage(&[snap(100), snap(140)], &listed);
        assert_eq!(spans(&c), [(100, 152)]);
        assert_eq!(c.windows[0].snapshots, 2);
        assert_eq!(
            c.windows[0].to_time,
            Some(listed[2].manifest.as_ref().unwrap().last_event_time)
        );
        assert!(c.gaps.is_empty());
        // A snapshot the log does not reach past is a window of its own revision.
        let c = coverage(&[snap(100), snap(200)], &listed);
        assert_eq!(spans(&c), [(100, 152), (200, 200)]);
        assert_eq!((c.gaps[0].from_revision, c.gaps[0].to_revision), (153, 199));
        assert!(
            c.gaps[0].reason.contains("no revision log"),
            "{}",
            c.gaps[0].reason
        );
    }

    #[test]
    fn a_damaged_or_unlinked_segment_cuts_the_window_and_is_named() {
        let mut listed = log(&[(101, 110), (111, 150), (151, 160)]);
        listed[1].problem = Some("segment object x is missing".into());
        let c = coverage(&[snap(100), snap(155)], &listed);
        assert_eq!(spans(&c), [(100, 110), (155, 160)]);
        assert_eq!((c.gaps[0].from_revision, c.gaps[0].to_revision), (111, 154));
        assert!(
            c.gaps[0].reason.contains(&listed[1].manifest_key),
            "{}",
            c.gaps[0].reason
        );

        let mut listed = log(&[(101, 110), (111, 150)]);
        listed[1].manifest.as_mut().unwrap().previous_sha256 = Some("ff".into());
        let c = coverage(&[snap(100)], &listed);
        assert_eq!(spans(&c), [(100, 110)]);
        // Revisions missing between two segments: the window stops before them.
        let listed = log(&[(101, 110), (120, 130)]);
        let c = coverage(&[snap(100), snap(119)], &listed);
        assert_eq!(spans(&c), [(100, 110), (119, 130)]);
        assert!(
            c.gaps[0].reason.contains("111…118") || c.gaps[0].reason.contains("not in the log"),
            "{}",
            c.gaps[0].reason
        );
    }

    #[test]
    fn an_empty_db_snapshot_is_followed_by_a_log_from_revision_2() {
        let listed = log(&[(2, 9)]);
        let c = coverage(&[snap(0)], &listed);
        assert_eq!(spans(&c), [(0, 9)]);
    }

    #[test]
    fn no_snapshot_means_nothing_is_restorable() {
        let c = coverage(&[], &log(&[(1, 5)]));
        assert!(c.windows.is_empty() && c.gaps.is_empty());
    }
}
