//! `cpkeep cluster member add|promote|remove|replace` against real 3-member TLS clusters, each scenario
//! on etcd 3.5 and 3.4: a learner added, started by a real etcd process with the `--initial-cluster`
//! line cpkeep printed, promoted; and the quorum gate's refusals, each one clear line with exit 2.

use std::process::Stdio;
use std::time::{Duration, Instant};

use cpkeep::sandbox::Sandbox;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::harness::{conn_args, cpkeep, sandbox, Etcd, Run};

/// `cpkeep cluster <args> -o json` against the given endpoints of the sandbox.
async fn cluster(sb: &Sandbox, endpoints: &[String], args: &[&str]) -> Run {
    let mut a: Vec<String> = vec!["cluster".into()];
    a.extend(args.iter().map(|s| s.to_string()));
    a.extend(["-o".into(), "json".into()]);
    a.extend(conn_args(sb, endpoints, "2s"));
    cpkeep(&a).await
}

/// The client URLs of the members still in the cluster (not `gone`).
fn endpoints_but(sb: &Sandbox, gone: &[usize]) -> Vec<String> {
    sb.members()
        .iter()
        .enumerate()
        .filter(|(i, _)| !gone.contains(i))
        .map(|(_, m)| m.client_url(true))
        .collect()
}

/// `cluster health -o json` as seen through `endpoints`.
async fn health_json(sb: &Sandbox, endpoints: &[String]) -> serde_json::Value {
    cluster(sb, endpoints, &["health"]).await.json()
}

/// The `--initial-cluster=` value of a line of flags.
fn initial_cluster_of(line: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("--initial-cluster="))
        .unwrap_or_else(|| panic!("no --initial-cluster in {line:?}"))
        .to_string()
}

