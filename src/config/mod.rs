//! The configuration file: TOML with kebab-case keys, unknown keys rejected by name.
//!
//! Parsing ([`Config::from_toml`]) is separate from reading ([`Config::read`]) so tests and
//! `--check-config` go through exactly the same code. Every error names the key that is wrong
//! (`listen.udp`, `auth.users.alice`) and what is wrong with it; [`Config::read`] adds the file.
//! [`Config::validate`], which `from_toml` always runs, runs each section's own rules and
//! then the rules that span sections.
//!
//! # Layout
//!
//! - here: the whole file ([`Config`]), reading and parsing (a toml/serde error becomes a
//!   [`KeyError`] with the key and the line), and the rules that span sections;
//! - one file per section, each with its struct, its defaults (`impl Default`, taken for every
//!   key left out) and its own rules: `server`, `listen`, `relay`, `auth`, `stun`, `signal`,
//!   `ice`, `tls`, `admin`, `cluster`; tests that need the whole file in `SECTION/tests.rs`;
//! - `error`: [`KeyError`] and [`ConfigError`]; `de`: durations, one-or-many lists and CIDR
//!   ranges; `secret`: secret lengths and the shipped placeholder (leaves: they use no other
//!   config file, and no section file uses this one);
//! - `host`: the checks that ask this machine (is `relay-ip` one of its addresses).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::Path;

use serde::Deserialize;

mod admin;
mod auth;
mod cluster;
mod de;
mod error;
mod host;
mod ice;
mod listen;
mod relay;
mod secret;
mod server;
mod signal;
mod stun;
#[cfg(test)]
mod tests;
mod tls;

pub use admin::AdminConfig;
pub use auth::AuthConfig;
pub use cluster::{ClusterConfig, valid_node_id};
pub use error::{ConfigError, KeyError, read_error};
pub use ice::IceConfig;
pub use listen::{DEFAULT_PORT, ListenConfig, ProxyListener};
pub use relay::{
    DEFAULT_MAX_ALLOCATIONS_PER_IP, DEFAULT_MAX_CHANNELS_PER_ALLOCATION,
    DEFAULT_MAX_PERMISSIONS_PER_ALLOCATION, OffloadMode, RelayConfig,
};
pub use secret::{MIN_SECRET_LEN, PLACEHOLDER_SECRET};
pub use server::{
    DEFAULT_HTTP_HEADER_TIMEOUT, DEFAULT_HTTP_IDLE_TIMEOUT, DEFAULT_MAX_HTTP_CONNECTIONS,
    DEFAULT_MAX_HTTP_CONNECTIONS_PER_IP, DEFAULT_MAX_QUEUED_BYTES, DEFAULT_MAX_TCP_CONNECTIONS,
    DEFAULT_MAX_TCP_CONNECTIONS_PER_IP, DEFAULT_TCP_ALLOCATION_TIMEOUT, DEFAULT_TCP_IDLE_TIMEOUT,
    DEFAULT_TLS_HANDSHAKE_TIMEOUT, DEFAULT_UNAUTHENTICATED_BURST, DEFAULT_UNAUTHENTICATED_RATE,
    MIN_TCP_QUEUED_BYTES, ServerConfig,
};
pub use signal::SignalConfig;
pub use stun::StunConfig;
pub use tls::TlsConfig;

/// Where rturn looks for its configuration when `-c` is not given.
pub const DEFAULT_PATH: &str = "/etc/rturn/turnserver.toml";

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// The long-term credential realm (RFC 8489 §9.2); required.
    pub realm: String,
    /// Process-wide settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// Addresses to listen on.
    #[serde(default)]
    pub listen: ListenConfig,
    /// Relay addresses and peer rules for TURN.
    #[serde(default)]
    pub relay: RelayConfig,
    /// Credentials.
    #[serde(default)]
    pub auth: AuthConfig,
    /// The STUN service: STUN only, RFC 5780's second address.
    #[serde(default)]
    pub stun: StunConfig,
    /// The WebSocket signaling relay.
    #[serde(default)]
    pub signal: SignalConfig,
    /// What `/api/ice-servers` and the signaling `peers` reply hand out.
    #[serde(default)]
    pub ice: IceConfig,
    /// The certificate for `listen.tls` and `listen.https`.
    pub tls: Option<TlsConfig>,
    /// The admin API (off unless a token is set).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Signaling rooms shared with other nodes over Redis (off unless `redis` is set).
    #[serde(default)]
    pub cluster: ClusterConfig,
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::from_toml(&text).map_err(|error| ConfigError::Invalid {
            path: path.to_owned(),
            error,
        })
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Self, KeyError> {
        let de = toml::Deserializer::parse(text).map_err(|e| toml_error(text, "", &e))?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            toml_error(text, if path == "." { "" } else { &path }, e.inner())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Worker threads for the data path: the configured count, or one per core.
    pub fn workers(&self) -> NonZeroUsize {
        self.server
            .workers
            .and_then(NonZeroUsize::new)
            .or_else(|| std::thread::available_parallelism().ok())
            .unwrap_or(NonZeroUsize::MIN)
    }

    /// Every section's own rules, then the rules that span sections (the first error wins,
    /// in this order).
    pub fn validate(&self) -> Result<(), KeyError> {
        self.validate_realm()?;
        self.server.validate()?;
        self.listen.validate(self.tls.is_some())?;
        let public = self.public_listen_address();
        self.relay.validate(public)?;
        self.auth.validate(public)?;
        self.stun.validate(&self.listen)?;
        self.signal.validate()?;
        self.admin.validate()?;
        self.ice.validate()?;
        self.cluster.validate()?;
        if self.auth.has_credentials() && self.relay.relay_ip.is_empty() && !self.stun.only {
            return Err(KeyError::new(
                "relay.relay-ip",
                "required once [auth] has users or secrets: the address relay sockets bind to",
            ));
        }
        Ok(())
    }

    fn validate_realm(&self) -> Result<(), KeyError> {
        // RFC 8489 §14.9: fewer than 128 characters, and it travels in every 401.
        if self.realm.trim().is_empty() {
            return Err(KeyError::new(
                "realm",
                "must not be empty (e.g. \"example.org\")",
            ));
        }
        if self.realm.chars().count() >= 128 || self.realm.chars().any(char::is_control) {
            return Err(KeyError::new(
                "realm",
                "must be fewer than 128 printable characters (RFC 8489 §14.9)",
            ));
        }
        Ok(())
    }

    /// Resolves `external-ip` against `relay-ip`: (bound relay IP, advertised IP) pairs.
    pub fn external_ips(&self) -> Result<Vec<(IpAddr, IpAddr)>, KeyError> {
        self.relay.external_ips()
    }

    /// The first listen address reachable from other machines, if any.
    pub fn public_listen_address(&self) -> Option<SocketAddr> {
        self.listen.public_address()
    }
}

/// Turns a toml/serde error into a [`KeyError`]: the key path from serde_path_to_error (it
/// already ends in the unknown field's name for `deny_unknown_fields` errors) and the line from
/// the error's byte span.
fn toml_error(text: &str, path: &str, e: &toml::de::Error) -> KeyError {
    let line = e
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    let message = e.message().trim().to_owned();
    // serde reports a missing field at its parent; name the field itself.
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    let key = match missing {
        Some(field) if path.is_empty() => field.to_owned(),
        Some(field) => format!("{path}.{field}"),
        None => path.to_owned(),
    };
    KeyError { key, message, line }
}
