//! `cpkeep certs renew` against generated kubeadm PKI sets (RSA and ECDSA keys, PKCS#1/SEC1 and PKCS#8,
//! near-expiry and expired leaves, an external CA, kubelet.conf with a file reference, super-admin.conf)
//! and a copy of a real kubeadm v1.16 `/etc/kubernetes`, checked with real `openssl`; a real etcd
//! started with the renewed certificates; `--restart` with a fake kubelet that starts and stops etcd as
//! its manifest appears and disappears; and a run killed between two files.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use cpkeep::certs::issue::{pem_encode, pkcs8_to_pkcs1, pkcs8_to_sec1};
use cpkeep::certs::kubeconfig::{ClientCert, Kubeconfig};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use time::OffsetDateTime;

use crate::harness::{cpkeep, cpkeep_env, tool, Etcd, Run};
use crate::kubelet::Kubelet;

fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn show(run: &Run) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        run.code, run.stdout, run.stderr
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------------------------
// Generated kubeadm PKI sets
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Rsa2048,
    Rsa3072,
    P256,
    P384,
}

impl Alg {
    fn generate(self) -> KeyPair {
        match self {
            Alg::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            }
            Alg::Rsa3072 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072)
            }
            Alg::P256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            Alg::P384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        }
        .unwrap()
    }

    fn is_rsa(self) -> bool {
        matches!(self, Alg::Rsa2048 | Alg::Rsa3072)
    }

    /// What `openssl pkey -text` says about a key of this algorithm.
    fn openssl_says(self) -> &'static str {
        match self {
            Alg::Rsa2048 => "Private-Key: (2048 bit, 2 primes)",
            Alg::Rsa3072 => "Private-Key: (3072 bit, 2 primes)",
            Alg::P256 => "NIST CURVE: P-256",
            Alg::P384 => "NIST CURVE: P-384",
        }
    }
}

/// How a set's keys are stored: kubeadm's traditional forms, or PKCS#8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Traditional,
    Pkcs8,
}

fn key_pem(key: &KeyPair, alg: Alg, form: Form) -> String {
    match (form, alg.is_rsa()) {
        (Form::Pkcs8, _) => key.serialize_pem(),
        (Form::Traditional, true) => pem_encode(
            "RSA PRIVATE KEY",
            &pkcs8_to_pkcs1(key.serialized_der()).unwrap(),
        ),
        (Form::Traditional, false) => pem_encode(
            "EC PRIVATE KEY",
            &pkcs8_to_sec1(key.serialized_der(), key.der_bytes()).unwrap(),
        ),
    }
}

fn label(alg: Alg, form: Form) -> &'static str {
    match (form, alg.is_rsa()) {
        (Form::Pkcs8, _) => "-----BEGIN PRIVATE KEY-----",
        (Form::Traditional, true) => "-----BEGIN RSA PRIVATE KEY-----",
        (Form::Traditional, false) => "-----BEGIN EC PRIVATE KEY-----",
    }
}

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A kubeadm `/etc/kubernetes` in a temp dir.
struct Set {
    _dir: tempfile::TempDir,
    /// `/etc/kubernetes`
    root: PathBuf,
    /// `/etc/kubernetes/pki`
    pki: PathBuf,
    alg: Alg,
    form: Form,
}

/// Leaves and kubeconfigs of a kubeadm control-plane node: (name, file base or kubeconfig, CA base,
/// O, CN, extended key usages, SANs).
const LEAVES: &[(&str, &str, &str, &str, &str, &str)] = &[
    (
        "apiserver",
        "apiserver",
        "ca",
        "",
        "kube-apiserver",
        "server",
    ),
    (
        "apiserver-kubelet-client",
        "apiserver-kubelet-client",
        "ca",
        "system:masters",
        "kube-apiserver-kubelet-client",
        "client",
    ),
    (
        "apiserver-etcd-client",
        "apiserver-etcd-client",
        "etcd/ca",
        "system:masters",
        "kube-apiserver-etcd-client",
        "client",
    ),
    (
        "front-proxy-client",
        "front-proxy-client",
        "front-proxy-ca",
        "",
        "front-proxy-client",
        "client",
    ),
    ("etcd-server", "etcd/server", "etcd/ca", "", "node1", "both"),
    ("etcd-peer", "etcd/peer", "etcd/ca", "", "node1", "both"),
    (
        "etcd-healthcheck-client",
        "etcd/healthcheck-client",
        "etcd/ca",
        "system:masters",
        "kube-etcd-healthcheck-client",
        "client",
    ),
    (
        "admin.conf",
        "admin.conf",
        "ca",
        "system:masters",
        "kubernetes-admin",
        "client",
    ),
    (
        "super-admin.conf",
        "super-admin.conf",
        "ca",
        "system:masters",
        "kubernetes-super-admin",
        "client",
    ),
    (
        "controller-manager.conf",
        "controller-manager.conf",
        "ca",
        "",
        "system:kube-controller-manager",
        "client",
    ),
    (
        "scheduler.conf",
        "scheduler.conf",
        "ca",
        "",
        "system:kube-scheduler",
        "client",
    ),
];

fn days(n: i64) -> time::Duration {
    time::Duration::days(n)
}

