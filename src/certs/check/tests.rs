//! Unit tests of the check on generated kubeadm PKI sets (RSA 2048 and ECDSA P-256, PKCS#1/SEC1 and
//! PKCS#8 keys, near-expiry and expired leaves, an external CA, a kubelet.conf file reference,
//! super-admin.conf present and absent, mismatched keys, a leaf signed by another CA, unreadable and
//! unparseable files) and on the real kubeadm v1.16 fixture.

use std::path::{Path, PathBuf};

use chrono::TimeZone;
use time::{Duration as TDuration, OffsetDateTime};

use super::*;
use crate::certs::inventory::{CaId, ProblemReason};
use crate::certs::testpki::{TestKeyAlgorithm, TestKeyEncoding, TestPki, TestPkiOptions};
use crate::certs::{prometheus, webhook};

fn fixture() -> PkiLayout {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/kubeadm-v1.16");
    PkiLayout::new(root.join("pki"), root)
}

fn gen(opts: TestPkiOptions) -> (tempfile::TempDir, TestPki) {
    let dir = tempfile::tempdir().unwrap();
    let layout = PkiLayout::new(dir.path().join("pki"), dir.path().to_path_buf());
    let pki = TestPki::generate(&layout, opts).unwrap();
    (dir, pki)
}

fn run(layout: &PkiLayout) -> CheckReport {
    check(&CheckOptions::new(layout.clone())).unwrap()
}

fn row<'a>(r: &'a CheckReport, name: &str) -> &'a CertStatus {
    r.all()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no row {name}"))
}

