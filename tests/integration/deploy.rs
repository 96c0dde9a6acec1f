//! deploy/: both kustomize overlays render, every rendered object passes strict schema validation, the
//! PrometheusRules pass `promtool check rules` and their unit tests (deploy/tests/), and every Grafana
//! panel query parses and evaluates in promtool over the metrics of docs/METRICS.md, so a renamed
//! metric fails here rather than on a dashboard. All offline: kubectl, kubernetes-validate and promtool
//! come from scripts/install-tools.sh.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::harness;

const OVERLAYS: [&str; 2] = ["cronjob", "daemonset"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `kubectl kustomize deploy/overlays/NAME`, as YAML text and as parsed objects.
fn render(overlay: &str) -> (String, Vec<Value>) {
    let dir = repo().join("deploy/overlays").join(overlay);
    let out = run(Command::new(harness::tool("kubectl"))
        .arg("kustomize")
        .arg(&dir));
    let text = String::from_utf8(out.stdout).unwrap();
    let objects: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("kustomize output of {overlay} is not YAML: {e}"));
    (text, objects)
}

fn kinds(objects: &[Value]) -> BTreeSet<String> {
    objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn overlays_render_the_expected_objects_and_validate_strictly() {
    let tmp = tempfile::tempdir().unwrap();
    let expected: [&[&str]; 2] = [
        &[
            "CronJob/cpkeep-certs-check",
            "CronJob/cpkeep-etcd-backup",
            "CronJob/cpkeep-etcd-health",
            "PrometheusRule/cpkeep-cronjobs",
        ],
        &[
            "DaemonSet/cpkeep",
            "Service/cpkeep",
            "ServiceMonitor/cpkeep",
            "PrometheusRule/cpkeep-daemon",
        ],
    ];
    for (overlay, own) in OVERLAYS.iter().zip(expected) {
        let (text, objects) = render(overlay);
        let got = kinds(&objects);
        for k in own.iter().chain(&[
            "ServiceAccount/cpkeep",
            "ConfigMap/cpkeep-config",
            "Secret/cpkeep-s3",
            "PrometheusRule/cpkeep-certs",
        ]) {
            assert!(got.contains(*k), "{overlay}: {k} not rendered; got {got:?}");
        }
        for o in &objects {
            assert_eq!(o["metadata"]["namespace"], "kube-system", "{overlay}: {o}");
        }
        // --strict: unknown fields are errors. PrometheusRule and ServiceMonitor have no bundled
        // schema (a warning); their shape is checked by the tests below (promtool, the selector).
        let file = tmp.path().join(format!("{overlay}.yaml"));
        std::fs::write(&file, &text).unwrap();
        let out = run(Command::new(harness::tool("kubernetes-validate"))
            .arg("--strict")
            .arg(&file));
        let log = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!log.contains("ERROR"), "{overlay}: {log}");
        let passed = log.matches(" passed for resource ").count();
        let builtin = objects
            .iter()
            .filter(|o| {
                !o["apiVersion"]
                    .as_str()
                    .unwrap()
                    .starts_with("monitoring.coreos.com/")
            })
            .count();
        assert_eq!(
            passed, builtin,
            "{overlay}: not every object was validated:\n{log}"
        );
    }
}

/// The pod specs of an overlay's workloads.
fn pod_specs(objects: &[Value]) -> Vec<(String, &Value)> {
    let mut specs = Vec::new();
    for o in objects {
        let name = o["metadata"]["name"].as_str().unwrap().to_string();
        match o["kind"].as_str().unwrap() {
            "CronJob" => specs.push((name, &o["spec"]["jobTemplate"]["spec"]["template"]["spec"])),
            "DaemonSet" => specs.push((name, &o["spec"]["template"]["spec"])),
            _ => {}
        }
    }
    specs
}

