//! `cpkeep certs check` end to end: the real kubeadm v1.16 fixture and generated sets, every expiry
//! cross-checked with real `openssl x509 -enddate`, the Prometheus textfile parsed by a strict
//! exposition-format parser, the webhook received by a local HTTP server, and bad inputs giving one
//! clear line and exit 3.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use cpkeep::certs::testpki::{TestKeyAlgorithm, TestKeyEncoding, TestPki, TestPkiOptions};
use cpkeep::certs::PkiLayout;
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{cpkeep, cpkeep_unprivileged, Run};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/kubeadm-v1.16")
}

fn args(layout: &PkiLayout, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "certs".into(),
        "check".into(),
        "--cert-dir".into(),
        layout.cert_dir.display().to_string(),
        "--kubeconfig-dir".into(),
        layout.kubeconfig_dir.display().to_string(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn fixture_layout() -> PkiLayout {
    PkiLayout::new(fixture_dir().join("pki"), fixture_dir())
}

fn generate(opts: TestPkiOptions) -> (tempfile::TempDir, TestPki) {
    let dir = tempfile::tempdir().unwrap();
    let layout = PkiLayout::new(dir.path().join("pki"), dir.path().join("kubernetes"));
    let pki = TestPki::generate(&layout, opts).unwrap();
    (dir, pki)
}

/// The openssl binary; fails the test with a message when it is missing.
fn openssl() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("openssl");
        if p.is_file() {
            return p;
        }
    }
    panic!("openssl not found in PATH: install it (Debian: apt-get install openssl); the certs tests cross-check against it");
}

/// `openssl x509 -enddate -noout` of a PEM file, as unix seconds.
fn openssl_enddate(pem: &Path) -> i64 {
    let out = Command::new(openssl())
        .args(["x509", "-enddate", "-noout", "-in"])
        .arg(pem)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl x509 {}: {}",
        pem.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let date = text
        .trim()
        .strip_prefix("notAfter=")
        .unwrap_or_else(|| panic!("unexpected openssl output {text:?}"));
    let date = date.split_whitespace().collect::<Vec<_>>().join(" ");
    chrono::NaiveDateTime::parse_from_str(&date, "%b %d %H:%M:%S %Y GMT")
        .unwrap_or_else(|e| panic!("openssl date {date:?}: {e}"))
        .and_utc()
        .timestamp()
}

/// The PEM file openssl should read for a report item: the file itself, or the decoded
/// client-certificate-data of a kubeconfig written to `scratch`.
fn pem_for(item: &Value, scratch: &Path) -> PathBuf {
    let path = PathBuf::from(item["path"].as_str().unwrap());
    if !item["embedded"].as_bool().unwrap_or(false) {
        return path;
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let b64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("client-certificate-data: "))
        .unwrap();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let out = scratch.join(format!("{}.pem", item["name"].as_str().unwrap()));
    std::fs::write(&out, pem).unwrap();
    out
}