const KUBEADM_NAMES: [&str; 11] = [
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

#[test]
fn kubeadm_presentation_rules() {
    assert_eq!(short_human_duration(-2), "<invalid>");
    assert_eq!(short_human_duration(-1), "0s");
    assert_eq!(short_human_duration(59), "59s");
    assert_eq!(short_human_duration(3599), "59m");
    assert_eq!(short_human_duration(86_399), "23h");
    assert_eq!(short_human_duration(364 * 86_400 + 3600), "364d");
    assert_eq!(short_human_duration(365 * 86_400), "1y");
    assert_eq!(short_human_duration(3650 * 86_400), "10y");
    let t = Utc.with_ymd_and_hms(2027, 11, 25, 20, 0, 59).unwrap();
    assert_eq!(kubeadm_date(t), "Nov 25, 2027 20:00 UTC");
    let t = Utc.with_ymd_and_hms(2020, 1, 2, 3, 4, 0).unwrap();
    assert_eq!(kubeadm_date(t), "Jan 02, 2020 03:04 UTC");
}

#[test]
fn fixture_v1_16_leaves_expired_cas_valid() {
    let mut opts = CheckOptions::new(fixture());
    opts.now = Utc.with_ymd_and_hms(2025, 11, 25, 12, 0, 0).unwrap();
    let r = check(&opts).unwrap();
    assert_eq!(r.verdict, Verdict::Critical);
    assert_eq!(r.kind, "CertificateExpirationInfo");
    assert_eq!(r.api_version, "output.kubeadm.k8s.io/v1alpha3");
    let names: Vec<&str> = r.certificates.iter().map(|c| c.name.as_str()).collect();
    let mut expected: Vec<&str> = KUBEADM_NAMES.to_vec();
    expected.insert(9, "kubelet.conf");
    assert_eq!(names, expected);
    for c in &r.certificates {
        if c.name == "super-admin.conf" {
            assert_eq!(c.status, CertState::Missing);
            assert!(c.missing);
            continue;
        }
        assert_eq!(c.status, CertState::Expired, "{}: {:?}", c.name, c.reasons);
        assert_eq!(c.chains_to_ca, Some(true), "{}", c.name);
        assert_eq!(c.key_matches, Some(true), "{}", c.name);
        assert!(c.residual_time < 0);
        assert_eq!(short_human_duration(c.residual_time), "<invalid>");
        let exp = c.expiration_date.unwrap();
        assert_eq!(
            exp.format("%Y-%m-%d").to_string(),
            "2020-12-25",
            "{}",
            c.name
        );
        assert_eq!(c.key_algorithm.as_deref(), Some("RSA-2048"));
        assert!(!c.externally_managed);
    }
    assert_eq!(
        row(&r, "apiserver").expiration_date.map(kubeadm_date),
        Some("Dec 25, 2020 04:06 UTC".to_string())
    );
    assert_eq!(
        row(&r, "apiserver").serial.as_deref(),
        Some("13068f30b5271ba1")
    );
    assert_eq!(row(&r, "etcd-server").ca_name.as_deref(), Some("etcd-ca"));
    assert!(row(&r, "admin.conf").embedded);
    assert_eq!(
        row(&r, "admin.conf").subject.as_deref(),
        Some("O=system:masters, CN=kubernetes-admin")
    );
    let cas: Vec<&str> = r
        .certificate_authorities
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(cas, ["ca", "etcd-ca", "front-proxy-ca"]);
    for ca in &r.certificate_authorities {
        assert_eq!(ca.status, CertState::Ok, "{}: {:?}", ca.name, ca.reasons);
        assert_eq!(ca.key_matches, Some(true));
        assert_eq!(ca.ca_name, None);
        assert_eq!(short_human_duration(ca.residual_time), "4y");
        assert_eq!(
            ca.expiration_date.map(|d| d.format("%Y-%m-%d").to_string()),
            Some("2029-12-23".to_string())
        );
    }
    assert_eq!(r.service_account.status, CertState::Ok);
    assert_eq!(r.service_account.key_matches, Some(true));
    // A missing super-admin.conf is not a finding; the 11 expired leaves are.
    assert_eq!(r.findings.len(), 11, "{:?}", r.reasons);
    assert!(r.findings.iter().all(|f| f.severity == Verdict::Critical));
}

#[test]
fn rsa_traditional_set_with_super_admin_is_ok() {
    let (_d, pki) = gen(TestPkiOptions {
        algorithm: TestKeyAlgorithm::Rsa2048,
        encoding: TestKeyEncoding::Traditional,
        ..TestPkiOptions::default()
    });
    let key = std::fs::read_to_string(pki.layout.key_path("apiserver")).unwrap();
    assert!(key.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let r = run(&pki.layout);
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.reasons);
    for c in r.all() {
        assert_eq!(c.status, CertState::Ok, "{}: {:?}", c.name, c.reasons);
        assert_eq!(c.key_algorithm.as_deref(), Some("RSA-2048"), "{}", c.name);
        assert_eq!(c.key_matches, Some(true), "{}", c.name);
    }
    assert_eq!(row(&r, "super-admin.conf").status, CertState::Ok);
    assert_eq!(
        short_human_duration(row(&r, "apiserver").residual_time),
        "364d"
    );
    assert_eq!(short_human_duration(row(&r, "ca").residual_time), "9y");
    let api = row(&r, "apiserver");
    assert!(api.sans.contains(&"kubernetes.default.svc".to_string()));
    assert!(api.sans.contains(&"10.96.0.1".to_string()));
}

#[test]
fn ecdsa_pkcs8_set_without_super_admin_is_ok() {
    let (_d, pki) = gen(TestPkiOptions {
        algorithm: TestKeyAlgorithm::EcdsaP256,
        encoding: TestKeyEncoding::Pkcs8,
        super_admin: false,
        ..TestPkiOptions::default()
    });
    let key = std::fs::read_to_string(pki.layout.key_path("etcd/server")).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
    let r = run(&pki.layout);
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.reasons);
    let sa = row(&r, "super-admin.conf");
    assert_eq!(sa.status, CertState::Missing);
    assert!(sa.missing);
    assert_eq!(
        row(&r, "etcd-peer").key_algorithm.as_deref(),
        Some("ECDSA-P256")
    );
    assert_eq!(
        r.service_account.key_algorithm.as_deref(),
        Some("ECDSA-P256")
    );
}

#[test]
fn ecdsa_sec1_keys_load() {
    let (_d, pki) = gen(TestPkiOptions::default());
    let key = std::fs::read_to_string(pki.layout.key_path("ca")).unwrap();
    assert!(key.starts_with("-----BEGIN EC PRIVATE KEY-----"));
    let r = run(&pki.layout);
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.reasons);
}

