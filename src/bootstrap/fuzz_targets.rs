//! The body of the `bootstrap_inventory` fuzz target (`fuzz/`, cargo-fuzz), kept in the library so
//! that a plain test runs it over the seed corpus and mutations too. It must never panic, whatever
//! the input.

use std::path::PathBuf;

use super::kubeadm;
use super::lb;
use super::plan;
use super::secrets::{CertificateKey, Secrets, Token};
use super::validate::{validate, ValidateOptions};

/// `bootstrap_inventory`: inventory text parsed and validated; whatever validates must render a
/// kubeadm configuration for every kubeadm node that the strict types read back, load balancer
/// files for every host, and a plan whose steps are numbered in order.
pub fn bootstrap_inventory(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(inv) = super::inventory::parse(text) else {
        return;
    };
    let opts = ValidateOptions {
        allow_even: data.len() % 2 == 1,
        base_dir: PathBuf::from("/nonexistent-cpkeep-fuzz"),
    };
    let Ok(spec) = validate(&inv, &opts) else {
        return;
    };
    assert!(spec.control_plane.len() >= 3);
    assert!(spec.fault_tolerance() >= 1);
    let (Ok(token), Ok(certificate_key)) = (
        Token::parse("abcdef.0123456789abcdef"),
        CertificateKey::parse(&"ab".repeat(32)),
    ) else {
        panic!("the fixed secrets must parse");
    };
    let secrets = Secrets {
        token,
        certificate_key,
    };
    for node in plan::nodes(&spec) {
        let Some(n) = spec
            .control_plane
            .iter()
            .chain(&spec.workers)
            .chain(&spec.load_balancer.nodes)
            .find(|x| x.name == node.name)
        else {
            panic!("a planned node {} is not in the spec", node.name);
        };
        if node.role != kubeadm::Role::LoadBalancer {
            let yaml = kubeadm::render(&spec, n, node.role, &secrets, "sha256:00");
            let docs = yaml.as_deref().map(kubeadm::parse);
            assert!(matches!(docs, Ok(Ok(_))), "{}: {docs:?}", n.name);
        }
        for f in lb::host_files(&spec, n).unwrap_or_default() {
            if f.rel.starts_with("manifests/") {
                assert!(lb::pod::Pod::parse(&f.text).is_ok(), "{}", f.rel);
            }
        }
    }
    let p = plan::build(
        &spec,
        plan::PlanInputs {
            ca_cert_hash: "sha256:00",
            cas: Vec::new(),
            files: Vec::new(),
        },
    );
    assert!(p.steps.iter().enumerate().all(|(i, s)| s.number == i + 1));
}

#[cfg(test)]
mod tests {
    use super::bootstrap_inventory;

    /// Seeds plus deterministic mutations (byte flips, YAML punctuation inserted, truncation,
    /// lines repeated).
    #[test]
    fn bootstrap_inventory_survives_seeds_and_mutations() {
        let seeds = crate::mutate::seeds("bootstrap_inventory");
        assert!(seeds.len() >= 4);
        let mut rng = crate::mutate::XorShift::new(0x2545_F491_4F6C_DD1D);
        let specials = b":-{}[],#&*!|>'\"%@ \n\t.0123456789/";
        for seed in &seeds {
            // Every seed is a valid inventory, so the render-and-read-back half is exercised.
            let inv = super::super::inventory::parse(std::str::from_utf8(seed).unwrap()).unwrap();
            let opts = super::ValidateOptions {
                allow_even: false,
                base_dir: std::path::PathBuf::from("/nonexistent-cpkeep-fuzz"),
            };
            let text = String::from_utf8_lossy(seed);
            if !text.contains("cni:") {
                super::validate(&inv, &opts)
                    .unwrap_or_else(|r| panic!("{}: {}", r.field, r.reason));
            }
            bootstrap_inventory(seed);
        }
        for i in 0..3000 {
            let input = crate::mutate::mutate(&seeds[i % seeds.len()], specials, &mut rng);
            bootstrap_inventory(&input);
        }
    }
}
