//! Runs the steps: load and check the bundle, select (`--node`), connect, preflight every node that
//! still has work (nothing changes anywhere unless all pass), then each unfinished step in order,
//! recording it in the journal the moment it finishes. Never prints: progress goes to the caller.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::future::join_all;

use super::checks::Checker;
use super::error::ApplyError;
use super::journal::Journal;
use super::plan_file::{LoadedBundle, NodeView};
use super::preflight::{self, Expect, NodePreflight};
use super::report::{ApplyReport, DryRunReport, DryRunStep, Outcome, Progress, StepOutcome};
use super::steps::{describe, steps, Action, ApplyStep, Check};
use crate::bootstrap::kubeadm::Role;
use crate::bootstrap::spec::{CniSpec, LbMode};
use crate::remote::{Script, Session, SshTarget, Target};

/// How to run a bundle.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub bundle: PathBuf,
    /// Only this node's steps.
    pub node: Option<String>,
    /// An ssh_config file (`ssh -F`); by default ssh reads the user's own.
    pub ssh_config: Option<PathBuf>,
    /// Bound on reaching a node.
    pub connect_timeout: Duration,
    /// Bound on each etcd request.
    pub etcd_timeout: Duration,
    /// How long a check may take to hold after its step (a join's member to start, an apiserver
    /// to become ready).
    pub wait: Duration,
}

