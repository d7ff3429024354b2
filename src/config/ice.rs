//! `[ice]`: what `/api/ice-servers` and the signaling `peers` reply hand to browsers (the
//! host in the `stun:`/`turn:` URLs, the lifetime of the credentials); defaults and checks.

use std::time::Duration;

use serde::Deserialize;

use super::de::human_duration;
use super::error::KeyError;

/// `[ice]`: the ICE servers handed to browsers. A key left out takes its value from
/// [`IceConfig::default`].
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct IceConfig {
    /// Host name or address in the `stun:`/`turn:` URLs. Default: the IPv4 `external-ip`,
    /// else the first concrete UDP/TCP listen address.
    pub public_host: Option<String>,
    /// Lifetime of the TURN REST credentials handed out.
    #[serde(deserialize_with = "human_duration")]
    pub credential_ttl: Duration,
}

impl Default for IceConfig {
    fn default() -> Self {
        Self {
            public_host: None,
            credential_ttl: Duration::from_secs(3600),
        }
    }
}

impl IceConfig {
    /// The rules within `[ice]`.
    pub(super) fn validate(&self) -> Result<(), KeyError> {
        if self.credential_ttl < Duration::from_secs(60) {
            return Err(KeyError::new(
                "ice.credential-ttl",
                "must be at least \"1m\"",
            ));
        }
        if self
            .public_host
            .as_deref()
            .is_some_and(|h| h.is_empty() || h.contains(['/', ' ']))
        {
            return Err(KeyError::new(
                "ice.public-host",
                "must be a bare host name or address, like \"turn.example.org\"",
            ));
        }
        Ok(())
    }
}
