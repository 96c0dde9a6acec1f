//! The inventory file (`cpkeep/v1alpha1`, kind `Cluster`): its YAML shape as strict serde types and
//! the reading of it. Every mapping refuses unknown fields, so a misspelt key is an error naming the
//! key and its line instead of a silently ignored setting. Scalars the validator judges are kept with
//! their line ([`Spanned`]) so that a refusal can point at them.
//!
//! This module only parses: it never judges values (see `validate`), never writes and never prints.

use std::path::Path;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::error::BootstrapError;

/// A string with the line it came from.
pub type Text = Spanned<String>;

/// The whole inventory, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Inventory {
    pub api_version: Text,
    pub kind: Text,
    pub name: Text,
    pub kubernetes_version: Text,
    pub control_plane_endpoint: Text,
    pub load_balancer: LoadBalancer,
    pub networking: Networking,
    pub control_plane: Vec<Node>,
    #[serde(default)]
    pub workers: Vec<Node>,
    #[serde(default)]
    pub cni: Option<Cni>,
    #[serde(default)]
    pub certificates: Option<Certificates>,
}

/// `loadBalancer`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadBalancer {
    pub mode: Text,
    #[serde(default)]
    pub vip: Option<Text>,
    #[serde(default)]
    pub interface: Option<Text>,
    /// Dedicated load-balancer hosts; empty means the control-plane nodes run it.
    #[serde(default)]
    pub nodes: Vec<Node>,
}

/// `networking`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Networking {
    pub pod_subnet: Text,
    #[serde(default)]
    pub service_subnet: Option<Text>,
    #[serde(default)]
    pub dns_domain: Option<Text>,
}

/// One host: a control-plane node, a worker or a dedicated load balancer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Node {
    pub name: Text,
    pub address: Text,
    #[serde(default)]
    pub ssh: Option<Ssh>,
}

/// How to reach a host over SSH (the user's OpenSSH configuration fills in the rest).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Ssh {
    #[serde(default)]
    pub user: Option<Text>,
    #[serde(default)]
    pub port: Option<Spanned<i64>>,
    #[serde(default)]
    pub identity_file: Option<Text>,
    /// The machine cpkeep runs on: commands run here, without ssh.
    #[serde(default)]
    pub local: Option<Spanned<bool>>,
}

/// `cni`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cni {
    pub manifest: Text,
}

/// `certificates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Certificates {
    #[serde(default)]
    pub key_algorithm: Option<Text>,
    #[serde(default)]
    pub validity: Option<Text>,
    #[serde(default)]
    pub ca_validity: Option<Text>,
    #[serde(default)]
    pub distribution: Option<Text>,
}

/// Reads and parses the inventory at `path`.
pub fn load(path: &Path) -> Result<Inventory, BootstrapError> {
    let text = std::fs::read_to_string(path).map_err(|source| BootstrapError::ReadInventory {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|reason| BootstrapError::Syntax {
        path: path.to_path_buf(),
        reason,
    })
}

/// Parses inventory text; the error is one line with the line and column of the fault.
pub fn parse(text: &str) -> Result<Inventory, String> {
    if text.trim().is_empty() {
        return Err(
            "the file is empty (cpkeep bootstrap example prints an annotated inventory)".into(),
        );
    }
    serde_saphyr::from_str::<Inventory>(text).map_err(|e| one_line_yaml_error(&e))
}

/// serde-saphyr renders errors with a source snippet over several lines; users get one line: the
/// position, then the parser's message.
pub fn one_line_yaml_error(e: &serde_saphyr::Error) -> String {
    let message = e.without_snippet().to_string();
    let message = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    match e.location() {
        Some(loc) if loc.line() > 0 && !message.contains(&format!("line {}", loc.line())) => {
            format!("line {} column {}: {message}", loc.line(), loc.column())
        }
        _ => message,
    }
}
