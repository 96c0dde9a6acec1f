//! The first WAL segment of a restored member, byte for byte as `etcdutl snapshot restore` writes it.
//!
//! Framing of each record: a little-endian u64 length word, the encoded walpb.Record, then zero
//! padding to the next multiple of 8. When there is padding, the length word's top byte is
//! `0x80 | pad` and its low 56 bits the record length. Every record carries the CRC-32C running over
//! the data of all records so far (the `crc` record carries the previous segment's, 0 here).
//!
//! Records, in order: `crc` (0); `metadata` {NodeID, ClusterID}; `snapshot` {index 0, term 0};
//! one `entry` per member (EntryConfChange, term 1, index 1..=N, data = ConfChange{AddNode, node,
//! context = member JSON}) by member ID ascending; `state` HardState{term 1, vote = lowest member ID,
//! commit N}; `snapshot` {index N, term 1, conf_state = all members as voters}. The file is then
//! preallocated (zero-filled) to 64,000,000 bytes like etcd's segments.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use prost::Message;

use super::error::RestoreError;
use super::membership::{Membership, RESTORE_TERM};
use super::raftpb::{
    record_type, ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Metadata,
    Record, WalSnapshot,
};
use crate::fsx;

/// Size etcd preallocates each WAL segment to.
pub const WAL_SEGMENT_SIZE: u64 = 64_000_000;
/// Name of the first WAL segment (sequence 0, index 0).
pub const WAL_FILE_NAME: &str = "0000000000000000-0000000000000000.wal";

/// What [`write_wal`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalSummary {
    /// The WAL segment written.
    pub path: PathBuf,
    /// Bytes holding records; the rest of the file is zeros.
    pub used_bytes: u64,
    /// The file's size after preallocation.
    pub file_size: u64,
    /// The member this WAL belongs to.
    pub node_id: u64,
    pub cluster_id: u64,
    /// Index (and commit) of the last entry: the number of members.
    pub last_index: u64,
    pub term: u64,
    /// Number of records.
    pub records: usize,
    /// The running CRC-32C after the last record.
    pub crc: u32,
}

/// Appends framed records, keeping the running CRC.
#[derive(Default)]
struct WalEncoder {
    out: Vec<u8>,
    crc: u32,
    records: usize,
}

impl WalEncoder {
    fn push(&mut self, r#type: i64, data: Option<Vec<u8>>) {
        if let Some(d) = &data {
            self.crc = crc32c::crc32c_append(self.crc, d);
        }
        let rec = Record {
            r#type,
            crc: self.crc,
            data,
        }
        .encode_to_vec();
        let len = rec.len() as u64;
        let pad = (8 - len % 8) % 8;
        let word = if pad == 0 {
            len
        } else {
            len | ((0x80 | pad) << 56)
        };
        self.out.extend_from_slice(&word.to_le_bytes());
        self.out.extend_from_slice(&rec);
        self.out.resize(self.out.len() + pad as usize, 0);
        self.records += 1;
    }
}

/// The used bytes of the WAL etcdutl writes for member `node_id` of `membership` (what precedes
/// the zero preallocation), with the record count and final CRC.
fn encode(membership: &Membership, node_id: u64) -> Result<WalEncoder, RestoreError> {
    membership.require(node_id)?;
    let n = membership.commit_index();
    let mut w = WalEncoder::default();
    w.push(record_type::CRC, None);
    let md = Metadata {
        node_id,
        cluster_id: membership.cluster_id(),
    };
    w.push(record_type::METADATA, Some(md.encode_to_vec()));
    let empty = WalSnapshot {
        index: 0,
        term: 0,
        conf_state: None,
    };
    w.push(record_type::SNAPSHOT, Some(empty.encode_to_vec()));
    for (i, m) in membership.members().iter().enumerate() {
        let cc = ConfChange {
            id: 0,
            r#type: ConfChangeType::AddNode as i32,
            node_id: m.id(),
            context: Some(m.json()),
        };
        let entry = Entry {
            r#type: EntryType::EntryConfChange as i32,
            term: RESTORE_TERM,
            index: i as u64 + 1,
            data: Some(cc.encode_to_vec()),
        };
        w.push(record_type::ENTRY, Some(entry.encode_to_vec()));
    }
    let vote = membership.members().first().map_or(0, |m| m.id());
    let hs = HardState {
        term: RESTORE_TERM,
        vote,
        commit: n,
    };
    w.push(record_type::STATE, Some(hs.encode_to_vec()));
    let snap = WalSnapshot {
        index: n,
        term: RESTORE_TERM,
        conf_state: Some(ConfState {
            voters: membership.voters(),
            ..Default::default()
        }),
    };
    w.push(record_type::SNAPSHOT, Some(snap.encode_to_vec()));
    Ok(w)
}

/// The used bytes of the WAL for member `node_id` (without the preallocated zeros). Fails when
/// `node_id` is not a member of `membership`.
pub fn encode_wal(membership: &Membership, node_id: u64) -> Result<Vec<u8>, RestoreError> {
    Ok(encode(membership, node_id)?.out)
}

