//! cpkeep::remote against real sshd test nodes (tests/integration/nodes.rs) and the local target:
//! running scripts, exit statuses, secrets masked, atomic file writes with their modes, reads,
//! and strict host key and key checking.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use cpkeep::failure::FailureClass;
use cpkeep::remote::{RemoteError, Script, Session, SshTarget, Target};

use crate::nodes::{NodesSpec, TestNodes};

#[tokio::test]
async fn ssh_runs_scripts_in_the_node_and_masks_secrets() {
    let nodes = TestNodes::start(NodesSpec::new(1));
    let s = nodes.session(0).await;
    let out = s
        .run(&Script::new("echo out-s3cret; echo err-s3cret >&2; cat /proc/sys/net/ipv4/ip_forward; command -v kubeadm; exit 3").secret("s3cret"))
        .await
        .unwrap();
    assert_eq!(out.status, 3);
    assert_eq!(out.stdout, "out-<redacted>\n1\n/usr/local/sbin/kubeadm\n");
    assert_eq!(out.stderr, "err-<redacted>\n");
    // Standard input is the script's own: commands in it read nothing.
    assert_eq!(
        s.run_ok(&Script::new("cat; echo done")).await.unwrap(),
        "done\n"
    );
    let e = s
        .run_ok(&Script::new("echo bad tok123 >&2; exit 7").secret("tok123"))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, RemoteError::Command { status: 7, .. }), "{msg}");
    assert!(
        msg.contains("node1") && msg.contains("bad <redacted>") && !msg.contains("tok123"),
        "{msg}"
    );
    assert_eq!(e.class(), FailureClass::Failed);
    // The secret never showed on sshd's side either (scripts travel on stdin).
    assert!(!nodes.nodes[0].log("sshd.log").contains("s3cret"));
    s.close().await;
}

