//! A revision log segment's plaintext as a whole: the header, then revision records in
//! consecutive revision order, then at most one lease table, then the end record. The writer
//! refuses anything a reader would refuse; the reader checks everything (magic, version, framing,
//! checksums, record order, consecutive revisions, the end record's claims) and hashes what it
//! read. Streams through `Write` and `Read`; never prints, never talks to etcd or a store, never
//! compresses or encrypts (the caller wraps the streams).

use std::io::{self, Read, Write};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::error::RevlogError;
use super::record::{
    self, check_events, check_leases, EndRecord, Event, LeaseTable, Record, RevisionRecord,
    BODY_OFFSET, CRC_SIZE, KIND_END, KIND_LEASES, KIND_REVISION, LENGTH_SIZE, MAX_BODY_LEN,
};

// Segment header, then the records back to back:
//
// | offset | size | field   | meaning                                  |
// |--------|------|---------|------------------------------------------|
// | 0      | 8    | magic   | `CPKEVLOG`                               |
// | 8      | 4    | version | format version, u32 LE (1)               |
// | 12     | …    | records | framed records (record.rs)               |
pub const MAGIC: &[u8; 8] = b"CPKEVLOG";
const VERSION_OFFSET: usize = MAGIC.len();
pub const HEADER_LEN: usize = VERSION_OFFSET + size_of::<u32>();
/// The segment format this cpkeep writes and the only one it reads.
pub const SEGMENT_VERSION: u32 = 1;

/// What a complete segment holds, from the writer or the reader.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SegmentSummary {
    pub first_revision: i64,
    pub last_revision: i64,
    pub event_count: u64,
    pub first_event_time: DateTime<Utc>,
    pub last_event_time: DateTime<Utc>,
    /// Whether the segment carries a lease table.
    pub has_leases: bool,
    pub plaintext_size: u64,
    /// Lowercase hex.
    pub plaintext_sha256: String,
}

/// The running facts both sides keep: the last revision and time seen, the counts.
#[derive(Debug, Default)]
struct Progress {
    first: Option<(i64, DateTime<Utc>)>,
    last: Option<(i64, DateTime<Utc>)>,
    events: u64,
    leases: bool,
}

impl Progress {
    /// Checks that `revision` may come next: exactly one above the last one, because etcd gives
    /// every main revision at least one event (a gap is lost events, never an empty revision).
    fn check_next(&self, offset: u64, revision: i64) -> Result<(), RevlogError> {
        if self.leases {
            return Err(RevlogError::OutOfOrder {
                offset,
                reason: "a revision record after the lease table",
            });
        }
        match self.last {
            Some((previous, _)) if revision <= previous => {
                Err(RevlogError::RevisionNotIncreasing {
                    offset,
                    previous,
                    revision,
                })
            }
            Some((previous, _)) if revision != previous + 1 => Err(RevlogError::RevisionGap {
                offset,
                previous,
                revision,
            }),
            _ => Ok(()),
        }
    }

    fn add(&mut self, revision: i64, at: DateTime<Utc>, events: usize) {
        self.first.get_or_insert((revision, at));
        self.last = Some((revision, at));
        self.events += events as u64;
    }

    fn end(&self) -> Option<EndRecord> {
        Some(EndRecord {
            first_revision: self.first?.0,
            last_revision: self.last?.0,
            event_count: self.events,
        })
    }

