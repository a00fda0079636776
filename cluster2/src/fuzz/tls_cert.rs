//! The certificate file (`tls.cert`) as the master reads its validity: whatever it holds, a
//! validity or an error naming the file, in memory bounded by its size, never a panic.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::{Edit, bounded, damage};
use crate::tls::{TEST_CERT, Validity, pem_of};

fn check(cert: &[u8]) {
    let read = bounded("a certificate's validity", cert.len(), 16 * 1024, 8, || {
        Validity::of(cert, "cert.pem")
    });
    if let Err(e) = read {
        assert!(e.starts_with("--tls.cert cert.pem: "), "{e}");
    }
}

/// The file's bytes as they are.
#[test]
fn tls_cert_bytes() {
    bolero::check!(name = "tls_cert_bytes").for_each(check);
}

/// A real certificate, its DER damaged, in PEM: past the base64, into the X.509 parser.
#[test]
fn tls_cert_damaged() {
    let der = CertificateDer::from_pem_slice(TEST_CERT.as_bytes())
        .expect("the test certificate")
        .to_vec();
    bolero::check!().with_type::<Vec<Edit>>().for_each(|edits| {
        let mut bytes = der.clone();
        damage(&mut bytes, edits);
        check(&pem_of(&bytes));
    });
}
