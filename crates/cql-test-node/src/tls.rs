//! TLS for the test node: certificates made at run time and rustls configs.
//!
//! Role: give a test a CA to trust and a server certificate for the node to
//! present, generated fresh by [`TlsCerts::generate`] (rcgen), so no private
//! key or expiry date lives in the repository; build the node's rustls
//! `ServerConfig` and a client config that trusts exactly that CA.
//!
//! Invariants:
//! - The server certificate names `127.0.0.1`, `::1` and `localhost` (the
//!   scylla driver verifies the node by its IP address) and is signed by the
//!   CA, never self-signed, so trusting `ca_pem` is what makes it valid.
//! - Every config is built with the ring provider passed explicitly: a build
//!   that also compiles aws-lc-rs (the scylla driver's rustls default) then
//!   needs no process-wide default provider.
//! - A node with TLS serves TLS only (Cassandra's `client_encryption_options`
//!   with `optional: false`): a plain-text client fails its handshake.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::{Error, Result};

/// A test CA and a server certificate it signed, with the server's key.
#[derive(Clone)]
pub struct TlsCerts {
    /// PEM of the CA certificate: what a client must trust.
    pub ca_pem: String,
    /// PEM of the server certificate followed by the CA certificate.
    pub chain_pem: String,
    /// PEM of the server's private key (PKCS#8). Test material only.
    pub key_pem: String,
    ca_der: CertificateDer<'static>,
    chain_der: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl std::fmt::Debug for TlsCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is test material, but keep it out of test logs anyway.
        f.debug_struct("TlsCerts").field("ca_pem", &self.ca_pem).finish_non_exhaustive()
    }
}

fn tls_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("TLS: {what}: {e}"))
}

/// The crypto provider of every config the test node builds.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsCerts {
    /// A fresh CA (common name `cql-test-node test CA <pid>-<n>`) and a server
    /// certificate for 127.0.0.1, ::1 and localhost. Two calls give two
    /// unrelated CAs, which is how a test gets an untrusted one.
    pub fn generate() -> Result<TlsCerts> {
        let ca_key = KeyPair::generate().map_err(|e| tls_error("CA key", e))?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(|e| tls_error("CA parameters", e))?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A name of its own, so a client trusting another generated CA fails
        // with "unknown issuer" rather than matching this one by name.
        static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("cql-test-node test CA {}-{n}", std::process::id());
        ca.distinguished_name.push(DnType::CommonName, name);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca = CertifiedIssuer::self_signed(ca, ca_key).map_err(|e| tls_error("CA certificate", e))?;

        let key = KeyPair::generate().map_err(|e| tls_error("server key", e))?;
        let names = vec!["127.0.0.1".to_string(), "::1".to_string(), "localhost".to_string()];
        let mut server = CertificateParams::new(names).map_err(|e| tls_error("server parameters", e))?;
        server.distinguished_name.push(DnType::CommonName, "cql-test-node");
        server.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = server.signed_by(&key, &ca).map_err(|e| tls_error("server certificate", e))?;

        Ok(TlsCerts {
            ca_pem: ca.pem(),
            chain_pem: format!("{}{}", cert.pem(), ca.pem()),
            key_pem: key.serialize_pem(),
            ca_der: ca.der().clone(),
            chain_der: vec![cert.der().clone(), ca.der().clone()],
            key_der: key.serialize_der(),
        })
    }

    /// A rustls client config trusting only this CA, for
    /// `SessionBuilder::tls_context` (scylla feature `rustls-023`).
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("a CA certificate made by rcgen parses");
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    /// The node's rustls server config.
    pub(crate) fn server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("protocol versions", e))?
            .with_no_client_auth()
            .with_single_cert(self.chain_der.clone(), key)
            .map_err(|e| tls_error("server certificate", e))?;
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certs_make_a_server_config_and_pems() {
        let c = TlsCerts::generate().unwrap();
        assert!(c.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(c.chain_pem.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(c.key_pem.contains("PRIVATE KEY"));
        assert!(c.chain_pem.ends_with(&c.ca_pem));
        c.server_config().unwrap();
        let _ = c.client_config();
        assert!(!format!("{c:?}").contains("PRIVATE KEY"));
        assert_ne!(TlsCerts::generate().unwrap().ca_pem, c.ca_pem, "each call makes a new CA");
    }
}
