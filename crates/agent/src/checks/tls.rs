//! TLS for HTTPS and gRPC checks: rustls with the ring provider, the
//! webpki root set, and Consul's `TLSSkipVerify` escape hatch.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Which application protocol to offer in ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alpn {
    /// Offer nothing: HTTP/1.1 checks.
    None,
    /// Offer `h2`: gRPC requires HTTP/2.
    H2,
}

/// Why the TLS layer failed; `Display` follows Go's `tls: ...` prefix.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    #[error("tls: invalid server name {0:?}")]
    ServerName(String),
    #[error("tls: {0}")]
    Config(rustls::Error),
    #[error("tls: {0}")]
    Handshake(std::io::Error),
}

/// Wraps `stream` in TLS; the certificate is checked against `server_name`
/// (Consul's `TLSServerName`, else the target's host) unless `skip_verify`.
pub(crate) async fn connect(
    stream: TcpStream,
    server_name: &str,
    skip_verify: bool,
    alpn: Alpn,
) -> Result<TlsStream<TcpStream>, TlsError> {
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|_| TlsError::ServerName(server_name.to_owned()))?;
    let config = client_config(skip_verify, alpn)?;
    TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(TlsError::Handshake)
}

/// The four possible client configurations are built once per process: a
/// root store is a few hundred KB of parsing we need not repeat per probe.
fn client_config(skip_verify: bool, alpn: Alpn) -> Result<Arc<ClientConfig>, TlsError> {
    static CONFIGS: [OnceLock<Arc<ClientConfig>>; 4] = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    let slot = &CONFIGS[usize::from(skip_verify) * 2 + usize::from(alpn == Alpn::H2)];
    if let Some(config) = slot.get() {
        return Ok(config.clone());
    }
    let config = Arc::new(build_config(skip_verify, alpn)?);
    Ok(slot.get_or_init(|| config).clone())
}

fn build_config(skip_verify: bool, alpn: Alpn) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?;
    let mut config = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider }))
            .with_no_client_auth()
    } else {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    if alpn == Alpn::H2 {
        config.alpn_protocols = vec![b"h2".to_vec()];
    }
    Ok(config)
}

/// `TLSSkipVerify`: any certificate chain and name is accepted, but the
/// handshake signatures are still checked so the session keys are real.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_every_configuration() {
        for skip in [false, true] {
            for alpn in [Alpn::None, Alpn::H2] {
                let config = client_config(skip, alpn).expect("config");
                assert_eq!(config.alpn_protocols.is_empty(), alpn == Alpn::None);
            }
        }
    }
}
