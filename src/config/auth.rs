//! `[auth]`: long-term credentials (static users, TURN REST API secrets) and the nonces;
//! defaults and checks, including the secret lengths a public listener requires.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::de::{human_duration, one_or_many};
use super::error::KeyError;
use super::secret::{MIN_SECRET_LEN, check_secret};

/// Bounds of `redis-refresh`: often enough to matter, rarely enough not to load Redis.
const MIN_REDIS_REFRESH: Duration = Duration::from_millis(500);
const MAX_REDIS_REFRESH: Duration = Duration::from_secs(300);

/// `[auth]`: long-term credentials and TURN REST API secrets. A key left out takes its value
/// from [`AuthConfig::default`].
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthConfig {
    /// Static users: name to password, or to a coturn-style `0x`-prefixed MD5 key.
    pub users: BTreeMap<String, String>,
    /// TURN REST API shared secrets; the first one mints, all of them verify.
    #[serde(deserialize_with = "one_or_many")]
    pub static_auth_secret: Vec<String>,
    /// Separates the expiry from the user name in a REST username ("1700000000:alice").
    pub rest_separator: char,
    /// How long a nonce stays valid before the client gets 438 Stale Nonce.
    #[serde(deserialize_with = "human_duration")]
    pub nonce_lifetime: Duration,
    /// Key for the stateless nonces; nodes sharing it accept each other's nonces.
    /// Absent: random at each start.
    pub nonce_secret: Option<String>,
    /// `redis://[user:password@]host:port[/db]`: also read users and REST secrets from this
    /// Redis, in coturn's `redis-userdb` schema; unset: the file's credentials only.
    pub redis: Option<String>,
    /// How often the users and secrets are read again from `redis`.
    #[serde(deserialize_with = "human_duration")]
    pub redis_refresh: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            users: BTreeMap::new(),
            static_auth_secret: Vec::new(),
            rest_separator: ':',
            nonce_lifetime: Duration::from_secs(600),
            nonce_secret: None,
            redis: None,
            redis_refresh: Duration::from_secs(2),
        }
    }
}

impl AuthConfig {
    /// The rules within `[auth]`; `public` is the first listen address reachable from other
    /// machines, where short and placeholder secrets are refused.
    pub(super) fn validate(&self, public: Option<SocketAddr>) -> Result<(), KeyError> {
        for (user, password) in &self.users {
            let key = format!("auth.users.{user}");
            if user.is_empty() {
                return Err(KeyError::new("auth.users", "a user name must not be empty"));
            }
            if password.is_empty() {
                return Err(KeyError::new(key, "the password must not be empty"));
            }
            if let Some(hex) = password.strip_prefix("0x")
                && (hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(KeyError::new(
                    key,
                    "a 0x-prefixed key must be 32 hex digits (MD5 of \"user:realm:password\")",
                ));
            }
            let md5_key = password.starts_with("0x");
            check_secret(&key, password, public, !md5_key)?;
        }
        if self.nonce_lifetime < Duration::from_secs(10) {
            return Err(KeyError::new(
                "auth.nonce-lifetime",
                "must be at least \"10s\"",
            ));
        }
        if self
            .nonce_secret
            .as_deref()
            .is_some_and(|s| s.len() < MIN_SECRET_LEN)
        {
            return Err(KeyError::new(
                "auth.nonce-secret",
                format!("must be at least {MIN_SECRET_LEN} characters (it keys every nonce)"),
            ));
        }
        let sep = self.rest_separator;
        if sep.is_ascii_digit() || sep.is_control() || sep.is_whitespace() {
            return Err(KeyError::new(
                "auth.rest-separator",
                format!(
                    "{sep:?} cannot separate the expiry from the user in a REST username \
                     (\"1700000000{sep}alice\"): it would read as part of the expiry or vanish; \
                     use ':' (coturn's default) or another punctuation character"
                ),
            ));
        }
        for (i, secret) in self.static_auth_secret.iter().enumerate() {
            let key = format!("auth.static-auth-secret[{i}]");
            if secret.is_empty() {
                return Err(KeyError::new(key, "a secret must not be empty"));
            }
            check_secret(&key, secret, public, true)?;
        }
        self.validate_redis()
    }

    /// `redis` and `redis-refresh`.
    fn validate_redis(&self) -> Result<(), KeyError> {
        if let Some(url) = &self.redis {
            let scheme_ok = url.starts_with("redis://") || url.starts_with("unix://");
            if !scheme_ok || redis::Client::open(url.as_str()).is_err() {
                return Err(KeyError::new(
                    "auth.redis",
                    format!(
                        "{:?} is not a Redis address; write \"redis://host:6379\", \
                         \"redis://:password@host:6379/2\" or \"unix:///path/redis.sock\"",
                        crate::signal::cluster::wire::redact(url)
                    ),
                ));
            }
        }
        if !(MIN_REDIS_REFRESH..=MAX_REDIS_REFRESH).contains(&self.redis_refresh) {
            return Err(KeyError::new(
                "auth.redis-refresh",
                "must be between \"500ms\" and \"5m\" (how stale a user read from Redis may be)",
            ));
        }
        Ok(())
    }

    /// Whether any credential is configured (then TURN needs a relay address).
    pub(super) fn has_credentials(&self) -> bool {
        !self.users.is_empty() || !self.static_auth_secret.is_empty() || self.redis.is_some()
    }
}

#[cfg(test)]
mod tests;
