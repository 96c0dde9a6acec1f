//! `cpkeep bootstrap plan` and `bootstrap example` end to end, through the binary: the bundle for
//! kubeadm's HA guide example, its CAs checked by real openssl (discovery hash, self-signed roots,
//! CA:TRUE and keyCertSign) and read by `cpkeep certs check`, JSON output equal to plan.json, and
//! bad input as one clear line with exit 3 and nothing written.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::{cpkeep, tool, Run};

/// The HA guide's example with a worker, a CNI manifest and explicit certificate settings.
fn guide() -> String {
    format!(
        "{}workers: [{{name: w1, address: 192.168.1.40}}]\ncni: {{manifest: calico.yaml}}\n\
         certificates: {{keyAlgorithm: RSA-2048, validity: 365d, caValidity: 3650d, distribution: upload-certs}}\n",
        crate::harness::GUIDE_INVENTORY
    )
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn setup(inventory: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("calico.yaml"),
        "apiVersion: v1\nkind: List\nitems: []\n",
    )
    .unwrap();
    let inv = tmp.path().join("cluster.yaml");
    std::fs::write(&inv, inventory).unwrap();
    let out = tmp.path().join("bundle");
    (tmp, inv, out)
}

async fn plan(inv: &Path, out: &Path, extra: &[&str]) -> Run {
    let mut a = s(&["bootstrap", "plan", "--inventory"]);
    a.push(inv.display().to_string());
    a.push("--out".into());
    a.push(out.display().to_string());
    a.extend(s(extra));
    cpkeep(&a).await
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new(tool("openssl")).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | sha256sum, as kubeadm's docs
/// compute the discovery hash.
fn openssl_discovery_hash(ca: &Path) -> String {
    let pubkey = openssl(&[
        "x509",
        "-pubkey",
        "-noout",
        "-in",
        &ca.display().to_string(),
    ]);
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), pubkey).unwrap();
    let der = Command::new(tool("openssl"))
        .args(["pkey", "-pubin", "-outform", "der", "-in"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(der.status.success());
    let sum = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let mut child = sum;
    child.stdin.take().unwrap().write_all(&der.stdout).unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "sha256:{}",
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
    )
}

