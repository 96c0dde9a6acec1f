//! `cpkeep cluster health` against real clusters, each scenario on etcd 3.5 and 3.4.

use std::time::Duration;

use etcd_client::PutOptions;

use crate::harness::{conn_args, cpkeep, health, reasons, sandbox, sandbox_with, Etcd};

async fn all_healthy_is_ok(v: Etcd) {
    let sb = sandbox(v, 3).await;
    let run = health(&sb, "2s", &[]).await;
    let j = run.json();
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(j["verdict"], "OK");
    assert_eq!(j["voters"], 3);
    assert_eq!(j["healthy_voters"], 3);
    assert_eq!(j["quorum"], 2);
    assert_eq!(j["fault_tolerance"], 1);
    assert_eq!(j["learners"], 0);
    assert!(j["leader"].is_string(), "{j}");
    assert!(j["alarms"].as_array().unwrap().is_empty());
    let members = j["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    for m in members {
        assert_eq!(m["healthy"], true);
        assert!(
            m["version"].as_str().unwrap().starts_with(v.prefix()),
            "{m}"
        );
        assert!(m["db_size"].as_i64().unwrap() > 0);
        assert!(m["raft_index"].as_u64().unwrap() > 0);
        assert!(m["applied_index"].as_u64().unwrap() > 0);
        assert_eq!(m["is_learner"], false);
        assert!(m["error"].is_null());
        assert_eq!(m["peer_urls"].as_array().unwrap().len(), 1);
        assert!(m["client_urls"][0]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0."));
    }
    // The same cluster, judged from one endpoint: the other members are found and asked.
    let one = vec![sb.endpoints()[0].clone()];
    let mut args: Vec<String> = vec![
        "cluster".into(),
        "health".into(),
        "-o".into(),
        "json".into(),
    ];
    args.extend(conn_args(&sb, &one, "2s"));
    let run = cpkeep(&args).await;
    assert_eq!(run.json()["healthy_voters"], 3, "{}", run.stdout);
    // And without discovery only one member answers: the others are reported as not reached.
    args.push("--no-discover".into());
    let run = cpkeep(&args).await;
    let j = run.json();
    assert_eq!(j["healthy_voters"], 1, "{}", run.stdout);
    assert_eq!(j["verdict"], "CRITICAL");
}

async fn one_member_killed_is_warning_within_timeout(v: Etcd) {
    let mut sb = sandbox(v, 3).await;
    let f = sb.follower().await.unwrap();
    let dead = sb.members()[f].name.clone();
    sb.kill(f).unwrap();
    let run = health(&sb, "2s", &[]).await;
    let j = run.json();
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(j["verdict"], "WARNING");
    assert_eq!(j["fault_tolerance"], 0);
    assert_eq!(j["healthy_voters"], 2);
    assert!(
        reasons(&j).contains(&format!("member {dead} (")),
        "{}",
        reasons(&j)
    );
    assert!(
        reasons(&j).contains("Connection refused"),
        "{}",
        reasons(&j)
    );
    assert!(
        run.elapsed < Duration::from_secs(3),
        "took {:?}",
        run.elapsed
    );
    let m = j["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == dead.as_str())
        .unwrap();
    assert_eq!(m["healthy"], false);
    assert!(m["error"].as_str().unwrap().contains("Connection refused"));
}

async fn two_members_killed_is_critical(v: Etcd) {
    let mut sb = sandbox(v, 3).await;
    sb.kill(1).unwrap();
    sb.kill(2).unwrap();
    let run = health(&sb, "2s", &[]).await;
    let j = run.json();
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert_eq!(j["verdict"], "CRITICAL");
    assert!(
        reasons(&j).contains("quorum lost: 1 of 3"),
        "{}",
        reasons(&j)
    );
    assert_eq!(j["fault_tolerance"], 0);
    assert!(
        run.elapsed < Duration::from_secs(4),
        "took {:?}",
        run.elapsed
    );
}

async fn fourth_member_makes_an_even_count(v: Etcd) {
    let mut sb = sandbox(v, 3).await;
    sb.add_member(false).await.unwrap();
    let run = health(&sb, "2s", &[]).await;
    let j = run.json();
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(j["verdict"], "WARNING");
    assert_eq!(j["voters"], 4);
    assert_eq!(j["quorum"], 3);
    assert_eq!(j["healthy_voters"], 4);
    let r = reasons(&j);
    assert!(r.contains("4 voting members is an even count"), "{r}");
    assert!(r.contains("no more than 3 members would"), "{r}");
}

async fn learner_is_reported_not_counted(v: Etcd) {
    let mut sb = sandbox(v, 3).await;
    sb.add_member(true).await.unwrap();
    let run = health(&sb, "2s", &[]).await;
    let j = run.json();
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(j["voters"], 3);
    assert_eq!(j["learners"], 1);
    assert_eq!(j["quorum"], 2);
    let learners: Vec<_> = j["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["is_learner"] == true)
        .collect();
    assert_eq!(learners.len(), 1);
    assert_eq!(learners[0]["name"], "m4");
}

async fn nospace_alarm_is_a_warning_naming_it(v: Etcd) {
    let quota: u64 = 2 * 1024 * 1024;
    let sb = sandbox_with(v, 1, |o| o.quota_bytes = Some(quota)).await;
    let conn = sb.connection(Duration::from_secs(5)).unwrap();
    let mut client = cpkeep::etcd::connect(&conn.endpoints[0], &conn)
        .await
        .unwrap();
    let value = vec![b'x'; 100 * 1024];
    let mut filled = false;
    for i in 0..200 {
        match client
            .put(
                format!("/registry/fill/{i}"),
                value.clone(),
                None::<PutOptions>,
            )
            .await
        {
            Ok(_) => {}
            Err(e) => {
                assert!(e.to_string().contains("database space exceeded"), "{e}");
                filled = true;
                break;
            }
        }
    }
    assert!(filled, "quota of {quota} bytes never filled");
    let q = quota.to_string();
    let run = health(&sb, "2s", &["--quota-bytes", &q]).await;
    let j = run.json();
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(j["verdict"], "WARNING");
    assert_eq!(j["alarms"][0]["alarm"], "NOSPACE");
    assert_eq!(j["alarms"][0]["member_name"], "m1");
    assert!(
        reasons(&j).contains("alarm NOSPACE raised by member m1"),
        "{}",
        reasons(&j)
    );
}

async fn paused_member_does_not_hang_the_check(v: Etcd) {
    let sb = sandbox(v, 3).await;
    let f = sb.follower().await.unwrap();
    sb.pause(f).unwrap();
    let run = health(&sb, "2s", &[]).await;
    sb.resume(f).unwrap();
    let j = run.json();
    assert!(
        run.elapsed < Duration::from_secs(3),
        "took {:?}",
        run.elapsed
    );
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(j["verdict"], "WARNING");
    assert_eq!(j["healthy_voters"], 2);
    assert!(reasons(&j).contains("no answer"), "{}", reasons(&j));
}

async fn plain_http_single_member(v: Etcd) {
    let sb = sandbox_with(v, 1, |o| o.tls = false).await;
    let run = health(&sb, "2s", &[]).await;
    let j = run.json();
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(j["voters"], 1);
    assert_eq!(j["quorum"], 1);
    assert_eq!(j["fault_tolerance"], 0);
    assert_eq!(j["design_fault_tolerance"], 0);
    assert!(j["members"][0]["client_urls"][0]
        .as_str()
        .unwrap()
        .starts_with("http://"));
}

async fn members_lists_voters_and_learners(v: Etcd) {
    let mut sb = sandbox(v, 3).await;
    sb.add_member(true).await.unwrap();
    let mut args: Vec<String> = vec![
        "cluster".into(),
        "members".into(),
        "-o".into(),
        "json".into(),
    ];
    args.extend(conn_args(&sb, &sb.endpoints(), "2s"));
    let run = cpkeep(&args).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    let list = j["members"].as_array().unwrap();
    assert_eq!(list.len(), 4);
    assert_eq!(list.iter().filter(|m| m["is_learner"] == true).count(), 1);
    // The table names every member and its role.
    let table_args: Vec<String> = args
        .iter()
        .filter(|a| *a != "-o" && *a != "json")
        .cloned()
        .collect();
    let run = cpkeep(&table_args).await;
    assert!(run.stdout.starts_with("ID "), "{}", run.stdout);
    for name in ["m1", "m2", "m3", "m4"] {
        assert!(run.stdout.contains(name), "{}", run.stdout);
    }
    assert!(run.stdout.contains("learner"));
}

per_version!(
    all_healthy_is_ok,
    one_member_killed_is_warning_within_timeout,
    two_members_killed_is_critical,
    fourth_member_makes_an_even_count,
    learner_is_reported_not_counted,
    nospace_alarm_is_a_warning_naming_it,
    paused_member_does_not_hang_the_check,
    plain_http_single_member,
    members_lists_voters_and_learners,
);