impl Set {
    /// A set whose leaf `name` expires `expiry(name)` days from now (negative: expired).
    fn build(alg: Alg, form: Form, expiry: impl Fn(&str) -> i64) -> Set {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("etc").join("kubernetes");
        let pki = root.join("pki");
        std::fs::create_dir_all(pki.join("etcd")).unwrap();
        let now = OffsetDateTime::now_utc();
        let mut cas: BTreeMap<&str, Ca> = BTreeMap::new();
        for (base, cn) in [
            ("ca", "kubernetes"),
            ("etcd/ca", "etcd-ca"),
            ("front-proxy-ca", "front-proxy-ca"),
        ] {
            let key = alg.generate();
            let mut p = CertificateParams::default();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
                KeyUsagePurpose::KeyCertSign,
            ];
            p.not_before = now - time::Duration::minutes(5);
            p.not_after = now + days(3650);
            let pem = p.self_signed(&key).unwrap().pem();
            write(&pki.join(format!("{base}.crt")), &pem, 0o644);
            write(
                &pki.join(format!("{base}.key")),
                &key_pem(&key, alg, form),
                0o600,
            );
            let issuer = Issuer::from_ca_cert_pem(&pem, key).unwrap();
            cas.insert(base, Ca { pem, issuer });
        }
        for &(name, base, ca, o, cn, usage) in LEAVES {
            let key = alg.generate();
            let mut p = CertificateParams::default();
            if !o.is_empty() {
                p.distinguished_name.push(DnType::OrganizationName, o);
            }
            p.distinguished_name.push(DnType::CommonName, cn);
            p.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            p.extended_key_usages = match usage {
                "server" => vec![ExtendedKeyUsagePurpose::ServerAuth],
                "client" => vec![ExtendedKeyUsagePurpose::ClientAuth],
                _ => vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
            };
            p.subject_alt_names = match name {
                "apiserver" => vec![
                    SanType::DnsName("node1".try_into().unwrap()),
                    SanType::DnsName("kubernetes".try_into().unwrap()),
                    SanType::DnsName("kubernetes.default".try_into().unwrap()),
                    SanType::DnsName("kubernetes.default.svc.cluster.local".try_into().unwrap()),
                    SanType::IpAddress("10.96.0.1".parse().unwrap()),
                    SanType::IpAddress("10.0.0.1".parse().unwrap()),
                ],
                "etcd-server" | "etcd-peer" => vec![
                    SanType::DnsName("node1".try_into().unwrap()),
                    SanType::DnsName("localhost".try_into().unwrap()),
                    SanType::IpAddress("127.0.0.1".parse().unwrap()),
                    SanType::IpAddress("::1".parse().unwrap()),
                ],
                _ => Vec::new(),
            };
            p.use_authority_key_identifier_extension = true;
            let not_after = now + days(expiry(name));
            p.not_after = not_after;
            p.not_before = not_after.min(now) - days(365);
            let cert = p.signed_by(&key, &cas[ca].issuer).unwrap().pem();
            let kpem = key_pem(&key, alg, form);
            if base.ends_with(".conf") {
                let text = kubeconfig(&cas["ca"].pem, cn, &cert, &kpem);
                write(&root.join(base), &text, 0o600);
            } else {
                write(&pki.join(format!("{base}.crt")), &cert, 0o644);
                write(&pki.join(format!("{base}.key")), &kpem, 0o600);
            }
        }
        // kubelet.conf points at the kubelet's own rotated certificate.
        let kubelet_pem = root.join("kubelet-pki").join("kubelet-client-current.pem");
        std::fs::create_dir_all(kubelet_pem.parent().unwrap()).unwrap();
        let key = alg.generate();
        let mut p = CertificateParams::default();
        p.distinguished_name
            .push(DnType::OrganizationName, "system:nodes");
        p.distinguished_name
            .push(DnType::CommonName, "system:node:node1");
        let cert = p.signed_by(&key, &cas["ca"].issuer).unwrap().pem();
        write(
            &kubelet_pem,
            &format!("{cert}{}", key_pem(&key, alg, form)),
            0o600,
        );
        let text = format!(
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://10.0.0.1:6443\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: system:node:node1\n  name: system:node:node1@kubernetes\ncurrent-context: system:node:node1@kubernetes\nkind: Config\npreferences: {{}}\nusers:\n- name: system:node:node1\n  user:\n    client-certificate: {p}\n    client-key: {p}\n",
            b64(&cas["ca"].pem),
            p = kubelet_pem.display()
        );
        write(&root.join("kubelet.conf"), &text, 0o600);
        Set {
            _dir: dir,
            root,
            pki,
            alg,
            form,
        }
    }

    /// A copy of the real kubeadm v1.16 `/etc/kubernetes` (fixtures/kubeadm-v1.16).
    fn v1_16() -> Set {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("etc").join("kubernetes");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/kubeadm-v1.16");
        copy_tree(&src, &root);
        Set {
            pki: root.join("pki"),
            root,
            _dir: dir,
            alg: Alg::Rsa2048,
            form: Form::Traditional,
        }
    }

    fn dirs(&self) -> Vec<String> {
        vec![
            "--cert-dir".into(),
            self.pki.display().to_string(),
            "--kubeconfig-dir".into(),
            self.root.display().to_string(),
        ]
    }

    async fn renew(&self, extra: &[&str]) -> Run {
        let mut a = args(&["certs", "renew", "-o", "json"]);
        a.extend(self.dirs());
        a.extend(args(extra));
        cpkeep(&a).await
    }

    fn backup_root(&self) -> PathBuf {
        self.root.join("pki-backup")
    }

    /// Every file under the root (the backups excepted): relative path → (bytes, mode).
    fn snapshot(&self) -> BTreeMap<String, (Vec<u8>, u32)> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.root.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p == self.backup_root() {
                    continue;
                }
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(&self.root).unwrap().display().to_string();
                    let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
                    out.insert(rel, (std::fs::read(&p).unwrap(), mode));
                }
            }
        }
        out
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A kubeconfig as kubeadm writes it.
fn kubeconfig(ca_pem: &str, user: &str, cert: &str, key: &str) -> String {
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://10.0.0.1:6443\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: {user}\n  name: {user}@kubernetes\ncurrent-context: {user}@kubernetes\nkind: Config\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(ca_pem),
        b64(cert),
        b64(key)
    )
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let dest = to.join(e.file_name());
        if p.is_dir() {
            copy_tree(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
            let mode = if dest.extension().is_some_and(|x| x == "key") {
                0o600
            } else {
                0o644
            };
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// openssl
// ---------------------------------------------------------------------------------------------

fn openssl(a: &[&str]) -> (bool, String) {
    let out = Command::new(tool("openssl")).args(a).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `openssl x509 -text -noout` without what a renewal changes (serial, validity, key bits, key
/// identifier, signature): subject, issuer, SANs, key usages, key type and size remain.
fn stable_text(cert: &Path) -> String {
    let (ok, text) = openssl(&["x509", "-noout", "-text", "-in", cert.to_str().unwrap()]);
    assert!(ok, "{text}");
    let mut keep = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim();
        if line.starts_with("    Signature Algorithm") || line.starts_with("    Signature Value") {
            break;
        }
        if t.starts_with("Serial Number") {
            while lines
                .peek()
                .is_some_and(|l| !l.trim().starts_with("Signature Algorithm"))
            {
                lines.next();
            }
            continue;
        }
        if t.starts_with("Not Before") || t.starts_with("Not After") {
            continue;
        }
        if t.starts_with("Modulus:") || t.starts_with("pub:") {
            while lines
                .peek()
                .is_some_and(|l| l.trim().chars().all(|c| c.is_ascii_hexdigit() || c == ':'))
            {
                lines.next();
            }
            continue;
        }
        if t.starts_with("X509v3 Subject Key Identifier") {
            lines.next();
            continue;
        }
        keep.push(t.to_string());
    }
    keep.join("\n")
}

fn verify(ca: &Path, cert: &Path) {
    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        ca.to_str().unwrap(),
        cert.to_str().unwrap(),
    ]);
    assert!(
        ok && text.contains(": OK"),
        "openssl verify {}: {text}",
        cert.display()
    );
}

/// The embedded client certificate and key of a kubeconfig, written to `dir` as PEM files.
fn kubeconfig_pair(conf: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    let kc = Kubeconfig::read(conf).unwrap();
    let ClientCert::Embedded(cert) = kc.client_cert else {
        panic!("{} does not embed its certificate", conf.display())
    };
    let cpkeep::certs::kubeconfig::ClientKey::Embedded(key) = kc.client_key else {
        panic!("{} does not embed its key", conf.display())
    };
    let name = conf.file_name().unwrap().to_string_lossy().to_string();
    let (c, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key.expose()).unwrap();
    (c, k)
}

/// Two kubeconfig texts are equal except for the base64 of the two client fields.
fn same_but_client_data(old: &str, new: &str) {
    let strip = |t: &str| -> Vec<String> {
        t.lines()
            .map(|l| {
                for f in ["client-certificate-data: ", "client-key-data: "] {
                    if let Some(i) = l.find(f) {
                        return l[..i + f.len()].to_string();
                    }
                }
                l.to_string()
            })
            .collect()
    };
    assert_eq!(strip(old), strip(new));
    assert_eq!(
        old.len() - old.lines().map(str::len).sum::<usize>(),
        new.len() - new.lines().map(str::len).sum::<usize>(),
        "line structure"
    );
    let field = |t: &str, f: &str| {
        t.lines()
            .find_map(|l| l.trim().strip_prefix(f).map(str::to_string))
            .unwrap()
    };
    assert_ne!(
        field(old, "client-certificate-data: "),
        field(new, "client-certificate-data: ")
    );
}

/// Checks everything `renewed` (JSON `renewed[]`) says against the files, with openssl.
fn check_renewed(
    set: &Set,
    before: &BTreeMap<String, (Vec<u8>, u32)>,
    renewed: &[serde_json::Value],
) {
    let scratch = tempfile::tempdir().unwrap();
    let old_dir = scratch.path().join("old");
    let new_dir = scratch.path().join("new");
    std::fs::create_dir_all(&old_dir).unwrap();
    std::fs::create_dir_all(&new_dir).unwrap();
    for r in renewed {
        let name = r["name"].as_str().unwrap();
        let ca_base = match r["ca"].as_str().unwrap() {
            "ca" => "ca",
            "etcd-ca" => "etcd/ca",
            "front-proxy-ca" => "front-proxy-ca",
            other => panic!("{other}"),
        };
        let ca = set.pki.join(format!("{ca_base}.crt"));
        let (old_cert, new_cert, old_key, new_key) = if name.ends_with(".conf") {
            let conf = set.root.join(name);
            let old_conf = old_dir.join(name);
            std::fs::write(&old_conf, &before[name].0).unwrap();
            let (oc, ok) = kubeconfig_pair(&old_conf, &old_dir);
            let (nc, nk) = kubeconfig_pair(&conf, &new_dir);
            same_but_client_data(
                std::str::from_utf8(&before[name].0).unwrap(),
                &std::fs::read_to_string(&conf).unwrap(),
            );
            // It holds its key (client-key-data): 0600 like a key, whatever it was.
            let mode = std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name} is 0600");
            (oc, nc, ok, nk)
        } else {
            let crt = PathBuf::from(r["certPath"].as_str().unwrap());
            let key = PathBuf::from(r["keyPath"].as_str().unwrap());
            let rel = |p: &Path| p.strip_prefix(&set.root).unwrap().display().to_string();
            let oc = old_dir.join(format!("{name}.crt"));
            let ok = old_dir.join(format!("{name}.key"));
            std::fs::write(&oc, &before[&rel(&crt)].0).unwrap();
            std::fs::write(&ok, &before[&rel(&key)].0).unwrap();
            let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} is 0600", key.display());
            (oc, crt, ok, key)
        };
        verify(&ca, &new_cert);
        let stable = stable_text(&old_cert);
        assert!(
            stable.contains("Subject: ") && stable.contains("Public Key Algorithm: "),
            "{stable}"
        );
        if name == "apiserver" {
            assert!(stable.contains("DNS:kubernetes"), "{stable}");
        }
        assert_eq!(
            stable_text(&old_cert),
            stable_text(&new_cert),
            "{name}: subject, SANs, usages, key type"
        );
        // The key: new, the same algorithm and size, the same PEM form, and it belongs to the cert.
        let new_key_text = std::fs::read_to_string(&new_key).unwrap();
        let old_key_text = std::fs::read_to_string(&old_key).unwrap();
        assert_ne!(new_key_text, old_key_text, "{name}: a new key");
        assert!(
            new_key_text.starts_with(label(set.alg, set.form)),
            "{name}: {}",
            new_key_text.lines().next().unwrap()
        );
        let (ok, text) = openssl(&["pkey", "-noout", "-text", "-in", new_key.to_str().unwrap()]);
        assert!(
            ok && text.contains(set.alg.openssl_says()),
            "{name}: {text}"
        );
        let (_, key_pub) = openssl(&["pkey", "-pubout", "-in", new_key.to_str().unwrap()]);
        let (_, cert_pub) = openssl(&[
            "x509",
            "-noout",
            "-pubkey",
            "-in",
            new_cert.to_str().unwrap(),
        ]);
        assert_eq!(
            key_pub, cert_pub,
            "{name}: the key belongs to the certificate"
        );
        assert_eq!(r["verified"], true);
    }
}

