//! One revision log record: its framing (length, kind, CRC-32C) and its three bodies — one etcd
//! revision's events, the lease table at segment close, the end record. Encoding and decoding of
//! bytes already in memory only; the order of records is the segment's business (segment.rs).
//! Never prints, never talks to etcd or a store. The tables are those of docs/FORMAT.md.

use chrono::{DateTime, Utc};

use super::error::RevlogError;
use crate::bolt::etcd::{KeyValue, OwnedKeyValue};
use crate::bolt::schema::Revision;

// Record frame:
//
// | offset    | size | field  | meaning                                                  |
// |-----------|------|--------|----------------------------------------------------------|
// | 0         | 4    | length | L, the body's length (u32 LE)                            |
// | 4         | 1    | kind   | 1 revision, 2 lease table, 3 end                         |
// | 5         | L    | body   | by kind                                                  |
// | 5 + L     | 4    | crc    | CRC-32C of bytes 0 … 5 + L − 1: length, kind and body    |
pub const LENGTH_SIZE: usize = size_of::<u32>();
pub const KIND_OFFSET: usize = LENGTH_SIZE;
pub const BODY_OFFSET: usize = KIND_OFFSET + 1;
pub const CRC_SIZE: usize = size_of::<u32>();
/// Bytes a frame adds to its body.
pub const FRAME_OVERHEAD: usize = BODY_OFFSET + CRC_SIZE;

/// Largest body accepted: far above any etcd request (1.5 MiB by default), so one revision always
/// fits, and low enough that a corrupt length is refused before anything is reserved for it.
pub const MAX_BODY_LEN: u32 = 256 << 20;

pub const KIND_REVISION: u8 = 1;
pub const KIND_LEASES: u8 = 2;
pub const KIND_END: u8 = 3;

/// Event type byte, as mvccpb.Event numbers them.
const EVENT_PUT: u8 = 0;
const EVENT_DELETE: u8 = 1;

/// Whether an event wrote or deleted its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Put,
    Delete,
}

/// One watch event: its type and the KeyValue etcd sent (a delete carries the key and its
/// mod_revision only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: OwnedKeyValue,
}

/// Every event of one main revision, in the order etcd sent them (= sub-revision order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionRecord {
    pub revision: i64,
    /// When cpkeep received the revision; what `--to-time` compares with.
    pub received_at: DateTime<Utc>,
    pub events: Vec<Event>,
}

/// One lease as etcd's TimeToLive (with keys) reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseEntry {
    pub id: i64,
    pub granted_ttl: i64,
    /// Seconds left when asked; −1 when etcd no longer knew the lease.
    pub remaining_ttl: i64,
    pub keys: Vec<Vec<u8>>,
}

/// The lease table taken when a segment closed (leases are not in the watch stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTable {
    pub taken_at: DateTime<Utc>,
    /// The cluster revision in the listing's response header: the table is at least this recent.
    pub header_revision: i64,
    /// Sorted by ID, each ID once.
    pub leases: Vec<LeaseEntry>,
}

/// The end record: what the segment claims to hold, checked against what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndRecord {
    pub first_revision: i64,
    pub last_revision: i64,
    pub event_count: u64,
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Revision(RevisionRecord),
    Leases(LeaseTable),
    End(EndRecord),
}

impl Event {
    /// The `key` bucket entry this event becomes when replayed as the `sub`-th change of its
    /// revision: the revision key (tombstone-marked for a delete) and the stored KeyValue — for a
    /// delete only the key, as etcd stores a tombstone.
    pub fn key_bucket_entry(&self, sub: i64) -> (Vec<u8>, Vec<u8>) {
        let rev = Revision {
            main: self.kv.mod_revision,
            sub,
            tombstone: self.kind == EventKind::Delete,
        };
        let mut value = Vec::new();
        match self.kind {
            EventKind::Put => self.kv.borrow().encode(&mut value),
            EventKind::Delete => KeyValue {
                key: &self.kv.key,
                ..KeyValue::default()
            }
            .encode(&mut value),
        }
        (rev.to_key(), value)
    }
}

