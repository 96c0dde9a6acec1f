//! The container image of scripts/image.sh: built twice from one static binary (same digest), unpacked
//! with umoci, its config checked (non-root numeric user, entrypoint, labels), and `cpkeep version` and
//! `cpkeep certs check` run inside the unpacked root with chroot, as the image's user, with nothing
//! else in that root: no shell, no libc, no dynamic loader. Needs root, as CI runs (buildah, chroot).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cpkeep::certs::testpki::{TestPki, TestPkiOptions};
use cpkeep::certs::PkiLayout;
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use crate::harness::tool;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs scripts/image.sh into `out` and returns the digest it prints. The static release build is
/// incremental: the first call of a test run compiles (scripts/test.sh has done it before the suite),
/// the second finds the binary fresh.
fn build_image(out: &Path) -> String {
    // The default epoch, whatever the machine running the tests exports: the test checks the times.
    let run = run_ok(
        Command::new(repo().join("scripts/image.sh"))
            .arg(out)
            .env_remove("SOURCE_DATE_EPOCH"),
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let digest = last
        .strip_prefix("digest ")
        .unwrap_or_else(|| panic!("image.sh's last line is not `digest sha256:...`: {stdout:?}"));
    assert!(digest.starts_with("sha256:"), "{digest}");
    digest.to_string()
}

/// A JSON file.
fn json_file(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A blob of an OCI layout by digest, as JSON.
fn blob(layout: &Path, digest: &str) -> Value {
    let hex = digest.strip_prefix("sha256:").unwrap();
    json_file(&layout.join("blobs/sha256").join(hex))
}

/// Every path under `root`, relative, directories included.
fn tree(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, into: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            into.insert(path.strip_prefix(root).unwrap().display().to_string());
            if path.symlink_metadata().unwrap().is_dir() {
                walk(root, &path, into);
            }
        }
    }
    let mut all = BTreeSet::new();
    walk(root, root, &mut all);
    all
}

/// coreutils' chroot, by its path: the child's environment is emptied, so no PATH finds it.
fn chroot() -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join("chroot"))
        .find(|p| p.is_file());
    found.expect("chroot not found (Debian: coreutils)")
}

/// Runs `/cpkeep args` inside `rootfs` with chroot as `user` (`uid:gid`), with an empty environment,
/// as a container runtime would start the entrypoint.
fn in_root(rootfs: &Path, user: &str, args: &[&str]) -> Output {
    Command::new(chroot())
        .arg(format!("--userspec={user}"))
        .arg(rootfs)
        .arg("/cpkeep")
        .args(args)
        .env_clear()
        .output()
        .expect("run chroot")
}

