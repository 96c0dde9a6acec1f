//! `cpkeep cluster health`'s doctor checks against real clusters: a member whose db was altered
//! while it was stopped (consistency), a cluster under write load (no false alarm), fragmentation
//! before and after `cluster defrag`, members' metrics after forced leader changes and with an
//! unreachable metrics URL, a rolling upgrade from 3.4 to 3.5 (version skew), and served
//! certificates (about to expire; renewed on disk but not restarted).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::GetOptions;

use crate::harness::{
    conn_args, cpkeep, fill_delete_compact, health, reasons, sandbox, sandbox_with, Etcd,
};
use cpkeep::sandbox::Sandbox;

/// The findings of one check, from the JSON report.
fn findings(j: &serde_json::Value, check: &str) -> Vec<serde_json::Value> {
    j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == check)
        .cloned()
        .collect()
}

async fn consistency_catches_a_member_altered_while_stopped(v: Etcd) {
    let mut sb = sandbox(v, 3).await;
    let conn = sb.connection(Duration::from_secs(5)).unwrap();
    let client = cpkeep::etcd::connect(&conn.endpoints[0], &conn)
        .await
        .unwrap();
    sb.write_sample(50).await.unwrap();

    // A healthy cluster under concurrent writes: the common revision keeps moving heads out of it.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, mut kv) = (stop.clone(), client.kv_client());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                kv.put(format!("/registry/load/{}", i % 100), format!("v{i}"), None)
                    .await
                    .unwrap();
                i += 1;
            }
            i
        })
    };
    let run = health(&sb, "5s", &["--check-consistency"]).await;
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.unwrap();
    let j = run.json();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let c = &j["doctor"]["consistency"];
    assert!(c["revision"].as_i64().unwrap() > 0, "{c}");
    assert!(c["majority_hash"].is_u64(), "{c}");
    let hashes: Vec<&serde_json::Value> = c["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["hash"])
        .collect();
    assert_eq!(hashes.len(), 3, "{c}");
    assert!(hashes.iter().all(|h| *h == &c["majority_hash"]), "{c}");
    assert!(writes > 0, "the writer wrote nothing during the check");

    // One value, altered in a stopped member's db file.
    let (key, good, bad) = (
        "/registry/secrets/default/doctor",
        "doctor-value-ORIGINAL-7f3a",
        "doctor-value-TAMPERED-7f3a",
    );
    let mut kv = client.kv_client();
    kv.put(key, good, None).await.unwrap();
    let f = sb.follower().await.unwrap();
    let victim = sb.members()[f].name.clone();
    let altered = sb
        .alter_value_while_stopped(f, good.as_bytes(), bad.as_bytes())
        .await
        .unwrap();
    assert!(altered >= 1);

    // etcd starts on it and serves the altered value to serializable reads.
    let one = sb
        .connection_to(&[sb.members()[f].client_url(true)], Duration::from_secs(5))
        .unwrap();
    let mut on_victim = cpkeep::etcd::connect(&one.endpoints[0], &one)
        .await
        .unwrap();
    let got = on_victim
        .get(key, Some(GetOptions::new().with_serializable()))
        .await
        .unwrap();
    assert_eq!(got.kvs()[0].value(), bad.as_bytes());

    // Without the check, the cluster looks fine.
    let run = health(&sb, "5s", &[]).await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(run.json()["doctor"]["consistency"].is_null());

    let run = health(&sb, "5s", &["--check-consistency"]).await;
    let j = run.json();
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(j["verdict"], "CRITICAL");
    let found = findings(&j, "consistency");
    assert_eq!(found.len(), 1, "{}", reasons(&j));
    assert_eq!(found[0]["severity"], "CRITICAL");
    assert_eq!(found[0]["member"], victim.as_str());
    let c = &j["doctor"]["consistency"];
    let majority = format!("{:08x}", c["majority_hash"].as_u64().unwrap());
    let theirs = c["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["member"] == victim.as_str())
        .unwrap()["hash"]
        .as_u64()
        .unwrap();
    let msg = found[0]["message"].as_str().unwrap();
    assert!(msg.contains(&majority), "{msg}");
    assert!(msg.contains(&format!("{theirs:08x}")), "{msg}");
    // The table names it too.
    let mut a: Vec<String> = ["cluster", "health", "--check-consistency"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(conn_args(&sb, &sb.endpoints(), "5s"));
    let run = cpkeep(&a).await;
    assert_eq!(run.code, 2);
    assert!(
        run.stdout.contains("[consistency] member"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("NO"), "{}", run.stdout);
}

async fn fragmentation_warns_until_defragmented(v: Etcd) {
    let sb = sandbox(v, 3).await;
    fill_delete_compact(&sb, 3000, 1000).await;
    let small = ["--fragmentation-min-size", "1MiB"];
    // Each member frees its pages when it applies the compaction: poll until all three say so.
    let deadline = Instant::now() + Duration::from_secs(20);
    let j = loop {
        let run = health(&sb, "5s", &small).await;
        let j = run.json();
        if findings(&j, "fragmentation").len() == 3 || Instant::now() > deadline {
            assert_eq!(run.code, 1, "{}", run.stdout);
            break j;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(j["verdict"], "WARNING");
    let found = findings(&j, "fragmentation");
    assert_eq!(found.len(), 3, "{}", reasons(&j));
    assert!(
        found[0]["message"]
            .as_str()
            .unwrap()
            .contains("cpkeep cluster defrag"),
        "{}",
        found[0]
    );
    let entries = j["doctor"]["fragmentation"].as_array().unwrap();
    assert!(entries
        .iter()
        .all(|e| e["fragmented"] == true && e["in_use_ratio"].as_f64().unwrap() < 0.5));
    // The default minimum (100 MiB) leaves this small db alone.
    assert_eq!(health(&sb, "5s", &[]).await.code, 0);

    let mut a: Vec<String> = ["cluster", "defrag"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(conn_args(&sb, &sb.endpoints(), "5s"));
    let run = cpkeep(&a).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = health(&sb, "5s", &small).await;
    let j = run.json();
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(findings(&j, "fragmentation").is_empty());
    assert!(j["doctor"]["fragmentation"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["fragmented"] == false));
}

/// Kills the leader and brings it back, then waits until the cluster has a leader again.
async fn bounce_leader(sb: &mut Sandbox) {
    let l = sb.leader().await.unwrap();
    sb.kill(l).unwrap();
    sb.restart(l).await.unwrap();
}

async fn metrics_count_leader_changes_and_survive_a_dead_url(v: Etcd) {
    let mut sb = sandbox_with(v, 3, |o| o.metrics = true).await;
    let urls: Vec<String> = sb
        .members()
        .iter()
        .map(|m| m.metrics_url().unwrap())
        .collect();
    let given = urls.join(",");
    let run = health(&sb, "5s", &["--metrics-urls", &given]).await;
    let j = run.json();
    assert_eq!(run.code, 0, "{}", run.stdout);
    let metrics = j["doctor"]["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 3, "{j}");
    for m in metrics {
        assert!(m["error"].is_null(), "{m}");
        assert_eq!(m["guessed"], false);
        assert!(m["member"].as_str().unwrap().starts_with('m'), "{m}");
        assert!(m["wal_fsync_p99_seconds"].as_f64().unwrap() > 0.0, "{m}");
        assert!(m["leader_changes"].as_u64().unwrap() >= 1, "{m}");
        // etcd probes its peers' round trip every 30 s: a young cluster may have no observation yet.
        let rtt = &m["peer_round_trip_p99_seconds"];
        assert!(rtt.is_number() || rtt.is_null(), "{m}");
    }

    // Two leaders killed: members that stayed up through an election counted it. Which member saw
    // the most depends on who won each election (a restarted member's counter starts again), so the
    // check is on the member that saw the most: at least its first leader and one change.
    bounce_leader(&mut sb).await;
    bounce_leader(&mut sb).await;
    let run = health(
        &sb,
        "5s",
        &["--metrics-urls", &given, "--max-leader-changes", "1"],
    )
    .await;
    let j = run.json();
    let (name, seen) = j["doctor"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["member"].as_str().unwrap().to_string(),
                m["leader_changes"].as_u64().unwrap(),
            )
        })
        .max_by_key(|(_, n)| *n)
        .unwrap();
    assert!(seen >= 2, "{}", j["doctor"]["metrics"]);
    let found = findings(&j, "metrics");
    let about = found
        .iter()
        .find(|f| {
            f["member"] == name.as_str()
                && f["message"].as_str().unwrap().contains("leader changes")
        })
        .unwrap_or_else(|| panic!("no leader-change finding for {name}: {}", reasons(&j)));
    assert_eq!(about["severity"], "WARNING");
    assert!(run.code >= 1, "{}", run.stdout);

    // A metrics URL nobody serves: a finding, and the rest of the verdict as usual.
    let dead = format!("{},http://127.0.0.1:1/metrics", urls[0]);
    let run = health(
        &sb,
        "2s",
        &["--metrics-urls", &dead, "--max-leader-changes", "100"],
    )
    .await;
    let j = run.json();
    assert_eq!(j["healthy_voters"], 3, "{}", run.stdout);
    let unreadable: Vec<_> = findings(&j, "metrics")
        .into_iter()
        .filter(|f| f["message"].as_str().unwrap().contains("could not be read"))
        .collect();
    assert_eq!(unreadable.len(), 1, "{}", reasons(&j));
    assert_eq!(unreadable[0]["severity"], "WARNING");
    assert!(run.code == 1, "{}", run.stdout);

    // A malformed value is one clear line and exit 3, before anything connects.
    let mut a: Vec<String> = ["cluster", "health", "--metrics-urls", "127.0.0.1:2381"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(conn_args(&sb, &sb.endpoints(), "2s"));
    let run = cpkeep(&a).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    let line = run.assert_one_clear_line();
    assert!(line.contains("--metrics-urls"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_skew_during_a_rolling_upgrade_from_34_to_35() {
    let mut sb = sandbox(Etcd::V34, 3).await;
    let run = health(&sb, "5s", &[]).await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.json()["doctor"]["version_skew"]["skewed"], false);

    let f = sb.follower().await.unwrap();
    sb.kill(f).unwrap();
    sb.restart_with(f, &Etcd::V35.etcd()).await.unwrap();
    let run = health(&sb, "5s", &[]).await;
    let j = run.json();
    assert_eq!(run.code, 1, "{}", run.stdout);
    let skew = &j["doctor"]["version_skew"];
    assert_eq!(skew["skewed"], true, "{skew}");
    assert_eq!(skew["minor_versions"], serde_json::json!(["3.4", "3.5"]));
    let found = findings(&j, "version_skew");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["severity"], "WARNING");
    let upgraded = sb.members()[f].name.clone();
    assert!(
        found[0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("3.5 on {upgraded}")),
        "{}",
        found[0]
    );
    let run = health(&sb, "5s", &["--upgrading"]).await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(findings(&run.json(), "version_skew")[0]["severity"], "OK");

    // The rest of the upgrade: followers, then the leader, each restarted on 3.5.
    let leader = sb.leader().await.unwrap();
    let mut order: Vec<usize> = (0..3).filter(|i| *i != f && *i != leader).collect();
    order.push(leader);
    for i in order {
        sb.kill(i).unwrap();
        sb.restart_with(i, &Etcd::V35.etcd()).await.unwrap();
    }
    let run = health(&sb, "5s", &[]).await;
    let j = run.json();
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(
        j["doctor"]["version_skew"]["minor_versions"],
        serde_json::json!(["3.5"])
    );
}

async fn served_certificates_expiring_and_stale(v: Etcd) {
    let mut sb = sandbox(v, 3).await;
    // m1's serving certificate re-issued to expire in 3 days. etcd reads its certificate files at
    // every new TLS connection, so it serves the new one at once, without a restart.
    sb.reissue_server_cert(0, 3).unwrap();
    // This host's kubeadm dir holds a renewed certificate for m2 that m2 does not serve (its
    // --cert-file is another file): the check compares what is served with what is on disk.
    let node = tempfile::tempdir().unwrap();
    let mut elsewhere = sb.pki().unwrap().clone();
    elsewhere.dir = node.path().to_path_buf();
    elsewhere.issue_member("m2", sb.members()[1].ip).unwrap();
    std::fs::copy(
        node.path().join("etcd/m2/server.crt"),
        node.path().join("etcd/server.crt"),
    )
    .unwrap();
    let pki = node.path().display().to_string();

    let run = health(&sb, "5s", &["--critical", "7d", "--pki-dir", &pki]).await;
    let j = run.json();
    assert_eq!(run.code, 2, "{}", run.stdout);
    let found = findings(&j, "served_certs");
    let m1: Vec<_> = found.iter().filter(|f| f["member"] == "m1").collect();
    assert_eq!(m1.len(), 1, "{}", reasons(&j));
    assert_eq!(m1[0]["severity"], "CRITICAL");
    assert!(
        m1[0]["message"].as_str().unwrap().contains("expires in"),
        "{}",
        m1[0]
    );
    let m2: Vec<_> = found.iter().filter(|f| f["member"] == "m2").collect();
    assert_eq!(m2.len(), 1, "{}", reasons(&j));
    assert_eq!(m2[0]["severity"], "WARNING");
    assert!(
        m2[0]["message"]
            .as_str()
            .unwrap()
            .contains("is not the one in"),
        "{}",
        m2[0]
    );
    assert!(found.iter().all(|f| f["member"] != "m3"), "{}", reasons(&j));
    let rows = j["doctor"]["served_certs"].as_array().unwrap();
    // Client and peer URL of each of the three members.
    assert_eq!(rows.len(), 6, "{rows:?}");
    let m1_client = rows
        .iter()
        .find(|r| r["member"] == "m1" && r["kind"] == "client")
        .unwrap();
    assert_eq!(m1_client["status"], "CRITICAL");
    assert!(m1_client["residual_seconds"].as_i64().unwrap() < 3 * 86400 + 60);
    let m2_client = rows
        .iter()
        .find(|r| r["member"] == "m2" && r["kind"] == "client")
        .unwrap();
    assert_eq!(m2_client["matches_disk"], false);
    // The handshakes present the client certificate: no member logged a refused connection.
    for m in sb.members() {
        let log = std::fs::read_to_string(&m.log).unwrap();
        assert!(
            !log.contains("didn't provide a certificate"),
            "{} logged a refused handshake:\n{log}",
            m.name
        );
    }

    // With the file m2 really uses on disk, the two agree.
    std::fs::copy(
        sb.pki().unwrap().dir.join("etcd/m2/server.crt"),
        node.path().join("etcd/server.crt"),
    )
    .unwrap();
    let run = health(&sb, "5s", &["--critical", "7d", "--pki-dir", &pki]).await;
    let j = run.json();
    assert!(
        findings(&j, "served_certs")
            .iter()
            .all(|f| f["member"] != "m2"),
        "{}",
        reasons(&j)
    );
    let rows = j["doctor"]["served_certs"].as_array().unwrap();
    assert!(rows
        .iter()
        .any(|r| r["member"] == "m2" && r["kind"] == "client" && r["matches_disk"] == true));
}

per_version!(
    consistency_catches_a_member_altered_while_stopped,
    fragmentation_warns_until_defragmented,
    metrics_count_leader_changes_and_survive_a_dead_url,
    served_certificates_expiring_and_stale,
);
