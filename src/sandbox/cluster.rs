//! Starting, faulting and stopping the sandbox's etcd members.

use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::MemberAddOptions;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::pki::{EtcdPki, KeyAlgorithm};
use super::ports::free_port;
use super::SandboxError;
use crate::etcd::{connect, ConnectionOptions, Credentials, Endpoint, TlsFiles, TlsMaterial};
use crate::restore::RestoreOptions;

/// How to build a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Voting members started at once (1 to 5: one loopback address each).
    pub members: usize,
    /// TLS with client-certificate auth on client and peer URLs, as kubeadm configures etcd.
    pub tls: bool,
    /// The etcd binary.
    pub etcd: PathBuf,
    /// Where to put PKI, data and logs; a temp dir (removed on drop) when `None`.
    pub dir: Option<PathBuf>,
    /// etcd's --quota-backend-bytes.
    pub quota_bytes: Option<u64>,
    pub key_algorithm: KeyAlgorithm,
    /// How long members may take to elect a leader.
    pub start_timeout: Duration,
    /// Serve each member's Prometheus metrics on its own plain-HTTP listener
    /// (`--listen-metrics-urls`), as kubeadm does on 127.0.0.1:2381.
    pub metrics: bool,
}

impl SandboxOptions {
    pub fn new(etcd: PathBuf, members: usize) -> Self {
        Self {
            members,
            tls: true,
            etcd,
            dir: None,
            quota_bytes: None,
            key_algorithm: KeyAlgorithm::EcdsaP256,
            start_timeout: Duration::from_secs(30),
            metrics: false,
        }
    }
}

/// One member: its addresses and its process.
#[derive(Debug)]
pub struct SandboxMember {
    pub name: String,
    pub ip: IpAddr,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub learner: bool,
    /// The metrics listener's port (sandboxes started with `metrics`).
    pub metrics_port: Option<u16>,
    /// The etcd binary this member runs when it is not the sandbox's (a rolling-upgrade step).
    etcd: Option<PathBuf>,
    child: Option<Child>,
}

impl SandboxMember {
    /// The client URL (`https://127.0.0.N:port`).
    pub fn client_url(&self, tls: bool) -> String {
        format!("{}://{}:{}", scheme(tls), self.ip, self.client_port)
    }

    /// The peer URL.
    pub fn peer_url(&self, tls: bool) -> String {
        format!("{}://{}:{}", scheme(tls), self.ip, self.peer_port)
    }

    /// The metrics URL (`http://127.0.0.N:port/metrics`), when the sandbox serves metrics.
    pub fn metrics_url(&self) -> Option<String> {
        self.metrics_port
            .map(|p| format!("http://{}:{p}/metrics", self.ip))
    }

    /// The OS process ID while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn scheme(tls: bool) -> &'static str {
    if tls {
        "https"
    } else {
        "http"
    }
}

/// A running local etcd cluster. Dropping it kills every member.
#[derive(Debug)]
pub struct Sandbox {
    opts: SandboxOptions,
    root: PathBuf,
    _temp: Option<tempfile::TempDir>,
    pki: Option<EtcdPki>,
    token: String,
    members: Vec<SandboxMember>,
    credentials: Option<Credentials>,
}

impl Sandbox {
    /// Creates the PKI, starts the members and waits until they have elected a leader.
    pub async fn start(opts: SandboxOptions) -> Result<Self, SandboxError> {
        if opts.members == 0 || opts.members > 5 {
            return Err(SandboxError::Request(format!(
                "a sandbox has 1 to 5 members, not {}",
                opts.members
            )));
        }
        let (root, temp) = match &opts.dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(|source| SandboxError::Io {
                    path: d.clone(),
                    source,
                })?;
                (d.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("cpkeep-sandbox-")
                    .tempdir()
                    .map_err(|source| SandboxError::Io {
                        path: std::env::temp_dir(),
                        source,
                    })?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let pki = if opts.tls {
            Some(EtcdPki::generate(&root.join("pki"), opts.key_algorithm)?)
        } else {
            None
        };
        let token = format!("cpkeep-sandbox-{}", std::process::id());
        let mut sandbox = Sandbox {
            opts,
            root,
            _temp: temp,
            pki,
            token,
            members: Vec::new(),
            credentials: None,
        };
        for _ in 0..sandbox.opts.members {
            sandbox.prepare_member(false)?;
        }
        let initial = sandbox.initial_cluster();
        for i in 0..sandbox.members.len() {
            sandbox.spawn(i, &initial, "new")?;
        }
        let deadline = Instant::now() + sandbox.opts.start_timeout;
        for i in 0..sandbox.members.len() {
            sandbox.wait_ready(i, deadline).await?;
        }
        Ok(sandbox)
    }

    /// The sandbox's directory (PKI, data dirs, logs).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The members, in the order they were added.
    pub fn members(&self) -> &[SandboxMember] {
        &self.members
    }

    /// Whether the members speak TLS.
    pub fn tls(&self) -> bool {
        self.opts.tls
    }

    /// The PKI (TLS sandboxes only).
    pub fn pki(&self) -> Option<&EtcdPki> {
        self.pki.as_ref()
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| m.client_url(self.opts.tls))
            .collect()
    }

