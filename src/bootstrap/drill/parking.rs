//! Stopping and starting a control-plane node's etcd and kube-apiserver by parking their static
//! pod manifests: on this machine with `staticpod::park` (the code `certs renew --restart` uses),
//! or on a node over SSH with the same parked names and the same rules (never replace a manifest
//! that appeared meanwhile). Never prints.

use std::path::{Path, PathBuf};

use crate::remote::{Script, Session};
use crate::staticpod::park::{park, parked_path, put_back};

/// The manifests a drill stops, in stop order (etcd last to go, first to come back is not
/// needed: the kubelet starts both at once).
pub const DRILL_MANIFESTS: [&str; 2] = ["kube-apiserver.yaml", "etcd.yaml"];
/// Suffix of a manifest parked by the drill.
pub const PARK_SUFFIX: &str = ".cpkeep-drill";

/// How a drill takes a member down and brings it back: parked static pod manifests on a real node,
/// or whatever else runs the member (the demo's sandbox stops and starts its process).
#[async_trait::async_trait]
pub trait Outage: Send {
    /// Takes the member down; says what was done.
    async fn stop(&mut self) -> Result<String, String>;
    /// Brings it back; says what was done.
    async fn start(&mut self) -> Result<String, String>;
}

/// A [`Parker`] with the manifests it parked.
pub struct ParkedManifests<'a> {
    pub parker: Parker<'a>,
    parked: Vec<String>,
}

impl<'a> ParkedManifests<'a> {
    pub fn new(parker: Parker<'a>) -> Self {
        Self {
            parker,
            parked: Vec::new(),
        }
    }
}

#[async_trait::async_trait]
impl Outage for ParkedManifests<'_> {
    async fn stop(&mut self) -> Result<String, String> {
        self.parked = self.parker.park_all().await?;
        Ok(format!("parked {}", self.parked.join(", ")))
    }

    async fn start(&mut self) -> Result<String, String> {
        self.parker.put_back(&self.parked).await?;
        Ok(format!(
            "put back {}",
            std::mem::take(&mut self.parked).join(", ")
        ))
    }
}

/// Where the manifests live, and how to move them.
pub enum Parker<'a> {
    Local {
        manifests_dir: PathBuf,
    },
    Remote {
        session: &'a Session,
        manifests_dir: PathBuf,
    },
}

impl Parker<'_> {
    fn paths(&self, file: &str) -> Result<(PathBuf, PathBuf), String> {
        let dir = match self {
            Parker::Local { manifests_dir } | Parker::Remote { manifests_dir, .. } => manifests_dir,
        };
        let manifest = dir.join(file);
        let parked = parked_path(&manifest, PARK_SUFFIX).map_err(|e| e.to_string())?;
        Ok((manifest, parked))
    }

    /// Parks every drill manifest; on a failure the ones already parked are put back.
    pub async fn park_all(&self) -> Result<Vec<String>, String> {
        let mut done = Vec::new();
        for f in DRILL_MANIFESTS {
            let (m, p) = self.paths(f)?;
            if let Err(e) = self.park_one(&m, &p).await {
                let _ = self.put_back(&done).await;
                return Err(e);
            }
            done.push(f.to_string());
        }
        Ok(done)
    }

    async fn park_one(&self, m: &Path, p: &Path) -> Result<(), String> {
        match self {
            Parker::Local { .. } => {
                if p.exists() {
                    return Err(format!(
                        "{} exists: an earlier drill did not finish; move it back to {} first",
                        p.display(),
                        m.display()
                    ));
                }
                park(m, p).map_err(|e| {
                    format!(
                        "cannot park {}: {}",
                        m.display(),
                        crate::certs::error::io_reason(&e)
                    )
                })
            }
            Parker::Remote { session, .. } => {
                let (m, p) = (m.display().to_string(), p.display().to_string());
                let q = crate::staticpod::park::shell_quote;
                session
                    .run_ok(&Script::new(format!(
                        "test -f {m} || {{ echo 'no such manifest' >&2; exit 1; }}; \
                         test ! -e {p} || {{ echo '{p} exists: an earlier drill did not finish' >&2; exit 1; }}; \
                         mv {m} {p} && sync",
                        m = q(&m),
                        p = q(&p)
                    )))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Puts the parked manifests back; every one is tried, the failures are returned together.
    pub async fn put_back(&self, files: &[String]) -> Result<(), String> {
        let mut failed = Vec::new();
        for f in files {
            let (m, p) = self.paths(f)?;
            let r = match self {
                Parker::Local { .. } => put_back(&m, &p).map_err(|e| e.to_string()),
                Parker::Remote { session, .. } => {
                    let q = crate::staticpod::park::shell_quote;
                    let (ms, ps) = (m.display().to_string(), p.display().to_string());
                    session
                        .run_ok(&Script::new(format!(
                            "test ! -e {m} || {{ echo '{m} appeared meanwhile; the parked one is still at {p}' >&2; exit 1; }}; mv {p} {m} && sync",
                            m = q(&ms),
                            p = q(&ps)
                        )))
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            };
            if let Err(e) = r {
                failed.push(e);
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }
}
