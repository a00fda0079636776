//! TLS on the application port (`tls.cert`, `tls.key`): rustls with ring, the stack the Redis
//! client already brings.
//!
//! The master alone reads the files, at start and on SIGHUP ([`read`]), and checks them: the
//! chain parses, the key parses (PKCS#8, RSA or EC), and the key is the certificate's. Workers
//! get the bytes in their hello, and a running worker gets new ones in a message
//! (`ToWorker::Tls`): a worker never opens the files, so every process serves what the master
//! checked, and a file that goes bad after start cannot stop a successor from starting.
//!
//! A worker's [`Tls`] holds the server configuration each handshake starts from, swapped whole
//! while serving: new handshakes get the new certificate, and connections already open keep
//! the session they negotiated. ALPN offers what `server` allows.
//!
//! The certificate's validity, said at each load and watched while running: `expiry.rs`.

use std::fmt;
use std::io::Read as _;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use tokio_rustls::TlsAcceptor;

use crate::options::{ServerProtocol, TlsOptions};

mod expiry;

pub(crate) use expiry::Expiry;
#[cfg(test)]
pub(crate) use expiry::{TEST_CERT, Validity, pem_of};

/// The largest PEM file read: a chain of a few certificates is a few kilobytes.
const MAX_PEM: u64 = 1 << 20;

/// The certificate chain and its key as read from their files: what the master hands its
/// workers. `Debug` leaves the key out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pem {
    #[serde(with = "serde_bytes")]
    cert: Vec<u8>,
    #[serde(with = "serde_bytes")]
    key: Vec<u8>,
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pem")
            .field("cert", &format_args!("{} bytes", self.cert.len()))
            .field("key", &format_args!("{}", crate::options::REDACTED))
            .finish()
    }
}

/// Reads and checks the files `options` name; `None` when TLS is off. The error is one line
/// naming the file and what is wrong with it.
pub(crate) fn read(options: &TlsOptions) -> Result<Option<Pem>, String> {
    let (cert_path, key_path) = match (&options.cert, &options.key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(
                "--tls.cert is set without --tls.key: TLS needs the certificate's \
                        private key too"
                    .to_owned(),
            );
        }
        (None, Some(_)) => {
            return Err(
                "--tls.key is set without --tls.cert: TLS needs the certificate \
                        chain too"
                    .to_owned(),
            );
        }
    };
    let pem = Pem {
        cert: read_file(cert_path, "--tls.cert")?,
        key: read_file(key_path, "--tls.key")?,
    };
    certified(&pem, cert_path, key_path)?;
    Ok(Some(pem))
}

fn read_file(path: &str, flag: &str) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{flag} {path}: {e}"))?;
    let mut bytes = Vec::new();
    // One byte more than allowed tells a file too large from one just at the limit.
    file.take(MAX_PEM + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{flag} {path}: {e}"))?;
    if bytes.len() as u64 > MAX_PEM {
        return Err(format!(
            "{flag} {path}: larger than {MAX_PEM} bytes: not a PEM certificate or key"
        ));
    }
    Ok(bytes)
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The chain and key, parsed and matched; errors name `cert_path` or `key_path`.
fn certified(pem: &Pem, cert_path: &str, key_path: &str) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_slice_iter(&pem.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--tls.cert {cert_path}: not a PEM certificate chain: {e}"))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls.cert {cert_path}: no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)"
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&pem.key).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            format!("--tls.key {key_path}: no private key in it (expected PEM: PKCS#8, RSA or EC)")
        }
        e => format!("--tls.key {key_path}: not a PEM private key: {e}"),
    })?;
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            format!("--tls.key {key_path}: not the key of the certificate in {cert_path}")
        }
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            format!("--tls.cert {cert_path}: the first certificate does not parse: {e}")
        }
        e => format!("--tls.key {key_path}: unusable private key: {e}"),
    })?;
    Ok(certified)
}

/// A worker's TLS: the server configuration each new connection's handshake uses, replaced
/// whole when the certificate changes. A new configuration has a new session cache, so a
/// client cannot resume a session of the old certificate and keep seeing it: after a reload
/// every new handshake shows the new one. Connections already open keep theirs.
#[derive(Clone)]
pub(crate) struct Tls {
    config: Arc<RwLock<Arc<rustls::ServerConfig>>>,
    protocol: ServerProtocol,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Tls {
    /// The server side for `pem`, offering by ALPN the protocols `protocol` allows.
    pub(crate) fn new(pem: &Pem, protocol: ServerProtocol) -> Result<Self, String> {
        let config = server_config(pem, protocol)?;
        Ok(Self {
            config: Arc::new(RwLock::new(config)),
            protocol,
        })
    }

    /// New handshakes use `pem` from now on; open connections keep theirs.
    pub(crate) fn replace(&self, pem: &Pem) -> Result<(), String> {
        let config = server_config(pem, self.protocol)?;
        // Held only to swap or clone one pointer; a poisoned lock still holds a whole one.
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }

    /// The acceptor for the next connection.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.config
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

fn server_config(pem: &Pem, protocol: ServerProtocol) -> Result<Arc<rustls::ServerConfig>, String> {
    // The master checked these bytes: the names only serve a master of another version.
    let certified = certified(pem, "(from the master)", "(from the master)")?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    config.alpn_protocols = alpn(protocol);
    Ok(Arc::new(config))
}

/// The master's ECV probe of a path on its own application port, in TLS: it checks that the
/// application answers, not who the certificate names. The socket it connects to is the one
/// the master itself holds open (a local address or its own Unix socket), so there is nobody
/// in between to authenticate; the certificate is accepted as presented, and its handshake
/// signature still checked.
pub(crate) async fn probe<I>(io: I) -> std::io::Result<tokio_rustls::client::TlsStream<I>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let provider = Arc::new(provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(OwnPort(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a valid name");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, io)
        .await
}

/// See [`probe`].
#[derive(Debug)]
struct OwnPort(Arc<CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for OwnPort {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What ALPN offers: a client that speaks neither still gets a handshake (ALPN is optional),
/// and then whatever `server` serves.
fn alpn(protocol: ServerProtocol) -> Vec<Vec<u8>> {
    match protocol {
        ServerProtocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        ServerProtocol::Http1 => vec![b"http/1.1".to_vec()],
        ServerProtocol::Http2 => vec![b"h2".to_vec()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_follows_the_server_option() {
        assert_eq!(alpn(ServerProtocol::Auto), [&b"h2"[..], b"http/1.1"]);
        assert_eq!(alpn(ServerProtocol::Http1), [&b"http/1.1"[..]]);
        assert_eq!(alpn(ServerProtocol::Http2), [&b"h2"[..]]);
    }

    #[test]
    fn garbage_is_named_by_file() {
        let pem = Pem {
            cert: b"not a certificate".to_vec(),
            key: b"not a key".to_vec(),
        };
        let e = certified(&pem, "c.pem", "k.pem").unwrap_err();
        assert!(e.starts_with("--tls.cert c.pem: no certificate"), "{e}");
        let e = format!("{pem:?}");
        assert!(!e.contains("not a key"), "{e}");
    }

    #[test]
    fn unset_is_off_and_a_missing_file_is_named() {
        assert_eq!(read(&TlsOptions::default()), Ok(None));
        let options = TlsOptions {
            cert: Some("/nonexistent/cert.pem".to_owned()),
            key: Some("/nonexistent/key.pem".to_owned()),
        };
        let e = read(&options).unwrap_err();
        assert!(e.starts_with("--tls.cert /nonexistent/cert.pem: "), "{e}");
    }
}