#[test]
fn thresholds_near_expiry_and_expired() {
    let (_d, pki) = gen(TestPkiOptions::default());
    let now = OffsetDateTime::now_utc();
    pki.reissue(
        "apiserver",
        now - TDuration::days(300),
        now + TDuration::days(20),
    )
    .unwrap();
    pki.reissue(
        "etcd-server",
        now - TDuration::days(300),
        now + TDuration::days(3),
    )
    .unwrap();
    pki.reissue(
        "admin.conf",
        now - TDuration::days(400),
        now - TDuration::days(2),
    )
    .unwrap();
    let r = run(&pki.layout);
    assert_eq!(row(&r, "apiserver").status, CertState::Warning);
    assert_eq!(row(&r, "etcd-server").status, CertState::Critical);
    assert_eq!(row(&r, "admin.conf").status, CertState::Expired);
    assert_eq!(row(&r, "scheduler.conf").status, CertState::Ok);
    assert_eq!(r.verdict, Verdict::Critical);
    assert_eq!(r.findings[0].severity, Verdict::Critical);
    // Warning only.
    pki.reissue("etcd-server", now, now + TDuration::days(365))
        .unwrap();
    pki.reissue("admin.conf", now, now + TDuration::days(365))
        .unwrap();
    let r = run(&pki.layout);
    assert_eq!(r.verdict, Verdict::Warning, "{:?}", r.reasons);
    assert!(
        r.reasons[0].starts_with("apiserver expires in 19d"),
        "{:?}",
        r.reasons
    );
    // Tighter thresholds make it OK.
    let mut opts = CheckOptions::new(pki.layout.clone());
    opts.warn = Duration::days(10);
    opts.critical = Duration::days(2);
    assert_eq!(check(&opts).unwrap().verdict, Verdict::Ok);
    // The webhook alerts exactly the certificates at or past the warning threshold.
    let alerts = webhook::alerts(&run(&pki.layout), "node-a");
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].name, "apiserver");
    assert_eq!(alerts[0].severity, Verdict::Warning);
    assert!(alerts[0]
        .text
        .starts_with("cpkeep on node-a: apiserver WARNING"));
}

#[test]
fn external_ca_is_detected_per_ca() {
    let (_d, pki) = gen(TestPkiOptions::default());
    std::fs::remove_file(pki.layout.key_path("ca")).unwrap();
    let r = run(&pki.layout);
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.reasons);
    assert!(row(&r, "ca").externally_managed);
    assert!(!row(&r, "etcd-ca").externally_managed);
    assert!(!row(&r, "front-proxy-ca").externally_managed);
    for name in [
        "apiserver",
        "apiserver-kubelet-client",
        "admin.conf",
        "kubelet.conf",
    ] {
        assert!(row(&r, name).externally_managed, "{name}");
    }
    for name in ["etcd-server", "front-proxy-client"] {
        assert!(!row(&r, name).externally_managed, "{name}");
    }
    assert_eq!(row(&r, "ca").key_matches, None);
}

