//! `cpkeep cluster failover-drill`: on a bundle's node over SSH, or on this machine (`--local`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::connection::ConnectionArgs;
use super::exit::Exit;
use super::output::{Render, Renderer};
use super::table::Table;
use crate::bootstrap::drill::{self, BundleDrill, DrillOptions, DrillReport, LocalDrill};
use crate::etcd::Verdict;

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// A bundle that `cpkeep bootstrap apply` set up: the drill reaches its node over SSH and
    /// etcd with a client certificate minted from the bundle's etcd CA.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "local",
        required_unless_present = "local"
    )]
    pub bundle: Option<PathBuf>,

    /// The control-plane node to stop [default: the last one that is not etcd's leader].
    #[arg(long, value_name = "NAME", requires = "bundle")]
    pub node: Option<String>,

    /// An ssh_config file (ssh -F).
    #[arg(long, value_name = "FILE", requires = "bundle")]
    pub ssh_config: Option<PathBuf>,

    /// Drill this machine's own control-plane node (its manifests directory and the connection
    /// flags below).
    #[arg(long)]
    pub local: bool,

    /// The kubelet's static pod directory of this machine (with --local).
    #[arg(long, value_name = "DIR", default_value = "/etc/kubernetes/manifests")]
    pub manifests_dir: PathBuf,

    /// The control-plane endpoint host:port checked through the load balancer (with --local).
    #[arg(long, value_name = "HOST:PORT", required_if_eq("local", "true"))]
    pub control_plane_endpoint: Option<String>,

    /// The cluster CA the apiservers' certificates chain to (with --local).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/kubernetes/pki/ca.crt"
    )]
    pub cluster_ca: PathBuf,

    /// Drill even when it takes the last spare member (a second failure meanwhile loses quorum).
    #[arg(long)]
    pub force: bool,

    /// How long the member may take to stop, and to rejoin and catch up.
    #[arg(long, default_value = "5m", value_parser = super::duration::positive)]
    pub wait: Duration,

    /// Applied-index lag (entries) within which the member counts as caught up.
    #[arg(long, default_value_t = 5000)]
    pub max_applied_lag: u64,

    #[command(flatten)]
    pub conn: ConnectionArgs,
}

pub async fn run(args: DrillArgs, out: &Renderer) -> anyhow::Result<Exit> {
    let opts = DrillOptions {
        force: args.force,
        wait: args.wait,
        max_lag: args.max_applied_lag,
    };
    let result = match args.bundle {
        Some(bundle) => {
            drill::run_on_bundle(
                &BundleDrill {
                    bundle,
                    node: args.node,
                    ssh_config: args.ssh_config,
                    connect_timeout: Duration::from_secs(15),
                    etcd_timeout: args.conn.timeout,
                },
                &opts,
            )
            .await
        }
        None => {
            let etcd = args.conn.resolve()?;
            drill::run_local(
                LocalDrill {
                    manifests_dir: args.manifests_dir,
                    etcd,
                    endpoint: args.control_plane_endpoint.unwrap_or_default(),
                    ca_file: args.cluster_ca,
                },
                &opts,
            )
            .await
        }
    };
    let report = result.map_err(|e| super::exit::classified(e.class(), &e))?;
    out.print(&report)?;
    Ok(report.verdict.into())
}

impl Render for DrillReport {
    fn table(&self) -> String {
        let mut s = format!(
            "VERDICT: {}\nnode {} (member {}), endpoint {}\n\n",
            self.verdict.as_str(),
            self.node,
            self.member.as_deref().unwrap_or("-"),
            self.endpoint
        );
        let mut t = Table::new(["PHASE", "RESULT", "SECONDS", "DETAIL"]);
        for p in &self.phases {
            t.row([
                p.phase.to_string(),
                if p.ok { "ok" } else { "FAILED" }.to_string(),
                format!("{:.1}", p.seconds),
                p.detail.clone(),
            ]);
        }
        s.push_str(&t.render());
        if self.verdict != Verdict::Ok {
            for r in &self.reasons {
                s.push_str(&format!("- {r}\n"));
            }
        }
        s
    }
}
