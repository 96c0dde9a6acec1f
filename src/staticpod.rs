//! Static pods as the kubelet runs them: a manifest in its manifests directory. Stopping a
//! component means moving its manifest out ("parking" it) and starting it means moving it back;
//! shared by `restore --kubeadm` (etcd) and `certs renew --restart` (every control-plane pod).
//! Only computes paths; never moves, writes or prints anything itself.

use std::path::{Path, PathBuf};

/// Where `manifest` is parked: `<manifests dir>/../<file><suffix>`, beside the manifests
/// directory and never inside it (the kubelet runs every file it finds there). `None` when the
/// path has no file name or the manifests directory no parent.
pub fn parked_path(manifest: &Path, suffix: &str) -> Option<PathBuf> {
    let file = manifest.file_name()?;
    let outer = manifest
        .parent()
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())?;
    let mut name = file.to_os_string();
    name.push(suffix);
    Some(outer.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parked_beside_the_manifests_dir() {
        assert_eq!(
            parked_path(Path::new("/etc/kubernetes/manifests/etcd.yaml"), ".x"),
            Some(PathBuf::from("/etc/kubernetes/etcd.yaml.x"))
        );
        assert_eq!(parked_path(Path::new("etcd.yaml"), ".x"), None);
        assert_eq!(parked_path(Path::new("manifests/etcd.yaml"), ".x"), None);
    }
}