#[test]
fn kubelet_conf_file_reference() {
    let dir = tempfile::tempdir().unwrap();
    let kubelet = dir.path().join("var/lib/kubelet/pki");
    let layout = PkiLayout::new(dir.path().join("pki"), dir.path().join("etc"));
    let pki = TestPki::generate(
        &layout,
        TestPkiOptions {
            kubelet_pki_dir: Some(kubelet.clone()),
            ..TestPkiOptions::default()
        },
    )
    .unwrap();
    let r = run(&pki.layout);
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.reasons);
    let k = row(&r, "kubelet.conf");
    let pem = kubelet.join("kubelet-client-current.pem");
    assert_eq!(k.path, pem.display().to_string());
    assert_eq!(
        k.kubeconfig.as_deref(),
        Some(
            layout
                .kubeconfig_path("kubelet.conf")
                .display()
                .to_string()
                .as_str()
        )
    );
    assert!(!k.embedded);
    assert!(!k.renewable);
    assert_eq!(k.key_matches, Some(true));
    assert_eq!(k.chains_to_ca, Some(true));
    assert_eq!(
        k.subject.as_deref(),
        Some("O=system:nodes, CN=system:node:master1")
    );
    // The referenced file gone (a copy of /etc/kubernetes, a pod): the kubelet's business, no
    // finding, and the verdict is the other rows'.
    std::fs::remove_file(&pem).unwrap();
    let r = run(&pki.layout);
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.reasons);
    let k = row(&r, "kubelet.conf");
    assert_eq!(k.status, CertState::Managed);
    assert_eq!(k.severity, Verdict::Ok);
    assert!(k.problems.is_empty());
    assert!(
        r.notes.iter().any(|n| n.contains(&format!(
            "refers to {}, which is not here: the kubelet rotates",
            pem.display()
        ))),
        "{:?}",
        r.notes
    );
    assert_eq!(r.problem_total(), 0);
    // With an expired admin.conf beside it, the verdict is CRITICAL, not UNKNOWN.
    let now = OffsetDateTime::now_utc();
    pki.reissue(
        "admin.conf",
        now - TDuration::days(400),
        now - TDuration::days(1),
    )
    .unwrap();
    let r = run(&pki.layout);
    assert_eq!(r.verdict, Verdict::Critical, "{:?}", r.reasons);
    assert_eq!(r.findings.len(), 1, "{:?}", r.reasons);
    assert!(r.reasons[0].starts_with("admin.conf expired on "));
}

