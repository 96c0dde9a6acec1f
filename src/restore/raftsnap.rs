//! The raft snapshot file of a restored member, `member/snap/<term %016x>-<index %016x>.snap`, byte
//! for byte as `etcdutl snapshot restore` 3.5 writes it.
//!
//! The file is a snappb.snapshot {crc = CRC-32C(data), data = raftpb.Snapshot}. The raft snapshot's
//! metadata is {conf_state = all members as voters, index N, term 1} and its data the etcd v2 store
//! serialised by Go's `encoding/json`, holding one `/0/members/<hex id>/raftAttributes` per member:
//! etcd 3.5 reads the membership from it at startup (without it a member has no peers).
//!
//! The v2 store JSON, field by field as etcd writes it:
//! - `Root`: a node tree. A node is `{"Path","CreatedIndex","ModifiedIndex","ExpireTime","Value",
//!   "Children"}`; `ExpireTime` is Go's zero time for permanent nodes, `Value` is `""` on
//!   directories, `Children` is an object keyed by child name (sorted bytewise, as Go sorts map keys)
//!   on directories and `null` on leaves. `/0` and `/1` exist at index 0; each member's
//!   raftAttributes is created at its position (1..=N, members by ID ascending), creating its parent
//!   directories with the same index; a parent's ModifiedIndex is not bumped by later children.
//! - `WatcherHub.EventHistory`: a ring of capacity 1000 of `create` events
//!   (`{"action","node":{"key","value","modifiedIndex","createdIndex"}}`, empty slots `null`), with
//!   `Size`, `Front`, `Back`, `Capacity`, `StartIndex` (index of the event at `Front`), `LastIndex`.
//! - `CurrentIndex` N, `Stats` (all zero but `createSuccess` = N), `CurrentVersion` 2.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost::Message;

use super::error::RestoreError;
use super::membership::{push_go_json_string, Member, Membership, RESTORE_TERM};
use super::raftpb::{ConfState, SnapFile, Snapshot, SnapshotMetadata};
use crate::fsx;

/// Capacity of the v2 store's event history ring.
const EVENT_HISTORY_CAPACITY: usize = 1000;
/// Go's zero `time.Time`, the expiry of permanent v2 nodes.
const PERMANENT: &str = "0001-01-01T00:00:00Z";
/// The v2 store's format version.
const STORE_VERSION: u64 = 2;

/// The snapshot file name for `term` and `index`: `%016x-%016x.snap`.
pub fn snap_file_name(term: u64, index: u64) -> String {
    format!("{term:016x}-{index:016x}.snap")
}

/// The file name and content of the raft snapshot a restore of `membership` writes (the same for
/// every member of the cluster).
pub fn encode_snap(membership: &Membership) -> (String, Vec<u8>) {
    let index = membership.commit_index();
    let raft = Snapshot {
        data: Some(v2_store_json(membership)),
        metadata: SnapshotMetadata {
            conf_state: ConfState {
                voters: membership.voters(),
                ..Default::default()
            },
            index,
            term: RESTORE_TERM,
        },
    }
    .encode_to_vec();
    let file = SnapFile {
        crc: crc32c::crc32c(&raft),
        data: Some(raft),
    };
    (snap_file_name(RESTORE_TERM, index), file.encode_to_vec())
}

/// Writes the raft snapshot into `snap_dir` (created with mode 0700 if missing) atomically, mode
/// 0600, fsynced with its directory. Returns the file's path.
pub fn write_snap(snap_dir: &Path, membership: &Membership) -> Result<PathBuf, RestoreError> {
    let (name, bytes) = encode_snap(membership);
    fsx::create_dir_all_mode(snap_dir, 0o700)
        .map_err(|e| RestoreError::io("create directory", snap_dir, e))?;
    let path = snap_dir.join(name);
    fsx::write_atomic(&path, &bytes, fsx::MODE_SECRET)
        .map_err(|e| RestoreError::io("write", &path, e))?;
    Ok(path)
}

/// A v2 store node: a directory (`value` None) or a leaf.
struct Node {
    path: String,
    index: u64,
    value: Option<Vec<u8>>,
    children: BTreeMap<String, Node>,
}