/// Writes `<wal_dir>/0000000000000000-0000000000000000.wal` for member `node_id`: created (with
/// `wal_dir`, mode 0700, if missing) as a temp file of mode 0600, records written, preallocated to
/// [`WAL_SEGMENT_SIZE`], fsynced, renamed into place, and the directory fsynced. Refuses to replace an
/// existing segment.
pub fn write_wal(
    wal_dir: &Path,
    membership: &Membership,
    node_id: u64,
) -> Result<WalSummary, RestoreError> {
    let enc = encode(membership, node_id)?;
    let created_dir = !wal_dir.exists();
    fsx::create_dir_all_mode(wal_dir, 0o700)
        .map_err(|e| RestoreError::io("create directory", wal_dir, e))?;
    let path = wal_dir.join(WAL_FILE_NAME);
    if path.exists() {
        return Err(RestoreError::AlreadyExists(path));
    }
    let tmp = wal_dir.join(format!(".{WAL_FILE_NAME}.tmp-{}", std::process::id()));
    let used = enc.out.len() as u64;
    let file_size = used.max(WAL_SEGMENT_SIZE);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| RestoreError::io("create", &tmp, e))?;
        f.set_len(file_size)
            .map_err(|e| RestoreError::io("preallocate", &tmp, e))?;
        f.write_all(&enc.out)
            .map_err(|e| RestoreError::io("write", &tmp, e))?;
        f.sync_all()
            .map_err(|e| RestoreError::io("fsync", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| RestoreError::io("rename into place", &path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    fsx::sync_dir(wal_dir).map_err(|e| RestoreError::io("fsync directory", wal_dir, e))?;
    if created_dir {
        if let Some(parent) = wal_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsx::sync_dir(parent).map_err(|e| RestoreError::io("fsync directory", parent, e))?;
        }
    }
    Ok(WalSummary {
        path,
        used_bytes: used,
        file_size,
        node_id,
        cluster_id: membership.cluster_id(),
        last_index: membership.commit_index(),
        term: RESTORE_TERM,
        records: enc.records,
        crc: enc.crc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::membership::InitialCluster;

    const THREE: &str =
        "m1=https://10.0.0.11:2380,m2=https://10.0.0.12:2380,m3=https://10.0.0.13:2380";

    fn fixture(dir: &str, file: &str) -> Vec<u8> {
        let p = format!(
            "{}/fixtures/etcdutl-3.5.30-restore/{dir}/member/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    fn cases() -> Vec<(&'static str, Membership, &'static str)> {
        let three =
            Membership::new(&InitialCluster::parse(THREE).unwrap(), "etcd-cluster").unwrap();
        let one = Membership::new(
            &InitialCluster::parse("default=http://localhost:2380").unwrap(),
            "etcd-cluster",
        )
        .unwrap();
        vec![
            ("restored-m1", three.clone(), "m1"),
            ("restored-m2", three.clone(), "m2"),
            ("restored-m3", three, "m3"),
            ("restored-default-bumped", one, "default"),
        ]
    }

    #[test]
    fn encode_wal_matches_etcdutl_byte_for_byte() {
        for (dir, m, name) in cases() {
            let id = m.member(name).unwrap().id();
            let got = encode_wal(&m, id).unwrap();
            let want = fixture(dir, &format!("wal/{WAL_FILE_NAME}.trimmed"));
            assert_eq!(hex::encode(&got), hex::encode(&want), "{dir}");
        }
    }

    #[test]
    fn final_crc_matches_fixture_records() {
        // last record of restored-m1's records.json
        let (_, m, _) = cases().remove(0);
        let enc = encode(&m, m.member("m1").unwrap().id()).unwrap();
        assert_eq!(enc.crc, 419_211_777);
        assert_eq!(enc.records, 8);
    }

    #[test]
    fn unknown_node_is_refused() {
        let (_, m, _) = cases().remove(0);
        let e = encode_wal(&m, 42).unwrap_err().to_string();
        assert!(
            e.contains("2a is not in the restored cluster") && e.contains("m1=cebdf10928a06f3c"),
            "{e}"
        );
    }

    #[test]
    fn write_wal_preallocates_and_refuses_to_overwrite() {
        let (dir, m, name) = cases().remove(3);
        let tmp = tempfile::tempdir().unwrap();
        let wal_dir = tmp.path().join("member/wal");
        let id = m.member(name).unwrap().id();
        let s = write_wal(&wal_dir, &m, id).unwrap();
        let bytes = fs::read(&s.path).unwrap();
        assert_eq!(bytes.len() as u64, WAL_SEGMENT_SIZE);
        assert_eq!(s.file_size, WAL_SEGMENT_SIZE);
        let want = fixture(dir, &format!("wal/{WAL_FILE_NAME}.trimmed"));
        assert_eq!(s.used_bytes, want.len() as u64);
        assert_eq!(&bytes[..want.len()], want.as_slice());
        assert!(bytes[want.len()..].iter().all(|&b| b == 0));
        assert_eq!((s.records, s.last_index, s.term), (6, 1, 1));
        let names: Vec<_> = fs::read_dir(&wal_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [WAL_FILE_NAME]);
        assert!(matches!(
            write_wal(&wal_dir, &m, id),
            Err(RestoreError::AlreadyExists(_))
        ));
    }
}