/// The backup holds every replaced file's old bytes, in the same layout, in a 0700 directory.
fn check_backup(set: &Set, before: &BTreeMap<String, (Vec<u8>, u32)>, j: &serde_json::Value) {
    let dir = PathBuf::from(j["backupDir"].as_str().unwrap());
    assert!(dir.starts_with(set.backup_root()), "{}", dir.display());
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let written: Vec<&str> = j["filesWritten"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(!written.is_empty());
    for w in &written {
        let rel = Path::new(w).strip_prefix(&set.root).unwrap();
        let backup = dir.join(rel);
        assert_eq!(
            std::fs::read(&backup).unwrap(),
            before[&rel.display().to_string()].0,
            "backup of {w}"
        );
        assert_eq!(
            std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let journal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("cpkeep-renew.json")).unwrap()).unwrap();
    assert_eq!(journal["state"], "done");
    assert_eq!(journal["files"].as_array().unwrap().len(), written.len());
}

fn names(v: &serde_json::Value) -> Vec<String> {
    let mut n: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// apiserver expired, admin.conf near expiry, the others far.
fn mixed_expiry(name: &str) -> i64 {
    match name {
        "apiserver" => -3,
        "admin.conf" => 10,
        _ => 300,
    }
}

const RENEWABLE: &[&str] = &[
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
    "super-admin.conf",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renews_every_leaf_of_generated_sets_as_openssl_sees_them() {
    for (alg, form) in [
        (Alg::Rsa2048, Form::Traditional),
        (Alg::P256, Form::Traditional),
        (Alg::P384, Form::Pkcs8),
        (Alg::Rsa3072, Form::Pkcs8),
    ] {
        let set = Set::build(alg, form, mixed_expiry);
        let before = set.snapshot();
        let run = set.renew(&[]).await;
        assert_eq!(run.code, 0, "{alg:?} {form:?}: {}", show(&run));
        let j = run.json();
        assert_eq!(names(&j["renewed"]), sorted(RENEWABLE), "{alg:?}");
        assert_eq!(names(&j["skipped"]), sorted(&["kubelet.conf"]));
        assert!(j["refused"].as_array().unwrap().is_empty());
        check_renewed(&set, &before, j["renewed"].as_array().unwrap());
        check_backup(&set, &before, &j);
        let after = set.snapshot();
        // CAs, the service-account pair (absent here), kubelet.conf and its file: untouched.
        for (rel, (bytes, mode)) in &before {
            let is_ca = ["pki/ca.", "pki/etcd/ca.", "pki/front-proxy-ca."]
                .iter()
                .any(|p| rel.starts_with(p));
            if is_ca || rel.starts_with("kubelet") {
                assert_eq!(&after[rel], &(bytes.clone(), *mode), "{rel} untouched");
            }
        }
        // Nothing left behind beside the files (temp files of the atomic writes).
        assert!(
            after.keys().all(|k| !k.contains(".tmp-")),
            "{:?}",
            after.keys()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn within_selects_and_named_certificates_are_renewed_regardless() {
    let set = Set::build(Alg::P256, Form::Traditional, mixed_expiry);
    // The plan: only the expired and the near-expiry ones.
    let run = set.renew(&["--within", "30d", "--dry-run"]).await;
    assert_eq!(run.code, 0, "{}", show(&run));
    let j = run.json();
    assert_eq!(j["dryRun"], true);
    assert_eq!(names(&j["renew"]), sorted(&["admin.conf", "apiserver"]));
    assert!(j["renew"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["selected"] == "expiring"));
    let skipped = names(&j["skipped"]);
    assert!(skipped.contains(&"etcd-peer".to_string()), "{skipped:?}");
    let run = set.renew(&["--within", "30d"]).await;
    assert_eq!(run.code, 0, "{}", show(&run));
    assert_eq!(
        names(&run.json()["renewed"]),
        sorted(&["admin.conf", "apiserver"])
    );
    // A second run within the window finds nothing left to do.
    let run = set.renew(&["--within", "30d"]).await;
    assert_eq!(run.code, 0, "{}", show(&run));
    assert!(run.json()["renewed"].as_array().unwrap().is_empty());
    // Named: renewed whatever the expiry (etcd-peer has 300 days left).
    let before = set.snapshot();
    let run = set
        .renew(&["etcd-peer", "scheduler.conf", "--within", "30d"])
        .await;
    assert_eq!(run.code, 0, "{}", show(&run));
    let j = run.json();
    assert_eq!(
        names(&j["renewed"]),
        sorted(&["etcd-peer", "scheduler.conf"])
    );
    assert!(j["renewed"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["verified"] == true));
    check_renewed(&set, &before, j["renewed"].as_array().unwrap());
    // --reuse-key keeps the key file byte for byte and certifies the same key.
    let key = set.pki.join("etcd/server.key");
    let key_before = std::fs::read(&key).unwrap();
    let run = set
        .renew(&["etcd-server", "--reuse-key", "--validity", "30d"])
        .await;
    assert_eq!(run.code, 0, "{}", show(&run));
    let j = run.json();
    assert_eq!(j["renewed"][0]["newKey"], false);
    assert_eq!(std::fs::read(&key).unwrap(), key_before);
    verify(
        &set.pki.join("etcd/ca.crt"),
        &set.pki.join("etcd/server.crt"),
    );
    let (_, key_pub) = openssl(&["pkey", "-pubout", "-in", key.to_str().unwrap()]);
    let (_, cert_pub) = openssl(&[
        "x509",
        "-noout",
        "-pubkey",
        "-in",
        set.pki.join("etcd/server.crt").to_str().unwrap(),
    ]);
    assert_eq!(key_pub, cert_pub);
    let (_, end) = openssl(&[
        "x509",
        "-noout",
        "-enddate",
        "-in",
        set.pki.join("etcd/server.crt").to_str().unwrap(),
    ]);
    let year = chrono::Utc::now() + chrono::Duration::days(30);
    assert!(end.contains(&year.format("%Y").to_string()), "{end}");
    // --validity beyond the CA's expiry is capped, with a warning.
    let run = set
        .renew(&["front-proxy-client", "--validity", "7300d"])
        .await;
    assert_eq!(run.code, 0, "{}", show(&run));
    let j = run.json();
    assert_eq!(j["renewed"][0]["cappedByCa"], true);
    assert!(
        j["warnings"][0]
            .as_str()
            .unwrap()
            .contains("front-proxy-ca"),
        "{j}"
    );
    assert!(run.stderr.contains("WARN"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_are_never_renewed_and_external_cas_are_refused_by_name() {
    let set = Set::build(Alg::P256, Form::Pkcs8, |_| 100);
    let before = set.snapshot();
    // A CA by name: refused, exit 2, nothing written.
    let run = set.renew(&["etcd-ca"]).await;
    assert_eq!(run.code, 2, "{}", show(&run));
    let j = run.json();
    assert!(j["renewed"].as_array().unwrap().is_empty());
    assert_eq!(names(&j["refused"]), sorted(&["etcd-ca"]));
    assert!(j["refused"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("never renews a CA"));
    // kubelet.conf by name: refused (the kubelet rotates it), never touched.
    let run = set.renew(&["kubelet.conf"]).await;
    assert_eq!(run.code, 2, "{}", show(&run));
    assert!(run.json()["refused"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("kubelet-client-current.pem"));
    assert_eq!(set.snapshot(), before);
    assert!(!set.backup_root().exists());

    // etcd's CA is external (its key is elsewhere): every certificate it signs is refused, naming it;
    // the others are renewed; exit 2.
    std::fs::remove_file(set.pki.join("etcd/ca.key")).unwrap();
    let before = set.snapshot();
    let run = set.renew(&[]).await;
    assert_eq!(run.code, 2, "{}", show(&run));
    let j = run.json();
    assert_eq!(
        names(&j["refused"]),
        sorted(&[
            "apiserver-etcd-client",
            "etcd-healthcheck-client",
            "etcd-peer",
            "etcd-server"
        ])
    );
    for r in j["refused"].as_array().unwrap() {
        let reason = r["reason"].as_str().unwrap();
        assert!(
            reason.contains("etcd-ca") && reason.contains("external CA"),
            "{reason}"
        );
        assert!(
            reason.contains(&set.pki.join("etcd/ca.key").display().to_string()),
            "{reason}"
        );
    }
    assert!(names(&j["renewed"]).contains(&"apiserver".to_string()));
    let after = set.snapshot();
    for f in [
        "pki/etcd/server.crt",
        "pki/etcd/server.key",
        "pki/apiserver-etcd-client.crt",
        "pki/etcd/ca.crt",
    ] {
        assert_eq!(after[f], before[f], "{f} untouched");
    }
    // No CA file ever changes.
    for f in [
        "pki/ca.crt",
        "pki/ca.key",
        "pki/front-proxy-ca.crt",
        "pki/front-proxy-ca.key",
    ] {
        assert_eq!(after[f], before[f], "{f} untouched");
    }
    // Named certificates of the external CA only: nothing safe to do, exit 2, nothing written.
    let run = set.renew(&["etcd-server"]).await;
    assert_eq!(run.code, 2, "{}", show(&run));
    let backups = std::fs::read_dir(set.backup_root()).unwrap().count();
    assert_eq!(backups, 1, "only the first renewal made a backup");
}

#[tokio::test]
async fn dry_run_writes_nothing() {
    let set = Set::build(Alg::P256, Form::Traditional, mixed_expiry);
    let before = set.snapshot();
    let run = set.renew(&["--dry-run"]).await;
    assert_eq!(run.code, 0, "{}", show(&run));
    let j = run.json();
    assert_eq!(names(&j["renew"]), sorted(RENEWABLE));
    let files = j["files"].as_array().unwrap();
    // 7 pki pairs (key then cert) and 4 kubeconfigs.
    assert_eq!(files.len(), 7 * 2 + 4, "{j}");
    assert_eq!(files[1]["role"], "key");
    assert_eq!(files[1]["mode"], "0600");
    assert_eq!(files[2]["role"], "cert");
    // The key form has one name, in JSON and in the table.
    assert!(j["renew"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["keyFormat"] == "SEC1" && r["keyAlgorithm"] == "ECDSA-P256"));
    // The table says the same.
    let mut a = args(&["certs", "renew", "--dry-run"]);
    a.extend(set.dirs());
    let table = cpkeep(&a).await;
    assert_eq!(table.code, 0, "{}", show(&table));
    assert!(
        table.stdout.starts_with("Dry run: nothing was changed."),
        "{}",
        table.stdout
    );
    let apiserver = table
        .stdout
        .lines()
        .find(|l| l.starts_with("apiserver "))
        .unwrap();
    assert!(
        apiserver.contains("   new ECDSA-P256 SEC1   "),
        "{apiserver}"
    );
    assert!(table.stdout.contains("kubelet.conf: "), "{}", table.stdout);
    // No private key material in any output.
    for f in before.keys().filter(|k| k.ends_with(".key")) {
        let key = String::from_utf8(before[f].0.clone()).unwrap();
        let body = key.lines().nth(1).unwrap();
        assert!(!run.stdout.contains(body) && !table.stdout.contains(body));
    }
    assert_eq!(set.snapshot(), before);
    assert!(!set.backup_root().exists());
}

#[tokio::test]
async fn bad_input_is_one_line_per_file_and_writes_nothing() {
    let set = Set::build(Alg::P256, Form::Traditional, |_| 100);
    let missing = set.root.join("nope");
    let mut a = args(&["certs", "renew", "--cert-dir", missing.to_str().unwrap()]);
    a.extend(args(&["--kubeconfig-dir", set.root.to_str().unwrap()]));
    let run = cpkeep(&a).await;
    assert_eq!(run.code, 3, "{}", show(&run));
    assert!(
        run.assert_one_clear_line().contains("does not exist"),
        "{}",
        run.stderr
    );

    // Unknown name.
    let run = set.renew(&["apiserverr"]).await;
    assert_eq!(run.code, 3, "{}", show(&run));
    assert!(run
        .assert_one_clear_line()
        .contains("unknown certificate \"apiserverr\""));

    // A certificate that is not PEM, a key of another certificate, a kubeconfig that is not YAML.
    std::fs::write(set.pki.join("apiserver.crt"), "not a certificate\n").unwrap();
    std::fs::copy(
        set.pki.join("etcd/peer.key"),
        set.pki.join("etcd/server.key"),
    )
    .unwrap();
    std::fs::write(
        set.root.join("scheduler.conf"),
        "users: [\n  client-key-data: c2VjcmV0\n",
    )
    .unwrap();
    let before = set.snapshot();
    let run = set.renew(&[]).await;
    assert_eq!(run.code, 3, "{}", show(&run));
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("cpkeep: "))
        .collect();
    assert_eq!(errors.len(), 3, "{}", run.stderr);
    assert!(errors
        .iter()
        .any(|l| l.contains(&set.pki.join("apiserver.crt").display().to_string())));
    assert!(errors
        .iter()
        .any(|l| l.contains("etcd-server") && l.contains("does not belong")));
    assert!(errors
        .iter()
        .any(|l| l.contains("scheduler.conf") && l.contains("not YAML")));
    assert!(!run.stderr.contains("c2VjcmV0"));
    assert!(run.stdout.is_empty());
    assert_eq!(set.snapshot(), before);
    assert!(!set.backup_root().exists());

    // A CA key that does not belong to its CA certificate: one line, nothing written.
    let set = Set::build(Alg::P256, Form::Traditional, |_| 100);
    std::fs::copy(set.pki.join("ca.key"), set.pki.join("front-proxy-ca.key")).unwrap();
    let before = set.snapshot();
    let run = set.renew(&["front-proxy-client"]).await;
    assert_eq!(run.code, 3, "{}", show(&run));
    let line = run.assert_one_clear_line();
    assert!(
        line.contains("front-proxy-ca") && line.contains("does not belong"),
        "{line}"
    );
    assert_eq!(set.snapshot(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renews_the_real_kubeadm_v1_16_set() {
    let set = Set::v1_16();
    let before = set.snapshot();
    let run = set.renew(&[]).await;
    assert_eq!(run.code, 0, "{}", show(&run));
    let j = run.json();
    let mut want: Vec<&str> = RENEWABLE
        .iter()
        .copied()
        .filter(|n| *n != "super-admin.conf")
        .collect();
    want.sort();
    assert_eq!(names(&j["renewed"]), sorted(&want));
    // kubelet.conf (embedded in v1.16) is never renewed; super-admin.conf did not exist before 1.29.
    assert_eq!(
        names(&j["skipped"]),
        sorted(&["kubelet.conf", "super-admin.conf"])
    );
    check_renewed(&set, &before, j["renewed"].as_array().unwrap());
    check_backup(&set, &before, &j);
    let after = set.snapshot();
    for f in [
        "kubelet.conf",
        "pki/ca.crt",
        "pki/ca.key",
        "pki/etcd/ca.key",
        "pki/sa.key",
        "pki/sa.pub",
        "manifests/etcd.yaml",
    ] {
        assert_eq!(after[f], before[f], "{f} untouched");
    }
    // The renewed set passes cpkeep's own check: every leaf OK now.
    let mut a = args(&["certs", "check", "-o", "json"]);
    a.extend(set.dirs());
    let check = cpkeep(&a).await;
    let c = check.json();
    for cert in c["certificates"].as_array().unwrap() {
        let name = cert["name"].as_str().unwrap();
        if want.contains(&name) {
            assert_eq!(cert["status"], "OK", "{name}: {cert}");
            assert_eq!(cert["keyMatches"], true, "{name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_between_two_files_is_detected_and_recovered() {
    let set = Set::build(Alg::P256, Form::Traditional, |_| 100);
    let before = set.snapshot();
    // Killed (SIGABRT, no clean-up) after two replaced files: admin.conf, then apiserver.key —
    // the key of a pair whose certificate is still the old one.
    let mut a = args(&["certs", "renew", "-o", "json"]);
    a.extend(set.dirs());
    let run = cpkeep_env(&a, &[("CPKEEP_TEST_CRASH_AFTER_WRITES", "2".to_string())]).await;
    assert_ne!(run.code, 0, "{}", show(&run));
    assert!(run.stdout.is_empty(), "{}", show(&run));
    let dirs: Vec<PathBuf> = std::fs::read_dir(set.backup_root())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(dirs.len(), 1);
    let journal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dirs[0].join("cpkeep-renew.json")).unwrap()).unwrap();
    assert_eq!(journal["state"], "writing");
    let files = journal["files"].as_array().unwrap();
    assert_eq!(files.len(), 7 * 2 + 4);
    // Every file is either old or new, and the backup is complete.
    let sha = |b: &[u8]| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b))
    };
    let mut new = Vec::new();
    for f in files {
        let path = PathBuf::from(f["path"].as_str().unwrap());
        let now = sha(&std::fs::read(&path).unwrap());
        assert!(
            now == f["oldSha256"] || now == f["newSha256"],
            "{} is neither old nor new",
            path.display()
        );
        if now == f["newSha256"] {
            new.push(path.strip_prefix(&set.root).unwrap().display().to_string());
        }
        let backup = dirs[0].join(f["backup"].as_str().unwrap());
        assert_eq!(
            sha(&std::fs::read(&backup).unwrap()),
            f["oldSha256"],
            "backup of {}",
            path.display()
        );
    }
    assert_eq!(new, ["admin.conf", "pki/apiserver.key"]);
    // The half-renewed pair is visible to cpkeep's check (key does not match) …
    let mut c = args(&["certs", "check", "-o", "json"]);
    c.extend(set.dirs());
    let check = cpkeep(&c).await.json();
    let apiserver = check["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "apiserver")
        .unwrap()
        .clone();
    assert_eq!(apiserver["keyMatches"], false, "{apiserver}");
    // … and the next renewal refuses to start, saying what to do.
    let run = set.renew(&[]).await;
    assert_eq!(run.code, 2, "{}", show(&run));
    let line = run.assert_one_clear_line();
    assert!(
        line.contains("interrupted renewal") && line.contains("--recover"),
        "{line}"
    );
    assert!(
        line.contains(&set.pki.join("apiserver.key").display().to_string()),
        "{line}"
    );
    // --recover --dry-run says what it would put back, and changes nothing.
    let now = set.snapshot();
    let run = set.renew(&["--recover", "--dry-run"]).await;
    assert_eq!(run.code, 0, "{}", show(&run));
    let plan = run.json();
    let restore: Vec<&str> = plan["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["restore"] == true)
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(restore.len(), 2, "{plan}");
    assert_eq!(set.snapshot(), now);
    // --recover puts every file back as it was.
    let run = set.renew(&["--recover"]).await;
    assert_eq!(run.code, 0, "{}", show(&run));
    assert_eq!(run.json()["restored"].as_array().unwrap().len(), 2);
    assert_eq!(set.snapshot(), before);
    // A renewal then starts from the consistent set and completes.
    let run = set.renew(&[]).await;
    assert_eq!(run.code, 0, "{}", show(&run));
    check_renewed(&set, &before, run.json()["renewed"].as_array().unwrap());
    let run = set.renew(&["--recover"]).await;
    assert_eq!(run.code, 0, "{}", show(&run));
    assert_eq!(run.json()["recovered"], false);
}

// ---------------------------------------------------------------------------------------------
// Real etcd
// ---------------------------------------------------------------------------------------------

/// etcd's flags for a single TLS member with kubeadm's certificate files under `pki/etcd`.
fn etcd_flags(pki: &Path, data: &Path, client: u16, peer: u16, metrics: u16) -> Vec<String> {
    let e = pki.join("etcd");
    let f = |n: &str| e.join(n).display().to_string();
    vec![
        "--name=node1".into(),
        format!("--data-dir={}", data.display()),
        format!("--listen-client-urls=https://127.0.0.1:{client}"),
        format!("--advertise-client-urls=https://127.0.0.1:{client}"),
        format!("--listen-peer-urls=https://127.0.0.1:{peer}"),
        format!("--initial-advertise-peer-urls=https://127.0.0.1:{peer}"),
        format!("--initial-cluster=node1=https://127.0.0.1:{peer}"),
        format!("--listen-metrics-urls=http://127.0.0.1:{metrics}"),
        format!("--cert-file={}", f("server.crt")),
        format!("--key-file={}", f("server.key")),
        "--client-cert-auth=true".into(),
        format!("--trusted-ca-file={}", f("ca.crt")),
        format!("--peer-cert-file={}", f("peer.crt")),
        format!("--peer-key-file={}", f("peer.key")),
        "--peer-client-cert-auth=true".into(),
        format!("--peer-trusted-ca-file={}", f("ca.crt")),
    ]
}

/// `cpkeep cluster health` with kubeadm's healthcheck client certificate, until it says OK.
async fn wait_healthy(pki: &Path, client: u16, within: Duration, log: &Path) -> Run {
    let e = pki.join("etcd");
    let a = vec![
        "cluster".to_string(),
        "health".into(),
        "-o".into(),
        "json".into(),
        "--endpoints".into(),
        format!("https://127.0.0.1:{client}"),
        "--cacert".into(),
        e.join("ca.crt").display().to_string(),
        "--cert".into(),
        e.join("healthcheck-client.crt").display().to_string(),
        "--key".into(),
        e.join("healthcheck-client.key").display().to_string(),
        "--timeout".into(),
        "3s".into(),
    ];
    let deadline = Instant::now() + within;
    loop {
        let run = cpkeep(&a).await;
        if run.code == 0 {
            return run;
        }
        if Instant::now() > deadline {
            panic!(
                "etcd not healthy: {}\netcd log:\n{}",
                show(&run),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The certificate etcd serves on its client port (openssl s_client), PEM.
fn served_cert(port: u16) -> String {
    let out = Command::new(tool("openssl"))
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a served certificate");
    let end = text.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----".len();
    format!("{}\n", &text[start..end])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_etcd_runs_with_the_renewed_certificates() {
    let set = Set::build(Alg::P256, Form::Traditional, |n| {
        if n.starts_with("etcd") {
            2
        } else {
            100
        }
    });
    let run = set.renew(&["--within", "7d"]).await;
    assert_eq!(run.code, 0, "{}", show(&run));
    assert_eq!(
        names(&run.json()["renewed"]),
        sorted(&["etcd-healthcheck-client", "etcd-peer", "etcd-server"])
    );
    let data = set.root.join("etcd-data");
    let log = set.root.join("etcd.log");
    let (client, peer, metrics) = (free_port(), free_port(), free_port());
    let out = std::fs::File::create(&log).unwrap();
    let mut etcd = Command::new(Etcd::V35.etcd())
        .args(etcd_flags(&set.pki, &data, client, peer, metrics))
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    // It serves the renewed server certificate, and accepts the renewed healthcheck client.
    let health = wait_healthy(&set.pki, client, Duration::from_secs(30), &log).await;
    assert_eq!(health.json()["verdict"], "OK");
    assert_eq!(
        served_cert(client),
        std::fs::read_to_string(set.pki.join("etcd/server.crt")).unwrap()
    );
    // What `--restart` sees of a real Go HTTPS server: like the kubelet's probe, it sends the GET
    // without verifying the server certificate and presents no client certificate, which etcd's
    // client port (--client-cert-auth) refuses (that is why kubeadm probes etcd's plain-HTTP metrics
    // port).
    let p = cpkeep::certs::restart::Probe {
        scheme: cpkeep::certs::restart::Scheme::Https,
        host: "127.0.0.1".into(),
        port: client,
        path: "/health".into(),
        http_headers: Vec::new(),
    };
    let refused = cpkeep::certs::restart::probe(&p, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(refused.contains("CertificateRequired"), "{refused}");
    let _ = etcd.kill();
    let _ = etcd.wait();
}

/// kubeadm's etcd manifest shape: the command's flags, and the liveness probe on the metrics URL.
fn etcd_manifest(flags: &[String], metrics: u16) -> String {
    let mut text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n  namespace: kube-system\nspec:\n  containers:\n  - command:\n    - etcd\n".to_string();
    for f in flags {
        text.push_str(&format!("    - {f}\n"));
    }
    text.push_str(&format!(
        "    image: registry.k8s.io/etcd:3.5.30-0\n    livenessProbe:\n      failureThreshold: 8\n      httpGet:\n        host: 127.0.0.1\n        path: /health\n        port: {metrics}\n        scheme: HTTP\n      initialDelaySeconds: 15\n    name: etcd\n  hostNetwork: true\nstatus: {{}}\n"
    ));
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_moves_the_etcd_manifest_out_and_back_and_waits_for_health() {
    let set = Set::build(Alg::P256, Form::Traditional, |_| 100);
    let manifests = set.root.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let manifest = manifests.join("etcd.yaml");
    let (client, peer, metrics) = (free_port(), free_port(), free_port());
    let text = etcd_manifest(
        &etcd_flags(&set.pki, &set.root.join("etcd-data"), client, peer, metrics),
        metrics,
    );
    std::fs::write(&manifest, &text).unwrap();
    let log = set.root.join("etcd.log");
    let kubelet = Kubelet::start(manifest.clone(), log.clone(), manifest_flags);
    wait_healthy(&set.pki, client, Duration::from_secs(30), &log).await;
    let old_served = served_cert(client);
    assert_eq!(kubelet.starts(), 1);

    // The dry run shows the restart and its health endpoint, read from the liveness probe.
    let run = set
        .renew(&[
            "etcd-server",
            "etcd-peer",
            "etcd-healthcheck-client",
            "apiserver",
            "--restart",
            "--manifests-dir",
            manifests.to_str().unwrap(),
            "--dry-run",
        ])
        .await;
    // No kube-apiserver manifest: it cannot be restarted, so nothing is planned (bad input).
    assert_eq!(run.code, 3, "{}", show(&run));
    assert!(
        run.assert_one_clear_line().contains("kube-apiserver.yaml"),
        "{}",
        run.stderr
    );
    let run = set
        .renew(&[
            "etcd-server",
            "etcd-peer",
            "etcd-healthcheck-client",
            "--restart",
            "--manifests-dir",
            manifests.to_str().unwrap(),
            "--dry-run",
        ])
        .await;
    assert_eq!(run.code, 0, "{}", show(&run));
    let plan = run.json();
    assert_eq!(plan["restarts"][0]["component"], "etcd");
    assert_eq!(plan["restarts"][0]["probeFrom"], "manifest");
    assert_eq!(plan["restarts"][0]["probe"]["port"], metrics);
    assert_eq!(kubelet.starts(), 1);

    let run = set
        .renew(&[
            "etcd-server",
            "etcd-peer",
            "etcd-healthcheck-client",
            "--restart",
            "--manifests-dir",
            manifests.to_str().unwrap(),
            "--wait-timeout",
            "60s",
        ])
        .await;
    assert_eq!(
        run.code,
        0,
        "{}\netcd log:\n{}",
        show(&run),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let j = run.json();
    let r = &j["restarted"][0];
    assert_eq!(r["component"], "etcd");
    assert_eq!(r["wasRunning"], true);
    assert_eq!(r["health"], "HTTP 200");
    assert_eq!(j["restarted"].as_array().unwrap().len(), 1);
    // The kubelet stopped the old etcd and started a new one, from the same manifest, byte for byte.
    assert_eq!(kubelet.starts(), 2);
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), text);
    assert!(!set.root.join("etcd.yaml.cpkeep-renew").exists());
    // The new etcd serves the renewed certificate and accepts the renewed client certificate.
    let served = served_cert(client);
    assert_ne!(served, old_served);
    assert_eq!(
        served,
        std::fs::read_to_string(set.pki.join("etcd/server.crt")).unwrap()
    );
    wait_healthy(&set.pki, client, Duration::from_secs(30), &log).await;
    drop(kubelet);
}

#[tokio::test]
async fn a_component_that_does_not_come_back_stops_the_run_with_its_manifest_restored() {
    let set = Set::build(Alg::P256, Form::Traditional, |_| 100);
    let manifests = set.root.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    // Nobody runs these pods: the health endpoints never answer.
    let etcd = etcd_manifest(&["--name=node1".to_string()], free_port());
    std::fs::write(manifests.join("etcd.yaml"), &etcd).unwrap();
    let api = format!(
        "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - command:\n    - kube-apiserver\n    livenessProbe:\n      httpGet:\n        host: 127.0.0.1\n        path: /livez\n        port: {}\n        scheme: HTTPS\n    name: kube-apiserver\n",
        free_port()
    );
    std::fs::write(manifests.join("kube-apiserver.yaml"), &api).unwrap();
    let started = Instant::now();
    let run = set
        .renew(&[
            "etcd-server",
            "apiserver",
            "--restart",
            "--manifests-dir",
            manifests.to_str().unwrap(),
            "--wait-timeout",
            "2s",
        ])
        .await;
    assert_eq!(run.code, 1, "{}", show(&run));
    assert!(started.elapsed() < Duration::from_secs(30));
    let line = run.assert_one_clear_line();
    for want in [
        "etcd: not healthy within 2s",
        "its manifest is back at",
        "not restarted: kube-apiserver",
        "every certificate was renewed and verified",
    ] {
        assert!(line.contains(want), "{want:?} not in {line}");
    }
    // Both manifests in place, unchanged; nothing parked.
    assert_eq!(
        std::fs::read_to_string(manifests.join("etcd.yaml")).unwrap(),
        etcd
    );
    assert_eq!(
        std::fs::read_to_string(manifests.join("kube-apiserver.yaml")).unwrap(),
        api
    );
    assert!(!set.root.join("etcd.yaml.cpkeep-renew").exists());
    // The renewal itself is done.
    verify(
        &set.pki.join("etcd/ca.crt"),
        &set.pki.join("etcd/server.crt"),
    );
}

// ---------------------------------------------------------------------------------------------
// --restart with an HTTPS health endpoint
// ---------------------------------------------------------------------------------------------

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A fake kubelet running a fake kube-apiserver while its manifest exists: an HTTPS server on
/// `port` with the `apiserver.crt` and `apiserver.key` on disk when it starts, answering 200 to
/// `GET /livez` carrying `X-Probe: yes`, 500 to anything else (a TLS handshake alone is not health).
struct FakeApiserver {
    _watch: AbortOnDrop,
    starts: Arc<AtomicUsize>,
    /// Every request head it received.
    heads: Arc<Mutex<Vec<String>>>,
}

impl FakeApiserver {
    fn start(manifest: PathBuf, pki: PathBuf, port: u16) -> Self {
        let starts = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (starts2, heads2) = (starts.clone(), heads.clone());
        let watch = tokio::spawn(async move {
            let mut server: Option<AbortOnDrop> = None;
            loop {
                let present = manifest.is_file();
                if !present {
                    server = None;
                } else if server.is_none() {
                    if let Ok(listener) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                        let acceptor = apiserver_tls(&pki);
                        let heads = heads2.clone();
                        server = Some(AbortOnDrop(tokio::spawn(serve(listener, acceptor, heads))));
                        starts2.fetch_add(1, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        FakeApiserver {
            _watch: AbortOnDrop(watch),
            starts,
            heads,
        }
    }

    fn starts(&self) -> usize {
        self.starts.load(Ordering::SeqCst)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn apiserver_tls(pki: &Path) -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(pki.join("apiserver.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(pki.join("apiserver.key")).unwrap();
    crate::harness::tls_acceptor(chain, key)
}

async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    heads: Arc<Mutex<Vec<String>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        // cpkeep's "is the old pod gone" checks connect and hang up without a TLS hello.
        let Ok(Ok(mut s)) =
            tokio::time::timeout(Duration::from_secs(2), acceptor.accept(tcp)).await
        else {
            continue;
        };
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let healthy =
            head.starts_with("GET /livez HTTP/1.1\r\n") && head.contains("\r\nX-Probe: yes\r\n");
        heads.lock().unwrap().push(head);
        let status = if healthy {
            "200 OK"
        } else {
            "500 Internal Server Error"
        };
        let _ = s
            .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\nok").as_bytes())
            .await;
        let _ = s.shutdown().await;
    }
}

/// kubeadm's kube-apiserver manifest shape, with an HTTPS liveness probe of `path` and one header.
fn apiserver_manifest(port: u16, path: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\n  namespace: kube-system\nspec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --secure-port={port}\n    image: registry.k8s.io/kube-apiserver:v1.31.0\n    livenessProbe:\n      failureThreshold: 8\n      httpGet:\n        host: 127.0.0.1\n        path: {path}\n        port: {port}\n        scheme: HTTPS\n        httpHeaders:\n        - name: X-Probe\n          value: \"yes\"\n      initialDelaySeconds: 10\n    name: kube-apiserver\n  hostNetwork: true\nstatus: {{}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_gets_the_https_health_path_and_sees_the_renewed_serving_cert() {
    let set = Set::build(Alg::P256, Form::Traditional, |_| 100);
    let manifests = set.root.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let manifest = manifests.join("kube-apiserver.yaml");
    let port = free_port();
    let text = apiserver_manifest(port, "/livez");
    std::fs::write(&manifest, &text).unwrap();
    let old = std::fs::read(set.pki.join("apiserver.crt")).unwrap();
    let apiserver = FakeApiserver::start(manifest.clone(), set.pki.clone(), port);
    let run = set
        .renew(&[
            "apiserver",
            "--restart",
            "--manifests-dir",
            manifests.to_str().unwrap(),
            "--wait-timeout",
            "30s",
        ])
        .await;
    assert_eq!(run.code, 0, "{}", show(&run));
    let j = run.json();
    let r = &j["restarted"][0];
    assert_eq!(r["component"], "kube-apiserver");
    assert_eq!(r["endpoint"], format!("https://127.0.0.1:{port}/livez"));
    assert_eq!(r["wasRunning"], true);
    assert_eq!(r["health"], "HTTP 200");
    // The restarted server presents the renewed apiserver.crt (not verified, but compared).
    assert_ne!(std::fs::read(set.pki.join("apiserver.crt")).unwrap(), old);
    assert_eq!(r["servesRenewedCert"], true);
    assert_eq!(apiserver.starts(), 2);
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), text);
    let heads = apiserver.heads();
    let probe = heads.last().expect("the health GET");
    assert!(probe.starts_with("GET /livez HTTP/1.1\r\n"), "{probe}");
    assert!(
        probe.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n"))
            && probe.contains("\r\nX-Probe: yes\r\n"),
        "{probe}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_fails_when_the_https_health_path_does_not_answer_2xx() {
    let set = Set::build(Alg::P256, Form::Traditional, |_| 100);
    let manifests = set.root.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let manifest = manifests.join("kube-apiserver.yaml");
    let port = free_port();
    // The server completes every TLS handshake but answers 500 to /healthz.
    let text = apiserver_manifest(port, "/healthz");
    std::fs::write(&manifest, &text).unwrap();
    let apiserver = FakeApiserver::start(manifest.clone(), set.pki.clone(), port);
    let run = set
        .renew(&[
            "apiserver",
            "--restart",
            "--manifests-dir",
            manifests.to_str().unwrap(),
            "--wait-timeout",
            "3s",
        ])
        .await;
    assert_eq!(run.code, 1, "{}", show(&run));
    let line = run.assert_one_clear_line();
    for want in [
        "kube-apiserver: not healthy within 3s",
        &format!("https://127.0.0.1:{port}/healthz: HTTP 500"),
        "its manifest is back at",
    ] {
        assert!(line.contains(want), "{want:?} not in {line}");
    }
    assert_eq!(apiserver.starts(), 2);
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), text);
    assert!(!set.root.join("kube-apiserver.yaml.cpkeep-renew").exists());
    assert!(apiserver
        .heads()
        .iter()
        .any(|h| h.starts_with("GET /healthz HTTP/1.1\r\n")));
}

/// etcd's flags from a manifest written by `etcd_manifest`: its `- --flag=value` lines.
fn manifest_flags(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("- --"))
        .map(|f| format!("--{f}"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Modes and owners
// ---------------------------------------------------------------------------------------------

/// Runs cpkeep under `umask` (through `sh`, so the process creates its files as it would from a
/// shell or a cron job with that umask), with `env` and no CPKEEP_* variable from the test machine.
async fn cpkeep_with_umask(umask: &str, a: &[String], env: &[(&str, &str)]) -> Run {
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_cpkeep"))
        .args(a);
    for (k, _) in std::env::vars() {
        if k.starts_with("CPKEEP_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: Duration::ZERO,
    }
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn renew_and_recover_keep_each_files_mode_and_owner_whatever_the_umask() {
    use std::os::unix::fs::MetadataExt;
    let set = Set::build(Alg::P256, Form::Traditional, |_| 100);
    let api_crt = set.pki.join("apiserver.crt");
    let api_key = set.pki.join("apiserver.key");
    let etcd_crt = set.pki.join("etcd/server.crt");
    let admin = set.root.join("admin.conf");
    // A group-writable certificate (0664 is what umask 022 used to turn into 0644), a certificate
    // only its group may read, a group-readable key, a world-readable kubeconfig holding its key.
    for (p, mode) in [
        (&api_crt, 0o664),
        (&etcd_crt, 0o640),
        (&api_key, 0o640),
        (&admin, 0o644),
    ] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    // As root (CI), a group other than root's: the renewed file must keep it, or its readers lose it.
    let root = std::fs::metadata(&set.root).unwrap().uid() == 0;
    if root {
        std::os::unix::fs::chown(&etcd_crt, None, Some(65534)).unwrap();
    }
    let before = set.snapshot();
    let mut a = args(&["certs", "renew", "-o", "json"]);
    a.extend(set.dirs());

    // Killed after three replaced files (admin.conf, apiserver.key, apiserver.crt), under umask 077.
    let run = cpkeep_with_umask("077", &a, &[("CPKEEP_TEST_CRASH_AFTER_WRITES", "3")]).await;
    assert_ne!(run.code, 0, "{}", show(&run));
    assert_eq!(
        mode_of(&api_crt),
        0o664,
        "a replaced certificate keeps its mode"
    );
    assert_eq!(mode_of(&api_key), 0o600, "a key is 0600");
    assert_eq!(
        mode_of(&admin),
        0o600,
        "a kubeconfig holding client-key-data is 0600"
    );
    // --recover, under umask 077: the old content with the old mode (secrets never above 0600).
    let mut r = args(&["certs", "renew", "--recover", "-o", "json"]);
    r.extend(set.dirs());
    let run = cpkeep_with_umask("077", &r, &[]).await;
    assert_eq!(run.code, 0, "{}", show(&run));
    assert_eq!(run.json()["restored"].as_array().unwrap().len(), 3);
    let after = set.snapshot();
    for (rel, (bytes, mode)) in &before {
        let want = if rel == "admin.conf" || rel == "pki/apiserver.key" {
            mode & 0o600
        } else {
            *mode
        };
        assert_eq!(&after[rel].0, bytes, "{rel} is back");
        assert_eq!(
            after[rel].1, want,
            "{rel}: mode {:o}, want {want:o}",
            after[rel].1
        );
    }

    // A whole renewal under umask 022: every certificate keeps its mode exactly.
    let run = cpkeep_with_umask("022", &a, &[]).await;
    assert_eq!(run.code, 0, "{}", show(&run));
    let after = set.snapshot();
    for f in run.json()["filesWritten"].as_array().unwrap() {
        let path = PathBuf::from(f.as_str().unwrap());
        let rel = path.strip_prefix(&set.root).unwrap().display().to_string();
        let secret = rel.ends_with(".key") || rel.ends_with(".conf");
        let want = if secret { 0o600 } else { before[&rel].1 };
        assert_eq!(after[&rel].1, want, "{rel}: mode {:o}", after[&rel].1);
        assert_ne!(after[&rel].0, before[&rel].0, "{rel} was renewed");
    }
    assert_eq!(mode_of(&api_crt), 0o664);
    assert_eq!(mode_of(&etcd_crt), 0o640);
    if root {
        assert_eq!(std::fs::metadata(&etcd_crt).unwrap().gid(), 65534);
    }
}

// ---------------------------------------------------------------------------------------------
// One renewal at a time
// ---------------------------------------------------------------------------------------------

/// The cpkeep command with `a` and `env`, without CPKEEP_* variables from the test machine.
fn cpkeep_command(a: &[String], env: &[(&str, String)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cpkeep"));
    cmd.args(a);
    for (k, _) in std::env::vars() {
        if k.starts_with("CPKEEP_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

fn run_of(out: std::process::Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: Duration::ZERO,
    }
}

/// Every renewed pair on disk is consistent: `certs check` finds every renewable certificate OK —
/// its key matching, chained to its CA — and every journal says done. (The sets have no service-account
/// pair, so the verdict itself is a WARNING.)
async fn assert_consistent(set: &Set) {
    let mut c = args(&["certs", "check", "-o", "json"]);
    c.extend(set.dirs());
    let check = cpkeep(&c).await;
    assert_eq!(check.code, 1, "{}", show(&check));
    let v = check.json();
    assert_eq!(
        v["reasons"].as_array().unwrap().len(),
        1,
        "{}",
        v["reasons"]
    );
    for c in v["certificates"].as_array().unwrap() {
        if c["renewable"] == true {
            assert_eq!(c["status"], "OK", "{c}");
            assert_eq!(c["keyMatches"], true, "{c}");
            assert_eq!(c["chainsToCA"], true, "{c}");
        }
    }
    for d in std::fs::read_dir(set.backup_root()).unwrap().flatten() {
        let j: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.path().join("cpkeep-renew.json")).unwrap())
                .unwrap();
        assert_eq!(j["state"], "done", "{}", d.path().display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_renewal_while_one_is_replacing_files_is_refused_and_changes_nothing() {
    let set = Set::build(Alg::P256, Form::Traditional, |_| 100);
    // Outside the tree: the snapshots below read every file in it, and a FIFO would block them.
    let fifo_dir = tempfile::tempdir().unwrap();
    let fifo = fifo_dir.path().join("pause.fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success(), "mkfifo");
    let mut a = args(&["certs", "renew", "-o", "json"]);
    a.extend(set.dirs());
    // The first run stops after three replaced files (admin.conf, apiserver.key, apiserver.crt) —
    // half of the apiserver pair would be new without the third — and waits on the FIFO.
    let first = cpkeep_command(
        &a,
        &[(
            "CPKEEP_TEST_PAUSE_AFTER_WRITES",
            format!("3:{}", fifo.display()),
        )],
    )
    .spawn()
    .unwrap();
    // Opening the FIFO for writing returns once the first run has opened it for reading: then it
    // is paused, holding its lock. (A thread, not a blocking task: should the run never get there,
    // the timeout fails the test without leaving the runtime waiting on the open.)
    let (tx, rx) = tokio::sync::oneshot::channel();
    let path = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::OpenOptions::new().write(true).open(path));
    });
    let mut writer = tokio::time::timeout(Duration::from_secs(60), rx)
        .await
        .expect("the first renewal never reached its pause")
        .unwrap()
        .unwrap();
    let during = set.snapshot();
    let backups = std::fs::read_dir(set.backup_root()).unwrap().count();
    assert_eq!(backups, 1);
    // A second renewal, its dry run and a recovery, now: each refused, one clear line, exit 2.
    for extra in [&[][..], &["--dry-run"][..], &["--recover"][..]] {
        let run = set.renew(extra).await;
        assert_eq!(run.code, 2, "{extra:?}: {}", show(&run));
        let line = run.assert_one_clear_line();
        assert!(
            line.contains("another `cpkeep certs renew` is running on")
                && line.contains(&set.pki.display().to_string())
                && line.contains("nothing was written"),
            "{line}"
        );
        assert!(run.stdout.is_empty(), "{}", run.stdout);
    }
    // Nothing was touched by them: the files are as the first run left them, and no second backup.
    assert_eq!(set.snapshot(), during);
    assert_eq!(std::fs::read_dir(set.backup_root()).unwrap().count(), 1);
    // Let the first run go on: it finishes, and every pair on disk is consistent.
    use std::io::Write;
    writer.write_all(b"x").unwrap();
    drop(writer);
    let first = tokio::time::timeout(Duration::from_secs(120), first.wait_with_output())
        .await
        .expect("the first renewal did not finish once let go")
        .unwrap();
    let first = run_of(first);
    assert_eq!(first.code, 0, "{}", show(&first));
    assert_eq!(first.json()["renewed"].as_array().unwrap().len(), 11);
    assert_consistent(&set).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_renewals_started_at_once_never_both_replace_the_files() {
    let set = Set::build(Alg::Rsa2048, Form::Traditional, |_| 100);
    let mut a = args(&["certs", "renew", "-o", "json"]);
    a.extend(set.dirs());
    for round in 0..3 {
        let (x, y) = tokio::join!(
            cpkeep_command(&a, &[]).output(),
            cpkeep_command(&a, &[]).output()
        );
        let runs = [run_of(x.unwrap()), run_of(y.unwrap())];
        let renewed = runs.iter().filter(|r| r.code == 0).count();
        // Either they overlapped and one was refused, or one ran after the other: never both at once.
        assert!(renewed >= 1, "round {round}: {}", show(&runs[0]));
        for r in runs.iter().filter(|r| r.code != 0) {
            assert_eq!(r.code, 2, "round {round}: {}", show(r));
            assert!(
                r.assert_one_clear_line()
                    .contains("another `cpkeep certs renew` is running on"),
                "{}",
                r.stderr
            );
        }
        assert_consistent(&set).await;
    }
}