#[test]
fn a_missing_referenced_file_of_another_kubeconfig_is_a_warning() {
    let (_d, pki) = gen(TestPkiOptions::default());
    let conf = pki.layout.kubeconfig_path("scheduler.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    let gone = pki.layout.cert_dir.join("scheduler-client.pem");
    let edited: String = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("client-certificate-data:") {
                format!("    client-certificate: {}", gone.display())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&conf, edited + "\n").unwrap();
    let r = run(&pki.layout);
    assert_eq!(r.verdict, Verdict::Warning, "{:?}", r.reasons);
    let s = row(&r, "scheduler.conf");
    assert_eq!(s.status, CertState::Unreadable);
    assert_eq!(s.problems, [ProblemReason::NotFound]);
    assert!(
        r.reasons[0].ends_with(&format!(
            "refers to {}, which does not exist (not checked)",
            gone.display()
        )),
        "{:?}",
        r.reasons
    );
}

#[test]
fn mismatched_leaf_key_is_critical() {
    let (_d, pki) = gen(TestPkiOptions::default());
    let other = pki.new_key_pem().unwrap();
    std::fs::write(pki.layout.key_path("apiserver"), &other).unwrap();
    let r = run(&pki.layout);
    let api = row(&r, "apiserver");
    assert_eq!(api.status, CertState::Critical);
    assert_eq!(api.key_matches, Some(false));
    assert_eq!(api.chains_to_ca, Some(true));
    assert_eq!(r.verdict, Verdict::Critical);
    assert!(
        r.reasons[0].contains("apiserver.key does not match the certificate"),
        "{:?}",
        r.reasons
    );
}

#[test]
fn mismatched_ca_key_is_critical() {
    let (_d, pki) = gen(TestPkiOptions::default());
    std::fs::write(
        pki.layout.key_path("front-proxy-ca"),
        pki.new_key_pem().unwrap(),
    )
    .unwrap();
    let r = run(&pki.layout);
    let ca = row(&r, "front-proxy-ca");
    assert_eq!(ca.status, CertState::Critical);
    assert_eq!(ca.key_matches, Some(false));
    assert_eq!(r.verdict, Verdict::Critical);
    assert!(r.reasons[0].contains("the CA key"), "{:?}", r.reasons);
}

#[test]
fn leaf_signed_by_another_ca_is_critical() {
    let (_d, pki) = gen(TestPkiOptions {
        algorithm: TestKeyAlgorithm::Rsa2048,
        ..TestPkiOptions::default()
    });
    pki.reissue_by_foreign_ca("front-proxy-client").unwrap();
    let r = run(&pki.layout);
    let fp = row(&r, "front-proxy-client");
    assert_eq!(fp.status, CertState::Critical);
    assert_eq!(fp.chains_to_ca, Some(false));
    assert_eq!(fp.key_matches, Some(true));
    assert!(
        r.reasons[0].starts_with(
            "front-proxy-client is not signed by front-proxy-ca: its signature does not verify"
        ),
        "{:?}",
        r.reasons
    );
    // A whole new etcd CA: every etcd leaf stops chaining.
    pki.write_ca(CaId::EtcdCa, "").unwrap();
    let r = run(&pki.layout);
    for name in [
        "etcd-server",
        "etcd-peer",
        "etcd-healthcheck-client",
        "apiserver-etcd-client",
    ] {
        assert_eq!(row(&r, name).chains_to_ca, Some(false), "{name}");
    }
}

#[test]
fn broken_files_are_critical_unreadable_ones_a_warning_one_line_each() {
    let (_d, pki) = gen(TestPkiOptions::default());
    let l = &pki.layout;
    std::fs::write(
        l.cert_path("apiserver"),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(l.key_path("etcd/peer"), "garbage").unwrap();
    std::fs::write(
        l.kubeconfig_path("scheduler.conf"),
        "users: [\n  - {name: x\n",
    )
    .unwrap();
    // Unreadable: a directory where a file should be (root reads any file, so permissions would not do).
    std::fs::remove_file(l.cert_path("front-proxy-client")).unwrap();
    std::fs::create_dir(l.cert_path("front-proxy-client")).unwrap();
    std::fs::write(l.sa_pub_path(), "nope").unwrap();
    let r = run(l);
    assert_eq!(r.verdict, Verdict::Critical, "{:?}", r.reasons);
    assert!(r.unknown_reasons().is_empty());
    let line = |p: PathBuf| {
        let p = p.display().to_string();
        r.findings
            .iter()
            .find(|f| f.message.contains(&p))
            .unwrap_or_else(|| panic!("no line for {p} in {:?}", r.reasons))
            .clone()
    };
    let f = line(l.cert_path("apiserver"));
    assert_eq!(f.severity, Verdict::Critical);
    assert!(f
        .message
        .ends_with("apiserver.crt: malformed PEM: bad base64 in a PEM block"));
    let f = line(l.key_path("etcd/peer"));
    assert_eq!(f.severity, Verdict::Critical);
    assert!(f
        .message
        .ends_with("peer.key: no PEM private key block found"));
    let f = line(l.kubeconfig_path("scheduler.conf"));
    assert_eq!(f.severity, Verdict::Critical);
    assert!(f
        .message
        .contains("scheduler.conf: not a kubeconfig: not YAML"));
    let f = line(l.cert_path("front-proxy-client"));
    assert_eq!(f.severity, Verdict::Warning);
    assert!(f.message.starts_with("cannot read "), "{}", f.message);
    assert!(f
        .message
        .ends_with("front-proxy-client.crt: is a directory (not checked)"));
    let f = line(l.sa_pub_path());
    assert_eq!(f.severity, Verdict::Critical);
    assert!(f.message.ends_with("sa.pub: no PEM PUBLIC KEY block found"));
    assert_eq!(r.findings.len(), 5, "{:?}", r.reasons);
    for f in &r.findings {
        assert!(!f.message.contains('\n'), "{}", f.message);
    }
    assert_eq!(row(&r, "apiserver").status, CertState::Error);
    assert_eq!(row(&r, "front-proxy-client").status, CertState::Unreadable);
    // The peer certificate was read; only its key is broken.
    assert_eq!(row(&r, "etcd-peer").status, CertState::Error);
    assert!(row(&r, "etcd-peer").expiration_date.is_some());
    // Every other row was judged as usual.
    assert_eq!(row(&r, "etcd-server").status, CertState::Ok);
    // The counts the textfile gets.
    let counts: Vec<(SourceKind, ProblemReason, usize)> = r
        .problems
        .iter()
        .map(|p| (p.source_kind, p.reason, p.count))
        .collect();
    assert_eq!(
        counts,
        [
            (SourceKind::File, ProblemReason::ReadFailed, 1),
            (SourceKind::File, ProblemReason::BadPem, 3),
            (SourceKind::Kubeconfig, ProblemReason::BadKubeconfig, 1),
        ]
    );
    let text = prometheus::render(&r);
    assert!(text.contains("\nx509_read_errors 5\n"), "{text}");
    assert!(text.contains("x509_source_errors_total{reason=\"bad_pem\",source_kind=\"file\",source_name=\"cpkeep-certs-check\"} 3\n"), "{text}");
    // Certificate files that could not be read or parsed (not etcd-peer: its key is the problem).
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("x509_cert_error{"))
        .collect();
    assert_eq!(errors.len(), 3, "{text}");
    // The counter continues from the file it replaces.
    let again = prometheus::render_after(&r, &prometheus::previous_source_errors(&text));
    assert!(
        again.contains("source_kind=\"kubeconfig\",source_name=\"cpkeep-certs-check\"} 2\n"),
        "{again}"
    );
    assert!(again.contains("\nx509_read_errors 5\n"), "{again}");
}

#[test]
fn nothing_to_read_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pki")).unwrap();
    let layout = PkiLayout::new(dir.path().join("pki"), dir.path().to_path_buf());
    let r = run(&layout);
    assert_eq!(r.verdict, Verdict::Unknown);
    assert_eq!(r.unknown_reasons().len(), 1);
    assert!(
        r.unknown_reasons()[0]
            .starts_with("nothing could be evaluated: none of kubeadm's files under "),
        "{:?}",
        r.reasons
    );
}

