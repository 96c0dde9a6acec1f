//! Whole restores of the fixture snapshot compared with what etcdutl 3.5.30 wrote for the same
//! flags (fixtures/etcdutl-3.5.30-restore): every bucket's pairs, the WAL's used bytes, the raft
//! snapshot file. Real etcd booting the results is in the integration tests.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::run::{apply, plan, RestoreOptions, RestoreSource};
use super::Bump;
use crate::bolt::Db;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/etcdutl-3.5.30-restore")
}

pub(super) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Every top-level bucket with its pairs, in order.
pub(super) fn contents(db: &Path) -> Vec<(Vec<u8>, Pairs)> {
    let db = Db::open(File::open(db).unwrap()).unwrap();
    db.buckets()
        .unwrap()
        .into_iter()
        .map(|name| {
            let b = db.bucket(&name).unwrap().unwrap();
            let pairs = b
                .iter()
                .map(|e| {
                    let e = e.unwrap();
                    (e.key, e.value)
                })
                .collect();
            (name, pairs)
        })
        .collect()
}

fn restore(options: &RestoreOptions) -> super::RestoreReport {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let plan = plan(options, chrono::Utc::now()).unwrap();
    let source = RestoreSource::File {
        path: fixture().join("snapshot.db"),
        identities: None,
    };
    rt.block_on(apply(&plan, options, source)).unwrap()
}

fn assert_same_as_etcdutl(ours: &Path, theirs: &Path) {
    assert_eq!(
        contents(&ours.join("member/snap/db")),
        contents(&theirs.join("member/snap/db")),
        "db buckets"
    );
    let wal = std::fs::read(ours.join("member/wal/0000000000000000-0000000000000000.wal")).unwrap();
    assert_eq!(wal.len(), 64_000_000);
    let want =
        std::fs::read(theirs.join("member/wal/0000000000000000-0000000000000000.wal.trimmed"))
            .unwrap();
    assert_eq!(&wal[..want.len()], &want[..], "WAL records");
    assert!(wal[want.len()..].iter().all(|&b| b == 0));
    for e in std::fs::read_dir(theirs.join("member/snap")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "snap") {
            let name = p.file_name().unwrap();
            assert_eq!(
                std::fs::read(ours.join("member/snap").join(name)).unwrap(),
                std::fs::read(&p).unwrap(),
                "{name:?}"
            );
        }
    }
}

#[test]
fn three_members_as_etcdutl_restores_them() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = "m1=https://10.0.0.11:2380,m2=https://10.0.0.12:2380,m3=https://10.0.0.13:2380";
    for (i, m) in ["m1", "m2", "m3"].iter().enumerate() {
        let dir = tmp.path().join(m);
        let options = RestoreOptions {
            name: m.to_string(),
            initial_cluster: Some(cluster.to_string()),
            initial_advertise_peer_urls: vec![format!("https://10.0.0.1{}:2380", i + 1)],
            data_dir: Some(dir.clone()),
            ..RestoreOptions::default()
        };
        let report = restore(&options);
        assert!(report.hash_checked);
        assert_eq!(report.plan.members.len(), 3);
        assert!(!tmp.path().join(format!("{m}.part")).exists());
        assert_same_as_etcdutl(&dir, &fixture().join(format!("restored-{m}")));
        let mode = |p: &Path| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).unwrap().permissions().mode() & 0o777
        };
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("member/snap/db")), 0o600);
        assert!(!dir.join("member/snap/db.incoming").exists());
    }
}

#[test]
fn bumped_and_marked_compacted_as_etcdutl_does() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("default.etcd");
    let options = RestoreOptions {
        data_dir: Some(dir.clone()),
        bump: Some(Bump {
            by: 1_000_000_000,
            mark_compacted: true,
        }),
        ..RestoreOptions::default()
    };
    let report = restore(&options);
    assert_eq!(
        report.db.revision,
        report.db.snapshot_revision + 1_000_000_000
    );
    assert_eq!(report.db.compacted_at, Some(report.db.revision));
    assert_same_as_etcdutl(&dir, &fixture().join("restored-default-bumped"));
}

#[test]
fn a_non_empty_data_dir_is_refused_or_moved_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("keep"), b"precious").unwrap();
    let mut options = RestoreOptions {
        data_dir: Some(dir.clone()),
        ..RestoreOptions::default()
    };
    let e = plan(&options, chrono::Utc::now()).unwrap_err();
    assert!(e.to_string().contains("is not empty"), "{e}");
    assert_eq!(std::fs::read(dir.join("keep")).unwrap(), b"precious");

    options.move_aside = true;
    let report = restore(&options);
    let aside = &report.plan.move_aside[0].to;
    assert_eq!(std::fs::read(aside.join("keep")).unwrap(), b"precious");
    assert!(dir.join("member/snap/db").is_file());
}

