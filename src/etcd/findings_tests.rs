//! Unit tests of the doctor's rules on hand-made measurements: hash majority, p99 from buckets,
//! the metric thresholds, fragmentation, version skew and raft agreement.

use super::*;
use crate::etcd::test_probes::healthy_member as member;

fn three() -> Vec<MemberHealth> {
    vec![member("m1", "1"), member("m2", "2"), member("m3", "3")]
}

fn hash(member: &str, h: Option<u32>) -> MemberHash {
    MemberHash {
        member: member.into(),
        id: member.trim_start_matches('m').into(),
        hash: h,
        compact_revision: h.map(|_| 1),
        error: h
            .is_none()
            .then(|| "no answer to hash kv within 2m".to_string()),
    }
}

#[test]
fn majority_needs_more_than_half() {
    assert_eq!(hash_majority(&[7, 7, 9]), Some((7, 2)));
    assert_eq!(hash_majority(&[7, 7, 7]), Some((7, 3)));
    assert_eq!(hash_majority(&[7, 9]), None);
    assert_eq!(hash_majority(&[7, 8, 9]), None);
    assert_eq!(hash_majority(&[7]), Some((7, 1)));
    assert_eq!(hash_majority(&[]), None);
}

#[test]
fn divergent_member_is_critical_with_both_hashes() {
    let mut r = ConsistencyReport {
        revision: Some(42),
        members: vec![
            hash("m1", Some(0xaa)),
            hash("m2", Some(0xbb)),
            hash("m3", Some(0xaa)),
        ],
        attempts: 1,
        ..ConsistencyReport::default()
    };
    let f = consistency_findings(&mut r);
    assert_eq!(r.majority_hash, Some(0xaa));
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].severity, Verdict::Critical);
    assert_eq!(f[0].member.as_deref(), Some("m2"));
    assert_eq!(f[0].check, Some(Check::Consistency));
    assert!(f[0].message.contains("000000bb"), "{}", f[0].message);
    assert!(f[0].message.contains("000000aa"), "{}", f[0].message);
    assert!(f[0].message.contains("revision 42"), "{}", f[0].message);
}

#[test]
fn agreeing_hashes_raise_nothing_and_an_unhashed_member_warns() {
    let mut r = ConsistencyReport {
        revision: Some(42),
        members: vec![hash("m1", Some(1)), hash("m2", Some(1)), hash("m3", None)],
        ..ConsistencyReport::default()
    };
    let f = consistency_findings(&mut r);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].severity, Verdict::Warning);
    assert!(f[0].message.contains("m3 not checked"), "{}", f[0].message);

    let mut split = ConsistencyReport {
        revision: Some(5),
        members: vec![hash("m1", Some(1)), hash("m2", Some(2))],
        ..ConsistencyReport::default()
    };
    let f = consistency_findings(&mut split);
    assert_eq!(f[0].severity, Verdict::Critical);
    assert!(f[0].message.contains("no hash has a majority"));
}

#[test]
fn p99_interpolates_inside_the_bucket() {
    // 100 observations: 90 under 1 ms, 9 between 1 and 2 ms, 1 between 2 and 4 ms.
    let b = [
        (0.001, 90.0),
        (0.002, 99.0),
        (0.004, 100.0),
        (f64::INFINITY, 100.0),
    ];
    let p = quantile(0.99, &b).unwrap();
    assert!((p - 0.002).abs() < 1e-9, "{p}");
    let p50 = quantile(0.5, &b).unwrap();
    assert!((p50 - 0.001 * 50.0 / 90.0).abs() < 1e-9, "{p50}");
    // Order does not matter; no observation gives nothing.
    let mut rev = b;
    rev.reverse();
    assert_eq!(quantile(0.99, &rev), quantile(0.99, &b));
    assert_eq!(quantile(0.99, &[(1.0, 0.0), (f64::INFINITY, 0.0)]), None);
    assert_eq!(quantile(0.99, &[]), None);
}

#[test]
fn p99_in_the_infinite_bucket_is_the_last_finite_bound() {
    let b = [(0.5, 10.0), (1.0, 20.0), (f64::INFINITY, 100.0)];
    assert_eq!(quantile(0.99, &b), Some(1.0));
}

fn metrics(wal: f64, commit: f64, leader_changes: u64, failed: u64) -> MemberMetrics {
    MemberMetrics {
        member: Some("m1".into()),
        url: "http://127.0.0.1:2381/metrics".into(),
        wal_fsync_p99_seconds: Some(wal),
        backend_commit_p99_seconds: Some(commit),
        peer_round_trip_p99_seconds: Some(0.001),
        leader_changes: Some(leader_changes),
        proposals_failed: Some(failed),
        ..MemberMetrics::default()
    }
}