#[tokio::test]
async fn write_file_is_atomic_keeps_its_mode_and_reads_back() {
    let nodes = TestNodes::start(NodesSpec::new(1));
    let s = nodes.session(0).await;
    let n = &nodes.nodes[0];
    s.write_file("/etc/kubernetes/pki/etcd/ca.key", b"secret key\n", 0o600)
        .await
        .unwrap();
    let host = n.path("/etc/kubernetes/pki/etcd/ca.key");
    assert_eq!(std::fs::read(&host).unwrap(), b"secret key\n");
    assert_eq!(
        std::fs::metadata(&host).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    // Replacing keeps 0600 and leaves no temporary file beside it.
    s.write_file("/etc/kubernetes/pki/etcd/ca.key", b"new", 0o600)
        .await
        .unwrap();
    assert_eq!(
        std::fs::metadata(&host).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    let names: Vec<_> = std::fs::read_dir(host.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["ca.key".to_string()]);
    s.write_file("/etc/kubernetes/pki/ca.crt", b"cert", 0o644)
        .await
        .unwrap();
    assert_eq!(
        std::fs::metadata(n.path("/etc/kubernetes/pki/ca.crt"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o644
    );
    assert_eq!(
        s.read_file("/etc/kubernetes/pki/etcd/ca.key")
            .await
            .unwrap(),
        b"new"
    );
    // Binary contents go through untouched.
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    s.write_file("/var/lib/kubelet/blob", &bytes, 0o600)
        .await
        .unwrap();
    assert_eq!(s.read_file("/var/lib/kubelet/blob").await.unwrap(), bytes);
    // A write that cannot happen leaves the old file alone and says why.
    std::fs::create_dir_all(n.path("/etc/kubernetes/dir")).unwrap();
    let e = s
        .write_file("/etc/kubernetes/dir", b"x", 0o600)
        .await
        .unwrap_err();
    assert!(matches!(e, RemoteError::Command { .. }), "{e}");
    assert!(e.to_string().contains("is a directory"), "{e}");
    let e = s.read_file("/etc/kubernetes/missing").await.unwrap_err();
    assert!(e.to_string().contains("No such file"), "{e}");
    assert!(n.exec("ls -a /etc/kubernetes/dir").stdout.len() < 10);
    s.close().await;
}

#[tokio::test]
async fn an_unknown_host_key_is_refused() {
    let nodes = TestNodes::start(NodesSpec::new(1));
    // An ssh_config whose known_hosts is empty: strict checking refuses the node.
    let cfg = nodes.scratch().join("ssh_config_empty");
    let empty = nodes.scratch().join("known_hosts_empty");
    std::fs::write(&empty, "").unwrap();
    std::fs::write(
        &cfg,
        format!(
            "Host *\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking no\n",
            empty.display()
        ),
    )
    .unwrap();
    let Target::Ssh(mut t) = nodes.target(0) else {
        unreachable!()
    };
    t.config_file = Some(cfg);
    let e = Session::connect("node1", &Target::Ssh(t), Duration::from_secs(10))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, RemoteError::HostKey { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("host key verification failed: add the node's key to known_hosts"),
        "{e}"
    );
    assert_eq!(e.class(), FailureClass::Unusable);
    // Nothing was added to it.
    assert_eq!(std::fs::read_to_string(&empty).unwrap(), "");
}

#[tokio::test]
async fn a_changed_host_key_and_a_wrong_client_key_are_refused() {
    let nodes = TestNodes::start(NodesSpec::new(2));
    // node2's key under node1's name: a changed host key.
    let kh = std::fs::read_to_string(&nodes.known_hosts).unwrap();
    let l2 = kh.lines().nth(1).unwrap();
    let key2 = l2.split_once(' ').unwrap().1;
    let wrong = nodes.scratch().join("known_hosts_wrong");
    std::fs::write(
        &wrong,
        format!("[{}]:{} {key2}\n", nodes.nodes[0].ip, nodes.nodes[0].port),
    )
    .unwrap();
    let cfg = nodes.scratch().join("ssh_config_wrong");
    std::fs::write(
        &cfg,
        format!(
            "Host *\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n",
            wrong.display()
        ),
    )
    .unwrap();
    let Target::Ssh(mut t) = nodes.target(0) else {
        unreachable!()
    };
    t.config_file = Some(cfg);
    let e = Session::connect("node1", &Target::Ssh(t), Duration::from_secs(10))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, RemoteError::HostKey { .. }), "{e}");

    // A client key the node does not know.
    let other = nodes.scratch().join("other_key");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(st.success());
    let Target::Ssh(t) = nodes.target(0) else {
        unreachable!()
    };
    let t = SshTarget {
        identity_file: Some(other),
        config_file: None,
        ..t
    };
    // Without the config the known_hosts is the default one: pass it through a config of our own.
    let cfg2 = nodes.scratch().join("ssh_config_keyonly");
    std::fs::write(
        &cfg2,
        format!(
            "Host *\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n",
            nodes.known_hosts.display()
        ),
    )
    .unwrap();
    let t = SshTarget {
        config_file: Some(cfg2),
        ..t
    };
    let e = Session::connect("node1", &Target::Ssh(t), Duration::from_secs(10))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, RemoteError::AuthRefused { .. }), "{e}");
    assert!(e.to_string().contains("node1"), "{e}");
}

#[tokio::test]
async fn an_unreachable_node_is_named() {
    let t = Target::Ssh(SshTarget {
        host: "127.0.0.1".into(),
        user: "root".into(),
        port: 1,
        identity_file: None,
        config_file: Some("/dev/null".into()),
    });
    let e = Session::connect("cp9", &t, Duration::from_secs(10))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, RemoteError::Unreachable { .. }), "{e}");
    assert!(e.to_string().starts_with("node cp9: unreachable"), "{e}");
    assert_eq!(e.class(), FailureClass::Unusable);
}

#[tokio::test]
async fn the_local_target_runs_sh_on_this_machine() {
    let s = Session::connect("local", &Target::Local, Duration::from_secs(1))
        .await
        .unwrap();
    let out = s
        .run(&Script::new("echo $((1+2)) pw1; exit 4").secret("pw1"))
        .await
        .unwrap();
    assert_eq!((out.status, out.stdout.as_str()), (4, "3 <redacted>\n"));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a/b/f");
    s.write_file(p.to_str().unwrap(), b"x", 0o600)
        .await
        .unwrap();
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(s.read_file(p.to_str().unwrap()).await.unwrap(), b"x");
    s.close().await;
}
