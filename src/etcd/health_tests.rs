//! Unit tests of the verdict rules on hand-made probes.

use super::*;

use crate::etcd::test_probes::*;

fn eval(endpoints: Vec<EndpointProbe>) -> HealthReport {
    evaluate(&ClusterProbe { endpoints }, &HealthOptions::default())
}

#[test]
fn all_healthy_is_ok_with_one_failure_tolerated() {
    let l = three();
    let r = eval(vec![up(&l, 1, 1), up(&l, 2, 1), up(&l, 3, 1)]);
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.reasons);
    assert_eq!((r.voters, r.healthy_voters, r.quorum), (3, 3, 2));
    assert_eq!(r.fault_tolerance, 1);
    assert_eq!(r.design_fault_tolerance, 1);
    assert_eq!(r.leader.as_deref(), Some("1"));
    assert!(r.reasons.is_empty());
}

#[test]
fn one_member_down_is_warning_with_no_tolerance_left() {
    let l = three();
    let r = eval(vec![up(&l, 1, 1), up(&l, 2, 1), down(3)]);
    assert_eq!(r.verdict, Verdict::Warning);
    assert_eq!(r.fault_tolerance, 0);
    assert_eq!(r.healthy_voters, 2);
    assert!(r.reasons[0].contains("m3 (3) is down"), "{:?}", r.reasons);
    assert!(
        r.reasons[0].contains("connection refused"),
        "{:?}",
        r.reasons
    );
    let m3 = r.members.iter().find(|m| m.id == "3").unwrap();
    assert!(!m3.healthy);
}

#[test]
fn two_members_down_is_critical() {
    let l = three();
    let mut lone = up(&l, 1, 0);
    lone.alarms = Err("no answer to alarm list within 5s".into());
    let r = eval(vec![lone, down(2), down(3)]);
    assert_eq!(r.verdict, Verdict::Critical);
    assert!(r.reasons[0].starts_with("quorum lost"), "{:?}", r.reasons);
    assert_eq!(r.fault_tolerance, 0);
    assert_eq!(r.leader, None);
    // Alarms cannot be listed without quorum; that is no extra finding.
    assert!(!r.reasons.iter().any(|m| m.contains("alarms could not")));
}

#[test]
fn even_voter_count_is_a_warning_that_says_why() {
    let l: Vec<MemberInfo> = (1..=4).map(|i| member(i, false)).collect();
    let r = eval((1..=4).map(|i| up(&l, i, 1)).collect());
    assert_eq!(r.verdict, Verdict::Warning);
    assert_eq!((r.voters, r.quorum, r.fault_tolerance), (4, 3, 1));
    let msg = r.reasons.iter().find(|m| m.contains("even")).unwrap();
    assert!(msg.contains("quorum (3 instead of 2)"), "{msg}");
}

#[test]
fn learner_is_reported_but_not_a_voter() {
    let mut l = three();
    l.push(member(4, true));
    let r = eval((1..=4).map(|i| up(&l, i, 1)).collect());
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.reasons);
    assert_eq!((r.voters, r.learners, r.quorum), (3, 1, 2));
    assert!(r.members.iter().any(|m| m.is_learner && m.id == "4"));
}

#[test]
fn nospace_alarm_is_named_and_its_echo_not_repeated() {
    let l = three();
    let mut a = up(&l, 1, 1);
    a.alarms = Ok(vec![(2, "NOSPACE".into())]);
    let mut b = up(&l, 2, 1);
    if let Ok(s) = &mut b.status {
        s.errors = vec!["memberID:2 alarm:NOSPACE ".into()];
    }
    let r = eval(vec![a, b, up(&l, 3, 1)]);
    assert_eq!(r.verdict, Verdict::Warning);
    assert_eq!(r.alarms.len(), 1);
    assert_eq!(r.alarms[0].member_name.as_deref(), Some("m2"));
    assert_eq!(r.reasons.len(), 1, "{:?}", r.reasons);
    assert!(r.reasons[0].contains("alarm NOSPACE raised by member m2 (2)"));
}

#[test]
fn nothing_reachable_is_unknown_naming_each_endpoint() {
    let r = eval(vec![down(1), down(2)]);
    assert_eq!(r.verdict, Verdict::Unknown);
    assert_eq!(r.reasons.len(), 2);
    assert!(r.reasons[0].starts_with("https://127.0.0.1:2379: connection refused"));
}

#[test]
fn disagreeing_leaders_are_critical() {
    let l = three();
    let r = eval(vec![up(&l, 1, 1), up(&l, 2, 1), up(&l, 3, 2)]);
    assert_eq!(r.verdict, Verdict::Critical);
    assert!(
        r.reasons[0].starts_with("no agreed leader"),
        "{:?}",
        r.reasons
    );
    assert_eq!(r.leader, None);
}

#[test]
fn endpoint_of_another_cluster_is_not_counted() {
    let l = three();
    let mut stranger = up(&l, 3, 1);
    if let Ok(s) = &mut stranger.status {
        s.cluster_id = 0xbad;
    }
    stranger.members = Some((0xbad, vec![member(3, false)]));
    let r = eval(vec![up(&l, 1, 1), up(&l, 2, 1), stranger]);
    assert_eq!(r.verdict, Verdict::Warning);
    assert!(r
        .reasons
        .iter()
        .any(|m| m.contains("another cluster (bad, expected c1)")));
    assert_eq!(r.healthy_voters, 2);
}

#[test]
fn db_size_near_quota_warns() {
    let l = three();
    let mut a = up(&l, 1, 1);
    if let Ok(s) = &mut a.status {
        s.db_size = 1_800_000_000;
    }
    let r = eval(vec![a, up(&l, 2, 1), up(&l, 3, 1)]);
    assert_eq!(r.verdict, Verdict::Warning);
    assert!(
        r.reasons[0].contains("% of the 2.0 GiB quota"),
        "{:?}",
        r.reasons
    );
}

#[test]
fn applied_lag_beyond_threshold_warns() {
    let l = three();
    let mut a = up(&l, 1, 1);
    if let Ok(s) = &mut a.status {
        s.applied_index = 10_000;
        s.raft_index = 10_000;
    }
    let r = eval(vec![a, up(&l, 2, 1), up(&l, 3, 1)]);
    assert_eq!(r.max_applied_lag, Some(9_900));
    assert!(r.reasons.iter().any(|m| m.contains("falling behind")));
}

#[test]
fn unstarted_member_is_explained() {
    let mut l = three();
    l.push(MemberInfo {
        id: 9,
        name: String::new(),
        peer_urls: vec!["https://127.0.0.9:2380".into()],
        client_urls: vec![],
        is_learner: false,
    });
    let r = eval(vec![up(&l, 1, 1), up(&l, 2, 1), up(&l, 3, 1)]);
    assert!(
        r.reasons.iter().any(|m| m.contains("never started")),
        "{:?}",
        r.reasons
    );
    assert_eq!(
        (r.voters, r.healthy_voters, r.quorum, r.fault_tolerance),
        (4, 3, 3, 0)
    );
}