impl Node {
    fn dir(path: String, index: u64) -> Node {
        Node {
            path,
            index,
            value: None,
            children: BTreeMap::new(),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"Path\":");
        push_go_json_string(out, &self.path);
        push_field(out, "CreatedIndex", self.index);
        push_field(out, "ModifiedIndex", self.index);
        out.extend_from_slice(b",\"ExpireTime\":");
        push_go_json_string(out, PERMANENT);
        out.extend_from_slice(b",\"Value\":");
        match &self.value {
            Some(v) => {
                push_go_json_string(out, &String::from_utf8_lossy(v));
                out.extend_from_slice(b",\"Children\":null}");
            }
            None => {
                out.extend_from_slice(b"\"\",\"Children\":{");
                for (i, (name, child)) in self.children.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    push_go_json_string(out, name);
                    out.push(b':');
                    child.write(out);
                }
                out.extend_from_slice(b"}}");
            }
        }
    }
}

fn push_field(out: &mut Vec<u8>, name: &str, value: impl std::fmt::Display) {
    out.extend_from_slice(format!(",\"{name}\":{value}").as_bytes());
}

fn raft_attributes_key(m: &Member) -> String {
    format!("/0/members/{}/raftAttributes", m.id_hex())
}

/// The v2 store JSON (`store.Save()`) etcdutl 3.5 puts in the raft snapshot for `membership`.
pub fn v2_store_json(membership: &Membership) -> Vec<u8> {
    let members = membership.members();
    let n = members.len();

    // The tree.
    let mut cluster = Node::dir("/0".to_owned(), 0);
    for (i, m) in members.iter().enumerate() {
        let index = i as u64 + 1;
        let dir = cluster
            .children
            .entry("members".to_owned())
            .or_insert_with(|| Node::dir("/0/members".to_owned(), index));
        let hex = m.id_hex();
        let mut member = Node::dir(format!("/0/members/{hex}"), index);
        member.children.insert(
            "raftAttributes".to_owned(),
            Node {
                path: raft_attributes_key(m),
                index,
                value: Some(m.raft_attributes_json()),
                children: BTreeMap::new(),
            },
        );
        dir.children.insert(hex, member);
    }
    let mut root = Node::dir("/".to_owned(), 0);
    root.children.insert("0".to_owned(), cluster);
    root.children
        .insert("1".to_owned(), Node::dir("/1".to_owned(), 0));

    // The event history ring, filled as etcd's queue fills it.
    let mut slots: Vec<Option<usize>> = vec![None; EVENT_HISTORY_CAPACITY];
    let (mut front, mut back, mut size) = (0usize, 0usize, 0usize);
    for i in 0..n {
        slots[back] = Some(i);
        back = (back + 1) % EVENT_HISTORY_CAPACITY;
        if size == EVENT_HISTORY_CAPACITY {
            front = (front + 1) % EVENT_HISTORY_CAPACITY;
        } else {
            size += 1;
        }
    }
    let start_index = slots[front].map_or(0, |i| i as u64 + 1);

    let mut out = Vec::with_capacity(6000 + 700 * n);
    out.extend_from_slice(b"{\"Root\":");
    root.write(&mut out);
    out.extend_from_slice(b",\"WatcherHub\":{\"EventHistory\":{\"Queue\":{\"Events\":[");
    for (k, slot) in slots.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        let Some(&i) = slot.as_ref() else {
            out.extend_from_slice(b"null");
            continue;
        };
        let m = &members[i];
        out.extend_from_slice(b"{\"action\":\"create\",\"node\":{\"key\":");
        push_go_json_string(&mut out, &raft_attributes_key(m));
        out.extend_from_slice(b",\"value\":");
        push_go_json_string(
            &mut out,
            &String::from_utf8_lossy(&m.raft_attributes_json()),
        );
        push_field(&mut out, "modifiedIndex", i + 1);
        push_field(&mut out, "createdIndex", i + 1);
        out.extend_from_slice(b"}}");
    }
    out.push(b']');
    push_field(&mut out, "Size", size);
    push_field(&mut out, "Front", front);
    push_field(&mut out, "Back", back);
    push_field(&mut out, "Capacity", EVENT_HISTORY_CAPACITY);
    out.push(b'}');
    push_field(&mut out, "StartIndex", start_index);
    push_field(&mut out, "LastIndex", n);
    out.extend_from_slice(b"}}");
    push_field(&mut out, "CurrentIndex", n);
    out.extend_from_slice(b",\"Stats\":{\"getsSuccess\":0,\"getsFail\":0,\"setsSuccess\":0,\"setsFail\":0,\"deleteSuccess\":0,\"deleteFail\":0,\"updateSuccess\":0,\"updateFail\":0");
    push_field(&mut out, "createSuccess", n);
    out.extend_from_slice(b",\"createFail\":0,\"compareAndSwapSuccess\":0,\"compareAndSwapFail\":0,\"compareAndDeleteSuccess\":0,\"compareAndDeleteFail\":0,\"expireCount\":0,\"watchers\":0}");
    push_field(&mut out, "CurrentVersion", STORE_VERSION);
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::membership::InitialCluster;

    fn membership(cluster: &str) -> Membership {
        Membership::new(&InitialCluster::parse(cluster).unwrap(), "etcd-cluster").unwrap()
    }

    fn fixture_snap(dir: &str) -> (String, Vec<u8>) {
        let d = format!(
            "{}/fixtures/etcdutl-3.5.30-restore/{dir}/member/snap",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut found = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".snap"));
        let name = found.next().unwrap();
        assert!(found.next().is_none());
        let bytes = std::fs::read(format!("{d}/{name}")).unwrap();
        (name, bytes)
    }

    #[test]
    fn encode_snap_matches_etcdutl_byte_for_byte() {
        let three = "m1=https://10.0.0.11:2380,m2=https://10.0.0.12:2380,m3=https://10.0.0.13:2380";
        for (dir, cluster) in [
            ("restored-m1", three),
            ("restored-m2", three),
            ("restored-m3", three),
            ("restored-default-bumped", "default=http://localhost:2380"),
        ] {
            let (want_name, want) = fixture_snap(dir);
            let (name, got) = encode_snap(&membership(cluster));
            assert_eq!(name, want_name, "{dir}");
            assert!(got == want, "{dir}: snapshot bytes differ");
        }
    }

    #[test]
    fn v2_children_sort_as_strings_indexes_follow_id_order() {
        // a: 0dd7fa635baf8980 (hex "dd7fa635baf8980", no padding), b: 5e448e035f2bc6c1.
        // By ID a comes first (index 1); as map keys "5e44..." sorts before "dd7f...".
        let ic = InitialCluster::parse("a=http://h13:2380,b=http://x1:2380").unwrap();
        let m = Membership::new(&ic, "t").unwrap();
        assert_eq!(m.members()[0].id_hex(), "dd7fa635baf8980");
        assert_eq!(m.members()[1].id_hex(), "5e448e035f2bc6c1");
        let json = v2_store_json(&m);
        let text = String::from_utf8(json.clone()).unwrap();
        let pos = |k: &str| text.find(&format!("\"{k}\":{{\"Path\"")).unwrap();
        assert!(pos("5e448e035f2bc6c1") < pos("dd7fa635baf8980"));
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let members = &v["Root"]["Children"]["0"]["Children"]["members"]["Children"];
        assert_eq!(members["dd7fa635baf8980"]["CreatedIndex"], 1);
        assert_eq!(members["5e448e035f2bc6c1"]["CreatedIndex"], 2);
        let events = &v["WatcherHub"]["EventHistory"]["Queue"]["Events"];
        assert_eq!(
            events[0]["node"]["key"],
            "/0/members/dd7fa635baf8980/raftAttributes"
        );
        assert_eq!(events[2], serde_json::Value::Null);
        assert_eq!(v["WatcherHub"]["EventHistory"]["Queue"]["Size"], 2);
        assert_eq!(v["Stats"]["createSuccess"], 2);
    }

    #[test]
    fn write_snap_writes_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let m = membership("default=http://localhost:2380");
        let p = write_snap(&tmp.path().join("member/snap"), &m).unwrap();
        let (want_name, want) = fixture_snap("restored-default-bumped");
        assert_eq!(p.file_name().unwrap().to_str().unwrap(), want_name);
        assert_eq!(std::fs::read(&p).unwrap(), want);
    }
}
