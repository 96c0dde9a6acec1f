//! Bad input: each gives one stderr line naming the endpoint or file and the cause, and exit 3 —
//! never a panic, a backtrace or a Debug dump.

use std::io::{Read, Write};
use std::net::TcpListener;

use cpkeep::sandbox::{CertPair, EtcdPki, KeyAlgorithm};

use crate::harness::{conn_args, cpkeep, sandbox, Etcd, Run};

fn health_args(extra: Vec<String>) -> Vec<String> {
    let mut a: Vec<String> = vec!["cluster".into(), "health".into()];
    a.extend(extra);
    a
}

fn assert_unknown(run: &Run, must_contain: &[&str]) -> String {
    assert_eq!(
        run.code, 3,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let line = run.assert_one_clear_line().to_string();
    eprintln!("stderr: {line}");
    for s in must_contain {
        assert!(line.contains(s), "{line:?} should mention {s:?}");
    }
    line
}

/// A free loopback port with nothing listening.
fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A plain HTTP/1.1 server that answers every connection with a web page, like something that is not
/// etcd sitting on the configured port. Runs until the test process ends.
fn http_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten().take(64) {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
            );
        }
    });
    port
}

#[tokio::test]
async fn unreachable_endpoint() {
    let ep = format!("http://127.0.0.1:{}", dead_port());
    let run = cpkeep(&health_args(vec![
        "--endpoints".into(),
        ep.clone(),
        "--timeout".into(),
        "2s".into(),
    ]))
    .await;
    assert_unknown(&run, &[&ep, "Connection refused"]);
}

#[tokio::test]
async fn malformed_endpoint_url() {
    let run = cpkeep(&health_args(vec![
        "--endpoints".into(),
        "https://127.0.0.1:notaport".into(),
    ]))
    .await;
    assert_unknown(
        &run,
        &["invalid endpoint", "https://127.0.0.1:notaport", "port"],
    );
    let run = cpkeep(&health_args(vec![
        "--endpoints".into(),
        "ftp://127.0.0.1:2379".into(),
    ]))
    .await;
    assert_unknown(&run, &["invalid endpoint", "scheme"]);
}

#[tokio::test]
async fn endpoint_that_is_not_etcd() {
    let port = http_server();
    let ep = format!("http://127.0.0.1:{port}");
    let run = cpkeep(&health_args(vec![
        "--endpoints".into(),
        ep.clone(),
        "--timeout".into(),
        "2s".into(),
    ]))
    .await;
    assert_unknown(&run, &[&ep]);
}

#[tokio::test]
async fn https_endpoint_that_is_not_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let pki = EtcdPki::generate(dir.path(), KeyAlgorithm::EcdsaP256).unwrap();
    let port = http_server();
    let ep = format!("https://127.0.0.1:{port}");
    let run = cpkeep(&health_args(vec![
        "--endpoints".into(),
        ep.clone(),
        "--timeout".into(),
        "2s".into(),
        "--cacert".into(),
        pki.ca.cert.display().to_string(),
    ]))
    .await;
    assert_unknown(&run, &[&ep, "does not speak TLS"]);
}

#[tokio::test]
async fn missing_cert_file() {
    let run = cpkeep(&health_args(vec![
        "--endpoints".into(),
        "https://127.0.0.1:2379".into(),
        "--cacert".into(),
        "/nonexistent/ca.crt".into(),
    ]))
    .await;
    assert_unknown(&run, &["/nonexistent/ca.crt", "No such file"]);
}

#[tokio::test]
async fn file_that_is_not_pem() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("ca.crt");
    std::fs::write(&junk, b"this is not a certificate\n").unwrap();
    let run = cpkeep(&health_args(vec![
        "--endpoints".into(),
        "https://127.0.0.1:2379".into(),
        "--cacert".into(),
        junk.display().to_string(),
    ]))
    .await;
    assert_unknown(&run, &[&junk.display().to_string(), "no PEM certificate"]);
    // A key file that holds a certificate instead of a key.
    let pki = EtcdPki::generate(dir.path(), KeyAlgorithm::EcdsaP256).unwrap();
    let run = cpkeep(&health_args(vec![
        "--cacert".into(),
        pki.ca.cert.display().to_string(),
        "--cert".into(),
        pki.healthcheck_client.cert.display().to_string(),
        "--key".into(),
        pki.healthcheck_client.cert.display().to_string(),
    ]))
    .await;
    assert_unknown(&run, &["client key (--key)", "no PEM private key"]);
}

#[tokio::test]
async fn cert_without_key_and_user_without_password() {
    let dir = tempfile::tempdir().unwrap();
    let pki = EtcdPki::generate(dir.path(), KeyAlgorithm::EcdsaP256).unwrap();
    let run = cpkeep(&health_args(vec![
        "--cert".into(),
        pki.healthcheck_client.cert.display().to_string(),
    ]))
    .await;
    assert_unknown(&run, &["without its key"]);
    let run = cpkeep(&health_args(vec![
        "--endpoints".into(),
        "http://127.0.0.1:1".into(),
        "--user".into(),
        "root".into(),
    ]))
    .await;
    assert_unknown(&run, &["--user needs a password"]);
}

