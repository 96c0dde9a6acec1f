//! TLS that looks at the certificate a server presents without trusting it: the kubelet's HTTPS
//! probes (which skip verification) and `cluster health`'s served-certificate check, which must see
//! an expired or foreign certificate to report it. The handshake signatures are still checked
//! against the certificate presented; nothing sent over such a connection may be secret.

use std::sync::{Arc, Mutex};

use tokio_rustls::rustls;

/// Where a [`config`] records the end-entity certificate it was shown (DER).
pub(crate) type Seen = Arc<Mutex<Option<Vec<u8>>>>;

/// A client certificate chain and its key.
pub(crate) type Identity = (
    Vec<rustls_pki_types::CertificateDer<'static>>,
    rustls_pki_types::PrivateKeyDer<'static>,
);

/// TLS 1.2 or 1.3, any server certificate accepted (and recorded into `seen` when given, as soon as
/// the server presents it, so it is known even when the server then refuses the handshake), the
/// client certificate `identity` presented when given (a server that demands one then completes the
/// handshake instead of logging a refusal). No session resumption: every connection sees the
/// certificate served now.
pub(crate) fn config(
    seen: Option<Seen>,
    identity: Option<Identity>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert { provider, seen }));
    let mut config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("TLS set-up failed: the client certificate: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// Accepts any server certificate (the kubelet's probes set `InsecureSkipVerify`), recording it.
#[derive(Debug)]
struct AnyServerCert {
    provider: Arc<rustls::crypto::CryptoProvider>,
    seen: Option<Seen>,
}

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if let Some(seen) = &self.seen {
            if let Ok(mut slot) = seen.lock() {
                *slot = Some(end_entity.as_ref().to_vec());
            }
        }
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