    fn summary(&self, size: u64, sha256: Sha256) -> Option<SegmentSummary> {
        let (first_revision, first_event_time) = self.first?;
        let (last_revision, last_event_time) = self.last?;
        Some(SegmentSummary {
            first_revision,
            last_revision,
            event_count: self.events,
            first_event_time,
            last_event_time,
            has_leases: self.leases,
            plaintext_size: size,
            plaintext_sha256: hex::encode(sha256.finalize()),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Writer

/// Writes one segment. After any error the output is incomplete: discard it.
pub struct SegmentWriter<W: Write> {
    out: W,
    sha256: Sha256,
    offset: u64,
    progress: Progress,
    buf: Vec<u8>,
}

impl<W: Write> SegmentWriter<W> {
    /// Starts a segment: writes its header.
    pub fn new(out: W) -> Result<Self, RevlogError> {
        let mut w = SegmentWriter {
            out,
            sha256: Sha256::new(),
            offset: 0,
            progress: Progress::default(),
            buf: Vec::new(),
        };
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&SEGMENT_VERSION.to_le_bytes());
        w.emit_raw(&header)?;
        Ok(w)
    }

    /// Plaintext bytes written so far (for `--segment-size`).
    pub fn bytes_written(&self) -> u64 {
        self.offset
    }

    /// The last revision appended, if any.
    pub fn last_revision(&self) -> Option<i64> {
        self.progress.last.map(|(r, _)| r)
    }

    /// Appends one revision's events, in the order etcd sent them. Refused, writing nothing, when
    /// the revision is not the one after the last, or an event is not at this revision. A time
    /// before the previous record's (the clock stepped back) is recorded as the previous time, so
    /// that times never decrease and `--to-time` names one revision.
    pub fn append(
        &mut self,
        revision: i64,
        received_at: DateTime<Utc>,
        events: &[Event],
    ) -> Result<(), RevlogError> {
        let offset = self.offset;
        self.progress.check_next(offset, revision)?;
        check_events(revision, events).map_err(|(event, reason)| RevlogError::BadEvent {
            offset,
            revision,
            event,
            reason,
        })?;
        let at = match self.progress.last {
            Some((_, previous)) if received_at < previous => previous,
            _ => received_at,
        };
        let body = record::encode_revision(revision, at, events);
        self.emit(KIND_REVISION, &body)?;
        self.progress.add(revision, at, events.len());
        Ok(())
    }

    /// Closes the segment: the lease table (if one was taken), then the end record. A segment
    /// holds at least one revision: an interval with no event writes no segment.
    pub fn finish(
        mut self,
        leases: Option<&LeaseTable>,
    ) -> Result<(W, SegmentSummary), RevlogError> {
        let Some(end) = self.progress.end() else {
            return Err(RevlogError::EmptySegment {
                offset: self.offset,
            });
        };
        if let Some(t) = leases {
            check_leases(t).map_err(|reason| RevlogError::Malformed {
                offset: self.offset,
                reason,
            })?;
            self.emit(KIND_LEASES, &record::encode_leases(t))?;
            self.progress.leases = true;
        }
        self.emit(KIND_END, &record::encode_end(&end))?;
        let offset = self.offset;
        self.out
            .flush()
            .map_err(|source| RevlogError::Io { offset, source })?;
        let summary = self
            .progress
            .summary(self.offset, self.sha256)
            .ok_or(RevlogError::EmptySegment { offset })?;
        Ok((self.out, summary))
    }

    fn emit(&mut self, kind: u8, body: &[u8]) -> Result<(), RevlogError> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let framed = record::frame(&mut buf, kind, body);
        let result = match framed {
            Ok(()) => self.emit_raw(&buf),
            Err(length) => Err(RevlogError::RecordTooLarge {
                offset: self.offset,
                length,
                max: u64::from(MAX_BODY_LEN),
            }),
        };
        self.buf = buf;
        result
    }

    fn emit_raw(&mut self, bytes: &[u8]) -> Result<(), RevlogError> {
        let offset = self.offset;
        self.out
            .write_all(bytes)
            .map_err(|source| RevlogError::Io { offset, source })?;
        self.sha256.update(bytes);
        self.offset += bytes.len() as u64;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Reader

/// Reads one segment, yielding its revision records in order; the lease table and the summary
/// are available once the iterator has ended without an error. The first error ends it.
pub struct SegmentReader<R: Read> {
    input: R,
    sha256: Sha256,
    offset: u64,
    progress: Progress,
    leases: Option<LeaseTable>,
    summary: Option<SegmentSummary>,
    done: bool,
}

impl<R: Read> SegmentReader<R> {
    /// Reads and checks the header.
    pub fn new(input: R) -> Result<Self, RevlogError> {
        let mut r = SegmentReader {
            input,
            sha256: Sha256::new(),
            offset: 0,
            progress: Progress::default(),
            leases: None,
            summary: None,
            done: false,
        };
        let mut header = [0u8; HEADER_LEN];
        let n = r.fill(&mut header)?;
        let (magic, version) = header.split_at(VERSION_OFFSET);
        // A short input that starts like a segment is a truncated one; anything else is not ours.
        let seen = n.min(MAGIC.len());
        if magic[..seen] != MAGIC[..seen] {
            return Err(RevlogError::BadMagic {
                found: magic[..seen].to_vec(),
            });
        }
        if n < HEADER_LEN {
            return Err(RevlogError::Truncated {
                offset: n as u64,
                what: "the header",
            });
        }
        let version = u32::from_le_bytes(version.try_into().unwrap_or_default());
        if version != SEGMENT_VERSION {
            return Err(RevlogError::UnsupportedVersion {
                offset: VERSION_OFFSET as u64,
                version,
                supported: SEGMENT_VERSION,
            });
        }
        Ok(r)
    }

    /// First revision read so far.
    pub fn first_revision(&self) -> Option<i64> {
        self.progress.first.map(|(r, _)| r)
    }

    /// Last revision read so far.
    pub fn last_revision(&self) -> Option<i64> {
        self.progress.last.map(|(r, _)| r)
    }

    /// Events read so far.
    pub fn event_count(&self) -> u64 {
        self.progress.events
    }

    /// The lease table, once read.
    pub fn lease_table(&self) -> Option<&LeaseTable> {
        self.leases.as_ref()
    }

    /// The whole segment's summary, once the end record and the end of input were read.
    pub fn summary(&self) -> Option<&SegmentSummary> {
        self.summary.as_ref()
    }

    /// Reads into `buf` until it is full or the input ends; the count read.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, RevlogError> {
        let mut n = 0;
        while n < buf.len() {
            match self.input.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(RevlogError::Io {
                        offset: self.offset + n as u64,
                        source,
                    })
                }
            }
        }
        self.sha256.update(&buf[..n]);
        self.offset += n as u64;
        Ok(n)
    }

    /// The next framed record and its offset; `None` at a clean end of input.
    fn next_frame(&mut self) -> Result<Option<(u64, Record)>, RevlogError> {
        let start = self.offset;
        let mut head = [0u8; BODY_OFFSET];
        match self.fill(&mut head)? {
            0 => return Ok(None),
            n if n < head.len() => {
                return Err(RevlogError::Truncated {
                    offset: self.offset,
                    what: "a record's length and kind",
                })
            }
            _ => {}
        }
        let (length, kind) = head.split_at(LENGTH_SIZE);
        let length = u32::from_le_bytes(length.try_into().unwrap_or_default());
        if length > MAX_BODY_LEN {
            return Err(RevlogError::RecordTooLarge {
                offset: start,
                length: u64::from(length),
                max: u64::from(MAX_BODY_LEN),
            });
        }
        // Read through `take` so that memory grows with the bytes that really arrive, not with a
        // length that may be corrupt.
        let want = u64::from(length) + CRC_SIZE as u64;
        let mut rest = Vec::new();
        let got = (&mut self.input)
            .take(want)
            .read_to_end(&mut rest)
            .map_err(|source| RevlogError::Io {
                offset: self.offset,
                source,
            })?;
        self.sha256.update(&rest);
        self.offset += got as u64;
        if (got as u64) < want {
            return Err(RevlogError::Truncated {
                offset: self.offset,
                what: "a record's body or checksum",
            });
        }
        let (body, crc) = rest.split_at(length as usize);
        let stored = u32::from_le_bytes(crc.try_into().unwrap_or_default());
        let mut c = crate::bolt::crc32c::Crc32c::new();
        c.update(&head);
        c.update(body);
        if c.sum() != stored {
            return Err(RevlogError::ChecksumMismatch {
                offset: start,
                stored,
                computed: c.sum(),
            });
        }
        Ok(Some((start, record::decode(kind[0], body, start)?)))
    }

    /// The next revision record, or `None` after a valid end.
    fn step(&mut self) -> Result<Option<RevisionRecord>, RevlogError> {
        loop {
            let Some((offset, rec)) = self.next_frame()? else {
                return Err(RevlogError::MissingEnd {
                    offset: self.offset,
                });
            };
            match rec {
                Record::Revision(r) => {
                    self.progress.check_next(offset, r.revision)?;
                    if let Some((_, previous)) = self.progress.last {
                        if r.received_at < previous {
                            return Err(RevlogError::TimeGoesBack {
                                offset,
                                previous_micros: previous.timestamp_micros(),
                                time_micros: r.received_at.timestamp_micros(),
                            });
                        }
                    }
                    self.progress.add(r.revision, r.received_at, r.events.len());
                    return Ok(Some(r));
                }
                Record::Leases(t) => {
                    if self.progress.leases {
                        return Err(RevlogError::OutOfOrder {
                            offset,
                            reason: "a second lease table",
                        });
                    }
                    if self.progress.first.is_none() {
                        return Err(RevlogError::OutOfOrder {
                            offset,
                            reason: "a lease table before any revision",
                        });
                    }
                    self.progress.leases = true;
                    self.leases = Some(t);
                }
                Record::End(end) => {
                    self.check_end(offset, &end)?;
                    let mut probe = [0u8; 1];
                    let at = self.offset;
                    if self.fill(&mut probe)? != 0 {
                        return Err(RevlogError::TrailingBytes { offset: at });
                    }
                    let sha = std::mem::take(&mut self.sha256);
                    self.summary = self.progress.summary(self.offset, sha);
                    return Ok(None);
                }
            }
        }
    }

    fn check_end(&self, offset: u64, end: &EndRecord) -> Result<(), RevlogError> {
        let Some(counted) = self.progress.end() else {
            return Err(RevlogError::EmptySegment { offset });
        };
        let pairs = [
            ("first_revision", end.first_revision, counted.first_revision),
            ("last_revision", end.last_revision, counted.last_revision),
            (
                "event_count",
                end.event_count as i64,
                counted.event_count as i64,
            ),
        ];
        for (field, recorded, counted) in pairs {
            if recorded != counted {
                return Err(RevlogError::EndMismatch {
                    offset,
                    field,
                    recorded,
                    counted,
                });
            }
        }
        Ok(())
    }
}

impl<R: Read> Iterator for SegmentReader<R> {
    type Item = Result<RevisionRecord, RevlogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.step();
        self.done = !matches!(r, Ok(Some(_)));
        r.transpose()
    }
}

/// A whole segment read into memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub revisions: Vec<RevisionRecord>,
    pub leases: Option<LeaseTable>,
    pub summary: SegmentSummary,
}

/// Reads and checks a whole segment.
pub fn read_segment(input: impl Read) -> Result<Segment, RevlogError> {
    let mut reader = SegmentReader::new(input)?;
    let revisions = reader.by_ref().collect::<Result<Vec<_>, _>>()?;
    let summary = reader.summary.take().ok_or(RevlogError::MissingEnd {
        offset: reader.offset,
    })?;
    Ok(Segment {
        revisions,
        leases: reader.leases.take(),
        summary,
    })
}