/// Checks one revision's events against what etcd guarantees of them: at least one event, every
/// event at this revision, a key, and for a put a version and a creation no later than now.
/// `Err((event index, reason))`.
pub fn check_events(revision: i64, events: &[Event]) -> Result<(), (usize, String)> {
    if revision < 1 {
        return Err((0, format!("revision {revision} is not positive")));
    }
    if events.is_empty() {
        return Err((0, "a revision with no event".into()));
    }
    for (i, e) in events.iter().enumerate() {
        let kv = &e.kv;
        if kv.mod_revision != revision {
            return Err((
                i,
                format!("mod_revision {} in revision {revision}", kv.mod_revision),
            ));
        }
        if kv.key.is_empty() {
            return Err((i, "empty key".into()));
        }
        if e.kind == EventKind::Put {
            if kv.version < 1 {
                return Err((i, format!("put with version {}", kv.version)));
            }
            if kv.create_revision < 1 || kv.create_revision > revision {
                return Err((
                    i,
                    format!("put with create_revision {}", kv.create_revision),
                ));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Appends one framed record to `out`.
pub fn frame(out: &mut Vec<u8>, kind: u8, body: &[u8]) -> Result<(), u64> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|l| *l <= MAX_BODY_LEN)
        .ok_or(body.len() as u64)?;
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(body);
    let crc = crate::bolt::crc32c::checksum(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

// Revision body:
//
// | offset | size | field       | meaning                                         |
// |--------|------|-------------|-------------------------------------------------|
// | 0      | 8    | revision    | main revision (i64 LE)                          |
// | 8      | 8    | received_at | µs since the Unix epoch, UTC (i64 LE)           |
// | 16     | 4    | count       | n ≥ 1 events (u32 LE)                           |
// | 20     | …    | events      | n × event, in sub-revision order                |
//
// Event:
//
// | offset | size | field  | meaning                                              |
// |--------|------|--------|------------------------------------------------------|
// | 0      | 1    | type   | 0 put, 1 delete                                      |
// | 1      | 4    | length | k (u32 LE)                                           |
// | 5      | k    | kv     | mvccpb.KeyValue (protobuf)                           |
pub fn encode_revision(revision: i64, received_at: DateTime<Utc>, events: &[Event]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&revision.to_le_bytes());
    b.extend_from_slice(&received_at.timestamp_micros().to_le_bytes());
    put_count(&mut b, events.len());
    let mut kv = Vec::new();
    for e in events {
        b.push(match e.kind {
            EventKind::Put => EVENT_PUT,
            EventKind::Delete => EVENT_DELETE,
        });
        kv.clear();
        e.kv.borrow().encode(&mut kv);
        put_bytes(&mut b, &kv);
    }
    b
}

// Lease table body:
//
// | offset | size | field           | meaning                                     |
// |--------|------|-----------------|---------------------------------------------|
// | 0      | 8    | taken_at        | µs since the Unix epoch, UTC (i64 LE)       |
// | 8      | 8    | header_revision | i64 LE                                      |
// | 16     | 4    | count           | n leases (u32 LE), IDs strictly increasing  |
// | 20     | …    | leases          | n × lease                                   |
//
// Lease:
//
// | offset | size | field         | meaning                                       |
// |--------|------|---------------|-----------------------------------------------|
// | 0      | 8    | id            | i64 LE, not 0                                 |
// | 8      | 8    | granted_ttl   | seconds (i64 LE)                              |
// | 16     | 8    | remaining_ttl | seconds (i64 LE), −1 if unknown to etcd       |
// | 24     | 4    | keys          | m (u32 LE)                                    |
// | 28     | …    | key × m       | length (u32 LE), then the key's bytes         |
pub fn encode_leases(t: &LeaseTable) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&t.taken_at.timestamp_micros().to_le_bytes());
    b.extend_from_slice(&t.header_revision.to_le_bytes());
    put_count(&mut b, t.leases.len());
    for l in &t.leases {
        for v in [l.id, l.granted_ttl, l.remaining_ttl] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        put_count(&mut b, l.keys.len());
        for k in &l.keys {
            put_bytes(&mut b, k);
        }
    }
    b
}

// End body:
//
// | offset | size | field          | meaning                                      |
// |--------|------|----------------|----------------------------------------------|
// | 0      | 8    | first_revision | i64 LE                                       |
// | 8      | 8    | last_revision  | i64 LE                                       |
// | 16     | 8    | event_count    | u64 LE                                       |
pub fn encode_end(e: &EndRecord) -> Vec<u8> {
    let mut b = Vec::with_capacity(24);
    b.extend_from_slice(&e.first_revision.to_le_bytes());
    b.extend_from_slice(&e.last_revision.to_le_bytes());
    b.extend_from_slice(&e.event_count.to_le_bytes());
    b
}

/// Counts beyond u32 cannot occur: the body would exceed [`MAX_BODY_LEN`], which `frame` refuses.
fn put_count(b: &mut Vec<u8>, n: usize) {
    b.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_bytes(b: &mut Vec<u8>, bytes: &[u8]) {
    put_count(b, bytes.len());
    b.extend_from_slice(bytes);
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// A cursor over one record's body; `base` is the body's offset in the segment, for errors.
struct Body<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u64,
}

impl<'a> Body<'a> {
    fn at(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn malformed(&self, reason: impl Into<String>) -> RevlogError {
        RevlogError::Malformed {
            offset: self.at(),
            reason: reason.into(),
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], RevlogError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| self.malformed(format!("the body ends inside {what}")))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn i64(&mut self, what: &str) -> Result<i64, RevlogError> {
        let b = self.take(8, what)?;
        Ok(i64::from_le_bytes(b.try_into().unwrap_or_default()))
    }

    fn u32(&mut self, what: &str) -> Result<u32, RevlogError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes(b.try_into().unwrap_or_default()))
    }

    fn u8(&mut self, what: &str) -> Result<u8, RevlogError> {
        Ok(self.take(1, what)?[0])
    }

    fn bytes(&mut self, what: &str) -> Result<&'a [u8], RevlogError> {
        let n = self.u32(what)?;
        self.take(n as usize, what)
    }

    /// A count of items at least `min_size` bytes each, refused at once when the rest of the body
    /// cannot hold them (so that no vector is sized from a corrupt count).
    fn count(&mut self, what: &str, min_size: usize) -> Result<usize, RevlogError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_size) > self.buf.len() - self.pos {
            return Err(self.malformed(format!("{n} {what} cannot fit in the record")));
        }
        Ok(n)
    }

    fn time(&mut self, what: &str) -> Result<DateTime<Utc>, RevlogError> {
        let at = self.at();
        let micros = self.i64(what)?;
        DateTime::from_timestamp_micros(micros).ok_or_else(|| RevlogError::Malformed {
            offset: at,
            reason: format!("{what} {micros}µs is out of range"),
        })
    }

    fn finish(&self) -> Result<(), RevlogError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(self.malformed(format!(
                "{} bytes after the body's content",
                self.buf.len() - self.pos
            )))
        }
    }
}