#[test]
fn etcd_over_plain_http_needs_no_etcd_certificates() {
    let (_d, pki) = gen(TestPkiOptions::default());
    let l = &pki.layout;
    for base in [
        "etcd/ca",
        "etcd/server",
        "etcd/peer",
        "etcd/healthcheck-client",
        "apiserver-etcd-client",
    ] {
        std::fs::remove_file(l.cert_path(base)).unwrap();
        std::fs::remove_file(l.key_path(base)).unwrap();
    }
    // Without a manifest saying otherwise, they are expected: five warnings.
    let r = run(l);
    assert_eq!(r.verdict, Verdict::Warning);
    assert_eq!(r.findings.len(), 5, "{:?}", r.reasons);
    let manifests = l.kubeconfig_dir.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let manifest = |client: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - command:\n    - etcd\n    - --name=master1\n    - --data-dir=/var/lib/etcd\n    - --advertise-client-urls={client}://10.0.0.10:2379\n    - --initial-advertise-peer-urls=http://10.0.0.10:2380\n    - --listen-client-urls={client}://127.0.0.1:2379,{client}://10.0.0.10:2379\n    - --listen-peer-urls=http://10.0.0.10:2380\n{extra}    name: etcd\n"
        )
    };
    std::fs::write(manifests.join("etcd.yaml"), manifest("http", "")).unwrap();
    let r = run(l);
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.reasons);
    assert!(matches!(r.etcd_tls, EtcdTls::PlainHttp { .. }));
    assert_eq!(r.notes.len(), 5, "{:?}", r.notes);
    assert!(r.notes.iter().all(|n| n.contains("etcd serves plain http")));
    assert_eq!(row(&r, "etcd-ca").status, CertState::Missing);
    assert_eq!(row(&r, "etcd-ca").severity, Verdict::Ok);
    // https clients, or certificate flags: the certificates are expected again.
    std::fs::write(manifests.join("etcd.yaml"), manifest("https", "")).unwrap();
    assert_eq!(run(l).verdict, Verdict::Warning);
    std::fs::write(
        manifests.join("etcd.yaml"),
        manifest(
            "http",
            "    - --peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt\n",
        ),
    )
    .unwrap();
    assert_eq!(run(l).verdict, Verdict::Warning);
}

