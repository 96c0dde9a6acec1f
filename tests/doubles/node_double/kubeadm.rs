//! The kubeadm double: `version`, `init`, `init phase upload-certs`, `join`, `reset`. Strict on
//! its inputs like kubeadm: an unknown flag, a missing file or a configuration that does not parse
//! through cpkeep's own strict kubeadm types is an error.
//!
//! Differences from kubeadm, all forced by the nodes sharing one network namespace and having no
//! API server: etcd listens on the node's address only (not also on 127.0.0.1:2379, nor metrics on
//! 127.0.0.1:2381); kube-apiserver's `--etcd-servers` names the node's address; the cluster's state
//! (bootstrap tokens, cluster-info, the kubeadm-certs Secret, Nodes) is kept in etcd directly under
//! the API server's keys; joins reach etcd with the client certificate `init` left in CLUSTER_DIR.
//! Control-plane joins add the etcd member as a LEARNER and promote it once it is in sync, as
//! kubeadm ≥ 1.29 does. `reset` does not remove the node's etcd member (real kubeadm's
//! remove-etcd-member phase tries to): whoever resets must remove it.

use std::time::{Duration, Instant};

use cpkeep::bootstrap::kubeadm::{parse, Document};
use sha2::Digest;

use crate::certs::{self, Ca, San, PKI};
use crate::cluster::{self, Access};
use crate::config::Config;
use crate::{fail, Fail, Res};

const MANIFESTS: &str = "/etc/kubernetes/manifests";
const ETCD_DATA: &str = "/var/lib/etcd";

pub async fn main(args: Vec<String>) -> Res<()> {
    let config = Config::load()?;
    let (sub, rest) = match args.split_first() {
        Some((s, r)) => (s.as_str(), r.to_vec()),
        None => fail!("kubeadm double: a subcommand is required (version, init, join, reset)"),
    };
    match sub {
        "version" => version(&config, rest),
        "init" if rest.first().map(String::as_str) == Some("phase") => {
            if rest.get(1).map(String::as_str) != Some("upload-certs") {
                fail!("kubeadm double: unknown init phase {:?}", rest.get(1));
            }
            init(&config, rest[2..].to_vec(), true).await
        }
        "init" => init(&config, rest, false).await,
        "join" => join(&config, rest).await,
        "reset" => reset(rest),
        other => fail!("kubeadm double: unknown command {other:?} for \"kubeadm\""),
    }
}

/// Flags as kubeadm takes them: `--name=value`, `--name value`, booleans, and positionals.
struct Flags {
    values: Vec<(String, Option<String>)>,
    positional: Vec<String>,
}

impl Flags {
    fn parse(args: Vec<String>, with_value: &[&str], boolean: &[&str]) -> Res<Flags> {
        let mut values = Vec::new();
        let mut positional = Vec::new();
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            if !a.starts_with('-') {
                positional.push(a);
                continue;
            }
            let (name, inline) = match a.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (a.clone(), None),
            };
            if with_value.contains(&name.as_str()) {
                let v = match inline.or_else(|| it.next()) {
                    Some(v) => v,
                    None => fail!("kubeadm double: flag needs an argument: {name}"),
                };
                values.push((name, Some(v)));
            } else if boolean.contains(&name.as_str()) {
                values.push((name, None));
            } else {
                fail!("kubeadm double: unknown flag: {name}");
            }
        }
        Ok(Flags { values, positional })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    fn has(&self, name: &str) -> bool {
        self.values.iter().any(|(n, _)| n == name)
    }
}

fn version(config: &Config, args: Vec<String>) -> Res<()> {
    let f = Flags::parse(args, &["-o", "--output"], &[])?;
    if !f.positional.is_empty() {
        fail!("kubeadm double: unexpected arguments {:?}", f.positional);
    }
    let v = config.get("KUBEADM_VERSION")?;
    match f.get("-o").or(f.get("--output")) {
        Some("short") => println!("{v}"),
        None => println!(
            "kubeadm version: &version.Info{{GitVersion:\"{v}\", Compiler:\"cpkeep-node-double\"}}"
        ),
        Some(o) => fail!("kubeadm double: invalid output format: {o}"),
    }
    Ok(())
}

fn read_config(path: Option<&str>) -> Res<Vec<Document>> {
    let Some(path) = path else {
        fail!(
            "kubeadm double: --config is required (the double takes no other way of configuring)"
        );
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => fail!("unable to read config from {path:?}: {e}"),
    };
    match parse(&text) {
        Ok(d) => Ok(d),
        Err(e) => fail!("{path}: {e}"),
    }
}

