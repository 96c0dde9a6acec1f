//! The quorum gate: before a membership change (add, promote, remove, replace), whether the cluster can
//! afford it, judged on the [`HealthReport`] of `cluster health` and counted with the same
//! [`QuorumCount`] as its verdict.
//!
//! It counts worst-case as Cluster API does: a member being added counts as unhealthy until it has
//! started, a learner already present refuses (etcd admits one learner at a time, and a learner left
//! behind is a join that failed half-way), and the change proceeds only when the voters that stay
//! healthy still form a quorum of the voters after it. No I/O here: every rule is unit-tested on
//! hand-made reports.

use serde::Serialize;

use super::health::QuorumCount;
use super::hex_id;
use super::report::{HealthReport, MemberHealth};
use crate::failure::FailureClass;

/// A change of membership the gate is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange<'a> {
    /// A new member (added as a learner, then promoted): counted as an unhealthy voter.
    Add { name: &'a str, peer_url: &'a str },
    /// A learner made a voter.
    Promote { id: u64 },
    /// A member removed.
    Remove { id: u64 },
    /// A member removed, then a new one added in its place; each step is checked.
    Replace { id: u64, peer_url: &'a str },
}

/// What the gate lets through.
#[derive(Debug, Clone, Default)]
pub struct GateOptions {
    /// Allow a removal that leaves an even number of voters (`--force`).
    pub allow_even: bool,
}

/// The counts the gate judged by: now, and in the worst case after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GateVerdict {
    /// The change, in words (`add m4 (https://10.0.0.4:2380)`).
    pub change: String,
    pub voters_now: usize,
    pub healthy_voters_now: usize,
    pub quorum_now: usize,
    /// Voters once the change is done (a member being added counted).
    pub voters_after: usize,
    /// Healthy voters after, in the worst case (a member being added counted unhealthy).
    pub healthy_voters_after: usize,
    pub quorum_after: usize,
    /// Failures the cluster survives after the change, in the worst case.
    pub fault_tolerance_after: usize,
}

/// Why the gate refuses a change. Each message names the members (name and hex ID) and the numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateRefusal {
    #[error("refusing to {change}: the membership is unknown ({why})")]
    Unknown { change: String, why: String },

    #[error("refusing to {change}: no member has ID {id}")]
    NoSuchMember { change: String, id: String },

    #[error(
        "refusing to {change}: learner {learner} is already in the cluster (a join that never finished?); \
         promote it once it has caught up, or remove it, first"
    )]
    LearnerPresent { change: String, learner: String },

    #[error("refusing to {change}: member {member} already has peer URL {url}")]
    PeerUrlInUse {
        change: String,
        url: String,
        member: String,
    },

    #[error("refusing to {change}: member {member} already has the name {name:?}")]
    NameInUse {
        change: String,
        name: String,
        member: String,
    },

    #[error("refusing to {change}: {member} is not a learner")]
    NotALearner { change: String, member: String },

    #[error("refusing to {change}: it is the last voting member")]
    LastVoter { change: String },

    #[error(
        "refusing to {change}: it would lose quorum: {healthy_after} of {voters_after} voting members would be healthy \
         and {quorum_after} are needed{unhealthy}"
    )]
    WouldLoseQuorum {
        change: String,
        voters_after: usize,
        healthy_after: usize,
        quorum_after: usize,
        /// `" (unhealthy: m3 (3), the new member)"`, or empty.
        unhealthy: String,
    },

    #[error(
        "refusing to {change}: it would leave {voters_after} voting members, an even count, which tolerates \
         {tolerates} failure(s) like {odd} members would while needing a quorum of {quorum_after}; pass --force to do it anyway"
    )]
    EvenCount {
        change: String,
        voters_after: usize,
        tolerates: usize,
        odd: usize,
        quorum_after: usize,
    },
}