#[test]
fn a_missing_kubeconfig_dir_is_an_error() {
    let (d, pki) = gen(TestPkiOptions::default());
    let layout = PkiLayout::new(&pki.layout.cert_dir, d.path().join("nope"));
    let e = check(&CheckOptions::new(layout)).unwrap_err().to_string();
    assert!(
        e.starts_with("kubeconfig directory ")
            && e.ends_with("nope does not exist (set --kubeconfig-dir to where admin.conf is)"),
        "{e}"
    );
}

#[test]
fn a_missing_cert_dir_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let layout = PkiLayout::new(dir.path().join("nope"), dir.path().to_path_buf());
    let e = check(&CheckOptions::new(layout)).unwrap_err().to_string();
    assert!(
        e.starts_with("certificate directory ") && e.contains("nope does not exist"),
        "{e}"
    );
}

#[test]
fn no_secret_in_json_or_textfile() {
    let (_d, pki) = gen(TestPkiOptions {
        algorithm: TestKeyAlgorithm::Rsa2048,
        ..TestPkiOptions::default()
    });
    let admin = std::fs::read_to_string(pki.layout.kubeconfig_path("admin.conf")).unwrap();
    let key_b64 = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("client-key-data: "))
        .unwrap()
        .to_string();
    let api_key = std::fs::read_to_string(pki.layout.key_path("apiserver")).unwrap();
    let api_key_body = api_key.lines().nth(1).unwrap().to_string();
    // Break one key so errors are in the report too.
    std::fs::write(
        pki.layout.key_path("etcd/server"),
        api_key.replace('A', "*"),
    )
    .unwrap();
    let r = run(&pki.layout);
    let json = serde_json::to_string(&r).unwrap();
    let text = prometheus::render(&r);
    let dbg = format!("{r:?}");
    for out in [&json, &text, &dbg] {
        assert!(!out.contains(&key_b64[..40]));
        assert!(!out.contains(&api_key_body));
        assert!(!out.contains("PRIVATE KEY-----"));
    }
}

#[test]
fn prometheus_textfile_uses_exporter_labels() {
    let mut opts = CheckOptions::new(fixture());
    opts.now = Utc.with_ymd_and_hms(2025, 11, 25, 12, 0, 0).unwrap();
    let r = check(&opts).unwrap();
    let text = prometheus::render(&r);
    for name in [
        "x509_cert_not_after",
        "x509_cert_not_before",
        "x509_cert_expired",
    ] {
        assert!(text.contains(&format!("# TYPE {name} gauge\n")), "{text}");
        assert!(text.contains(&format!("# HELP {name} ")), "{text}");
        // 11 leaves + 3 CAs; super-admin.conf is missing.
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with(&format!("{name}{{")))
                .count(),
            14
        );
    }
    let root = fixture().kubeconfig_dir;
    let admin = format!(
        "x509_cert_expired{{embedded_key=\"kubernetes-admin\",embedded_kind=\"user\",filename=\"admin.conf\",filepath=\"{}\",issuer_CN=\"kubernetes\",serial_number=\"",
        root.join("admin.conf").display()
    );
    assert!(
        text.lines().any(|l| l.starts_with(&admin)
            && l.ends_with("subject_CN=\"kubernetes-admin\",subject_O=\"system:masters\"} 1")),
        "{text}"
    );
    // apiserver's serial 0x13068F30B5271BA1 in decimal.
    let api = format!(
        "x509_cert_not_after{{filename=\"apiserver.crt\",filepath=\"{}\",issuer_CN=\"kubernetes\",serial_number=\"{}\",subject_CN=\"kube-apiserver\"}} ",
        root.join("pki/apiserver.crt").display(),
        u64::from_str_radix("13068F30B5271BA1", 16).unwrap()
    );
    let line = text
        .lines()
        .find(|l| l.starts_with(&api))
        .unwrap_or_else(|| panic!("{text}"));
    let value: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(
        value,
        row(&r, "apiserver").expiration_date.unwrap().timestamp()
    );
    assert!(text.contains("x509_cert_expired{filename=\"ca.crt\""));
    assert!(text
        .lines()
        .any(|l| l.starts_with("x509_cert_expired{filename=\"ca.crt\"") && l.ends_with(" 0")));
}