#[test]
fn the_image_is_reproducible_and_runs_from_scratch_with_nothing_else() {
    let umoci = tool("umoci");
    let dir = tempfile::tempdir().unwrap();

    // Two builds of the same binary: the same image, byte for byte in every blob the digest covers.
    let first = build_image(&dir.path().join("first.tar"));
    let second = build_image(&dir.path().join("second.tar"));
    assert_eq!(first, second, "two builds of one binary differ");

    // The archive is an OCI layout; its index names the manifest image.sh printed.
    let layout = dir.path().join("layout");
    std::fs::create_dir(&layout).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(dir.path().join("first.tar"))
            .arg("-C")
            .arg(&layout),
    );
    let index = json_file(&layout.join("index.json"));
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index}");
    assert_eq!(manifests[0]["digest"], first.as_str());
    let tag = manifests[0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap();
    assert_eq!(tag, env!("CARGO_PKG_VERSION"));

    // The config: a numeric non-root user (runAsNonRoot can verify it), the binary as entrypoint,
    // the OCI labels, and the fixed timestamp.
    let manifest = blob(&layout, &first);
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        1,
        "{manifest}"
    );
    let config = blob(&layout, manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");
    let c = &config["config"];
    assert_eq!(c["User"], "65532:65532");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/cpkeep"]));
    assert!(c.get("Cmd").is_none_or(Value::is_null), "{c}");
    let labels = &c["Labels"];
    assert_eq!(labels["org.opencontainers.image.title"], "cpkeep");
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    assert!(labels.get("io.buildah.version").is_none(), "{labels}");
    let user = c["User"].as_str().unwrap();
    let uid: u32 = user.split(':').next().unwrap().parse().unwrap();
    assert_ne!(uid, 0);

    // Unpacked, the root holds exactly the binary, the CA bundle, passwd/group/nsswitch and /tmp.
    let bundle = dir.path().join("bundle");
    run_ok(
        Command::new(&umoci)
            .args(["unpack", "--image"])
            .arg(format!("{}:{tag}", layout.display()))
            .arg(&bundle),
    );
    let rootfs = bundle.join("rootfs");
    let expected: BTreeSet<String> = [
        "cpkeep",
        "etc",
        "etc/group",
        "etc/nsswitch.conf",
        "etc/passwd",
        "etc/ssl",
        "etc/ssl/certs",
        "etc/ssl/certs/ca-certificates.crt",
        "tmp",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(tree(&rootfs), expected);
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with(&format!("cpkeep:x:{uid}:"))),
        "{passwd}"
    );
    let bundle_pem =
        std::fs::read_to_string(rootfs.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert!(bundle_pem.matches("-----BEGIN CERTIFICATE-----").count() > 100);
    // umoci's runtime config carries the same process the image config describes.
    let runtime = json_file(&bundle.join("config.json"));
    assert_eq!(runtime["process"]["user"]["uid"], uid);
    assert_eq!(runtime["process"]["args"], serde_json::json!(["/cpkeep"]));

    // `cpkeep version`: the static binary starts with no loader and no libc beside it.
    let out = in_root(&rootfs, user, &["version"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("cpkeep {} (x86_64, release)\n", env!("CARGO_PKG_VERSION"))
    );

    // `cpkeep certs check` of a kubeadm PKI placed in the root, readable by the image's user (as the
    // DaemonSet's capabilities make kubeadm's files readable): one certificate near expiry is the one
    // reason, every other is judged OK.
    let layout_pki = PkiLayout::new(
        rootfs.join("etc/kubernetes/pki"),
        rootfs.join("etc/kubernetes"),
    );
    let pki = TestPki::generate(&layout_pki, TestPkiOptions::default()).unwrap();
    let now = OffsetDateTime::now_utc();
    pki.reissue(
        "etcd-peer",
        now - Duration::days(360),
        now + Duration::days(5),
    )
    .unwrap();
    run_ok(
        Command::new("chown")
            .args(["-R", user])
            .arg(rootfs.join("etc/kubernetes")),
    );
    let out = in_root(
        &rootfs,
        user,
        &[
            "certs",
            "check",
            "--cert-dir",
            "/etc/kubernetes/pki",
            "--kubeconfig-dir",
            "/etc/kubernetes",
            "-o",
            "json",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stderr}"));
    assert_eq!(v["verdict"], "CRITICAL", "{v}");
    assert_eq!(
        v["reasons"].as_array().unwrap().len(),
        1,
        "{}",
        v["reasons"]
    );
    let certs = v["certificates"].as_array().unwrap();
    // kubeadm's eleven with super-admin.conf, and kubelet.conf.
    assert_eq!(certs.len(), 12, "{v}");
    for c in certs {
        let want = if c["name"] == "etcd-peer" {
            "CRITICAL"
        } else {
            "OK"
        };
        assert_eq!(c["status"], want, "{c}");
        assert_eq!(c["keyMatches"], true, "{c}");
    }
    let cas = v["certificateAuthorities"].as_array().unwrap();
    assert_eq!(cas.len(), 3, "{v}");
    for c in cas {
        assert_eq!(c["status"], "OK", "{c}");
    }
}
