//! The revision log's one error type. Every variant names what is wrong and where: a byte offset
//! in the segment's plaintext for the reader and the writer, the segment's object key for a chain
//! of manifests. Corrupt input is always one of these, never a panic.

use crate::bolt::proto::ProtoError;

/// What went wrong reading, writing or chaining revision log segments.
#[derive(Debug, thiserror::Error)]
pub enum RevlogError {
    #[error("not a cpkeep revision log segment: magic {found:02x?} at byte 0")]
    BadMagic { found: Vec<u8> },

    #[error(
        "revision log segment format {version} at byte {offset} is not one this cpkeep reads ({supported}): upgrade cpkeep"
    )]
    UnsupportedVersion {
        offset: u64,
        version: u32,
        supported: u32,
    },

    #[error("revision log segment truncated at byte {offset}: it ends inside {what}")]
    Truncated { offset: u64, what: &'static str },

    #[error(
        "revision log segment has no end record: it ends at byte {offset} after a complete record"
    )]
    MissingEnd { offset: u64 },

    #[error(
        "revision log record at byte {offset} claims {length} bytes, more than the {max} allowed"
    )]
    RecordTooLarge { offset: u64, length: u64, max: u64 },

    #[error(
        "revision log record at byte {offset}: checksum {stored:#010x} stored, {computed:#010x} computed"
    )]
    ChecksumMismatch {
        offset: u64,
        stored: u32,
        computed: u32,
    },

    #[error("revision log record at byte {offset} has unknown kind {kind}")]
    UnknownRecordKind { offset: u64, kind: u8 },

    #[error("revision log record at byte {offset}: {reason}")]
    Malformed { offset: u64, reason: String },

    #[error("revision log record at byte {offset}, event {event}: undecodable KeyValue")]
    BadKeyValue {
        offset: u64,
        event: usize,
        #[source]
        source: ProtoError,
    },

    #[error("revision log record at byte {offset}, revision {revision}, event {event}: {reason}")]
    BadEvent {
        offset: u64,
        revision: i64,
        event: usize,
        reason: String,
    },

    #[error(
        "revision log record at byte {offset}: revision {revision} does not follow revision {previous}"
    )]
    RevisionNotIncreasing {
        offset: u64,
        previous: i64,
        revision: i64,
    },

    #[error(
        "revision log record at byte {offset}: revision {revision} after {previous} leaves a gap (events lost)"
    )]
    RevisionGap {
        offset: u64,
        previous: i64,
        revision: i64,
    },

    #[error(
        "revision log record at byte {offset}: time {time_micros}µs is before the previous record's {previous_micros}µs"
    )]
    TimeGoesBack {
        offset: u64,
        previous_micros: i64,
        time_micros: i64,
    },

    #[error("revision log segment at byte {offset}: {reason}")]
    OutOfOrder { offset: u64, reason: &'static str },

    #[error("revision log segment holds no revision (end record at byte {offset})")]
    EmptySegment { offset: u64 },

    #[error(
        "revision log end record at byte {offset}: {field} is {recorded}, the records hold {counted}"
    )]
    EndMismatch {
        offset: u64,
        field: &'static str,
        recorded: i64,
        counted: i64,
    },

    #[error("revision log segment has bytes after its end record, at byte {offset}")]
    TrailingBytes { offset: u64 },

    #[error("revision log segment I/O at byte {offset}")]
    Io {
        offset: u64,
        #[source]
        source: std::io::Error,
    },

    #[error("revision log manifest {key}: {reason}")]
    BadManifest { key: String, reason: String },

    #[error("revision log chain broken at segment {segment}: {reason}")]
    ChainBroken { segment: String, reason: ChainBreak },
}

/// Why a chain of segment manifests does not hold together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("no segment given")]
    Empty,
    #[error("the first segment follows no full snapshot")]
    NoSnapshot,
    #[error("it follows snapshot {found}, expected {expected}")]
    WrongSnapshot { expected: String, found: String },
    #[error("it belongs to cluster {found}, the chain to {expected}")]
    WrongCluster { expected: String, found: String },
    #[error("revisions {expected_first}…{} are missing (it starts at {found_first})", found_first - 1)]
    Gap {
        expected_first: i64,
        found_first: i64,
    },
    #[error("it starts at revision {found_first}, already covered up to {previous_last}")]
    Overlap {
        previous_last: i64,
        found_first: i64,
    },
    #[error("it names previous sha256 {found}, the previous segment's is {expected}")]
    WrongPrevious { expected: String, found: String },
    #[error("it names no previous segment but follows one (ending at {previous_last})")]
    MissingPrevious { previous_last: i64 },
}
