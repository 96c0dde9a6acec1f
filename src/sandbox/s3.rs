//! A real S3 server on loopback for the tests and the demo: SeaweedFS (`weed server -s3`) with one
//! identity, so every request must be signed with its keys.
//!
//! `weed server` runs a master, a volume server, a filer and the S3 gateway in one process. Each
//! listens on an HTTP port and on a gRPC port; the sandbox picks every HTTP port `p` below the
//! kernel's ephemeral range with `p + 10000` free too, and passes `p + 10000` as the gRPC port
//! (SeaweedFS's own convention). Everything binds 127.0.0.1 only; the Iceberg and Lance listeners,
//! the telemetry report and bucket auto-creation are turned off. Data, logs and sockets go to a temp
//! dir, except the gRPC unix sockets SeaweedFS always creates as
//! `/tmp/seaweedfs-<role>-grpc-<port>.sock`, which the sandbox removes when it stops the server.
//! It never prints.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{CertPair, EtcdPki, KeyAlgorithm, SandboxError};
use crate::store::{S3Options, S3Store, StoreError};

/// The gRPC port of a SeaweedFS service is its HTTP port plus this.
const GRPC_OFFSET: u16 = 10_000;
/// HTTP ports are picked in [LOW_PORT, HIGH_PORT): with their gRPC ports, all below 32768, where
/// Linux hands out no ephemeral ports.
const LOW_PORT: u16 = 10_000;
const HIGH_PORT: u16 = 22_768;
const ROLES: [&str; 4] = ["master", "volume", "filer", "s3"];

/// How to start an S3 sandbox. `Debug` hides the secret key.
#[derive(Clone)]
pub struct S3SandboxOptions {
    /// The `weed` binary; else `$CPKEEP_WEED`, else `weed` on `PATH`.
    pub weed: Option<PathBuf>,
    /// Where to keep data and logs; a temp dir (removed on drop) when `None`.
    pub dir: Option<PathBuf>,
    pub access_key: String,
    /// `None`: a random one.
    pub secret_key: Option<String>,
    pub region: String,
    /// How long SeaweedFS may take to answer a signed ListBuckets.
    pub start_timeout: Duration,
    /// Serve S3 over HTTPS too, with a certificate for 127.0.0.1 from a sandbox CA:
    /// [`endpoint`](S3Sandbox::endpoint) is then the HTTPS one and
    /// [`ca_bundle`](S3Sandbox::ca_bundle) the CA to trust.
    pub tls: bool,
    /// Size of each SeaweedFS volume in MB and how many may exist: capacity is their product.
    pub volume_size_mb: u32,
    pub volumes: u32,
}

impl Default for S3SandboxOptions {
    fn default() -> Self {
        Self {
            weed: None,
            dir: None,
            access_key: "cpkeep-sandbox".to_string(),
            secret_key: None,
            region: "us-east-1".to_string(),
            start_timeout: Duration::from_secs(60),
            tls: false,
            volume_size_mb: 64,
            volumes: 8,
        }
    }
}

/// The SeaweedFS ports of one sandbox (gRPC: each plus 10000).
#[derive(Debug, Clone, Copy)]
struct Ports {
    master: u16,
    volume: u16,
    filer: u16,
    s3: u16,
}

