//! The runner's own work between commands: the quorum gate, undoing a half-finished join, waiting
//! for members and apiservers, refreshing the uploaded certificates, fetching the admin
//! kubeconfig, and the node check. Each wait polls until its condition holds or `--wait` passes,
//! then fails naming what was still wrong. Never prints.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use super::error::ApplyError;
use super::etcd_access::{connection, mint_client, peer_url};
use super::journal::Journal;
use super::plan_file::{LoadedBundle, NodeView};
use super::readyz::readyz;
use super::report::EtcdSummary;
use super::run::ApplyOptions;
use super::steps::{ApplyStep, Check, NODE_ADMIN_CONF};
use crate::bootstrap::bundle::ADMIN_KUBECONFIG;
use crate::bootstrap::plan::NODE_KUBEADM_CONFIG;
use crate::etcd::{
    quorum_gate, GateOptions, HealthOptions, HealthReport, MemberOptions, MembershipChange,
    TlsMaterial,
};
use crate::remote::{Script, Session};

/// kubeadm's `kubeadm-certs` Secret expires two hours after an upload; refresh with ten minutes
/// to spare.
pub const CERTS_REFRESH_AFTER: Duration = Duration::from_secs(110 * 60);
const POLL: Duration = Duration::from_millis(500);

/// What undoing a half-finished join did.
#[derive(Debug, Default)]
pub struct CleanOutcome {
    pub cleaned: Vec<String>,
    pub reset: bool,
    /// The member is a started, healthy voter already: the join itself went through.
    pub joined_already: bool,
}

pub struct Checker<'a> {
    b: &'a LoadedBundle,
    opts: &'a ApplyOptions,
    sessions: &'a BTreeMap<String, Session>,
    tls: TlsMaterial,
    ca_pem: Vec<u8>,
}

impl<'a> Checker<'a> {
    pub fn new(
        b: &'a LoadedBundle,
        opts: &'a ApplyOptions,
        sessions: &'a BTreeMap<String, Session>,
    ) -> Result<Self, ApplyError> {
        Ok(Self {
            b,
            opts,
            sessions,
            tls: mint_client(b)?,
            ca_pem: b.read("pki/ca.crt")?,
        })
    }

    /// etcd's health as `cluster health` judges it, asked at every control-plane node and the
    /// members found through them.
    pub async fn health(&self, node: &str) -> Result<HealthReport, ApplyError> {
        let cps = self.b.control_plane();
        let conn = connection(&cps, &self.tls, self.opts.etcd_timeout)?;
        let _ = node;
        Ok(crate::etcd::judge(&conn, &HealthOptions::default()).await)
    }

    /// How long a check may take to hold, or a command to finish (`--wait`).
    pub fn wait_limit(&self) -> Duration {
        self.opts.wait
    }

    /// etcd's numbers for the report (None when nothing answers).
    pub async fn summary(&self) -> Option<EtcdSummary> {
        let r = self.health("").await.ok()?;
        r.cluster_id.as_ref()?;
        Some(EtcdSummary {
            voters: r.voters,
            healthy_voters: r.healthy_voters,
            learners: r.learners,
            quorum: r.quorum,
            fault_tolerance: r.fault_tolerance,
        })
    }

