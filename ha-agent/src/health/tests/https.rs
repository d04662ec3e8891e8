//! The https check against in-process TLS servers (tokio-rustls) with
//! certificates the tests make (rcgen).

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::{
    ServerConfig,
    crypto::ring,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
};
use tokio_rustls::TlsAcceptor;

use super::*;
use crate::health::https::{ClientConfigs, TlsSettings};

/// A CA and a server certificate it signed for `names` (DNS names or IP
/// addresses), with the server's key.
struct Pki {
    ca_pem: String,
    certificate: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl Pki {
    fn new(names: &[&str]) -> Pki {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "ha test CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let certificate = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        Pki {
            ca_pem: ca.pem(),
            certificate: certificate.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        }
    }

    /// Writes the CA certificate to a file of its own, removed on drop.
    fn ca_file(&self, name: &str) -> TempFile {
        TempFile::new(name, &self.ca_pem)
    }
}

/// A file in the temporary directory, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("ha-https-{name}-{}.pem", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What the server saw of one connection.
#[derive(Debug)]
struct Seen {
    /// The SNI the client sent; `None` also when the handshake failed.
    sni: Option<String>,
    handshake: bool,
    /// The request head, if one came.
    request: String,
}

/// Serves one TLS connection on 127.0.0.1 with `pki`'s certificate:
/// reads the request head, answers `response`, then ends the connection
/// with a close_notify alert or, with `close_notify = false`, by just
/// closing it. Returns the port and what the server saw.
async fn tls_server(
    pki: &Pki,
    response: &str,
    close_notify: bool,
) -> (u16, oneshot::Receiver<Seen>) {
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![pki.certificate.clone()],
            PrivateKeyDer::Pkcs8(pki.key.clone_key()),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind((LOCAL4, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let response = response.to_owned();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut stream = match acceptor.accept(stream).await {
            Ok(stream) => stream,
            Err(_) => {
                let _ = tx.send(Seen {
                    sni: None,
                    handshake: false,
                    request: String::new(),
                });
                return;
            }
        };
        let sni = stream.get_ref().1.server_name().map(str::to_owned);
        let mut request = Vec::new();
        let mut buf = [0; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        stream.write_all(response.as_bytes()).await.unwrap();
        stream.flush().await.unwrap();
        if close_notify {
            stream.shutdown().await.unwrap();
        }
        drop(stream);
        let _ = tx.send(Seen {
            sni,
            handshake: true,
            request: String::from_utf8_lossy(&request).into_owned(),
        });
    });
    (port, rx)
}

const OK_RESPONSE: &str = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nall ok";

/// The TLS settings of a test: verify against `ca_file`, no SNI, no host.
fn trusting(ca_file: &TempFile) -> TlsSettings<'_> {
    TlsSettings {
        sni: None,
        host: None,
        ca_file: Some(&ca_file.0),
        verify: true,
    }
}

/// An https check of `GET /healthz` with `settings`, expecting 200 and
/// `expect_body`, as the config gives it.
fn https_kind(settings: TlsSettings<'_>, expect_body: Option<&str>) -> CheckKind {
    CheckKind::Https {
        path: "/healthz".into(),
        host: settings.host.map(str::to_owned),
        expect_status: 200,
        expect_body: expect_body.map(str::to_owned),
        sni: settings.sni.map(str::to_owned),
        ca_file: settings.ca_file.map(Path::to_owned),
        verify: settings.verify,
    }
}

/// One attempt of that check against 127.0.0.1:`port`.
async fn https_check(
    settings: TlsSettings<'_>,
    port: u16,
    expect_body: Option<&str>,
) -> Result<(), String> {
    let kind = https_kind(settings, expect_body);
    check_once(&kind, &target(LOCAL4, port), PATIENCE).await
}