    /// The CA and healthcheck-client files, as kubeadm lays them out.
    pub fn tls_files(&self) -> TlsFiles {
        match &self.pki {
            Some(p) => TlsFiles {
                ca: Some(p.ca.cert.clone()),
                cert: Some(p.healthcheck_client.cert.clone()),
                key: Some(p.healthcheck_client.key.clone()),
            },
            None => TlsFiles::default(),
        }
    }

    /// Connection options reaching every member with the healthcheck-client certificate.
    pub fn connection(&self, timeout: Duration) -> Result<ConnectionOptions, SandboxError> {
        self.connection_to(&self.endpoints(), timeout)
    }

    /// Connection options for chosen endpoints.
    pub fn connection_to(
        &self,
        endpoints: &[String],
        timeout: Duration,
    ) -> Result<ConnectionOptions, SandboxError> {
        let files = self.tls_files();
        let tls = if files.any() {
            Some(TlsMaterial::load(&files)?)
        } else {
            None
        };
        Ok(ConnectionOptions {
            endpoints: Endpoint::parse_list(endpoints, self.opts.tls)?,
            tls,
            credentials: self.credentials.clone(),
            timeout,
        })
    }

    /// The index of the current leader, asking the running members in turn.
    pub async fn leader(&self) -> Result<usize, SandboxError> {
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_none() {
                continue;
            }
            let conn =
                self.connection_to(&[m.client_url(self.opts.tls)], Duration::from_secs(2))?;
            let Ok(mut c) = connect(&conn.endpoints[0], &conn).await else {
                continue;
            };
            if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(2), c.status()).await {
                let me = s.header().map(|h| h.member_id()).unwrap_or_default();
                if me != 0 && me == s.leader() {
                    return Ok(i);
                }
            }
        }
        Err(SandboxError::Request(
            "no running member is the leader".into(),
        ))
    }

    /// Index of a running follower (the last one), to kill without forcing an election.
    pub async fn follower(&self) -> Result<usize, SandboxError> {
        let leader = self.leader().await?;
        (0..self.members.len())
            .rev()
            .find(|&i| i != leader && self.members[i].child.is_some() && !self.members[i].learner)
            .ok_or_else(|| SandboxError::Request("no running follower".into()))
    }

    /// Kills a member with SIGKILL, as a crashed node would stop.
    pub fn kill(&mut self, index: usize) -> Result<(), SandboxError> {
        let m = self
            .members
            .get_mut(index)
            .ok_or(SandboxError::NoSuchMember(index))?;
        if let Some(mut child) = m.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Ok(())
    }

    /// The options a native restore of member `index` takes to rebuild this cluster: its name,
    /// peer URL, data dir (moved aside when it exists), and the whole membership with this
    /// sandbox's token, so the restored members agree and keep their member IDs.
    pub fn restore_options(&self, index: usize) -> Result<RestoreOptions, SandboxError> {
        let m = self
            .members
            .get(index)
            .ok_or(SandboxError::NoSuchMember(index))?;
        Ok(RestoreOptions {
            name: m.name.clone(),
            initial_cluster: Some(self.initial_cluster()),
            initial_cluster_token: self.token.clone(),
            initial_advertise_peer_urls: vec![m.peer_url(self.opts.tls)],
            data_dir: Some(m.data_dir.clone()),
            move_aside: true,
            ..RestoreOptions::default()
        })
    }

    /// Starts every stopped member on its data dir (e.g. after a restore) and waits until the
    /// cluster has a leader again.
    pub async fn start_stopped(&mut self) -> Result<(), SandboxError> {
        let initial = self.initial_cluster();
        let stopped: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].child.is_none())
            .collect();
        for &i in &stopped {
            self.spawn(i, &initial, "new")?;
        }
        let deadline = Instant::now() + self.opts.start_timeout;
        for &i in &stopped {
            self.wait_ready(i, deadline).await?;
        }
        Ok(())
    }

    /// Changes one value in a member's database while it is stopped, as a disk or a person could:
    /// waits until the member's db file holds `from` (the backend commits in batches), kills the
    /// member, replaces every occurrence of `from` by `to` in the file in place, and starts it again.
    /// `from` and `to` have the same length, so bbolt's pages stay valid (bbolt has no checksum on
    /// leaf pages) and etcd starts and serves `to`. Returns how many occurrences were replaced.
    pub async fn alter_value_while_stopped(
        &mut self,
        index: usize,
        from: &[u8],
        to: &[u8],
    ) -> Result<usize, SandboxError> {
        if from.len() != to.len() || from.is_empty() {
            return Err(SandboxError::Request(
                "the altered value must have the length of the original".into(),
            ));
        }
        let db = self
            .members
            .get(index)
            .ok_or(SandboxError::NoSuchMember(index))?
            .data_dir
            .join("member")
            .join("snap")
            .join("db");
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| SandboxError::Io {
                path: p.to_path_buf(),
                source,
            })
        };
        let deadline = Instant::now() + self.opts.start_timeout;
        while !contains(&read(&db)?, from) {
            if Instant::now() > deadline {
                return Err(SandboxError::Request(format!(
                    "{} never held the value to alter",
                    db.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill(index)?;
        let mut data = read(&db)?;
        let mut replaced = 0;
        let mut i = 0;
        while i + from.len() <= data.len() {
            if &data[i..i + from.len()] == from {
                data[i..i + from.len()].copy_from_slice(to);
                replaced += 1;
                i += from.len();
            } else {
                i += 1;
            }
        }
        std::fs::write(&db, &data).map_err(|source| SandboxError::Io {
            path: db.clone(),
            source,
        })?;
        self.restart(index).await?;
        Ok(replaced)
    }

    /// Restarts a stopped member on its existing data dir with another etcd binary, as one step of
    /// a rolling upgrade does; later restarts keep that binary.
    pub async fn restart_with(&mut self, index: usize, etcd: &Path) -> Result<(), SandboxError> {
        let m = self
            .members
            .get_mut(index)
            .ok_or(SandboxError::NoSuchMember(index))?;
        m.etcd = Some(etcd.to_path_buf());
        self.restart(index).await
    }

    /// Re-issues a member's serving (client URL) certificate to expire in `days` days, signed by the
    /// sandbox CA, in place. A running member keeps serving the old one until it is restarted.
    pub fn reissue_server_cert(&mut self, index: usize, days: i64) -> Result<(), SandboxError> {
        let m = self
            .members
            .get(index)
            .ok_or(SandboxError::NoSuchMember(index))?;
        let (name, ip) = (m.name.clone(), m.ip);
        let pki = self.pki.as_mut().ok_or_else(|| {
            SandboxError::Request("a plain-HTTP sandbox has no certificates".into())
        })?;
        pki.reissue_server(&name, ip, days)
    }

    /// Freezes a member with SIGSTOP: its sockets stay open but it answers nothing.
    pub fn pause(&self, index: usize) -> Result<(), SandboxError> {
        self.signal(index, Signal::SIGSTOP)
    }

    /// Thaws a member frozen by [`pause`](Self::pause).
    pub fn resume(&self, index: usize) -> Result<(), SandboxError> {
        self.signal(index, Signal::SIGCONT)
    }

    fn signal(&self, index: usize, sig: Signal) -> Result<(), SandboxError> {
        let m = self
            .members
            .get(index)
            .ok_or(SandboxError::NoSuchMember(index))?;
        let pid = m.pid().ok_or(SandboxError::NoSuchMember(index))?;
        let pid = i32::try_from(pid).map_err(|_| SandboxError::NoSuchMember(index))?;
        kill(Pid::from_raw(pid), sig)
            .map_err(|e| SandboxError::Request(format!("cannot send {sig} to {}: {e}", m.name)))
    }

    /// Restarts a killed member on its existing data dir.
    pub async fn restart(&mut self, index: usize) -> Result<(), SandboxError> {
        if self.members.get(index).is_none() {
            return Err(SandboxError::NoSuchMember(index));
        }
        let initial = self.initial_cluster();
        self.spawn(index, &initial, "existing")?;
        self.wait_ready(index, Instant::now() + self.opts.start_timeout)
            .await
    }

    /// Adds a member through the MemberAdd API (as a learner or a voter), starts it and waits until
    /// it answers. Returns its index.
    pub async fn add_member(&mut self, learner: bool) -> Result<usize, SandboxError> {
        let index = self.prepare_member(learner)?;
        let peer = self.members[index].peer_url(self.opts.tls);
        let running: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| m.client_url(self.opts.tls))
            .collect();
        let conn = self.connection_to(&running, Duration::from_secs(5))?;
        let ep = conn.endpoints[0].clone();
        let mut client = connect(&ep, &conn).await?;
        let mut options = MemberAddOptions::new();
        if learner {
            options = options.with_is_learner();
        }
        // etcd refuses reconfiguration ("unhealthy cluster") until every member has been connected
        // for a few seconds (its strict reconfig check), which a just-started sandbox is not.
        let deadline = Instant::now() + self.opts.start_timeout;
        loop {
            match client
                .member_add([peer.clone()], Some(options.clone()))
                .await
            {
                Ok(_) => break,
                Err(e)
                    if e.to_string().contains("unhealthy cluster") && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(SandboxError::Request(format!("member add: {e}"))),
            }
        }
        let initial = self.initial_cluster();
        self.spawn(index, &initial, "existing")?;
        self.wait_ready(index, Instant::now() + self.opts.start_timeout)
            .await?;
        Ok(index)
    }

    /// Prepares a member that joins later (its loopback address, ports and certificates) without adding
    /// it to the cluster or starting it: the caller adds it (e.g. with `cpkeep cluster member add`),
    /// then starts it with [`start_joining`](Self::start_joining). Returns its index.
    pub fn prepare_joining(&mut self) -> Result<usize, SandboxError> {
        self.prepare_member(true)
    }

    /// Starts a prepared member with `--initial-cluster-state existing` and the `--initial-cluster`
    /// line the cluster gave for it, and waits until it answers.
    pub async fn start_joining(
        &mut self,
        index: usize,
        initial_cluster: &str,
    ) -> Result<(), SandboxError> {
        if self.members.get(index).is_none() {
            return Err(SandboxError::NoSuchMember(index));
        }
        self.spawn(index, initial_cluster, "existing")?;
        self.wait_ready(index, Instant::now() + self.opts.start_timeout)
            .await
    }

    /// Turns on etcd authentication with a `root` user holding `password`; later connections of this
    /// sandbox authenticate as root.
    pub async fn enable_auth(&mut self, password: &str) -> Result<(), SandboxError> {
        let conn = self.connection(Duration::from_secs(5))?;
        let mut client = connect(&conn.endpoints[0], &conn).await?;
        let req = |e: etcd_client::Error| SandboxError::Request(e.to_string());
        client.user_add("root", password, None).await.map_err(req)?;
        client.role_add("root").await.map_err(req)?;
        client.user_grant_role("root", "root").await.map_err(req)?;
        client.auth_enable().await.map_err(req)?;
        self.credentials = Some(Credentials {
            user: "root".to_string(),
            password: password.to_string(),
        });
        Ok(())
    }

    /// Writes `count` Kubernetes-like keys (`/registry/configmaps/<ns>/demo-<i>`) and returns the
    /// revision after the last write.
    pub async fn write_sample(&self, count: usize) -> Result<i64, SandboxError> {
        let conn = self.connection(Duration::from_secs(5))?;
        let mut client = connect(&conn.endpoints[0], &conn).await?;
        let mut revision = 0;
        for i in 0..count {
            let ns = ["default", "kube-system", "monitoring"][i % 3];
            let value = format!(
                "{{\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"demo-{i}\",\"namespace\":\"{ns}\"}},\"data\":{{\"n\":\"{i}\"}}}}"
            );
            let r = client
                .put(format!("/registry/configmaps/{ns}/demo-{i}"), value, None)
                .await
                .map_err(|e| SandboxError::Request(format!("put: {e}")))?;
            revision = r.header().map(|h| h.revision()).unwrap_or(revision);
        }
        Ok(revision)
    }

    /// Stops every member.
    pub fn stop(&mut self) {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                // SIGKILL also ends a member frozen with SIGSTOP, so no thaw is needed first.
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    fn prepare_member(&mut self, learner: bool) -> Result<usize, SandboxError> {
        let index = self.members.len();
        if index >= 250 {
            return Err(SandboxError::Request("too many members".into()));
        }
        let ip = IpAddr::from([127, 0, 0, (index + 1) as u8]);
        let name = format!("m{}", index + 1);
        let dir = self.root.join(&name);
        std::fs::create_dir_all(&dir).map_err(|source| SandboxError::Io {
            path: dir.clone(),
            source,
        })?;
        if let Some(pki) = &mut self.pki {
            pki.issue_member(&name, ip)?;
        }
        let client_port = free_port(ip)?;
        let mut peer_port = free_port(ip)?;
        while peer_port == client_port {
            peer_port = free_port(ip)?;
        }
        let metrics_port = if self.opts.metrics {
            let mut p = free_port(ip)?;
            while p == client_port || p == peer_port {
                p = free_port(ip)?;
            }
            Some(p)
        } else {
            None
        };
        self.members.push(SandboxMember {
            name,
            ip,
            client_port,
            peer_port,
            data_dir: dir.join("data"),
            log: dir.join("etcd.log"),
            learner,
            metrics_port,
            etcd: None,
            child: None,
        });
        Ok(index)
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url(self.opts.tls)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, index: usize, initial: &str, state: &str) -> Result<(), SandboxError> {
        let tls = self.opts.tls;
        let m = &self.members[index];
        let log = File::options()
            .create(true)
            .append(true)
            .open(&m.log)
            .map_err(|source| SandboxError::Io {
                path: m.log.clone(),
                source,
            })?;
        let log2 = log.try_clone().map_err(|source| SandboxError::Io {
            path: m.log.clone(),
            source,
        })?;
        let etcd = m.etcd.clone().unwrap_or_else(|| self.opts.etcd.clone());
        let mut cmd = Command::new(&etcd);
        cmd.arg(format!("--name={}", m.name))
            .arg(format!("--data-dir={}", m.data_dir.display()))
            .arg(format!("--listen-client-urls={}", m.client_url(tls)))
            .arg(format!("--advertise-client-urls={}", m.client_url(tls)))
            .arg(format!("--listen-peer-urls={}", m.peer_url(tls)))
            .arg(format!("--initial-advertise-peer-urls={}", m.peer_url(tls)))
            .arg(format!("--initial-cluster={initial}"))
            .arg(format!("--initial-cluster-token={}", self.token))
            .arg(format!("--initial-cluster-state={state}"))
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .arg("--snapshot-count=10000");
        if let Some(url) = m.metrics_url() {
            let base = url.trim_end_matches("/metrics");
            cmd.arg(format!("--listen-metrics-urls={base}"));
        }
        if let Some(q) = self.opts.quota_bytes {
            cmd.arg(format!("--quota-backend-bytes={q}"));
        }
        if let Some(pki) = &self.pki {
            let dir = pki.dir.join("etcd").join(&m.name);
            let ca = pki.ca.cert.display().to_string();
            cmd.arg("--client-cert-auth=true")
                .arg(format!("--trusted-ca-file={ca}"))
                .arg(format!("--cert-file={}", dir.join("server.crt").display()))
                .arg(format!("--key-file={}", dir.join("server.key").display()))
                .arg("--peer-client-cert-auth=true")
                .arg(format!("--peer-trusted-ca-file={ca}"))
                .arg(format!(
                    "--peer-cert-file={}",
                    dir.join("peer.crt").display()
                ))
                .arg(format!(
                    "--peer-key-file={}",
                    dir.join("peer.key").display()
                ));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            // etcd must not inherit ETCD_* settings of the calling shell.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        let child = cmd
            .spawn()
            .map_err(|source| SandboxError::Exec { path: etcd, source })?;
        self.members[index].child = Some(child);
        Ok(())
    }

    async fn wait_ready(&mut self, index: usize, deadline: Instant) -> Result<(), SandboxError> {
        let url = self.members[index].client_url(self.opts.tls);
        let conn = self.connection_to(std::slice::from_ref(&url), Duration::from_secs(2))?;
        let learner = self.members[index].learner;
        let mut last;
        loop {
            if let Some(child) = self.members[index].child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.members[index].child = None;
                    return Err(self.not_ready(index, format!("etcd exited with {status}")));
                }
            }
            let attempt = async {
                let mut c = connect(&conn.endpoints[0], &conn).await?;
                c.status()
                    .await
                    .map_err(|e| crate::etcd::EtcdError::Request {
                        endpoint: url.clone(),
                        cause: e.to_string(),
                    })
            };
            match tokio::time::timeout(Duration::from_secs(2), attempt).await {
                Ok(Ok(s)) if s.leader() != 0 || learner => return Ok(()),
                Ok(Ok(_)) => last = "no leader yet".to_string(),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "status timed out".to_string(),
            }
            if Instant::now() > deadline {
                return Err(self.not_ready(index, last));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn not_ready(&self, index: usize, reason: String) -> SandboxError {
        let m = &self.members[index];
        let log = std::fs::read_to_string(&m.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(10)..].join("\n");
        SandboxError::NotReady {
            name: m.name.clone(),
            reason,
            log_tail: tail,
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop();
    }
}