/// What init needs from InitConfiguration + ClusterConfiguration.
struct InitInfo {
    name: String,
    advertise: String,
    port: i32,
    endpoint: String,
    cert_sans: Vec<String>,
    certificate_key: Option<String>,
    tokens: Vec<String>,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn init_info(docs: &[Document], config: &Config) -> Res<InitInfo> {
    let mut init = None;
    let mut cluster = None;
    for d in docs {
        match d {
            Document::V1Beta3Init(i) => {
                init = Some((
                    i.node_registration.as_ref().and_then(|n| n.name.clone()),
                    i.local_api_endpoint.clone(),
                    i.certificate_key.clone(),
                    i.bootstrap_tokens
                        .iter()
                        .map(|t| t.token.clone())
                        .collect::<Vec<_>>(),
                ))
            }
            Document::V1Beta4Init(i) => {
                init = Some((
                    i.node_registration.as_ref().and_then(|n| n.name.clone()),
                    i.local_api_endpoint.clone(),
                    i.certificate_key.clone(),
                    i.bootstrap_tokens
                        .iter()
                        .map(|t| t.token.clone())
                        .collect::<Vec<_>>(),
                ))
            }
            Document::V1Beta3Cluster(c) => {
                cluster = Some((
                    c.control_plane_endpoint.clone(),
                    c.api_server
                        .as_ref()
                        .map(|a| a.cert_sans.clone())
                        .unwrap_or_default(),
                ))
            }
            Document::V1Beta4Cluster(c) => {
                cluster = Some((
                    c.control_plane_endpoint.clone(),
                    c.api_server
                        .as_ref()
                        .map(|a| a.cert_sans.clone())
                        .unwrap_or_default(),
                ))
            }
            Document::V1Beta3Join(_) | Document::V1Beta4Join(_) => {
                fail!("kubeadm double: init was given a JoinConfiguration")
            }
            Document::Kubelet(_) => {}
        }
    }
    let Some((name, api, certificate_key, tokens)) = init else {
        fail!("kubeadm double: the config has no InitConfiguration");
    };
    let Some((endpoint, cert_sans)) = cluster else {
        fail!("kubeadm double: the config has no ClusterConfiguration");
    };
    let Some(endpoint) = endpoint.filter(|e| !e.is_empty()) else {
        fail!("kubeadm double: controlPlaneEndpoint is not set (cpkeep always sets it; joins need it)");
    };
    let advertise = api
        .as_ref()
        .and_then(|a| a.advertise_address.clone())
        .unwrap_or(config.get("NODE_IP")?.to_string());
    let port = api.as_ref().and_then(|a| a.bind_port).unwrap_or(6443);
    Ok(InitInfo {
        name: name.unwrap_or_else(hostname),
        advertise,
        port,
        endpoint,
        cert_sans,
        certificate_key,
        tokens,
    })
}

fn endpoint_host(endpoint: &str) -> &str {
    match endpoint.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h.trim_start_matches('[').trim_end_matches(']'),
        _ => endpoint,
    }
}

fn check_certificate_key(key: &str) -> Res<()> {
    if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        fail!("invalid certificate key: it must be 32 bytes as 64 hex characters");
    }
    Ok(())
}

fn check_token(t: &str) -> Res<&str> {
    let ok = t.len() == 23
        && t.as_bytes()[6] == b'.'
        && t.bytes()
            .enumerate()
            .all(|(i, b)| i == 6 || b.is_ascii_lowercase() || b.is_ascii_digit());
    if !ok {
        fail!(
            "the bootstrap token {:?} was not of the form \"^([a-z0-9]{{6}})\\.([a-z0-9]{{16}})$\"",
            mask_token(t)
        );
    }
    Ok(&t[..6])
}

fn mask_token(t: &str) -> String {
    match t.split_once('.') {
        Some((id, _)) => format!("{id}.<secret>"),
        None => "<token>".into(),
    }
}