async fn add_learner_start_it_and_promote(v: Etcd) {
    let mut sb = sandbox(v, 3).await;
    let all = sb.endpoints();
    let idx = sb.prepare_joining().unwrap();
    let peer = sb.members()[idx].peer_url(true);
    let run = cluster(
        &sb,
        &all,
        &["member", "add", "m4", "--peer-urls", &peer, "--no-wait"],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let j = run.json();
    let added = &j["added"];
    assert_eq!(added["name"], "m4");
    assert_eq!(added["initial_cluster_state"], "existing");
    let initial = added["initial_cluster"].as_str().unwrap().to_string();
    assert_eq!(initial.split(',').count(), 4, "{initial}");
    assert!(initial.contains(&format!("m4={peer}")), "{initial}");
    for m in &sb.members()[..3] {
        assert!(initial.contains(&format!("{}={}", m.name, m.peer_url(true))));
    }
    assert_eq!(added["gate"]["voters_after"], 4);
    assert_eq!(added["gate"]["healthy_voters_after"], 3);
    assert!(j["promoted"].is_null());

    // A real etcd started with the printed line joins as a learner.
    sb.start_joining(idx, &initial).await.unwrap();
    let h = health_json(&sb, &all).await;
    assert_eq!(
        (h["voters"].as_u64(), h["learners"].as_u64()),
        (Some(3), Some(1)),
        "{h}"
    );

    // While the learner is there, the gate refuses any other change, naming it.
    let other = "https://127.0.0.9:2380";
    let run = cluster(&sb, &all, &["member", "add", "m9", "--peer-urls", other]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let line = run.assert_one_clear_line();
    assert!(line.contains("learner m4 ("), "{line}");
    assert!(line.contains("already in the cluster"), "{line}");
    let run = cluster(&sb, &all, &["member", "remove", "m1", "--force"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.assert_one_clear_line().contains("learner m4 ("));

    // Promote by name; etcd refuses until the learner is in sync, cpkeep retries within the deadline.
    let run = cluster(
        &sb,
        &all,
        &["member", "promote", "m4", "--wait-timeout", "60s"],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let p = run.json();
    assert_eq!(p["name"], "m4");
    assert_eq!(p["gate"]["voters_after"], 4);
    let h = health_json(&sb, &sb.endpoints()).await;
    assert_eq!(
        (h["voters"].as_u64(), h["learners"].as_u64()),
        (Some(4), Some(0)),
        "{h}"
    );
    assert_eq!(h["healthy_voters"], 4, "{h}");

    // Promoting a voter is refused.
    let run = cluster(&sb, &all, &["member", "promote", "m4"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.assert_one_clear_line().contains("m4 ("));
}

async fn remove_refusals_then_forced_removal(v: Etcd) {
    let mut sb = sandbox(v, 3).await;
    let all = sb.endpoints();
    // 3 → 2 leaves an even count: refused, saying why.
    let run = cluster(&sb, &all, &["member", "remove", "m3"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let line = run.assert_one_clear_line();
    assert!(line.contains("refusing to remove member m3 ("), "{line}");
    assert!(line.contains("even count"), "{line}");
    assert!(
        line.contains("tolerates 0 failure(s) like 1 members"),
        "{line}"
    );
    assert!(line.contains("--force"), "{line}");

    // With one member down, removing a healthy one would lose quorum, --force or not.
    let f = sb.follower().await.unwrap();
    let dead = sb.members()[f].name.clone();
    sb.kill(f).unwrap();
    let healthy = sb
        .members()
        .iter()
        .enumerate()
        .find(|(i, _)| *i != f)
        .map(|(_, m)| m.name.clone())
        .unwrap();
    let run = cluster(&sb, &all, &["member", "remove", &healthy, "--force"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let line = run.assert_one_clear_line();
    assert!(
        line.contains(&format!("refusing to remove member {healthy} (")),
        "{line}"
    );
    assert!(
        line.contains("would lose quorum: 1 of 2 voting members would be healthy and 2 are needed"),
        "{line}"
    );
    assert!(line.contains(&format!("unhealthy: {dead} (")), "{line}");

    // An unknown member is bad input.
    let run = cluster(&sb, &all, &["member", "remove", "nosuch"]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.assert_one_clear_line().contains("\"nosuch\""));

    // Removing the dead member with --force keeps quorum (2 of 2).
    let run = cluster(&sb, &all, &["member", "remove", &dead, "--force"]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.json()["name"], dead.as_str());
    let h = health_json(&sb, &endpoints_but(&sb, &[f])).await;
    assert_eq!(
        (h["voters"].as_u64(), h["healthy_voters"].as_u64()),
        (Some(2), Some(2)),
        "{h}"
    );
}

async fn replace_a_dead_member_waiting_for_the_new_one(v: Etcd) {
    let mut sb = sandbox(v, 3).await;
    let all = sb.endpoints();
    let f = sb.follower().await.unwrap();
    let old = sb.members()[f].name.clone();
    sb.kill(f).unwrap();
    let idx = sb.prepare_joining().unwrap();
    let peer = sb.members()[idx].peer_url(true);
    let new_name = sb.members()[idx].name.clone();

    // cpkeep waits (the default) for the member the operator starts with the flags it printed.
    let mut a: Vec<String> = [
        "cluster",
        "member",
        "replace",
        &old,
        "--peer-urls",
        &peer,
        "--name",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend([
        new_name.clone(),
        "--wait-timeout".into(),
        "90s".into(),
        "-o".into(),
        "json".into(),
    ]);
    a.extend(conn_args(&sb, &all, "2s"));
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cpkeep"));
    cmd.args(&a)
        .env("CPKEEP_PKI_DIR", "/nonexistent-cpkeep-test-pki")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, _) in std::env::vars() {
        if k.starts_with("CPKEEP_") && k != "CPKEEP_PKI_DIR" {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut stderr = String::new();
    let flags = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = tokio::time::timeout(left, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no start line within 60s:\n{stderr}"))
            .unwrap()
            .unwrap_or_else(|| panic!("cpkeep ended without a start line:\n{stderr}"));
        stderr.push_str(&line);
        stderr.push('\n');
        if line.contains("start it with:") {
            break line;
        }
    };
    let initial = initial_cluster_of(&flags);
    assert!(!initial.contains(&format!("{old}=")), "{initial}");
    assert!(initial.contains(&format!("{new_name}={peer}")), "{initial}");
    assert!(
        flags.contains("--initial-cluster-state=existing"),
        "{flags}"
    );
    sb.start_joining(idx, &initial).await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    while let Ok(Some(l)) = lines.next_line().await {
        stderr.push_str(&l);
        stderr.push('\n');
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let j: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(j["removed"]["name"], old.as_str());
    assert_eq!(j["added"]["name"], new_name.as_str());
    assert_eq!(j["promoted"]["name"], new_name.as_str());
    assert!(j["caught_up"]["lag"].as_u64().unwrap() <= 1000, "{j}");
    let h = health_json(&sb, &endpoints_but(&sb, &[f])).await;
    assert_eq!(
        (h["voters"].as_u64(), h["healthy_voters"].as_u64()),
        (Some(3), Some(3)),
        "{h}"
    );
    assert_eq!(h["learners"], 0, "{h}");
}

per_version!(
    add_learner_start_it_and_promote,
    remove_refusals_then_forced_removal,
    replace_a_dead_member_waiting_for_the_new_one,
);
