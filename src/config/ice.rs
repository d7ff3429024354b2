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

#[cfg(test)]
mod tests {
    use super::*;

    fn ice(text: &str) -> IceConfig {
        toml::from_str(text).expect("an [ice] section")
    }

    #[test]
    fn credentials_live_at_least_a_minute() {
        assert_eq!(ice("").credential_ttl, Duration::from_secs(3600));
        let e = ice("credential-ttl = \"59s\"").validate().unwrap_err();
        assert_eq!(e.key, "ice.credential-ttl");
        ice("credential-ttl = \"1m\"").validate().unwrap();
    }

    #[test]
    fn public_host_is_a_bare_host() {
        for bad in ["", "turn.example.org/", "turn example.org", "http://x/"] {
            let e = ice(&format!("public-host = {bad:?}"))
                .validate()
                .unwrap_err();
            assert_eq!(e.key, "ice.public-host", "{bad:?}");
        }
        for good in ["turn.example.org", "203.0.113.7", "[2001:db8::7]"] {
            ice(&format!("public-host = {good:?}")).validate().unwrap();
        }
    }
}
