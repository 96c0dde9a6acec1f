//! `cpkeep cluster defrag` against real 3-member TLS clusters, etcd 3.5 and 3.4: followers first and
//! the leader last, sizes before and after; refused while a member is down.

use crate::harness::{conn_args, cpkeep, fill_delete_compact, sandbox, Etcd};

async fn defrag_followers_then_leader_and_frees_space(v: Etcd) {
    let sb = sandbox(v, 3).await;
    // Delete most of it and compact, so there are free pages for defragmentation to give back.
    fill_delete_compact(&sb, 2000, 1000).await;
    let leader = sb.members()[sb.leader().await.unwrap()].name.clone();

    let mut a: Vec<String> = ["cluster", "defrag", "-o", "json"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(conn_args(&sb, &sb.endpoints(), "5s"));
    let run = cpkeep(&a).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let j = run.json();
    let members = j["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{j}");
    // Followers first, the leader last.
    assert_eq!(members[2]["name"], leader.as_str(), "{j}");
    assert_eq!(members[2]["was_leader"], true);
    assert!(members[..2].iter().all(|m| m["was_leader"] == false));
    for m in members {
        let before = m["db_size_before"].as_i64().unwrap();
        let after = m["db_size_after"].as_i64().unwrap();
        assert!(after < before, "db size did not shrink: {m}");
        let in_use_before = m["db_size_in_use_before"].as_i64().unwrap();
        assert!(in_use_before < before, "{m}");
        let in_use_after = m["db_size_in_use_after"].as_i64().unwrap();
        // After defragmentation the file is (almost) all in use.
        assert!(after - in_use_after < before - in_use_before, "{m}");
    }
    // The table says the same in words.
    a.retain(|s| s != "-o" && s != "json");
    let run = cpkeep(&a).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with("defragmented 3 member(s)"),
        "{}",
        run.stdout
    );
    let last = run.stdout.lines().last().unwrap();
    assert!(
        last.starts_with(&leader) && last.contains("leader"),
        "{}",
        run.stdout
    );
}

async fn defrag_refused_while_a_member_is_down(v: Etcd) {
    let mut sb = sandbox(v, 3).await;
    let f = sb.follower().await.unwrap();
    let dead = sb.members()[f].name.clone();
    sb.kill(f).unwrap();
    let mut a: Vec<String> = ["cluster", "defrag"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(conn_args(&sb, &sb.endpoints(), "2s"));
    let run = cpkeep(&a).await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    let line = run.assert_one_clear_line();
    assert!(
        line.contains("refusing to defragment: every member must be healthy"),
        "{line}"
    );
    assert!(line.contains(&format!("member {dead} (")), "{line}");
}

per_version!(
    defrag_followers_then_leader_and_frees_space,
    defrag_refused_while_a_member_is_down,
);