impl Ports {
    fn all(&self) -> [(&'static str, u16); 4] {
        [
            (ROLES[0], self.master),
            (ROLES[1], self.volume),
            (ROLES[2], self.filer),
            (ROLES[3], self.s3),
        ]
    }
}

/// A running SeaweedFS with an S3 gateway on loopback. Dropping it kills the server. `Debug` hides
/// the secret key.
pub struct S3Sandbox {
    root: PathBuf,
    _temp: Option<tempfile::TempDir>,
    weed: PathBuf,
    log: PathBuf,
    ports: Ports,
    /// The HTTPS port and the CA, server certificate and key (TLS sandboxes).
    tls: Option<(u16, CertPair, CertPair)>,
    /// Plain HTTP, always served: readiness probes and [`S3Sandbox::client`].
    http_endpoint: String,
    endpoint: String,
    access_key: String,
    secret_key: String,
    region: String,
    /// What [`S3Sandbox::restart`] starts the server with again.
    volume_size_mb: u32,
    volumes: u32,
    start_timeout: Duration,
    child: Option<Child>,
}

impl std::fmt::Debug for S3SandboxOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3SandboxOptions")
            .field("weed", &self.weed)
            .field("dir", &self.dir)
            .field("access_key", &self.access_key)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "** redacted **"),
            )
            .field("region", &self.region)
            .field("start_timeout", &self.start_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

impl std::fmt::Debug for S3Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Sandbox")
            .field("endpoint", &self.endpoint)
            .field("root", &self.root)
            .field("weed", &self.weed)
            .field("ports", &self.ports)
            .field("access_key", &self.access_key)
            .field("secret_key", &"** redacted **")
            .field("region", &self.region)
            .field("pid", &self.pid())
            .finish()
    }
}

/// The `weed` binary to run: the explicit path, else `$CPKEEP_WEED`, else `weed` on `PATH`.
fn locate_weed(explicit: Option<&Path>) -> Result<PathBuf, SandboxError> {
    let missing = |what: String| SandboxError::Exec {
        path: PathBuf::from("weed"),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "no SeaweedFS binary: {what} (scripts/install-tools.sh installs it into tools/; \
                 then `. tools/env.sh` sets CPKEEP_WEED)"
            ),
        ),
    };
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(missing(format!("{} does not exist", p.display())))
        };
    }
    if let Some(p) = std::env::var_os("CPKEEP_WEED").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(missing(format!(
                "CPKEEP_WEED={} does not exist",
                p.display()
            )))
        };
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("weed");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(missing(
        "CPKEEP_WEED is not set and there is no weed on PATH".to_string(),
    ))
}

/// Pseudo-random numbers for port picks and secrets (no need for cryptographic quality).
fn next_random() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ (u64::from(std::process::id()) << 32);
    let mut z = STATE
        .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
        .wrapping_add(seed);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn random_secret() -> String {
    let mut h = Sha256::new();
    for _ in 0..4 {
        h.update(next_random().to_le_bytes());
    }
    hex::encode(&h.finalize()[..20])
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_ok()
}

/// Picks `n` HTTP ports whose gRPC twins are free too, never handing out a port twice in this
/// process (sandboxes of parallel tests start at the same time).
fn pick_ports(n: usize) -> Result<Vec<u16>, SandboxError> {
    static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut taken = TAKEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut out = Vec::with_capacity(n);
    let span = u64::from(HIGH_PORT - LOW_PORT);
    for _ in 0..5_000 {
        if out.len() == n {
            break;
        }
        let p = LOW_PORT + u16::try_from(next_random() % span).unwrap_or(0);
        let grpc = p + GRPC_OFFSET;
        if taken.contains(&p) || taken.contains(&grpc) || !port_is_free(p) || !port_is_free(grpc) {
            continue;
        }
        taken.insert(p);
        taken.insert(grpc);
        out.push(p);
    }
    if out.len() == n {
        Ok(out)
    } else {
        Err(SandboxError::NoPort(format!(
            "127.0.0.1: no {n} ports p in {LOW_PORT}..{HIGH_PORT} with p and p+{GRPC_OFFSET} free"
        )))
    }
}