#[tokio::test]
async fn bad_flag_values_exit_3() {
    let run = cpkeep(&health_args(vec!["--timeout".into(), "soon".into()])).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("--timeout"), "{}", run.stderr);
    let run = cpkeep(&health_args(vec!["--no-such-flag".into()])).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    // A sub-millisecond deadline is a typo, refused at parse.
    let run = cpkeep(&health_args(vec!["--timeout".into(), "100us".into()])).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.assert_one_clear_line().contains("below a millisecond"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca() {
    let sb = sandbox(Etcd::V35, 1).await;
    let other = tempfile::tempdir().unwrap();
    let foreign =
        EtcdPki::generate_named(other.path(), KeyAlgorithm::EcdsaP256, "some-other-ca").unwrap();
    let mut args = health_args(conn_args(&sb, &sb.endpoints(), "2s"));
    let i = args.iter().position(|a| a == "--cacert").unwrap();
    args[i + 1] = foreign.ca.cert.display().to_string();
    let run = cpkeep(&args).await;
    assert_unknown(
        &run,
        &[
            &sb.endpoints()[0],
            "UnknownIssuer",
            "not signed by the CA given with --cacert",
        ],
    );
}

/// A CA with the cluster CA's name but another key (a regenerated CA): a plain sentence with a
/// hint, not rustls' bare `BadSignature`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_named_ca_with_another_key() {
    let sb = sandbox(Etcd::V35, 1).await;
    let other = tempfile::tempdir().unwrap();
    let twin = EtcdPki::generate_named(other.path(), KeyAlgorithm::EcdsaP256, "etcd-ca").unwrap();
    let mut args = health_args(conn_args(&sb, &sb.endpoints(), "2s"));
    let i = args.iter().position(|a| a == "--cacert").unwrap();
    args[i + 1] = twin.ca.cert.display().to_string();
    let run = cpkeep(&args).await;
    let line = assert_unknown(
        &run,
        &[
            &sb.endpoints()[0],
            "bad signature",
            "the CA was regenerated",
        ],
    );
    assert!(
        !line.contains("invalid peer certificate: BadSignature"),
        "{line}"
    );
}

/// --key that is not --cert's own key is refused before anything connects, naming both files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_key_of_another_certificate() {
    let sb = sandbox(Etcd::V35, 1).await;
    let mut args = health_args(conn_args(&sb, &sb.endpoints(), "2s"));
    let i = args.iter().position(|a| a == "--key").unwrap();
    let other_key = sb
        .pki()
        .unwrap()
        .apiserver_etcd_client
        .key
        .display()
        .to_string();
    args[i + 1] = other_key.clone();
    let run = cpkeep(&args).await;
    assert_unknown(
        &run,
        &[&other_key, "is not the private key of client certificate"],
    );
}

/// No endpoint answered: the alarms are unknown, not "none".
#[tokio::test]
async fn alarms_are_unknown_when_nothing_answers() {
    let ep = format!("http://127.0.0.1:{}", dead_port());
    let run = cpkeep(&health_args(vec![
        "--endpoints".into(),
        ep.clone(),
        "--timeout".into(),
        "1s".into(),
    ]))
    .await;
    assert_eq!(run.code, 3);
    assert!(run.stdout.contains("alarms: unknown"), "{}", run.stdout);
    assert!(!run.stdout.contains("alarms: none"), "{}", run.stdout);
    let run = cpkeep(&health_args(vec![
        "--endpoints".into(),
        ep,
        "--timeout".into(),
        "1s".into(),
        "-o".into(),
        "json".into(),
    ]))
    .await;
    assert!(run.json()["alarms_error"].is_string(), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cert_not_signed_by_the_etcd_ca() {
    let sb = sandbox(Etcd::V35, 1).await;
    let other = tempfile::tempdir().unwrap();
    let mut foreign =
        EtcdPki::generate_named(other.path(), KeyAlgorithm::EcdsaP256, "some-other-ca").unwrap();
    let rogue = CertPair {
        cert: other.path().join("rogue.crt"),
        key: other.path().join("rogue.key"),
    };
    foreign
        .issue_client("kube-etcd-healthcheck-client", None, &rogue)
        .unwrap();
    let mut args = health_args(conn_args(&sb, &sb.endpoints(), "2s"));
    let i = args.iter().position(|a| a == "--cert").unwrap();
    args[i + 1] = rogue.cert.display().to_string();
    args[i + 3] = rogue.key.display().to_string();
    let run = cpkeep(&args).await;
    assert_unknown(&run, &[&sb.endpoints()[0], "client certificate"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_etcd_password() {
    let mut sb = sandbox(Etcd::V35, 1).await;
    sb.enable_auth("correct-horse").await.unwrap();
    let mut args = health_args(conn_args(&sb, &sb.endpoints(), "2s"));
    args.extend([
        "--user".into(),
        "root".into(),
        "--password".into(),
        "battery-staple".into(),
    ]);
    let run = cpkeep(&args).await;
    let line = assert_unknown(&run, &[&sb.endpoints()[0], "authentication failed"]);
    assert!(!line.contains("battery-staple"), "password leaked: {line}");
    assert!(
        !run.stdout.contains("battery-staple"),
        "password leaked to stdout"
    );
    // The right password works, given through the environment-style user:password form too.
    let mut args = health_args(conn_args(&sb, &sb.endpoints(), "2s"));
    args.extend([
        "--user".into(),
        "root:correct-horse".into(),
        "-o".into(),
        "json".into(),
    ]);
    let run = cpkeep(&args).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.json()["verdict"], "OK");
}
