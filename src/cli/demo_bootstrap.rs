//! The demo's bootstrap step: `cpkeep bootstrap plan` on the annotated example inventory (kubeadm's
//! HA guide: cp1–cp3 at 192.168.1.10–12 behind the VIP 192.168.1.20:8443), every generated
//! haproxy.cfg checked by the real `haproxy -c`, then the plan run again to show that the CAs and
//! secrets are kept and nothing changes.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use super::table::Table;
use crate::bootstrap::bundle::ChangeKind;
use crate::bootstrap::{self, PlanOptions};

#[derive(Debug, Serialize)]
pub struct DemoBootstrap {
    pub inventory: String,
    pub bundle: String,
    pub elapsed_ms: u128,
    pub nodes: Vec<(String, String, String)>,
    pub endpoint: String,
    pub kubeadm_api_version: String,
    pub ca_cert_hash: String,
    pub fault_tolerance: usize,
    pub files: usize,
    pub steps: usize,
    /// `haproxy -c -f` of each load balancer host's config: (host, passed, haproxy's words).
    pub haproxy_checks: Vec<(String, bool, String)>,
    /// Files the second run changed (none).
    pub changed_on_rerun: Vec<String>,
}

impl DemoBootstrap {
    pub fn ok(&self) -> bool {
        !self.haproxy_checks.is_empty()
            && self.haproxy_checks.iter().all(|(_, ok, _)| *ok)
            && self.changed_on_rerun.is_empty()
            && self.files > 0
    }

    pub fn table(&self) -> String {
        let mut t = Table::new(["NODE", "ROLE", "ADDRESS"]);
        for (n, r, a) in &self.nodes {
            t.row([n.clone(), r.clone(), a.clone()]);
        }
        let mut s = t.render();
        s.push_str(&format!(
            "endpoint {} ({}), tolerates {} control-plane failure(s); CA hash {}\n",
            self.endpoint, self.kubeadm_api_version, self.fault_tolerance, self.ca_cert_hash
        ));
        s.push_str(&format!(
            "bundle {}: {} files, {} steps in RUNBOOK.md ({} ms)\n",
            self.bundle, self.files, self.steps, self.elapsed_ms
        ));
        for (host, ok, words) in &self.haproxy_checks {
            s.push_str(&format!(
                "haproxy -c -f nodes/{host}/haproxy.cfg: {} {}\n",
                if *ok { "valid" } else { "INVALID" },
                words
            ));
        }
        if self.changed_on_rerun.is_empty() {
            s.push_str("plan run again: nothing changed (CAs, token and certificate key kept)\n");
        } else {
            s.push_str(&format!(
                "plan run again: CHANGED {}\n",
                self.changed_on_rerun.join(", ")
            ));
        }
        s
    }
}

/// haproxy from PATH or /usr/sbin (scripts/install-tools.sh puts it in tools/bin, which
/// tools/env.sh adds to PATH).
fn haproxy() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("haproxy"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "haproxy not found on PATH or in /usr/sbin (scripts/install-tools.sh installs it)"
            )
        })
}

pub async fn bootstrap_step(root: &Path) -> anyhow::Result<DemoBootstrap> {
    let started = Instant::now();
    let dir = root.join("bootstrap");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let inventory = dir.join("cluster.yaml");
    std::fs::write(&inventory, bootstrap::example::EXAMPLE)
        .with_context(|| format!("cannot write {}", inventory.display()))?;
    // The example names a CNI manifest beside the inventory; the demo applies nothing.
    std::fs::write(
        dir.join("calico.yaml"),
        "# the demo's stand-in for a CNI manifest\n",
    )
    .context("cannot write the demo's CNI manifest")?;
    let opts = PlanOptions {
        inventory: inventory.clone(),
        out: dir.join("bundle"),
        ..Default::default()
    };
    let first = {
        let opts = opts.clone();
        tokio::task::spawn_blocking(move || bootstrap::plan(&opts)).await??
    };
    let elapsed_ms = started.elapsed().as_millis();
    let haproxy = haproxy()?;
    let mut haproxy_checks = Vec::new();
    for host in &first.plan.load_balancer.hosts {
        let cfg = opts.out.join("nodes").join(host).join("haproxy.cfg");
        let out = tokio::process::Command::new(&haproxy)
            .arg("-c")
            .arg("-f")
            .arg(&cfg)
            .output()
            .await
            .with_context(|| format!("cannot run {}", haproxy.display()))?;
        let words = String::from_utf8_lossy(&out.stdout).trim().to_string()
            + String::from_utf8_lossy(&out.stderr).trim();
        haproxy_checks.push((host.clone(), out.status.success(), words));
    }
    let again = tokio::task::spawn_blocking(move || bootstrap::plan(&opts)).await??;
    let p = &first.plan;
    Ok(DemoBootstrap {
        inventory: inventory.display().to_string(),
        bundle: first.out.display().to_string(),
        elapsed_ms,
        nodes: p
            .nodes
            .iter()
            .map(|n| {
                let role = n.role.as_str().to_string();
                (n.name.clone(), role, n.address.to_string())
            })
            .collect(),
        endpoint: p.control_plane_endpoint.clone(),
        kubeadm_api_version: p.kubeadm_api_version_str().to_string(),
        ca_cert_hash: p.ca_cert_hash.clone(),
        fault_tolerance: p.etcd.fault_tolerance,
        files: p.files.len() + 1,
        steps: p.steps.len(),
        haproxy_checks,
        changed_on_rerun: again
            .changes
            .iter()
            .filter(|c| c.change != ChangeKind::Unchanged)
            .map(|c| c.path.clone())
            .collect(),
    })
}
