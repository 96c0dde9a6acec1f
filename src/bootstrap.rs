//! Bootstrapping an HA control plane with kubeadm, planned before any node is touched: an inventory
//! file is read and validated, then a bundle is written holding the cluster-wide CAs, the bootstrap
//! secrets, one kubeadm configuration per node, the load balancer's configs and static pods, a
//! RUNBOOK with every command in order, and `plan.json`.
//!
//! Owns the inventory format, the validation rules, the kubeadm config types, the load balancer
//! renderers, the plan and the bundle layout. Never prints and never contacts a node: applying a
//! plan over SSH is a separate step.

pub mod apply;
pub mod bundle;
pub mod drill;
pub mod error;
pub mod example;
/// Fuzz target bodies: in tests and cargo-fuzz builds only, never in the binary.
#[cfg(any(test, fuzzing))]
pub mod fuzz_targets;
pub mod inventory;
pub mod kubeadm;
pub mod lb;
pub mod pki;
pub mod plan;
pub mod runbook;
pub mod secrets;
pub mod spec;
pub mod validate;
pub mod version;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{certs, fsx};

use bundle::{BundleFile, FileChange};
use error::BootstrapError;
use kubeadm::Role;
use pki::Pki;
use plan::{Plan, PlanFile};
use secrets::{CertificateKey, Secrets, Token};
use spec::ClusterSpec;

/// What `cpkeep bootstrap plan` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    pub inventory: PathBuf,
    pub out: PathBuf,
    /// Accept an even control-plane count.
    pub allow_even: bool,
    /// Write the token and certificate key into RUNBOOK.md (then written 0600).
    pub show_secrets: bool,
    /// Replace the bundle's bootstrap token with a new one.
    pub rotate_token: bool,
    /// Adopt the CAs of an existing kubeadm `pki` directory instead of generating them.
    pub pki_from: Option<PathBuf>,
}

/// What a plan run produced.
#[derive(Debug, Clone)]
pub struct PlanReport {
    pub plan: Plan,
    pub out: PathBuf,
    pub changes: Vec<FileChange>,
    /// Things the operator should know that are not errors.
    pub notes: Vec<String>,
    /// The secrets, only when `show_secrets` asked for them.
    pub secrets: Option<Secrets>,
}

/// Reads and validates the inventory: the cluster it describes.
pub fn load_spec(inventory: &Path, allow_even: bool) -> Result<ClusterSpec, BootstrapError> {
    let inv = inventory::load(inventory)?;
    let opts = validate::ValidateOptions {
        allow_even,
        base_dir: inventory
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf(),
    };
    validate::validate(&inv, &opts).map_err(|r| BootstrapError::Invalid {
        path: inventory.to_path_buf(),
        field: r.field,
        reason: r.reason,
    })
}

/// Validates the inventory, then writes (or brings up to date) the bundle in `opts.out`.
/// Everything is checked before the first file is written.
pub fn plan(opts: &PlanOptions) -> Result<PlanReport, BootstrapError> {
    let spec = load_spec(&opts.inventory, opts.allow_even)?;
    let existing = bundle::check_out_dir(&opts.out)?;
    let mut notes = Vec::new();
    let pki = bundle_pki(&spec, &opts.out, opts.pki_from.as_deref(), &mut notes)?;
    let secrets = bundle_secrets(&opts.out, existing, opts.rotate_token)?;
    if spec.cni.is_none() {
        notes.push("no cni.manifest: install a pod network right after init (the RUNBOOK says where); nodes stay NotReady without one".to_string());
    }
    let (plan, files) = render_bundle(&spec, &pki, &secrets, opts.show_secrets)?;
    let changes = bundle::write(&opts.out, &files)?;
    Ok(PlanReport {
        plan,
        out: opts.out.clone(),
        changes,
        notes,
        secrets: opts.show_secrets.then_some(secrets),
    })
}

