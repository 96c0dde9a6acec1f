//! Unit tests of plan, apply and recover on a writable copy of the real kubeadm v1.16 tree.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::certs::error::ErrorClass;
use crate::certs::inventory::PkiLayout;
use crate::certs::pem::KeyFormat;

/// A writable copy of the real kubeadm v1.16 `/etc/kubernetes` (RSA 2048, PKCS#1; every leaf
/// expires 2020-12-25, the CAs 2029-12-23).
fn fixture() -> (tempfile::TempDir, PkiLayout) {
    crate::certs::testpki::kubeadm_v1_16_copy()
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn names(v: &[PlannedCert]) -> Vec<&str> {
    v.iter().map(|p| p.name.as_str()).collect()
}

fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == BACKUP_DIR_NAME) {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

const LEAVES: [&str; 10] = [
    "admin.conf",
    "apiserver",
    "apiserver-etcd-client",
    "apiserver-kubelet-client",
    "controller-manager.conf",
    "etcd-healthcheck-client",
    "etcd-peer",
    "etcd-server",
    "front-proxy-client",
    "scheduler.conf",
];

#[test]
fn within_selects_by_expiry_and_names_regardless() {
    let (_d, layout) = fixture();
    let mut o = RenewOptions::new(layout);
    o.now = at("2020-12-01T00:00:00Z");
    o.within = Some(Duration::days(30));
    let p = plan(&o).unwrap();
    assert_eq!(names(&p.renew), LEAVES);
    assert!(p.renew.iter().all(|c| c.selected == Selected::Expiring));
    o.within = Some(Duration::days(7));
    // A plan holds the cert-dir's lock: the next one needs it.
    drop(p);
    let p = plan(&o).unwrap();
    assert!(p.renew.is_empty());
    assert!(p
        .skipped
        .iter()
        .any(|s| s.name == "apiserver" && s.reason.contains("--within")));
    o.names = vec!["apiserver".into(), "etcd-peer".into()];
    // A plan holds the cert-dir's lock: the next one needs it.
    drop(p);
    let p = plan(&o).unwrap();
    assert_eq!(names(&p.renew), ["apiserver", "etcd-peer"]);
    assert!(p.renew.iter().all(|c| c.selected == Selected::Named));
    // Files: each key before its certificate, keys 0600, backups under pki-backup.
    let roles: Vec<FileRole> = p.files.iter().map(|f| f.role).collect();
    assert_eq!(
        roles,
        [FileRole::Key, FileRole::Cert, FileRole::Key, FileRole::Cert]
    );
    assert_eq!(p.files[0].mode, "0600");
    assert!(p.files[3]
        .backup
        .ends_with("pki-backup/20201201T000000Z/pki/etcd/peer.crt"));
    // Validity: 365 days, or the CA's expiry when that comes first (with a warning).
    assert_eq!(p.renew[0].not_after, at("2021-12-01T00:00:00Z"));
    o.validity = Duration::days(3650);
    // A plan holds the cert-dir's lock: the next one needs it.
    drop(p);
    let p = plan(&o).unwrap();
    assert!(p.renew.iter().all(|c| c.capped_by_ca));
    assert_eq!(p.warnings.len(), 2);
    assert!(p.warnings[1].contains("etcd-ca"), "{:?}", p.warnings);
}

#[test]
fn cas_kubelet_conf_and_external_cas_are_refused() {
    let (_d, layout) = fixture();
    let mut o = RenewOptions::new(layout.clone());
    o.names = vec![
        "ca".into(),
        "kubelet.conf".into(),
        "front-proxy-client".into(),
    ];
    let p = plan(&o).unwrap();
    assert_eq!(names(&p.renew), ["front-proxy-client"]);
    let refused: Vec<&str> = p.refused.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(refused, ["ca", "kubelet.conf"]);
    std::fs::remove_file(layout.cert_dir.join("front-proxy-ca.key")).unwrap();
    // A plan holds the cert-dir's lock: the next one needs it.
    drop(p);
    let p = plan(&o).unwrap();
    assert!(p.renew.is_empty());
    let r = p
        .refused
        .iter()
        .find(|r| r.name == "front-proxy-client")
        .unwrap();
    assert!(
        r.reason.contains("front-proxy-ca") && r.reason.contains("external CA"),
        "{}",
        r.reason
    );
    // The default (all) renews everything else.
    o.names.clear();
    // A plan holds the cert-dir's lock: the next one needs it.
    drop(p);
    let p = plan(&o).unwrap();
    assert_eq!(p.renew.len(), 9);
    assert_eq!(p.refused.len(), 1);
}

#[test]
fn unusable_files_are_one_line_each() {
    let (_d, layout) = fixture();
    std::fs::write(layout.cert_dir.join("apiserver.crt"), "garbage").unwrap();
    std::fs::copy(
        layout.cert_dir.join("etcd/peer.key"),
        layout.cert_dir.join("etcd/server.key"),
    )
    .unwrap();
    std::fs::copy(
        layout.cert_dir.join("ca.key"),
        layout.cert_dir.join("front-proxy-ca.key"),
    )
    .unwrap();
    let e = plan(&RenewOptions::new(layout.clone())).unwrap_err();
    assert_eq!(e.class(), ErrorClass::BadInput);
    let lines = e.lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].contains("apiserver.crt"), "{lines:?}");
    assert!(
        lines[1].starts_with("etcd-server: the private key"),
        "{lines:?}"
    );
    assert!(
        lines[2].starts_with("CA front-proxy-ca: the key"),
        "{lines:?}"
    );
    let missing = PkiLayout::new(layout.cert_dir.join("nope"), &layout.kubeconfig_dir);
    let e = plan(&RenewOptions::new(missing)).unwrap_err();
    assert_eq!(e.class(), ErrorClass::BadInput);
}

