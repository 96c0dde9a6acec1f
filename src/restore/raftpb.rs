//! The protobuf messages a restore writes into the WAL and the raft snapshot file, hand-written with
//! `prost` derives (no build script, no `.proto` files).
//!
//! etcd's messages are proto2 with gogoproto `nullable = false` on most scalar and embedded fields:
//! gogo then emits such a field even when it holds zero. Those fields are declared `required` here,
//! which makes prost do the same; nullable fields (`bytes`, `walpb.Snapshot.conf_state`) are
//! `optional` and emitted only when set. prost writes fields in tag order, as gogo does, so the
//! encodings match etcd's byte for byte.
//!
//! | message                  | fields (tag)                                                          |
//! |--------------------------|-----------------------------------------------------------------------|
//! | walpb.Record             | type int64 (1), crc uint32 (2), data bytes (3, nullable)              |
//! | walpb.Snapshot           | index (1), term (2), conf_state ConfState (3, nullable)               |
//! | etcdserverpb.Metadata    | NodeID (1), ClusterID (2)                                             |
//! | raftpb.Entry             | Type (1), Term (2), Index (3), Data (4, nullable)                     |
//! | raftpb.ConfChange        | ID (1), Type (2), NodeID (3), Context (4, nullable)                   |
//! | raftpb.HardState         | term (1), vote (2), commit (3)                                        |
//! | raftpb.ConfState         | voters (1), learners (2), voters_outgoing (3), learners_next (4) — all repeated, unpacked; auto_leave bool (5) |
//! | raftpb.SnapshotMetadata  | conf_state (1), index (2), term (3)                                   |
//! | raftpb.Snapshot          | data bytes (1, nullable), metadata (2)                                |
//! | snappb.snapshot          | crc uint32 (1), data bytes (2, nullable)                              |

/// walpb record types (`Record.type`).
pub mod record_type {
    /// etcdserverpb.Metadata (node and cluster ID).
    pub const METADATA: i64 = 1;
    /// raftpb.Entry.
    pub const ENTRY: i64 = 2;
    /// raftpb.HardState.
    pub const STATE: i64 = 3;
    /// The running CRC carried over from the previous WAL file (0 for the first); no data.
    pub const CRC: i64 = 4;
    /// walpb.Snapshot.
    pub const SNAPSHOT: i64 = 5;
}

/// raftpb.EntryType.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum EntryType {
    EntryNormal = 0,
    EntryConfChange = 1,
    EntryConfChangeV2 = 2,
}

/// raftpb.ConfChangeType.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ConfChangeType {
    AddNode = 0,
    RemoveNode = 1,
    UpdateNode = 2,
    AddLearnerNode = 3,
}

/// walpb.Record: one WAL record, framed by its length word on disk.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Record {
    #[prost(int64, required, tag = "1")]
    pub r#type: i64,
    /// CRC-32C running over the data of every record so far, this one included.
    #[prost(uint32, required, tag = "2")]
    pub crc: u32,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub data: Option<Vec<u8>>,
}

/// walpb.Snapshot: a snapshot marker in the WAL.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WalSnapshot {
    #[prost(uint64, required, tag = "1")]
    pub index: u64,
    #[prost(uint64, required, tag = "2")]
    pub term: u64,
    #[prost(message, optional, tag = "3")]
    pub conf_state: Option<ConfState>,
}

/// etcdserverpb.Metadata: which member and cluster a WAL belongs to.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metadata {
    #[prost(uint64, required, tag = "1")]
    pub node_id: u64,
    #[prost(uint64, required, tag = "2")]
    pub cluster_id: u64,
}

/// raftpb.Entry: one raft log entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    #[prost(enumeration = "EntryType", required, tag = "1")]
    pub r#type: i32,
    #[prost(uint64, required, tag = "2")]
    pub term: u64,
    #[prost(uint64, required, tag = "3")]
    pub index: u64,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub data: Option<Vec<u8>>,
}

/// raftpb.ConfChange: a (v1) membership change, the data of an `EntryConfChange` entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConfChange {
    #[prost(uint64, required, tag = "1")]
    pub id: u64,
    #[prost(enumeration = "ConfChangeType", required, tag = "2")]
    pub r#type: i32,
    #[prost(uint64, required, tag = "3")]
    pub node_id: u64,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub context: Option<Vec<u8>>,
}

/// raftpb.HardState: the persisted term, vote and commit index.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HardState {
    #[prost(uint64, required, tag = "1")]
    pub term: u64,
    #[prost(uint64, required, tag = "2")]
    pub vote: u64,
    #[prost(uint64, required, tag = "3")]
    pub commit: u64,
}

/// raftpb.ConfState: the voters and learners of a configuration.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConfState {
    #[prost(uint64, repeated, packed = "false", tag = "1")]
    pub voters: Vec<u64>,
    #[prost(uint64, repeated, packed = "false", tag = "2")]
    pub learners: Vec<u64>,
    #[prost(uint64, repeated, packed = "false", tag = "3")]
    pub voters_outgoing: Vec<u64>,
    #[prost(uint64, repeated, packed = "false", tag = "4")]
    pub learners_next: Vec<u64>,
    #[prost(bool, required, tag = "5")]
    pub auto_leave: bool,
}

/// raftpb.SnapshotMetadata.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotMetadata {
    #[prost(message, required, tag = "1")]
    pub conf_state: ConfState,
    #[prost(uint64, required, tag = "2")]
    pub index: u64,
    #[prost(uint64, required, tag = "3")]
    pub term: u64,
}

/// raftpb.Snapshot: the application state (for etcd 3.5, the v2 store JSON) at `metadata.index`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Snapshot {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub data: Option<Vec<u8>>,
    #[prost(message, required, tag = "2")]
    pub metadata: SnapshotMetadata,
}

/// snappb.snapshot: the content of a `member/snap/*.snap` file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapFile {
    /// CRC-32C of `data`.
    #[prost(uint32, required, tag = "1")]
    pub crc: u32,
    /// An encoded [`Snapshot`].
    #[prost(bytes = "vec", optional, tag = "2")]
    pub data: Option<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn zero_non_nullable_fields_are_emitted() {
        let s = WalSnapshot {
            index: 0,
            term: 0,
            conf_state: None,
        };
        assert_eq!(s.encode_to_vec(), [0x08, 0x00, 0x10, 0x00]);
        let r = Record {
            r#type: record_type::CRC,
            crc: 0,
            data: None,
        };
        assert_eq!(r.encode_to_vec(), [0x08, 0x04, 0x10, 0x00]);
        let cs = ConfState {
            voters: vec![1, 2],
            ..Default::default()
        };
        assert_eq!(cs.encode_to_vec(), [0x08, 1, 0x08, 2, 0x28, 0]);
    }

    #[test]
    fn round_trip() {
        let cc = ConfChange {
            id: 0,
            r#type: ConfChangeType::AddLearnerNode as i32,
            node_id: 7,
            context: Some(b"x".to_vec()),
        };
        let back = ConfChange::decode(cc.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, cc);
        assert_eq!(back.r#type(), ConfChangeType::AddLearnerNode);
    }
}