impl GateRefusal {
    pub fn class(&self) -> FailureClass {
        match self {
            GateRefusal::Unknown { .. }
            | GateRefusal::NoSuchMember { .. }
            | GateRefusal::LearnerPresent { .. }
            | GateRefusal::PeerUrlInUse { .. }
            | GateRefusal::NameInUse { .. }
            | GateRefusal::NotALearner { .. }
            | GateRefusal::LastVoter { .. }
            | GateRefusal::WouldLoseQuorum { .. }
            | GateRefusal::EvenCount { .. } => FailureClass::Refused,
        }
    }
}

/// One member of a membership being reasoned about: real, or the one being added.
#[derive(Debug, Clone)]
struct Seat {
    label: String,
    id: Option<String>,
    name: String,
    peer_urls: Vec<String>,
    is_learner: bool,
    healthy: bool,
}

impl Seat {
    fn of(m: &MemberHealth) -> Self {
        Seat {
            label: label(m),
            id: Some(m.id.clone()),
            name: m.name.clone(),
            peer_urls: m.peer_urls.clone(),
            is_learner: m.is_learner,
            healthy: m.healthy,
        }
    }
}

/// Whether `report`'s cluster can afford `change`; the counts it judged by, or why not.
pub fn quorum_gate(
    report: &HealthReport,
    change: &MembershipChange,
    opts: &GateOptions,
) -> Result<GateVerdict, GateRefusal> {
    let what = describe(report, change);
    if report.members.is_empty() {
        let why = if report.reasons.is_empty() {
            "no member list".to_string()
        } else {
            report.reasons.join("; ")
        };
        return Err(GateRefusal::Unknown { change: what, why });
    }
    let now: Vec<Seat> = report.members.iter().map(Seat::of).collect();
    let before = count(&now);
    let after = match *change {
        MembershipChange::Add { name, peer_url } => add(&now, name, peer_url, &what)?,
        MembershipChange::Promote { id } => promote(&now, id, &what)?,
        MembershipChange::Remove { id } => remove(&now, id, opts, &what)?,
        MembershipChange::Replace { id, peer_url } => {
            let old = find(&now, id, &what)?;
            let name = old.name.clone();
            let without = remove(&now, id, &GateOptions { allow_even: true }, &what)?;
            // The new member may take the old one's name and peer URL: a node rebuilt in place.
            add(&without, &name, peer_url, &what)?
        }
    };
    let c = count(&after);
    Ok(GateVerdict {
        change: what,
        voters_now: before.voters,
        healthy_voters_now: before.healthy_voters,
        quorum_now: before.quorum,
        voters_after: c.voters,
        healthy_voters_after: c.healthy_voters,
        quorum_after: c.quorum,
        fault_tolerance_after: c.fault_tolerance(),
    })
}

fn count(seats: &[Seat]) -> QuorumCount {
    QuorumCount::of(seats.iter().map(|s| (s.is_learner, s.healthy)))
}

/// Adding a voter that has not started yet: the membership after it, or why not.
fn add(now: &[Seat], name: &str, peer_url: &str, what: &str) -> Result<Vec<Seat>, GateRefusal> {
    refuse_learners(now, what)?;
    for s in now {
        if s.peer_urls.iter().any(|u| same_url(u, peer_url)) {
            return Err(GateRefusal::PeerUrlInUse {
                change: what.to_string(),
                url: peer_url.to_string(),
                member: s.label.clone(),
            });
        }
        if !name.is_empty() && s.name == name {
            return Err(GateRefusal::NameInUse {
                change: what.to_string(),
                name: name.to_string(),
                member: s.label.clone(),
            });
        }
    }
    let mut after = now.to_vec();
    after.push(Seat {
        label: "the new member".to_string(),
        id: None,
        name: name.to_string(),
        peer_urls: vec![peer_url.to_string()],
        is_learner: false,
        healthy: false,
    });
    let before = count(now);
    // etcd's own exception (isReadyToAddVotingMember): a single started member may take a second one,
    // the only way to grow a one-member cluster, which is unavailable until the second starts either way.
    let growing_from_one = before.voters == 1 && before.healthy_voters == 1;
    if !growing_from_one {
        check_quorum(&after, what)?;
    }
    Ok(after)
}

