//! The double's access to the cluster's etcd, where real kubeadm and kubectl would ask the API
//! server. `kubeadm init` saves the endpoint and a client certificate (apiserver-etcd-client) in
//! CLUSTER_DIR/etcd/; `kubeadm join` and `kubectl` on any node use them.

use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions};

use crate::config::Config;
use crate::{fail, Res};

/// Secrets, ConfigMaps and Nodes live where the API server would keep them.
pub const CERTS_SECRET: &str = "/registry/secrets/kube-system/kubeadm-certs";
pub const CLUSTER_INFO: &str = "/registry/configmaps/kube-public/cluster-info";
pub const NODES: &str = "/registry/minions/";
pub const APPLIED: &str = "/registry/cpkeep-double/applied/";

pub fn token_key(id: &str) -> String {
    format!("/registry/secrets/kube-system/bootstrap-token-{id}")
}

pub struct Access {
    pub endpoints: Vec<String>,
    pub ca: String,
    pub cert: String,
    pub key: String,
}

impl Access {
    /// Saves the access for the other nodes (kubeadm init).
    pub fn save(&self, config: &Config) -> Res<()> {
        let dir = format!("{}/etcd", config.get("CLUSTER_DIR")?);
        crate::certs::write(&format!("{dir}/ca.crt"), self.ca.as_bytes(), 0o644)?;
        crate::certs::write(&format!("{dir}/client.crt"), self.cert.as_bytes(), 0o644)?;
        crate::certs::write(&format!("{dir}/client.key"), self.key.as_bytes(), 0o600)?;
        crate::certs::write(
            &format!("{dir}/endpoints"),
            self.endpoints.join(",").as_bytes(),
            0o644,
        )
    }

    pub fn load(config: &Config) -> Res<Access> {
        let dir = format!("{}/etcd", config.get("CLUSTER_DIR")?);
        let endpoints = match std::fs::read_to_string(format!("{dir}/endpoints")) {
            Ok(e) => e.trim().split(',').map(str::to_string).collect(),
            Err(_) => fail!(
                "couldn't reach the cluster: no control plane has been initialised \
                 (the double finds no {dir}/endpoints)"
            ),
        };
        Ok(Access {
            endpoints,
            ca: crate::certs::read(&format!("{dir}/ca.crt"))?,
            cert: crate::certs::read(&format!("{dir}/client.crt"))?,
            key: crate::certs::read(&format!("{dir}/client.key"))?,
        })
    }

    pub async fn connect(&self) -> Res<Client> {
        let tls = TlsOptions::new()
            .ca_certificate(Certificate::from_pem(self.ca.clone()))
            .identity(Identity::from_pem(self.cert.clone(), self.key.clone()));
        let opts = ConnectOptions::new()
            .with_tls(tls)
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(10));
        match Client::connect(self.endpoints.clone(), Some(opts)).await {
            Ok(c) => Ok(c),
            Err(e) => fail!("couldn't reach etcd at {}: {e}", self.endpoints.join(",")),
        }
    }
}

pub async fn put_json(c: &mut Client, key: &str, v: &serde_json::Value) -> Res<()> {
    c.put(key, v.to_string(), None)
        .await
        .map_err(|e| format!("etcd put {key}: {e}"))?;
    Ok(())
}

pub async fn get_json(c: &mut Client, key: &str) -> Res<Option<serde_json::Value>> {
    let r = c
        .get(key, None)
        .await
        .map_err(|e| format!("etcd get {key}: {e}"))?;
    match r.kvs().first() {
        None => Ok(None),
        Some(kv) => Ok(Some(
            serde_json::from_slice(kv.value()).map_err(|e| format!("{key}: {e}"))?,
        )),
    }
}

pub async fn list_json(c: &mut Client, prefix: &str) -> Res<Vec<serde_json::Value>> {
    let r = c
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .map_err(|e| format!("etcd get {prefix}*: {e}"))?;
    let mut out = Vec::new();
    for kv in r.kvs() {
        out.push(serde_json::from_slice(kv.value()).map_err(|e| format!("{prefix}: {e}"))?);
    }
    Ok(out)
}

/// The Node object kubeadm's kubelet would register.
pub async fn register_node(
    c: &mut Client,
    name: &str,
    ip: &str,
    control_plane: bool,
    kubelet_version: &str,
) -> Res<()> {
    let mut labels = serde_json::json!({ "kubernetes.io/hostname": name });
    if control_plane {
        labels["node-role.kubernetes.io/control-plane"] = "".into();
    }
    let node = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": name, "labels": labels },
        "status": {
            "addresses": [{ "type": "InternalIP", "address": ip }, { "type": "Hostname", "address": name }],
            "conditions": [{ "type": "Ready", "status": "True", "reason": "KubeletReady",
                             "message": "kubelet is posting ready status (cpkeep test double)" }],
            "nodeInfo": { "kubeletVersion": kubelet_version }
        }
    });
    put_json(c, &format!("{NODES}{name}"), &node).await
}
