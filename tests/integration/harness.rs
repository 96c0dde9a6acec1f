//! Shared test plumbing: locating real etcd binaries, starting sandboxes, running the cpkeep binary.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use cpkeep::sandbox::{Sandbox, SandboxOptions};

/// The etcd release lines the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Etcd {
    V35,
    V34,
}

impl Etcd {
    fn dir(self) -> PathBuf {
        let (var, sub) = match self {
            Etcd::V35 => ("CPKEEP_ETCD35_DIR", "etcd-3.5"),
            Etcd::V34 => ("CPKEEP_ETCD34_DIR", "etcd-3.4"),
        };
        std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tools")
                .join(sub)
                .join("bin")
        })
    }

    /// The etcd binary; panics (fails the test) with instructions when it is missing.
    pub fn etcd(self) -> PathBuf {
        let p = self.dir().join("etcd");
        assert!(
            p.is_file(),
            "etcd {self:?} not found at {}: run scripts/install-tools.sh (or set CPKEEP_ETCD35_DIR / CPKEEP_ETCD34_DIR)",
            p.display()
        );
        p
    }

    pub fn prefix(self) -> &'static str {
        match self {
            Etcd::V35 => "3.5.",
            Etcd::V34 => "3.4.",
        }
    }
}

/// Starts a TLS sandbox of `members` voters.
pub async fn sandbox(v: Etcd, members: usize) -> Sandbox {
    sandbox_with(v, members, |_| {}).await
}

/// Starts a sandbox after letting the caller adjust the options.
pub async fn sandbox_with(
    v: Etcd,
    members: usize,
    adjust: impl FnOnce(&mut SandboxOptions),
) -> Sandbox {
    let mut opts = SandboxOptions::new(v.etcd(), members);
    adjust(&mut opts);
    match Sandbox::start(opts).await {
        Ok(s) => s,
        Err(e) => panic!("sandbox with etcd {v:?} did not start: {e}"),
    }
}

/// What one cpkeep run did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts the error contract: exactly one stderr line, with the program prefix, no panic, no
    /// backtrace, no Debug dump.
    pub fn assert_one_clear_line(&self) -> &str {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "expected one stderr line, got:\n{}",
            self.stderr
        );
        let line = lines[0];
        assert!(line.starts_with("cpkeep: "), "no program prefix: {line}");
        for bad in [
            "panicked",
            "RUST_BACKTRACE",
            "Status {",
            "Error {",
            "Os {",
            "Some(",
        ] {
            assert!(!line.contains(bad), "stderr has {bad:?}: {line}");
        }
        line
    }
}

/// Runs the cpkeep binary with `args`, without any CPKEEP_* variable from the test environment.
pub async fn cpkeep(args: &[String]) -> Run {
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cpkeep"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("CPKEEP_") {
            cmd.env_remove(k);
        }
    }
    // No kubeadm defaults from the machine running the tests.
    cmd.env("CPKEEP_PKI_DIR", "/nonexistent-cpkeep-test-pki");
    let out: Output = cmd.output().await.expect("run cpkeep");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// The connection flags reaching `endpoints` of a sandbox with its healthcheck-client certificate.
pub fn conn_args(sb: &Sandbox, endpoints: &[String], timeout: &str) -> Vec<String> {
    let mut a = vec![
        "--endpoints".to_string(),
        endpoints.join(","),
        "--timeout".to_string(),
        timeout.to_string(),
    ];
    let files = sb.tls_files();
    for (flag, path) in [
        ("--cacert", files.ca),
        ("--cert", files.cert),
        ("--key", files.key),
    ] {
        if let Some(p) = path {
            a.push(flag.to_string());
            a.push(p.display().to_string());
        }
    }
    a
}

/// `cpkeep cluster health -o json` against every member of the sandbox.
pub async fn health(sb: &Sandbox, timeout: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "cluster".to_string(),
        "health".to_string(),
        "-o".into(),
        "json".into(),
    ];
    args.extend(conn_args(sb, &sb.endpoints(), timeout));
    args.extend(extra.iter().map(|s| s.to_string()));
    cpkeep(&args).await
}

/// The reasons of a health report, joined for assertions.
pub fn reasons(v: &serde_json::Value) -> String {
    v["reasons"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .unwrap_or_default()
}
