//! Stopping and starting a static pod the way kubeadm's documentation says: its manifest moved out
//! of the kubelet's manifests directory ("parked" beside it, never inside: the kubelet runs every
//! file there) and moved back, byte for byte (renamed, never rewritten), with the directories
//! fsynced so that a crash does not undo a rename; and the wait until the old pod is gone.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use super::ManifestError;
use crate::fsx;
use crate::store::FailureClass;

/// Where `manifest` is parked: `<manifests dir>/../<file><suffix>`, beside the manifests
/// directory and never inside it. A manifest without a file name, or whose directory has no
/// parent, cannot be parked.
pub fn parked_path(manifest: &Path, suffix: &str) -> Result<PathBuf, ManifestError> {
    let parked = manifest.file_name().and_then(|file| {
        let outer = manifest
            .parent()
            .and_then(Path::parent)
            .filter(|p| !p.as_os_str().is_empty())?;
        let mut name = file.to_os_string();
        name.push(suffix);
        Some(outer.join(name))
    });
    parked.ok_or_else(|| ManifestError {
        path: manifest.to_path_buf(),
        reason: "the manifest must be in the kubelet's manifests directory, which needs a parent \
                 directory to park it in"
            .to_string(),
    })
}

/// Moves `manifest` to `parked`: the kubelet stops the pod.
pub fn park(manifest: &Path, parked: &Path) -> std::io::Result<()> {
    std::fs::rename(manifest, parked)?;
    sync_parents(manifest, parked);
    Ok(())
}

/// Why a parked manifest was not put back. Either way it is still at `parked`.
#[derive(Debug, thiserror::Error)]
pub enum PutBackError {
    /// Something else wrote a manifest meanwhile: it is not replaced.
    #[error("{} appeared meanwhile; the manifest cpkeep moved is still at {}", manifest.display(), parked.display())]
    Appeared { manifest: PathBuf, parked: PathBuf },
    #[error("the manifest could not be put back ({reason}): move it back with mv {} {}", shell_quote(&parked.display().to_string()), shell_quote(&manifest.display().to_string()))]
    Rename {
        manifest: PathBuf,
        parked: PathBuf,
        reason: String,
    },
}

impl PutBackError {
    /// Both leave a pod stopped that was meant to run again: the work failed.
    pub fn class(&self) -> FailureClass {
        match self {
            PutBackError::Appeared { .. } | PutBackError::Rename { .. } => FailureClass::Failed,
        }
    }
}

/// Moves a parked manifest back (the kubelet starts the pod again); refuses to replace a manifest
/// that appeared meanwhile.
pub fn put_back(manifest: &Path, parked: &Path) -> Result<(), PutBackError> {
    if manifest.exists() {
        return Err(PutBackError::Appeared {
            manifest: manifest.to_path_buf(),
            parked: parked.to_path_buf(),
        });
    }
    std::fs::rename(parked, manifest).map_err(|e| PutBackError::Rename {
        manifest: manifest.to_path_buf(),
        parked: parked.to_path_buf(),
        reason: crate::certs::error::io_reason(&e),
    })?;
    sync_parents(manifest, parked);
    Ok(())
}

/// fsyncs the directories of both ends of a rename.
pub fn sync_parents(a: &Path, b: &Path) {
    for p in [a, b] {
        if let Some(d) = p.parent() {
            // Best effort: the rename itself has happened either way.
            let _ = fsx::sync_dir(d);
        }
    }
}

/// Whether something accepts TCP connections at `address` (`host:port`) within `within`.
pub async fn accepts(address: &str, within: Duration) -> bool {
    matches!(
        tokio::time::timeout(within, tokio::net::TcpStream::connect(address)).await,
        Ok(Ok(_))
    )
}

/// How a pod was found stopped.
#[derive(Debug, Clone, Copy)]
pub struct Stopped {
    /// Whether it was answering at the first look.
    pub was_running: bool,
    pub elapsed: Duration,
}

/// Why a pod is not stopped at the end of the wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StillRunning {
    /// `address` still accepts connections.
    Accepting,
    /// The caller's own check says what still holds on (processes with files open).
    Busy(String),
}

/// Waits until nothing accepts connections at `address` and `busy` (asked only then) says
/// nothing holds on any more, polling every `poll`, for at most `timeout`.
pub async fn wait_stopped<F, Fut>(
    address: &str,
    connect_within: Duration,
    timeout: Duration,
    poll: Duration,
    mut busy: F,
) -> Result<Stopped, StillRunning>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<String>>,
{
    let started = Instant::now();
    let mut was_running = false;
    loop {
        let answering = accepts(address, connect_within).await;
        was_running |= answering;
        let why = if answering {
            Some(StillRunning::Accepting)
        } else {
            busy().await.map(StillRunning::Busy)
        };
        let Some(why) = why else {
            return Ok(Stopped {
                was_running,
                elapsed: started.elapsed(),
            });
        };
        if started.elapsed() >= timeout {
            return Err(why);
        }
        tokio::time::sleep(poll).await;
    }
}

/// Quotes one argument for a POSIX shell (only when it needs it).
pub fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parked_beside_the_manifests_dir() {
        assert_eq!(
            parked_path(Path::new("/etc/kubernetes/manifests/etcd.yaml"), ".x").unwrap(),
            PathBuf::from("/etc/kubernetes/etcd.yaml.x")
        );
        for bad in ["etcd.yaml", "manifests/etcd.yaml", "/etcd.yaml"] {
            let e = parked_path(Path::new(bad), ".x").unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("{bad}: ")) && e.contains("park"),
                "{e}"
            );
        }
    }

    #[test]
    fn park_and_put_back_keep_the_bytes_and_never_replace() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("manifests")).unwrap();
        let m = dir.path().join("manifests").join("etcd.yaml");
        std::fs::write(&m, b"the manifest").unwrap();
        let p = parked_path(&m, ".parked").unwrap();
        park(&m, &p).unwrap();
        assert!(!m.exists());
        std::fs::write(&m, b"someone else's").unwrap();
        let e = put_back(&m, &p).unwrap_err();
        assert!(matches!(e, PutBackError::Appeared { .. }), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"the manifest");
        std::fs::remove_file(&m).unwrap();
        put_back(&m, &p).unwrap();
        assert_eq!(std::fs::read(&m).unwrap(), b"the manifest");
        assert!(!p.exists());
        let e = put_back(&m, &p).unwrap_err();
        assert!(matches!(e, PutBackError::Appeared { .. }), "{e}");
        std::fs::remove_file(&m).unwrap();
        let e = put_back(&m, &p).unwrap_err().to_string();
        assert!(e.contains("no such file") && e.contains("mv "), "{e}");
    }

    #[test]
    fn quoting() {
        assert_eq!(
            shell_quote("a=https://1.2.3.4:2380,b=x"),
            "a=https://1.2.3.4:2380,b=x"
        );
        assert_eq!(shell_quote("/my snap.db"), "'/my snap.db'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[tokio::test]
    async fn waits_until_nothing_accepts_and_nothing_is_busy() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let short = Duration::from_millis(300);
        let e = wait_stopped(&address, short, Duration::ZERO, short, || async { None })
            .await
            .unwrap_err();
        assert_eq!(e, StillRunning::Accepting);
        drop(listener);
        let mut asked = 0;
        let stopped = wait_stopped(
            &address,
            short,
            Duration::from_secs(10),
            Duration::ZERO,
            || {
                asked += 1;
                let busy = (asked < 3).then(|| "pid 1".to_string());
                async move { busy }
            },
        )
        .await
        .unwrap();
        assert!(!stopped.was_running);
        assert_eq!(asked, 3);
    }
}
