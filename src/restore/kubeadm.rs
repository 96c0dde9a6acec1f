//! `cpkeep restore --kubeadm`: a restore on a kubeadm control-plane node, where the kubelet runs
//! etcd as a static pod from `/etc/kubernetes/manifests/etcd.yaml`.
//!
//! This module owns the whole sequence around the native restore of [`super::run`]:
//! 1. the member's settings read from the manifest ([`super::manifest`]), explicit flags merged
//!    over them (the plan says which value came from where), checks that need no change;
//! 2. the manifest moved beside the manifests directory (`/etc/kubernetes/etcd.yaml.cpkeep-restore`),
//!    so the kubelet stops etcd, and a wait until the member has stopped (its client URL no longer
//!    accepts connections and no process has a file open in its data dir);
//! 3. the restore, always with move-aside (the old data dir becomes `<data-dir>.bak-<timestamp>`)
//!    and, unless one is given, a new cluster token derived from the snapshot and the members, so
//!    that members of the old cluster still running elsewhere cannot take a restored member back;
//! 4. the manifest put back, byte for byte, also after any failure once it was moved; a failed
//!    restore leaves the old data dir in place (the restore rolls its own steps back);
//! 5. a wait until the member answers Status over TLS with kubeadm's healthcheck client
//!    certificate, as the restored member of the restored cluster, following a leader;
//! 6. the command the other control-plane nodes run for the same snapshot and membership.
//!
//! It never prints (progress goes to `tracing`), never writes anything into the manifests directory
//! but the manifest itself (the kubelet reads every file there), never edits the manifest, never
//! puts the manifest back over a missing data dir (etcd would start a new, empty cluster), and never
//! writes to the etcd cluster (it only asks Status and the member list).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::error::RestoreError;
use super::ids::id_hex;
use super::manifest::{split_list, EtcdManifest, ManifestError};
use super::rewrite::Bump;
use super::run::{self, RestoreOptions, RestorePlan, RestoreReport, RestoreSource};
use crate::etcd::{
    connect, list_members, ConnectionOptions, Endpoint, EtcdError, TlsFiles, TlsMaterial,
};
use crate::staticpod::{self, PutBackError, StillRunning};

/// Where kubeadm writes etcd's static pod manifest.
pub const DEFAULT_MANIFEST: &str = "/etc/kubernetes/manifests/etcd.yaml";
/// Appended to the manifest's file name while it is parked beside the manifests directory.
pub const PARKED_SUFFIX: &str = ".cpkeep-restore";
/// The healthcheck client certificate kubeadm issues next to etcd's serving certificate.
pub const HEALTHCHECK_CERT: &str = "healthcheck-client.crt";
pub const HEALTHCHECK_KEY: &str = "healthcheck-client.key";

/// Values given explicitly on the command line; each overrides the manifest's.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub name: Option<String>,
    pub initial_cluster: Option<String>,
    pub initial_cluster_token: Option<String>,
    pub initial_advertise_peer_urls: Option<Vec<String>>,
    pub data_dir: Option<PathBuf>,
    pub wal_dir: Option<PathBuf>,
}

/// What a kubeadm restore does and how long it waits.
#[derive(Debug, Clone)]
pub struct KubeadmOptions {
    pub manifest: PathBuf,
    pub overrides: Overrides,
    pub skip_hash_check: bool,
    pub bump: Option<Bump>,
    pub clear_alarms: bool,
    /// How another node names the same snapshot on `cpkeep restore`'s command line: the snapshot
    /// argument and the flags that go with it (store, cluster ID, identity).
    pub source_args: Vec<String>,
    /// Said to the other nodes about the snapshot (e.g. that a file must be copied to them first).
    pub source_note: Option<String>,
    /// What identifies the snapshot (a stored snapshot's ID, a file's path, size and time). The
    /// new cluster token is derived from it and the membership, so that a dry run and the restore
    /// agree on the command for the other nodes.
    pub snapshot_id: String,
    /// How long the kubelet may take to stop etcd once the manifest is gone.
    pub stop_timeout: Duration,
    /// How long the restored member may take to become healthy once the manifest is back.
    pub wait_timeout: Duration,
    /// Bound on each request to the member.
    pub request_timeout: Duration,
    pub poll_interval: Duration,
    /// In a restored cluster of several members, how long a running member may go without a
    /// quorum before the wait ends: it cannot become healthy until the other nodes are restored.
    pub quorum_grace: Duration,
}

