//! The failover drill: stop one control-plane node's etcd and kube-apiserver (their static pod
//! manifests parked), check that quorum holds, that the control-plane endpoint still answers
//! `/readyz` through the load balancer and that a write through etcd succeeds, then start them
//! again and check that the member rejoins and catches up. On a bundle's node over SSH or on this
//! machine (`--local`). The manifests always go back, whatever failed. Never prints.

pub mod parking;
pub mod report;

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use crate::etcd::{connect, ConnectionOptions, HealthOptions, HealthReport, MemberHealth, Verdict};
use parking::{Outage, ParkedManifests, Parker};
pub use report::{Counts, DrillReport, PhaseReport};

const POLL: Duration = Duration::from_millis(500);

/// Everything a drill needs, however the node is reached.
pub struct DrillTarget<'a> {
    /// The node's name (reports) and how to find its member: by peer URL, else by name.
    pub node: String,
    pub member_peer_url: Option<String>,
    pub member_name: Option<String>,
    pub outage: Box<dyn Outage + 'a>,
    pub etcd: ConnectionOptions,
    /// `host:port` of the control-plane endpoint (none: no apiserver to check, as in the demo's
    /// sandbox), and the CA its apiservers' certificates chain to.
    pub endpoint: Option<String>,
    pub ca_pem: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// Go on even when the drill takes the last spare member (quorum is lost if anything else fails).
    pub force: bool,
    /// How long each wait may take (the member to stop, to rejoin, the endpoint).
    pub wait: Duration,
    /// Applied-index lag within which the member counts as caught up.
    pub max_lag: u64,
}

/// Why the drill did not start or could not judge.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("{0}")]
    Setup(String),
}

impl DrillError {
    pub fn class(&self) -> crate::failure::FailureClass {
        match self {
            DrillError::Setup(_) => crate::failure::FailureClass::Unusable,
        }
    }
}

fn counts(r: &HealthReport) -> Counts {
    Counts {
        voters: r.voters,
        healthy_voters: r.healthy_voters,
        quorum: r.quorum,
        fault_tolerance: r.fault_tolerance,
    }
}

fn find<'r>(r: &'r HealthReport, t: &DrillTarget<'_>) -> Option<&'r MemberHealth> {
    r.members.iter().find(|m| {
        t.member_peer_url
            .as_deref()
            .is_some_and(|u| m.peer_urls.iter().any(|p| p.trim_end_matches('/') == u))
            || t.member_name.as_deref().is_some_and(|n| m.name == n)
    })
}

async fn health(conn: &ConnectionOptions) -> HealthReport {
    crate::etcd::judge(conn, &HealthOptions::default()).await
}

struct Phases {
    list: Vec<PhaseReport>,
    reasons: Vec<String>,
    verdict: Verdict,
}

impl Phases {
    fn add(
        &mut self,
        phase: &'static str,
        started: Instant,
        r: Result<String, (Verdict, String)>,
    ) -> bool {
        let seconds = started.elapsed().as_secs_f64();
        match r {
            Ok(detail) => {
                self.list.push(PhaseReport {
                    phase,
                    ok: true,
                    seconds,
                    detail,
                });
                true
            }
            Err((v, detail)) => {
                self.verdict = self.verdict.max(v);
                self.reasons.push(format!("{phase}: {detail}"));
                self.list.push(PhaseReport {
                    phase,
                    ok: false,
                    seconds,
                    detail,
                });
                false
            }
        }
    }
}

