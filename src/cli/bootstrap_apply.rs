//! `cpkeep bootstrap apply`: flags in, progress on stderr, the report (or the dry-run listing) out.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::exit::Exit;
use super::output::{Render, Renderer};
use super::table::Table;
use crate::bootstrap::apply::report::{Outcome, Progress};
use crate::bootstrap::apply::{self, ApplyOptions, ApplyReport, DryRunReport};

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The bundle made by `cpkeep bootstrap plan`; its state.json records finished steps.
    #[arg(long, value_name = "DIR")]
    pub bundle: PathBuf,

    /// Print every step's commands per node, in order, and run nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Only this node's steps (its join, or its load balancer); the first node's init must have run.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,

    /// An ssh_config file for every connection (ssh -F); by default ssh reads ~/.ssh/config.
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,

    /// Bound on reaching a node over SSH.
    #[arg(long, default_value = "15s", value_parser = super::duration::positive)]
    pub connect_timeout: Duration,

    /// How long one command (kubeadm init, a join) may run, and how long a join's member, an
    /// apiserver or the nodes may take to become ready.
    #[arg(long, default_value = "10m", value_parser = super::duration::positive)]
    pub wait: Duration,
}

pub async fn run(args: ApplyArgs, out: &Renderer) -> anyhow::Result<Exit> {
    let opts = ApplyOptions {
        bundle: args.bundle,
        node: args.node,
        ssh_config: args.ssh_config,
        connect_timeout: args.connect_timeout,
        etcd_timeout: Duration::from_secs(5),
        wait: args.wait,
    };
    if args.dry_run {
        let report = apply::dry_run(&opts).map_err(failure)?;
        out.print(&report)?;
        return Ok(Exit::Ok);
    }
    let mut progress = |p: Progress| match p {
        Progress::StepStarted {
            number,
            total,
            id,
            title,
        } => tracing::info!("[{number}/{total}] {id}: {title}"),
        Progress::AlreadyDone { id } => tracing::info!("{id}: done in an earlier run, skipped"),
        Progress::Did { text } => tracing::info!("  {text}"),
        Progress::Cleaned { node, what } => tracing::warn!("{node}: {what}"),
        Progress::StepFinished { id, seconds } => tracing::info!("{id}: done in {seconds:.1}s"),
    };
    let report = apply::apply(&opts, &mut progress).await.map_err(failure)?;
    out.print(&report)?;
    Ok(Exit::Ok)
}

fn failure(e: apply::ApplyError) -> anyhow::Error {
    super::exit::classified(e.class(), &e)
}

impl Render for DryRunReport {
    fn table(&self) -> String {
        let mut s = String::new();
        for (i, step) in self.steps.iter().enumerate() {
            let state = if step.done {
                " (done, skipped)"
            } else if !step.selected {
                " (not selected)"
            } else {
                ""
            };
            s.push_str(&format!(
                "{}. {} on {}: {}{state}\n",
                i + 1,
                step.id,
                step.node,
                step.title
            ));
            for a in &step.actions {
                s.push_str(&format!("     {a}\n"));
            }
        }
        s
    }
}

impl Render for ApplyReport {
    fn table(&self) -> String {
        let mut t = Table::new(["STEP", "NODE", "RESULT", "SECONDS"]);
        for s in &self.steps {
            let result = match s.outcome {
                Outcome::Ran => "done",
                Outcome::AlreadyDone => "done earlier",
                Outcome::NotSelected => "not selected",
            };
            t.row([
                s.id.clone(),
                s.node.clone(),
                result.to_string(),
                s.seconds.map(|x| format!("{x:.1}")).unwrap_or_default(),
            ]);
        }
        let mut out = t.render();
        for c in &self.cleaned {
            out.push_str(&format!("cleaned: {c}\n"));
        }
        if let Some(e) = &self.etcd {
            out.push_str(&format!(
                "etcd: {} voters ({} healthy), {} learners, quorum {}, fault tolerance {}\n",
                e.voters, e.healthy_voters, e.learners, e.quorum, e.fault_tolerance
            ));
        }
        if let Some(p) = &self.admin_kubeconfig {
            out.push_str(&format!("admin kubeconfig: {}\n", p.display()));
        }
        out.push_str(&format!(
            "control-plane endpoint: {}\n",
            self.control_plane_endpoint
        ));
        out
    }
}
