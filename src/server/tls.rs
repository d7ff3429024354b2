//! TLS for `turns:` and HTTPS: rustls (TLS 1.2 and 1.3 only), one certificate from `[tls]`,
//! held in a [`CertStore`] that a reload swaps without touching open connections, and the
//! ALPN each listener offers (`stun.turn`, `http/1.1`, or both on a shared port).

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

/// ALPN for STUN/TURN over TLS (RFC 7443).
pub(crate) const ALPN_STUN: &[u8] = b"stun.turn";
/// ALPN for HTTPS (and WSS): HTTP/1.1 is all the HTTP side serves.
pub(crate) const ALPN_HTTP1: &[u8] = b"http/1.1";

/// A certificate or key that could not be used, naming the file and the key it came from.
#[derive(Debug, thiserror::Error)]
#[error("{} ({key}): {message}", path.display())]
pub struct TlsError {
    /// The PEM file.
    pub path: std::path::PathBuf,
    /// `tls.cert` or `tls.key`.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Reads `[tls] cert` and `key` into a ready-to-serve certified key.
pub fn load(config: &TlsConfig) -> Result<Arc<CertifiedKey>, TlsError> {
    let err = |path: &Path, key, message: String| TlsError {
        path: path.to_owned(),
        key,
        message,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&config.cert)
        .map_err(|e| err(&config.cert, "tls.cert", e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(&config.cert, "tls.cert", e.to_string()))?;
    if chain.is_empty() {
        return Err(err(
            &config.cert,
            "tls.cert",
            "no CERTIFICATE in the file".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&config.key)
        .map_err(|e| err(&config.key, "tls.key", e.to_string()))?;
    let signer = ring::sign::any_supported_type(&key)
        .map_err(|e| err(&config.key, "tls.key", format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|e| {
        err(
            &config.key,
            "tls.key",
            format!("does not match tls.cert: {e}"),
        )
    })?;
    Ok(Arc::new(certified))
}

/// The certificate in force; [`CertStore::replace`] swaps it for new handshakes only.
#[derive(Debug)]
pub struct CertStore(RwLock<Arc<CertifiedKey>>);

impl CertStore {
    /// A store holding `cert`.
    pub fn new(cert: Arc<CertifiedKey>) -> Arc<Self> {
        Arc::new(Self(RwLock::new(cert)))
    }

    /// Serves `cert` from the next handshake on.
    pub fn replace(&self, cert: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = cert;
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.0.read().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

/// An acceptor for STUN/TURN over TLS (ALPN `stun.turn` offered) or HTTPS (`http/1.1`).
pub fn acceptor(store: &Arc<CertStore>, http: bool) -> Result<TlsAcceptor, rustls::Error> {
    let alpn = if http { ALPN_HTTP1 } else { ALPN_STUN };
    with_alpn(store, vec![alpn.to_vec()])
}

/// An acceptor for the port `turns:` and HTTPS share: both ALPN protocols offered, STUN/TURN
/// first (rustls picks the first of ours the client offers; a browser offers only HTTP).
pub fn shared_acceptor(store: &Arc<CertStore>) -> Result<TlsAcceptor, rustls::Error> {
    with_alpn(store, vec![ALPN_STUN.to_vec(), ALPN_HTTP1.to_vec()])
}

fn with_alpn(store: &Arc<CertStore>, alpn: Vec<Vec<u8>>) -> Result<TlsAcceptor, rustls::Error> {
    let provider = Arc::new(ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(store) as Arc<dyn ResolvesServerCert>);
    config.alpn_protocols = alpn;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