/// Every file of the bundle for `spec` with these CAs and secrets, `plan.json` last. Pure.
pub fn render_bundle(
    spec: &ClusterSpec,
    pki: &Pki,
    secrets: &Secrets,
    show_secrets: bool,
) -> Result<(Plan, Vec<BundleFile>), BootstrapError> {
    let mut files: Vec<BundleFile> = pki
        .files
        .iter()
        .map(|f| BundleFile {
            rel: format!("pki/{}", f.rel),
            bytes: f.bytes.clone(),
            mode: f.mode,
        })
        .collect();
    files.push(BundleFile {
        rel: "secrets/bootstrap-token".into(),
        bytes: format!("{}\n", secrets.token.expose()).into_bytes(),
        mode: fsx::MODE_SECRET,
    });
    files.push(BundleFile {
        rel: "secrets/certificate-key".into(),
        bytes: format!("{}\n", secrets.certificate_key.expose()).into_bytes(),
        mode: fsx::MODE_SECRET,
    });
    for node in plan::nodes(spec) {
        let Some(n) = spec
            .control_plane
            .iter()
            .chain(&spec.workers)
            .chain(&spec.load_balancer.nodes)
            .find(|n| n.name == node.name)
        else {
            continue;
        };
        if node.role != Role::LoadBalancer {
            let text = kubeadm::render(spec, n, node.role, secrets, &pki.ca_cert_hash).map_err(
                |reason| BootstrapError::Generate {
                    what: format!("{}'s kubeadm configuration", n.name),
                    reason,
                },
            )?;
            files.push(BundleFile {
                rel: format!("nodes/{}/kubeadm.yaml", n.name),
                bytes: text.into_bytes(),
                mode: fsx::MODE_SECRET,
            });
        }
        let lb_files = lb::host_files(spec, n).map_err(|reason| BootstrapError::Generate {
            what: format!("{}'s load balancer files", n.name),
            reason,
        })?;
        for f in lb_files {
            files.push(BundleFile {
                rel: format!("nodes/{}/{}", n.name, f.rel),
                bytes: f.text.into_bytes(),
                mode: if f.executable {
                    0o755
                } else {
                    fsx::MODE_PUBLIC
                },
            });
        }
    }
    let mut plan = plan::build(
        spec,
        plan::PlanInputs {
            ca_cert_hash: &pki.ca_cert_hash,
            cas: pki.cas.clone(),
            files: Vec::new(),
        },
    );
    let runbook = runbook::render(
        &plan,
        &runbook::RunbookOptions {
            show_secrets: show_secrets.then_some(secrets),
        },
    );
    files.push(BundleFile {
        rel: "RUNBOOK.md".into(),
        bytes: runbook.into_bytes(),
        mode: if show_secrets {
            fsx::MODE_SECRET
        } else {
            fsx::MODE_PUBLIC
        },
    });
    plan.files = files
        .iter()
        .map(|f| PlanFile {
            path: f.rel.clone(),
            sha256: hex::encode(Sha256::digest(&f.bytes)),
            mode: format!("{:04o}", f.mode),
            secret: f.mode == fsx::MODE_SECRET,
        })
        .collect();
    let mut json = serde_json::to_vec_pretty(&plan).map_err(|e| BootstrapError::Generate {
        what: "plan.json".into(),
        reason: e.to_string(),
    })?;
    json.push(b'\n');
    files.push(BundleFile {
        rel: bundle::PLAN_FILE.into(),
        bytes: json,
        mode: fsx::MODE_PUBLIC,
    });
    Ok((plan, files))
}

/// The bundle's CAs: kept when the bundle has them (a new CA would orphan a running cluster),
/// adopted with `--pki-from`, or generated.
fn bundle_pki(
    spec: &ClusterSpec,
    out: &Path,
    pki_from: Option<&Path>,
    notes: &mut Vec<String>,
) -> Result<Pki, BootstrapError> {
    let key = spec.certificates.key_algorithm;
    let own = out.join("pki");
    let adopted = pki_from.map(|dir| pki::load(dir, key)).transpose()?;
    let pki = if own.join("ca.crt").exists() || own.join("ca.key").exists() {
        let kept = pki::load(&own, key)?;
        if let Some(adopted) = &adopted {
            let same = pki::CAS.iter().all(|(stem, _)| {
                [format!("{stem}.crt"), format!("{stem}.key")]
                    .iter()
                    .all(|rel| {
                        kept.file(rel).map(|f| &f.bytes) == adopted.file(rel).map(|f| &f.bytes)
                    })
            });
            if !same {
                return Err(BootstrapError::Pki {
                    path: own,
                    reason: "holds other CAs than --pki-from: the bundle keeps its CAs (the cluster may already trust them); remove this pki/ directory to adopt others".into(),
                });
            }
        }
        kept
    } else if let Some(adopted) = adopted {
        adopted
    } else {
        pki::generate(key, spec.certificates.ca_validity)?
    };
    if let Some(ca) = pki.cas.first() {
        if ca.key_algorithm != key.name() {
            notes.push(format!(
                "pki/ keeps its {} CAs; certificates.keyAlgorithm {} applies to the certificates kubeadm issues",
                ca.key_algorithm,
                key.name()
            ));
        }
    }
    Ok(pki)
}

/// The bundle's secrets: kept when present (and well-formed), else generated.
fn bundle_secrets(
    out: &Path,
    existing: bool,
    rotate_token: bool,
) -> Result<Secrets, BootstrapError> {
    fn read<T>(
        path: PathBuf,
        existing: bool,
        parse: fn(&str) -> Result<T, String>,
        generate: fn() -> Result<T, BootstrapError>,
    ) -> Result<T, BootstrapError> {
        if !existing {
            return generate();
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text).map_err(|reason| BootstrapError::Secret { path, reason }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => generate(),
            Err(e) => Err(BootstrapError::Secret {
                path,
                reason: format!("cannot read it: {}", certs::error::io_reason(&e)),
            }),
        }
    }
    let token = if rotate_token {
        Token::generate()?
    } else {
        read(
            out.join("secrets/bootstrap-token"),
            existing,
            Token::parse,
            Token::generate,
        )?
    };
    let certificate_key = read(
        out.join("secrets/certificate-key"),
        existing,
        CertificateKey::parse,
        CertificateKey::generate,
    )?;
    Ok(Secrets {
        token,
        certificate_key,
    })
}

#[cfg(test)]
mod tests;
