//! `cpkeep cluster member add|promote|remove|replace`: membership changes, each behind the quorum gate.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::connection::ConnectionArgs;
use super::exit::classified;
use super::output::{Render, Renderer};
use super::Exit;
use crate::etcd::{
    add_learner, judge, promote, remove, replace, resolve_member, wait_caught_up, AddedMember,
    CaughtUp, ConnectionOptions, GateOptions, GateVerdict, MemberError, MemberOptions, Promoted,
    Removed,
};
use crate::failure::FailureClass;

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Add a member as a learner, print the flags it needs, wait until it has caught up, promote it.
    Add(AddArgs),
    /// Promote a learner that has caught up to a voting member.
    Promote(PromoteArgs),
    /// Remove a member; refused when it would lose quorum or leave an even voter count (--force).
    Remove(RemoveArgs),
    /// Remove a member and add a new one in its place as a learner, then promote it.
    Replace(ReplaceArgs),
}

/// Waiting for the new member and promoting it.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Wait until the new member has caught up, then promote it (the default).
    #[arg(long, overrides_with = "no_wait")]
    pub wait: bool,

    /// Only add the learner; promote it later with `cluster member promote`.
    #[arg(long, overrides_with = "wait")]
    pub no_wait: bool,

    /// Applied-index entries the learner may be behind the leader when it is promoted.
    #[arg(long, default_value_t = 1000)]
    pub max_lag: u64,

    /// How long to wait for the learner to start, catch up and be promoted.
    #[arg(long, default_value = "5m", value_parser = super::duration::positive)]
    pub wait_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The new member's name (etcd --name; kubeadm uses the node name).
    pub name: String,

    /// The new member's peer URL (etcd --initial-advertise-peer-urls), e.g. https://10.0.0.4:2380.
    #[arg(long, value_name = "URL", value_parser = peer_url)]
    pub peer_urls: String,

    #[command(flatten)]
    pub wait: WaitArgs,

    /// Connection flags, as `cluster health`: the section below.
    #[command(flatten)]
    pub conn: ConnectionArgs,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The learner's name or hex ID.
    pub member: String,

    /// How long to retry while etcd says the learner is not yet in sync.
    #[arg(long, default_value = "1m", value_parser = super::duration::positive)]
    pub wait_timeout: Duration,

    /// Connection flags, as `cluster health`: the section below.
    #[command(flatten)]
    pub conn: ConnectionArgs,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The member's name or hex ID.
    pub member: String,

    /// Remove even when it leaves an even number of voters (never when it would lose quorum).
    #[arg(long)]
    pub force: bool,

    /// Connection flags, as `cluster health`: the section below.
    #[command(flatten)]
    pub conn: ConnectionArgs,
}

#[derive(Debug, Args)]
pub struct ReplaceArgs {
    /// The member to replace: name or hex ID.
    pub old: String,

    /// The new member's peer URL.
    #[arg(long, value_name = "URL", value_parser = peer_url)]
    pub peer_urls: String,

    /// The new member's name [default: the old member's].
    #[arg(long)]
    pub name: Option<String>,

    #[command(flatten)]
    pub wait: WaitArgs,

    /// Connection flags, as `cluster health`: the section below.
    #[command(flatten)]
    pub conn: ConnectionArgs,
}

/// One peer URL: http or https, with a host and a port.
fn peer_url(s: &str) -> Result<String, String> {
    let u = url::Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() || u.port().is_none() {
        return Err(format!(
            "{s:?} is not a peer URL: expected http(s)://HOST:PORT, e.g. https://10.0.0.4:2380"
        ));
    }
    Ok(s.trim_end_matches('/').to_string())
}

/// What `member add` and `member replace` did.
#[derive(Debug, Serialize)]
pub struct MemberAddReport {
    /// The member removed first (`replace` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<Removed>,
    pub added: AddedMember,
    pub caught_up: Option<CaughtUp>,
    pub promoted: Option<Promoted>,
}

pub async fn run(cmd: MemberCommand, out: &Renderer) -> anyhow::Result<Exit> {
    match cmd {
        MemberCommand::Add(a) => {
            let conn = a.conn.resolve()?;
            let opts = MemberOptions::default();
            let added = add_learner(&conn, &a.name, &a.peer_urls, &opts)
                .await
                .map_err(fail)?;
            let report = finish_add(&conn, None, added, &a.wait, &opts).await?;
            out.print(&report)?;
        }
        MemberCommand::Promote(a) => {
            let conn = a.conn.resolve()?;
            let opts = MemberOptions::default();
            let id = resolve(&conn, &a.member, &opts).await?;
            let p = promote(&conn, id, a.wait_timeout, &opts)
                .await
                .map_err(fail)?;
            out.print(&p)?;
        }
        MemberCommand::Remove(a) => {
            let conn = a.conn.resolve()?;
            let opts = MemberOptions {
                gate: GateOptions {
                    allow_even: a.force,
                },
                ..MemberOptions::default()
            };
            let id = resolve(&conn, &a.member, &opts).await?;
            let r = remove(&conn, id, &opts).await.map_err(fail)?;
            out.print(&r)?;
        }
        MemberCommand::Replace(a) => {
            let conn = a.conn.resolve()?;
            let opts = MemberOptions::default();
            let report = judge(&conn, &opts.health).await;
            let id = resolve_member(&report, &a.old).map_err(fail)?;
            let old_name = report
                .members
                .iter()
                .find(|m| m.id == crate::etcd::hex_id(id))
                .map(|m| m.name.clone())
                .unwrap_or_default();
            let name = a.name.clone().unwrap_or(old_name);
            if name.is_empty() {
                return Err(classified(
                    FailureClass::Unusable,
                    &"the member to replace has no name (never started): pass --name",
                ));
            }
            let (removed, added) = replace(&conn, id, &name, &a.peer_urls, &opts)
                .await
                .map_err(fail)?;
            let report = finish_add(&conn, Some(removed), added, &a.wait, &opts).await?;
            out.print(&report)?;
        }
    }
    Ok(Exit::Ok)
}

