//! `cpkeep bootstrap plan` (inventory → verified bundle) and `cpkeep bootstrap example` (an
//! annotated inventory). Parses flags and renders the report; the planning lives in
//! `crate::bootstrap`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::exit::Exit;
use super::output::{Render, Renderer};
use super::table::Table;
use crate::bootstrap::bundle::ChangeKind;
use crate::bootstrap::error::BootstrapError;
use crate::bootstrap::{self, PlanOptions, PlanReport};

#[derive(Debug, Subcommand)]
pub enum BootstrapCommand {
    /// Validate an inventory and write the bundle: CAs, secrets, kubeadm configs per node, load
    /// balancer configs, RUNBOOK.md and plan.json; exit 0 written, 1 failed, 3 bad input.
    Plan(PlanArgs),
    /// Print an annotated example inventory (kubeadm's HA guide example).
    Example,
    /// Run a bundle on its nodes over SSH: preflight, load balancer, kubeadm init, then one
    /// control-plane join at a time behind etcd's quorum gate; resumable. Exit 0 done, 1 a step
    /// failed, 2 preflight (an unreachable node included) or the gate refused, 3 a bad bundle.
    Apply(super::bootstrap_apply::ApplyArgs),
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The inventory file (`cpkeep bootstrap example` prints one).
    #[arg(long, value_name = "FILE")]
    pub inventory: PathBuf,

    /// The bundle directory (created 0700; an earlier bundle is brought up to date, keeping its
    /// pki/ and secrets/).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Accept an even number of control-plane nodes (it adds no fault tolerance).
    #[arg(long)]
    pub allow_even: bool,

    /// Write the bootstrap token and certificate key into RUNBOOK.md (then 0600) and show them here.
    #[arg(long)]
    pub show_secrets: bool,

    /// Make a new bootstrap token (the old one keeps working in a running cluster until its TTL).
    #[arg(long)]
    pub rotate_token: bool,

    /// Adopt the CAs of an existing kubeadm pki directory (ca, front-proxy-ca, etcd/ca with keys;
    /// sa.key/sa.pub when present) instead of generating new ones.
    #[arg(long, value_name = "DIR")]
    pub pki_from: Option<PathBuf>,
}

pub async fn run(cmd: BootstrapCommand, out: &Renderer) -> anyhow::Result<Exit> {
    match cmd {
        BootstrapCommand::Example => {
            print!("{}", bootstrap::example::EXAMPLE);
            Ok(Exit::Ok)
        }
        BootstrapCommand::Apply(args) => super::bootstrap_apply::run(args, out).await,
        BootstrapCommand::Plan(args) => {
            let opts = PlanOptions {
                inventory: args.inventory,
                out: args.out,
                allow_even: args.allow_even,
                show_secrets: args.show_secrets,
                rotate_token: args.rotate_token,
                pki_from: args.pki_from,
            };
            // Key generation (RSA-4096 takes seconds) and file writes stay off the async workers.
            let report = tokio::task::spawn_blocking(move || bootstrap::plan(&opts))
                .await?
                .map_err(failure)?;
            if report
                .changes
                .iter()
                .all(|c| c.change == ChangeKind::Created)
            {
                tracing::info!(
                    "wrote a new bundle of {} files to {}",
                    report.changes.len(),
                    report.out.display()
                );
            } else {
                for c in report
                    .changes
                    .iter()
                    .filter(|c| c.change != ChangeKind::Unchanged)
                {
                    tracing::info!("{}: {}", c.path, change_word(c.change));
                }
            }
            for n in &report.notes {
                tracing::warn!("{n}");
            }
            out.print(&PlanView(&report))?;
            Ok(Exit::Ok)
        }
    }
}

/// A planning failure with its exit code: bad input 3, a failed write 1.
pub fn failure(e: BootstrapError) -> anyhow::Error {
    super::exit::classified(e.class(), &e)
}

fn change_word(c: ChangeKind) -> &'static str {
    match c {
        ChangeKind::Created => "created",
        ChangeKind::Updated => "updated",
        ChangeKind::Mode => "mode corrected",
        ChangeKind::Unchanged => "unchanged",
        ChangeKind::Removed => "removed",
    }
}

/// The report as shown: JSON is exactly plan.json; the table is a summary.
struct PlanView<'a>(&'a PlanReport);

impl Serialize for PlanView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.plan.serialize(s)
    }
}

impl Render for PlanView<'_> {
    fn table(&self) -> String {
        let r = self.0;
        let p = &r.plan;
        let mut t = Table::new(["NODE", "ROLE", "ADDRESS"]);
        for n in &p.nodes {
            let role = n.role.as_str().to_string();
            t.row([n.name.clone(), role, n.address.to_string()]);
        }
        let lb = &p.load_balancer;
        let mut out = t.render();
        out.push('\n');
        let lb_text = match lb.vip {
            Some(vip) => format!(
                "{} (VIP {vip} on {}), hosts {}",
                lb.mode_str(),
                lb.interface.as_deref().unwrap_or_default(),
                lb.hosts.join(", ")
            ),
            None => lb.mode_str().to_string(),
        };
        let counts = |k: ChangeKind| r.changes.iter().filter(|c| c.change == k).count();
        let rows = [
            ("cluster", format!("{} (Kubernetes {}, {})", p.cluster, p.kubernetes_version, p.kubeadm_api_version_str())),
            ("endpoint", p.control_plane_endpoint.clone()),
            ("load balancer", lb_text),
            (
                "etcd",
                format!(
                    "{} members, quorum {}, tolerates {} failure(s)",
                    p.etcd.members, p.etcd.quorum, p.etcd.fault_tolerance
                ),
            ),
            ("CA hash", p.ca_cert_hash.clone()),
            (
                "bundle",
                format!(
                    "{}: {} files ({} created, {} updated, {} removed, {} unchanged), {} steps in RUNBOOK.md",
                    r.out.display(),
                    p.files.len() + 1,
                    counts(ChangeKind::Created),
                    counts(ChangeKind::Updated) + counts(ChangeKind::Mode),
                    counts(ChangeKind::Removed),
                    counts(ChangeKind::Unchanged),
                    p.steps.len()
                ),
            ),
        ];
        let mut kv = Table::new(["", ""]);
        for (k, v) in rows {
            kv.row([k.to_string(), v]);
        }
        if let Some(s) = &r.secrets {
            kv.row(["token".to_string(), s.token.expose().to_string()]);
            kv.row([
                "certificate key".to_string(),
                s.certificate_key.expose().to_string(),
            ]);
        }
        // Skip the empty header line of the key/value table.
        out.extend(kv.render().lines().skip(1).map(|l| format!("{l}\n")));
        out
    }
}