#[tokio::test]
async fn the_guides_example_makes_a_complete_verified_bundle() {
    let (_tmp, inv, out) = setup(&guide());
    let run = plan(&inv, &out, &["-o", "json"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let printed = run.json();
    let file: Value =
        serde_json::from_slice(&std::fs::read(out.join("plan.json")).unwrap()).unwrap();
    assert_eq!(printed, file, "-o json prints plan.json");

    // Every file the plan lists exists with its sha256; nothing else is in the bundle.
    let mut listed = Vec::new();
    for f in file["files"].as_array().unwrap() {
        let path = f["path"].as_str().unwrap();
        let bytes = std::fs::read(out.join(path)).unwrap();
        use sha2::Digest;
        assert_eq!(
            f["sha256"].as_str().unwrap(),
            hex::encode(sha2::Sha256::digest(&bytes)),
            "{path}"
        );
        listed.push(path.to_string());
    }
    for want in [
        "pki/ca.crt",
        "pki/ca.key",
        "pki/front-proxy-ca.crt",
        "pki/front-proxy-ca.key",
        "pki/etcd/ca.crt",
        "pki/etcd/ca.key",
        "pki/sa.key",
        "pki/sa.pub",
        "secrets/bootstrap-token",
        "secrets/certificate-key",
        "nodes/cp1/kubeadm.yaml",
        "nodes/cp2/kubeadm.yaml",
        "nodes/cp3/kubeadm.yaml",
        "nodes/w1/kubeadm.yaml",
        "nodes/cp1/haproxy.cfg",
        "nodes/cp1/keepalived.conf",
        "nodes/cp1/check_apiserver.sh",
        "nodes/cp1/manifests/haproxy.yaml",
        "nodes/cp1/manifests/keepalived.yaml",
        "RUNBOOK.md",
    ] {
        assert!(
            listed.iter().any(|p| p == want),
            "{want} missing from plan.json"
        );
    }
    assert!(
        !out.join("nodes/w1/haproxy.cfg").exists(),
        "workers run no load balancer"
    );

    // The discovery hash is openssl's, and every join pins it.
    let hash = file["caCertHash"].as_str().unwrap();
    assert_eq!(hash, openssl_discovery_hash(&out.join("pki/ca.crt")));
    for n in ["cp2", "cp3", "w1"] {
        let cfg = std::fs::read_to_string(out.join(format!("nodes/{n}/kubeadm.yaml"))).unwrap();
        assert!(cfg.contains(hash), "{n} pins the CA");
    }
    // The CAs are self-signed roots openssl verifies, with CA:TRUE and keyCertSign.
    for ca in ["ca", "front-proxy-ca", "etcd/ca"] {
        let crt = out.join(format!("pki/{ca}.crt")).display().to_string();
        assert!(
            openssl(&["verify", "-CAfile", &crt, &crt]).contains(": OK"),
            "{ca}"
        );
        let text = openssl(&["x509", "-noout", "-text", "-in", &crt]);
        assert!(text.contains("CA:TRUE"), "{ca}: {text}");
        assert!(text.contains("Certificate Sign"), "{ca}: {text}");
        let key = out.join(format!("pki/{ca}.key")).display().to_string();
        let from_key = openssl(&["pkey", "-in", &key, "-pubout"]);
        let from_crt = openssl(&["x509", "-noout", "-pubkey", "-in", &crt]);
        assert_eq!(
            from_key, from_crt,
            "{ca}: the key belongs to the certificate"
        );
    }
    // The token and the certificate key have kubeadm's formats.
    let token = std::fs::read_to_string(out.join("secrets/bootstrap-token")).unwrap();
    let token = token.trim();
    assert!(token.len() == 23 && token.as_bytes()[6] == b'.', "{token}");
    let key = std::fs::read_to_string(out.join("secrets/certificate-key")).unwrap();
    assert_eq!(key.trim().len(), 64);
    assert!(
        !run.stdout.contains(token) && !run.stderr.contains(token),
        "no secret printed"
    );
    assert!(!std::fs::read_to_string(out.join("RUNBOOK.md"))
        .unwrap()
        .contains(token));

    // certs check reads the CAs and the service-account pair.
    let kc = tempfile::tempdir().unwrap();
    let check = cpkeep(&s(&[
        "certs",
        "check",
        "--cert-dir",
        &out.join("pki").display().to_string(),
        "--kubeconfig-dir",
        &kc.path().display().to_string(),
        "-o",
        "json",
    ]))
    .await;
    let report = check.json();
    let cas = report["certificateAuthorities"].as_array().unwrap();
    assert_eq!(cas.len(), 3);
    for ca in cas {
        assert_eq!(ca["status"], "OK", "{ca}");
        assert_eq!(ca["keyMatches"], true, "{ca}");
        assert!(
            ca["residualTime"].as_u64().unwrap() > 9 * 365 * 24 * 3600,
            "{ca}"
        );
    }
    assert_eq!(report["serviceAccount"]["keyMatches"], true);
}

#[tokio::test]
async fn a_second_run_changes_nothing_and_the_table_says_so() {
    let (_tmp, inv, out) = setup(&guide());
    assert_eq!(plan(&inv, &out, &[]).await.code, 0);
    let before: Vec<u8> = std::fs::read(out.join("pki/ca.key")).unwrap();
    let run = plan(&inv, &out, &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("0 created, 0 updated, 0 removed"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("tolerates 1 failure"), "{}", run.stdout);
    assert_eq!(std::fs::read(out.join("pki/ca.key")).unwrap(), before);
    // --show-secrets shows them, on the table only.
    let shown = plan(&inv, &out, &["--show-secrets"]).await;
    let token = std::fs::read_to_string(out.join("secrets/bootstrap-token")).unwrap();
    assert!(shown.stdout.contains(token.trim()));
}

#[tokio::test]
async fn bad_inventories_are_one_clear_line_with_exit_3_and_nothing_written() {
    let cases = [
        (
            guide().replace("  - {name: cp3, address: 192.168.1.12}\n", ""),
            "controlPlane: 2 node(s) is not highly available",
        ),
        (
            guide().replace(
                "  - {name: cp3, address: 192.168.1.12}\n",
                "  - {name: cp3, address: 192.168.1.12}\n  - {name: cp4, address: 192.168.1.13}\n",
            ),
            "4 members tolerate 1 failure(s), like 3, and need 3 for quorum",
        ),
        (
            guide().replace(":8443", ":6443"),
            "line 5: controlPlaneEndpoint: port 6443 collides",
        ),
        (
            guide().replace(
                "dnsDomain: cluster.local",
                "dnsDomain: cluster.local, mtu: 1400",
            ),
            "unknown field `mtu`",
        ),
        (
            guide().replace("RSA-2048", "DSA-1024"),
            "certificates.keyAlgorithm",
        ),
        (
            guide().replace(
                "cni: {manifest: calico.yaml}",
                "cni: {manifest: missing.yaml}",
            ),
            "cni.manifest: cannot read",
        ),
    ];
    for (text, words) in cases {
        let (_tmp, inv, out) = setup(&text);
        let run = plan(&inv, &out, &[]).await;
        assert_eq!(run.code, 3, "{words}: {}", run.stderr);
        let line = run.assert_one_clear_line();
        assert!(line.contains(words), "{line:?} lacks {words:?}");
        assert!(line.contains("cluster.yaml"), "names the file: {line}");
        assert!(!out.exists(), "{words}: nothing written");
    }
    let (tmp, _, out) = setup(&guide());
    let run = plan(&tmp.path().join("nope.yaml"), &out, &[]).await;
    assert_eq!(run.code, 3);
    assert!(run.assert_one_clear_line().contains("no such file"));
    // --pki-from that is not a kubeadm pki directory.
    let (tmp, inv, out) = setup(&guide());
    let run = plan(
        &inv,
        &out,
        &["--pki-from", &tmp.path().display().to_string()],
    )
    .await;
    assert_eq!(run.code, 3);
    assert!(run.assert_one_clear_line().contains("ca.crt: is missing"));
    assert!(!out.exists());
}

#[tokio::test]
async fn example_prints_a_valid_annotated_inventory() {
    let run = cpkeep(&s(&["bootstrap", "example"])).await;
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("# "), "annotated");
    let (_tmp, inv, out) = setup(&run.stdout);
    let planned = plan(&inv, &out, &["-o", "json"]).await;
    assert_eq!(planned.code, 0, "{}", planned.stderr);
    assert_eq!(planned.json()["controlPlaneEndpoint"], "192.168.1.20:8443");
}

/// Every static pod manifest the bundle holds passes `kubernetes-validate --strict` against the
/// cluster's Kubernetes version (Kubernetes' own schemas: an unknown or misspelt field fails), in
/// both manifest-bearing load balancer modes; a manifest with a misspelt field is caught.
#[tokio::test]
async fn static_pods_pass_kubernetes_schema_validation() {
    let kube_vip = guide()
        .replace("haproxy-keepalived", "kube-vip")
        .replace(":8443", ":6443");
    let mut checked = 0;
    for (inventory, version) in [
        (guide(), "1.31.0"),
        (kube_vip.clone(), "1.31.0"),
        (kube_vip.replace("v1.31.4", "v1.28.9"), "1.28.0"),
    ] {
        let (_tmp, inv, out) = setup(&inventory);
        assert_eq!(plan(&inv, &out, &[]).await.code, 0);
        let manifests: Vec<PathBuf> = ["cp1", "cp2", "cp3"]
            .iter()
            .flat_map(|n| std::fs::read_dir(out.join("nodes").join(n).join("manifests")).unwrap())
            .map(|e| e.unwrap().path())
            .collect();
        assert!(manifests.len() >= 3, "{manifests:?}");
        for m in &manifests {
            let run = Command::new(tool("kubernetes-validate"))
                .args(["--strict", "-k", version])
                .arg(m)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&run.stdout).into_owned()
                + &String::from_utf8_lossy(&run.stderr);
            assert!(
                run.status.success() && text.contains("passed"),
                "{}: {text}",
                m.display()
            );
            checked += 1;
        }
        let bad = out.join("bad.yaml");
        std::fs::write(
            &bad,
            std::fs::read_to_string(&manifests[0])
                .unwrap()
                .replace("hostNetwork", "hostNetwerk"),
        )
        .unwrap();
        let run = Command::new(tool("kubernetes-validate"))
            .args(["--strict", "-k", version])
            .arg(&bad)
            .output()
            .unwrap();
        assert!(!run.status.success(), "a misspelt field must fail");
    }
    assert_eq!(checked, 6 + 3 + 3);
}

/// An output directory that cannot be created (its parent is not writable for the user running
/// cpkeep) is refused before any key is generated: exit 3, one line naming the parent.
#[tokio::test]
async fn an_output_directory_that_cannot_be_created_is_refused_first() {
    use std::os::unix::fs::PermissionsExt;
    let (tmp, inv, _) = setup(&guide());
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["cluster.yaml", "calico.yaml"] {
        std::fs::set_permissions(tmp.path().join(f), std::fs::Permissions::from_mode(0o644))
            .unwrap();
    }
    let locked = tmp.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    let out = locked.join("bundle");
    let a = s(&[
        "bootstrap",
        "plan",
        "--inventory",
        &inv.display().to_string(),
        "--out",
        &out.display().to_string(),
    ]);
    let run = crate::harness::cpkeep_unprivileged(&a).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    let line = run.assert_one_clear_line();
    assert!(
        line.contains("cannot be created") && line.contains("is not writable"),
        "{line}"
    );
    assert!(!out.exists());
}