/// Every present certificate's expirationDate equals openssl's notAfter.
fn cross_check_with_openssl(report: &Value) -> usize {
    let scratch = tempfile::tempdir().unwrap();
    let mut n = 0;
    for list in ["certificates", "certificateAuthorities"] {
        for item in report[list].as_array().unwrap() {
            if item["missing"].as_bool().unwrap() {
                continue;
            }
            let ours =
                chrono::DateTime::parse_from_rfc3339(item["expirationDate"].as_str().unwrap())
                    .unwrap()
                    .timestamp();
            let pem = pem_for(item, scratch.path());
            assert_eq!(
                ours,
                openssl_enddate(&pem),
                "{} ({})",
                item["name"],
                pem.display()
            );
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn fixture_v1_16_table_is_kubeadms_and_exit_is_critical() {
    let run = cpkeep(&args(&fixture_layout(), &[])).await;
    assert_eq!(
        run.code, 2,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let lines: Vec<&str> = run.stdout.lines().collect();
    let cols = |l: &str| {
        l.split("   ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        cols(lines[0]),
        [
            "CERTIFICATE",
            "EXPIRES",
            "RESIDUAL TIME",
            "CERTIFICATE AUTHORITY",
            "EXTERNALLY MANAGED"
        ]
    );
    let expect = [
        ("admin.conf", "ca"),
        ("apiserver", "ca"),
        ("apiserver-etcd-client", "etcd-ca"),
        ("apiserver-kubelet-client", "ca"),
        ("controller-manager.conf", "ca"),
        ("etcd-healthcheck-client", "etcd-ca"),
        ("etcd-peer", "etcd-ca"),
        ("etcd-server", "etcd-ca"),
        ("front-proxy-client", "front-proxy-ca"),
        ("kubelet.conf", "ca"),
        ("scheduler.conf", "ca"),
    ];
    for (i, (name, ca)) in expect.iter().enumerate() {
        let c = cols(lines[1 + i]);
        assert_eq!(c[0], *name);
        assert!(c[1].starts_with("Dec 25, 2020 04:06 UTC"), "{c:?}");
        assert_eq!(c[2..], ["<invalid>", ca, "no"]);
    }
    assert_eq!(lines[12].trim_end(), "!MISSING! super-admin.conf");
    assert_eq!(lines[13], "");
    assert_eq!(
        cols(lines[14]),
        [
            "CERTIFICATE AUTHORITY",
            "EXPIRES",
            "RESIDUAL TIME",
            "EXTERNALLY MANAGED"
        ]
    );
    for (i, ca) in ["ca", "etcd-ca", "front-proxy-ca"].iter().enumerate() {
        let c = cols(lines[15 + i]);
        assert_eq!(c[0], *ca);
        assert_eq!(c[1], "Dec 23, 2029 04:06 UTC");
        assert!(!c[2].is_empty() && c[2] != "<invalid>", "{c:?}");
        assert_eq!(c[3], "no");
    }
    assert!(run.stdout.contains("VERDICT: CRITICAL"));
    assert!(run
        .stdout
        .contains("CRITICAL  apiserver expired on Dec 25, 2020 04:06 UTC"));

    let run = cpkeep(&args(&fixture_layout(), &["-o", "json"])).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let v = run.json();
    assert_eq!(v["kind"], "CertificateExpirationInfo");
    assert_eq!(v["apiVersion"], "output.kubeadm.k8s.io/v1alpha3");
    assert_eq!(v["verdict"], "CRITICAL");
    for c in v["certificates"].as_array().unwrap() {
        if c["name"] == "super-admin.conf" {
            assert_eq!(c["missing"], true);
            assert_eq!(c["status"], "MISSING");
        } else {
            assert_eq!(c["status"], "EXPIRED", "{c}");
            assert_eq!(c["chainsToCA"], true, "{c}");
            assert_eq!(c["keyMatches"], true, "{c}");
            assert!(c["residualTime"].as_i64().unwrap() < 0);
            assert_eq!(c["externallyManaged"], false);
        }
    }
    for c in v["certificateAuthorities"].as_array().unwrap() {
        assert_eq!(c["status"], "OK", "{c}");
        assert!(c.get("caName").is_none());
    }
    assert_eq!(cross_check_with_openssl(&v), 14);
}

#[tokio::test]
async fn generated_sets_match_openssl() {
    let dir = tempfile::tempdir().unwrap();
    for (alg, enc, super_admin, kubelet_ref) in [
        (
            TestKeyAlgorithm::Rsa2048,
            TestKeyEncoding::Traditional,
            true,
            false,
        ),
        (
            TestKeyAlgorithm::EcdsaP256,
            TestKeyEncoding::Pkcs8,
            false,
            true,
        ),
    ] {
        let root = dir.path().join(format!("{alg:?}-{enc:?}"));
        let layout = PkiLayout::new(root.join("pki"), root.join("etc"));
        let pki = TestPki::generate(
            &layout,
            TestPkiOptions {
                algorithm: alg,
                encoding: enc,
                super_admin,
                kubelet_pki_dir: kubelet_ref.then(|| root.join("var/lib/kubelet/pki")),
                ..TestPkiOptions::default()
            },
        )
        .unwrap();
        let now = OffsetDateTime::now_utc();
        pki.reissue(
            "etcd-peer",
            now - Duration::days(360),
            now + Duration::days(5),
        )
        .unwrap();
        let run = cpkeep(&args(&layout, &["-o", "json"])).await;
        assert_eq!(run.code, 2, "{alg:?}: {}\n{}", run.stdout, run.stderr);
        let v = run.json();
        assert_eq!(
            v["reasons"].as_array().unwrap().len(),
            1,
            "{}",
            v["reasons"]
        );
        let peer = v["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "etcd-peer")
            .unwrap();
        assert_eq!(peer["status"], "CRITICAL");
        let n = cross_check_with_openssl(&v);
        assert_eq!(n, if super_admin { 15 } else { 14 });
        let kubelet = v["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "kubelet.conf")
            .unwrap();
        assert_eq!(kubelet["embedded"], !kubelet_ref);
        assert_eq!(kubelet["renewable"], false);
    }
}

/// One sample of an exposition-format file.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A strict parser of the Prometheus text format (what node-exporter's textfile collector reads):
/// HELP and TYPE at most once per family and before its samples, samples of a family contiguous, valid
/// metric and label names, quoted values with only `\\`, `\"` and `\n` escapes, a float value, no
/// duplicate series, a final newline.
fn parse_exposition(text: &str) -> Vec<Sample> {
    fn valid_name(s: &str, colon: bool) -> bool {
        let mut chars = s.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    }
    assert!(text.ends_with('\n'), "the textfile must end with a newline");
    let mut samples = Vec::new();
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut helped: HashSet<String> = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut seen: HashSet<String> = HashSet::new();
    for (no, line) in text.lines().enumerate() {
        let ctx = format!("line {}: {line:?}", no + 1);
        assert!(!line.is_empty(), "{ctx}: empty line");
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kw = parts.next().unwrap();
            let name = parts
                .next()
                .unwrap_or_else(|| panic!("{ctx}: no metric name"));
            let arg = parts.next().unwrap_or_else(|| panic!("{ctx}: no text"));
            assert!(valid_name(name, true), "{ctx}: bad metric name");
            assert!(!finished.contains(name), "{ctx}: family {name} reopened");
            match kw {
                "HELP" => assert!(helped.insert(name.to_string()), "{ctx}: second HELP"),
                "TYPE" => {
                    assert!(
                        ["gauge", "counter", "untyped", "summary", "histogram"].contains(&arg),
                        "{ctx}: bad type"
                    );
                    assert!(
                        typed.insert(name.to_string(), arg.to_string()).is_none(),
                        "{ctx}: second TYPE"
                    );
                }
                other => panic!("{ctx}: unknown comment keyword {other}"),
            }
            if current.as_deref() != Some(name) {
                if let Some(prev) = current.replace(name.to_string()) {
                    finished.insert(prev);
                }
            }
            continue;
        }
        assert!(!line.starts_with('#'), "{ctx}: comment without a space");
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("{ctx}: no value"));
        let name = &line[..name_end];
        assert!(valid_name(name, true), "{ctx}: bad metric name");
        assert!(
            matches!(
                typed.get(name).map(String::as_str),
                Some("gauge" | "counter")
            ),
            "{ctx}: no gauge or counter TYPE before samples"
        );
        assert_eq!(
            current.as_deref(),
            Some(name),
            "{ctx}: samples of a family are not contiguous"
        );
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(r) = rest.strip_prefix('{') {
            let mut r = r;
            loop {
                if let Some(after) = r.strip_prefix('}') {
                    r = after;
                    break;
                }
                let eq = r
                    .find('=')
                    .unwrap_or_else(|| panic!("{ctx}: label without ="));
                let lname = &r[..eq];
                assert!(valid_name(lname, false), "{ctx}: bad label name {lname:?}");
                r = r[eq + 1..]
                    .strip_prefix('"')
                    .unwrap_or_else(|| panic!("{ctx}: unquoted value"));
                let mut value = String::new();
                let mut chars = r.char_indices();
                let end = loop {
                    let (i, c) = chars
                        .next()
                        .unwrap_or_else(|| panic!("{ctx}: unterminated value"));
                    match c {
                        '"' => break i,
                        '\\' => match chars.next().map(|(_, c)| c) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            other => panic!("{ctx}: bad escape {other:?}"),
                        },
                        '\n' => panic!("{ctx}: raw newline"),
                        c => value.push(c),
                    }
                };
                assert!(
                    labels.insert(lname.to_string(), value).is_none(),
                    "{ctx}: duplicate label"
                );
                r = &r[end + 1..];
                if let Some(after) = r.strip_prefix(',') {
                    r = after;
                }
            }
            rest = r;
        }
        let value = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("{ctx}: no space before value"));
        assert!(!value.contains(' '), "{ctx}: timestamps are not expected");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{ctx}: bad value"));
        let key = format!("{name}{labels:?}");
        assert!(seen.insert(key), "{ctx}: duplicate series");
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    for name in typed.keys() {
        assert!(helped.contains(name), "{name} has no HELP");
    }
    samples
}

#[test]
fn the_strict_parser_rejects_bad_text() {
    for bad in [
        "x 1\n",
        "# TYPE x gauge\nx{a=b} 1\n",
        "# TYPE x gauge\nx{a=\"\\t\"} 1\n",
        "# TYPE x gauge\nx 1\n# TYPE y gauge\ny 1\nx 2\n",
        "# HELP x h\n# TYPE x gauge\nx 1",
    ] {
        assert!(
            std::panic::catch_unwind(|| parse_exposition(bad)).is_err(),
            "{bad:?} accepted"
        );
    }
}

#[tokio::test]
async fn prometheus_textfile_parses_and_agrees_with_the_report() {
    let (dir, pki) = generate(TestPkiOptions {
        algorithm: TestKeyAlgorithm::EcdsaP256,
        encoding: TestKeyEncoding::Traditional,
        super_admin: true,
        ..TestPkiOptions::default()
    });
    let now = OffsetDateTime::now_utc();
    pki.reissue(
        "apiserver",
        now - Duration::days(340),
        now + Duration::days(25),
    )
    .unwrap();
    let prom_dir = dir.path().join("textfile");
    std::fs::create_dir(&prom_dir).unwrap();
    let prom = prom_dir.join("cpkeep_certs.prom");
    let prom_s = prom.display().to_string();
    let run = cpkeep(&args(&pki.layout, &["-o", "json", "--prometheus", &prom_s])).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let v = run.json();
    assert_eq!(v["verdict"], "WARNING");
    let text = std::fs::read_to_string(&prom).unwrap();
    let samples = parse_exposition(&text);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&prom).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert_eq!(
        std::fs::read_dir(&prom_dir).unwrap().count(),
        1,
        "a temp file was left"
    );
    let items: Vec<&Value> = v["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .chain(v["certificateAuthorities"].as_array().unwrap())
        .collect();
    assert_eq!(items.len(), 15);
    for name in [
        "x509_cert_not_after",
        "x509_cert_not_before",
        "x509_cert_expired",
    ] {
        assert_eq!(
            samples.iter().filter(|s| s.name == name).count(),
            15,
            "{name}"
        );
    }
    for item in items {
        let path = item["path"].as_str().unwrap();
        let not_after = samples
            .iter()
            .find(|s| s.name == "x509_cert_not_after" && s.labels["filepath"] == path)
            .unwrap_or_else(|| panic!("no series for {path}"));
        let expected =
            chrono::DateTime::parse_from_rfc3339(item["expirationDate"].as_str().unwrap())
                .unwrap()
                .timestamp();
        assert_eq!(not_after.value as i64, expected, "{path}");
        for label in ["filename", "serial_number", "subject_CN", "issuer_CN"] {
            assert!(not_after.labels.contains_key(label), "{path}: no {label}");
        }
        let serial_hex = item["serial"].as_str().unwrap();
        let decimal: String = not_after.labels["serial_number"].clone();
        assert!(decimal.chars().all(|c| c.is_ascii_digit()), "{decimal}");
        assert!(!serial_hex.is_empty());
        if item["embedded"] == true {
            assert_eq!(not_after.labels["embedded_kind"], "user", "{path}");
            assert!(!not_after.labels["embedded_key"].is_empty());
        } else {
            assert!(!not_after.labels.contains_key("embedded_kind"), "{path}");
        }
    }
    let admin = samples
        .iter()
        .find(|s| s.name == "x509_cert_expired" && s.labels["filename"] == "admin.conf")
        .unwrap();
    assert_eq!(admin.labels["embedded_key"], "kubernetes-admin");
    assert_eq!(admin.labels["subject_O"], "kubeadm:cluster-admins");
    assert_eq!(admin.value, 0.0);
    // The fixture: every leaf expired.
    let run = cpkeep(&args(&fixture_layout(), &["--prometheus", &prom_s])).await;
    assert_eq!(run.code, 2);
    let samples = parse_exposition(&std::fs::read_to_string(&prom).unwrap());
    let expired: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == "x509_cert_expired")
        .collect();
    assert_eq!(expired.len(), 14);
    assert_eq!(expired.iter().filter(|s| s.value == 1.0).count(), 11);
}

/// A one-shot HTTP server collecting request bodies; answers 200.
async fn webhook_server() -> (String, tokio::task::JoinHandle<Vec<Value>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/T0KEN", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut bodies = Vec::new();
        loop {
            let accepted =
                tokio::time::timeout(std::time::Duration::from_secs(3), listener.accept()).await;
            let Ok(Ok((mut s, _))) = accepted else {
                break;
            };
            let mut req = Vec::new();
            let mut buf = vec![0u8; 16384];
            let body = loop {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "connection closed early");
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    assert!(head.starts_with("POST /hooks/T0KEN HTTP/1.1\r\n"), "{head}");
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .unwrap()
                        .parse()
                        .unwrap();
                    if body.len() >= len {
                        break body.to_string();
                    }
                }
            };
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            bodies.push(serde_json::from_str(&body).unwrap());
        }
        bodies
    });
    (url, task)
}