/// Runs the drill. `Err` only when nothing could be judged (no member answers).
pub async fn run(t: &mut DrillTarget<'_>, opts: &DrillOptions) -> Result<DrillReport, DrillError> {
    let mut ph = Phases {
        list: Vec::new(),
        reasons: Vec::new(),
        verdict: Verdict::Ok,
    };
    let mut report = DrillReport {
        verdict: Verdict::Ok,
        node: t.node.clone(),
        member: None,
        endpoint: t.endpoint.clone().unwrap_or_default(),
        before: None,
        during: None,
        after: None,
        phases: Vec::new(),
        reasons: Vec::new(),
    };

    // Before: the cluster must be able to lose this member.
    let started = Instant::now();
    let before = health(&t.etcd).await;
    if before.cluster_id.is_none() {
        return Err(DrillError::Setup(format!(
            "cannot reach etcd: {}",
            before.reasons.join("; ")
        )));
    }
    report.before = Some(counts(&before));
    let Some(member) = find(&before, t).cloned() else {
        return Err(DrillError::Setup(format!(
            "{} has no etcd member (looked for {})",
            t.node,
            t.member_peer_url
                .clone()
                .or(t.member_name.clone())
                .unwrap_or_default()
        )));
    };
    report.member = Some(format!("{} ({})", member.name, member.id));
    // From here on every member is asked at its own client URLs too: the endpoint given may be
    // the very member the drill stops (`--local` on a kubeadm node: https://127.0.0.1:2379).
    let mut etcd = t.etcd.clone();
    for m in &before.members {
        for u in &m.client_urls {
            if let Ok(ep) = crate::etcd::Endpoint::parse(u, true) {
                if !etcd
                    .endpoints
                    .iter()
                    .any(|e| e.to_string() == ep.to_string())
                {
                    etcd.endpoints.push(ep);
                }
            }
        }
    }
    t.etcd = etcd;
    let spare = before.fault_tolerance;
    let gate = if !member.healthy {
        Err((
            Verdict::Critical,
            format!("member {} is down already: nothing to drill", member.name),
        ))
    } else if spare == 0 {
        Err((
            Verdict::Critical,
            format!(
                "the drill would take the last spare member: {} of {} voters healthy, quorum {}; stopping {} leaves no fault tolerance{}",
                before.healthy_voters,
                before.voters,
                before.quorum,
                member.name,
                if opts.force { " (--force: going on)" } else { " (refused; --force to drill anyway)" }
            ),
        ))
    } else {
        Ok(format!(
            "{} of {} voters healthy, quorum {}, fault tolerance {}",
            before.healthy_voters, before.voters, before.quorum, spare
        ))
    };
    let go = ph.add("before", started, gate) || (opts.force && member.healthy);
    if !go {
        return Ok(finish(report, ph));
    }

    // Stop.
    let started = Instant::now();
    match t.outage.stop().await {
        Ok(what) => {
            ph.add("stop", started, Ok(what));
        }
        Err(e) => {
            ph.add("stop", started, Err((Verdict::Unknown, e)));
            return Ok(finish(report, ph));
        }
    };

    // While it is down; the manifests go back whatever happens here.
    let during = drill_while_down(t, opts, &member, &mut ph, &mut report).await;
    let _ = during;

    let started = Instant::now();
    match t.outage.start().await {
        Ok(what) => {
            ph.add("start", started, Ok(what));
        }
        Err(e) => {
            ph.add("start", started, Err((Verdict::Critical, e)));
            return Ok(finish(report, ph));
        }
    }

    // Rejoin and catch up.
    let started = Instant::now();
    let deadline = Instant::now() + opts.wait;
    let rejoin = loop {
        let r = health(&t.etcd).await;
        let m = find(&r, t);
        let lag = r.max_applied_lag.unwrap_or(0);
        if m.is_some_and(|m| m.healthy) && lag <= opts.max_lag {
            report.after = Some(counts(&r));
            break Ok(format!(
                "{} healthy again, applied-index lag {lag}; fault tolerance {}",
                member.name, r.fault_tolerance
            ));
        }
        if Instant::now() >= deadline {
            report.after = Some(counts(&r));
            break Err((
                Verdict::Critical,
                format!(
                    "{} did not rejoin and catch up within {} (healthy: {}, lag {lag})",
                    member.name,
                    humantime::format_duration(opts.wait),
                    m.is_some_and(|m| m.healthy)
                ),
            ));
        }
        tokio::time::sleep(POLL).await;
    };
    ph.add("rejoin", started, rejoin);
    Ok(finish(report, ph))
}