#[tokio::test]
async fn apply_renews_verifies_and_backs_up() {
    let (_d, layout) = fixture();
    let root = layout.kubeconfig_dir.clone();
    let before = tree(&root);
    let p = plan(&RenewOptions::new(layout.clone())).unwrap();
    assert_eq!(names(&p.renew), LEAVES);
    let backup_dir = p.backup_dir.clone();
    let r = apply(p, ApplyOptions::default()).await.unwrap();
    assert_eq!(r.backup_dir.as_ref(), Some(&backup_dir));
    assert_eq!(r.renewed.len(), 10);
    assert!(r.renewed.iter().all(|c| c.verified && c.new_key));
    assert!(r
        .renewed
        .iter()
        .all(|c| c.key_format == KeyFormat::Pkcs1 && c.key_algorithm == "RSA-2048"));
    let after = tree(&root);
    for (path, old) in &before {
        let changed = after[path] != *old;
        assert_eq!(
            changed,
            r.files_written.contains(path),
            "{}",
            path.display()
        );
    }
    let journal: Journal =
        serde_json::from_slice(&std::fs::read(backup_dir.join(JOURNAL_FILE)).unwrap()).unwrap();
    assert_eq!(journal.state, JournalState::Done);
    for f in &journal.files {
        assert_eq!(
            std::fs::read(backup_dir.join(&f.backup)).unwrap(),
            before[&f.path]
        );
    }
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&backup_dir), 0o700);
    assert_eq!(mode(&layout.cert_dir.join("apiserver.key")), 0o600);
    // A plan made before the files changed is not applied over them.
    let stale = plan(&RenewOptions::new(layout.clone())).unwrap();
    std::fs::write(
        layout.cert_dir.join("apiserver.crt"),
        &before[&layout.cert_dir.join("apiserver.crt")],
    )
    .unwrap();
    let e = apply(stale, ApplyOptions::default()).await.unwrap_err();
    assert!(e.to_string().contains("changed since"), "{e}");
}

#[tokio::test]
async fn a_stopped_run_is_refused_until_recovered() {
    let (_d, layout) = fixture();
    let root = layout.kubeconfig_dir.clone();
    let before = tree(&root);
    let p = plan(&RenewOptions::new(layout.clone())).unwrap();
    let opts = ApplyOptions {
        hook: Some(TestHook::StopAfterWrites(3)),
    };
    apply(p, opts).await.unwrap_err();
    // admin.conf, apiserver.key, apiserver.crt are new; the rest old.
    let now = tree(&root);
    let changed: Vec<&PathBuf> = before.keys().filter(|k| now[*k] != before[*k]).collect();
    assert_eq!(changed.len(), 3, "{changed:?}");
    let e = plan(&RenewOptions::new(layout.clone())).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Refused);
    assert!(e.to_string().contains("replaced 3 of 17 files"), "{e}");
    let rp = plan_recover(&layout).unwrap().unwrap();
    assert_eq!(rp.files.iter().filter(|f| f.restore).count(), 3);
    let rr = recover(&rp).unwrap();
    assert_eq!(rr.restored.len(), 3);
    assert_eq!(tree(&root), before);
    // While the recovery plan holds the lock, neither a renewal nor another recovery starts.
    let e = plan(&RenewOptions::new(layout.clone())).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Refused);
    assert!(matches!(e, RenewError::Locked { .. }), "{e}");
    drop(rp);
    assert!(plan_recover(&layout).unwrap().is_none());
    assert_eq!(plan(&RenewOptions::new(layout)).unwrap().renew.len(), 10);
}

/// The file work runs on the blocking pool: on a runtime with one thread, a task beside `apply` still
/// runs while `apply` waits in the middle of its replacements. If `apply` held that thread, the task
/// that lets it go on could never run; the test then frees it and fails instead of hanging.
#[test]
fn apply_leaves_the_runtime_thread_free() {
    use std::io::Write;
    let (_d, layout) = fixture();
    let fifo_dir = tempfile::tempdir().unwrap();
    let fifo = fifo_dir.path().join("pause");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let p = plan(&RenewOptions::new(layout)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let release_fifo = fifo.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let result = rt.block_on(async {
            let opts = ApplyOptions {
                hook: Some(TestHook::PauseAfterWrites(1, release_fifo.clone())),
            };
            let release = async {
                // Opens once apply has opened the FIFO to wait on it, then lets it go on.
                let mut f = tokio::fs::OpenOptions::new()
                    .write(true)
                    .open(&release_fifo)
                    .await
                    .unwrap();
                tokio::io::AsyncWriteExt::write_all(&mut f, b"x")
                    .await
                    .unwrap();
            };
            tokio::join!(apply(p, opts), release).0
        });
        let _ = tx.send(result.map(|r| r.renewed.len()));
    });
    match rx.recv_timeout(std::time::Duration::from_secs(120)) {
        Ok(renewed) => assert_eq!(renewed.unwrap(), 10),
        Err(_) => {
            let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            let _ = f.write_all(b"x");
            panic!("apply held the runtime's only thread while it waited");
        }
    }
}
