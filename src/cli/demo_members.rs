//! The demo's membership step on the sandbox: a fourth member added as a learner, caught up and
//! promoted, then removed again (each change behind the quorum gate); a failover drill on a
//! follower (its process stopped and started again, the sandbox's stand-in for parked static
//! pods); a rolling defrag.

use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::bootstrap::drill::parking::Outage;
use crate::bootstrap::drill::{self, DrillOptions, DrillReport, DrillTarget};
use crate::etcd::{
    add_learner, judge, promote, remove, rolling_defrag, wait_caught_up, AddedMember,
    ConnectionOptions, DefragOptions, DefragReport, HealthOptions, MemberOptions, Promoted,
    Removed,
};
use crate::sandbox::Sandbox;

#[derive(Debug, Serialize)]
pub struct DemoMembers {
    pub added: AddedMember,
    pub promoted: Promoted,
    /// Voters after the promotion (4: an even count, a WARNING in `cluster health`).
    pub voters_after_promotion: usize,
    pub removed: Removed,
    pub voters_after_removal: usize,
    pub drill: DrillReport,
    pub defrag: DefragReport,
}

impl DemoMembers {
    pub fn ok(&self) -> bool {
        self.voters_after_promotion == 4
            && self.voters_after_removal == 3
            && self.drill.verdict == crate::etcd::Verdict::Ok
            && self.defrag.members.len() == 3
    }
}

impl DemoMembers {
    pub fn table(&self) -> String {
        let mut s = format!(
            "added {} ({}) as a learner, caught up, promoted after {} attempt(s): {} voters (an even count: WARNING)\n\
             removed {}: {} voters\n",
            self.added.name,
            self.added.id,
            self.promoted.attempts,
            self.voters_after_promotion,
            self.removed.name,
            self.voters_after_removal
        );
        s.push_str(&format!(
            "failover drill on {}: {}\n",
            self.drill.node,
            self.drill.verdict.as_str()
        ));
        for p in &self.drill.phases {
            s.push_str(&format!(
                "  {:<8} {:<6} {:>5.1}s  {}\n",
                p.phase,
                if p.ok { "ok" } else { "FAILED" },
                p.seconds,
                p.detail
            ));
        }
        s.push_str("rolling defrag (followers first, the leader last):\n");
        for m in &self.defrag.members {
            s.push_str(&format!(
                "  {}{}: {} -> {}\n",
                m.name,
                if m.was_leader { " (leader)" } else { "" },
                m.db_size_before
                    .map(|b| crate::units::human_bytes(b.max(0) as u64))
                    .unwrap_or_else(|| "-".into()),
                m.db_size_after
                    .map(|b| crate::units::human_bytes(b.max(0) as u64))
                    .unwrap_or_else(|| "-".into()),
            ));
        }
        s
    }
}

/// Stops and starts one sandbox member's process.
struct SandboxOutage<'a> {
    sandbox: &'a mut Sandbox,
    index: usize,
}

#[async_trait::async_trait]
impl Outage for SandboxOutage<'_> {
    async fn stop(&mut self) -> Result<String, String> {
        self.sandbox.kill(self.index).map_err(|e| e.to_string())?;
        Ok(format!(
            "stopped {}",
            self.sandbox.members()[self.index].name
        ))
    }

    async fn start(&mut self) -> Result<String, String> {
        self.sandbox
            .restart(self.index)
            .await
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "started {}",
            self.sandbox.members()[self.index].name
        ))
    }
}

pub async fn members_step(
    sandbox: &mut Sandbox,
    conn: &ConnectionOptions,
) -> anyhow::Result<DemoMembers> {
    let opts = MemberOptions::default();
    let health = HealthOptions::default();
    let index = sandbox.prepare_joining()?;
    let name = sandbox.members()[index].name.clone();
    let peer = sandbox.members()[index].peer_url(sandbox.tls());
    let added = add_learner(conn, &name, &peer, &opts)
        .await
        .context("demo member add")?;
    sandbox
        .start_joining(index, &added.initial_cluster)
        .await
        .context("the demo's new member did not start")?;
    wait_caught_up(conn, added.raw_id, 1000, Duration::from_secs(60), &health)
        .await
        .context("the demo's learner did not catch up")?;
    let promoted = promote(conn, added.raw_id, Duration::from_secs(60), &opts)
        .await
        .context("demo member promote")?;
    let voters_after_promotion = judge(conn, &health).await.voters;
    let removed = remove(conn, added.raw_id, &opts)
        .await
        .context("demo member remove")?;
    sandbox.kill(index)?;
    let voters_after_removal = judge(conn, &health).await.voters;

    let victim = sandbox.follower().await?;
    let member_name = sandbox.members()[victim].name.clone();
    let mut target = DrillTarget {
        node: member_name.clone(),
        member_peer_url: None,
        member_name: Some(member_name),
        outage: Box::new(SandboxOutage {
            sandbox,
            index: victim,
        }),
        etcd: conn.clone(),
        endpoint: None,
        ca_pem: Vec::new(),
    };
    let drill = drill::run(
        &mut target,
        &DrillOptions {
            force: false,
            wait: Duration::from_secs(60),
            max_lag: 5000,
        },
    )
    .await
    .context("demo failover drill")?;
    drop(target);
    let defrag = rolling_defrag(conn, &DefragOptions::default())
        .await
        .context("demo defrag")?;
    Ok(DemoMembers {
        added,
        promoted,
        voters_after_promotion,
        removed,
        voters_after_removal,
        drill,
        defrag,
    })
}
