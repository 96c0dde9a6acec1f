//! The annotated example inventory `cpkeep bootstrap example` prints: kubeadm's HA guide example
//! (control-plane nodes 192.168.1.10–12 behind the VIP 192.168.1.20). A test keeps it valid.

/// The example, as YAML with comments.
pub const EXAMPLE: &str = include_str!("example.yaml");

#[cfg(test)]
mod tests {
    #[test]
    fn the_example_parses_and_validates() {
        let inv = super::super::inventory::parse(super::EXAMPLE).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("calico.yaml"), "kind: List\n").unwrap();
        let spec = super::super::validate::validate(
            &inv,
            &super::super::validate::ValidateOptions {
                allow_even: false,
                base_dir: dir.path().to_path_buf(),
            },
        )
        .unwrap();
        assert_eq!(spec.control_plane.len(), 3);
        assert_eq!(spec.control_plane_endpoint.to_string(), "192.168.1.20:8443");
    }
}
