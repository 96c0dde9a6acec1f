//! Finding the etcd binary a sandbox runs, and asking it its version.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::SandboxError;

/// The etcd binary to run: the explicit path, else `$CPKEEP_ETCD_BIN`, else `etcd` on `PATH`.
pub fn locate_etcd(explicit: Option<&Path>) -> Result<PathBuf, SandboxError> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(SandboxError::NoEtcd(format!(
                "{} does not exist",
                p.display()
            )))
        };
    }
    if let Some(p) = std::env::var_os("CPKEEP_ETCD_BIN").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(SandboxError::NoEtcd(format!(
                "CPKEEP_ETCD_BIN={} does not exist",
                p.display()
            )))
        };
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("etcd");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(SandboxError::NoEtcd(
        "pass --etcd-bin, set CPKEEP_ETCD_BIN, or put etcd on PATH (scripts/install-tools.sh installs \
         etcd 3.5 and 3.4 into tools/)"
            .to_string(),
    ))
}

/// The version an etcd binary reports (`etcd --version` → "etcd Version: 3.5.30").
pub fn etcd_version(etcd: &Path) -> Result<String, SandboxError> {
    let out = Command::new(etcd)
        .arg("--version")
        .output()
        .map_err(|source| SandboxError::Exec {
            path: etcd.to_path_buf(),
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("etcd Version:"))
        .map(|v| v.trim().to_string())
        .ok_or_else(|| {
            SandboxError::NoEtcd(format!(
                "{} --version printed no version: is it etcd?",
                etcd.display()
            ))
        })
}