/// Steps with whether each is selected.
fn selection(b: &LoadedBundle, node: Option<&str>) -> Result<Vec<(ApplyStep, bool)>, ApplyError> {
    if let Some(n) = node {
        if b.node(n).is_none() {
            return Err(ApplyError::Selection(format!(
                "--node {n}: no such node in {} (nodes: {})",
                b.dir.join("plan.json").display(),
                b.plan
                    .nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(steps(b)
        .into_iter()
        .map(|s| {
            let selected = node.is_none_or(|n| s.node == n && s.id != "verify" && s.id != "cni");
            (s, selected)
        })
        .collect())
}

/// `--dry-run`: every step with its commands; nothing is contacted.
pub fn dry_run(opts: &ApplyOptions) -> Result<DryRunReport, ApplyError> {
    let b = LoadedBundle::load(&opts.bundle)?;
    let journal = Journal::load(&b.dir, &b.plan.cluster)?;
    let steps = selection(&b, opts.node.as_deref())?
        .into_iter()
        .map(|(s, selected)| DryRunStep {
            done: journal.is_done(&s.id),
            selected,
            actions: s.actions.iter().map(|a| describe(&s.node, a)).collect(),
            id: s.id,
            node: s.node,
            title: s.title,
        })
        .collect();
    Ok(DryRunReport {
        cluster: b.plan.cluster.clone(),
        steps,
    })
}

fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(p),
    }
}

fn target(n: &NodeView, opts: &ApplyOptions) -> Target {
    target_of(n, opts.ssh_config.clone())
}

/// How to reach a plan's node: `local`, or ssh with the plan's user, port and identity.
pub fn target_of(n: &NodeView, ssh_config: Option<PathBuf>) -> Target {
    if n.ssh.local {
        return Target::Local;
    }
    Target::Ssh(SshTarget {
        host: n.address.clone(),
        user: n.ssh.user.clone(),
        port: n.ssh.port,
        identity_file: n.ssh.identity_file.as_deref().map(expand_home),
        config_file: ssh_config,
    })
}

/// Runs the bundle.
pub async fn apply(
    opts: &ApplyOptions,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<ApplyReport, ApplyError> {
    let b = LoadedBundle::load(&opts.bundle)?;
    let mut journal = Journal::load(&b.dir, &b.plan.cluster)?;
    let all = selection(&b, opts.node.as_deref())?;
    check_ssh_config(opts.ssh_config.as_deref())?;
    let first = b.first().clone();

    // `--node` for a node other than the first needs the cluster to exist.
    if let Some(n) = &opts.node {
        let init = format!("init:{}", first.name);
        let needs_cluster = all
            .iter()
            .any(|(s, sel)| *sel && s.id != init && !s.id.starts_with("load-balancer:"));
        if *n != first.name && needs_cluster && !journal.is_done(&init) {
            return Err(ApplyError::Selection(format!(
                "--node {n}: {init} has not run yet; run apply without --node first"
            )));
        }
    }

    let pending: Vec<&ApplyStep> = all
        .iter()
        .filter(|(s, sel)| *sel && !journal.is_done(&s.id))
        .map(|(s, _)| s)
        .collect();
    let mut outcomes: Vec<StepOutcome> = all
        .iter()
        .map(|(s, sel)| StepOutcome {
            id: s.id.clone(),
            node: s.node.clone(),
            title: s.title.clone(),
            outcome: if !sel {
                Outcome::NotSelected
            } else if journal.is_done(&s.id) {
                Outcome::AlreadyDone
            } else {
                Outcome::Ran
            },
            seconds: None,
        })
        .collect();
    for (s, sel) in &all {
        if *sel && journal.is_done(&s.id) {
            progress(Progress::AlreadyDone { id: s.id.clone() });
        }
    }

    let mut cleaned = Vec::new();
    if !pending.is_empty() {
        // The nodes with work, and the first node (uploads, kubectl, the admin kubeconfig).
        let mut names: Vec<String> = vec![first.name.clone()];
        for s in &pending {
            if !names.contains(&s.node) {
                names.push(s.node.clone());
            }
        }
        let sessions = connect_all(&b, &names, opts).await?;
        let findings = preflight_all(&b, &journal, &pending, &sessions).await;
        if findings.iter().any(|f| !f.failed.is_empty()) {
            close_all(sessions).await;
            return Err(ApplyError::Preflight(
                findings
                    .into_iter()
                    .filter(|f| !f.failed.is_empty())
                    .collect(),
            ));
        }
        let leftovers: BTreeMap<String, Vec<String>> = findings
            .into_iter()
            .map(|f| (f.node, f.leftovers))
            .collect();
        let mut checker = Checker::new(&b, opts, &sessions)?;
        let total = all.len();
        let result = async {
            for s in &pending {
                let number = all.iter().position(|(x, _)| x.id == s.id).unwrap_or(0) + 1;
                progress(Progress::StepStarted {
                    number,
                    total,
                    id: s.id.clone(),
                    title: s.title.clone(),
                });
                let started = Instant::now();
                run_step(
                    &b,
                    s,
                    &sessions,
                    &mut checker,
                    &mut journal,
                    leftovers.get(&s.node).map(Vec::as_slice).unwrap_or(&[]),
                    &mut cleaned,
                    progress,
                )
                .await?;
                journal.finish(&b.dir, &s.id, crate::testhooks::now())?;
                let seconds = started.elapsed().as_secs_f64();
                if let Some(o) = outcomes.iter_mut().find(|o| o.id == s.id) {
                    o.seconds = Some(seconds);
                }
                progress(Progress::StepFinished {
                    id: s.id.clone(),
                    seconds,
                });
            }
            Ok::<(), ApplyError>(())
        }
        .await;
        let etcd = checker.summary().await;
        close_all(sessions).await;
        result?;
        return Ok(ApplyReport {
            cluster: b.plan.cluster.clone(),
            control_plane_endpoint: b.plan.control_plane_endpoint.clone(),
            steps: outcomes,
            cleaned,
            admin_kubeconfig: admin_path(&b),
            etcd,
        });
    }
    Ok(ApplyReport {
        cluster: b.plan.cluster.clone(),
        control_plane_endpoint: b.plan.control_plane_endpoint.clone(),
        steps: outcomes,
        cleaned,
        admin_kubeconfig: admin_path(&b),
        etcd: None,
    })
}

/// An `--ssh-config` that ssh could not read would fail every node as unreachable: say so first.
pub fn check_ssh_config(path: Option<&Path>) -> Result<(), ApplyError> {
    let Some(p) = path else { return Ok(()) };
    match std::fs::File::open(p) {
        Ok(f) if f.metadata().is_ok_and(|m| m.is_file()) => Ok(()),
        Ok(_) => Err(ApplyError::Selection(format!(
            "--ssh-config {}: not a file",
            p.display()
        ))),
        Err(e) => Err(ApplyError::Selection(format!(
            "--ssh-config {}: {}",
            p.display(),
            crate::certs::error::io_reason(&e)
        ))),
    }
}

fn admin_path(b: &LoadedBundle) -> Option<PathBuf> {
    let p = b.dir.join(crate::bootstrap::bundle::ADMIN_KUBECONFIG);
    p.is_file().then_some(p)
}

async fn connect_all(
    b: &LoadedBundle,
    names: &[String],
    opts: &ApplyOptions,
) -> Result<BTreeMap<String, Session>, ApplyError> {
    let attempts = join_all(names.iter().map(|name| async move {
        // Every name comes from the plan's steps, so the node exists.
        let n = b.node(name).cloned();
        let r = match &n {
            Some(n) => Session::connect(name, &target(n, opts), opts.connect_timeout).await,
            None => unreachable_node(name),
        };
        (name.clone(), r)
    }))
    .await;
    let mut sessions = BTreeMap::new();
    let mut failed = Vec::new();
    for (name, r) in attempts {
        match r {
            Ok(s) => {
                sessions.insert(name, s);
            }
            Err(e) => failed.push(NodePreflight {
                node: name,
                failed: vec![format!("unreachable: {e}")],
                leftovers: Vec::new(),
            }),
        }
    }
    if !failed.is_empty() {
        close_all(sessions).await;
        return Err(ApplyError::Preflight(failed));
    }
    Ok(sessions)
}

fn unreachable_node(name: &str) -> Result<Session, crate::remote::RemoteError> {
    Err(crate::remote::RemoteError::Unreachable {
        node: name.to_string(),
        cause: "not in the plan".to_string(),
    })
}

async fn close_all(sessions: BTreeMap<String, Session>) {
    join_all(sessions.into_values().map(Session::close)).await;
}

/// Preflight of every node with work, in parallel.
async fn preflight_all(
    b: &LoadedBundle,
    journal: &Journal,
    pending: &[&ApplyStep],
    sessions: &BTreeMap<String, Session>,
) -> Vec<NodePreflight> {
    let first = b.first();
    let checks = sessions.iter().map(|(name, session)| async move {
        let Some(node) = b.node(name) else {
            return NodePreflight {
                node: name.clone(),
                failed: vec!["not in the plan".to_string()],
                leftovers: Vec::new(),
            };
        };
        let pending_here = |prefix: &str| {
            pending
                .iter()
                .any(|s| s.node == *name && s.id.starts_with(prefix))
        };
        let kubeadm_pending =
            pending_here("init:") || pending_here("join:") || pending_here("worker:");
        let lb_pending = pending_here("load-balancer:");
        let before = chrono::Utc::now();
        let out = session.run(&Script::new(preflight::SCRIPT)).await;
        let after = chrono::Utc::now();
        let out = match out {
            Ok(o) => o.stdout,
            Err(e) => {
                return NodePreflight {
                    node: name.clone(),
                    failed: vec![format!("preflight could not run: {e}")],
                    leftovers: Vec::new(),
                }
            }
        };
        let sections = preflight::sections(&out);
        let secs = |t: chrono::DateTime<chrono::Utc>| t.timestamp_micros() as f64 / 1e6;
        let clock = preflight::node_clock(&sections);
        // Leftovers of this bundle's own interrupted run are undone before the step is retried
        // (their processes hold the ports until then); anything else is refused.
        let leftovers_allowed = journal.started() && kubeadm_pending;
        let has_leftovers = sections
            .get("leftovers")
            .is_some_and(|l| l.iter().any(|x| x.starts_with('/')));
        let mut ports = Vec::new();
        if kubeadm_pending && !(leftovers_allowed && has_leftovers) {
            ports.extend([6443, 2379, 2380, 10250]);
        }
        let lb_here = b.plan.load_balancer.mode == LbMode::HaproxyKeepalived
            && b.plan.load_balancer.hosts.iter().any(|h| h == name);
        // The load balancer port must be free until this host's load balancer is set up.
        let lb_step_done = journal.is_done(&format!("load-balancer:{name}"));
        if lb_here && (lb_pending || (kubeadm_pending && !lb_step_done)) {
            ports.push(b.plan.load_balancer.port);
        }
        let set_up_already = !kubeadm_pending && node.role != Role::LoadBalancer;
        let e = Expect {
            node: name,
            role: if set_up_already {
                Role::Init
            } else {
                node.role
            },
            address: &node.address,
            version: &b.version,
            ports,
            needs_kubectl: name == &first.name
                && pending.iter().any(|s| s.id == "cni" || s.id == "verify"),
            leftovers_allowed: leftovers_allowed || set_up_already,
            clock_offset: clock.map(|c| (secs(before) + secs(after)) / 2.0 - c),
            clock_uncertainty: (secs(after) - secs(before)) / 2.0,
        };
        let mut r = preflight::judge(&out, &e);
        if set_up_already {
            // Part of the cluster already: only the clock and kubectl still matter.
            r.failed
                .retain(|f| f.starts_with("the clock") || f.starts_with("kubectl"));
        }
        if !kubeadm_pending {
            r.leftovers.clear();
        }
        r
    });
    join_all(checks).await
}

#[allow(clippy::too_many_arguments)]
async fn run_step(
    b: &LoadedBundle,
    s: &ApplyStep,
    sessions: &BTreeMap<String, Session>,
    checker: &mut Checker<'_>,
    journal: &mut Journal,
    leftovers: &[String],
    cleaned: &mut Vec<String>,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<(), ApplyError> {
    let session = sessions.get(&s.node).ok_or_else(|| ApplyError::Step {
        step: s.id.clone(),
        node: s.node.clone(),
        cause: "no session".to_string(),
    })?;
    // Set when the node's member turns out to be joined already (a run that stopped after the
    // join but before its checks): everything up to the join is skipped; the checks and what
    // follows the join (its load balancer pods) still run.
    let mut joined_already = false;
    let mut skipping = false;
    for a in &s.actions {
        let text = describe(&s.node, a);
        match a {
            Action::Put { from, to, mode } => {
                if skipping {
                    continue;
                }
                let bytes = source_bytes(b, from)?;
                session.write_file(to, &bytes, *mode).await?;
                progress(Progress::Did { text });
            }
            Action::Run { command } => {
                if skipping {
                    skipping = !command.starts_with("kubeadm join");
                    continue;
                }
                // A command that hangs (a kubeadm waiting for something that never comes) fails
                // its step after --wait rather than holding the run forever.
                let limit = checker.wait_limit();
                match tokio::time::timeout(limit, session.run_ok(&Script::new(command.clone())))
                    .await
                {
                    Ok(r) => r.map_err(|e| ApplyError::in_step(s, e))?,
                    Err(_) => {
                        return Err(ApplyError::NotReady {
                            step: s.id.clone(),
                            node: s.node.clone(),
                            what: format!("`{command}` did not finish"),
                            after: limit,
                        })
                    }
                };
                if command.starts_with("kubeadm join") {
                    // Tests stop the run here: the join went through, its checks did not run.
                    crate::testhooks::failpoint("apply-after-kubeadm-join", &b.dir).map_err(
                        |e| ApplyError::Step {
                            step: s.id.clone(),
                            node: s.node.clone(),
                            cause: e.to_string(),
                        },
                    )?;
                }
                if command.starts_with("kubeadm init") && command.contains("--upload-certs") {
                    journal.certs_uploaded_at = Some(crate::testhooks::now());
                    journal.save(&b.dir)?;
                }
                progress(Progress::Did { text });
            }
            Action::Check { check } => match check {
                Check::CleanHalfJoin => {
                    let outcome = checker.clean_half_join(s, session, leftovers).await?;
                    joined_already = outcome.joined_already;
                    skipping = joined_already;
                    for what in outcome.cleaned {
                        progress(Progress::Cleaned {
                            node: s.node.clone(),
                            what: what.clone(),
                        });
                        cleaned.push(format!("{}: {what}", s.node));
                    }
                    // kubeadm reset empties the manifests directory: the node's own load
                    // balancer pods go back.
                    if outcome.reset {
                        let lb = format!("load-balancer:{}", s.node);
                        if journal.is_done(&lb) {
                            for step in steps(b).iter().filter(|x| x.id == lb) {
                                for a in &step.actions {
                                    if let Action::Put { from, to, mode } = a {
                                        session
                                            .write_file(to, &source_bytes(b, from)?, *mode)
                                            .await?;
                                    }
                                }
                            }
                        }
                    }
                }
                Check::QuorumGate if joined_already => {}
                other => {
                    let said = checker.check(s, other, journal).await?;
                    progress(Progress::Did {
                        text: said.unwrap_or(text),
                    });
                }
            },
        }
    }
    Ok(())
}

/// The bytes a `Put` sends: a bundle file, or the CNI manifest pinned by the plan's sha256.
fn source_bytes(b: &LoadedBundle, from: &str) -> Result<Vec<u8>, ApplyError> {
    if b.has(from) {
        return b.read(from);
    }
    if let Some(CniSpec::File { path, sha256 }) = &b.plan.cni {
        if path.display().to_string() == from {
            // The CNI manifest is pinned by plan.json like the bundle's own files.
            return super::plan_file::read_pinned(path, sha256);
        }
    }
    Err(ApplyError::Bundle {
        path: b.dir.join(from),
        reason: "not listed in plan.json".to_string(),
    })
}
