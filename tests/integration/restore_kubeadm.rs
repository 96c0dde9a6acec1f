//! `cpkeep restore --kubeadm` against real etcd 3.5 run by a fake kubelet: a thread that watches a
//! temp `/etc/kubernetes/manifests`, starts etcd with the command of `etcd.yaml` when the file
//! appears and kills it when the file disappears, as the kubelet does with static pods.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cpkeep::etcd::{ConnectionOptions, Endpoint, TlsFiles, TlsMaterial};
use cpkeep::restore::ids::id_hex;
use cpkeep::restore::kubeadm::{self, HealthState, KubeadmOptions};
use cpkeep::restore::{Bump, RestoreSource};
use cpkeep::sandbox::{EtcdPki, KeyAlgorithm};
use saphyr::{LoadableYamlNode, Yaml};

use crate::harness::{cpkeep, Run};
use crate::kubelet::Kubelet;

fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// kubeadm v1.16's etcd.yaml (fixtures/kubeadm-v1.16 in the shared fixtures), with the node's
/// paths, addresses and ports.
fn kubeadm_manifest(n: &Node, initial_cluster: &str, state: &str) -> String {
    let pki = n.kube.join("pki").join("etcd");
    let pki = pki.display();
    let data = n.data_dir.display();
    let (ip, client, peer, metrics) = (&n.ip, n.client_port, n.peer_port, n.metrics_port);
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  creationTimestamp: null
  labels:
    component: etcd
    tier: control-plane
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=https://{ip}:{client}
    - --cert-file={pki}/server.crt
    - --client-cert-auth=true
    - --data-dir={data}
    - --initial-advertise-peer-urls=https://{ip}:{peer}
    - --initial-cluster={initial_cluster}
    - --initial-cluster-state={state}
    - --key-file={pki}/server.key
    - --listen-client-urls=https://127.0.0.1:{client},https://{ip}:{client}
    - --listen-metrics-urls=http://127.0.0.1:{metrics}
    - --listen-peer-urls=https://{ip}:{peer}
    - --name={name}
    - --peer-cert-file={pki}/peer.crt
    - --peer-client-cert-auth=true
    - --peer-key-file={pki}/peer.key
    - --peer-trusted-ca-file={pki}/ca.crt
    - --snapshot-count=10000
    - --trusted-ca-file={pki}/ca.crt
    image: registry.k8s.io/etcd:3.5.30-0
    imagePullPolicy: IfNotPresent
    livenessProbe:
      failureThreshold: 8
      httpGet:
        host: 127.0.0.1
        path: /health
        port: {metrics}
        scheme: HTTP
      initialDelaySeconds: 15
      timeoutSeconds: 15
    name: etcd
    resources: {{}}
    volumeMounts:
    - mountPath: {data}
      name: etcd-data
    - mountPath: {pki}
      name: etcd-certs
  hostNetwork: true
  priorityClassName: system-cluster-critical
  volumes:
  - hostPath:
      path: {pki}
      type: DirectoryOrCreate
    name: etcd-certs
  - hostPath:
      path: {data}
      type: DirectoryOrCreate
    name: etcd-data
status: {{}}
"#,
        name = n.name
    )
}

/// The etcd container's command, read as the kubelet reads it.
fn container_command(text: &str) -> Vec<String> {
    let docs = Yaml::load_from_str(text).expect("manifest is YAML");
    let containers = docs[0]
        .as_mapping_get("spec")
        .and_then(|s| s.as_mapping_get("containers"))
        .and_then(|c| c.as_sequence())
        .expect("spec.containers");
    let etcd = containers
        .iter()
        .find(|c| c.as_mapping_get("name").and_then(|n| n.as_str()) == Some("etcd"))
        .expect("an etcd container");
    etcd.as_mapping_get("command")
        .and_then(|c| c.as_sequence())
        .expect("a command")
        .iter()
        .map(|a| a.as_str().expect("string").to_string())
        .collect()
}