/// An SDK error on one line: the server's code and message, else the cause chain.
fn sdk_error_text<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    if let Some(code) = e.code() {
        return format!("{code}: {}", e.message().unwrap_or("no message"));
    }
    let mut parts = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !parts.iter().any(|p: &String| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError {
    let path = path.to_path_buf();
    move |source| SandboxError::Io { path, source }
}

impl S3Sandbox {
    /// Starts SeaweedFS and waits until its S3 gateway answers a signed ListBuckets and its volume
    /// server has registered (before that, writes fail).
    pub async fn start(opts: S3SandboxOptions) -> Result<Self, SandboxError> {
        let weed = locate_weed(opts.weed.as_deref())?;
        let (root, temp) = match &opts.dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(io_err(d))?;
                (d.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("cpkeep-s3-")
                    .tempdir()
                    .map_err(io_err(&std::env::temp_dir()))?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        for sub in ["data", "home", "tmp"] {
            let d = root.join(sub);
            std::fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        let secret_key = opts.secret_key.clone().unwrap_or_else(random_secret);
        let identities = serde_json::json!({
            "identities": [{
                "name": "cpkeep",
                "credentials": [{"accessKey": opts.access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }]
        });
        let config = root.join("s3.json");
        std::fs::write(&config, identities.to_string()).map_err(io_err(&config))?;

        let p = pick_ports(if opts.tls { 5 } else { 4 })?;
        let ports = Ports {
            master: p[0],
            volume: p[1],
            filer: p[2],
            s3: p[3],
        };
        let tls = match p.get(4) {
            Some(&https) if opts.tls => {
                let mut pki = EtcdPki::generate_named(
                    &root.join("pki"),
                    KeyAlgorithm::EcdsaP256,
                    "cpkeep-s3-sandbox-ca",
                )?;
                let certs = pki.issue_member("s3", IpAddr::from(Ipv4Addr::LOCALHOST))?;
                Some((https, pki.ca.clone(), certs.server))
            }
            _ => None,
        };
        let http_endpoint = format!("http://127.0.0.1:{}", ports.s3);
        let endpoint = match &tls {
            Some((https, ..)) => format!("https://127.0.0.1:{https}"),
            None => http_endpoint.clone(),
        };
        let mut sandbox = S3Sandbox {
            log: root.join("weed.log"),
            root,
            _temp: temp,
            weed,
            ports,
            tls,
            http_endpoint,
            endpoint,
            access_key: opts.access_key.clone(),
            secret_key,
            region: opts.region.clone(),
            volume_size_mb: opts.volume_size_mb,
            volumes: opts.volumes,
            start_timeout: opts.start_timeout,
            child: None,
        };
        sandbox.spawn()?;
        sandbox
            .wait_ready(Instant::now() + opts.start_timeout)
            .await?;
        Ok(sandbox)
    }

    fn spawn(&mut self) -> Result<(), SandboxError> {
        let config = self.root.join("s3.json");
        let (volume_size_mb, volumes) = (self.volume_size_mb, self.volumes);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io_err(&self.log))?;
        let log2 = log.try_clone().map_err(io_err(&self.log))?;
        let p = self.ports;
        let grpc = |port: u16| port + GRPC_OFFSET;
        let root = &self.root;
        let mut cmd = Command::new(&self.weed);
        cmd.arg("-logtostderr")
            .arg(format!("-config_dir={}", root.display()))
            .arg("server")
            .arg(format!("-dir={}", root.join("data").display()))
            .arg("-ip=127.0.0.1")
            .arg("-ip.bind=127.0.0.1")
            .arg(format!("-master.port={}", p.master))
            .arg(format!("-master.port.grpc={}", grpc(p.master)))
            .arg("-master.telemetry=false")
            .arg(format!("-master.volumeSizeLimitMB={}", volume_size_mb))
            .arg(format!("-volume.port={}", p.volume))
            .arg(format!("-volume.port.grpc={}", grpc(p.volume)))
            .arg(format!("-volume.max={}", volumes))
            .arg("-filer")
            .arg(format!("-filer.port={}", p.filer))
            .arg(format!("-filer.port.grpc={}", grpc(p.filer)))
            .arg(format!(
                "-filer.localSocket={}",
                root.join("filer.sock").display()
            ))
            .arg("-s3")
            .arg(format!("-s3.port={}", p.s3))
            .arg(format!("-s3.port.grpc={}", grpc(p.s3)))
            .arg("-s3.port.iceberg=0")
            .arg("-s3.port.lance=0")
            // Like S3: a PUT into a missing bucket fails instead of creating it.
            .arg("-s3.autoCreateBucket=false")
            .arg(format!("-s3.config={}", config.display()))
            .arg(format!(
                "-s3.localSocket={}",
                root.join("s3.sock").display()
            ));
        if let Some((https, _, server)) = &self.tls {
            cmd.arg(format!("-s3.port.https={https}"))
                .arg(format!("-s3.cert.file={}", server.cert.display()))
                .arg(format!("-s3.key.file={}", server.key.display()));
        }
        cmd.current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            // No WEED_* or AWS_* settings of the calling shell; no ~/.seaweedfs of the user.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", root.join("home"))
            .env("TMPDIR", root.join("tmp"));
        let child = cmd.spawn().map_err(|source| SandboxError::Exec {
            path: self.weed.clone(),
            source,
        })?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_ready(&mut self, deadline: Instant) -> Result<(), SandboxError> {
        let client = self.probe_client();
        let mut last;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    self.remove_sockets();
                    return Err(self.not_ready(format!("weed exited with {status}")));
                }
            }
            match self.volume_registered().await {
                Ok(true) => match client.list_buckets().send().await {
                    Ok(_) if self.https_listening().await => return Ok(()),
                    Ok(_) => last = "the HTTPS port does not accept connections yet".to_string(),
                    Err(e) => last = format!("list buckets: {}", sdk_error_text(&e)),
                },
                Ok(false) => last = "the volume server has not registered yet".to_string(),
                Err(e) => last = format!("master: {e}"),
            }
            if Instant::now() > deadline {
                return Err(self.not_ready(last));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the HTTPS port (if any) accepts connections.
    async fn https_listening(&self) -> bool {
        match &self.tls {
            Some((https, ..)) => {
                tokio::net::TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, *https)))
                    .await
                    .is_ok()
            }
            None => true,
        }
    }

    /// Whether the master lists our volume server (`GET /dir/status`).
    async fn volume_registered(&self) -> std::io::Result<bool> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.ports.master));
        let fetch = async {
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            let req = format!(
                "GET /dir/status HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n",
                self.ports.master
            );
            s.write_all(req.as_bytes()).await?;
            let mut body = Vec::new();
            s.read_to_end(&mut body).await?;
            Ok::<_, std::io::Error>(body)
        };
        let body = tokio::time::timeout(Duration::from_secs(2), fetch)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 2s"))??;
        let needle = format!("\"Url\":\"127.0.0.1:{}\"", self.ports.volume);
        Ok(String::from_utf8_lossy(&body).contains(&needle))
    }

    fn not_ready(&self, reason: String) -> SandboxError {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        SandboxError::Io {
            path: self.log.clone(),
            source: std::io::Error::other(format!(
                "SeaweedFS ({}) did not become ready: {reason}; last log lines:\n{tail}",
                self.weed.display()
            )),
        }
    }

    /// A client with few retries and short timeouts, for readiness probes.
    fn probe_client(&self) -> aws_sdk_s3::Client {
        self.client_with(
            RetryConfig::standard().with_max_attempts(1),
            Duration::from_secs(3),
        )
    }

    fn client_with(&self, retry: RetryConfig, timeout: Duration) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .endpoint_url(&self.http_endpoint)
            .force_path_style(true)
            .credentials_provider(self.credentials())
            .retry_config(retry)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .operation_timeout(timeout)
                    .build(),
            )
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    fn credentials(&self) -> Credentials {
        Credentials::new(
            self.access_key.clone(),
            self.secret_key.clone(),
            None,
            None,
            "cpkeep-sandbox",
        )
    }

    /// The S3 endpoint: `http://127.0.0.1:<port>`, or `https://…` for a TLS sandbox.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The CA that signed the HTTPS certificate (TLS sandboxes).
    pub fn ca_bundle(&self) -> Option<&Path> {
        self.tls.as_ref().map(|(_, ca, _)| ca.cert.as_path())
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The sandbox's directory (data, log).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// SeaweedFS's log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The server's process ID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Every port the server listens on: (role, HTTP port, gRPC port); a TLS sandbox's HTTPS port
    /// is the `s3-https` role's (it has no gRPC port: 0).
    pub fn ports(&self) -> Vec<(&'static str, u16, u16)> {
        let mut out: Vec<_> = self
            .ports
            .all()
            .iter()
            .map(|&(role, p)| (role, p, p + GRPC_OFFSET))
            .collect();
        if let Some((https, ..)) = &self.tls {
            out.push(("s3-https", *https, 0));
        }
        out
    }

    /// Store options reaching this server (endpoint, region, path-style addressing) with
    /// loopback-sized retries and timeouts (5 attempts from 100 ms, connect 2 s, 60 s per attempt,
    /// 120 s per operation); the rest is default. Credentials come from
    /// [`config_loader`](Self::config_loader), or [`env`](Self::env) for a child process.
    pub fn s3_options(&self) -> S3Options {
        S3Options {
            endpoint: Some(self.endpoint.clone()),
            region: Some(self.region.clone()),
            path_style: true,
            ca_bundle: self.ca_bundle().map(Path::to_path_buf),
            max_attempts: 5,
            initial_backoff: Some(Duration::from_millis(100)),
            connect_timeout: Some(Duration::from_secs(2)),
            attempt_timeout: Some(Duration::from_secs(60)),
            operation_timeout: Some(Duration::from_secs(120)),
            ..S3Options::default()
        }
    }

    /// [`S3Store::config_loader`] with this server's static keys; callers may override them, e.g.
    /// to test a wrong secret.
    pub fn config_loader(&self) -> aws_config::ConfigLoader {
        S3Store::config_loader().credentials_provider(self.credentials())
    }

    /// A store on `bucket` under `prefix` with [`s3_options`](Self::s3_options) and
    /// [`config_loader`](Self::config_loader).
    pub async fn connect(&self, bucket: &str, prefix: &str) -> Result<S3Store, StoreError> {
        S3Store::connect_with(bucket, prefix, &self.s3_options(), self.config_loader()).await
    }

    /// Environment for a cpkeep child process to reach this server through the standard AWS chain
    /// (with the instance metadata service disabled).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", self.region.clone()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
    }

    /// A fresh SDK client for this server (plain HTTP, static keys, path style, 3 attempts), for
    /// what the store does not do (create buckets, start a bare multipart upload).
    pub fn client(&self) -> aws_sdk_s3::Client {
        self.client_with(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(100)),
            Duration::from_secs(30),
        )
    }

    /// Creates a bucket (names have 3 to 63 characters); an existing one of ours is fine.
    pub async fn create_bucket(&self, name: &str) -> Result<(), SandboxError> {
        match self.client().create_bucket().bucket(name).send().await {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.code(), Some("BucketAlreadyOwnedByYou")) => Ok(()),
            Err(e) => Err(SandboxError::Io {
                path: PathBuf::from(&self.endpoint),
                source: std::io::Error::other(format!(
                    "create bucket {name}: {}",
                    sdk_error_text(&e)
                )),
            }),
        }
    }

    /// Starts the server again after [`kill`](Self::kill), on the same ports, data and keys (an
    /// outage that ends), and waits until it is ready. A running server is left alone.
    pub async fn restart(&mut self) -> Result<(), SandboxError> {
        if self.child.is_some() {
            return Ok(());
        }
        self.spawn()?;
        self.wait_ready(Instant::now() + self.start_timeout).await
    }

    /// Kills the server with SIGKILL, as a crashed node would stop.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.remove_sockets();
    }

    /// The gRPC unix sockets SeaweedFS leaves in /tmp, named by our ports.
    fn remove_sockets(&self) {
        use std::os::unix::fs::FileTypeExt;
        for (role, port) in self.ports.all() {
            let path = PathBuf::from(format!(
                "/tmp/seaweedfs-{role}-grpc-{}.sock",
                port + GRPC_OFFSET
            ));
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_socket()) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

impl Drop for S3Sandbox {
    fn drop(&mut self) {
        self.kill();
    }
}
