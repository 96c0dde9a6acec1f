//! How the runner reaches the new cluster's etcd: directly at each control-plane node's client URL
//! (`https://ADDRESS:2379`, where kubeadm's etcd listens), authenticated by a client certificate
//! cpkeep mints in memory from the bundle's etcd CA for one hour. Nothing is written: the key
//! never touches a disk and no etcdctl is needed on the nodes. Never prints.

use std::time::Duration;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::error::ApplyError;
use super::plan_file::{LoadedBundle, NodeView};
use crate::etcd::{ConnectionOptions, Endpoint, TlsMaterial};

/// The client URL of a control-plane node's etcd.
pub fn client_url(n: &NodeView) -> String {
    format!("https://{}:2379", bracket(&n.address))
}

/// The peer URL kubeadm gives a control-plane node's etcd member.
pub fn peer_url(n: &NodeView) -> String {
    format!("https://{}:2380", bracket(&n.address))
}

fn bracket(a: &str) -> String {
    if a.contains(':') {
        format!("[{a}]")
    } else {
        a.to_string()
    }
}

/// A one-hour etcd client identity signed by the bundle's etcd CA.
pub fn mint_client(b: &LoadedBundle) -> Result<TlsMaterial, ApplyError> {
    let ca_pem = b.read("pki/etcd/ca.crt")?;
    let ca_key_pem = b.read("pki/etcd/ca.key")?;
    let bad = |why: String| ApplyError::Bundle {
        path: b.dir.join("pki/etcd/ca.key"),
        reason: why,
    };
    let ca_key = KeyPair::from_pem(&String::from_utf8_lossy(&ca_key_pem))
        .map_err(|e| bad(format!("cannot load the etcd CA key: {e}")))?;
    let issuer = Issuer::from_ca_cert_pem(&String::from_utf8_lossy(&ca_pem), ca_key)
        .map_err(|e| bad(format!("cannot use the etcd CA: {e}")))?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| bad(format!("cannot generate a client key: {e}")))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "cpkeep-bootstrap");
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    // A little back-dated: a node's clock may trail the runner's by up to the preflight's second.
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::hours(1);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| bad(format!("cannot sign a client certificate: {e}")))?;
    Ok(TlsMaterial::from_pem(
        ca_pem,
        Some((cert.pem().into_bytes(), key.serialize_pem().into_bytes())),
    ))
}

/// Connection options for the given control-plane nodes' etcd members.
pub fn connection(
    nodes: &[&NodeView],
    tls: &TlsMaterial,
    timeout: Duration,
) -> Result<ConnectionOptions, ApplyError> {
    let endpoints = nodes
        .iter()
        .map(|n| {
            Endpoint::parse(&client_url(n), true).map_err(|e| ApplyError::Etcd {
                node: n.name.clone(),
                source: e,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ConnectionOptions {
        endpoints,
        tls: Some(tls.clone()),
        credentials: None,
        timeout,
    })
}
