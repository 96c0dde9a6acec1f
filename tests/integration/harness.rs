//! Shared test plumbing: locating real etcd binaries, starting sandboxes, running the cpkeep binary.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use cpkeep::sandbox::{Sandbox, SandboxOptions};

/// The etcd release lines the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Etcd {
    V35,
    V34,
}

impl Etcd {
    fn dir(self) -> PathBuf {
        let (var, sub) = match self {
            Etcd::V35 => ("CPKEEP_ETCD35_DIR", "etcd-3.5"),
            Etcd::V34 => ("CPKEEP_ETCD34_DIR", "etcd-3.4"),
        };
        std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tools")
                .join(sub)
                .join("bin")
        })
    }

    /// The etcd binary; panics (fails the test) with instructions when it is missing.
    pub fn etcd(self) -> PathBuf {
        let p = self.dir().join("etcd");
        assert!(
            p.is_file(),
            "etcd {self:?} not found at {}: run scripts/install-tools.sh (or set CPKEEP_ETCD35_DIR / CPKEEP_ETCD34_DIR)",
            p.display()
        );
        p
    }

    pub fn prefix(self) -> &'static str {
        match self {
            Etcd::V35 => "3.5.",
            Etcd::V34 => "3.4.",
        }
    }
}

/// Starts a TLS sandbox of `members` voters.
pub async fn sandbox(v: Etcd, members: usize) -> Sandbox {
    sandbox_with(v, members, |_| {}).await
}

/// Starts a sandbox after letting the caller adjust the options.
pub async fn sandbox_with(
    v: Etcd,
    members: usize,
    adjust: impl FnOnce(&mut SandboxOptions),
) -> Sandbox {
    let mut opts = SandboxOptions::new(v.etcd(), members);
    adjust(&mut opts);
    match Sandbox::start(opts).await {
        Ok(s) => s,
        Err(e) => panic!("sandbox with etcd {v:?} did not start: {e}"),
    }
}

/// What one cpkeep run did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts the error contract: one error line, the last on stderr, with the program prefix; the
    /// other lines are log lines; no panic, no backtrace, no Debug dump anywhere.
    pub fn assert_one_clear_line(&self) -> &str {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        let errors: Vec<&&str> = lines.iter().filter(|l| l.starts_with("cpkeep: ")).collect();
        assert_eq!(
            errors.len(),
            1,
            "expected one error line, got:\n{}",
            self.stderr
        );
        let line = *errors[0];
        assert_eq!(
            lines.last(),
            Some(&line),
            "the error is not the last line:\n{}",
            self.stderr
        );
        for l in &lines {
            let is_log = l.len() > 20
                && l.as_bytes()[4] == b'-'
                && (l.contains(" INFO ") || l.contains(" WARN "));
            assert!(
                is_log || *l == line,
                "unexpected stderr line {l:?} in:\n{}",
                self.stderr
            );
            for bad in [
                "panicked",
                "RUST_BACKTRACE",
                "Status {",
                "Error {",
                "Os {",
                "Some(",
            ] {
                assert!(!l.contains(bad), "stderr has {bad:?}: {l}");
            }
        }
        line
    }
}

/// Runs the cpkeep binary with `args`, without any CPKEEP_* variable from the test environment.
pub async fn cpkeep(args: &[String]) -> Run {
    cpkeep_env(args, &[]).await
}