impl KubeadmOptions {
    pub fn new(manifest: PathBuf) -> Self {
        KubeadmOptions {
            manifest,
            overrides: Overrides::default(),
            skip_hash_check: false,
            bump: None,
            clear_alarms: false,
            source_args: Vec::new(),
            source_note: None,
            snapshot_id: String::new(),
            stop_timeout: Duration::from_secs(120),
            wait_timeout: Duration::from_secs(300),
            request_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(500),
            quorum_grace: Duration::from_secs(30),
        }
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Manifest,
    Flag,
    Default,
    /// Made for this restore (the cluster token).
    New,
}

/// One setting of the restore and its origin.
#[derive(Debug, Clone, Serialize)]
pub struct Setting {
    pub flag: &'static str,
    pub value: String,
    pub from: Origin,
    /// The manifest's value, when a flag replaced a different one.
    pub manifest_value: Option<String>,
}

/// Where and how the member's health is checked.
#[derive(Debug, Clone, Serialize)]
pub struct HealthTarget {
    pub endpoint: String,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// What the other control-plane nodes run.
#[derive(Debug, Clone, Serialize)]
pub struct OtherNodes {
    /// `name (peer URLs)` of each member to restore on its own node.
    pub members: Vec<String>,
    pub argv: Vec<String>,
    /// `argv` quoted for a POSIX shell.
    pub command: String,
    pub notes: Vec<String>,
}

/// What a kubeadm restore will do, decided before anything changes.
#[derive(Debug, Clone, Serialize)]
pub struct KubeadmPlan {
    pub manifest: PathBuf,
    /// Where the manifest waits while etcd is stopped.
    pub parked_manifest: PathBuf,
    pub settings: Vec<Setting>,
    pub restore: RestorePlan,
    pub health: HealthTarget,
    /// The running cluster's members (`name=peerURLs`), when the member answered before the restore.
    pub live_members: Option<Vec<String>>,
    /// Why the running cluster's member list is not known.
    pub live_members_error: Option<String>,
    /// Things to check: the manifest lists fewer members than run, flags that differ from what
    /// etcd will be started with.
    pub notes: Vec<String>,
    pub other_nodes: Option<OtherNodes>,
    #[serde(skip)]
    options: RestoreOptions,
    #[serde(skip)]
    connection: ConnectionOptions,
}

/// How the member was found stopped.
#[derive(Debug, Clone, Serialize)]
pub struct Stopped {
    /// Whether etcd was answering when the manifest was moved.
    pub was_running: bool,
    pub seconds: f64,
}

/// The restored member's state at the end of the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthState {
    /// Answers Status as the restored member, following a leader.
    Healthy,
    /// Running (its client port accepts connections) but without a quorum: the other members of
    /// the restored cluster are not restored yet.
    WaitingForQuorum,
}

/// What the member answered after the restore.
#[derive(Debug, Clone, Serialize)]
pub struct HealthCheck {
    pub endpoint: String,
    pub state: HealthState,
    pub member_id: Option<String>,
    pub cluster_id: Option<String>,
    pub leader: Option<String>,
    pub revision: Option<i64>,
    pub version: Option<String>,
    pub seconds: f64,
}

/// What a kubeadm restore did.
#[derive(Debug, Clone, Serialize)]
pub struct KubeadmReport {
    pub manifest: PathBuf,
    pub settings: Vec<Setting>,
    pub notes: Vec<String>,
    pub stopped: Stopped,
    pub restored: RestoreReport,
    /// The manifest is back in place, unchanged.
    pub manifest_restored: bool,
    pub health: HealthCheck,
    pub other_nodes: Option<OtherNodes>,
    pub seconds: f64,
}

/// Why a kubeadm restore did not happen or did not finish. Each says what state the node is in.
#[derive(Debug, thiserror::Error)]
pub enum KubeadmError {
    /// The manifest cannot be used (nothing changed).
    #[error(transparent)]
    Manifest(#[from] ManifestError),

    /// Bad flags or files (nothing changed).
    #[error("{0}")]
    Usage(String),

    /// The TLS files for the health check cannot be used (nothing changed).
    #[error("health check of the restored member: {0}")]
    Tls(EtcdError),

    /// The restore cannot be planned (nothing changed).
    #[error(transparent)]
    Plan(Box<RestoreError>),

    /// Something is in the way (nothing changed).
    #[error("{0}")]
    InTheWay(String),

    /// The restore failed after the manifest was moved; `state` says where things are.
    #[error("{source}; {state}")]
    Restore {
        source: Box<RestoreError>,
        state: String,
    },

    /// The sequence failed (etcd did not stop, a rename failed, interrupted, not healthy in time).
    #[error("{what}; {state}")]
    Failed { what: String, state: String },
}

impl KubeadmError {
    /// 3 for an unusable manifest, flags or TLS files, 2 when something is in the way, the
    /// restore's own class when it failed there, else 1.
    pub fn class(&self) -> crate::failure::FailureClass {
        use crate::failure::FailureClass;
        match self {
            KubeadmError::Manifest(_) | KubeadmError::Usage(_) | KubeadmError::Tls(_) => {
                FailureClass::Unusable
            }
            KubeadmError::Plan(r) => r.class(),
            KubeadmError::Restore { source, .. } => source.class(),
            KubeadmError::InTheWay(_) => FailureClass::Refused,
            KubeadmError::Failed { .. } => FailureClass::Failed,
        }
    }