#[tokio::test]
async fn a_certificate_from_the_configured_ca_is_healthy() {
    // No name configured: the certificate must name the backend's IP.
    let pki = Pki::new(&["127.0.0.1"]);
    let ca = pki.ca_file("good");
    let (port, seen) = tls_server(&pki, OK_RESPONSE, true).await;
    assert_eq!(https_check(trusting(&ca), port, Some("ok")).await, Ok(()));
    let seen = seen.await.unwrap();
    // No SNI for an IP address; the http check's request over TLS.
    assert_eq!(seen.sni, None);
    assert!(
        seen.request.starts_with("GET /healthz HTTP/1.0\r\n"),
        "{seen:?}"
    );
    assert!(
        seen.request
            .contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_down_unless_verify_is_off() {
    let pki = Pki::new(&["127.0.0.1"]);
    let other_ca = Pki::new(&["127.0.0.1"]).ca_file("other");
    let (port, seen) = tls_server(&pki, OK_RESPONSE, true).await;
    let result = https_check(trusting(&other_ca), port, None).await;
    assert!(
        matches!(&result, Err(e) if e.starts_with("tls: ") && e.contains("certificate")),
        "{result:?}"
    );
    assert!(!seen.await.unwrap().handshake);

    // verify = false: any certificate, for any name.
    let (port, _) = tls_server(&pki, OK_RESPONSE, true).await;
    let anything = TlsSettings {
        sni: Some("not.the.name.example"),
        host: None,
        ca_file: None,
        verify: false,
    };
    assert_eq!(https_check(anything, port, Some("ok")).await, Ok(()));
}

#[tokio::test]
async fn wrong_status_or_body_is_down() {
    let pki = Pki::new(&["127.0.0.1"]);
    let ca = pki.ca_file("status");
    let unavailable = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
    let (port, _) = tls_server(&pki, unavailable, true).await;
    assert_eq!(
        https_check(trusting(&ca), port, None).await,
        Err("http status 503, expected 200".to_owned())
    );
    let (port, _) = tls_server(&pki, OK_RESPONSE, true).await;
    assert_eq!(
        https_check(trusting(&ca), port, Some("ready")).await,
        Err("body does not contain `ready`".to_owned())
    );
}

#[tokio::test]
async fn the_sni_is_sent_and_verified() {
    let pki = Pki::new(&["backend.example"]);
    let ca = pki.ca_file("sni");
    let named = |sni, host| TlsSettings {
        sni,
        host,
        ..trusting(&ca)
    };
    let (port, seen) = tls_server(&pki, OK_RESPONSE, true).await;
    assert_eq!(
        https_check(named(Some("backend.example"), None), port, None).await,
        Ok(())
    );
    assert_eq!(seen.await.unwrap().sni.as_deref(), Some("backend.example"));

    // The Host header's name (without its port) when no SNI is set.
    let (port, seen) = tls_server(&pki, OK_RESPONSE, true).await;
    assert_eq!(
        https_check(named(None, Some("backend.example:8443")), port, None).await,
        Ok(())
    );
    let seen = seen.await.unwrap();
    assert_eq!(seen.sni.as_deref(), Some("backend.example"));
    assert!(
        seen.request.contains("\r\nHost: backend.example:8443\r\n"),
        "{seen:?}"
    );

    // A name the certificate does not carry, or none (then the
    // backend's IP address must be in it): down.
    for settings in [named(Some("other.example"), None), named(None, None)] {
        let (port, _) = tls_server(&pki, OK_RESPONSE, true).await;
        let result = https_check(settings, port, None).await;
        assert!(
            matches!(&result, Err(e) if e.starts_with("tls: ") && e.contains("certificate")),
            "{settings:?}: {result:?}"
        );
    }
}

#[tokio::test]
async fn a_server_closing_without_close_notify_ends_the_response() {
    let pki = Pki::new(&["127.0.0.1"]);
    let ca = pki.ca_file("close");
    // No Content-Length: the body ends with the connection.
    let response = "HTTP/1.0 200 OK\r\n\r\nall ok";
    let (port, _) = tls_server(&pki, response, false).await;
    assert_eq!(https_check(trusting(&ca), port, Some("ok")).await, Ok(()));
}

/// The error of building the check, with its causes.
fn build_error(settings: TlsSettings<'_>) -> String {
    let kind = https_kind(settings, None);
    let error = Checker::new(&kind, &mut ClientConfigs::default()).unwrap_err();
    format!("{error:#}")
}

#[test]
fn a_bad_ca_file_fails_the_build_naming_it() {
    let with_ca = |path| TlsSettings {
        sni: None,
        host: None,
        ca_file: Some(path),
        verify: true,
    };
    let error = build_error(with_ca(Path::new("/nonexistent/ca.pem")));
    assert!(
        error.starts_with("cannot read CA file /nonexistent/ca.pem: "),
        "{error}"
    );
    let empty = TempFile::new("empty", "no certificate here\n");
    assert_eq!(
        build_error(with_ca(&empty.0)),
        format!("CA file {} holds no PEM certificate", empty.0.display())
    );
    let broken = TempFile::new(
        "broken",
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    );
    let error = build_error(with_ca(&broken.0));
    assert!(
        error.starts_with(&format!("cannot read CA file {}: ", broken.0.display())),
        "{error}"
    );
}

#[test]
fn an_invalid_sni_fails_the_build() {
    let settings = TlsSettings {
        sni: Some("not a name"),
        host: None,
        ca_file: None,
        verify: false,
    };
    assert_eq!(
        build_error(settings),
        "sni `not a name` is neither a DNS name nor an IP address: invalid dns name"
    );
}

/// Start-up and reload build every check of the config before any runs:
/// the error names the VIP and the file.
#[test]
fn the_checks_of_a_config_with_a_bad_ca_file_are_not_built() {
    let text = r#"
[node]
name = "lb1"
interface = "eth0"
[[vip]]
name = "web"
address = "198.18.0.100"
port = 443
protocol = "tcp"
  [vip.check]
  type = "https"
  ca_file = "/nonexistent/ca.pem"
  [[vip.backend]]
  address = "198.18.0.11"
"#;
    let config = ok(text);
    let error = backend_checks(&config).err().expect("no checks built");
    let error = format!("{error:#}");
    assert!(
        error.starts_with("the https check of VIP web: cannot read CA file /nonexistent/ca.pem: "),
        "{error}"
    );
}
