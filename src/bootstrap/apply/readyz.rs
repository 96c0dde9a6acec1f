//! The apiserver readiness check apply gates on: HTTPS `GET /readyz` (open to anonymous clients in
//! every kubeadm cluster), the server's certificate verified against the bundle's cluster CA for
//! the address asked, so a wrong or stale apiserver behind the endpoint is caught. Never prints.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;

use rustls_pki_types::pem::PemObject;

use crate::http1::{exchange, HttpFailure};

/// Asks `address` (`host:port`) once; `Ok` when it answers 200.
pub async fn readyz(address: &str, ca_pem: &[u8], within: Duration) -> Result<(), String> {
    match tokio::time::timeout(within, ask(address, ca_pem)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(within)
        )),
    }
}

async fn ask(address: &str, ca_pem: &[u8]) -> Result<(), String> {
    let (host, _) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("{address} is not host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| format!("the bundle's CA is not PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("the bundle's CA is unusable: {e}"))?;
    }
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| format!("{host:?} is not a TLS server name"))?;
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("cannot connect: {}", crate::certs::error::io_reason(&e)))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let request = Request::get("/readyz")
        .header(hyper::header::HOST, address)
        .header(
            hyper::header::USER_AGENT,
            format!("cpkeep/{}", crate::VERSION),
        )
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    match exchange(tls, request).await {
        Ok(s) if s.as_u16() == 200 => Ok(()),
        Ok(s) => Err(format!("HTTP {}", s.as_u16())),
        Err(HttpFailure::NoAnswer(e)) => Err(format!("no answer: {e}")),
        Err(HttpFailure::NotHttp) => Err("not an HTTP answer".to_string()),
    }
}