#[tokio::test]
async fn webhook_gets_one_post_per_alerting_certificate() {
    let (_dir, pki) = generate(TestPkiOptions::default());
    let now = OffsetDateTime::now_utc();
    pki.reissue(
        "scheduler.conf",
        now - Duration::days(400),
        now - Duration::days(1),
    )
    .unwrap();
    pki.reissue(
        "front-proxy-client",
        now - Duration::days(340),
        now + Duration::days(20),
    )
    .unwrap();
    let (url, server) = webhook_server().await;
    let run = cpkeep(&args(&pki.layout, &["--webhook", &url])).await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    let bodies = server.await.unwrap();
    let mut got: Vec<(String, String, String)> = bodies
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_string(),
                b["status"].as_str().unwrap().to_string(),
                b["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (
                "front-proxy-client".into(),
                "WARNING".into(),
                "WARNING".into()
            ),
            ("scheduler.conf".into(), "EXPIRED".into(), "CRITICAL".into()),
        ]
    );
    for b in &bodies {
        assert_eq!(b["source"], "cpkeep");
        assert!(b["text"]
            .as_str()
            .unwrap()
            .contains(b["name"].as_str().unwrap()));
        assert!(!b.to_string().contains("PRIVATE KEY"));
    }
    // A webhook that is down: one clear line without the URL's token, exit 3.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let run = cpkeep(&args(
        &pki.layout,
        &["--webhook", &format!("http://127.0.0.1:{dead}/hooks/T0KEN")],
    ))
    .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    let line = run.assert_one_clear_line();
    assert!(
        line.contains("webhook http://127.0.0.1:") && line.contains("cannot connect"),
        "{line}"
    );
    assert!(!line.contains("T0KEN"), "{line}");
}