/// Runs the cpkeep binary with `args` and extra environment (AWS credentials), isolated from the test
/// machine's CPKEEP_* and AWS settings.
pub async fn cpkeep_env(args: &[String], env: &[(&str, String)]) -> Run {
    let started = Instant::now();
    let out: Output = cpkeep_command(args, env)
        .output()
        .await
        .expect("run cpkeep");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// The command [`cpkeep_env`] runs, for a test that signals the process while it runs (stdout and
/// stderr piped).
pub fn cpkeep_command(args: &[String], env: &[(&str, String)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cpkeep"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("CPKEEP_") || k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("AWS_CONFIG_FILE", "/nonexistent-cpkeep-test-aws-config");
    cmd.env(
        "AWS_SHARED_CREDENTIALS_FILE",
        "/nonexistent-cpkeep-test-aws-credentials",
    );
    cmd.env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in env {
        cmd.env(k, v);
    }
    // No kubeadm defaults from the machine running the tests.
    cmd.env("CPKEEP_PKI_DIR", "/nonexistent-cpkeep-test-pki")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// The connection flags reaching `endpoints` of a sandbox with its healthcheck-client certificate.
pub fn conn_args(sb: &Sandbox, endpoints: &[String], timeout: &str) -> Vec<String> {
    let mut a = vec![
        "--endpoints".to_string(),
        endpoints.join(","),
        "--timeout".to_string(),
        timeout.to_string(),
    ];
    let files = sb.tls_files();
    for (flag, path) in [
        ("--cacert", files.ca),
        ("--cert", files.cert),
        ("--key", files.key),
    ] {
        if let Some(p) = path {
            a.push(flag.to_string());
            a.push(p.display().to_string());
        }
    }
    a
}

/// `cpkeep cluster health -o json` against every member of the sandbox.
pub async fn health(sb: &Sandbox, timeout: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "cluster".to_string(),
        "health".to_string(),
        "-o".into(),
        "json".into(),
    ];
    args.extend(conn_args(sb, &sb.endpoints(), timeout));
    args.extend(extra.iter().map(|s| s.to_string()));
    cpkeep(&args).await
}

/// The reasons of a health report, joined for assertions.
pub fn reasons(v: &serde_json::Value) -> String {
    v["reasons"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .unwrap_or_default()
}

/// A test tool from tools/ (scripts/install-tools.sh); fails the test with instructions when missing.
pub fn tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("CPKEEP_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools"));
    let p = dir.join("bin").join(name);
    assert!(
        p.exists(),
        "{name} not found at {}: run scripts/install-tools.sh",
        p.display()
    );
    p
}

/// etcdutl 3.5 (it reads 3.4 files too).
pub fn etcdutl() -> PathBuf {
    let p = Etcd::V35.etcd().with_file_name("etcdutl");
    assert!(
        p.is_file(),
        "etcdutl not found at {}: run scripts/install-tools.sh",
        p.display()
    );
    p
}

/// `etcdutl snapshot status -w json` of a file.
pub fn etcdutl_status(file: &std::path::Path) -> serde_json::Value {
    let out = std::process::Command::new(etcdutl())
        .args(["snapshot", "status", "-w", "json"])
        .arg(file)
        .output()
        .expect("run etcdutl");
    assert!(
        out.status.success(),
        "etcdutl snapshot status {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("etcdutl json")
}

/// Writes `keys` Kubernetes-like objects of about `value_size` bytes, plus some overwrites and deletes.
pub async fn fill(sb: &Sandbox, keys: usize, value_size: usize) {
    let conn = sb.connection(Duration::from_secs(10)).unwrap();
    let client = cpkeep::etcd::connect(&conn.endpoints[0], &conn)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let mut kv = client.kv_client();
        tasks.push(tokio::spawn(async move {
            for i in (w..keys).step_by(8) {
                let ns = format!("ns{}", i % 7);
                let key = format!("/registry/configmaps/{ns}/cm-{i:06}");
                let body = format!("{{\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"cm-{i}\",\"namespace\":\"{ns}\"}},\"data\":\"{}\"}}", "x".repeat(value_size));
                kv.put(key, body, None).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut kv = client.kv_client();
    kv.put("/registry/configmaps/ns0/cm-000000", "overwritten", None)
        .await
        .unwrap();
    kv.delete("/registry/configmaps/ns1/cm-000001", None)
        .await
        .unwrap();
}

/// Fills the sandbox (see [`fill`]), deletes every object and compacts physically, so the members'
/// databases are mostly free pages: what defragmentation gives back.
pub async fn fill_delete_compact(sb: &Sandbox, keys: usize, value_size: usize) {
    fill(sb, keys, value_size).await;
    let conn = sb.connection(Duration::from_secs(10)).unwrap();
    let mut client = cpkeep::etcd::connect(&conn.endpoints[0], &conn)
        .await
        .unwrap();
    let del = client
        .delete(
            "/registry/configmaps/",
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    let rev = del.header().unwrap().revision();
    client
        .compact(
            rev,
            Some(etcd_client::CompactionOptions::new().with_physical()),
        )
        .await
        .unwrap();
}

/// A tmpfs mounted for one test (full or read-only directories), unmounted on drop. Needs root, as
/// CI runs.
pub struct Tmpfs {
    pub dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            st.success(),
            "mounting a tmpfs failed: these tests run as root (as CI does)"
        );
        Self { dir }
    }

    pub fn read_only(&self) {
        let st = std::process::Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.dir.path())
            .status()
            .expect("run mount");
        assert!(st.success(), "remount read-only failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// Files whose name ends with `suffix` anywhere under `dir`.
pub fn files_ending(dir: &std::path::Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out
}

/// `per_version!(a, b)`: runs each `async fn a(v: Etcd)` once against etcd 3.5 (`v35::a`) and once
/// against 3.4 (`v34::a`).
macro_rules! per_version {
    ($($name:ident),* $(,)?) => {
        mod v35 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name(crate::harness::Etcd::V35).await }
            )*
        }
        mod v34 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name(crate::harness::Etcd::V34).await }
            )*
        }
    };
}

/// A TLS server configuration (aws-lc, safe protocol versions, no client auth) for test servers that
/// stand in for an apiserver.
pub fn tls_acceptor(
    chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    key: rustls_pki_types::PrivateKeyDer<'static>,
) -> tokio_rustls::TlsAcceptor {
    use tokio_rustls::rustls;
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))
}

