//! `cpkeep snapshot status` and `snapshot verify`: the same numbers as etcdutl, on committed fixtures
//! made by real etcd 3.4 and 3.5 and on fresh snapshots; corrupt files are BAD (exit 2), never a panic.

use std::path::{Path, PathBuf};

use crate::harness::{conn_args, cpkeep, etcdutl_status, files_ending, fill, sandbox, Etcd};

fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("snapshot.db").is_file() && p.join("snapshot.status.json").is_file())
        .collect();
    out.sort();
    assert!(
        out.len() >= 5,
        "expected the etcd fixtures under {}",
        root.display()
    );
    out
}

async fn status(file: &Path) -> serde_json::Value {
    let run = cpkeep(&args(&[
        "snapshot",
        "status",
        "-o",
        "json",
        &file.display().to_string(),
    ]))
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.json()
}

#[tokio::test]
async fn status_equals_etcdutl_on_every_fixture() {
    for dir in fixtures() {
        let got = status(&dir.join("snapshot.db")).await;
        let want: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("snapshot.status.json")).unwrap())
                .unwrap();
        for field in ["hash", "revision", "totalKey", "totalSize"] {
            assert_eq!(got[field], want[field], "{field} of {}", dir.display());
        }
        let run = cpkeep(&args(&[
            "snapshot",
            "verify",
            &dir.join("snapshot.db").display().to_string(),
        ]))
        .await;
        assert_eq!(run.code, 0, "{}: {}", dir.display(), run.stdout);
        assert!(run.stdout.contains("GOOD") && run.stdout.contains("sha256 trailer verified"));
    }
}

