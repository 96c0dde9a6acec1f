//! The gate's rules on hand-made reports, built by the same `evaluate` as `cluster health`.

use super::*;
use crate::etcd::test_probes::*;
use crate::etcd::{evaluate, ClusterProbe, EndpointProbe, HealthOptions, MemberInfo};

fn report(endpoints: Vec<EndpointProbe>) -> HealthReport {
    evaluate(&ClusterProbe { endpoints }, &HealthOptions::default())
}

fn healthy(n: u64) -> HealthReport {
    let l: Vec<MemberInfo> = (1..=n).map(|i| member(i, false)).collect();
    report((1..=n).map(|i| up(&l, i, 1)).collect())
}

fn strict() -> GateOptions {
    GateOptions::default()
}

const NEW: &str = "https://127.0.0.9:2380";

#[test]
fn adding_to_a_healthy_three_counts_the_new_member_unhealthy() {
    let v = quorum_gate(
        &healthy(3),
        &MembershipChange::Add {
            name: "m9",
            peer_url: NEW,
        },
        &strict(),
    )
    .unwrap();
    assert_eq!(
        (v.voters_now, v.healthy_voters_now, v.quorum_now),
        (3, 3, 2)
    );
    assert_eq!(
        (v.voters_after, v.healthy_voters_after, v.quorum_after),
        (4, 3, 3)
    );
    assert_eq!(v.fault_tolerance_after, 0);
    assert_eq!(v.change, "add member m9 (https://127.0.0.9:2380)");
}

#[test]
fn adding_while_a_member_is_down_would_lose_quorum() {
    let l = three();
    let r = report(vec![up(&l, 1, 1), up(&l, 2, 1), down(3)]);
    let e = quorum_gate(
        &r,
        &MembershipChange::Add {
            name: "m9",
            peer_url: NEW,
        },
        &strict(),
    )
    .unwrap_err();
    assert_eq!(e.class(), FailureClass::Refused);
    assert_eq!(
        e.to_string(),
        "refusing to add member m9 (https://127.0.0.9:2380): it would lose quorum: 2 of 4 voting members \
         would be healthy and 3 are needed (unhealthy: m3 (3), the new member)"
    );
}

#[test]
fn a_learner_present_refuses_naming_it() {
    let mut l = three();
    l.push(member(4, true));
    let r = report((1..=4).map(|i| up(&l, i, 1)).collect());
    for change in [
        MembershipChange::Add {
            name: "m9",
            peer_url: NEW,
        },
        MembershipChange::Remove { id: 2 },
        MembershipChange::Replace {
            id: 2,
            peer_url: NEW,
        },
    ] {
        let e = quorum_gate(&r, &change, &strict()).unwrap_err();
        assert!(
            matches!(&e, GateRefusal::LearnerPresent { learner, .. } if learner == "m4 (4)"),
            "{e}"
        );
        assert!(e
            .to_string()
            .contains("learner m4 (4) is already in the cluster"));
    }
    // Removing the learner itself is how a failed join is cleaned up; promoting it is allowed too.
    let v = quorum_gate(&r, &MembershipChange::Remove { id: 4 }, &strict()).unwrap();
    assert_eq!((v.voters_after, v.healthy_voters_after), (3, 3));
    let v = quorum_gate(&r, &MembershipChange::Promote { id: 4 }, &strict()).unwrap();
    assert_eq!(
        (v.voters_after, v.healthy_voters_after, v.quorum_after),
        (4, 4, 3)
    );
}