fn assert_unknown_line(run: &Run, must: &[&str]) -> String {
    assert_eq!(
        run.code, 3,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let line = run.assert_one_clear_line().to_string();
    for m in must {
        assert!(line.contains(m), "{line:?} should mention {m:?}");
    }
    line
}

#[tokio::test]
async fn broken_files_are_critical_and_every_other_row_is_still_judged() {
    let (dir, pki) = generate(TestPkiOptions::default());
    let l = pki.layout.clone();
    let prom = dir.path().join("out.prom");
    let prom_s = prom.display().to_string();
    let admin_key_b64 = std::fs::read_to_string(l.kubeconfig_path("admin.conf"))
        .unwrap()
        .lines()
        .find_map(|x| {
            x.trim()
                .strip_prefix("client-key-data: ")
                .map(str::to_string)
        })
        .unwrap();
    let now = OffsetDateTime::now_utc();
    pki.reissue(
        "front-proxy-client",
        now - Duration::days(340),
        now + Duration::days(20),
    )
    .unwrap();

    // A certificate that is not PEM, a key that is garbage, a kubeconfig that is not YAML (and holds
    // a key that must not leak): CRITICAL each, and the near-expiry certificate beside them is still
    // reported, in the table, the textfile and the webhook.
    std::fs::write(
        l.cert_path("apiserver"),
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(l.key_path("etcd/peer"), "garbage").unwrap();
    std::fs::write(
        l.kubeconfig_path("admin.conf"),
        format!("users: [\n  {{name: x, client-key-data: {admin_key_b64}\n"),
    )
    .unwrap();
    let (url, server) = webhook_server().await;
    let run = cpkeep(&args(&l, &["--prometheus", &prom_s, "--webhook", &url])).await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(!run.stderr.contains("cpkeep: "), "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let starts = |p: &str| lines.iter().any(|l| l.starts_with(p));
    // Certificates that could not be read: the marker, and no dates (as kubeadm's !MISSING! rows).
    assert!(lines.contains(&"!ERROR! apiserver"), "{}", run.stdout);
    assert!(lines.contains(&"!ERROR! admin.conf"), "{}", run.stdout);
    // The peer certificate was read, its key is broken: dates, and the marker.
    let peer = lines
        .iter()
        .find(|l| l.starts_with("!ERROR! etcd-peer "))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(peer.contains(" UTC "), "{peer}");
    assert!(starts("front-proxy-client "), "{}", run.stdout);
    assert!(run.stdout.contains("VERDICT: CRITICAL"));
    for want in [
        "CRITICAL  ",
        "apiserver.crt: not a valid X.509 certificate",
        "peer.key: no PEM private key block found",
        "admin.conf: not a kubeconfig: not YAML",
        "WARNING   front-proxy-client expires in 19d",
    ] {
        assert!(
            run.stdout.contains(want),
            "{want:?} not in:\n{}",
            run.stdout
        );
    }
    assert!(!run.stdout.contains(&admin_key_b64[..32]));
    let text = std::fs::read_to_string(&prom).unwrap();
    let samples = parse_exposition(&text);
    let value = |name: &str, label: Option<(&str, &str)>| {
        samples
            .iter()
            .filter(|s| s.name == name && label.is_none_or(|(k, v)| s.labels[k] == v))
            .map(|s| s.value)
            .collect::<Vec<f64>>()
    };
    assert_eq!(value("x509_read_errors", None), [3.0]);
    assert_eq!(
        value("x509_source_errors_total", Some(("reason", "bad_pem"))),
        [2.0]
    );
    assert_eq!(
        value(
            "x509_source_errors_total",
            Some(("reason", "bad_kubeconfig"))
        ),
        [1.0]
    );
    // One error series per certificate that could not be read (the peer's key is not one).
    assert_eq!(value("x509_cert_error", None), [1.0, 1.0]);
    assert_eq!(
        value(
            "x509_cert_not_after",
            Some(("filename", "front-proxy-client.crt"))
        )
        .len(),
        1
    );
    let mut alerted: Vec<String> = server
        .await
        .unwrap()
        .iter()
        .map(|b| {
            format!(
                "{} {}",
                b["name"].as_str().unwrap(),
                b["status"].as_str().unwrap()
            )
        })
        .collect();
    alerted.sort();
    assert_eq!(
        alerted,
        [
            "admin.conf ERROR",
            "apiserver ERROR",
            "etcd-peer ERROR",
            "front-proxy-client WARNING"
        ]
    );
}

/// Makes a tree traversable and its files readable by anyone, except the keys and kubeconfigs
/// (0600, as kubeadm writes them), which only their owner may read.
fn open_tree_but_secrets(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            open_tree_but_secrets(&p);
            continue;
        }
        let secret = p.extension().is_some_and(|x| x == "key" || x == "conf")
            || p.file_name()
                .is_some_and(|n| n == "kubelet-client-current.pem");
        let mode = if secret { 0o600 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        let probe = tempfile::NamedTempFile::new().unwrap();
        use std::os::unix::fs::MetadataExt;
        if secret && probe.as_file().metadata().unwrap().uid() != 0 {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
        }
    }
}

#[tokio::test]
async fn unreadable_files_are_warnings_named_and_counted_and_the_textfile_is_written() {
    let (dir, pki) = generate(TestPkiOptions::default());
    let l = pki.layout.clone();
    open_tree_but_secrets(dir.path());
    let out_dir = dir.path().join("textfile");
    std::fs::create_dir(&out_dir).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&out_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let prom = out_dir.join("cpkeep_certs.prom");
    let prom_s = prom.display().to_string();
    let run = cpkeep_unprivileged(&args(&l, &["--prometheus", &prom_s])).await;
    // Every certificate is valid; keys and kubeconfigs cannot be read: WARNING, not UNKNOWN.
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(!run.stderr.contains("cpkeep: "), "{}", run.stderr);
    assert!(run.stdout.contains("VERDICT: WARNING"), "{}", run.stdout);
    // 5 kubeconfigs, 7 leaf keys, 3 CA keys, sa.key.
    let reasons: Vec<&str> = run
        .stdout
        .lines()
        .skip_while(|x| *x != "REASONS")
        .skip(1)
        .take_while(|x| !x.is_empty())
        .collect();
    assert_eq!(reasons.len(), 16, "{}", run.stdout);
    for r in &reasons {
        assert!(
            r.starts_with("  WARNING   cannot read ")
                && r.ends_with(": permission denied (not checked)"),
            "{r}"
        );
    }
    assert!(
        run.stdout.contains("!UNREADABLE! admin.conf"),
        "{}",
        run.stdout
    );
    // A leaf whose key alone is unreadable still shows its expiry.
    let api = run
        .stdout
        .lines()
        .find(|x| x.starts_with("!UNREADABLE! apiserver "))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(api.contains(" UTC "), "{api}");
    let samples = parse_exposition(&std::fs::read_to_string(&prom).unwrap());
    let read_errors: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == "x509_read_errors")
        .map(|s| s.value)
        .collect();
    assert_eq!(read_errors, [16.0]);
    let counter = |samples: &[Sample]| {
        samples
            .iter()
            .filter(|s| s.name == "x509_source_errors_total")
            .map(|s| {
                (
                    s.labels["source_kind"].clone(),
                    s.labels["reason"].clone(),
                    s.value,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        counter(&samples),
        [
            ("file".to_string(), "permission_denied".to_string(), 11.0),
            (
                "kubeconfig".to_string(),
                "permission_denied".to_string(),
                5.0
            ),
        ]
    );
    // The 10 certificates that could be read have their expiry series.
    assert_eq!(
        samples
            .iter()
            .filter(|s| s.name == "x509_cert_not_after")
            .count(),
        10
    );
    // A second check counts on: the counter rises while the files stay unreadable.
    let run = cpkeep_unprivileged(&args(&l, &["--prometheus", &prom_s])).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    let samples = parse_exposition(&std::fs::read_to_string(&prom).unwrap());
    assert_eq!(
        counter(&samples),
        [
            ("file".to_string(), "permission_denied".to_string(), 22.0),
            (
                "kubeconfig".to_string(),
                "permission_denied".to_string(),
                10.0
            ),
        ]
    );
    // Read by root (the owner) again: OK, and the counter keeps its total without rising.
    let run = cpkeep(&args(&l, &["--prometheus", &prom_s])).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let samples = parse_exposition(&std::fs::read_to_string(&prom).unwrap());
    assert_eq!(counter(&samples).len(), 2);
    assert!(samples
        .iter()
        .any(|s| s.name == "x509_read_errors" && s.value == 0.0));
}

#[tokio::test]
async fn a_missing_kubelet_client_certificate_does_not_blind_the_check() {
    // A copy of a real kubeadm node whose kubelet.conf refers to the kubelet's rotating
    // certificate, as every kubeadm node's does since 1.17 — a file the copy does not have.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("etc/kubernetes");
    copy_tree(&fixture_dir(), &root);
    let pem = dir
        .path()
        .join("var/lib/kubelet/pki/kubelet-client-current.pem");
    let conf = root.join("kubelet.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    let mut out = Vec::new();
    for line in text.lines() {
        match line.trim_start() {
            l if l.starts_with("client-certificate-data:") => {
                out.push(format!("    client-certificate: {}", pem.display()))
            }
            l if l.starts_with("client-key-data:") => {
                out.push(format!("    client-key: {}", pem.display()))
            }
            _ => out.push(line.to_string()),
        }
    }
    std::fs::write(&conf, out.join("\n") + "\n").unwrap();
    let layout = PkiLayout::new(root.join("pki"), &root);
    let prom = dir.path().join("certs.prom");
    let prom_s = prom.display().to_string();
    let (url, server) = webhook_server().await;
    let run = cpkeep(&args(
        &layout,
        &["--prometheus", &prom_s, "--webhook", &url],
    ))
    .await;
    // admin.conf and every other leaf have expired: CRITICAL, with the textfile and the webhook.
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    let kubelet = run
        .stdout
        .lines()
        .find(|l| l.starts_with("kubelet.conf "))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    let cells: Vec<&str> = kubelet
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(cells, ["kubelet.conf", "ca", "kubelet"], "{kubelet:?}");
    assert!(run.stdout.contains(&format!(
        "NOTES\n  {} refers to {}, which is not here: the kubelet rotates its own client certificate",
        conf.display(),
        pem.display()
    )), "{}", run.stdout);
    let samples = parse_exposition(&std::fs::read_to_string(&prom).unwrap());
    let expired: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == "x509_cert_expired" && s.value == 1.0)
        .collect();
    assert_eq!(expired.len(), 10);
    assert!(expired.iter().any(|s| s.labels["filename"] == "admin.conf"));
    assert!(samples
        .iter()
        .any(|s| s.name == "x509_read_errors" && s.value == 0.0));
    let bodies = server.await.unwrap();
    assert_eq!(bodies.len(), 10);
    assert!(bodies
        .iter()
        .any(|b| b["name"] == "admin.conf" && b["status"] == "EXPIRED"));
    assert!(!bodies.iter().any(|b| b["name"] == "kubelet.conf"));
    let run = cpkeep(&args(&layout, &["-o", "json"])).await;
    let v = run.json();
    let k = v["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "kubelet.conf")
        .unwrap();
    assert_eq!(k["status"], "MANAGED");
    assert_eq!(k["severity"], "OK");
    assert_eq!(k["path"], pem.display().to_string());
}

#[tokio::test]
async fn etcd_over_plain_http_needs_no_etcd_certificates() {
    let (dir, pki) = generate(TestPkiOptions::default());
    let l = pki.layout.clone();
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
    // No manifest: the etcd certificates are expected, five missing files.
    let run = cpkeep(&args(&l, &[])).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    // kubeadm's etcd manifest, switched to plain http (the way `etcd.local.extraArgs` and an
    // external-less test cluster end up): nothing reads the etcd certificates.
    let manifests = l.kubeconfig_dir.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let text = std::fs::read_to_string(fixture_dir().join("manifests/etcd.yaml")).unwrap();
    let http: String = text
        .lines()
        .filter(|x| !x.contains("-file="))
        .map(|x| x.replace("https://", "http://"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(manifests.join("etcd.yaml"), &http).unwrap();
    let run = cpkeep(&args(&l, &[])).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("!MISSING! etcd-server"));
    assert!(
        run.stdout.contains("etcd serves plain http"),
        "{}",
        run.stdout
    );
    // kubeadm's own (https) manifest in another directory given by --manifests-dir: expected again.
    let other = dir.path().join("other-manifests");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("etcd.yaml"), &text).unwrap();
    let run = cpkeep(&args(&l, &["--manifests-dir", other.to_str().unwrap()])).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    let warnings = run
        .stdout
        .lines()
        .filter(|x| x.starts_with("  WARNING   ") && x.contains(" is missing ("))
        .count();
    assert_eq!(warnings, 5, "{}", run.stdout);
}

#[tokio::test]
async fn nothing_to_evaluate_gives_one_clear_line_and_exit_3() {
    let (dir, pki) = generate(TestPkiOptions::default());
    let l = pki.layout.clone();
    let prom = dir.path().join("out.prom");
    let prom_s = prom.display().to_string();

    // A cert-dir that does not exist.
    let missing = PkiLayout::new(dir.path().join("no-such-pki"), l.kubeconfig_dir.clone());
    let run = cpkeep(&args(&missing, &["--prometheus", &prom_s])).await;
    assert_unknown_line(
        &run,
        &["certificate directory ", "no-such-pki does not exist"],
    );
    assert!(run.stdout.is_empty());
    assert!(!prom.exists());

    // A kubeconfig-dir that does not exist, as the cert-dir.
    let missing = PkiLayout::new(l.cert_dir.clone(), dir.path().join("no-such-etc"));
    let run = cpkeep(&args(&missing, &["--prometheus", &prom_s])).await;
    assert_unknown_line(
        &run,
        &[
            "kubeconfig directory ",
            "no-such-etc does not exist (set --kubeconfig-dir to where admin.conf is)",
        ],
    );
    assert!(run.stdout.is_empty());
    assert!(!prom.exists());

    // A cert-dir that is a file: the cause once, in its short form.
    let file = l.cert_path("ca");
    let under_file = PkiLayout::new(file.join("pki"), l.kubeconfig_dir.clone());
    let run = cpkeep(&args(&under_file, &[])).await;
    let line = assert_unknown_line(&run, &["cannot read ", "ca.crt/pki: not a directory"]);
    assert!(!line.contains("os error"), "{line}");

    // Directories without one of kubeadm's files: nothing evaluated.
    let empty = PkiLayout::new(dir.path().join("empty/pki"), dir.path().join("empty"));
    std::fs::create_dir_all(&empty.cert_dir).unwrap();
    let run = cpkeep(&args(&empty, &["--prometheus", &prom_s])).await;
    assert_unknown_line(
        &run,
        &[
            "cannot evaluate certificates: nothing could be evaluated",
            "no textfile written",
        ],
    );
    assert!(!prom.exists());

    // Bad flags.
    let run = cpkeep(&args(&l, &["--warn", "7d", "--critical", "30d"])).await;
    assert_unknown_line(&run, &["--critical 30days is longer than --warn 7days"]);

    // The real tree: OK, and the textfile is written.
    let run = cpkeep(&args(&l, &["--prometheus", &prom_s])).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(prom.exists());
}

/// Copies a directory tree (files keep their bytes; modes are the copy's defaults).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let dest = to.join(e.file_name());
        if p.is_dir() {
            copy_tree(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

#[tokio::test]
async fn mismatched_keys_are_critical_with_one_line_each() {
    let (_dir, pki) = generate(TestPkiOptions {
        algorithm: TestKeyAlgorithm::Rsa2048,
        ..TestPkiOptions::default()
    });
    let l = &pki.layout;
    std::fs::write(
        l.key_path("apiserver-kubelet-client"),
        pki.new_key_pem().unwrap(),
    )
    .unwrap();
    std::fs::write(l.key_path("etcd/ca"), pki.new_key_pem().unwrap()).unwrap();
    std::fs::write(l.sa_key_path(), pki.new_key_pem().unwrap()).unwrap();
    let run = cpkeep(&args(l, &[])).await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    let reasons: Vec<&str> = run
        .stdout
        .lines()
        .skip_while(|x| *x != "REASONS")
        .skip(1)
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons
        .iter()
        .all(|r| r.trim_start().starts_with("CRITICAL")));
    assert!(reasons
        .iter()
        .any(|r| r.contains("apiserver-kubelet-client.key does not match the certificate")));
    assert!(reasons.iter().any(|r| r.contains("etcd-ca: the CA key")));
    assert!(reasons.iter().any(|r| r.contains("sa.key does not match")));
    assert!(run.stdout.contains("KEYS DO NOT MATCH"));
}
