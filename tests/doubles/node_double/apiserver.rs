//! The API server stand-in the kubelet double runs for kube-apiserver.yaml: HTTPS on
//! `--advertise-address:--secure-port` with the manifest's `--tls-cert-file`/`--tls-private-key-file`,
//! answering `/readyz`, `/healthz` and `/livez` with 200 `ok` while the etcd of `--etcd-servers`
//! answers (with the manifest's etcd client certificate), else 500. Nothing else of the API.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

use crate::cluster::Access;
use crate::{fail, Res};

/// Flags of kubeadm's kube-apiserver manifest the stand-in accepts without using.
const IGNORED: &[&str] = &[
    "--allow-privileged",
    "--authorization-mode",
    "--client-ca-file",
    "--enable-bootstrap-token-auth",
    "--service-account-key-file",
    "--service-account-signing-key-file",
    "--service-cluster-ip-range",
];

pub async fn main(args: Vec<String>) -> Res<()> {
    let mut get = std::collections::BTreeMap::new();
    for a in &args {
        let Some((k, v)) = a.split_once('=') else {
            fail!("kube-apiserver double: expected --flag=value, got {a:?}");
        };
        if !IGNORED.contains(&k) {
            get.insert(k.to_string(), v.to_string());
        }
    }
    let mut take = |k: &str| -> Res<String> {
        match get.remove(k) {
            Some(v) => Ok(v),
            None => fail!("kube-apiserver double: {k} is required"),
        }
    };
    let ip = take("--advertise-address")?;
    let port: u16 = take("--secure-port")?
        .parse()
        .map_err(|e| format!("--secure-port: {e}"))?;
    let cert = take("--tls-cert-file")?;
    let key = take("--tls-private-key-file")?;
    let access = Access {
        endpoints: take("--etcd-servers")?
            .split(',')
            .map(str::to_string)
            .collect(),
        ca: crate::certs::read(&take("--etcd-cafile")?)?,
        cert: crate::certs::read(&take("--etcd-certfile")?)?,
        key: crate::certs::read(&take("--etcd-keyfile")?)?,
    };
    if let Some(k) = get.keys().next() {
        fail!("kube-apiserver double: unknown flag {k}");
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .map_err(|e| format!("{cert}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{cert}: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| format!("{key}: {e}"))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| e.to_string())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind((ip.as_str(), port))
        .await
        .map_err(|e| format!("kube-apiserver double: cannot listen on {ip}:{port}: {e}"))?;
    eprintln!("kube-apiserver double: serving /readyz on https://{ip}:{port}");
    let access = Arc::new(access);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (acceptor, access) = (acceptor.clone(), access.clone());
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16384 {
                match tls.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf);
            let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
            let (code, body) = match path.split('?').next().unwrap_or("") {
                "/readyz" | "/healthz" | "/livez" => match etcd_ok(&access).await {
                    Ok(()) => (200, "ok".to_string()),
                    Err(e) => (500, format!("[-]etcd failed: {e}\n{path} check failed")),
                },
                _ => (
                    404,
                    "not found (kube-apiserver double serves /readyz only)".into(),
                ),
            };
            let reason = match code {
                200 => "OK",
                404 => "Not Found",
                _ => "Internal Server Error",
            };
            let resp = format!(
                "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(resp.as_bytes()).await;
            let _ = tls.shutdown().await;
        });
    }
}

async fn etcd_ok(access: &Access) -> Result<(), String> {
    let check = async {
        let mut c = access.connect().await.map_err(|e| e.0)?;
        c.status().await.map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    };
    match tokio::time::timeout(Duration::from_secs(3), check).await {
        Ok(r) => r,
        Err(_) => Err("timeout".into()),
    }
}

/// GET https://ip:port/readyz trusting `ca_pem`; the HTTP status.
pub async fn get_readyz(ca_pem: &str, ip: &str, port: i32) -> Result<u16, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(ip.to_string()).map_err(|e| e.to_string())?;
    let work = async {
        let tcp = tokio::net::TcpStream::connect((ip, port as u16))
            .await
            .map_err(|e| e.to_string())?;
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(
            format!("GET /readyz HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out);
        text.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("no HTTP status in {:?}", text.lines().next()))
    };
    match tokio::time::timeout(Duration::from_secs(5), work).await {
        Ok(r) => r,
        Err(_) => Err("timeout".into()),
    }
}