#[test]
fn metric_thresholds() {
    let t = MetricThresholds::default();
    assert!(metrics_findings(&[metrics(0.01, 0.02, 1, 0)], &t).is_empty());
    let f = metrics_findings(&[metrics(0.7, 0.02, 1, 0)], &t);
    assert_eq!(f[0].severity, Verdict::Warning);
    assert!(
        f[0].message.contains("WAL fsync p99 is 700 ms"),
        "{}",
        f[0].message
    );
    let f = metrics_findings(&[metrics(1.5, 0.3, 4, 2)], &t);
    let sev: Vec<Verdict> = f.iter().map(|f| f.severity).collect();
    assert_eq!(
        sev,
        [
            Verdict::Critical,
            Verdict::Warning,
            Verdict::Warning,
            Verdict::Warning
        ],
        "{f:?}"
    );
    assert!(
        f[2].message.contains("4 leader changes"),
        "{}",
        f[2].message
    );
    assert!(
        f[3].message.contains("2 failed proposal"),
        "{}",
        f[3].message
    );
}

#[test]
fn unreadable_metrics_warn_only_when_the_url_was_given() {
    let t = MetricThresholds::default();
    let mut m = MemberMetrics {
        member: Some("m1".into()),
        url: "http://127.0.0.1:2381/metrics".into(),
        guessed: true,
        error: Some("connection refused".into()),
        ..MemberMetrics::default()
    };
    let f = metrics_findings(std::slice::from_ref(&m), &t);
    assert!(f[0].is_info());
    m.guessed = false;
    let f = metrics_findings(&[m], &t);
    assert_eq!(f[0].severity, Verdict::Warning);
    assert!(f[0].message.contains("could not be read"));
}

#[test]
fn fragmentation_over_the_minimum_size_warns() {
    let mut l = three();
    l[0].db_size = Some(300 << 20);
    l[0].db_size_in_use = Some(100 << 20);
    l[1].db_size = Some(50 << 20);
    l[1].db_size_in_use = Some(1 << 20);
    let (entries, f) = fragmentation(&l, &FragmentationOptions::default());
    assert_eq!(entries.len(), 3);
    assert!(entries[0].fragmented);
    // Small databases are never judged, however empty.
    assert!(!entries[1].fragmented);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].member.as_deref(), Some("m1"));
    assert!(
        f[0].message.contains("cpkeep cluster defrag"),
        "{}",
        f[0].message
    );
    assert!(f[0].message.contains("33%"), "{}", f[0].message);
    // A member that reports no in-use size is left out.
    l[2].db_size_in_use = Some(0);
    assert_eq!(
        fragmentation(&l, &FragmentationOptions::default()).0.len(),
        2
    );
}

#[test]
fn version_skew_warns_unless_upgrading() {
    let mut l = three();
    l[2].version = Some("3.4.37".into());
    let (skew, f) = version_skew(&l, false);
    assert!(skew.skewed);
    assert_eq!(skew.minor_versions, ["3.4", "3.5"]);
    assert_eq!(f[0].severity, Verdict::Warning);
    assert!(
        f[0].message.contains("3.4 on m3; 3.5 on m1, m2"),
        "{}",
        f[0].message
    );
    let (_, f) = version_skew(&l, true);
    assert!(f[0].is_info());
    // Patch releases of one minor are no skew.
    l[2].version = Some("3.5.21".into());
    let (skew, f) = version_skew(&l, false);
    assert!(!skew.skewed && f.is_empty());
    assert_eq!(minor_of("3.5.30"), "3.5");
    assert_eq!(minor_of("v3.6.0-rc.1"), "3.6");
    assert_eq!(minor_of("odd"), "odd");
}

#[test]
fn raft_terms_and_unfollowed_leaders() {
    let l = three();
    let (r, f) = raft_agreement(&l);
    assert!(f.is_empty());
    assert_eq!(r.agreed_term, Some(2));

    let mut split = three();
    split[2].raft_term = Some(5);
    split[2].leader = Some("3".into());
    let (r, f) = raft_agreement(&split);
    assert_eq!(r.agreed_term, None);
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(f[0].severity, Verdict::Warning);
    assert!(
        f[0].message.contains("term 2: m1, m2; term 5: m3"),
        "{}",
        f[0].message
    );
    assert_eq!(f[1].severity, Verdict::Critical);
    assert!(
        f[1].message.contains("member m3 says it leads"),
        "{}",
        f[1].message
    );
    assert_eq!(r.unfollowed_leaders, ["m3"]);
}