#[test]
fn workloads_are_hardened_as_issue_14_asks() {
    for overlay in OVERLAYS {
        let (_, objects) = render(overlay);
        for o in objects.iter().filter(|o| o["kind"] == "CronJob") {
            let name = &o["metadata"]["name"];
            let spec = &o["spec"];
            assert!(
                spec["startingDeadlineSeconds"].as_u64().is_some(),
                "{name}: startingDeadlineSeconds (kubernetes#42649)"
            );
            assert_eq!(spec["concurrencyPolicy"], "Forbid", "{name}");
            assert_eq!(spec["timeZone"], "Etc/UTC", "{name}");
            assert!(
                spec["jobTemplate"]["spec"]["activeDeadlineSeconds"]
                    .as_u64()
                    .is_some(),
                "{name}: a wedged Job must end"
            );
            assert!(
                spec["successfulJobsHistoryLimit"].is_u64()
                    && spec["failedJobsHistoryLimit"].is_u64(),
                "{name}"
            );
        }
        let specs = pod_specs(&objects);
        assert!(!specs.is_empty(), "{overlay}: no workloads");
        for (name, pod) in specs {
            assert_eq!(
                pod["nodeSelector"]["node-role.kubernetes.io/control-plane"], "",
                "{name}"
            );
            assert_eq!(
                pod["tolerations"][0]["key"], "node-role.kubernetes.io/control-plane",
                "{name}"
            );
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
                "{name}"
            );
            assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
            let writable: BTreeSet<&str> = ["textfile", "scratch"].into();
            for v in pod["volumes"].as_array().unwrap() {
                if let Some(path) = v["hostPath"]["path"].as_str() {
                    // A hostPath of unset type to a missing path is created on the node: never.
                    assert!(
                        v["hostPath"]["type"].is_string(),
                        "{name}: hostPath {path} without type"
                    );
                }
            }
            for c in pod["containers"].as_array().unwrap() {
                let sc = &c["securityContext"];
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
                assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{name}");
                assert_eq!(
                    sc["capabilities"]["add"],
                    json!(["DAC_READ_SEARCH"]),
                    "{name}"
                );
                assert!(
                    c["resources"]["requests"]["memory"].is_string(),
                    "{name}: requests"
                );
                assert!(
                    c["resources"]["limits"]["memory"].is_string(),
                    "{name}: limits"
                );
                for m in c["volumeMounts"].as_array().unwrap() {
                    let vol = m["name"].as_str().unwrap();
                    let host = pod["volumes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|v| v["name"] == vol && v["hostPath"].is_object());
                    if host && !writable.contains(vol) {
                        assert_eq!(
                            m["readOnly"], true,
                            "{name}: host mount {vol} must be read-only"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn service_monitor_selects_the_daemon_service() {
    let (_, objects) = render("daemonset");
    let find = |kind: &str| objects.iter().find(|o| o["kind"] == kind).unwrap();
    let (svc, sm, ds) = (find("Service"), find("ServiceMonitor"), find("DaemonSet"));
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            &svc["metadata"]["labels"][k], v,
            "ServiceMonitor label {k} not on the Service"
        );
    }
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(
            &ds["spec"]["template"]["metadata"]["labels"][k], v,
            "Service selector {k} not on the pods"
        );
    }
    let port = &sm["spec"]["endpoints"][0]["port"];
    assert_eq!(&svc["spec"]["ports"][0]["name"], port);
    assert_eq!(svc["spec"]["ports"][0]["port"], 9477);
    let args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap();
    assert_eq!(args[0], "daemon");
    assert!(args.contains(&json!("--config=/etc/cpkeep/config.yaml")));
}

/// Writes every PrometheusRule of both overlays (deduplicated by name) as `<name>.rules.yaml` into
/// `dir`, the file names deploy/tests/*.yaml list in their `rule_files`.
fn extract_rules(dir: &Path) -> Vec<PathBuf> {
    let mut files = BTreeSet::new();
    for overlay in OVERLAYS {
        let (_, objects) = render(overlay);
        for o in objects.iter().filter(|o| o["kind"] == "PrometheusRule") {
            let groups = &o["spec"]["groups"];
            assert!(groups.as_array().is_some_and(|g| !g.is_empty()), "{o}");
            assert_eq!(
                o["spec"].as_object().unwrap().len(),
                1,
                "PrometheusRule spec has only groups: {o}"
            );
            let file = dir.join(format!(
                "{}.rules.yaml",
                o["metadata"]["name"].as_str().unwrap()
            ));
            // JSON is YAML: promtool reads it as a rules file.
            std::fs::write(&file, serde_json::to_string_pretty(&o["spec"]).unwrap()).unwrap();
            files.insert(file);
        }
    }
    files.into_iter().collect()
}

#[test]
fn prometheus_rules_check_and_pass_their_unit_tests() {
    let tmp = tempfile::tempdir().unwrap();
    let rules = extract_rules(tmp.path());
    assert_eq!(rules.len(), 3, "{rules:?}");
    run(Command::new(harness::tool("promtool"))
        .args(["check", "rules"])
        .args(&rules));

    // Every alert has a unit test that names it, firing (exp_alerts listed) and quiet (exp_alerts: []).
    let mut tests = Vec::new();
    let mut tested_text = String::new();
    for e in std::fs::read_dir(repo().join("deploy/tests")).unwrap() {
        let p = e.unwrap().path();
        if p.to_string_lossy().ends_with(".test.yaml") {
            let text = std::fs::read_to_string(&p).unwrap();
            tested_text.push_str(&text);
            let copy = tmp.path().join(p.file_name().unwrap());
            std::fs::write(&copy, text).unwrap();
            tests.push(copy);
        }
    }
    assert_eq!(tests.len(), 3, "{tests:?}");
    for file in &rules {
        let spec: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        for g in spec["groups"].as_array().unwrap() {
            for r in g["rules"].as_array().unwrap() {
                let Some(alert) = r["alert"].as_str() else {
                    continue;
                };
                let named = format!("alertname: {alert}\n");
                let blocks: Vec<&str> = tested_text
                    .split("- eval_time:")
                    .filter(|b| b.contains(&named))
                    .collect();
                assert!(
                    blocks.iter().any(|b| b.contains("exp_alerts:\n")),
                    "{alert}: no firing test"
                );
                assert!(
                    blocks.iter().any(|b| b.contains("exp_alerts: []")),
                    "{alert}: no quiet test"
                );
            }
        }
    }
    run(Command::new(harness::tool("promtool"))
        .args(["test", "rules"])
        .args(&tests)
        .current_dir(tmp.path()));
}

/// Every `expr` of every panel target in the dashboard.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap().to_string();
            out.push((title, t["expr"].as_str().unwrap().to_string()));
        }
    }
    out
}

#[test]
fn dashboard_queries_parse_and_return_data_for_the_contract_metrics() {
    let path = repo().join("deploy/dashboards/cpkeep.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 8, "{queries:?}");
    // Each query becomes a recording rule; the test feeds a series of every metric in docs/METRICS.md
    // that the dashboard uses and expects each rule to return something. A renamed metric then returns
    // nothing, and `promtool test rules` fails naming the record.
    let tmp = tempfile::tempdir().unwrap();
    let mut rules = Vec::new();
    let mut cases = Vec::new();
    for (i, (title, expr)) in queries.iter().enumerate() {
        // Grafana's $__rate_interval and $cluster variables, resolved as a default view would.
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$cluster", ".*");
        let record = format!("dashboard:panel_{i}");
        rules.push(json!({"record": record, "expr": expr, "labels": {"panel": title}}));
        cases.push(record);
    }
    std::fs::write(
        tmp.path().join("dashboard.rules.yaml"),
        serde_json::to_string_pretty(&json!({"groups": [{"name": "dashboard", "rules": rules}]}))
            .unwrap(),
    )
    .unwrap();
    run(Command::new(harness::tool("promtool"))
        .args(["check", "rules", "dashboard.rules.yaml"])
        .current_dir(tmp.path()));
    let metrics = std::fs::read_to_string(repo().join("docs/METRICS.md")).unwrap();
    let series = contract_series(&metrics);
    let input: Vec<Value> = series
        .iter()
        .map(|s| json!({"series": s, "values": "1+1x30"}))
        .collect();
    // promtool's promql_expr_test needs exact expected samples; instead each record is checked to be
    // non-empty with `count(record) > 0` wrapped as an alert whose firing is expected.
    let mut alert_rules = Vec::new();
    let mut alert_tests = Vec::new();
    for record in &cases {
        let name = format!("NonEmpty_{}", record.replace(':', "_"));
        alert_rules.push(json!({"alert": name, "expr": format!("count({record}) > 0")}));
        alert_tests.push(
            json!({"eval_time": "20m", "alertname": name, "exp_alerts": [{"exp_labels": {}}]}),
        );
    }
    std::fs::write(
        tmp.path().join("nonempty.rules.yaml"),
        serde_json::to_string_pretty(
            &json!({"groups": [{"name": "nonempty", "rules": alert_rules}]}),
        )
        .unwrap(),
    )
    .unwrap();
    let test = json!({
        "rule_files": ["dashboard.rules.yaml", "nonempty.rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": input, "alert_rule_test": alert_tests}],
    });
    std::fs::write(
        tmp.path().join("dashboard.test.yaml"),
        serde_json::to_string_pretty(&test).unwrap(),
    )
    .unwrap();
    run(Command::new(harness::tool("promtool"))
        .args(["test", "rules", "dashboard.test.yaml"])
        .current_dir(tmp.path()));
}

/// One input series per metric named in the contract's tables, with plausible labels, so the
/// dashboard's queries see the metrics exactly as docs/METRICS.md names them.
fn contract_series(metrics_md: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in metrics_md.lines() {
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        let Some(name) = rest.split('`').next() else {
            continue;
        };
        if !(name.starts_with("cpkeep_") || name.starts_with("x509_")) {
            continue;
        }
        let labels = r#"job="cpkeep",instance="n1:9477",cluster_id="aa",task="backup",result="ok",class="failed",step="upload",filepath="/etc/kubernetes/pki/apiserver.crt",subject_CN="kube-apiserver""#;
        if line.contains("| histogram |") {
            for le in ["1", "60", "+Inf"] {
                out.push(format!(r#"{name}_bucket{{{labels},le="{le}"}}"#));
            }
            out.push(format!("{name}_sum{{{labels}}}"));
            out.push(format!("{name}_count{{{labels}}}"));
        } else {
            out.push(format!("{name}{{{labels}}}"));
        }
    }
    assert!(out.len() > 20, "docs/METRICS.md tables not found: {out:?}");
    out
}