/// The checks `--ignore-preflight-errors=a,b` names (lower case, as kubeadm compares them).
fn ignored(f: &Flags) -> Vec<String> {
    f.get("--ignore-preflight-errors")
        .map(|l| {
            l.split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default()
}

/// kubeadm's preflight checks that can fail on these nodes; those named in `ignore` are
/// warnings, as kubeadm makes them.
fn preflight(control_plane: bool, ignore: &[String]) -> Res<()> {
    let mut errors = Vec::new();
    match std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward") {
        Ok(s) if s.trim() == "1" => {}
        _ => errors.push((
            "FileContent--proc-sys-net-ipv4-ip_forward",
            "/proc/sys/net/ipv4/ip_forward contents are not set to 1".to_string(),
        )),
    }
    if !std::path::Path::new("/run/containerd/containerd.sock").exists() {
        errors.push((
            "CRI",
            "container runtime is not running: unix:///var/run/containerd/containerd.sock missing"
                .into(),
        ));
    }
    if std::path::Path::new("/etc/kubernetes/kubelet.conf").exists() {
        errors.push((
            "FileAvailable--etc-kubernetes-kubelet.conf",
            "/etc/kubernetes/kubelet.conf already exists".into(),
        ));
    }
    if control_plane {
        for m in ["kube-apiserver.yaml", "etcd.yaml"] {
            if std::path::Path::new(MANIFESTS).join(m).exists() {
                errors.push((
                    if m == "etcd.yaml" {
                        "FileAvailable--etc-kubernetes-manifests-etcd.yaml"
                    } else {
                        "FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml"
                    },
                    format!("{MANIFESTS}/{m} already exists"),
                ));
            }
        }
        if std::fs::read_dir(ETCD_DATA)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
        {
            errors.push((
                "DirAvailable--var-lib-etcd",
                format!("{ETCD_DATA} is not empty"),
            ));
        }
    }
    errors.retain(|(k, v)| {
        let skip = ignore
            .iter()
            .any(|i| i == "all" || *i == k.to_ascii_lowercase());
        if skip {
            eprintln!("\t[WARNING {k}]: {v}");
        }
        !skip
    });
    if errors.is_empty() {
        return Ok(());
    }
    let mut msg =
        String::from("error execution phase preflight: [preflight] Some fatal errors occurred:\n");
    for (k, v) in errors {
        msg.push_str(&format!("\t[ERROR {k}]: {v}\n"));
    }
    msg.push_str("[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`");
    Err(Fail(msg))
}

/// The CA files a control-plane node must have (pre-made CAs; the double never makes CAs).
fn require_shared() -> Res<()> {
    for f in certs::SHARED {
        let p = format!("{PKI}/{f}");
        if !std::path::Path::new(&p).is_file() {
            fail!("error execution phase certs: the kubeadm double needs pre-made CAs: {p} is missing");
        }
    }
    Ok(())
}

/// Certificates of one control-plane node, kubeadm's names and SANs.
fn node_certs(name: &str, ip: &str, endpoint: &str, extra_sans: &[String]) -> Res<()> {
    let etcd = Ca::load("etcd/ca")?;
    let ca = Ca::load("ca")?;
    let fp = Ca::load("front-proxy-ca")?;
    let local = [
        San::Dns(name.into()),
        San::Dns("localhost".into()),
        San::of(ip),
        San::of("127.0.0.1"),
    ];
    etcd.write_leaf("etcd/server", name, &[], &local, true, true)?;
    etcd.write_leaf("etcd/peer", name, &[], &local, true, true)?;
    etcd.write_leaf(
        "etcd/healthcheck-client",
        "kube-etcd-healthcheck-client",
        &[],
        &[],
        false,
        true,
    )?;
    etcd.write_leaf(
        "apiserver-etcd-client",
        "kube-apiserver-etcd-client",
        &[],
        &[],
        false,
        true,
    )?;
    let mut sans = vec![
        San::Dns(name.into()),
        San::Dns("kubernetes".into()),
        San::Dns("kubernetes.default".into()),
        San::Dns("kubernetes.default.svc".into()),
        San::Dns("kubernetes.default.svc.cluster.local".into()),
        San::of("10.96.0.1"),
        San::of(ip),
        San::of(endpoint_host(endpoint)),
        San::of("127.0.0.1"),
    ];
    sans.extend(extra_sans.iter().map(|s| San::of(s)));
    ca.write_leaf("apiserver", "kube-apiserver", &[], &sans, true, false)?;
    ca.write_leaf(
        "apiserver-kubelet-client",
        "kube-apiserver-kubelet-client",
        &["kubeadm:cluster-admins"],
        &[],
        false,
        true,
    )?;
    fp.write_leaf(
        "front-proxy-client",
        "front-proxy-client",
        &[],
        &[],
        false,
        true,
    )?;
    Ok(())
}

fn write_kubeconfigs(
    ca: &Ca,
    endpoint: &str,
    name: &str,
    ip: &str,
    port: i32,
    init: bool,
) -> Res<()> {
    let lb = format!("https://{endpoint}");
    let local = format!("https://{ip}:{port}");
    let mut confs: Vec<(&str, String, String, Vec<&str>)> = vec![
        (
            "admin.conf",
            lb.clone(),
            "kubernetes-admin".into(),
            vec!["kubeadm:cluster-admins"],
        ),
        (
            "controller-manager.conf",
            local.clone(),
            "system:kube-controller-manager".into(),
            vec![],
        ),
        (
            "scheduler.conf",
            local.clone(),
            "system:kube-scheduler".into(),
            vec![],
        ),
        (
            "kubelet.conf",
            lb.clone(),
            format!("system:node:{name}"),
            vec!["system:nodes"],
        ),
    ];
    if init {
        confs.push((
            "super-admin.conf",
            local,
            "kubernetes-super-admin".into(),
            vec!["system:masters"],
        ));
    }
    for (file, server, user, orgs) in confs {
        let (c, k) = ca.issue(&user, &orgs, &[], false, true)?;
        let text = certs::kubeconfig(&ca.cert_pem, &server, &user, &c, &k);
        certs::write(&format!("/etc/kubernetes/{file}"), text.as_bytes(), 0o600)?;
    }
    Ok(())
}

fn etcd_manifest(name: &str, ip: &str, initial_cluster: &str, existing: bool) -> String {
    let p = "/etc/kubernetes/pki/etcd";
    let mut args = vec![
        "etcd".to_string(),
        format!("--advertise-client-urls=https://{ip}:2379"),
        format!("--cert-file={p}/server.crt"),
        "--client-cert-auth=true".into(),
        format!("--data-dir={ETCD_DATA}"),
        format!("--initial-advertise-peer-urls=https://{ip}:2380"),
        format!("--initial-cluster={initial_cluster}"),
    ];
    if existing {
        args.push("--initial-cluster-state=existing".into());
    }
    args.extend([
        format!("--key-file={p}/server.key"),
        format!("--listen-client-urls=https://{ip}:2379"),
        format!("--listen-peer-urls=https://{ip}:2380"),
        format!("--name={name}"),
        format!("--peer-cert-file={p}/peer.crt"),
        "--peer-client-cert-auth=true".into(),
        format!("--peer-key-file={p}/peer.key"),
        format!("--peer-trusted-ca-file={p}/ca.crt"),
        "--snapshot-count=10000".into(),
        format!("--trusted-ca-file={p}/ca.crt"),
    ]);
    pod(
        "etcd",
        &args,
        &[("etcd-data", ETCD_DATA), ("etcd-certs", p)],
        &format!("https://{ip}:2379"),
    )
}

fn apiserver_manifest(ip: &str, port: i32) -> String {
    let p = PKI;
    let args = vec![
        "kube-apiserver".to_string(),
        format!("--advertise-address={ip}"),
        "--allow-privileged=true".into(),
        "--authorization-mode=Node,RBAC".into(),
        format!("--client-ca-file={p}/ca.crt"),
        "--enable-bootstrap-token-auth=true".into(),
        format!("--etcd-cafile={p}/etcd/ca.crt"),
        format!("--etcd-certfile={p}/apiserver-etcd-client.crt"),
        format!("--etcd-keyfile={p}/apiserver-etcd-client.key"),
        format!("--etcd-servers=https://{ip}:2379"),
        format!("--secure-port={port}"),
        format!("--service-account-key-file={p}/sa.pub"),
        format!("--service-account-signing-key-file={p}/sa.key"),
        "--service-cluster-ip-range=10.96.0.0/12".into(),
        format!("--tls-cert-file={p}/apiserver.crt"),
        format!("--tls-private-key-file={p}/apiserver.key"),
    ];
    pod(
        "kube-apiserver",
        &args,
        &[("k8s-certs", p)],
        &format!("{ip}:{port}"),
    )
}

fn pod(name: &str, args: &[String], vols: &[(&str, &str)], endpoint: &str) -> String {
    let mut y = String::from("apiVersion: v1\nkind: Pod\nmetadata:\n  annotations:\n");
    let ann = if name == "etcd" {
        "kubeadm.kubernetes.io/etcd.advertise-client-urls"
    } else {
        "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"
    };
    y.push_str(&format!("    {ann}: {endpoint}\n  creationTimestamp: null\n  labels:\n    component: {name}\n    tier: control-plane\n  name: {name}\n  namespace: kube-system\nspec:\n  containers:\n  - command:\n"));
    for a in args {
        y.push_str(&format!("    - {a}\n"));
    }
    y.push_str(&format!("    image: registry.k8s.io/{name}:cpkeep-double\n    imagePullPolicy: IfNotPresent\n    name: {name}\n    resources: {{}}\n    volumeMounts:\n"));
    for (v, path) in vols {
        y.push_str(&format!("    - mountPath: {path}\n      name: {v}\n"));
    }
    y.push_str("  hostNetwork: true\n  priority: 2000001000\n  priorityClassName: system-node-critical\n  volumes:\n");
    for (v, path) in vols {
        y.push_str(&format!(
            "  - hostPath:\n      path: {path}\n      type: DirectoryOrCreate\n    name: {v}\n"
        ));
    }
    y.push_str("status: {}\n");
    y
}

fn wait_seconds(config: &Config) -> Res<Duration> {
    Ok(Duration::from_secs(config.seconds("WAIT_SECONDS", 120)?))
}

/// Waits until the local etcd answers (kubeadm's wait for the control plane).
async fn wait_local_etcd(ip: &str, deadline: Instant) -> Res<()> {
    let access = Access {
        endpoints: vec![format!("https://{ip}:2379")],
        ca: certs::read(&format!("{PKI}/etcd/ca.crt"))?,
        cert: certs::read(&format!("{PKI}/apiserver-etcd-client.crt"))?,
        key: certs::read(&format!("{PKI}/apiserver-etcd-client.key"))?,
    };
    let mut last = String::new();
    while Instant::now() < deadline {
        match access.connect().await {
            Ok(mut c) => match c.status().await {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            },
            Err(Fail(e)) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    fail!("[wait-control-plane] etcd at https://{ip}:2379 did not become healthy: {last}")
}

/// Waits until the API server stand-in answers /readyz with 200.
async fn wait_apiserver(ip: &str, port: i32, deadline: Instant) -> Res<()> {
    let ca = certs::read(&format!("{PKI}/ca.crt"))?;
    let mut last = String::new();
    while Instant::now() < deadline {
        match crate::apiserver::get_readyz(&ca, ip, port).await {
            Ok(200) => return Ok(()),
            Ok(code) => last = format!("HTTP {code}"),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    fail!("[api-check] the API server at https://{ip}:{port}/readyz is not ready: {last}")
}

/// Encrypts (or decrypts) with a SHA-256 counter-mode keystream derived from the certificate key.
fn keystream_xor(key: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for (i, chunk) in data.chunks(32).enumerate() {
        let mut h = sha2::Sha256::new();
        h.update(key.as_bytes());
        h.update((i as u64).to_be_bytes());
        let block = h.finalize();
        out.extend(chunk.iter().zip(block.iter()).map(|(a, b)| a ^ b));
    }
    out
}

fn key_check(key: &str) -> String {
    hex::encode(sha2::Sha256::digest(format!(
        "cpkeep-double-certificate-key:{key}"
    )))
}

async fn upload_certs(c: &mut etcd_client::Client, key: &str) -> Res<()> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut data = serde_json::Map::new();
    for f in certs::SHARED {
        let bytes = std::fs::read(format!("{PKI}/{f}")).map_err(|e| format!("{PKI}/{f}: {e}"))?;
        data.insert(
            f.replace('/', "-"),
            b64.encode(keystream_xor(key, &bytes)).into(),
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let secret = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": "kubeadm-certs", "namespace": "kube-system",
                      "annotations": { "cpkeep-double/upload-time": now,
                                       "cpkeep-double/key-check": key_check(key) } },
        "type": "Opaque",
        "data": data,
    });
    cluster::put_json(c, cluster::CERTS_SECRET, &secret).await?;
    println!("[upload-certs] Storing the certificates in Secret \"kubeadm-certs\" in the \"kube-system\" Namespace (kubeadm double)");
    Ok(())
}

async fn download_certs(config: &Config, c: &mut etcd_client::Client, key: &str) -> Res<()> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some(secret) = cluster::get_json(c, cluster::CERTS_SECRET).await? else {
        fail!("error execution phase control-plane-prepare/download-certs: error downloading certs: error downloading the secret: Secret \"kubeadm-certs\" was not found in the \"kube-system\" Namespace. This Secret might have expired. Please, run `kubeadm init phase upload-certs --upload-certs` on a control plane to generate a new one");
    };
    let ann = &secret["metadata"]["annotations"];
    let uploaded = ann["cpkeep-double/upload-time"].as_u64().unwrap_or(0);
    let ttl = config.seconds("CERTS_TTL_SECONDS", 7200)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if now > uploaded + ttl {
        fail!("error execution phase control-plane-prepare/download-certs: error downloading certs: error downloading the secret: Secret \"kubeadm-certs\" was not found in the \"kube-system\" Namespace. This Secret might have expired. Please, run `kubeadm init phase upload-certs --upload-certs` on a control plane to generate a new one");
    }
    if ann["cpkeep-double/key-check"].as_str() != Some(key_check(key).as_str()) {
        fail!("error execution phase control-plane-prepare/download-certs: error downloading certs: error decoding secret data with provided key: cipher: message authentication failed");
    }
    for f in certs::SHARED {
        let Some(v) = secret["data"][f.replace('/', "-")].as_str() else {
            fail!("error downloading certs: the Secret has no {f}");
        };
        let bytes = keystream_xor(key, &b64.decode(v).map_err(|e| format!("{f}: {e}"))?);
        let mode = if f.ends_with(".key") { 0o600 } else { 0o644 };
        certs::write(&format!("{PKI}/{f}"), &bytes, mode)?;
    }
    Ok(())
}

fn set_etcd_dir_mode() -> Res<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(ETCD_DATA).map_err(|e| format!("{ETCD_DATA}: {e}"))?;
    std::fs::set_permissions(ETCD_DATA, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("{ETCD_DATA}: {e}"))?;
    Ok(())
}

async fn init(config: &Config, args: Vec<String>, phase_upload: bool) -> Res<()> {
    let f = Flags::parse(
        args,
        &["--config", "--certificate-key", "--ignore-preflight-errors"],
        &["--upload-certs"],
    )?;
    if !f.positional.is_empty() {
        fail!("kubeadm double: unexpected arguments {:?}", f.positional);
    }
    let docs = read_config(f.get("--config"))?;
    let info = init_info(&docs, config)?;
    let upload = f.has("--upload-certs");
    let key = f
        .get("--certificate-key")
        .map(str::to_string)
        .or(info.certificate_key.clone());
    if let Some(k) = &key {
        check_certificate_key(k)?;
    }
    if phase_upload {
        if !upload {
            fail!("kubeadm double: [upload-certs] Skipping phase. Please see --upload-certs");
        }
        let Some(key) = key else {
            fail!("kubeadm double: upload-certs needs --certificate-key (the double never generates one)");
        };
        let mut c = Access::load(config)?.connect().await?;
        return upload_certs(&mut c, &key).await;
    }
    if upload && key.is_none() {
        fail!("kubeadm double: --upload-certs needs --certificate-key (the double never generates one)");
    }
    let mut tokens = Vec::new();
    for t in &info.tokens {
        tokens.push((check_token(t)?.to_string(), t.clone()));
    }
    preflight(true, &ignored(&f))?;
    require_shared()?;
    let ca = Ca::load("ca")?;
    node_certs(&info.name, &info.advertise, &info.endpoint, &info.cert_sans)?;
    write_kubeconfigs(
        &ca,
        &info.endpoint,
        &info.name,
        &info.advertise,
        info.port,
        true,
    )?;
    set_etcd_dir_mode()?;
    let initial = format!("{}=https://{}:2380", info.name, info.advertise);
    certs::write(
        &format!("{MANIFESTS}/etcd.yaml"),
        etcd_manifest(&info.name, &info.advertise, &initial, false).as_bytes(),
        0o600,
    )?;
    certs::write(
        &format!("{MANIFESTS}/kube-apiserver.yaml"),
        apiserver_manifest(&info.advertise, info.port).as_bytes(),
        0o600,
    )?;
    println!("[wait-control-plane] Waiting for the kubelet to boot up the control plane as static Pods (kubeadm double)");
    let deadline = Instant::now() + wait_seconds(config)?;
    wait_local_etcd(&info.advertise, deadline).await?;
    wait_apiserver(&info.advertise, info.port, deadline).await?;
    let access = Access {
        endpoints: vec![format!("https://{}:2379", info.advertise)],
        ca: certs::read(&format!("{PKI}/etcd/ca.crt"))?,
        cert: certs::read(&format!("{PKI}/apiserver-etcd-client.crt"))?,
        key: certs::read(&format!("{PKI}/apiserver-etcd-client.key"))?,
    };
    let mut c = access.connect().await?;
    if let (true, Some(k)) = (upload, &key) {
        upload_certs(&mut c, k).await?;
    }
    let expires = chrono::Utc::now() + chrono::Duration::hours(24);
    for (id, token) in tokens {
        let secret = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": format!("bootstrap-token-{id}"), "namespace": "kube-system" },
            "type": "bootstrap.kubernetes.io/token",
            "data": { "token-id": id, "token-sha256": hex::encode(sha2::Sha256::digest(token.as_bytes())),
                      "expiration": expires.to_rfc3339() },
        });
        cluster::put_json(&mut c, &cluster::token_key(&id), &secret).await?;
    }
    let info_cm = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "cluster-info", "namespace": "kube-public" },
        "data": { "ca.crt": ca.cert_pem, "server": format!("https://{}", info.endpoint) },
    });
    cluster::put_json(&mut c, cluster::CLUSTER_INFO, &info_cm).await?;
    cluster::register_node(
        &mut c,
        &info.name,
        &info.advertise,
        true,
        config.get("KUBELET_VERSION")?,
    )
    .await?;
    access.save(config)?;
    println!("Your Kubernetes control-plane has initialized successfully! (kubeadm double)");
    Ok(())
}