    fn io(action: &str, path: &Path, e: std::io::Error, state: &str) -> Self {
        KubeadmError::Failed {
            what: format!("cannot {action} {}: {e}", path.display()),
            state: state.to_string(),
        }
    }
}

const NOTHING_CHANGED: &str = "nothing was changed";

/// Reads the manifest, merges the overrides, checks what can be checked without changing
/// anything, and asks the running member (if it answers) for the member list. Writes nothing.
pub async fn plan(
    opts: &KubeadmOptions,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<KubeadmPlan, KubeadmError> {
    let manifest_path = std::path::absolute(&opts.manifest).map_err(|e| {
        KubeadmError::Usage(format!(
            "cannot resolve the manifest path {}: {e}",
            opts.manifest.display()
        ))
    })?;
    let parked = staticpod::parked_path(&manifest_path, PARKED_SUFFIX)?;
    if parked.exists() {
        let hint = if manifest_path.exists() {
            "compare it with the manifest, remove it, then run again".to_string()
        } else {
            format!(
                "the kubelet is not running etcd: move it back (mv {} {}), then run again",
                parked.display(),
                manifest_path.display()
            )
        };
        return Err(KubeadmError::InTheWay(format!(
            "{} exists: an interrupted `cpkeep restore --kubeadm` left it; {hint}",
            parked.display()
        )));
    }
    let m = EtcdManifest::read(&manifest_path)?;
    let ov = &opts.overrides;
    let mut settings = Vec::new();
    let name = merge(
        &mut settings,
        "--name",
        ov.name.clone(),
        Some(m.name.clone()),
        "",
    );
    let peer_urls = merge(
        &mut settings,
        "--initial-advertise-peer-urls",
        ov.initial_advertise_peer_urls.as_ref().map(|u| u.join(",")),
        Some(m.initial_advertise_peer_urls.join(",")),
        "",
    );
    let peer_urls = split_list(&peer_urls);
    let default_cluster = peer_urls
        .iter()
        .map(|u| format!("{name}={u}"))
        .collect::<Vec<_>>()
        .join(",");
    let initial_cluster = merge(
        &mut settings,
        "--initial-cluster",
        ov.initial_cluster.clone(),
        m.initial_cluster.clone(),
        &default_cluster,
    );
    // A new token unless one is given: the token is part of every member ID and of the cluster
    // ID, and with the old ones, members of the old cluster still running on the other nodes
    // would take the restored member back into the old cluster (and overwrite its data, or make
    // it crash on a raft log that conflicts with theirs).
    let token = match &ov.initial_cluster_token {
        Some(t) => merge(
            &mut settings,
            "--initial-cluster-token",
            Some(t.clone()),
            m.initial_cluster_token.clone(),
            "",
        ),
        None => {
            let base = m
                .initial_cluster_token
                .as_deref()
                .unwrap_or(run::DEFAULT_TOKEN);
            // Derived, not random: a dry run and the restore print the same command.
            let digest = Sha256::new()
                .chain_update(opts.snapshot_id.as_bytes())
                .chain_update([0])
                .chain_update(initial_cluster.as_bytes())
                .finalize();
            let token = format!("{base}-restore-{}", &hex::encode(digest)[..10]);
            settings.push(Setting {
                flag: "--initial-cluster-token",
                value: token.clone(),
                from: Origin::New,
                manifest_value: m.initial_cluster_token.clone(),
            });
            token
        }
    };
    // The manifest's paths are the container's: the restore writes where its hostPath volume
    // puts them on this node.
    let mut notes = Vec::new();
    let mut on_node = |flag: &str, inside: &Path| -> PathBuf {
        match m.on_node(inside) {
            Some(p) => {
                if p != inside {
                    notes.push(format!(
                        "the manifest's {flag} {} is {} on this node (its hostPath volume)",
                        inside.display(),
                        p.display()
                    ));
                }
                p
            }
            None => {
                if !m.host_mounts.is_empty() {
                    notes.push(format!(
                        "no hostPath volume of the {} container holds the manifest's {flag} {}: restoring to that path on this node",
                        m.container,
                        inside.display()
                    ));
                }
                inside.to_path_buf()
            }
        }
    };
    let manifest_data_dir = on_node("--data-dir", &m.data_dir);
    let manifest_wal_dir = m.wal_dir.as_deref().map(|w| on_node("--wal-dir", w));
    let data_dir = merge(
        &mut settings,
        "--data-dir",
        ov.data_dir.as_ref().map(|p| p.display().to_string()),
        Some(manifest_data_dir.display().to_string()),
        "",
    );
    let wal_dir = match (&ov.wal_dir, &manifest_wal_dir) {
        (None, None) => None,
        (over, from) => Some(merge(
            &mut settings,
            "--wal-dir",
            over.as_ref().map(|p| p.display().to_string()),
            from.as_ref().map(|p| p.display().to_string()),
            "",
        )),
    };
    let options = RestoreOptions {
        name: name.clone(),
        initial_cluster: Some(initial_cluster.clone()),
        initial_cluster_token: token.clone(),
        initial_advertise_peer_urls: peer_urls.clone(),
        data_dir: Some(PathBuf::from(&data_dir)),
        wal_dir: wal_dir.as_ref().map(PathBuf::from),
        skip_hash_check: opts.skip_hash_check,
        bump: opts.bump,
        clear_alarms: opts.clear_alarms,
        move_aside: true,
        ..RestoreOptions::default()
    };
    let restore = run::plan(&options, now).map_err(|e| KubeadmError::Plan(Box::new(e)))?;

    let (endpoint, files) = health_target(&m)?;
    let tls = if endpoint.is_tls() {
        Some(TlsMaterial::load(&files).map_err(KubeadmError::Tls)?)
    } else {
        None
    };
    let connection = ConnectionOptions {
        endpoints: vec![endpoint.clone()],
        tls,
        credentials: None,
        timeout: opts.request_timeout,
    };
    let health = HealthTarget {
        endpoint: endpoint.to_string(),
        ca: files.ca.clone(),
        cert: files.cert.clone(),
        key: files.key.clone(),
    };

    for s in settings.iter().filter(|s| s.manifest_value.is_some()) {
        let etcd_reads = matches!(
            s.flag,
            "--name" | "--initial-advertise-peer-urls" | "--data-dir" | "--wal-dir"
        );
        if etcd_reads {
            notes.push(format!(
                "{} {} differs from the manifest's {}: etcd started from the manifest still gets the manifest's value",
                s.flag,
                s.value,
                s.manifest_value.as_deref().unwrap_or_default()
            ));
        }
    }
    if ov.initial_cluster.is_none() && m.initial_cluster_state.as_deref() == Some("existing") {
        notes.push(
            "this member joined a running cluster (--initial-cluster-state=existing): kubeadm wrote only the members \
             that existed then into its --initial-cluster; pass --initial-cluster with every member to restore them all"
                .to_string(),
        );
    }
    let (live_members, live_members_error) = match list_members(&connection).await {
        Ok((_, _, list)) => {
            let live: Vec<String> = list
                .iter()
                .filter(|m| !m.name.is_empty())
                .map(|m| format!("{}={}", m.name, m.peer_urls.join(",")))
                .collect();
            let planned: Vec<&str> = restore.members.iter().map(|p| p.name.as_str()).collect();
            let missing: Vec<&str> = list
                .iter()
                .map(|m| m.name.as_str())
                .filter(|n| !n.is_empty() && !planned.contains(n))
                .collect();
            if !missing.is_empty() {
                let all: Vec<String> = list
                    .iter()
                    .filter(|m| !m.name.is_empty())
                    .flat_map(|m| m.peer_urls.iter().map(move |u| format!("{}={u}", m.name)))
                    .collect();
                notes.push(format!(
                    "the running cluster has {} members, the restore makes {} ({}): {} will not be members; \
                     to restore them all pass --initial-cluster {}",
                    list.len(),
                    planned.len(),
                    planned.join(", "),
                    missing.join(", "),
                    all.join(",")
                ));
            }
            (Some(live), None)
        }
        Err(e) => (None, Some(e.to_string())),
    };
    let other_nodes = other_nodes(opts, &manifest_path, &restore, &initial_cluster, &token);
    Ok(KubeadmPlan {
        manifest: manifest_path,
        parked_manifest: parked,
        settings,
        restore,
        health,
        live_members,
        live_members_error,
        notes,
        other_nodes,
        options,
        connection,
    })
}

/// Carries out `plan`. `cancel` (Ctrl-C, SIGTERM) ends the wait or the restore early; the manifest
/// is then put back as after any failure.
pub async fn apply(
    plan: &KubeadmPlan,
    opts: &KubeadmOptions,
    source: RestoreSource<'_>,
    cancel: impl Future<Output = ()>,
) -> Result<KubeadmReport, KubeadmError> {
    let started = Instant::now();
    tokio::pin!(cancel);
    if plan.parked_manifest.exists() {
        return Err(KubeadmError::InTheWay(format!(
            "{} exists: remove it, then run again",
            plan.parked_manifest.display()
        )));
    }
    park(&plan.manifest, &plan.parked_manifest)?;
    tracing::info!(
        manifest = %plan.parked_manifest.display(),
        "moved the etcd manifest out of the manifests directory; waiting for the kubelet to stop etcd"
    );
    let phase = async {
        let stopped = wait_stopped(plan, opts).await?;
        tracing::info!(seconds = stopped.seconds, "etcd has stopped; restoring");
        // The directories may have changed while etcd ran; plan again now that it is stopped.
        let p =
            run::plan(&plan.options, chrono::Utc::now()).map_err(|e| KubeadmError::Restore {
                source: Box::new(e),
                state: String::new(),
            })?;
        let report =
            run::apply(&p, &plan.options, source)
                .await
                .map_err(|e| KubeadmError::Restore {
                    source: Box::new(e),
                    state: String::new(),
                })?;
        Ok::<_, KubeadmError>((stopped, report))
    };
    let outcome = tokio::select! {
        r = phase => r,
        () = &mut cancel => Err(KubeadmError::Failed {
            what: "interrupted".to_string(),
            state: String::new(),
        }),
    };
    let (stopped, restored) = match outcome {
        Ok(r) => r,
        Err(e) => return Err(roll_back(plan, e)),
    };
    put_back(plan)?;
    tracing::info!(
        manifest = %plan.manifest.display(),
        "restored; the manifest is back in place: waiting for the restored member"
    );
    let health = tokio::select! {
        r = wait_healthy(plan, opts, &restored) => r?,
        () = &mut cancel => {
            return Err(KubeadmError::Failed {
                what: "interrupted while waiting for the restored member".to_string(),
                state: format!(
                    "the restore is done and the manifest is back in place; the old data is at {}",
                    asides(&restored.plan)
                ),
            })
        }
    };
    Ok(KubeadmReport {
        manifest: plan.manifest.clone(),
        settings: plan.settings.clone(),
        notes: plan.notes.clone(),
        stopped,
        restored,
        manifest_restored: true,
        health,
        other_nodes: plan.other_nodes.clone(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

pub use crate::staticpod::shell_quote;

fn merge(
    settings: &mut Vec<Setting>,
    flag: &'static str,
    over: Option<String>,
    manifest: Option<String>,
    default: &str,
) -> String {
    let (value, from, manifest_value) = match (over, manifest) {
        (Some(o), m) => {
            let differs = m.filter(|m| *m != o);
            (o, Origin::Flag, differs)
        }
        (None, Some(m)) => (m, Origin::Manifest, None),
        (None, None) => (default.to_string(), Origin::Default, None),
    };
    settings.push(Setting {
        flag,
        value: value.clone(),
        from,
        manifest_value,
    });
    value
}

/// The client URL to check (a loopback listen URL first, as kubeadm's own probes do) and the TLS
/// files: the manifest's CA and kubeadm's healthcheck client certificate beside the server's.
fn health_target(m: &EtcdManifest) -> Result<(Endpoint, TlsFiles), KubeadmError> {
    let parse = |u: &str| Endpoint::parse(u, false).ok();
    let endpoint = m
        .listen_client_urls
        .iter()
        .filter_map(|u| parse(u))
        .find(|e| is_loopback(e.host()))
        .or_else(|| m.advertise_client_urls.iter().find_map(|u| parse(u)))
        .or_else(|| {
            m.listen_client_urls.iter().find_map(|u| {
                parse(
                    &u.replace("//0.0.0.0:", "//127.0.0.1:")
                        .replace("//[::]:", "//[::1]:"),
                )
            })
        })
        .or_else(|| {
            (m.listen_client_urls.is_empty() && m.advertise_client_urls.is_empty())
                .then(|| parse("http://localhost:2379"))
                .flatten()
        })
        .ok_or_else(|| {
            KubeadmError::Manifest(ManifestError {
                path: m.path.clone(),
                reason: format!(
                    "no usable client URL in --listen-client-urls ({}) or --advertise-client-urls ({})",
                    m.listen_client_urls.join(","),
                    m.advertise_client_urls.join(",")
                ),
            })
        })?;
    if !endpoint.is_tls() {
        return Ok((endpoint, TlsFiles::default()));
    }
    let node = |p: &Path| m.on_node(p).unwrap_or_else(|| p.to_path_buf());
    let ca = m.trusted_ca_file.as_deref().map(node).ok_or_else(|| {
        KubeadmError::Manifest(ManifestError {
            path: m.path.clone(),
            reason: format!(
                "{endpoint} is https but the etcd command has no --trusted-ca-file to check it with"
            ),
        })
    })?;
    let dir = m
        .cert_file
        .as_deref()
        .map(node)
        .unwrap_or_else(|| ca.clone())
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let (cert, key) = (dir.join(HEALTHCHECK_CERT), dir.join(HEALTHCHECK_KEY));
    let (cert, key) = if cert.is_file() && key.is_file() {
        (Some(cert), Some(key))
    } else if m.client_cert_auth {
        return Err(KubeadmError::Usage(format!(
            "etcd demands client certificates (--client-cert-auth) but kubeadm's healthcheck client certificate is not at {} and {}: \
             the restored member's health cannot be checked",
            cert.display(),
            key.display()
        )));
    } else {
        (None, None)
    };
    Ok((
        endpoint,
        TlsFiles {
            ca: Some(ca),
            cert,
            key,
        },
    ))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn other_nodes(
    opts: &KubeadmOptions,
    manifest: &Path,
    restore: &RestorePlan,
    initial_cluster: &str,
    token: &str,
) -> Option<OtherNodes> {
    let mut members: Vec<String> = restore
        .members
        .iter()
        .filter(|m| m.name != restore.name)
        .map(|m| format!("{} ({})", m.name, m.peer_urls.join(",")))
        .collect();
    members.sort();
    if members.is_empty() {
        return None;
    }
    let mut argv = vec!["cpkeep".to_string(), "restore".to_string()];
    argv.extend(opts.source_args.iter().cloned());
    argv.push("--kubeadm".into());
    if manifest != Path::new(DEFAULT_MANIFEST) {
        argv.push("--manifest".into());
        argv.push(manifest.display().to_string());
    }
    argv.extend([
        "--initial-cluster".to_string(),
        initial_cluster.to_string(),
        "--initial-cluster-token".to_string(),
        token.to_string(),
    ]);
    if let Some(b) = opts.bump {
        argv.push("--bump-revision".into());
        argv.push(b.by.to_string());
        if b.mark_compacted {
            argv.push("--mark-compacted".into());
        }
    }
    if opts.skip_hash_check {
        argv.push("--skip-hash-check".into());
    }
    if opts.clear_alarms {
        argv.push("--clear-alarms".into());
    }
    let command = argv
        .iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    let mut notes: Vec<String> = opts.source_note.iter().cloned().collect();
    notes.push(
        "each node reads its own name, peer URLs and data dir from its own manifest".to_string(),
    );
    let quorum = restore.members.len() / 2 + 1;
    notes.push(format!(
        "the restored cluster answers once {quorum} of its {} members run restored",
        restore.members.len()
    ));
    Some(OtherNodes {
        members,
        argv,
        command,
        notes,
    })
}

fn park(manifest: &Path, parked: &Path) -> Result<(), KubeadmError> {
    staticpod::park(manifest, parked)
        .map_err(|e| KubeadmError::io("move the manifest", manifest, e, NOTHING_CHANGED))
}

/// Puts the manifest back; refuses to replace one that appeared meanwhile.
fn put_back(plan: &KubeadmPlan) -> Result<(), KubeadmError> {
    staticpod::put_back(&plan.manifest, &plan.parked_manifest).map_err(|e| match e {
        PutBackError::Appeared { manifest, parked } => KubeadmError::Failed {
            what: format!("{} appeared while etcd was stopped", manifest.display()),
            state: format!(
                "the kubelet runs that file; the manifest cpkeep moved is still at {}",
                parked.display()
            ),
        },
        e @ PutBackError::Rename { .. } => KubeadmError::Failed {
            what: "cannot put the manifest back".to_string(),
            state: e.to_string(),
        },
    })
}

/// After a failure once the manifest was moved: the manifest back — but never over a missing data
/// dir (etcd would start a new, empty cluster). The old data dirs are already back in place:
/// [`run::apply`] rolls back its own failures, and says when it could not.
fn roll_back(plan: &KubeadmPlan, err: KubeadmError) -> KubeadmError {
    let data = plan.options.data_dir.clone().unwrap_or_default();
    let data_stuck = match &err {
        KubeadmError::Restore { source, .. } => {
            matches!(**source, RestoreError::RolledBackPartly { .. })
        }
        _ => false,
    };
    let state = if data_stuck {
        format!(
            "the manifest stays at {} so that etcd does not start without its data: \
             move the data back, then the manifest",
            plan.parked_manifest.display()
        )
    } else {
        let data_state = format!("{} is as it was", data.display());
        match put_back(plan) {
            Ok(()) => format!(
                "the manifest is back at {} and {data_state}: the kubelet restarts etcd as it was",
                plan.manifest.display()
            ),
            Err(e) => format!("{data_state}; {e}"),
        }
    };
    match err {
        KubeadmError::Restore { source, .. } => KubeadmError::Restore { source, state },
        KubeadmError::Failed { what, .. } => KubeadmError::Failed { what, state },
        other => KubeadmError::Failed {
            what: other.to_string(),
            state,
        },
    }
}

fn asides(plan: &RestorePlan) -> String {
    let list: Vec<String> = plan
        .move_aside
        .iter()
        .map(|a| a.to.display().to_string())
        .collect();
    if list.is_empty() {
        "nowhere (the data dir was empty)".to_string()
    } else {
        list.join(" and ")
    }
}

/// `host:port` of an endpoint, for a TCP check.
fn address(endpoint: &Endpoint) -> String {
    format!("{}:{}", endpoint.host(), endpoint.port())
}

async fn wait_stopped(plan: &KubeadmPlan, opts: &KubeadmOptions) -> Result<Stopped, KubeadmError> {
    let endpoint = &plan.connection.endpoints[0];
    let mut dirs: Vec<PathBuf> = plan.options.data_dir.iter().cloned().collect();
    dirs.extend(plan.options.wal_dir.iter().cloned());
    let shown = dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(" or ");
    // Once the client port is closed, etcd may still be writing: no process may hold a file in
    // its data dirs. The /proc walk reads every process's descriptors: off the async workers.
    let busy = || {
        let d = dirs.clone();
        let shown = shown.clone();
        async move {
            let holders = tokio::task::spawn_blocking(move || holders_of(&d))
                .await
                .unwrap_or_default();
            (!holders.is_empty()).then(|| {
                format!(
                    "processes {} still have files open in {shown}",
                    holders
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
        }
    };
    let stopped = staticpod::wait_stopped(
        &address(endpoint),
        Duration::from_secs(1),
        opts.stop_timeout,
        opts.poll_interval,
        busy,
    )
    .await;
    match stopped {
        Ok(s) => Ok(Stopped {
            was_running: s.was_running,
            seconds: s.elapsed.as_secs_f64(),
        }),
        Err(why) => {
            let why = match why {
                StillRunning::Accepting => format!("{endpoint} still accepts connections"),
                StillRunning::Busy(b) => b,
            };
            Err(KubeadmError::Failed {
                what: format!(
                    "etcd did not stop within {} of moving its manifest out of the manifests directory: {why} \
                     (is this member run by the kubelet from {}? --stop-timeout waits longer)",
                    humantime::format_duration(opts.stop_timeout),
                    plan.manifest.display()
                ),
                state: String::new(),
            })
        }
    }
}

/// Processes (other than this one) with a file open under one of `dirs`, from /proc. Best effort:
/// processes whose descriptors cannot be read are not seen.
fn holders_of(dirs: &[PathBuf]) -> Vec<u32> {
    let roots: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .collect();
    if roots.is_empty() {
        return Vec::new();
    }
    let me = std::process::id();
    let mut pids = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|t| roots.iter().any(|r| t.starts_with(r)))
        });
        if holds {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

async fn wait_healthy(
    plan: &KubeadmPlan,
    opts: &KubeadmOptions,
    restored: &RestoreReport,
) -> Result<HealthCheck, KubeadmError> {
    let started = Instant::now();
    let endpoint = &plan.connection.endpoints[0];
    let (want_member, want_cluster) = (restored.plan.member_id, restored.plan.cluster_id);
    let several = restored.plan.members.len() > 1;
    let mut accepting_since: Option<Instant> = None;
    loop {
        let attempt = async {
            let client = connect(endpoint, &plan.connection).await?;
            let mut m = client.maintenance_client();
            match tokio::time::timeout(opts.request_timeout, m.status()).await {
                Ok(Ok(s)) => Ok(s),
                Ok(Err(e)) => Err(EtcdError::Request {
                    endpoint: endpoint.to_string(),
                    cause: crate::etcd::describe_client_error(&e),
                }),
                Err(_) => Err(EtcdError::Timeout {
                    endpoint: endpoint.to_string(),
                    operation: "status",
                    after: opts.request_timeout,
                }),
            }
        };
        let last = match tokio::time::timeout(opts.request_timeout * 2, attempt).await {
            Ok(Ok(s)) => {
                let (member, cluster) = s
                    .header()
                    .map(|h| (h.member_id(), h.cluster_id()))
                    .unwrap_or_default();
                if member != want_member || cluster != want_cluster {
                    format!(
                        "{endpoint} answers as member {} of cluster {}, not as the restored member {} of cluster {}",
                        id_hex(member),
                        id_hex(cluster),
                        id_hex(want_member),
                        id_hex(want_cluster)
                    )
                } else if s.leader() == 0 {
                    format!("{endpoint} answers but follows no leader yet")
                } else {
                    return Ok(HealthCheck {
                        endpoint: endpoint.to_string(),
                        state: HealthState::Healthy,
                        member_id: Some(id_hex(member)),
                        cluster_id: Some(id_hex(cluster)),
                        leader: Some(id_hex(s.leader())),
                        revision: s.header().map(|h| h.revision()),
                        version: Some(s.version().to_string()),
                        seconds: started.elapsed().as_secs_f64(),
                    });
                }
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!(
                "{endpoint}: no answer within {}",
                humantime::format_duration(opts.request_timeout * 2)
            ),
        };
        if several {
            if staticpod::accepts(&address(endpoint), Duration::from_secs(1)).await {
                let since = *accepting_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= opts.quorum_grace {
                    return Ok(HealthCheck {
                        endpoint: endpoint.to_string(),
                        state: HealthState::WaitingForQuorum,
                        member_id: None,
                        cluster_id: None,
                        leader: None,
                        revision: None,
                        version: None,
                        seconds: started.elapsed().as_secs_f64(),
                    });
                }
            } else {
                accepting_since = None;
            }
        }
        if started.elapsed() >= opts.wait_timeout {
            return Err(KubeadmError::Failed {
                what: format!(
                    "the restored member is not healthy after {}: {last}",
                    humantime::format_duration(opts.wait_timeout)
                ),
                state: format!(
                    "the restore is done and the manifest is back in place; the old data is at {}; \
                     look at etcd's log (crictl logs) and check again with cpkeep cluster health",
                    asides(&restored.plan)
                ),
            });
        }
        tokio::time::sleep(opts.poll_interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parked_beside_the_manifests_dir() {
        assert_eq!(
            staticpod::parked_path(
                Path::new("/etc/kubernetes/manifests/etcd.yaml"),
                PARKED_SUFFIX
            )
            .unwrap(),
            PathBuf::from("/etc/kubernetes/etcd.yaml.cpkeep-restore")
        );
    }

    #[test]
    fn merge_records_origin() {
        let mut s = Vec::new();
        assert_eq!(
            merge(&mut s, "--name", Some("b".into()), Some("a".into()), ""),
            "b"
        );
        assert_eq!(
            merge(&mut s, "--data-dir", None, Some("/d".into()), ""),
            "/d"
        );
        assert_eq!(
            merge(
                &mut s,
                "--initial-cluster-token",
                None,
                None,
                "etcd-cluster"
            ),
            "etcd-cluster"
        );
        assert_eq!(
            merge(
                &mut s,
                "--initial-cluster",
                Some("x".into()),
                Some("x".into()),
                ""
            ),
            "x"
        );
        assert_eq!(s[0].from, Origin::Flag);
        assert_eq!(s[0].manifest_value.as_deref(), Some("a"));
        assert_eq!(s[1].from, Origin::Manifest);
        assert_eq!(s[2].from, Origin::Default);
        assert_eq!(s[3].manifest_value, None);
    }

    /// A manifest with kubeadm's three required flags and `flags` (separated by ", ").
    fn manifest(flags: &str) -> EtcdManifest {
        let mut text = "kind: Pod\nspec:\n  containers:\n  - name: etcd\n    command:\n    - etcd\n    \
                        - --name=a\n    - --data-dir=/d\n    - --initial-advertise-peer-urls=https://10.0.0.1:2380\n"
            .to_string();
        for f in flags.split(", ") {
            text.push_str(&format!("    - {f}\n"));
        }
        EtcdManifest::parse(Path::new("/k/manifests/etcd.yaml"), &text).unwrap()
    }

    #[test]
    fn health_endpoint_prefers_loopback() {
        let pki = tempfile::tempdir().unwrap();
        let ca = pki.path().join("ca.crt");
        let flags = |listen: &str| {
            format!(
                "--listen-client-urls={listen}, --advertise-client-urls=https://10.0.0.1:2379, --trusted-ca-file={}",
                ca.display()
            )
        };
        let ep = |listen: &str| {
            health_target(&manifest(&flags(listen)))
                .unwrap()
                .0
                .to_string()
        };
        assert_eq!(
            ep("https://10.0.0.1:2379,https://127.0.0.1:2379"),
            "https://127.0.0.1:2379"
        );
        assert_eq!(ep("https://10.0.0.1:2379"), "https://10.0.0.1:2379");
        assert_eq!(ep("https://0.0.0.0:2379"), "https://10.0.0.1:2379");
        // Without client-cert-auth and without kubeadm's healthcheck certificate: CA only.
        let (_, files) = health_target(&manifest(&flags("https://127.0.0.1:2379"))).unwrap();
        assert_eq!((files.ca, files.cert), (Some(ca.clone()), None));
        // With it, the missing certificate is named before anything changes.
        let m = manifest(&format!(
            "{}, --client-cert-auth=true",
            flags("https://127.0.0.1:2379")
        ));
        let err = health_target(&m).unwrap_err().to_string();
        assert!(err.contains("healthcheck-client.crt"), "{err}");
        // https without a CA to check it with.
        let err = health_target(&manifest("--listen-client-urls=https://127.0.0.1:2379"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no --trusted-ca-file"), "{err}");
        // etcd's default when no client URL is given.
        let (e, _) = health_target(&manifest("--snapshot-count=1")).unwrap();
        assert_eq!(e.to_string(), "http://localhost:2379");
    }

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "127.0.0.1", "127.0.0.3", "[::1]"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["10.0.0.1", "node1", "[::]"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
