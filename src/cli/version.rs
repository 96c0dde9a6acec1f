//! `cpkeep version`.

use serde::Serialize;

use super::output::{Render, Renderer};
use super::Exit;

#[derive(Debug, Serialize)]
struct VersionReport {
    version: &'static str,
    target: &'static str,
    profile: &'static str,
}

impl Render for VersionReport {
    fn table(&self) -> String {
        format!(
            "cpkeep {} ({}, {})\n",
            self.version, self.target, self.profile
        )
    }
}

pub fn run(out: &Renderer) -> anyhow::Result<Exit> {
    out.print(&VersionReport {
        version: crate::VERSION,
        target: std::env::consts::ARCH,
        profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    })?;
    Ok(Exit::Ok)
}