/// One control-plane node: an /etc/kubernetes-like tree, a data dir and ports on its own loopback
/// address.
struct Node {
    _root: Option<tempfile::TempDir>,
    root: PathBuf,
    name: String,
    ip: String,
    kube: PathBuf,
    manifest: PathBuf,
    data_dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    metrics_port: u16,
}

impl Node {
    fn new(pki: &mut EtcdPki, index: usize) -> Self {
        let root_dir = tempfile::tempdir().unwrap();
        let root = root_dir.path().to_path_buf();
        let ip = format!("127.0.0.{}", index + 1);
        let name = format!("cp{}", index + 1);
        let kube = root.join("etc").join("kubernetes");
        std::fs::create_dir_all(kube.join("manifests")).unwrap();
        // kubeadm's layout: one node's etcd certificates in pki/etcd, next to the CA and the
        // healthcheck client certificate.
        let etcd_pki = kube.join("pki").join("etcd");
        std::fs::create_dir_all(&etcd_pki).unwrap();
        for f in [
            "ca.crt",
            "ca.key",
            "healthcheck-client.crt",
            "healthcheck-client.key",
        ] {
            std::fs::copy(pki.dir.join("etcd").join(f), etcd_pki.join(f)).unwrap();
        }
        let certs = pki.issue_member(&name, ip.parse().unwrap()).unwrap();
        for (pair, base) in [(&certs.server, "server"), (&certs.peer, "peer")] {
            std::fs::copy(&pair.cert, etcd_pki.join(format!("{base}.crt"))).unwrap();
            std::fs::copy(&pair.key, etcd_pki.join(format!("{base}.key"))).unwrap();
        }
        Node {
            _root: Some(root_dir),
            manifest: kube.join("manifests").join("etcd.yaml"),
            data_dir: root.join("var").join("lib").join("etcd"),
            client_port: free_port(&ip),
            peer_port: free_port(&ip),
            metrics_port: free_port("127.0.0.1"),
            root,
            name,
            ip,
            kube,
        }
    }

    fn peer_url(&self) -> String {
        format!("https://{}:{}", self.ip, self.peer_port)
    }

    fn client_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }

    fn tls(&self) -> TlsFiles {
        let d = self.kube.join("pki").join("etcd");
        TlsFiles {
            ca: Some(d.join("ca.crt")),
            cert: Some(d.join("healthcheck-client.crt")),
            key: Some(d.join("healthcheck-client.key")),
        }
    }

    fn tls_args(&self) -> Vec<String> {
        let t = self.tls();
        vec![
            "--cacert".into(),
            t.ca.unwrap().display().to_string(),
            "--cert".into(),
            t.cert.unwrap().display().to_string(),
            "--key".into(),
            t.key.unwrap().display().to_string(),
        ]
    }

    fn connection(&self) -> ConnectionOptions {
        ConnectionOptions {
            endpoints: vec![Endpoint::parse(&self.client_url(), true).unwrap()],
            tls: Some(TlsMaterial::load(&self.tls()).unwrap()),
            credentials: None,
            timeout: Duration::from_secs(3),
        }
    }

    fn write_manifest(&self, initial_cluster: &str, state: &str) -> Vec<u8> {
        let text = kubeadm_manifest(self, initial_cluster, state);
        std::fs::write(&self.manifest, &text).unwrap();
        text.into_bytes()
    }

    fn kubelet(&self) -> Kubelet {
        Kubelet::start(self.manifest.clone(), self.root.join("etcd.log"), |text| {
            container_command(text)[1..].to_vec()
        })
    }

    fn etcd_log(&self) -> String {
        std::fs::read_to_string(self.root.join("etcd.log")).unwrap_or_default()
    }

    /// Directories next to the data dir whose name starts with `etcd.bak-`.
    fn asides(&self) -> Vec<PathBuf> {
        let parent = self.data_dir.parent().unwrap();
        let mut v: Vec<PathBuf> = std::fs::read_dir(parent)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("etcd.bak-")
            })
            .collect();
        v.sort();
        v
    }
}