#[test]
fn a_peer_url_or_name_in_use_refuses_naming_the_member() {
    let e = quorum_gate(
        &healthy(3),
        &MembershipChange::Add {
            name: "m9",
            peer_url: "https://127.0.0.2:2380/",
        },
        &strict(),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .ends_with("member m2 (2) already has peer URL https://127.0.0.2:2380/"),
        "{e}"
    );
    let e = quorum_gate(
        &healthy(3),
        &MembershipChange::Add {
            name: "m3",
            peer_url: NEW,
        },
        &strict(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("member m3 (3) already has the name"),
        "{e}"
    );
}

#[test]
fn removing_a_healthy_member_while_another_is_down_would_lose_quorum() {
    let l = three();
    let r = report(vec![up(&l, 1, 1), up(&l, 2, 1), down(3)]);
    let e = quorum_gate(&r, &MembershipChange::Remove { id: 1 }, &strict()).unwrap_err();
    assert!(
        e.to_string().starts_with(
            "refusing to remove member m1 (1): it would lose quorum: 1 of 2 voting members would be healthy and 2 are needed"
        ),
        "{e}"
    );
    // --force does not override quorum.
    let forced = GateOptions { allow_even: true };
    assert!(quorum_gate(&r, &MembershipChange::Remove { id: 1 }, &forced).is_err());
    // Removing the dead one keeps quorum (2 of 2), but leaves an even count.
    let e = quorum_gate(&r, &MembershipChange::Remove { id: 3 }, &strict()).unwrap_err();
    assert!(
        matches!(
            e,
            GateRefusal::EvenCount {
                voters_after: 2,
                ..
            }
        ),
        "{e}"
    );
    let v = quorum_gate(&r, &MembershipChange::Remove { id: 3 }, &forced).unwrap();
    assert_eq!(
        (v.voters_after, v.healthy_voters_after, v.quorum_after),
        (2, 2, 2)
    );
}

#[test]
fn an_even_count_after_removal_says_why_and_force_allows_it() {
    let e = quorum_gate(&healthy(3), &MembershipChange::Remove { id: 3 }, &strict()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "refusing to remove member m3 (3): it would leave 2 voting members, an even count, which tolerates \
         0 failure(s) like 1 members would while needing a quorum of 2; pass --force to do it anyway"
    );
    let v = quorum_gate(
        &healthy(3),
        &MembershipChange::Remove { id: 3 },
        &GateOptions { allow_even: true },
    )
    .unwrap();
    assert_eq!(v.fault_tolerance_after, 0);
    // From four to three needs no force.
    let v = quorum_gate(&healthy(4), &MembershipChange::Remove { id: 4 }, &strict()).unwrap();
    assert_eq!(
        (v.voters_after, v.quorum_after, v.fault_tolerance_after),
        (3, 2, 1)
    );
}

#[test]
fn the_last_voter_and_unknown_members_are_refused() {
    let e = quorum_gate(
        &healthy(1),
        &MembershipChange::Remove { id: 1 },
        &GateOptions { allow_even: true },
    )
    .unwrap_err();
    assert!(
        e.to_string().ends_with("it is the last voting member"),
        "{e}"
    );
    let e = quorum_gate(
        &healthy(3),
        &MembershipChange::Remove { id: 0xab },
        &strict(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "refusing to remove member ab: no member has ID ab"
    );
    let e = quorum_gate(&healthy(3), &MembershipChange::Promote { id: 2 }, &strict()).unwrap_err();
    assert!(e.to_string().ends_with("m2 (2) is not a learner"), "{e}");
}

#[test]
fn a_single_member_may_take_a_second_as_etcd_allows() {
    let v = quorum_gate(
        &healthy(1),
        &MembershipChange::Add {
            name: "m9",
            peer_url: NEW,
        },
        &strict(),
    )
    .unwrap();
    assert_eq!(
        (v.voters_after, v.healthy_voters_after, v.quorum_after),
        (2, 1, 2)
    );
}

#[test]
fn replace_checks_the_removal_then_the_addition() {
    // A dead member replaced in place (same peer URL): remove leaves 2 of 2, add 2 of 3.
    let l = three();
    let r = report(vec![up(&l, 1, 1), up(&l, 2, 1), down(3)]);
    let v = quorum_gate(
        &r,
        &MembershipChange::Replace {
            id: 3,
            peer_url: "https://127.0.0.3:2380",
        },
        &strict(),
    )
    .unwrap();
    assert_eq!(
        (v.voters_after, v.healthy_voters_after, v.quorum_after),
        (3, 2, 2)
    );
    // Replacing a healthy member while another is down cannot be afforded.
    let e = quorum_gate(
        &r,
        &MembershipChange::Replace {
            id: 1,
            peer_url: NEW,
        },
        &strict(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("would lose quorum"), "{e}");
}

#[test]
fn nothing_answering_refuses_with_the_causes() {
    let r = report(vec![down(1), down(2)]);
    let e = quorum_gate(&r, &MembershipChange::Remove { id: 1 }, &strict()).unwrap_err();
    assert!(e.to_string().starts_with("refusing to remove member 1: the membership is unknown (https://127.0.0.1:2379: connection refused"), "{e}");
}
