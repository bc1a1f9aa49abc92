//! TLS certificates generated at test time (nothing private is committed): a test CA and a
//! server certificate it signs for `localhost`, `127.0.0.1` and `::1`, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// PEM files of one generated test PKI.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate (what a client trusts: `--ca-file`).
    pub ca_cert: PathBuf,
    /// The server's certificate chain (leaf, then the CA).
    pub server_cert: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
}

/// Generates a CA named `name` and a server certificate it signs for `localhost`,
/// `127.0.0.1` and `::1` (plus `extra_names`), into `dir` as `<name>-ca.pem`,
/// `<name>-server.pem` and `<name>-server-key.pem`.
///
/// # Panics
/// When generation or writing fails (a test set-up error).
#[must_use]
pub fn generate(dir: &Path, name: &str, extra_names: &[&str]) -> TestPki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca_key = KeyPair::generate().expect("CA key");
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");

    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    names.extend(extra_names.iter().map(|n| (*n).to_owned()));
    let mut leaf_params = CertificateParams::new(names).expect("server params");
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf_key = KeyPair::generate().expect("server key");
    let leaf = leaf_params
        .signed_by(&leaf_key, &ca)
        .expect("server certificate");

    let pki = TestPki {
        ca_cert: dir.join(format!("{name}-ca.pem")),
        server_cert: dir.join(format!("{name}-server.pem")),
        server_key: dir.join(format!("{name}-server-key.pem")),
    };
    std::fs::create_dir_all(dir).expect("cert dir");
    std::fs::write(&pki.ca_cert, ca.pem()).expect("write CA");
    std::fs::write(&pki.server_cert, format!("{}{}", leaf.pem(), ca.pem())).expect("write chain");
    std::fs::write(&pki.server_key, leaf_key.serialize_pem()).expect("write key");
    pki
}
