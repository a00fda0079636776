//! The cache on Redis over TLS (`rediss://`): a real `redis-server` taking TLS connections
//! with a certificate from a CA the test makes. A cluster that trusts the CA (through
//! `SSL_CERT_FILE`, which the system's certificate store honours) uses the cache as over
//! plain TCP; one that does not refuses the server, with a clear error naming it, and keeps
//! serving.

use cluster2_tests::{Cluster, RedisServer, TempPath, get};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

/// A CA's certificate, and a certificate for `localhost` it issued with its key: `(ca, cert,
/// key)`, PEM.
fn certificates() -> (String, String, String) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    (ca_pem, server.pem(), server_key.serialize_pem())
}

#[test]
fn the_cache_on_rediss_trusts_the_ca_it_is_given_and_refuses_any_other() {
    let (ca, cert, key) = certificates();
    let (other_ca, _, _) = certificates();
    let redis = RedisServer::start_tls("tls", &cert, &key);
    let url = redis.tls_url().expect("a TLS port");
    let dir = TempPath::new("rediss-ca");
    std::fs::create_dir_all(dir.path()).unwrap();
    let trusted_ca = dir.path().join("ca.pem");
    let other = dir.path().join("other.pem");
    std::fs::write(&trusted_ca, ca).unwrap();
    std::fs::write(&other, other_ca).unwrap();
    let backend = format!("--cache.backend={url}");
    let args = ["--workers=1", "--cluster-name=tls", backend.as_str()];

    let trusted = Cluster::start(
        APP,
        &args,
        &[("SSL_CERT_FILE", trusted_ca.to_str().unwrap())],
    );
    let set = get(trusted.app, "/cache/set?key=k&value=over-tls").unwrap();
    assert_eq!(set.status, 200, "{set:?}");
    assert_eq!(
        get(trusted.app, "/cache/get?key=k").unwrap().body,
        "over-tls"
    );
    // The value went to this server, through its TLS port (the cluster knows no other).
    let keys = redis.command(&["KEYS", "*"]).expect("the server answers");
    assert!(keys.contains("tls"), "the value is in Redis: {keys}");
    let caches = get(trusted.monitor, "/caches").unwrap();
    assert_eq!(caches.status, 200, "{caches:?}");
    let caches: serde_json::Value = serde_json::from_str(&caches.body).unwrap();
    assert_eq!(
        caches["connected"],
        serde_json::Value::Bool(true),
        "{caches}"
    );

    // A CA that did not issue the server's certificate: every call fails at once with an
    // error naming the server and the certificate, and the app still answers.
    let untrusted = Cluster::start(APP, &args, &[("SSL_CERT_FILE", other.to_str().unwrap())]);
    let refused = get(untrusted.app, "/cache/get?key=k").unwrap();
    assert_ne!(refused.status, 200, "{refused:?}");
    assert!(
        refused.body.contains("Redis at") && refused.body.contains(&url),
        "the error names the server: {refused:?}"
    );
    assert!(
        refused.body.to_lowercase().contains("certificate"),
        "the error says the certificate is not trusted: {refused:?}"
    );
    assert_eq!(get(untrusted.app, "/").unwrap().status, 200);
}