/// After a learner was added: tell how to start it, then (unless --no-wait) wait and promote.
async fn finish_add(
    conn: &ConnectionOptions,
    removed: Option<Removed>,
    added: AddedMember,
    wait: &WaitArgs,
    opts: &MemberOptions,
) -> anyhow::Result<MemberAddReport> {
    let mut report = MemberAddReport {
        removed,
        added,
        caught_up: None,
        promoted: None,
    };
    if wait.no_wait {
        return Ok(report);
    }
    // The operator needs the flags now, while cpkeep waits for the member they start.
    eprintln!(
        "added learner {} ({}); start it with: {}",
        report.added.name,
        report.added.id,
        start_flags(&report.added)
    );
    let started = tokio::time::Instant::now();
    let caught = wait_caught_up(
        conn,
        report.added.raw_id,
        wait.max_lag,
        wait.wait_timeout,
        &opts.health,
    )
    .await
    .map_err(fail)?;
    let left = wait.wait_timeout.saturating_sub(started.elapsed());
    let promoted = promote(
        conn,
        report.added.raw_id,
        left.max(Duration::from_secs(1)),
        opts,
    )
    .await
    .map_err(fail)?;
    report.caught_up = Some(caught);
    report.promoted = Some(promoted);
    Ok(report)
}

async fn resolve(conn: &ConnectionOptions, key: &str, opts: &MemberOptions) -> anyhow::Result<u64> {
    let report = judge(conn, &opts.health).await;
    resolve_member(&report, key).map_err(fail)
}

fn fail(e: MemberError) -> anyhow::Error {
    classified(e.class(), &e)
}

/// The etcd flags the new member needs.
fn start_flags(a: &AddedMember) -> String {
    format!(
        "--name={} --initial-advertise-peer-urls={} --initial-cluster={} --initial-cluster-state={}",
        a.name, a.peer_url, a.initial_cluster, a.initial_cluster_state
    )
}

fn gate_line(g: &GateVerdict) -> String {
    format!(
        "gate: {} of {} voters healthy now; after, at worst, {} of {} (quorum {}, fault tolerance {})",
        g.healthy_voters_now,
        g.voters_now,
        g.healthy_voters_after,
        g.voters_after,
        g.quorum_after,
        g.fault_tolerance_after
    )
}

impl Render for MemberAddReport {
    fn table(&self) -> String {
        let mut s = String::new();
        if let Some(r) = &self.removed {
            s.push_str(&format!("removed member {} ({})\n", r.name, r.id));
        }
        let a = &self.added;
        s.push_str(&format!(
            "added learner {} ({}) with peer URL {}\n",
            a.name, a.id, a.peer_url
        ));
        s.push_str(&gate_line(&a.gate));
        s.push('\n');
        s.push_str(&format!("initial cluster: {}\n", a.initial_cluster));
        s.push_str(&format!("start it with: {}\n", start_flags(a)));
        match (&self.caught_up, &self.promoted) {
            (Some(c), Some(p)) => {
                s.push_str(&format!(
                    "caught up after {:.1}s: applied index {}, leader's {} (lag {})\n",
                    c.seconds, c.applied_index, c.leader_applied_index, c.lag
                ));
                s.push_str(&format!("promoted {} ({}) to voter\n", p.name, p.id));
            }
            _ => s.push_str(&format!(
                "not promoted (--no-wait): once it has caught up, run `cpkeep cluster member promote {}`\n",
                a.name
            )),
        }
        s
    }
}

impl Render for Promoted {
    fn table(&self) -> String {
        format!(
            "promoted {} ({}) to voter after {} attempt(s)\n{}\n",
            self.name,
            self.id,
            self.attempts,
            gate_line(&self.gate)
        )
    }
}

impl Render for Removed {
    fn table(&self) -> String {
        let role = if self.was_learner {
            "learner"
        } else {
            "member"
        };
        format!(
            "removed {role} {} ({})\n{}\n",
            self.name,
            self.id,
            gate_line(&self.gate)
        )
    }
}