    fn node(&self, s: &ApplyStep) -> Result<&'a NodeView, ApplyError> {
        self.b.node(&s.node).ok_or_else(|| ApplyError::Step {
            step: s.id.clone(),
            node: s.node.clone(),
            cause: "not in the plan".to_string(),
        })
    }

    fn first_session(&self) -> Result<&'a Session, ApplyError> {
        let first = self.b.first();
        self.sessions
            .get(&first.name)
            .ok_or_else(|| ApplyError::Selection(format!("no session to {}", first.name)))
    }

    /// Undoes what an interrupted earlier run left of this node's kubeadm step.
    pub async fn clean_half_join(
        &self,
        s: &ApplyStep,
        session: &Session,
        leftovers: &[String],
    ) -> Result<CleanOutcome, ApplyError> {
        let node = self.node(s)?;
        let mut out = CleanOutcome::default();
        if s.is_control_plane_join() {
            let report = self.health(&node.name).await?;
            let url = peer_url(node);
            if let Some(m) = report
                .members
                .iter()
                .find(|m| m.peer_urls.iter().any(|u| u.trim_end_matches('/') == url))
            {
                if m.healthy && !m.is_learner && m.name == node.name {
                    out.joined_already = true;
                    return Ok(out);
                }
                let why = if m.name.is_empty() {
                    "it was added but never started"
                } else if m.is_learner {
                    "a learner that never caught up"
                } else {
                    "it is not healthy"
                };
                let id = u64::from_str_radix(&m.id, 16).unwrap_or_default();
                self.remove_member(&node.name, id).await?;
                out.cleaned
                    .push(format!("removed etcd member {} ({url}): {why}", m.id));
            }
        }
        if !leftovers.is_empty() {
            session
                .run_ok(&Script::new("kubeadm reset -f"))
                .await
                .map_err(|e| ApplyError::in_step(s, e))?;
            out.reset = true;
            out.cleaned.push(format!(
                "ran `kubeadm reset -f`: an earlier attempt left {}",
                leftovers.join(", ")
            ));
        }
        Ok(out)
    }

    /// Removes a member (behind the gate, through a healthy voter other than it).
    async fn remove_member(&self, node: &str, id: u64) -> Result<(), ApplyError> {
        let cps = self.b.control_plane();
        let conn = connection(&cps, &self.tls, self.opts.etcd_timeout)?;
        let opts = MemberOptions {
            // A bootstrap passes through even counts; removing a member that is not a healthy
            // voter never lowers the fault tolerance.
            gate: GateOptions { allow_even: true },
            ..MemberOptions::default()
        };
        crate::etcd::remove(&conn, id, &opts)
            .await
            .map(|_| ())
            .map_err(|source| ApplyError::Member {
                node: node.to_string(),
                source,
            })
    }

    /// Runs one check of step `s`; returns what it found when that says more than the check's
    /// description.
    pub async fn check(
        &self,
        s: &ApplyStep,
        check: &Check,
        journal: &mut Journal,
    ) -> Result<Option<String>, ApplyError> {
        match check {
            Check::CleanHalfJoin => Ok(None),
            Check::RefreshUploadedCerts => {
                let now = crate::testhooks::now();
                let stale = journal
                    .certs_uploaded_at
                    .is_none_or(|t| (now - t).to_std().unwrap_or_default() >= CERTS_REFRESH_AFTER);
                if !stale {
                    return Ok(journal.certs_uploaded_at.map(|t| {
                        format!(
                            "kubeadm-certs uploaded at {} is still valid",
                            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        )
                    }));
                }
                {
                    self.first_session()?
                        .run_ok(&Script::new(format!(
                            "kubeadm init phase upload-certs --upload-certs --config {NODE_KUBEADM_CONFIG}"
                        )))
                        .await
                        .map_err(|e| ApplyError::Step {
                            step: s.id.clone(),
                            node: self.b.first().name.clone(),
                            cause: e.to_string(),
                        })?;
                    let before = journal.certs_uploaded_at;
                    journal.certs_uploaded_at = Some(now);
                    journal.save(&self.b.dir)?;
                    Ok(Some(match before {
                        Some(t) => format!(
                            "re-uploaded kubeadm-certs: the last upload, at {}, was 1h50m or more ago",
                            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        ),
                        None => "uploaded kubeadm-certs (no earlier upload recorded)".to_string(),
                    }))
                }
            }
            Check::QuorumGate => {
                let node = self.node(s)?;
                let report = self.health(&node.name).await?;
                let url = peer_url(node);
                // Growing 1 → 3 passes through 2 voters: an even count is expected here.
                quorum_gate(
                    &report,
                    &MembershipChange::Add {
                        name: &node.name,
                        peer_url: &url,
                    },
                    &GateOptions { allow_even: true },
                )
                .map(|v| {
                    Some(format!(
                        "quorum gate passed: {} of {} voters healthy; with {} added, {} voters and quorum {}",
                        v.healthy_voters_now, v.voters_now, node.name, v.voters_after, v.quorum_after
                    ))
                })
                .map_err(|refusal| ApplyError::Gate {
                    node: node.name.clone(),
                    refusal,
                })
            }
            Check::Members { nodes } => {
                let want: BTreeMap<String, String> = nodes
                    .iter()
                    .filter_map(|n| self.b.node(n))
                    .map(|n| (peer_url(n), n.name.clone()))
                    .collect();
                self.wait(s, "etcd members", || async {
                    let r = self.health(&s.node).await?;
                    Ok(members_match(&r, &want))
                })
                .await
                .map(|()| None)
            }
            Check::Readyz { address } => self
                .wait(s, &format!("https://{address}/readyz"), || async {
                    Ok(readyz(address, &self.ca_pem, Duration::from_secs(5))
                        .await
                        .err())
                })
                .await
                .map(|()| None),
            Check::FetchAdminKubeconfig => {
                let bytes = self.first_session()?.read_file(NODE_ADMIN_CONF).await?;
                let path = self.b.dir.join(ADMIN_KUBECONFIG);
                crate::fsx::write_atomic(&path, &bytes, 0o600)
                    .map(|()| None)
                    .map_err(|source| ApplyError::Write { path, source })
            }
            Check::NodesReady {
                nodes,
                expect_ready,
            } => {
                let session = self.first_session()?;
                self.wait(s, "nodes", || async {
                    let out = session
                        .run_ok(&Script::new(format!(
                            "kubectl --kubeconfig {NODE_ADMIN_CONF} get nodes -o json"
                        )))
                        .await?;
                    Ok(nodes_problem(&out, nodes, *expect_ready))
                })
                .await
                .map(|()| None)
            }
        }
    }

    /// Polls `probe` (which returns what is still wrong, or None) until it holds or `--wait` passes.
    async fn wait<F, Fut>(&self, s: &ApplyStep, what: &str, mut probe: F) -> Result<(), ApplyError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<String>, ApplyError>>,
    {
        let deadline = Instant::now() + self.opts.wait;
        loop {
            let last = match probe().await {
                Ok(None) => return Ok(()),
                Ok(Some(why)) => why,
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(ApplyError::NotReady {
                    step: s.id.clone(),
                    node: s.node.clone(),
                    what: format!("{what}: {last}"),
                    after: self.opts.wait,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// What keeps the member list from being exactly `want` (peer URL → node name), all started
/// voters, all healthy; None when it is.
pub fn members_match(r: &HealthReport, want: &BTreeMap<String, String>) -> Option<String> {
    if r.cluster_id.is_none() {
        return Some(format!("no member answered ({})", r.reasons.join("; ")));
    }
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for m in &r.members {
        let url = m
            .peer_urls
            .iter()
            .map(|u| u.trim_end_matches('/').to_string())
            .find(|u| want.contains_key(u));
        match url {
            None => problems.push(format!(
                "member {} ({}) is not one of the joined nodes",
                if m.name.is_empty() {
                    "unstarted"
                } else {
                    &m.name
                },
                m.id
            )),
            Some(u) => {
                seen.insert(u.clone());
                let name = &want[&u];
                if m.name.is_empty() {
                    problems.push(format!("{name}'s member {} has not started", m.id));
                } else if m.is_learner {
                    problems.push(format!("{name}'s member {} is still a learner", m.id));
                } else if !m.healthy {
                    problems.push(format!(
                        "{name}'s member {} is not healthy: {}",
                        m.id,
                        m.error.clone().unwrap_or_default()
                    ));
                }
            }
        }
    }
    for (u, name) in want {
        if !seen.contains(u) {
            problems.push(format!("{name} ({u}) is not a member"));
        }
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// What keeps `kubectl get nodes -o json` from listing every node (Ready, when expected).
pub fn nodes_problem(json: &str, nodes: &[String], expect_ready: bool) -> Option<String> {
    let v: serde_json::Value = match serde_json::from_str(json) {
        Ok(v) => v,
        Err(e) => return Some(format!("kubectl printed no node list: {e}")),
    };
    let items = v["items"].as_array().cloned().unwrap_or_default();
    let mut problems = Vec::new();
    for n in nodes {
        let item = items.iter().find(|i| i["metadata"]["name"] == n.as_str());
        match item {
            None => problems.push(format!("{n} is not registered")),
            Some(i) if expect_ready => {
                let ready = i["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                if !ready {
                    problems.push(format!("{n} is not Ready"));
                }
            }
            Some(_) => {}
        }
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}