#[test]
fn a_corrupt_snapshot_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(fixture().join("snapshot.db")).unwrap();
    bytes[4096 * 3 + 100] ^= 0xff;
    let bad = tmp.path().join("bad.db");
    std::fs::write(&bad, &bytes).unwrap();
    let dir = tmp.path().join("data");
    let options = RestoreOptions {
        data_dir: Some(dir.clone()),
        ..RestoreOptions::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let plan = plan(&options, chrono::Utc::now()).unwrap();
    let source = RestoreSource::File {
        path: bad.clone(),
        identities: None,
    };
    let e = rt.block_on(apply(&plan, &options, source)).unwrap_err();
    assert!(
        e.to_string().contains("sha256 trailer does not match"),
        "{e}"
    );
    assert!(!dir.exists());
    assert!(!tmp.path().join("data.part").exists());
}

#[test]
fn an_interrupted_restores_leftover_is_replaced_and_anything_else_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let part = tmp.path().join("data.part");
    std::fs::create_dir(&part).unwrap();
    std::fs::write(part.join("foreign"), b"not ours").unwrap();
    let options = RestoreOptions {
        data_dir: Some(dir.clone()),
        ..RestoreOptions::default()
    };
    let e = plan(&options, chrono::Utc::now()).unwrap_err();
    assert!(e.to_string().contains("was not made by cpkeep"), "{e}");
    assert!(part.join("foreign").is_file());

    std::fs::write(part.join(super::run::PART_MARKER), b"").unwrap();
    let report = restore(&options);
    assert_eq!(report.plan.leftovers, std::slice::from_ref(&part));
    assert!(!part.exists());
    assert!(dir.join("member/snap/db").is_file());
    assert!(!dir.join(super::run::PART_MARKER).exists());
}

/// Every file and directory under `dir`, with file contents, in order: what "as it was" means.
fn tree(dir: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.push((p.strip_prefix(dir).unwrap().to_path_buf(), None));
                todo.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p.strip_prefix(dir).unwrap().to_path_buf(), Some(bytes)));
            }
        }
    }
    out.sort();
    out
}

/// A failure at each step of the switch (after the build, after the old dirs were moved aside,
/// at the rename of the data dir, at the rename of the WAL dir after the data dir's) leaves the
/// old data and WAL dirs as they were, and nothing of the restore: no `.part`, no `.bak-*`, and
/// an empty WAL dir that was replaced is there again.
#[test]
fn a_failed_switch_is_rolled_back_at_every_step() {
    use super::run::{FAILPOINT_BUILT, FAILPOINT_MOVED_ASIDE, FAILPOINT_RENAME};
    use crate::testhooks::{arm, Action};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (point, on_wal, empty_wal) in [
        (FAILPOINT_BUILT, false, false),
        (FAILPOINT_MOVED_ASIDE, false, false),
        (FAILPOINT_RENAME, false, false),
        (FAILPOINT_RENAME, true, false),
        (FAILPOINT_RENAME, true, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let wal = dir.path().join("wal");
        std::fs::create_dir_all(data.join("member/snap")).unwrap();
        std::fs::write(data.join("member/snap/db"), b"the old db").unwrap();
        std::fs::create_dir(&wal).unwrap();
        if !empty_wal {
            std::fs::write(wal.join("0.wal"), b"the old wal").unwrap();
        }
        let before = (tree(&data), tree(&wal));
        let options = RestoreOptions {
            data_dir: Some(data.clone()),
            wal_dir: Some(wal.clone()),
            move_aside: true,
            ..RestoreOptions::default()
        };
        let plan = plan(&options, chrono::Utc::now()).unwrap();
        assert_eq!(plan.move_aside.len(), if empty_wal { 1 } else { 2 });
        let scope = if on_wal { &wal } else { &data };
        let _armed = arm(point, scope, Action::Fail);
        let source = RestoreSource::File {
            path: fixture().join("snapshot.db"),
            identities: None,
        };
        let e = rt.block_on(apply(&plan, &options, source)).unwrap_err();
        let what = format!("{point} on {}", scope.display());
        assert!(
            e.to_string()
                .contains(&format!("injected failure at failpoint {point}")),
            "{what}: {e}"
        );
        assert_eq!((tree(&data), tree(&wal)), before, "{what}");
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["data", "wal"], "{what}");
    }
}
