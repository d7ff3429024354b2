//! `[tls]`: the one certificate for STUN/TURN over TLS and for HTTPS. No defaults: when the
//! section is there, both files must be named (`listen.tls` and `listen.https` need it).

use std::path::PathBuf;

use serde::Deserialize;

/// `[tls]`: one certificate for STUN/TURN over TLS and for HTTPS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsConfig {
    /// PEM file with the certificate and its chain, leaf first (Let's Encrypt's fullchain.pem).
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}