async fn fresh_snapshot_status_equals_etcdutl(v: Etcd) {
    let sb = sandbox(v, 1).await;
    fill(&sb, 800, 700).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.db");
    let mut a = args(&["snapshot", "save", &file.display().to_string()]);
    a.extend(conn_args(&sb, &sb.endpoints(), "3s"));
    assert_eq!(cpkeep(&a).await.code, 0);
    let got = status(&file).await;
    let want = etcdutl_status(&file);
    for field in ["hash", "revision", "totalKey", "totalSize"] {
        assert_eq!(got[field], want[field], "{field}");
    }
    // A raw db (no trailer), as found in member/snap/db, is readable and said to have no trailer.
    let raw = dir.path().join("raw.db");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&raw, &bytes[..bytes.len() - 32]).unwrap();
    let run = cpkeep(&args(&[
        "snapshot",
        "verify",
        "-o",
        "json",
        &raw.display().to_string(),
    ]))
    .await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.json()["trailer"], "absent");
    assert_eq!(status(&raw).await["hash"], want["hash"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v35_fresh_snapshot_status_equals_etcdutl() {
    fresh_snapshot_status_equals_etcdutl(Etcd::V35).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v34_fresh_snapshot_status_equals_etcdutl() {
    fresh_snapshot_status_equals_etcdutl(Etcd::V34).await
}

#[tokio::test]
async fn corrupt_files_are_bad_not_panics() {
    let src = fixtures()
        .into_iter()
        .find(|d| d.ends_with("etcd-3.5.30-tree"))
        .unwrap()
        .join("snapshot.db");
    let bytes = std::fs::read(&src).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("trailer", {
            let mut b = bytes.clone();
            let n = b.len();
            b[n - 1] ^= 0xff;
            b
        }),
        ("meta pages", {
            let mut b = bytes.clone();
            b[16..80].fill(0xee);
            b[4096 + 16..4096 + 80].fill(0xee);
            b
        }),
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
    ];
    for (what, data) in cases {
        let f = dir.path().join(format!("{what}.db"));
        std::fs::write(&f, &data).unwrap();
        let before = std::fs::read(&f).unwrap();
        let run = cpkeep(&args(&["snapshot", "verify", &f.display().to_string()])).await;
        assert_eq!(run.code, 2, "{what}: {}\n{}", run.stdout, run.stderr);
        assert!(run.stdout.contains("BAD"), "{what}: {}", run.stdout);
        assert!(!run.stderr.contains("panicked"), "{what}: {}", run.stderr);
        assert_eq!(
            std::fs::read(&f).unwrap(),
            before,
            "verify modified its input"
        );
    }
    // A single-byte flip at 40 places across the file (the trailer's last byte too): every one
    // breaks etcd's sha256 trailer, so verify says BAD (exit 2) every time; status, which does
    // not check the trailer, reads the numbers (0) or says the db is damaged (2); neither panics.
    let mut places: Vec<usize> = (0..bytes.len()).step_by(bytes.len() / 40).collect();
    places.push(bytes.len() - 1);
    for i in places {
        let mut b = bytes.clone();
        b[i] ^= 0x41;
        let f = dir.path().join("flip.db");
        std::fs::write(&f, &b).unwrap();
        let run = cpkeep(&args(&["snapshot", "verify", &f.display().to_string()])).await;
        assert_eq!(run.code, 2, "flip at {i}: {}\n{}", run.stdout, run.stderr);
        assert!(run.stdout.contains("BAD"), "flip at {i}: {}", run.stdout);
        let run = cpkeep(&args(&["snapshot", "status", &f.display().to_string()])).await;
        assert!(
            run.code == 0 || run.code == 2,
            "flip at {i}: code {}: {}",
            run.code,
            run.stderr
        );
        assert!(
            !run.stderr.contains("panicked"),
            "flip at {i}: {}",
            run.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_snapshots_are_verified_against_their_manifest() {
    let sb = sandbox(Etcd::V35, 1).await;
    fill(&sb, 300, 300).await;
    let store = tempfile::tempdir().unwrap();
    let s = store.path().display().to_string();
    let mut a = args(&["backup", "-o", "json", "--store", &s]);
    a.extend(conn_args(&sb, &sb.endpoints(), "3s"));
    let run = cpkeep(&a).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let m = run.json()["manifest"].clone();
    let run = cpkeep(&args(&[
        "snapshot", "verify", "latest", "--store", &s, "--deep", "-o", "json",
    ]))
    .await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    let j = run.json();
    assert!(j["manifest_checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c.as_str().unwrap().contains("matches the manifest")));
    assert!(
        j["deep"]["resources"]["configmaps"]["keys"]
            .as_u64()
            .unwrap()
            >= 299,
        "{j}"
    );
    let st = cpkeep(&args(&[
        "snapshot", "status", "latest", "--store", &s, "-o", "json",
    ]))
    .await
    .json();
    assert_eq!(st["revision"], m["revision"]);
    // Tampering with the stored object makes it BAD.
    let obj = store.path().join(m["object_key"].as_str().unwrap());
    let mut b = std::fs::read(&obj).unwrap();
    let n = b.len() / 2;
    b[n] ^= 1;
    std::fs::write(&obj, &b).unwrap();
    let run = cpkeep(&args(&["snapshot", "verify", "latest", "--store", &s])).await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    run.assert_one_clear_line();
}

/// Input that is no snapshot at all is unusable (exit 3) with restore's words, for status and
/// verify alike, never BAD and never a Debug dump; the input is left as it was.
#[tokio::test]
async fn what_is_not_a_snapshot_is_unusable_input() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "this is not a snapshot, it is a long enough text file\n",
    )
    .unwrap();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let folder = dir.path().join("a-directory");
    std::fs::create_dir(&folder).unwrap();
    let missing = dir.path().join("missing.db");
    for (file, says) in [
        (&empty, "the file is empty"),
        (&text, "not an etcd snapshot"),
        (&garbage, "not an etcd snapshot"),
        (&folder, "it is a directory"),
        (&missing, "no such file"),
    ] {
        for cmd in ["status", "verify"] {
            let run = cpkeep(&args(&["snapshot", cmd, &file.display().to_string()])).await;
            assert_eq!(
                run.code,
                3,
                "{cmd} {}: {}\n{}",
                file.display(),
                run.stdout,
                run.stderr
            );
            let line = run.assert_one_clear_line();
            assert!(
                line.contains(&file.display().to_string()) && line.contains(says),
                "{cmd}: {line:?} should name the file and say {says:?}"
            );
            assert!(!run.stdout.contains("BAD"), "{cmd}: {}", run.stdout);
        }
    }
    assert_eq!(std::fs::read(&empty).unwrap(), b"");
    assert_eq!(std::fs::read(&garbage).unwrap(), vec![0x5a; 8192]);
}

/// What `cpkeep backup` stores (`<id>.db.zst`, `<id>.db.zst.age`) is read by content, as restore
/// reads it: GOOD with the numbers of the raw snapshot; an encrypted one asks for --identity
/// (exit 3) and is GOOD with it; a damaged one is BAD (exit 2), never unusable input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_objects_are_read_by_content() {
    use age::secrecy::ExposeSecret;
    let sb = sandbox(Etcd::V35, 1).await;
    fill(&sb, 300, 300).await;
    let dir = tempfile::tempdir().unwrap();
    let identity = age::x25519::Identity::generate();
    let key = dir.path().join("key.txt");
    std::fs::write(&key, format!("{}\n", identity.to_string().expose_secret())).unwrap();
    let key = key.display().to_string();
    let plain_store = dir.path().join("plain");
    let age_store = dir.path().join("age");
    for (store, extra) in [
        (&plain_store, vec![]),
        (
            &age_store,
            vec!["--encrypt-to".to_string(), identity.to_public().to_string()],
        ),
    ] {
        let mut a = args(&["backup", "--store", &store.display().to_string()]);
        a.extend(extra);
        a.extend(conn_args(&sb, &sb.endpoints(), "3s"));
        let run = cpkeep(&a).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    // The numbers of the raw snapshot `snapshot get` writes of the same object.
    let raw = dir.path().join("raw.db");
    let run = cpkeep(&args(&[
        "snapshot",
        "get",
        "latest",
        "--store",
        &plain_store.display().to_string(),
        "-O",
        &raw.display().to_string(),
    ]))
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let want = status(&raw).await;
    let zst = files_ending(&plain_store, ".db.zst")
        .pop()
        .expect("a .db.zst object");
    let age = files_ending(&age_store, ".db.zst.age")
        .pop()
        .expect("a .db.zst.age object");
    let zst_s = zst.display().to_string();
    let age_s = age.display().to_string();

    let raw_age = dir.path().join("raw-age.db");
    let run = cpkeep(&args(&[
        "snapshot",
        "get",
        "latest",
        "--store",
        &age_store.display().to_string(),
        "--identity",
        &key,
        "-O",
        &raw_age.display().to_string(),
    ]))
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let want_age = status(&raw_age).await;
    for (file, extra, want) in [
        (&zst_s, vec![], &want),
        (&age_s, vec!["--identity", key.as_str()], &want_age),
    ] {
        let mut a = args(&["snapshot", "status", "-o", "json", file]);
        a.extend(args(&extra));
        let run = cpkeep(&a).await;
        assert_eq!(run.code, 0, "{file}: {}", run.stderr);
        let got = run.json();
        for field in ["hash", "revision", "totalKey", "totalSize"] {
            assert_eq!(got[field], want[field], "{field} of {file}");
        }
        let mut a = args(&["snapshot", "verify", file]);
        a.extend(args(&extra));
        let run = cpkeep(&a).await;
        assert_eq!(run.code, 0, "{file}: {}\n{}", run.stdout, run.stderr);
        assert!(
            run.stdout.contains("GOOD") && run.stdout.contains("sha256 trailer verified"),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("checked decoded"), "{}", run.stdout);
    }
    // Encrypted, without an identity: what to do, exit 3.
    for cmd in ["status", "verify"] {
        let run = cpkeep(&args(&["snapshot", cmd, &age_s])).await;
        assert_eq!(run.code, 3, "{cmd}: {}\n{}", run.stdout, run.stderr);
        let line = run.assert_one_clear_line();
        assert!(
            line.contains("age-encrypted") && line.contains("--identity"),
            "{line}"
        );
    }
    // Damaged in the middle: BAD for verify, exit 2 for status; the input is not touched.
    let bytes = std::fs::read(&zst).unwrap();
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let damaged = dir.path().join("damaged.db.zst");
    std::fs::write(&damaged, &flipped).unwrap();
    let run = cpkeep(&args(&[
        "snapshot",
        "verify",
        &damaged.display().to_string(),
    ]))
    .await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("BAD"), "{}", run.stdout);
    let run = cpkeep(&args(&[
        "snapshot",
        "status",
        &damaged.display().to_string(),
    ]))
    .await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.assert_one_clear_line().contains("damaged"));
    assert_eq!(std::fs::read(&damaged).unwrap(), flipped);
    assert_eq!(std::fs::read(&zst).unwrap(), bytes);
    // Wherever the flip lands, status never reports numbers from altered data: a flip inside a
    // zstd block may decode without a zstd error (only the trailer catches it), and a flip in bits
    // zstd does not use decodes to the very same db (then the same answer is right).
    let good = cpkeep(&args(&["snapshot", "status", &zst.display().to_string()])).await;
    assert_eq!(good.code, 0, "{}", good.stderr);
    for eighth in 1..8 {
        let mut flipped = bytes.clone();
        let at = flipped.len() * eighth / 8;
        flipped[at] ^= 0x08;
        std::fs::write(&damaged, &flipped).unwrap();
        let run = cpkeep(&args(&[
            "snapshot",
            "status",
            &damaged.display().to_string(),
        ]))
        .await;
        match run.code {
            0 => assert_eq!(run.stdout, good.stdout, "flip at {eighth}/8"),
            2 => assert!(run.assert_one_clear_line().contains("damaged")),
            c => panic!(
                "flip at {eighth}/8: exit {c}\n{}\n{}",
                run.stdout, run.stderr
            ),
        }
    }
}