/// kubeadm's HA guide example as an inventory: cp1–cp3 at 192.168.1.10–12 behind haproxy and
/// keepalived on the VIP 192.168.1.20:8443.
pub const GUIDE_INVENTORY: &str = "\
apiVersion: cpkeep/v1alpha1
kind: Cluster
name: prod
kubernetesVersion: v1.31.4
controlPlaneEndpoint: 192.168.1.20:8443
loadBalancer: {mode: haproxy-keepalived, vip: 192.168.1.20, interface: eth0}
networking: {podSubnet: 10.244.0.0/16, serviceSubnet: 10.96.0.0/12, dnsDomain: cluster.local}
controlPlane:
  - {name: cp1, address: 192.168.1.10}
  - {name: cp2, address: 192.168.1.11}
  - {name: cp3, address: 192.168.1.12}
";

/// Runs cpkeep as user `nobody` (65534) when the tests run as root, so that files only root may read
/// are unreadable as they are to a non-root check; as another user, the files made unreadable to
/// their owner (mode 0) do the same.
pub async fn cpkeep_unprivileged(a: &[String]) -> Run {
    use std::os::unix::fs::MetadataExt;
    let probe = tempfile::NamedTempFile::new().unwrap();
    if probe.as_file().metadata().unwrap().uid() != 0 {
        return cpkeep(a).await;
    }
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .expect("setpriv (util-linux) is needed to run cpkeep as an unprivileged user");
    let out = tokio::process::Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_cpkeep"))
        .args(a)
        .env_remove("CPKEEP_CERT_DIR")
        .env_remove("CPKEEP_KUBECONFIG_DIR")
        .env_remove("CPKEEP_CERTS_PROMETHEUS")
        .env_remove("CPKEEP_CERTS_WEBHOOK")
        .env_remove("CPKEEP_MANIFESTS_DIR")
        .output()
        .await
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: std::time::Duration::ZERO,
    }
}