/// Decodes a record body of `kind` found at `body_offset` in the segment.
pub fn decode(kind: u8, body: &[u8], record_offset: u64) -> Result<Record, RevlogError> {
    let mut b = Body {
        buf: body,
        pos: 0,
        base: record_offset + BODY_OFFSET as u64,
    };
    let record = match kind {
        KIND_REVISION => Record::Revision(decode_revision(&mut b, record_offset)?),
        KIND_LEASES => Record::Leases(decode_leases(&mut b)?),
        KIND_END => Record::End(EndRecord {
            first_revision: b.i64("first_revision")?,
            last_revision: b.i64("last_revision")?,
            event_count: b.i64("event_count")? as u64,
        }),
        kind => {
            return Err(RevlogError::UnknownRecordKind {
                offset: record_offset + KIND_OFFSET as u64,
                kind,
            })
        }
    };
    b.finish()?;
    Ok(record)
}

/// Smallest encoded event: type and length.
const MIN_EVENT_SIZE: usize = 5;
/// Smallest encoded lease: three i64 and a key count.
const MIN_LEASE_SIZE: usize = 28;

fn decode_revision(b: &mut Body<'_>, offset: u64) -> Result<RevisionRecord, RevlogError> {
    let revision = b.i64("revision")?;
    let received_at = b.time("received_at")?;
    let n = b.count("events", MIN_EVENT_SIZE)?;
    let mut events = Vec::with_capacity(n);
    for i in 0..n {
        let kind = match b.u8("event type")? {
            EVENT_PUT => EventKind::Put,
            EVENT_DELETE => EventKind::Delete,
            t => return Err(b.malformed(format!("event {i} has type {t}"))),
        };
        let kv = KeyValue::decode(b.bytes("a KeyValue")?).map_err(|source| {
            RevlogError::BadKeyValue {
                offset,
                event: i,
                source,
            }
        })?;
        events.push(Event {
            kind,
            kv: kv.to_owned(),
        });
    }
    check_events(revision, &events).map_err(|(event, reason)| RevlogError::BadEvent {
        offset,
        revision,
        event,
        reason,
    })?;
    Ok(RevisionRecord {
        revision,
        received_at,
        events,
    })
}

fn decode_leases(b: &mut Body<'_>) -> Result<LeaseTable, RevlogError> {
    let taken_at = b.time("taken_at")?;
    let header_revision = b.i64("header_revision")?;
    let n = b.count("leases", MIN_LEASE_SIZE)?;
    let mut leases: Vec<LeaseEntry> = Vec::with_capacity(n);
    for _ in 0..n {
        let at = b.at();
        let id = b.i64("lease id")?;
        if id == 0 || leases.last().is_some_and(|l| l.id >= id) {
            return Err(RevlogError::Malformed {
                offset: at,
                reason: format!("lease id {id:#x} is zero or not above the previous one"),
            });
        }
        let granted_ttl = b.i64("granted_ttl")?;
        let remaining_ttl = b.i64("remaining_ttl")?;
        let m = b.count("keys", LENGTH_SIZE)?;
        let mut keys = Vec::with_capacity(m);
        for _ in 0..m {
            keys.push(b.bytes("a lease's key")?.to_vec());
        }
        leases.push(LeaseEntry {
            id,
            granted_ttl,
            remaining_ttl,
            keys,
        });
    }
    Ok(LeaseTable {
        taken_at,
        header_revision,
        leases,
    })
}

/// Checks a lease table before it is written: IDs non-zero and strictly increasing.
pub fn check_leases(t: &LeaseTable) -> Result<(), String> {
    let mut previous = None;
    for l in &t.leases {
        if l.id == 0 || previous.is_some_and(|p| p >= l.id) {
            return Err(format!(
                "lease id {:#x} is zero or not above the previous one (sort the table by id)",
                l.id
            ));
        }
        previous = Some(l.id);
    }
    Ok(())
}