async fn drill_while_down(
    t: &DrillTarget<'_>,
    opts: &DrillOptions,
    member: &MemberHealth,
    ph: &mut Phases,
    report: &mut DrillReport,
) -> bool {
    // The member goes down.
    let started = Instant::now();
    let deadline = Instant::now() + opts.wait;
    let down = loop {
        let r = health(&t.etcd).await;
        if find(&r, t).is_some_and(|m| !m.healthy) {
            break Ok(r);
        }
        if Instant::now() >= deadline {
            break Err((
                Verdict::Critical,
                format!(
                    "{} still answers {} after its manifests were parked: is a kubelet running its static pods?",
                    member.name,
                    humantime::format_duration(opts.wait)
                ),
            ));
        }
        tokio::time::sleep(POLL).await;
    };
    let r = match down {
        Ok(r) => {
            ph.add(
                "down",
                started,
                Ok(format!("{} stopped answering", member.name)),
            );
            r
        }
        Err(e) => {
            ph.add("down", started, Err(e));
            return false;
        }
    };

    // Quorum holds.
    let started = Instant::now();
    report.during = Some(counts(&r));
    let quorum = if r.healthy_voters >= r.quorum && r.leader.is_some() {
        Ok(format!(
            "{} of {} voters healthy, quorum {} held, leader {}; fault tolerance now {}",
            r.healthy_voters,
            r.voters,
            r.quorum,
            r.leader.clone().unwrap_or_default(),
            r.fault_tolerance
        ))
    } else {
        Err((
            Verdict::Critical,
            format!(
                "quorum lost: {} of {} voters healthy, {} needed ({})",
                r.healthy_voters,
                r.voters,
                r.quorum,
                r.reasons.join("; ")
            ),
        ))
    };
    let quorum_ok = ph.add("quorum", started, quorum);

    // The endpoint still answers through the load balancer.
    if let Some(endpoint) = &t.endpoint {
        let started = Instant::now();
        let deadline = Instant::now() + opts.wait;
        let answer = loop {
            let r = crate::bootstrap::apply::readyz::readyz(
                endpoint,
                &t.ca_pem,
                Duration::from_secs(5),
            )
            .await;
            match r {
                Ok(()) => break Ok(format!("https://{endpoint}/readyz answered ok")),
                Err(e) if Instant::now() >= deadline => {
                    break Err((
                        Verdict::Critical,
                        format!(
                            "https://{endpoint}/readyz: {e}: the load balancer does not fail over"
                        ),
                    ))
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        };
        ph.add("endpoint", started, answer);
    }

    // A write through etcd.
    let started = Instant::now();
    let write = if quorum_ok {
        write_probe(t, member).await
    } else {
        Err((Verdict::Critical, "skipped: no quorum".to_string()))
    };
    ph.add("write", started, write);
    true
}

/// Puts, reads back and deletes a key under `/cpkeep/drill/` through a healthy member.
async fn write_probe(
    t: &DrillTarget<'_>,
    down: &MemberHealth,
) -> Result<String, (Verdict, String)> {
    let key = format!(
        "/cpkeep/drill/{}-{}",
        t.node,
        crate::testhooks::now()
            .timestamp_nanos_opt()
            .unwrap_or_default()
    );
    let mut last = String::from("no endpoint");
    for ep in &t.etcd.endpoints {
        if down
            .client_urls
            .iter()
            .any(|u| u.trim_end_matches('/') == ep.to_string().trim_end_matches('/'))
        {
            continue;
        }
        let attempt = async {
            let mut c = connect(ep, &t.etcd).await.map_err(|e| e.to_string())?;
            c.put(key.as_str(), "cpkeep failover drill", None)
                .await
                .map_err(|e| crate::etcd::describe_client_error(&e))?;
            let got = c
                .get(key.as_str(), None)
                .await
                .map_err(|e| crate::etcd::describe_client_error(&e))?;
            let ok = got
                .kvs()
                .first()
                .is_some_and(|kv| kv.value() == b"cpkeep failover drill");
            c.delete(key.as_str(), None)
                .await
                .map_err(|e| crate::etcd::describe_client_error(&e))?;
            if ok {
                Ok(())
            } else {
                Err("the key read back differs".to_string())
            }
        };
        match attempt.await {
            Ok(()) => return Ok(format!("wrote, read back and deleted {key} through {ep}")),
            Err(e) => last = format!("{ep}: {e}"),
        }
    }
    Err((
        Verdict::Critical,
        format!("a write through etcd failed: {last}"),
    ))
}

fn finish(mut report: DrillReport, ph: Phases) -> DrillReport {
    report.verdict = ph.verdict;
    report.phases = ph.list;
    report.reasons = ph.reasons;
    report
}

/// The default drill node of a bundle: the last control-plane node that is not etcd's leader.
pub fn default_node(names: &[String], leader_name: Option<&str>) -> Option<String> {
    names
        .iter()
        .rev()
        .find(|n| Some(n.as_str()) != leader_name)
        .or(names.last())
        .cloned()
}

/// Where kubeadm's manifests are on a node.
pub fn manifests_dir() -> PathBuf {
    PathBuf::from(crate::bootstrap::plan::MANIFESTS_DIR)
}

/// How to reach a bundle's node for a drill.
pub struct BundleDrill {
    pub bundle: PathBuf,
    pub node: Option<String>,
    pub ssh_config: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub etcd_timeout: Duration,
}

/// The drill on a node of a bundle `bootstrap apply` set up, over SSH.
pub async fn run_on_bundle(
    d: &BundleDrill,
    opts: &DrillOptions,
) -> Result<DrillReport, DrillError> {
    use crate::bootstrap::apply::etcd_access::{connection, mint_client, peer_url};
    use crate::bootstrap::apply::plan_file::LoadedBundle;
    let setup = |e: crate::bootstrap::apply::ApplyError| DrillError::Setup(e.to_string());
    let b = LoadedBundle::load(&d.bundle).map_err(setup)?;
    crate::bootstrap::apply::run::check_ssh_config(d.ssh_config.as_deref()).map_err(setup)?;
    let tls = mint_client(&b).map_err(setup)?;
    let cps = b.control_plane();
    let etcd = connection(&cps, &tls, d.etcd_timeout).map_err(setup)?;
    let names: Vec<String> = cps.iter().map(|n| n.name.clone()).collect();
    let node = match &d.node {
        Some(n) if names.contains(n) => n.clone(),
        Some(n) => {
            return Err(DrillError::Setup(format!(
                "--node {n} is not a control-plane node of the bundle (control plane: {})",
                names.join(", ")
            )))
        }
        None => {
            let r = health(&etcd).await;
            let leader = r
                .leader
                .as_ref()
                .and_then(|l| r.members.iter().find(|m| &m.id == l))
                .map(|m| m.name.clone());
            default_node(&names, leader.as_deref()).ok_or_else(|| {
                DrillError::Setup("the bundle has no control-plane node".to_string())
            })?
        }
    };
    let n = b
        .node(&node)
        .cloned()
        .ok_or_else(|| DrillError::Setup(format!("no node {node}")))?;
    let target = crate::bootstrap::apply::run::target_of(&n, d.ssh_config.clone());
    let session = crate::remote::Session::connect(&node, &target, d.connect_timeout)
        .await
        .map_err(|e| DrillError::Setup(e.to_string()))?;
    let t = DrillTarget {
        node: node.clone(),
        member_peer_url: Some(peer_url(&n)),
        member_name: Some(node.clone()),
        outage: Box::new(ParkedManifests::new(Parker::Remote {
            session: &session,
            manifests_dir: manifests_dir(),
        })),
        etcd,
        endpoint: Some(b.plan.control_plane_endpoint.clone()),
        ca_pem: b.read("pki/ca.crt").map_err(setup)?,
    };
    let mut t = t;
    let r = run(&mut t, opts).await;
    drop(t);
    session.close().await;
    r
}

/// The drill on this machine's own control-plane node.
pub struct LocalDrill {
    pub manifests_dir: PathBuf,
    pub etcd: ConnectionOptions,
    pub endpoint: String,
    pub ca_file: PathBuf,
}

pub async fn run_local(d: LocalDrill, opts: &DrillOptions) -> Result<DrillReport, DrillError> {
    let etcd_manifest = d.manifests_dir.join("etcd.yaml");
    let m = crate::staticpod::PodManifest::read(&etcd_manifest, "etcd static pod manifest")
        .map_err(|e| DrillError::Setup(e.to_string()))?;
    let name = m
        .containers
        .iter()
        .flat_map(|c| c.command.iter())
        .find_map(|a| a.strip_prefix("--name=").map(str::to_string))
        .ok_or_else(|| {
            DrillError::Setup(format!(
                "{}: no --name= in etcd's command",
                etcd_manifest.display()
            ))
        })?;
    let ca_pem = std::fs::read(&d.ca_file).map_err(|e| {
        DrillError::Setup(format!(
            "cannot read {}: {}",
            d.ca_file.display(),
            crate::certs::error::io_reason(&e)
        ))
    })?;
    let mut t = DrillTarget {
        node: name.clone(),
        member_peer_url: None,
        member_name: Some(name),
        outage: Box::new(ParkedManifests::new(Parker::Local {
            manifests_dir: d.manifests_dir,
        })),
        etcd: d.etcd,
        endpoint: Some(d.endpoint),
        ca_pem,
    };
    run(&mut t, opts).await
}