struct JoinInfo {
    name: String,
    token: String,
    hashes: Vec<String>,
    /// (advertise address, port, certificate key)
    control_plane: Option<(String, i32, Option<String>)>,
}

fn join_info(docs: &[Document], config: &Config) -> Res<JoinInfo> {
    let mut out = None;
    for d in docs {
        let (name, disc, cp) = match d {
            Document::V1Beta3Join(j) => (
                j.node_registration.as_ref().and_then(|n| n.name.clone()),
                j.discovery.bootstrap_token.clone(),
                j.control_plane
                    .as_ref()
                    .map(|c| (c.local_api_endpoint.clone(), c.certificate_key.clone())),
            ),
            Document::V1Beta4Join(j) => (
                j.node_registration.as_ref().and_then(|n| n.name.clone()),
                j.discovery.bootstrap_token.clone(),
                j.control_plane
                    .as_ref()
                    .map(|c| (c.local_api_endpoint.clone(), c.certificate_key.clone())),
            ),
            Document::Kubelet(_) => continue,
            _ => fail!("kubeadm double: join was given an Init or ClusterConfiguration"),
        };
        let Some(disc) = disc else {
            fail!("kubeadm double: discovery.bootstrapToken is required (file discovery is not doubled)");
        };
        if disc.unsafe_skip_ca_verification == Some(true) {
            fail!("kubeadm double: unsafeSkipCAVerification is refused by the double (cpkeep always pins)");
        }
        let cp = match cp {
            None => None,
            Some((api, key)) => {
                let ip = match api.as_ref().and_then(|a| a.advertise_address.clone()) {
                    Some(ip) => ip,
                    None => config.get("NODE_IP")?.to_string(),
                };
                Some((ip, api.and_then(|a| a.bind_port).unwrap_or(6443), key))
            }
        };
        out = Some(JoinInfo {
            name: name.unwrap_or_else(hostname),
            token: disc.token,
            hashes: disc.ca_cert_hashes,
            control_plane: cp,
        });
    }
    match out {
        Some(o) => Ok(o),
        None => fail!("kubeadm double: the config has no JoinConfiguration"),
    }
}

