//! A throwaway certificate authority and a server certificate it signed, for TLS tests
//! (`rediss://`, SMTPS). rustls refuses a self-signed certificate that is itself a CA
//! (`CaUsedAsEndEntity`), so the server gets its own certificate under the CA.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// PEM files in a temp dir: `ca.pem`, `server.pem`, `server.key` (for 127.0.0.1 and localhost).
pub struct TestCa {
    dir: tempfile::TempDir,
    pub ca_pem: Vec<u8>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::Builder::new().prefix("entraguard-tls-").tempdir().expect("temp dir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "EntraGuard test CA");
        let ca_key = KeyPair::generate().expect("ca key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
        let issuer = Issuer::new(ca_params, ca_key);
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server params");
        params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &issuer).expect("server cert");
        let ca_pem = ca_cert.pem().into_bytes();
        std::fs::write(dir.path().join("ca.pem"), &ca_pem).expect("write ca");
        std::fs::write(dir.path().join("server.pem"), cert.pem()).expect("write cert");
        std::fs::write(dir.path().join("server.key"), key.serialize_pem()).expect("write key");
        TestCa { dir, ca_pem }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}