/// Waits until the member answers a put/get through its client URL.
async fn wait_serving(n: &Node, within: Duration) -> etcd_client::Client {
    let deadline = Instant::now() + within;
    loop {
        let conn = n.connection();
        let attempt = async {
            let c = cpkeep::etcd::connect(&conn.endpoints[0], &conn).await?;
            let mut kv = c.kv_client();
            tokio::time::timeout(Duration::from_secs(3), kv.get("health-probe", None))
                .await
                .map_err(|_| cpkeep::etcd::EtcdError::Config("timeout".into()))?
                .map_err(|e| cpkeep::etcd::EtcdError::Config(e.to_string()))?;
            Ok::<_, cpkeep::etcd::EtcdError>(c)
        };
        match attempt.await {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => {
                panic!(
                    "{} does not serve after {within:?}: {e}\netcd log:\n{}",
                    n.name,
                    n.etcd_log()
                )
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn put(c: &etcd_client::Client, key: &str, value: &str) {
    c.kv_client().put(key, value, None).await.unwrap();
}

async fn value(c: &etcd_client::Client, key: &str) -> Option<String> {
    let r = c.kv_client().get(key, None).await.unwrap();
    r.kvs()
        .first()
        .map(|kv| kv.value_str().unwrap().to_string())
}

async fn snapshot_save(n: &Node, file: &Path) {
    let mut a = args(&["snapshot", "save"]);
    a.push(file.display().to_string());
    a.extend(["--endpoints".to_string(), n.client_url()]);
    a.extend(n.tls_args());
    let run = cpkeep(&a).await;
    assert_eq!(run.code, 0, "snapshot save: {}\n{}", run.stdout, run.stderr);
}

fn restore_args(snapshot: &Path, manifest: &Path, extra: &[&str]) -> Vec<String> {
    let mut a = args(&["restore"]);
    a.push(snapshot.display().to_string());
    a.extend(args(&["--kubeadm", "--manifest"]));
    a.push(manifest.display().to_string());
    a.extend(args(&["--stop-timeout", "30s", "--wait-timeout", "60s"]));
    a.extend(args(extra));
    a
}

fn show(run: &Run) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        run.code, run.stdout, run.stderr
    )
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = crate::harness::files_ending(dir, "")
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    v.sort();
    v
}

/// A running single-member kubeadm etcd with keys written before and after a snapshot.
async fn single_node_with_snapshot() -> (Node, Kubelet, Vec<u8>, PathBuf, tempfile::TempDir) {
    let pki_dir = tempfile::tempdir().unwrap();
    let mut pki = EtcdPki::generate(&pki_dir.path().join("pki"), KeyAlgorithm::EcdsaP256).unwrap();
    let n = Node::new(&mut pki, 0);
    let original = n.write_manifest(&format!("{}={}", n.name, n.peer_url()), "new");
    let kubelet = n.kubelet();
    let c = wait_serving(&n, Duration::from_secs(30)).await;
    for i in 0..20 {
        put(&c, &format!("/registry/before/{i}"), &format!("v{i}")).await;
    }
    let snap = pki_dir.path().join("etcd snapshot.db");
    snapshot_save(&n, &snap).await;
    for i in 0..20 {
        put(&c, &format!("/registry/after/{i}"), "lost").await;
    }
    put(&c, "/registry/before/0", "changed after the snapshot").await;
    (n, kubelet, original, snap, pki_dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_a_single_member_through_the_kubelet() {
    let (n, kubelet, original, snap, _keep) = single_node_with_snapshot().await;
    let data_before = file_names(&n.data_dir);

    // Dry run: the plan, with a three-member --initial-cluster to see the other nodes' command.
    let three = format!(
        "{}={},cp2=https://127.0.0.2:2380,cp3=https://127.0.0.3:2380",
        n.name,
        n.peer_url()
    );
    let run = cpkeep(&restore_args(
        &snap,
        &n.manifest,
        &[
            "--dry-run",
            "--initial-cluster",
            &three,
            "--bump-revision",
            "1000000",
            "--mark-compacted",
        ],
    ))
    .await;
    assert_eq!(run.code, 0, "{}", show(&run));
    let out = &run.stdout;
    eprintln!("{out}");
    for want in [
        "dry run: nothing changed",
        &format!("{:<30}cp1  (manifest)", "--name"),
        &format!("{:<30}etcd-cluster-restore-", "--initial-cluster-token"),
        "(new for this restore: no member of the old cluster can take a restored member back)",
        &format!(
            "{:<30}{three}  (flag; the manifest says cp1={})",
            "--initial-cluster",
            n.peer_url()
        ),
        &format!("health      {}", n.client_url()),
        "running     cp1=",
        "other nodes on each of cp2 (https://127.0.0.2:2380), cp3 (https://127.0.0.3:2380), run:",
    ] {
        assert!(out.contains(want), "dry run lacks {want:?}:\n{out}");
    }
    let command = out
        .lines()
        .find(|l| l.trim_start().starts_with("cpkeep restore "))
        .unwrap_or_else(|| panic!("no command for the other nodes:\n{out}"))
        .trim();
    let quoted_snap = format!("'{}'", snap.display());
    for want in [
        "--kubeadm",
        quoted_snap.as_str(),
        &format!("--manifest {}", n.manifest.display()),
        &format!("--initial-cluster {three}"),
        "--initial-cluster-token etcd-cluster-restore-",
        "--bump-revision 1000000 --mark-compacted",
    ] {
        assert!(command.contains(want), "{command:?} lacks {want:?}");
    }
    // JSON says the same, with the argv.
    let mut json_args = restore_args(
        &snap,
        &n.manifest,
        &["--dry-run", "--initial-cluster", &three],
    );
    json_args.extend(args(&["-o", "json"]));
    let j = cpkeep(&json_args).await.json();
    let argv: Vec<&str> = j["other_nodes"]["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        argv[..3],
        ["cpkeep", "restore", &snap.display().to_string()]
    );
    assert!(argv.contains(&"--kubeadm"), "{argv:?}");
    assert_eq!(
        j["restore"]["move_aside"][0]["path"],
        n.data_dir.display().to_string()
    );
    // The dry run touched nothing.
    assert_eq!(std::fs::read(&n.manifest).unwrap(), original);
    assert!(n.asides().is_empty());
    assert_eq!(kubelet.starts(), 1);

    // The restore.
    let run = cpkeep(&restore_args(&snap, &n.manifest, &["-o", "json"])).await;
    assert_eq!(run.code, 0, "{}\netcd log:\n{}", show(&run), n.etcd_log());
    let j = run.json();
    assert_eq!(j["health"]["state"], "healthy", "{j}");
    assert_eq!(j["manifest_restored"], true);
    assert_eq!(j["stopped"]["was_running"], true);
    assert!(j["other_nodes"].is_null(), "{j}");
    assert_eq!(
        j["health"]["member_id"], j["restored"]["member_id"],
        "the member that answers is the restored one: {j}"
    );
    // The old data dir moved aside, whole.
    let asides = n.asides();
    assert_eq!(asides.len(), 1, "{asides:?}");
    assert_eq!(
        j["restored"]["move_aside"][0]["to"],
        asides[0].display().to_string()
    );
    assert_eq!(file_names(&asides[0]), data_before);
    // The manifest is back, byte for byte; the kubelet started etcd again from it.
    assert_eq!(std::fs::read(&n.manifest).unwrap(), original);
    assert!(!n.kube.join("etcd.yaml.cpkeep-restore").exists());
    assert_eq!(
        std::fs::read_dir(n.kube.join("manifests")).unwrap().count(),
        1,
        "only the manifest in the manifests directory"
    );
    assert_eq!(kubelet.starts(), 2);
    // The data is the snapshot's.
    let c = wait_serving(&n, Duration::from_secs(10)).await;
    assert_eq!(value(&c, "/registry/before/0").await.as_deref(), Some("v0"));
    assert_eq!(
        value(&c, "/registry/before/19").await.as_deref(),
        Some("v19")
    );
    for i in 0..20 {
        assert_eq!(value(&c, &format!("/registry/after/{i}")).await, None);
    }
    put(&c, "/registry/after-restore", "writable").await;

    // The table output of a second restore (same snapshot) reads well. Within the same second,
    // the old data dir goes to `.bak-<timestamp>-2`: the plan never reuses a name.
    let run = cpkeep(&restore_args(&snap, &n.manifest, &[])).await;
    assert_eq!(run.code, 0, "{}", show(&run));
    eprintln!("{}", run.stdout);
    for want in [
        "stopped     etcd stopped",
        "restored    raw",
        "move aside  ",
        &format!("manifest    back in place: {}", n.manifest.display()),
        "health      healthy after",
        "other nodes none: the restored cluster has this member only",
    ] {
        assert!(run.stdout.contains(want), "lacks {want:?}:\n{}", run.stdout);
    }
    assert_eq!(n.asides().len(), 2);
    drop(kubelet);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_restore_puts_the_manifest_back_and_leaves_the_data_dir() {
    let (n, kubelet, original, snap, keep) = single_node_with_snapshot().await;
    // Corrupt: one byte in the middle changed, so etcd's sha256 trailer no longer matches.
    let corrupt = keep.path().join("corrupt.db");
    let mut bytes = std::fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&corrupt, &bytes).unwrap();
    let data_before = file_names(&n.data_dir);

    let run = cpkeep(&restore_args(&corrupt, &n.manifest, &[])).await;
    assert_eq!(run.code, 1, "{}", show(&run));
    let line = run.assert_one_clear_line();
    eprintln!("{}", run.stderr);
    for want in [
        "sha256 trailer does not match",
        "the manifest is back at",
        &format!("{} is as it was", n.data_dir.display()),
    ] {
        assert!(line.contains(want), "{line:?} lacks {want:?}");
    }
    assert_eq!(std::fs::read(&n.manifest).unwrap(), original);
    assert!(!n.kube.join("etcd.yaml.cpkeep-restore").exists());
    assert!(n.asides().is_empty(), "{:?}", n.asides());
    assert!(!n.data_dir.with_extension("part").exists());
    assert_eq!(file_names(&n.data_dir), data_before);
    // etcd was stopped for the attempt and the kubelet started it again, with the data it had.
    let c = wait_serving(&n, Duration::from_secs(30)).await;
    assert_eq!(kubelet.starts(), 2);
    assert_eq!(
        value(&c, "/registry/before/0").await.as_deref(),
        Some("changed after the snapshot")
    );
    assert_eq!(
        value(&c, "/registry/after/3").await.as_deref(),
        Some("lost")
    );
}

#[tokio::test]
async fn bad_manifests_are_one_clear_line_and_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    let snap = dir.path().join("snap.db");
    std::fs::write(&snap, b"not read: the manifest is checked first").unwrap();
    let manifest = manifests.join("etcd.yaml");
    let pod =
        |containers: &str| format!("apiVersion: v1\nkind: Pod\nspec:\n  containers:\n{containers}");
    for (text, want) in [
        ("{ not: [yaml", "not YAML".to_string()),
        ("\u{0}\u{1}binary", "not YAML".to_string()),
        (
            &pod("  - name: kube-apiserver\n    command: [kube-apiserver]\n") as &str,
            "no etcd container in spec.containers (containers: kube-apiserver)".to_string(),
        ),
        (
            &pod("  - name: etcd\n    image: registry.k8s.io/etcd:3.5.30-0\n"),
            "the etcd container has no command".to_string(),
        ),
        (
            &pod("  - name: etcd\n    command:\n    - etcd\n    - --name=cp1\n    - --listen-client-urls=https://127.0.0.1:2379\n"),
            "lacks --data-dir and --initial-advertise-peer-urls".to_string(),
        ),
    ] {
        std::fs::write(&manifest, text).unwrap();
        let mut a = args(&["restore"]);
        a.push(snap.display().to_string());
        a.extend(args(&["--kubeadm", "--manifest"]));
        a.push(manifest.display().to_string());
        let run = cpkeep(&a).await;
        assert_eq!(run.code, 3, "{text:?}: {}", show(&run));
        let line = run.assert_one_clear_line();
        eprintln!("{line}");
        assert!(
            line.starts_with(&format!("cpkeep: {}: ", manifest.display())),
            "{line:?} should name the file"
        );
        assert!(line.contains(&want), "{line:?} lacks {want:?}");
        // Nothing moved.
        assert!(manifest.is_file());
        assert!(!dir.path().join("etcd.yaml.cpkeep-restore").exists());
    }
    // No manifest at all.
    std::fs::remove_file(&manifest).unwrap();
    let mut a = args(&["restore"]);
    a.push(snap.display().to_string());
    a.extend(args(&["--kubeadm", "--manifest"]));
    a.push(manifest.display().to_string());
    let run = cpkeep(&a).await;
    assert_eq!(run.code, 3, "{}", show(&run));
    let line = run.assert_one_clear_line();
    assert!(line.contains("cannot read the etcd manifest"), "{line}");
    // A parked manifest from an interrupted restore is in the way: refused, exit 2.
    std::fs::write(dir.path().join("etcd.yaml.cpkeep-restore"), "x").unwrap();
    let run = cpkeep(&a).await;
    assert_eq!(run.code, 2, "{}", show(&run));
    let line = run.assert_one_clear_line();
    assert!(
        line.contains("an interrupted `cpkeep restore --kubeadm` left it"),
        "{line}"
    );
    assert!(line.contains("mv "), "{line}");
    // --manifest needs --kubeadm.
    let mut a = args(&["restore"]);
    a.push(snap.display().to_string());
    a.extend(args(&["--manifest", "/x/etcd.yaml"]));
    assert_eq!(cpkeep(&a).await.code, 3);
}

/// Three stacked control-plane nodes: the first is restored alone (it waits for a quorum), the other
/// two with the command its plan printed, run as printed (only the manifest path differs here,
/// since each test node keeps its tree in its own temp dir).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_restore_with_the_printed_command() {
    let pki_dir = tempfile::tempdir().unwrap();
    let mut pki = EtcdPki::generate(&pki_dir.path().join("pki"), KeyAlgorithm::EcdsaP256).unwrap();
    let nodes: Vec<Node> = (0..3).map(|i| Node::new(&mut pki, i)).collect();
    let cluster = nodes
        .iter()
        .map(|n| format!("{}={}", n.name, n.peer_url()))
        .collect::<Vec<_>>()
        .join(",");
    let originals: Vec<Vec<u8>> = nodes
        .iter()
        .map(|n| n.write_manifest(&cluster, "new"))
        .collect();
    let kubelets: Vec<Kubelet> = nodes.iter().map(Node::kubelet).collect();
    let c = wait_serving(&nodes[0], Duration::from_secs(30)).await;
    for i in 0..10 {
        put(&c, &format!("/registry/before/{i}"), "kept").await;
    }
    let snap = pki_dir.path().join("snap.db");
    snapshot_save(&nodes[1], &snap).await;
    put(&c, "/registry/after", "lost").await;
    drop(c);

    let run = cpkeep(&restore_args(
        &snap,
        &nodes[0].manifest,
        &["--dry-run", "-o", "json", "--bump-revision", "1000"],
    ))
    .await;
    assert_eq!(run.code, 0, "{}", show(&run));
    let j = run.json();
    assert_eq!(j["live_members"].as_array().map(Vec::len), Some(3), "{j}");
    let argv: Vec<String> = j["other_nodes"]["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(argv[0], "cpkeep");
    // The new cluster token is derived from the snapshot and the members: a dry run prints the
    // command the restore prints.
    let again = cpkeep(&restore_args(
        &snap,
        &nodes[0].manifest,
        &["--dry-run", "-o", "json", "--bump-revision", "1000"],
    ))
    .await
    .json();
    assert_eq!(again["other_nodes"]["argv"], j["other_nodes"]["argv"]);
    let token = argv[argv
        .iter()
        .position(|a| a == "--initial-cluster-token")
        .unwrap()
        + 1]
    .clone();
    assert!(token.starts_with("etcd-cluster-restore-"), "{token}");
    // Each node runs the printed command with its own manifest path (the same path on real nodes).
    let for_node = |n: &Node| -> Vec<String> {
        let mut a: Vec<String> = argv[1..].to_vec();
        let i = a.iter().position(|x| x == "--manifest").unwrap();
        a[i + 1] = n.manifest.display().to_string();
        a.extend(args(&["--wait-timeout", "90s", "-o", "json"]));
        a
    };
    // The first node through the library API, alone: its member runs but cannot answer before
    // a second restored member joins it, which the wait reports after the quorum grace.
    let mut o = KubeadmOptions::new(nodes[0].manifest.clone());
    o.bump = Some(Bump {
        by: 1000,
        mark_compacted: false,
    });
    o.overrides.initial_cluster_token = Some(token.clone());
    o.quorum_grace = Duration::from_secs(3);
    o.poll_interval = Duration::from_millis(200);
    o.stop_timeout = Duration::from_secs(30);
    o.wait_timeout = Duration::from_secs(60);
    let plan = kubeadm::plan(&o, chrono::Utc::now()).await.unwrap();
    let source = RestoreSource::File {
        path: snap.clone(),
        identities: None,
    };
    let first = kubeadm::apply(&plan, &o, source, std::future::pending())
        .await
        .unwrap_or_else(|e| panic!("{e}\netcd log:\n{}", nodes[0].etcd_log()));
    assert_eq!(first.health.state, HealthState::WaitingForQuorum);
    assert!(first.stopped.was_running);
    assert_eq!(first.restored.plan.members.len(), 3);
    assert_eq!(first.other_nodes.as_ref().map(|o| o.members.len()), Some(2));
    // The other two with the printed command, at once.
    let (a2, a3) = (for_node(&nodes[1]), for_node(&nodes[2]));
    let (r2, r3) = tokio::join!(cpkeep(&a2), cpkeep(&a3));
    let mut cluster_ids = vec![id_hex(first.restored.plan.cluster_id)];
    assert_eq!(nodes[0].asides().len(), 1);
    for (n, r) in nodes[1..].iter().zip([&r2, &r3]) {
        assert_eq!(
            r.code,
            0,
            "{}: {}\netcd log:\n{}",
            n.name,
            show(r),
            n.etcd_log()
        );
        let j = r.json();
        assert_eq!(j["health"]["state"], "healthy", "{}: {j}", n.name);
        assert_eq!(j["restored"]["name"], n.name.as_str());
        cluster_ids.push(j["restored"]["cluster_id"].as_str().unwrap().to_string());
        assert_eq!(n.asides().len(), 1);
    }
    assert!(
        cluster_ids.windows(2).all(|w| w[0] == w[1]),
        "{cluster_ids:?}"
    );
    for (n, o) in nodes.iter().zip(&originals) {
        assert_eq!(&std::fs::read(&n.manifest).unwrap(), o);
    }
    // Every member serves the snapshot's data, the first one too now.
    for n in &nodes[..2] {
        let c = wait_serving(n, Duration::from_secs(10)).await;
        assert_eq!(value(&c, "/registry/after").await, None);
    }
    let c = wait_serving(&nodes[2], Duration::from_secs(10)).await;
    assert_eq!(
        value(&c, "/registry/before/9").await.as_deref(),
        Some("kept")
    );
    assert_eq!(value(&c, "/registry/after").await, None);
    let status = c.maintenance_client().status().await.unwrap();
    assert!(
        status.header().unwrap().revision() > 1000,
        "revision bumped"
    );
    drop(kubelets);
}