fn promote(now: &[Seat], id: u64, what: &str) -> Result<Vec<Seat>, GateRefusal> {
    let target = find(now, id, what)?;
    if !target.is_learner {
        return Err(GateRefusal::NotALearner {
            change: what.to_string(),
            member: target.label.clone(),
        });
    }
    let target_id = target.id.clone();
    let after: Vec<Seat> = now
        .iter()
        .cloned()
        .map(|mut s| {
            if s.id == target_id {
                s.is_learner = false;
            }
            s
        })
        .collect();
    check_quorum(&after, what)?;
    Ok(after)
}

fn remove(now: &[Seat], id: u64, opts: &GateOptions, what: &str) -> Result<Vec<Seat>, GateRefusal> {
    let target = find(now, id, what)?;
    let target_id = target.id.clone();
    let after: Vec<Seat> = now.iter().filter(|s| s.id != target_id).cloned().collect();
    if target.is_learner {
        // Removing a learner changes no vote: it is how a join that never finished is cleaned up.
        return Ok(after);
    }
    refuse_learners(now, what)?;
    let c = count(&after);
    if c.voters == 0 {
        return Err(GateRefusal::LastVoter {
            change: what.to_string(),
        });
    }
    check_quorum(&after, what)?;
    if c.voters.is_multiple_of(2) && !opts.allow_even {
        let odd = c.voters - 1;
        return Err(GateRefusal::EvenCount {
            change: what.to_string(),
            voters_after: c.voters,
            tolerates: c.design_fault_tolerance(),
            odd,
            quorum_after: c.quorum,
        });
    }
    Ok(after)
}

fn find<'s>(seats: &'s [Seat], id: u64, what: &str) -> Result<&'s Seat, GateRefusal> {
    let hex = hex_id(id);
    seats
        .iter()
        .find(|s| s.id.as_deref() == Some(hex.as_str()))
        .ok_or_else(|| GateRefusal::NoSuchMember {
            change: what.to_string(),
            id: hex,
        })
}

fn refuse_learners(seats: &[Seat], what: &str) -> Result<(), GateRefusal> {
    match seats.iter().find(|s| s.is_learner) {
        Some(l) => Err(GateRefusal::LearnerPresent {
            change: what.to_string(),
            learner: l.label.clone(),
        }),
        None => Ok(()),
    }
}

fn check_quorum(after: &[Seat], what: &str) -> Result<(), GateRefusal> {
    let c = count(after);
    if c.holds() {
        return Ok(());
    }
    let down: Vec<&str> = after
        .iter()
        .filter(|s| !s.is_learner && !s.healthy)
        .map(|s| s.label.as_str())
        .collect();
    Err(GateRefusal::WouldLoseQuorum {
        change: what.to_string(),
        voters_after: c.voters,
        healthy_after: c.healthy_voters,
        quorum_after: c.quorum,
        unhealthy: if down.is_empty() {
            String::new()
        } else {
            format!(" (unhealthy: {})", down.join(", "))
        },
    })
}

/// The change in words, naming members as the report knows them.
fn describe(report: &HealthReport, change: &MembershipChange) -> String {
    let member = |id: u64| {
        let hex = hex_id(id);
        match report.members.iter().find(|m| m.id == hex) {
            Some(m) => label(m),
            None => hex,
        }
    };
    match *change {
        MembershipChange::Add { name, peer_url } => format!("add member {name} ({peer_url})"),
        MembershipChange::Promote { id } => format!("promote learner {}", member(id)),
        MembershipChange::Remove { id } => format!("remove member {}", member(id)),
        MembershipChange::Replace { id, peer_url } => {
            format!("replace member {} by {peer_url}", member(id))
        }
    }
}

fn label(m: &MemberHealth) -> String {
    if m.name.is_empty() {
        format!("(unstarted) {}", m.id)
    } else {
        format!("{} ({})", m.name, m.id)
    }
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;