async fn join(config: &Config, args: Vec<String>) -> Res<()> {
    let f = Flags::parse(args, &["--config", "--ignore-preflight-errors"], &[])?;
    if f.positional.len() > 1 {
        fail!("kubeadm double: unexpected arguments {:?}", f.positional);
    }
    let docs = read_config(f.get("--config"))?;
    let info = join_info(&docs, config)?;
    let id = check_token(&info.token)?.to_string();
    preflight(info.control_plane.is_some(), &ignored(&f))?;
    let access = Access::load(config)?;
    let mut c = access.connect().await?;
    // Discovery: the token must exist, and the cluster CA must match a pinned hash.
    let Some(tok) = cluster::get_json(&mut c, &cluster::token_key(&id)).await? else {
        fail!("error execution phase preflight: couldn't validate the identity of the API Server: could not find a JWS signature in the cluster-info ConfigMap for token ID {id:?}");
    };
    if tok["data"]["token-sha256"].as_str()
        != Some(&hex::encode(sha2::Sha256::digest(info.token.as_bytes())))
    {
        fail!("error execution phase preflight: couldn't validate the identity of the API Server: failed to verify JWS signature of received cluster info object, can't trust this API Server");
    }
    let Some(ci) = cluster::get_json(&mut c, cluster::CLUSTER_INFO).await? else {
        fail!("error execution phase preflight: couldn't validate the identity of the API Server: the cluster-info ConfigMap does not exist");
    };
    let ca_pem = ci["data"]["ca.crt"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let hash = certs::ca_cert_hash(&ca_pem)?;
    if info.hashes.is_empty() {
        fail!("error execution phase preflight: couldn't validate the identity of the API Server: none, at least one of the discovery-token-ca-cert-hash or unsafe-skip-ca-verification must be set");
    }
    for h in &info.hashes {
        if !h.starts_with("sha256:") || h.len() != 71 {
            fail!("error execution phase preflight: invalid hash {h:?}: expected sha256:<64 hex>");
        }
    }
    if !info.hashes.contains(&hash) {
        fail!("error execution phase preflight: couldn't validate the identity of the API Server: cluster CA found in cluster-info ConfigMap is invalid: none of the public keys \"{hash}\" are pinned");
    }
    let kubelet_version = config.get("KUBELET_VERSION")?.to_string();
    let Some((ip, port, key)) = info.control_plane.clone() else {
        // A worker: the kubelet's kubeconfig and the Node.
        certs::write(&format!("{PKI}/ca.crt"), ca_pem.as_bytes(), 0o644)?;
        let server = ci["data"]["server"].as_str().unwrap_or_default();
        certs::write("/etc/kubernetes/kubelet.conf", format!("apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority: {PKI}/ca.crt\n    server: {server}\n  name: default-cluster\n").as_bytes(), 0o600)?;
        cluster::register_node(
            &mut c,
            &info.name,
            config.get("NODE_IP")?,
            false,
            &kubelet_version,
        )
        .await?;
        println!("This node has joined the cluster (kubeadm double)");
        return Ok(());
    };
    match &key {
        Some(k) => {
            check_certificate_key(k)?;
            download_certs(config, &mut c, k).await?;
        }
        None => require_shared()?,
    }
    if certs::read(&format!("{PKI}/ca.crt"))?.trim() != ca_pem.trim() {
        fail!("error execution phase control-plane-prepare/certs: the CA in {PKI}/ca.crt is not the cluster's CA");
    }
    let endpoint = ci["data"]["server"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("https://")
        .to_string();
    if endpoint.is_empty() {
        fail!("error execution phase preflight: unable to add a new control plane instance to a cluster that doesn't have a stable controlPlaneEndpoint address");
    }
    node_certs(&info.name, &ip, &endpoint, &[])?;
    let ca = Ca::load("ca")?;
    write_kubeconfigs(&ca, &endpoint, &info.name, &ip, port, false)?;
    set_etcd_dir_mode()?;
    // etcd: add this node as a learner, start it, promote it once in sync.
    let peer = format!("https://{ip}:2380");
    // etcd refuses a new member for ~5 s after another became active ("unhealthy cluster"); kubeadm
    // retries the add with a back-off, so does the double.
    let add_deadline = Instant::now() + wait_seconds(config)?;
    let added = loop {
        match c
            .member_add(
                [peer.clone()],
                Some(etcd_client::MemberAddOptions::new().with_is_learner()),
            )
            .await
        {
            Ok(a) => break a,
            Err(e)
                if e.to_string().contains("unhealthy cluster") && Instant::now() < add_deadline =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => fail!(
                "error execution phase control-plane-join/etcd: error adding etcd member: {e}"
            ),
        }
    };
    let Some(me) = added.member().map(|m| m.id()) else {
        fail!(
            "error execution phase control-plane-join/etcd: etcd did not return the added member"
        );
    };
    let mut initial = Vec::new();
    for m in added.member_list() {
        if m.id() == me {
            initial.push(format!("{}={peer}", info.name));
        } else if !m.name().is_empty() {
            for u in m.peer_urls() {
                initial.push(format!("{}={u}", m.name()));
            }
        }
    }
    println!("[etcd] Announced new etcd member joining to the existing etcd cluster as a learner (kubeadm double)");
    let fail_mode = config.opt("FAIL_JOIN_AFTER_MEMBER_ADD").unwrap_or("");
    if fail_mode == "before-manifest" {
        fail!("error execution phase control-plane-join/etcd: error creating local etcd static pod manifest file: injected failure (FAIL_JOIN_AFTER_MEMBER_ADD=before-manifest)");
    }
    certs::write(
        &format!("{MANIFESTS}/etcd.yaml"),
        etcd_manifest(&info.name, &ip, &initial.join(","), true).as_bytes(),
        0o600,
    )?;
    if fail_mode == "1" {
        fail!("error execution phase control-plane-join/etcd: error creating local etcd static pod manifest file: etcdserver: can only promote a learner member which is in sync with leader: timeout waiting for etcd cluster to be available (injected: FAIL_JOIN_AFTER_MEMBER_ADD=1)");
    }
    let deadline = Instant::now() + wait_seconds(config)?;
    let mut last: String;
    loop {
        match c.member_promote(me).await {
            Ok(_) => break,
            Err(e) => last = e.to_string(),
        }
        if Instant::now() > deadline {
            fail!("error execution phase control-plane-join/etcd: error creating local etcd static pod manifest file: timeout waiting for etcd cluster to be available: {last}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    println!("[etcd] Promoted the learner to a voting member (kubeadm double)");
    wait_local_etcd(&ip, deadline).await?;
    certs::write(
        &format!("{MANIFESTS}/kube-apiserver.yaml"),
        apiserver_manifest(&ip, port).as_bytes(),
        0o600,
    )?;
    wait_apiserver(&ip, port, deadline).await?;
    cluster::register_node(&mut c, &info.name, &ip, true, &kubelet_version).await?;
    println!("This node has joined the cluster and a new control plane instance was created (kubeadm double)");
    Ok(())
}

fn reset(args: Vec<String>) -> Res<()> {
    let f = Flags::parse(args, &[], &["-f", "--force"])?;
    if !f.positional.is_empty() {
        fail!("kubeadm double: unexpected arguments {:?}", f.positional);
    }
    if !f.has("-f") && !f.has("--force") {
        fail!("kubeadm double: reset asks for confirmation on a terminal; the double needs -f");
    }
    // Stop the static pods and wait for the kubelet double to have stopped them.
    if let Ok(rd) = std::fs::read_dir(MANIFESTS) {
        for e in rd.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while crate::kubelet::running_pods() > 0 {
        if Instant::now() > deadline {
            fail!("kubeadm double: [reset] the kubelet double did not stop the static pods within 20 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Ok(rd) = std::fs::read_dir(ETCD_DATA) {
        for e in rd.flatten() {
            let p = e.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
    let _ = std::fs::remove_dir_all(PKI);
    for f in [
        "admin.conf",
        "super-admin.conf",
        "kubelet.conf",
        "bootstrap-kubelet.conf",
        "controller-manager.conf",
        "scheduler.conf",
    ] {
        let _ = std::fs::remove_file(format!("/etc/kubernetes/{f}"));
    }
    println!("[reset] Deleted contents of the etcd data directory: {ETCD_DATA} (kubeadm double; the etcd member was NOT removed)");
    Ok(())
}
