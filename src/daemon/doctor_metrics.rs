//! The health job's doctor series (docs/METRICS.md, "etcd doctor"): data consistency, per-member
//! fragmentation and disk latencies from each member's own metrics, version skew, and the
//! certificates members really serve. Per-member families are replaced whole at each run, so a
//! removed member or a metrics URL that stopped answering leaves no stale series. The consistency
//! series change only when a run checked consistency (its own schedule). Never measures anything
//! itself: it is handed a [`DoctorReport`].

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::etcd::DoctorReport;

type F64Gauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabel {
    cluster_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemberLabel {
    cluster_id: String,
    member: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServedLabel {
    cluster_id: String,
    member: String,
    /// `client` or `peer`.
    kind: String,
}

pub struct DoctorSeries {
    divergent: Family<ClusterLabel, Gauge>,
    unchecked: Family<ClusterLabel, Gauge>,
    consistency_checked: Family<ClusterLabel, F64Gauge>,
    skew: Family<ClusterLabel, Gauge>,
    db_size: Family<MemberLabel, Gauge>,
    in_use_ratio: Family<MemberLabel, F64Gauge>,
    metrics_up: Family<MemberLabel, Gauge>,
    fsync_p99: Family<MemberLabel, F64Gauge>,
    commit_p99: Family<MemberLabel, F64Gauge>,
    peer_rtt_p99: Family<MemberLabel, F64Gauge>,
    member_leader_changes: Family<MemberLabel, Gauge>,
    proposals_failed: Family<MemberLabel, Gauge>,
    served_not_after: Family<ServedLabel, Gauge>,
    served_matches_disk: Family<ServedLabel, Gauge>,
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl DoctorSeries {
    pub fn register(r: &mut Registry) -> Self {
        let s = DoctorSeries {
            divergent: Family::default(),
            unchecked: Family::default(),
            consistency_checked: Family::default(),
            skew: Family::default(),
            db_size: Family::default(),
            in_use_ratio: Family::default(),
            metrics_up: Family::default(),
            fsync_p99: Family::default(),
            commit_p99: Family::default(),
            peer_rtt_p99: Family::default(),
            member_leader_changes: Family::default(),
            proposals_failed: Family::default(),
            served_not_after: Family::default(),
            served_matches_disk: Family::default(),
        };
        r.register(
            "cpkeep_etcd_consistency_divergent_members",
            "Members whose HashKV at the common revision differs from the majority's (all hashed members when no hash has a majority), at the last consistency check",
            s.divergent.clone(),
        );
        r.register(
            "cpkeep_etcd_consistency_unchecked_members",
            "Voters the last consistency check could not hash",
            s.unchecked.clone(),
        );
        r.register(
            "cpkeep_etcd_consistency_last_check_timestamp_seconds",
            "Unix time of the last consistency check",
            s.consistency_checked.clone(),
        );
        r.register(
            "cpkeep_etcd_version_skew",
            "1 when members run different etcd minor versions, else 0",
            s.skew.clone(),
        );
        r.register(
            "cpkeep_etcd_member_db_size_bytes",
            "The member's backend size",
            s.db_size.clone(),
        );
        r.register(
            "cpkeep_etcd_member_db_in_use_ratio",
            "The member's size in use over its backend size (below 0.5 on a large db: fragmented)",
            s.in_use_ratio.clone(),
        );
        r.register(
            "cpkeep_etcd_member_metrics_up",
            "1 when the member's own /metrics could be read, else 0",
            s.metrics_up.clone(),
        );
        r.register(
            "cpkeep_etcd_member_wal_fsync_p99_seconds",
            "p99 of the member's WAL fsync duration since it started",
            s.fsync_p99.clone(),
        );
        r.register(
            "cpkeep_etcd_member_backend_commit_p99_seconds",
            "p99 of the member's backend commit duration since it started",
            s.commit_p99.clone(),
        );
        r.register(
            "cpkeep_etcd_member_peer_round_trip_p99_seconds",
            "p99 of the member's peer round-trip time since it started",
            s.peer_rtt_p99.clone(),
        );
        r.register(
            "cpkeep_etcd_member_leader_changes",
            "Leader changes the member has seen since it started (etcd_server_leader_changes_seen_total)",
            s.member_leader_changes.clone(),
        );
        r.register(
            "cpkeep_etcd_member_proposals_failed",
            "Failed proposals since the member started (etcd_server_proposals_failed_total)",
            s.proposals_failed.clone(),
        );
        r.register(
            "cpkeep_etcd_served_cert_not_after_timestamp_seconds",
            "NotAfter of the certificate the member serves on its client or peer URL",
            s.served_not_after.clone(),
        );
        r.register(
            "cpkeep_etcd_served_cert_matches_disk",
            "1 when the served certificate is the one on this node's disk, 0 when it differs (the member was not restarted after a renewal)",
            s.served_matches_disk.clone(),
        );
        s
    }

    /// One health run's doctor measurements; `checked_at` is the run's end, unix seconds.
    pub fn update(&self, cluster_id: &str, d: &DoctorReport, checked_at: f64) {
        let cluster = ClusterLabel {
            cluster_id: cluster_id.to_string(),
        };
        let member = |m: &str| MemberLabel {
            cluster_id: cluster_id.to_string(),
            member: m.to_string(),
        };
        if let Some(c) = d.consistency.as_ref().filter(|c| c.error.is_none()) {
            let hashed: Vec<u32> = c.members.iter().filter_map(|m| m.hash).collect();
            let divergent = match c.majority_hash {
                Some(good) => hashed.iter().filter(|h| **h != good).count(),
                None if hashed.len() > 1 => hashed.len(),
                None => 0,
            };
            let unchecked = c.members.iter().filter(|m| m.hash.is_none()).count();
            self.divergent
                .get_or_create(&cluster)
                .set(int(divergent as u64));
            self.unchecked
                .get_or_create(&cluster)
                .set(int(unchecked as u64));
            self.consistency_checked
                .get_or_create(&cluster)
                .set(checked_at);
        }
        self.skew
            .get_or_create(&cluster)
            .set(i64::from(d.version_skew.skewed));

        self.db_size.clear();
        self.in_use_ratio.clear();
        for f in &d.fragmentation {
            self.db_size
                .get_or_create(&member(&f.member))
                .set(int(f.db_size));
            self.in_use_ratio
                .get_or_create(&member(&f.member))
                .set(f.in_use_ratio);
        }

        for family in [&self.fsync_p99, &self.commit_p99, &self.peer_rtt_p99] {
            family.clear();
        }
        self.metrics_up.clear();
        self.member_leader_changes.clear();
        self.proposals_failed.clear();
        for m in &d.metrics {
            let l = member(m.member.as_deref().unwrap_or(&m.url));
            self.metrics_up
                .get_or_create(&l)
                .set(i64::from(m.error.is_none()));
            for (family, value) in [
                (&self.fsync_p99, m.wal_fsync_p99_seconds),
                (&self.commit_p99, m.backend_commit_p99_seconds),
                (&self.peer_rtt_p99, m.peer_round_trip_p99_seconds),
            ] {
                if let Some(v) = value {
                    family.get_or_create(&l).set(v);
                }
            }
            if let Some(n) = m.leader_changes {
                self.member_leader_changes.get_or_create(&l).set(int(n));
            }
            if let Some(n) = m.proposals_failed {
                self.proposals_failed.get_or_create(&l).set(int(n));
            }
        }

        self.served_not_after.clear();
        self.served_matches_disk.clear();
        for s in &d.served_certs {
            let l = ServedLabel {
                cluster_id: cluster_id.to_string(),
                member: s.member.clone(),
                kind: s.kind.to_string(),
            };
            if let Some(t) = s.not_after {
                self.served_not_after.get_or_create(&l).set(t.timestamp());
            }
            if let Some(same) = s.matches_disk {
                self.served_matches_disk
                    .get_or_create(&l)
                    .set(i64::from(same));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcd::{ConsistencyReport, FragmentationEntry, MemberHash, MemberMetrics};

    fn encode(r: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, r).unwrap();
        out
    }

    fn hash(member: &str, h: u32) -> MemberHash {
        MemberHash {
            member: member.to_string(),
            id: member.to_string(),
            hash: Some(h),
            compact_revision: None,
            error: None,
        }
    }

    #[test]
    fn a_divergent_member_is_counted_and_stale_members_disappear() {
        let mut r = Registry::default();
        let s = DoctorSeries::register(&mut r);
        let mut d = DoctorReport {
            consistency: Some(ConsistencyReport {
                revision: Some(10),
                majority_hash: Some(7),
                attempts: 1,
                members: vec![hash("m1", 7), hash("m2", 7), hash("m3", 9)],
                ..ConsistencyReport::default()
            }),
            fragmentation: vec![FragmentationEntry {
                member: "m4".to_string(),
                db_size: 400,
                db_size_in_use: 100,
                in_use_ratio: 0.25,
                fragmented: true,
            }],
            metrics: vec![MemberMetrics {
                member: Some("m1".to_string()),
                url: "http://127.0.0.1:2381/metrics".to_string(),
                wal_fsync_p99_seconds: Some(0.75),
                leader_changes: Some(2),
                ..MemberMetrics::default()
            }],
            ..DoctorReport::default()
        };
        s.update("c1", &d, 1_700_000_000.0);
        let text = encode(&r);
        for line in [
            "cpkeep_etcd_consistency_divergent_members{cluster_id=\"c1\"} 1",
            "cpkeep_etcd_consistency_unchecked_members{cluster_id=\"c1\"} 0",
            "cpkeep_etcd_consistency_last_check_timestamp_seconds{cluster_id=\"c1\"} 1700000000.0",
            "cpkeep_etcd_member_db_in_use_ratio{cluster_id=\"c1\",member=\"m4\"} 0.25",
            "cpkeep_etcd_member_wal_fsync_p99_seconds{cluster_id=\"c1\",member=\"m1\"} 0.75",
            "cpkeep_etcd_member_metrics_up{cluster_id=\"c1\",member=\"m1\"} 1",
            "cpkeep_etcd_member_leader_changes{cluster_id=\"c1\",member=\"m1\"} 2",
            "cpkeep_etcd_version_skew{cluster_id=\"c1\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        // A run without a consistency check keeps the last result; m4 is gone.
        d.consistency = None;
        d.fragmentation.clear();
        s.update("c1", &d, 1_700_000_060.0);
        let text = encode(&r);
        assert!(text.contains("cpkeep_etcd_consistency_divergent_members{cluster_id=\"c1\"} 1"));
        assert!(text.contains("1700000000.0"), "{text}");
        assert!(!text.contains("m4"), "{text}");
    }
}
