//! The https check: the http check's request and expectations over TLS,
//! for backends that serve only TLS (keepalived's `SSL_GET`).
//!
//! Through rustls with the ring provider: no OpenSSL. The certificate is
//! verified for a server name (the SNI, sent too) or, without one, for the
//! backend's IP address, against the CAs of a PEM file or the system's
//! trust store; or, with `verify = false`, accepted whatever it is.
//!
//! The system store comes from rustls-native-certs, which reads the
//! distribution's bundle (on Debian /etc/ssl/certs, kept by
//! ca-certificates): an internal CA the administrator installed there is
//! trusted as by every other program on the host, and an update of the
//! bundle reaches the checks when they are next built (at start, or a
//! reload that changes the configuration); a compiled-in root list
//! (webpki-roots) would know neither.
//!
//! Everything that can fail for a configuration (an unreadable CA file, an
//! empty trust store, an invalid SNI) fails when the check is built, at
//! start-up or reload, naming the file; a check attempt only fails for the
//! backend. Sessions are never resumed, so every attempt verifies the
//! certificate the backend serves now.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, Result, bail};
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        Resumption,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::{CryptoProvider, ring, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};
use tokio_rustls::TlsConnector;

use super::{describe, http, tcp::connect};

/// The TLS settings of an https check.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TlsSettings<'a> {
    /// The server name sent (SNI) and verified; `None`: `host` if that is
    /// a DNS name, else none is sent and the certificate must name the
    /// backend's IP address.
    pub(crate) sni: Option<&'a str>,
    /// The check's Host header, if configured.
    pub(crate) host: Option<&'a str>,
    /// PEM CA certificates to trust instead of the system's store.
    pub(crate) ca_file: Option<&'a Path>,
    /// `false`: accept any certificate.
    pub(crate) verify: bool,
}

/// A TLS client for one https check, built once.
#[derive(Clone, Debug)]
pub(crate) struct Tls {
    config: Arc<ClientConfig>,
    /// `None`: verify the backend's IP address (and send no SNI).
    server_name: Option<ServerName<'static>>,
}

impl Tls {
    /// Builds the client for `settings`, sharing client configurations
    /// through `configs`.
    pub(crate) fn new(settings: &TlsSettings<'_>, configs: &mut ClientConfigs) -> Result<Tls> {
        Ok(Tls {
            config: configs.get(settings.ca_file, settings.verify)?,
            server_name: server_name(settings.sni, settings.host)?,
        })
    }
}

/// The name to verify: the SNI if given, else `host` (without a port) if
/// it is a DNS name; `None` means the backend's IP address.
fn server_name(sni: Option<&str>, host: Option<&str>) -> Result<Option<ServerName<'static>>> {
    if let Some(sni) = sni {
        let name = ServerName::try_from(sni.to_owned())
            .with_context(|| format!("sni `{sni}` is neither a DNS name nor an IP address"))?;
        return Ok(Some(name));
    }
    let Some(host) = host else {
        return Ok(None);
    };
    let host = match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|c| c.is_ascii_digit()) => {
            name
        }
        _ => host,
    };
    Ok(match ServerName::try_from(host.to_owned()) {
        Ok(name @ ServerName::DnsName(_)) => Some(name),
        _ => None,
    })
}

/// The client configurations of one set of checks, by trust settings, so
/// that checks with the same settings share one and the system store is
/// read once per build.
#[derive(Default)]
pub(crate) struct ClientConfigs(HashMap<(Option<PathBuf>, bool), Arc<ClientConfig>>);

impl ClientConfigs {
    fn get(&mut self, ca_file: Option<&Path>, verify: bool) -> Result<Arc<ClientConfig>> {
        let key = (ca_file.map(Path::to_owned), verify);
        if let Some(config) = self.0.get(&key) {
            return Ok(config.clone());
        }
        let config = Arc::new(client_config(ca_file, verify)?);
        self.0.insert(key, config.clone());
        Ok(config)
    }
}

fn client_config(ca_file: Option<&Path>, verify: bool) -> Result<ClientConfig> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let mut config = if verify {
        builder
            .with_root_certificates(trust_anchors(ca_file)?)
            .with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    };
    config.resumption = Resumption::disabled();
    Ok(config)
}

/// The CAs of `ca_file`, or of the system's trust store.
fn trust_anchors(ca_file: Option<&Path>) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let Some(path) = ca_file else {
        let found = rustls_native_certs::load_native_certs();
        let (added, _unparsable) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let errors: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
            bail!(
                "no CA certificate in the system trust store{}: install ca-certificates, or set ca_file or verify = false",
                if errors.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", errors.join("; "))
                }
            );
        }
        return Ok(roots);
    };
    let file = path.display();
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read CA file {file}"))?;
    if certificates.is_empty() {
        bail!("CA file {file} holds no PEM certificate");
    }
    for certificate in certificates {
        roots
            .add(certificate)
            .with_context(|| format!("CA file {file}: unusable certificate"))?;
    }
    Ok(roots)
}

/// `verify = false`: any certificate, for any name, is accepted. The
/// handshake's signatures are still checked (they prove nothing without a
/// trusted certificate, but a TLS stack needs them to be valid).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One https check attempt: connect, handshake, then the http exchange.
pub(super) async fn check(
    address: SocketAddr,
    tls: &Tls,
    path: &str,
    host: &str,
    expect_status: u16,
    expect_body: Option<&str>,
) -> Result<(), String> {
    let stream = connect(address).await?;
    let name = tls
        .server_name
        .clone()
        .unwrap_or_else(|| ServerName::IpAddress(address.ip().into()));
    let mut stream = TlsConnector::from(tls.config.clone())
        .connect(name, stream)
        .await
        .map_err(|e| format!("tls: {}", describe(&e)))?;
    http::exchange(&mut stream, path, host, expect_status, expect_body).await
}
