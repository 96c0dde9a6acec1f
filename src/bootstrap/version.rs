//! Kubernetes versions as the inventory names them, and the kubeadm configuration API each needs:
//! `kubeadm.k8s.io/v1beta3` from 1.22, `v1beta4` from 1.31 (v1beta3 is deprecated there and removed
//! in 1.36). Never prints.

use std::fmt;

use serde::Serialize;

/// The oldest Kubernetes minor version cpkeep plans for (the first with kubeadm's v1beta3 API).
pub const OLDEST_MINOR: u32 = 22;
/// The first minor version whose kubeadm speaks v1beta4.
pub const V1BETA4_MINOR: u32 = 31;

/// A Kubernetes release `v1.MINOR.PATCH[-pre]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeVersion {
    pub minor: u32,
    pub patch: u32,
    /// A pre-release suffix such as `-rc.1`, kept verbatim.
    pub pre: String,
}

impl KubeVersion {
    /// Parses `v1.31.4` or `1.31.4` (`-rc.1`-style suffixes kept).
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad =
            || format!("{s:?} is not a Kubernetes version (expected v1.MINOR.PATCH, e.g. v1.31.4)");
        let rest = s.strip_prefix('v').unwrap_or(s);
        let (core, pre) = match rest.find('-') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let parts: Vec<&str> = core.split('.').collect();
        let [major, minor, patch] = parts.as_slice() else {
            return Err(bad());
        };
        let num = |p: &str| -> Result<u32, String> {
            if p.is_empty()
                || !p.bytes().all(|b| b.is_ascii_digit())
                || (p.len() > 1 && p.starts_with('0'))
            {
                return Err(bad());
            }
            p.parse::<u32>().map_err(|_| bad())
        };
        let major = num(major)?;
        let minor = num(minor)?;
        let patch = num(patch)?;
        if pre.len() == 1
            || !pre
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(bad());
        }
        if major != 1 {
            return Err(format!("{s:?}: only Kubernetes 1.x exists"));
        }
        if minor < OLDEST_MINOR {
            return Err(format!(
                "{s:?} is older than v1.{OLDEST_MINOR}: kubeadm before 1.{OLDEST_MINOR} has no v1beta3 configuration API, which cpkeep needs"
            ));
        }
        Ok(Self {
            minor,
            patch,
            pre: pre.to_string(),
        })
    }

    /// The kubeadm configuration API this version's kubeadm reads.
    pub fn kubeadm_api(&self) -> KubeadmApi {
        if self.minor >= V1BETA4_MINOR {
            KubeadmApi::V1Beta4
        } else {
            KubeadmApi::V1Beta3
        }
    }

    /// At least `1.minor`.
    pub fn at_least(&self, minor: u32) -> bool {
        self.minor >= minor
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v1.{}.{}{}", self.minor, self.patch, self.pre)
    }
}

impl Serialize for KubeVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A kubeadm configuration API version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum KubeadmApi {
    #[serde(rename = "kubeadm.k8s.io/v1beta3")]
    V1Beta3,
    #[serde(rename = "kubeadm.k8s.io/v1beta4")]
    V1Beta4,
}

impl KubeadmApi {
    pub fn as_str(self) -> &'static str {
        match self {
            KubeadmApi::V1Beta3 => "kubeadm.k8s.io/v1beta3",
            KubeadmApi::V1Beta4 => "kubeadm.k8s.io/v1beta4",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_pick_their_api() {
        let v = KubeVersion::parse("v1.31.4").unwrap();
        assert_eq!((v.minor, v.patch), (31, 4));
        assert_eq!(v.kubeadm_api(), KubeadmApi::V1Beta4);
        assert_eq!(v.to_string(), "v1.31.4");
        let v = KubeVersion::parse("1.30.0").unwrap();
        assert_eq!(v.kubeadm_api(), KubeadmApi::V1Beta3);
        assert_eq!(v.to_string(), "v1.30.0");
        assert_eq!(
            KubeVersion::parse("v1.22.0").unwrap().kubeadm_api(),
            KubeadmApi::V1Beta3
        );
        assert_eq!(
            KubeVersion::parse("v1.32.0-rc.1").unwrap().to_string(),
            "v1.32.0-rc.1"
        );
    }

    #[test]
    fn bad_versions_are_refused() {
        for bad in [
            "", "v1.31", "1.31.x", "v2.0.0", "v1.21.14", "latest", "v1.031.1", "v1.31.4-",
            "v1.31.4 ",
        ] {
            assert!(KubeVersion::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(KubeVersion::parse("v1.21.0")
            .unwrap_err()
            .contains("older than v1.22"));
    }
}
