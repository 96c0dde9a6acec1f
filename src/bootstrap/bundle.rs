//! The bundle directory on disk: checked before anything is generated, then brought to the new
//! content file by file. A file is rewritten only when its bytes or mode differ (atomically, with its
//! final mode from the start), files of nodes no longer in the inventory are removed, and
//! `plan.json` is written last, so a directory holding it is a complete bundle. The directory and
//! every directory in it are 0700; keys and secrets are 0600. `pki/` and `secrets/` are never
//! replaced here: the caller passes their existing bytes back.
//! Never prints.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::BootstrapError;
use crate::fsx::{create_dir_all_mode, write_atomic};

/// Directories of a bundle are private: the whole bundle holds the cluster's CA keys.
pub const DIR_MODE: u32 = 0o700;
pub const PLAN_FILE: &str = "plan.json";

/// One file of the bundle, relative to its root.
#[derive(Clone)]
pub struct BundleFile {
    pub rel: String,
    pub bytes: Vec<u8>,
    pub mode: u32,
}

impl std::fmt::Debug for BundleFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleFile")
            .field("rel", &self.rel)
            .field("mode", &format_args!("{:o}", self.mode))
            .finish_non_exhaustive()
    }
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Created,
    Updated,
    /// Same bytes, mode corrected.
    Mode,
    Unchanged,
    Removed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileChange {
    pub path: String,
    pub change: ChangeKind,
}

/// The names a bundle's root holds (and the temp files of an interrupted atomic write).
/// `state.json` (apply's journal) and `admin.conf` (fetched by apply) belong to a bundle too.
const LAYOUT: [&str; 7] = [
    PLAN_FILE,
    "RUNBOOK.md",
    "pki",
    "secrets",
    "nodes",
    STATE_FILE,
    ADMIN_KUBECONFIG,
];
/// apply's journal of finished steps.
pub const STATE_FILE: &str = "state.json";
/// The admin kubeconfig apply fetches from the first control-plane node.
pub const ADMIN_KUBECONFIG: &str = "admin.conf";

/// Whether `out` may receive a bundle: absent, an empty directory, or an earlier bundle (complete,
/// or cut short before its plan.json). Returns whether it holds an earlier bundle.
pub fn check_out_dir(out: &Path) -> Result<bool, BootstrapError> {
    let bad = |reason: &str| BootstrapError::OutDir {
        path: out.to_path_buf(),
        reason: reason.to_string(),
    };
    match std::fs::metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Refuse now, before any key is generated, when the directory could not be created.
            let ancestor = out
                .ancestors()
                .skip(1)
                .map(|a| {
                    if a.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        a
                    }
                })
                .find(|a| a.exists())
                .unwrap_or(Path::new("/"));
            let writable = nix::unistd::access(
                ancestor,
                nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
            );
            match writable {
                Ok(()) if ancestor.is_dir() => Ok(false),
                Ok(()) => Err(bad(&format!(
                    "cannot be created: {} is not a directory",
                    ancestor.display()
                ))),
                Err(e) => Err(bad(&format!(
                    "cannot be created: {} is not writable ({})",
                    ancestor.display(),
                    e.desc().to_lowercase()
                ))),
            }
        }
        Err(e) => Err(bad(&format!(
            "cannot inspect it: {}",
            crate::certs::error::io_reason(&e)
        ))),
        Ok(m) if !m.is_dir() => Err(bad("is not a directory")),
        Ok(_) => {
            let entries = std::fs::read_dir(out).map_err(|e| {
                bad(&format!(
                    "cannot list it: {}",
                    crate::certs::error::io_reason(&e)
                ))
            })?;
            let mut any = false;
            for entry in entries {
                let entry = entry.map_err(|e| {
                    bad(&format!(
                        "cannot list it: {}",
                        crate::certs::error::io_reason(&e)
                    ))
                })?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if !LAYOUT.contains(&name.as_ref()) && !name.starts_with('.') {
                    return Err(bad(&format!(
                        "holds {name:?}, which is not part of a cpkeep bundle: refusing to write into a directory that is not one"
                    )));
                }
                any = true;
            }
            Ok(any)
        }
    }
}

fn write_err(path: PathBuf) -> impl FnOnce(std::io::Error) -> BootstrapError {
    move |source| BootstrapError::Write { path, source }
}

/// Brings `out` to exactly `files` (plus untouched files outside `nodes/`), `plan.json` last.
pub fn write(out: &Path, files: &[BundleFile]) -> Result<Vec<FileChange>, BootstrapError> {
    create_dir_all_mode(out, DIR_MODE).map_err(write_err(out.to_path_buf()))?;
    tighten_dir(out)?;
    let mut changes = Vec::new();
    let (plan, rest): (Vec<&BundleFile>, Vec<&BundleFile>) =
        files.iter().partition(|f| f.rel == PLAN_FILE);
    for f in rest.into_iter().chain(plan) {
        let path = out.join(&f.rel);
        if let Some(parent) = path.parent() {
            create_dir_all_mode(parent, DIR_MODE).map_err(write_err(parent.to_path_buf()))?;
            tighten_dir(parent)?;
        }
        let change = match std::fs::read(&path) {
            Ok(old) if old == f.bytes => {
                let mode = std::fs::metadata(&path)
                    .map_err(write_err(path.clone()))?
                    .permissions()
                    .mode()
                    & 0o7777;
                if mode == f.mode {
                    ChangeKind::Unchanged
                } else {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))
                        .map_err(write_err(path.clone()))?;
                    ChangeKind::Mode
                }
            }
            Ok(_) => {
                write_atomic(&path, &f.bytes, f.mode).map_err(write_err(path.clone()))?;
                ChangeKind::Updated
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_atomic(&path, &f.bytes, f.mode).map_err(write_err(path.clone()))?;
                ChangeKind::Created
            }
            Err(e) => return Err(write_err(path)(e)),
        };
        changes.push(FileChange {
            path: f.rel.clone(),
            change,
        });
    }
    let keep: BTreeSet<&str> = files.iter().map(|f| f.rel.as_str()).collect();
    let nodes = out.join("nodes");
    let mut stale = Vec::new();
    collect_files(&nodes, out, &mut stale).map_err(write_err(nodes.clone()))?;
    for rel in stale {
        if !keep.contains(rel.as_str()) {
            let path = out.join(&rel);
            std::fs::remove_file(&path).map_err(write_err(path))?;
            changes.push(FileChange {
                path: rel,
                change: ChangeKind::Removed,
            });
        }
    }
    remove_empty_dirs(&nodes).map_err(write_err(nodes.clone()))?;
    Ok(changes)
}

fn tighten_dir(dir: &Path) -> Result<(), BootstrapError> {
    let mode = std::fs::metadata(dir)
        .map_err(write_err(dir.to_path_buf()))?
        .permissions()
        .mode()
        & 0o7777;
    if mode != DIR_MODE {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))
            .map_err(write_err(dir.to_path_buf()))?;
    }
    Ok(())
}

fn collect_files(dir: &Path, root: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect_files(&path, root, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

fn remove_empty_dirs(dir: &Path) -> std::io::Result<bool> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e),
    };
    let mut empty = true;
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() && remove_empty_dirs(&entry.path())? {
            std::fs::remove_dir(entry.path())?;
        } else {
            empty = false;
        }
    }
    Ok(empty)
}
