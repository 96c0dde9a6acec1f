//! double.env: KEY=VALUE lines the test harness writes beside the links
//! (/usr/local/sbin/double.env in the node; CPKEEP_DOUBLE_ENV overrides the path).
//!
//! Keys: KUBEADM_VERSION, KUBELET_VERSION (`v1.31.4`), ETCD (the etcd binary the kubelet double
//! runs), NODE_IP (the node's address), CLUSTER_DIR (host directory shared by the nodes, standing in
//! for the API server: `kubeadm init` leaves the etcd endpoint and a client certificate there),
//! failure injection: FAIL_JOIN_AFTER_MEMBER_ADD (`1`: member added, etcd.yaml written, then the
//! wait for etcd fails; `before-manifest`: member added, nothing written), CERTS_TTL_SECONDS (the
//! kubeadm-certs Secret's lifetime, default 7200), WAIT_SECONDS (kubeadm's waits, default 120).

use std::collections::BTreeMap;

use crate::{fail, Res};

pub struct Config {
    values: BTreeMap<String, String>,
}

impl Config {
    pub fn load() -> Res<Config> {
        let path = std::env::var("CPKEEP_DOUBLE_ENV")
            .unwrap_or_else(|_| "/usr/local/sbin/double.env".to_string());
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => fail!("double: cannot read its settings {path}: {e}"),
        };
        let mut values = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                fail!("double: {path} line {}: not KEY=VALUE", n + 1);
            };
            values.insert(k.trim().to_string(), v.trim().to_string());
        }
        Ok(Config { values })
    }

    pub fn get(&self, key: &str) -> Res<&str> {
        match self.values.get(key) {
            Some(v) => Ok(v),
            None => fail!("double: {key} is not set in double.env"),
        }
    }

    pub fn opt(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    pub fn seconds(&self, key: &str, default: u64) -> Res<u64> {
        match self.opt(key) {
            None => Ok(default),
            Some(v) => match v.parse() {
                Ok(n) => Ok(n),
                Err(_) => fail!("double: {key}={v} is not a number of seconds"),
            },
        }
    }
}
